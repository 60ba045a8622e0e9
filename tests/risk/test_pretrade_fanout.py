"""Pre-trade checks in the fan-out, against PostgreSQL and a real paper venue (no workers):
the inputs are gathered in bulk (limits, open lots, margin, quotes, server switches), every
result is stored on the instruction and replays; a server switch stops openings (at the
decision and again at the claim) but not closes; an open waits for a closed market and is
decided again by the recovery task; a close refused for a closed market waits and is sent
again by it."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from brokers.models import Symbol
from copytrading.models import CopyInstruction, TradeLink
from copytrading.services.execution import instructions_execute
from copytrading.services.fanout import fanout_and_execute, fanout_events
from copytrading.services.waiting import market_waits_redecide
from risk.models import SubscriptionLimits
from risk.services import server_switch_set
from tests.copytrading.test_pipeline_fanout import (  # the fixtures: one venue, no workers
    assert_replays,
    master_event,
    queued,
    venue,
    world,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

__all__ = ["queued", "venue", "world"]


def limits(sub, **fields) -> SubscriptionLimits:
    return SubscriptionLimits.objects.create(subscription=sub, **fields)


def instruction(sub, event) -> CopyInstruction:
    return CopyInstruction.objects.get(subscription=sub, master_event=event)


def test_limits_cut_skip_or_leave_each_followers_open(world, queued):
    master = world.master(0)
    free = world.follower(master, 0)
    capped = world.follower(master, 0)
    limits(capped, max_lots_total=Decimal("1.5"))
    needs_sl = world.follower(master, 0)
    limits(needs_sl, require_master_sl=True)
    margin = world.follower(master, 0, balance=1000)
    limits(margin, margin_policy="cut")

    first = master_event(world, master, "position_opened", "P1", sl=Decimal("1.09"))
    fanout_and_execute(event_ids=[first.id])  # sent in process: the links are open
    second = master_event(world, master, "position_opened", "P2")
    fanout_events(event_ids=[second.id])

    assert instruction(free, second).volume == Decimal(1)
    cut = instruction(capped, second)
    assert (cut.status, cut.volume) == ("ready", Decimal("0.5"))
    (check,) = cut.decision["checks"]
    assert check == {
        "code": "MAX_LOTS_TOTAL",
        "outcome": "cut",
        "figures": {"open_lots": "1", "max_lots": "1.5", "volume": "1", "cut_to": "0.5"},
    }
    assert Decimal(cut.inputs["exposure"]["total_lots"]) == 1
    assert (instruction(needs_sl, first).status, instruction(needs_sl, second).reason) == (
        "done",
        "NO_MASTER_SL",
    )
    # 1,000 of equity at leverage 100 carries 100,000 of notional: 0.9 lots at 1.1001.
    sized = instruction(margin, first)
    assert sized.volume == Decimal("0.9")
    assert sized.inputs["quote"]["ask"] == "1.1001"
    assert_replays()


def test_slippage_skip_and_limit_order_at_the_masters_price(world, queued):
    master = world.master(0)
    skip = world.follower(master, 0)
    limits(skip, max_slippage=Decimal("0.00005"))
    limit = world.follower(master, 0)
    limits(limit, max_slippage=Decimal("0.00005"), slippage_policy="limit")
    near = world.follower(master, 0)
    limits(near, max_slippage=Decimal("0.001"))
    # The venue asks 1.10010; the master filled at 1.1.
    opened = master_event(world, master, "position_opened", "P1")
    fanout_and_execute(event_ids=[opened.id])
    assert instruction(skip, opened).reason == "MAX_SLIPPAGE"
    placed = instruction(limit, opened)
    assert (placed.action, Decimal(placed.decision["price"]), placed.status) == (
        "place_pending",
        Decimal("1.1"),
        "done",
    )
    assert TradeLink.objects.get(subscription=limit).status == "pending"
    assert instruction(near, opened).action == "open"
    closed = master_event(world, master, "position_closed", "P1", remaining_volume=Decimal(0))
    fanout_events(event_ids=[closed.id])
    assert instruction(limit, closed).action == "cancel_pending", instruction(limit, closed).detail
    assert_replays()


def test_server_switch_stops_openings_at_decision_and_claim_not_closes(world, queued):
    master = world.master(0)
    sub = world.follower(master, 0)
    server = sub.follower_account.broker_server
    first = master_event(world, master, "position_opened", "P1")
    fanout_and_execute(event_ids=[first.id])
    server_switch_set(server=server, active=True, reason="broker incident", actor=None)
    second = master_event(world, master, "position_opened", "P2")
    fanout_events(event_ids=[second.id])
    refused = instruction(sub, second)
    assert (refused.reason, refused.status) == ("KILL_SWITCH", "skipped")
    assert "follower_server" in refused.detail
    closed = master_event(world, master, "position_closed", "P1", remaining_volume=Decimal(0))
    fanout_and_execute(event_ids=[closed.id])
    assert instruction(sub, closed).status == "done"  # closes always go through
    assert_replays()

    # Decided while off, switched on before the claim: refused at sending time.
    server_switch_set(server=server, active=False, reason="resolved", actor=None)
    third = master_event(world, master, "position_opened", "P3")
    fanout_events(event_ids=[third.id])
    server_switch_set(server=server, active=True, reason="again", actor=None)
    instructions_execute(server_id=server.id, instruction_ids=[instruction(sub, third).id])
    assert (instruction(sub, third).status, instruction(sub, third).reason) == (
        "skipped",
        "KILL_SWITCH",
    )
    assert server.risk_switch.history.count() == 4  # created (off), then three changes


def test_open_waits_for_a_closed_market_then_goes_or_expires(world, queued):
    master = world.master(0)
    waits = world.follower(master, 0, max_positions=1)  # its own waiting open is not counted
    limits(waits, market_closed_policy="wait", market_wait_seconds=600)
    skips = world.follower(master, 0)
    Symbol.objects.filter(name="EURUSD").update(trading=False)
    opened = master_event(world, master, "position_opened", "P1")
    fanout_events(event_ids=[opened.id])
    assert instruction(skips, opened).reason == "MARKET_CLOSED"
    waiting = instruction(waits, opened)
    assert (waiting.status, waiting.action) == ("market", "open")
    assert TradeLink.objects.get(subscription=waits).status == "opening"
    assert_replays()

    # The venue's market is open: the recovery task reads it and sends the open.
    assert market_waits_redecide() == 1
    ready = instruction(waits, opened)
    assert ready.status == "ready"
    assert queued == [(ready.follower_account.broker_server_id, [ready.id])]
    assert ready.inputs["waited_seconds"] >= 0


def test_waiting_open_expires_or_ends_with_the_master_position(world, queued):
    master = world.master(0)
    subs = [world.follower(master, 0) for _ in range(2)]
    for sub in subs:
        limits(sub, market_closed_policy="wait", market_wait_seconds=60)
    world.api().post("/v1/admin/symbols/EURUSD", {"trading": False})
    try:
        Symbol.objects.filter(name="EURUSD").update(trading=False)
        first = master_event(world, master, "position_opened", "P1")
        fanout_events(event_ids=[first.id])
        # The market stays closed: still waiting; past the expiry: skipped.
        assert market_waits_redecide() == 2
        assert set(CopyInstruction.objects.values_list("status", flat=True)) == {"market"}
        CopyInstruction.objects.filter(subscription=subs[1]).update(
            created_at=timezone.now() - timedelta(seconds=61)
        )
        market_waits_redecide()
        closed = master_event(world, master, "position_closed", "P1", remaining_volume=Decimal(0))
        fanout_events(event_ids=[closed.id])
        market_waits_redecide()
    finally:
        world.api().post("/v1/admin/symbols/EURUSD", {"trading": True})
    gone, expired = (instruction(sub, first) for sub in subs)
    assert (gone.status, gone.reason) == ("skipped", "MASTER_POSITION_CLOSED")
    assert (expired.status, expired.reason) == ("skipped", "MARKET_WAIT_EXPIRED")
    assert expired.decision["checks"][0]["figures"]["max"] == "60"
    # The close that waited behind each open is released, never left waiting.
    assert not CopyInstruction.objects.filter(status="waiting").exists()
    assert set(TradeLink.objects.values_list("status", flat=True)) == {"skipped"}


def test_closes_refused_for_a_closed_market_wait_go_in_order_or_end_with_the_position(
    world, queued, admin_client
):
    master = world.master(0)
    kept, by_hand = world.follower(master, 0), world.follower(master, 0)
    opened = master_event(world, master, "position_opened", "P1")
    fanout_and_execute(event_ids=[opened.id])
    world.api().post("/v1/admin/symbols/EURUSD", {"trading": False})
    try:
        half = master_event(world, master, "position_closed", "P1", remaining_volume=Decimal("0.5"))
        closed = master_event(world, master, "position_closed", "P1", remaining_volume=Decimal(0))
        fanout_and_execute(event_ids=[half.id, closed.id])
        for sub in (kept, by_hand):
            for event, action in ((half, "partial_close"), (closed, "close")):
                inst = instruction(sub, event)
                assert (inst.action, inst.status, inst.reason) == (
                    action,
                    "market",
                    "MARKET_CLOSED",
                )
        page = admin_client.get("/admin/copytrading/copyinstruction/?status=market")
        assert page.status_code == 200
        assert page.content.decode().count("MARKET_CLOSED") >= 4  # staff see why they wait
        assert market_waits_redecide() == 4  # still closed: every close keeps waiting
        assert queued == []
        assert set(CopyInstruction.objects.values_list("status", flat=True)) == {"market", "done"}
    finally:
        world.api().post("/v1/admin/symbols/EURUSD", {"trading": True})
    server = world.servers[0]
    # The follower closes its copy by hand once the market reopens, before the recovery pass.
    hand_link = TradeLink.objects.get(subscription=by_hand)
    world.close(by_hand.follower_account.login, hand_link.follower_position_id)

    # Open again: the oldest close of each link goes first, the full close on the next pass.
    assert market_waits_redecide() == 4
    first = [instruction(kept, half).id, instruction(by_hand, half).id]
    assert queued == [(server.id, first)]
    assert market_waits_redecide() == 2  # the full closes wait while the partials are on the way
    assert len(queued) == 1
    instructions_execute(server_id=server.id, instruction_ids=first)
    assert instruction(kept, half).status == "done"
    gone = instruction(by_hand, half)  # the venue no longer has the position
    assert (gone.status, gone.reason) == ("done", "POSITION_NOT_FOUND")
    assert TradeLink.objects.get(subscription=by_hand).status == "closed"

    assert market_waits_redecide() == 2
    assert queued[1] == (server.id, [instruction(kept, closed).id])
    ended = instruction(by_hand, closed)  # its link closed meanwhile: never sent again
    assert (ended.status, ended.reason) == ("skipped", "ALREADY_CLOSED")
    instructions_execute(server_id=server.id, instruction_ids=[instruction(kept, closed).id])
    link = TradeLink.objects.get(subscription=kept)
    assert (link.status, link.follower_volume) == ("closed", Decimal(0))
    assert world.positions(kept.follower_account.login) == []
    assert market_waits_redecide() == 0


def test_a_close_waiting_for_the_market_ends_at_once_when_the_position_is_gone(world, queued):
    master = world.master(0)
    held, gone = world.follower(master, 0), world.follower(master, 0)
    opened = master_event(world, master, "position_opened", "P1")
    fanout_and_execute(event_ids=[opened.id])
    world.api().post("/v1/admin/symbols/EURUSD", {"trading": False})
    try:
        closed = master_event(world, master, "position_closed", "P1", remaining_volume=Decimal(0))
        fanout_and_execute(event_ids=[closed.id])
        assert {instruction(s, closed).status for s in (held, gone)} == {"market"}
        # The venue no longer holds the copy of `gone` (closed there while the market was
        # closed to the back office: as the venue lists it, another position).
        TradeLink.objects.filter(subscription=gone).update(follower_position_id="999999")
        assert market_waits_redecide() == 2
        ended = instruction(gone, closed)
        assert (ended.status, ended.reason) == ("skipped", "ALREADY_CLOSED")
        assert "gone before its market reopened" in ended.detail
        link = TradeLink.objects.get(subscription=gone)
        assert (link.status, link.follower_volume) == ("closed", Decimal(0))
        assert link.reason == "closed at the venue, not by the back office"
        assert instruction(held, closed).status == "market"  # its position is there: waits
        assert TradeLink.objects.get(subscription=held).status == "open"
        assert queued == []
    finally:
        world.api().post("/v1/admin/symbols/EURUSD", {"trading": True})
