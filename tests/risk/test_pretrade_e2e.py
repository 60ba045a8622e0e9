"""Pre-trade checks end to end: two paper venues over real sockets (the master on A, followers
on B with other prices, symbol names and lot rules), Redis, PostgreSQL and a real Celery worker
running the listener, the fan-out and the execution (and a real beat for the recovery task)."""

from decimal import Decimal

import pytest

from copytrading.models import CopyInstruction, TradeLink
from copytrading.services import master_pause
from copytrading.services.waiting import market_waits_redecide
from risk.models import SubscriptionLimits
from risk.services import server_switch_set
from tests.copytrading.copy_world import build_world
from tests.copytrading.test_copy_e2e import venues  # venue A, and B with suffix m, lots of 0.1
from tests.processes import celery_beat, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

__all__ = ["venues"]


@pytest.fixture
def world(venues):
    w = build_world(list(venues))
    yield w
    w.api(1).post("/v1/admin/symbols/EURUSDm", {"trading": True})
    w.stack.close()


def follower(world, master, i: int, **limits):
    sub = world.follower(master, i)
    if limits:
        SubscriptionLimits.objects.create(subscription=sub, **limits)
    return sub


def venue_orders(world, sub, i: int = 1) -> list[dict]:
    status, orders = world.api(i).get(f"/v1/accounts/{sub.follower_account.login}/orders")
    assert status == 200
    return orders


def test_lots_cut_slippage_skip_and_a_limit_order_the_masters_close_cancels(world):
    master = world.master(0)
    capped = follower(world, master, 1, max_lots_total=Decimal("1.5"))
    skips = follower(world, master, 1, max_slippage=Decimal("0.0005"))
    limits = follower(world, master, 1, max_slippage=Decimal("0.0005"), slippage_policy="limit")
    # Venue B asks 0.001 more than venue A, where the master fills at 1.1001.
    status, _ = world.api(1).post(
        "/v1/admin/prices", {"symbol": "EURUSDm", "bid": 1.101, "ask": 1.1011}
    )
    assert status == 200
    world.start()
    first = world.order(master.account.login, volume=1)
    world.wait_links(capped, "open")
    world.order(master.account.login, volume=1)
    world.wait_links(capped, "open", n=2)
    volumes = sorted(
        Decimal(str(p["volume"])) for p in world.positions(capped.follower_account.login, 1)
    )
    assert volumes == [Decimal("0.5"), Decimal("1")]  # the second open cut to what fits
    cut = CopyInstruction.objects.filter(subscription=capped).order_by("id").last()
    assert cut.decision["checks"][0]["outcome"] == "cut"

    assert list(
        CopyInstruction.objects.filter(subscription=skips).values_list("reason", flat=True)
    ) == ["MAX_SLIPPAGE", "MAX_SLIPPAGE"]
    assert world.positions(skips.follower_account.login, 1) == []

    world.wait_links(limits, "pending", n=2)
    orders = venue_orders(world, limits)
    assert sorted((o["type"], Decimal(str(o["price"]))) for o in orders) == [
        ("limit", Decimal("1.1001")),
        ("limit", Decimal("1.1001")),
    ]
    world.close(master.account.login, first["position_id"])
    wait_for(
        lambda: len(venue_orders(world, limits)) == 1,
        what="the master's close cancels the follower's limit order",
    )
    world.wait_links(limits, "closed")
    world.wait_links(capped, "closed")


def test_market_closed_waits_and_server_and_master_switches_stop_openings_not_closes(world):
    master = world.master(0)
    waits = follower(world, master, 1, market_closed_policy="wait", market_wait_seconds=300)
    plain = follower(world, master, 0)
    world.start()
    status, _ = world.api(1).post("/v1/admin/symbols/EURUSDm", {"trading": False})
    assert status == 200
    first = world.order(master.account.login, volume=1)
    world.wait_links(plain, "open")
    # The venue answered MARKET_CLOSED: the open waits, its link still opening.
    wait_for(
        lambda: CopyInstruction.objects.filter(subscription=waits, status="market").exists(),
        what="the open waiting for its market",
    )
    assert TradeLink.objects.get(subscription=waits).status == "opening"
    assert market_waits_redecide() == 1  # still closed: keeps waiting
    assert CopyInstruction.objects.get(subscription=waits).status == "market"

    world.api(1).post("/v1/admin/symbols/EURUSDm", {"trading": True})
    assert market_waits_redecide() == 1  # the recovery task's work, called here (no beat)
    world.wait_links(waits, "open")
    assert len(world.positions(waits.follower_account.login, 1)) == 1

    server_switch_set(
        server=waits.follower_account.broker_server, active=True, reason="B incident", actor=None
    )
    world.order(master.account.login, volume=1)
    world.wait_links(plain, "open", n=2)  # another server's follower still copies
    refused = wait_for(
        lambda: CopyInstruction.objects.filter(subscription=waits, reason="KILL_SWITCH").first(),
        what="the server switch skip",
    )
    assert "follower_server" in refused.detail
    # The per-master switch is the master pause: openings stop for every follower.
    master_pause(master=master, reason="strategy under review", actor=None)
    world.order(master.account.login, volume=1)
    paused = wait_for(
        lambda: CopyInstruction.objects.filter(
            subscription=plain, reason="KILL_SWITCH", detail__contains="master"
        ).first(),
        what="the master pause skip",
    )
    assert paused.status == "skipped"
    world.close(master.account.login, first["position_id"])
    world.wait_links(waits, "closed")  # closes go through the server switch
    world.wait_links(plain, "closed")  # and the master pause
    assert world.positions(waits.follower_account.login, 1) == []
    assert len(world.positions(plain.follower_account.login, 0)) == 1


def test_a_close_refused_for_a_closed_market_waits_and_goes_once_it_reopens(world):
    master = world.master(0)
    sub = follower(world, master, 1)  # no limits: a close waits whatever the open policy
    world.start()
    world.stack.enter_context(celery_beat())  # copytrading.recover_instructions every 5 s
    opened = world.order(master.account.login, volume=1)
    world.wait_links(sub, "open")
    login = sub.follower_account.login
    status, _ = world.api(1).post("/v1/admin/symbols/EURUSDm", {"trading": False})
    assert status == 200
    world.close(master.account.login, opened["position_id"])
    # The venue answered MARKET_CLOSED: the close waits for the market, its reason shown.
    waiting = wait_for(
        lambda: (
            CopyInstruction.objects.filter(subscription=sub, action="close")
            .exclude(status__in=("ready", "in_flight"))
            .first()
        ),
        what="the follower close refused by the closed market",
    )
    assert (waiting.status, waiting.reason) == ("market", "MARKET_CLOSED")
    assert waiting.get_status_display() == "Waiting for the market to open"
    assert TradeLink.objects.get(subscription=sub).status == "open"
    assert len(world.positions(login, 1)) == 1

    world.api(1).post("/v1/admin/symbols/EURUSDm", {"trading": True})
    world.wait_links(sub, "closed", timeout=15)  # within the recovery period (5 s) and a send
    assert world.positions(login, 1) == []
    waiting.refresh_from_db()
    assert (waiting.status, waiting.attempts) == ("done", 2)
    assert waiting.order.status == "filled"  # one order (one client order id), sent twice
    status, deals = world.api(1).get(f"/v1/accounts/{login}/deals")
    assert status == 200
    assert [d["client_order_id"] for d in deals if d["entry"] == "out"] == [waiting.client_order_id]


def test_a_reconciliation_reopen_passes_the_pretrade_checks_of_an_open(world):
    from copytrading.prices import quotes
    from copytrading.services.reconcile import followers_reconcile

    master = world.master(0)
    plain = follower(world, master, 1)
    slips = follower(world, master, 1, max_slippage=Decimal("0.0005"))
    world.start()
    world.order(master.account.login, volume=1)
    world.wait_links(plain, "open")
    world.wait_links(slips, "open")
    # Venue B now asks 0.001 more than the master's fill: a new open would slip too far.
    world.api(1).post("/v1/admin/prices", {"symbol": "EURUSDm", "bid": 1.101, "ask": 1.1011})
    server = slips.follower_account.broker_server
    wait_for(  # the quote cache (a second) has the new price
        lambda: Decimal(quotes(server, {"EURUSDm"})["EURUSDm"]["ask"]) == Decimal("1.1011"),
        what="the new quote",
    )
    for sub in (plain, slips):
        (pos,) = world.positions(sub.follower_account.login, 1)
        world.close(sub.follower_account.login, pos["position_id"], 1)  # by hand
    statuses = followers_reconcile()
    assert statuses[plain.id][0] == "drifting"
    assert statuses[slips.id][0] == "out_of_sync"  # nothing it may repair
    refused = CopyInstruction.objects.get(subscription=slips, origin="repair")
    assert (refused.action, refused.status, refused.reason) == ("open", "skipped", "MAX_SLIPPAGE")
    assert "not re-opened" in refused.detail
    assert TradeLink.objects.get(subscription=slips).status == "closed"
    wait_for(lambda: len(world.positions(plain.follower_account.login, 1)) == 1, what="reopen")
    world.wait_links(plain, "open")
    # The master pause stops a repair's open like any other.
    master_pause(master=master, reason="strategy under review", actor=None)
    (pos,) = world.positions(plain.follower_account.login, 1)
    world.close(plain.follower_account.login, pos["position_id"], 1)
    followers_reconcile()
    paused = CopyInstruction.objects.filter(subscription=plain, origin="repair").last()
    assert (paused.status, paused.reason) == ("skipped", "KILL_SWITCH")
    assert world.positions(plain.follower_account.login, 1) == []
    assert followers_reconcile() == {
        plain.id: ("in_sync", Decimal(0)),
        slips.id: ("in_sync", Decimal(0)),
    }
