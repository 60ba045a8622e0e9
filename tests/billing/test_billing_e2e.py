"""Billing end to end: trades copied by the real pipeline (paper venue over sockets, Redis,
real Celery workers), a period closed with a controlled clock by the billing.run task on
a worker, and the venue balances moved by exactly the statements' amounts."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from billing.choices import SettlementStatus
from billing.models import FeeAccrual, Settlement
from billing.services import fee_schedule_create
from billing.statements import statement_build
from billing.tasks import billing_run
from brokers.paper.testing import running_venue
from tests.billing.conftest import month_end
from tests.copytrading.copy_world import build_world
from tests.processes import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


@pytest.fixture
def world():
    with running_venue(ticks_ms=0) as venue:
        w = build_world([venue])
        yield w
        w.stack.close()


def _price(world, bid, ask):
    status, body = world.api().post(
        "/v1/admin/prices", {"symbol": "EURUSD", "bid": bid, "ask": ask}
    )
    assert status == 200, body


def _balance(world, login):
    status, body = world.api().get(f"/v1/accounts/{login}")
    assert status == 200, body
    return D(str(body["balance"]))


def test_a_period_of_copied_trades_settles_exactly_the_statement(world):
    master = world.master(0)
    fee_schedule_create(
        master=master,
        values={"performance_pct": D("20"), "volume_per_lot": D("2"), "broker_share_pct": D("30")},
        actor=None,
    )
    sub = world.follower(master, 0, risk_multiplier="0.5")
    world.start()
    login = master.account.login
    first = world.order(login, volume=1)  # the follower copies 0.5 lots at 1.10010
    world.order(login, volume=1)
    world.wait_links(sub, "open", n=2)
    _price(world, 1.1041, 1.1042)
    world.close(login, first["position_id"], volume=0.4)  # partial close, copied: 0.2 lots
    wait_for(
        lambda: (
            sorted(D(str(p["volume"])) for p in world.positions(sub.follower_account.login))
            == [D("0.3"), D("0.5")]
        ),
        what="the partial close copied",
    )
    world.close(login, first["position_id"])
    world.wait_links(sub, "closed", n=1)
    # The second copy stays open: +40 floating at period end (0.5 lots, 1.10010 -> 1.10090).
    _price(world, 1.1009, 1.1010)
    follower, master_login = sub.follower_account.login, login
    before = _balance(world, follower), _balance(world, master_login)
    as_of = month_end(datetime.now(UTC)) + timedelta(minutes=1)
    billing_run.delay(as_of.isoformat())
    settlement = wait_for(
        lambda: Settlement.objects.filter(
            subscription=sub, status=SettlementStatus.SETTLED
        ).first(),
        timeout=60,
        what="the period's settlement confirmed by the venue",
    )
    perf = FeeAccrual.objects.get(subscription=sub, kind="performance")
    volume = FeeAccrual.objects.get(subscription=sub, kind="volume")
    # Realized: 0.2 lots x 0.0040 + 0.3 lots x 0.0040 = 200; floating 0.5 x 0.0008 = 40.
    assert D(perf.inputs["realized"]) == D("200")
    assert D(perf.inputs["floating_end"]) == D("40")
    assert volume.amount == D("2.00")  # 1 lot opened x 2
    assert (perf.base_amount, perf.amount) == (D("238.00"), D("47.60"))  # 200 + 40 - 2
    assert settlement.collected == D("49.60")
    month_start = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = month_end(month_start)
    paid = statement_build(
        party="follower", account=sub.follower_account, start=month_start, end=end
    )
    earned = statement_build(party="master", account=master.account, start=month_start, end=end)
    assert _balance(world, follower) - before[0] == paid.totals["moved"] == D("-49.60")
    assert _balance(world, master_login) - before[1] == earned.totals["moved"] == D("34.72")
    assert earned.totals["master_share"] == D("34.72")  # 70 % of 47.60 + 70 % of 2.00
