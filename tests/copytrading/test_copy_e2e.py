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


def test_partial_close_and_sltp_change_mirrored(world):
    master = world.master(0)
    sub = world.follower(master, 0, risk_multiplier="1")
    world.start()
    login = master.account.login
    opened = world.order(login, volume=1, sl=1.05, tp=1.2)
    world.wait_links(sub, "open")
    follower_login = sub.follower_account.login
    (pos,) = world.positions(follower_login)
    assert (pos["sl"], pos["tp"]) == (1.05, 1.2)
    status, _ = world.api().patch(
        f"/v1/positions/{opened['position_id']}", {"account": login, "sl": 1.06, "tp": 1.15}
    )
    assert status == 200
    wait_for(
        lambda: (
            (world.positions(follower_login)[0]["sl"], world.positions(follower_login)[0]["tp"])
            == (1.06, 1.15)
        ),
        what="SL/TP copied",
    )
    world.close(login, opened["position_id"], volume=0.4)
    wait_for(
        lambda: Decimal(str(world.positions(follower_login)[0]["volume"])) == Decimal("0.6"),
        what="the partial close copied",
    )
    world.close(login, opened["position_id"])
    world.wait_links(sub, "closed")
    assert world.positions(follower_login) == []


def test_pending_order_placed_filled_and_cancelled(world):
    master = world.master(0)
    sub = world.follower(master, 0, copy_pending_orders=1)
    world.start()
    login, follower_login = master.account.login, sub.follower_account.login
    # A buy limit below the market (ask 1.10010) rests at both venues.
    order = world.order(login, type="limit", price=1.09, volume=1)
    world.wait_links(sub, "pending")
    status, follower_orders = world.api().get(f"/v1/accounts/{follower_login}/orders")
    assert status == 200
    assert len(follower_orders) == 1
    assert follower_orders[0]["type"] == "limit"
    # A second one is cancelled by the master: the copy is cancelled too.
    second = world.order(login, type="limit", price=1.08, volume=1)
    world.wait_links(sub, "pending", n=2)
    assert world.api().delete(f"/v1/orders/{second['order_id']}?account={login}")[0] == 200
    world.wait_links(sub, "closed")
    status, follower_orders = world.api().get(f"/v1/accounts/{follower_login}/orders")
    assert len(follower_orders) == 1
    # The price reaches the first: both fill at their own venue; no second open is copied.
    assert (
        world.api().post("/v1/admin/prices", {"symbol": "EURUSD", "bid": 1.0889, "ask": 1.0890})[0]
        == 200
    )
    wait_for(lambda: len(world.positions(follower_login)) == 1, what="the follower's copy filled")
    wait_for(
        lambda: CopyInstruction.objects.filter(
            subscription=sub, master_event__event_type="position_opened"
        ).exists(),
        what="the fill's position_opened fanned out",
    )
    assert len(world.positions(login)) == 1
    assert FollowerOrder.objects.filter(action="open").count() == 0
    assert order["status"] == "placed"
    # Reconciliation finds the follower's filled copy; the master's close then closes it.
    from copytrading.services.reconcile import followers_reconcile

    followers_reconcile()
    link = TradeLink.objects.get(subscription=sub, status="open")
    assert link.follower_position_id == str(world.positions(follower_login)[0]["position_id"])
    (master_position,) = world.positions(login)
    assert link.master_position_id == str(master_position["position_id"])
    world.close(login, master_position["position_id"])
    wait_for(lambda: world.positions(follower_login) == [], what="the copy closed with the master")


def test_master_close_while_copy_in_flight_waits_for_the_open(world):
    master = world.master(0)
    sub = world.follower(master, 0)
    world.start()
    # The follower venue answers slowly: the master's close arrives while the open is in flight.
    assert world.api().post("/v1/admin/faults", {"latency_ms": 300, "seed": 3})[0] == 200
    opened = world.order(master.account.login, volume=1)
    world.close(master.account.login, opened["position_id"])
    world.wait_links(sub, "closed", timeout=30)
    assert world.api().post("/v1/admin/faults", {"latency_ms": 0, "seed": 3})[0] == 200
    assert world.positions(sub.follower_account.login) == []
    close = CopyInstruction.objects.get(subscription=sub, action="close")
    open_ = CopyInstruction.objects.get(subscription=sub, action="open")
    assert close.order.sent_at >= open_.order.completed_at  # never overtook the open


def test_duplicate_master_events_copy_once(world):
    from copytrading.models import MasterEvent
    from copytrading.services.fanout import fanout_events

    master = world.master(0)
    sub = world.follower(master, 0)
    world.start()
    world.order(master.account.login, volume=1)
    world.wait_links(sub, "open")
    ids = list(MasterEvent.objects.values_list("id", flat=True))
    MasterEvent.objects.update(fanout_state="pending")  # as if redelivered
    fanout_events(event_ids=ids)
    fanout_events(event_ids=ids)
    assert CopyInstruction.objects.filter(subscription=sub).count() == 1
    assert FollowerOrder.objects.count() == 1
    assert len(world.positions(sub.follower_account.login)) == 1


def test_reconciliation_reopens_a_copy_closed_behind_its_back(world):
    from copytrading.services.reconcile import followers_reconcile

    master = world.master(0)
    sub = world.follower(master, 0)
    world.start()
    world.order(master.account.login, volume=1)
    world.wait_links(sub, "open")
    follower_login = sub.follower_account.login
    (pos,) = world.positions(follower_login)
    world.close(follower_login, pos["position_id"])  # by hand, not by the back office
    statuses = followers_reconcile()
    assert statuses[sub.id][0] == "drifting"
    assert statuses[sub.id][1] == Decimal("1")
    repair = CopyInstruction.objects.get(subscription=sub, origin="repair")
    assert (repair.action, repair.reason) == ("open", "REPAIR_REOPEN")
    wait_for(lambda: len(world.positions(follower_login)) == 1, what="the reopened copy")
    link = world.wait_links(sub, "open") and TradeLink.objects.get(subscription=sub)
    assert link.follower_position_id == str(world.positions(follower_login)[0]["position_id"])
    assert followers_reconcile()[sub.id] == ("in_sync", Decimal("0"))
    followers_reconcile()
    assert CopyInstruction.objects.filter(subscription=sub, origin="repair").count() == 1


def test_reconciliation_closes_unmanaged_positions_of_copy_only_followers(world):
    from copytrading.models import CopyFollower
    from copytrading.services.reconcile import followers_reconcile

    master = world.master(0)
    copy_only = world.follower(master, 0)
    manual = world.follower(master, 0)
    CopyFollower.objects.filter(account=copy_only.follower_account).update(
        manual_trading_mode=False
    )
    world.start()
    world.order(copy_only.follower_account.login, volume=0.3)  # traded by hand
    world.order(manual.follower_account.login, volume=0.2)
    statuses = followers_reconcile()
    assert statuses[copy_only.id] == ("drifting", Decimal("0.3"))
    assert statuses[manual.id] == ("out_of_sync", Decimal("0.2"))  # flagged, left alone
    wait_for(lambda: world.positions(copy_only.follower_account.login) == [], what="the close")
    assert len(world.positions(manual.follower_account.login)) == 1
    repair = CopyInstruction.objects.get(subscription=copy_only, origin="repair")
    assert repair.reason == "REPAIR_CLOSE_UNMANAGED"


def test_copy_existing_positions_on_subscribe(world):
    from copytrading.services.existing import subscription_copy_existing

    master = world.master(0)
    early = world.follower(master, 0)
    world.start()
    world.order(master.account.login, volume=1)
    world.order(master.account.login, volume=1)
    world.wait_links(early, "open", n=2)
    late = world.follower(master, 0, copy_existing_positions=1)
    plain = world.follower(master, 0)
    assert subscription_copy_existing(subscription_id=late.id) == 2
    assert subscription_copy_existing(subscription_id=plain.id) == 0  # setting off
    world.wait_links(late, "open", n=2)
    assert subscription_copy_existing(subscription_id=late.id) == 2  # decided again...
    assert CopyInstruction.objects.filter(subscription=late).count() == 2  # ...stored once
    assert len(world.positions(late.follower_account.login)) == 2
    assert world.positions(plain.follower_account.login) == []


def test_copy_settings_shape_each_followers_trade(world):
    """One master trade, many followers with different settings: each gets its own copy."""
    master = world.master(0, balance=100000)
    master.account.equity = Decimal("100000")
    master.account.save(update_fields=["equity"])
    subs = {
        "multiplier": world.follower(master, 0, volume_mode=0, risk_multiplier="0.3"),
        "proportional": world.follower(master, 0, balance=20000, volume_mode=1),
        "fixed": world.follower(master, 0, volume_mode=2, fixed_volume="0.07"),
        "equity": world.follower(master, 0, balance=5000, volume_mode=3, fixed_volume="0.4"),
        "capped": world.follower(master, 0, risk_multiplier="3", max_volume="1.25"),
        "too_small": world.follower(master, 0, risk_multiplier="0.3", min_volume="0.5"),
        "reverse": world.follower(master, 0, reverse_direction=1),
        "no_stops": world.follower(master, 0, copy_sl=0, copy_tp=0),
        "only_gold": world.follower(master, 0, symbols_mode=1, symbols="XAUUSD"),
        "not_euro": world.follower(master, 0, symbols_mode=2, symbols="EURUSD"),
        "close_only": world.follower(master, 0, copy_mode=1),
        "full": world.follower(master, 0, max_positions=1),
    }
    world.start()
    world.order(master.account.login, volume=1, sl=1.05, tp=1.2)
    wait_for(
        lambda: CopyInstruction.objects.filter(status__in=["done", "skipped"]).count() == len(subs),
        what="every subscription decided and settled",
    )

    def held(name):
        positions = world.positions(subs[name].follower_account.login)
        return [(p["side"], Decimal(str(p["volume"])), p["sl"], p["tp"]) for p in positions]

    assert held("multiplier") == [("buy", Decimal("0.3"), 1.05, 1.2)]
    assert held("proportional") == [("buy", Decimal("0.2"), 1.05, 1.2)]  # 1 x 20k / 100k
    assert held("fixed") == [("buy", Decimal("0.07"), 1.05, 1.2)]
    assert held("equity") == [("buy", Decimal("0.2"), 1.05, 1.2)]  # 0.4 x 5k / 10k
    assert held("capped") == [("buy", Decimal("1.25"), 1.05, 1.2)]
    assert held("too_small") == []
    assert held("reverse") == [("sell", Decimal("1"), 1.2, 1.05)]  # SL and TP swap
    assert held("no_stops") == [("buy", Decimal("1"), None, None)]
    assert held("only_gold") == []
    assert held("not_euro") == []
    assert held("close_only") == []
    assert held("full") == [("buy", Decimal("1"), 1.05, 1.2)]
    reasons = dict(
        CopyInstruction.objects.filter(status="skipped").values_list("subscription_id", "reason")
    )
    assert reasons == {
        subs["too_small"].id: "VOLUME_BELOW_MINIMUM",
        subs["only_gold"].id: "SYMBOL_FILTERED",
        subs["not_euro"].id: "SYMBOL_FILTERED",
        subs["close_only"].id: "CLOSE_ONLY_MODE",
    }
    # max_positions=1: the second master trade is not copied to "full".
    world.order(master.account.login, volume=1)
    wait_for(
        lambda: CopyInstruction.objects.filter(subscription=subs["full"]).count() == 2,
        what="the second decision",
    )
    second = CopyInstruction.objects.filter(subscription=subs["full"]).order_by("id").last()
    assert second.reason == "MAX_POSITIONS_REACHED"


def test_kill_switch_and_master_pause_stop_openings_not_closes(world):
    from copytrading.services import master_pause, master_resume
    from risk.services import kill_switch_set

    master = world.master(0)
    sub = world.follower(master, 0)
    world.start()
    first = world.order(master.account.login, volume=1)
    world.wait_links(sub, "open")
    kill_switch_set(active=True, reason="venue incident", actor=None)
    world.order(master.account.login, volume=1)
    killed = wait_for(
        lambda: CopyInstruction.objects.filter(subscription=sub, reason="KILL_SWITCH").first(),
        what="the kill switch skip",
    )
    assert killed.status == "skipped"
    world.close(master.account.login, first["position_id"])  # closes still go through
    world.wait_links(sub, "closed")
    kill_switch_set(active=False, reason="resolved", actor=None)
    master_pause(master=master, reason="strategy under review", actor=None)
    world.order(master.account.login, volume=1)
    wait_for(
        lambda: CopyInstruction.objects.filter(subscription=sub, reason="KILL_SWITCH").count() == 2,
        what="the master pause skip",
    )
    master_resume(master=master, reason="review done", actor=None)
    world.order(master.account.login, volume=1)
    world.wait_links(sub, "open")
    assert len(world.positions(sub.follower_account.login)) == 1


def test_close_waiting_for_an_open_refused_at_sending_time_is_skipped(world):
    """A pause that commits between the decision and the send: the open is refused, and the
    close that waited for it is skipped (OPEN_FAILED), never left waiting."""
    from copytrading.services.execution import instructions_execute
    from copytrading.services.fanout import fanout_events

    master = world.master(0)
    sub = world.follower(master, 0)
    # No workers here: fan-out and execution run in this test, step by step.
    from django.utils import timezone

    from copytrading.models import MasterEvent

    now = timezone.now()
    common = {
        "broker_server": world.servers[0],
        "account": master.account,
        "symbol": "EURUSD",
        "side": "buy",
        "raw": {},
        "venue_ts": now,
        "received_at": now,
    }
    opened = MasterEvent.objects.create(
        venue_event_id="t1", event_type="position_opened", master_position_id="777",
        volume=Decimal("1"), price=Decimal("1.1"), **common,
    )  # fmt: skip
    closed = MasterEvent.objects.create(
        venue_event_id="t2", event_type="position_closed", master_position_id="777",
        volume=Decimal("1"), remaining_volume=Decimal("0"), **common,
    )  # fmt: skip
    fanout_events(event_ids=[opened.id, closed.id])
    open_i = CopyInstruction.objects.get(master_event=opened)
    close_i = CopyInstruction.objects.get(master_event=closed)
    assert (open_i.status, close_i.status) == ("ready", "waiting")
    subscription_pause(subscription=sub, reason="customer asked", actor=None)
    instructions_execute(server_id=world.servers[0].id, instruction_ids=[open_i.id])
    open_i.refresh_from_db()
    close_i.refresh_from_db()
    assert (open_i.status, open_i.reason) == ("skipped", "SUBSCRIPTION_PAUSED")
    assert (close_i.status, close_i.reason) == ("skipped", "OPEN_FAILED")
    assert world.positions(sub.follower_account.login) == []


def test_pending_copy_filled_as_the_master_cancels_is_closed_by_reconciliation(world):
    from copytrading.services.reconcile import followers_reconcile

    master = world.master(0)
    sub = world.follower(master, 1, copy_pending_orders=1)  # on the other broker
    world.start()
    login, follower_login = master.account.login, sub.follower_account.login
    order = world.order(login, type="limit", price=1.09, volume=1)
    world.wait_links(sub, "pending")
    # Prices differ across brokers: the follower's copy fills at its venue only...
    status, _ = world.api(1).post(
        "/v1/admin/prices", {"symbol": "EURUSDm", "bid": 1.0889, "ask": 1.0890}
    )
    assert status == 200
    wait_for(lambda: len(world.positions(follower_login, 1)) == 1, what="the copy filled")
    # ...and the master cancels its own order before reconciliation noticed the fill.
    assert world.api().delete(f"/v1/orders/{order['order_id']}?account={login}")[0] == 200
    world.wait_links(sub, "closed")
    assert len(world.positions(follower_login, 1)) == 1  # an orphan, for now
    followers_reconcile()
    repair = CopyInstruction.objects.get(subscription=sub, origin="repair")
    assert repair.reason == "REPAIR_CLOSE_ORPHAN"
    wait_for(lambda: world.positions(follower_login, 1) == [], what="the orphan closed")
