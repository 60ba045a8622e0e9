"""The copy pipeline end to end: paper venues over real sockets, Redis, PostgreSQL and real
Celery workers running the listener, the fan-out and the execution."""

from decimal import Decimal

import pytest

from brokers.paper.testing import running_venue
from copytrading.models import CopyInstruction, FollowerOrder, TradeLink
from copytrading.services import subscription_pause
from tests.copytrading.copy_world import build_world
from tests.processes import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


@pytest.fixture(scope="module")
def venues():
    with (
        running_venue(ticks_ms=0) as a,
        running_venue(ticks_ms=0, symbol_suffix="m", min_volume="0.1", volume_step="0.1") as b,
    ):
        yield a, b


@pytest.fixture
def world(venues):
    w = build_world(list(venues))
    yield w
    w.stack.close()


def test_open_and_close_copied_across_two_brokers(world):
    master = world.master(0)
    same = world.follower(master, 0, risk_multiplier="0.5")
    other = world.follower(master, 1, risk_multiplier="0.25")
    world.start()
    opened = world.order(master.account.login, volume=1)
    world.wait_links(same, "open")
    world.wait_links(other, "open")
    (pa,) = world.positions(same.follower_account.login, 0)
    (pb,) = world.positions(other.follower_account.login, 1)
    assert (pa["symbol"], Decimal(str(pa["volume"]))) == ("EURUSD", Decimal("0.5"))
    # 0.25 lots rounds down to the second broker's 0.1 step; its symbols carry the suffix.
    assert (pb["symbol"], Decimal(str(pb["volume"]))) == ("EURUSDm", Decimal("0.2"))
    world.close(master.account.login, opened["position_id"])
    world.wait_links(same, "closed")
    world.wait_links(other, "closed")
    assert world.positions(same.follower_account.login, 0) == []
    assert world.positions(other.follower_account.login, 1) == []
    # Exactly one follower order per (master event, subscription).
    assert FollowerOrder.objects.count() == 4
    link = TradeLink.objects.get(subscription=same)
    assert link.follower_position_id == str(pa["position_id"])


def test_paused_subscription_gets_no_new_open(world):
    master = world.master(0)
    active = world.follower(master, 0)
    paused = world.follower(master, 0)
    subscription_pause(subscription=paused, reason="customer asked", actor=None)
    world.start()
    world.order(master.account.login, volume=1)
    world.wait_links(active, "open")
    inst = wait_for(
        lambda: CopyInstruction.objects.filter(subscription=paused).first(), what="the skip"
    )
    assert inst.status == "skipped"
    assert inst.reason == "SUBSCRIPTION_PAUSED"
    assert world.positions(paused.follower_account.login) == []
