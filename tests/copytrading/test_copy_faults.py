"""The copy pipeline under venue faults: exactly one follower order per
instruction, nothing left in flight, every skip or failure with its reason.

503s before or after acting are the faults suite's (tests/faults/test_venue_errors.py,
with its full venue-against-database check)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from brokers.paper.testing import running_venue
from copytrading.models import CopyInstruction, TradeLink
from tests.copytrading.copy_world import build_world
from tests.processes import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


@pytest.fixture(scope="module")
def venue():
    with running_venue(ticks_ms=0) as v:
        yield v


@pytest.fixture
def world(venue):
    w = build_world([venue])
    yield w
    w.stack.close()


def venue_opens_per_coid(world, logins):
    """client_order_id -> number of opening deals at the venue, over the given accounts."""
    counts: dict[str, int] = {}
    for login in logins:
        status, deals = world.api().get(f"/v1/accounts/{login}/deals")
        assert status == 200
        for deal in deals:
            if deal["entry"] == "in":
                counts[deal["client_order_id"]] = counts.get(deal["client_order_id"], 0) + 1
    return counts


def settled(expected: int):
    """True once `expected` instructions exist and none is still to be sent or in flight."""

    def check() -> bool:
        return (
            CopyInstruction.objects.count() >= expected
            and not CopyInstruction.objects.filter(
                status__in=["ready", "in_flight", "waiting"]
            ).exists()
        )

    return check


def test_partial_fills_link_what_filled(world):
    master = world.master()
    subs = [world.follower(master) for _ in range(10)]
    world.start()
    assert world.api().post("/v1/admin/faults", {"partial_fill_rate": 0.5, "seed": 3})[0] == 200
    world.order(master.account.login, volume=1)
    wait_for(settled(10), timeout=30, what="settled")
    assert world.api().post("/v1/admin/faults", {"partial_fill_rate": 0.0, "seed": 3})[0] == 200
    partial = TradeLink.objects.filter(follower_volume__lt=Decimal("1"), status="open")
    assert partial.exists()
    for link in TradeLink.objects.filter(subscription__in=subs):
        (pos,) = world.positions(link.follower_account.login)
        assert Decimal(str(pos["volume"])) == link.follower_volume


def test_slow_batch_taken_over_by_the_sweeper_is_recorded_once(world):
    """An executor whose batch was handed to another (it looked stuck) records nothing for it:
    one fill per order, whoever answers last."""
    from decimal import Decimal as D

    from copytrading.models import Fill, MasterEvent
    from copytrading.services import execution as X
    from copytrading.services.fanout import fanout_events

    master = world.master()
    sub = world.follower(master)
    status, answer = world.api().post(
        "/v1/orders",
        {"account": master.account.login, "symbol": "EURUSD", "side": "buy", "type": "market",
         "volume": 1, "client_order_id": "slow-1"},
    )  # fmt: skip
    assert status == 201
    now = timezone.now()
    event = MasterEvent.objects.create(
        broker_server=world.servers[0], account=master.account, venue_event_id="s1",
        event_type="position_opened", master_position_id=str(answer["position_id"]),
        symbol="EURUSD", side="buy", volume=D("1"), price=D("1.1"), raw={}, venue_ts=now,
        received_at=now,
    )  # fmt: skip
    fanout_events(event_ids=[event.id])
    (inst,) = CopyInstruction.objects.filter(subscription=sub)
    server = world.servers[0]
    first = X._claim(server.id, [inst.id])  # the slow executor claims, then stalls
    X.instructions_recover(now=timezone.now() + timedelta(minutes=1))  # looks stuck
    X.instructions_execute(server_id=server.id, instruction_ids=[inst.id])  # the other one
    from brokers.gateways import sync_gateway_for

    gateway = sync_gateway_for(server)
    late = gateway.run(X._send_async(gateway.gateway, first))  # the slow one's answer...
    X._record(first, late)  # ...arrives last and is not recorded again
    assert Fill.objects.filter(order__instruction=inst).count() == 1
    inst.refresh_from_db()
    assert inst.status == "done"
    assert len(world.positions(sub.follower_account.login)) == 1
