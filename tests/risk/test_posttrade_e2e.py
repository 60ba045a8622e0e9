"""Post-trade monitors end to end: the paper venue over real sockets, Redis, PostgreSQL and a
real Celery worker running the listener, the risk monitor, the fan-out and the execution.

The venue moves prices only when told (`ticks_ms=0`), through its admin API, and reports
every account change on its stream (`account_updated`, at most one per account per
second): that is what the monitors watch.
"""

import time
from decimal import Decimal

import pytest

from brokers.paper.testing import running_venue
from copytrading.choices import CopySubscriptionStatus
from copytrading.models import CopyInstruction, CopyMaster, CopySubscription, MasterEvent, TradeLink
from copytrading.services.reconcile import followers_reconcile
from risk.models import MasterLimits, MonitorState, RiskStop, SubscriptionLimits
from risk.monitors import STOP_OUT_REASON, risk_stops_resume_due
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


def _price(world, symbol="EURUSD"):
    status, quote = world.api().get(f"/v1/prices/{symbol}")
    assert status == 200
    return Decimal(str(quote["bid"])), Decimal(str(quote["ask"]))


def _set_price(world, bid: Decimal, ask: Decimal, symbol="EURUSD") -> dict:
    status, answer = world.api().post(
        # The venue takes prices as JSON numbers (a wire format, computed in Decimal).
        "/v1/admin/prices",
        {"symbol": symbol, "bid": float(bid), "ask": float(ask)},
    )
    assert status == 200, answer
    return answer


def _quiet_reading(world, sub):
    """The monitor holds the follower's current figures (its last reading equals the
    account at the venue) and the venue's once-a-second throttle has passed since that
    reading, so the venue reports the next change at once."""
    login = sub.follower_account.login

    def ready():
        state = MonitorState.objects.filter(subscription=sub).first()
        if state is None or state.reading_at is None:
            return None
        status, account = world.api().get(f"/v1/accounts/{login}")
        assert status == 200
        if Decimal(str(account["equity"])) != state.equity:
            return None
        return state if time.time() - state.reading_at.timestamp() > 1.1 else None

    return wait_for(ready, timeout=20, what="a settled monitor reading of the follower")


def _out_deals(world, login):
    status, deals = world.api().get(f"/v1/accounts/{login}/deals")
    assert status == 200
    return [d for d in deals if d["entry"] == "out"]


def test_price_move_past_the_drawdown_closes_the_copies_within_a_second(world):
    master = world.master(0)
    sub = world.follower(master, 0, balance=10000)
    SubscriptionLimits.objects.create(subscription=sub, max_drawdown_pct=Decimal("5"))
    world.start()
    login = sub.follower_account.login
    world.order(master.account.login, volume=1)
    world.order(master.account.login, volume=1, symbol="EURUSD", side="buy")
    world.wait_links(sub, "open", n=2)
    state = _quiet_reading(world, sub)
    assert state.equity_hwm is not None
    bid, ask = _price(world)
    # 2 lots x 100,000 x 0.003 = 600 lost on ~10,000: a 6% drawdown.
    moved = _set_price(world, bid - Decimal("0.003"), ask - Decimal("0.003"))
    wait_for(lambda: world.positions(login) == [], timeout=5, what="the copies closed")
    closes = _out_deals(world, login)
    assert len(closes) == 2
    latency_ms = max(d["ts"] for d in closes) - moved["ts"]
    print(f"\nprice move -> last copy closed at the venue: {latency_ms:.1f} ms")
    assert latency_ms < 1000
    sub.refresh_from_db()
    assert sub.status == CopySubscriptionStatus.STOPPED_BY_RISK
    assert sub.status_reason.startswith("MAX_DRAWDOWN: drawdown")
    stop = RiskStop.objects.get(subscription=sub)
    assert (stop.rule, stop.policy) == ("MAX_DRAWDOWN", "close_positions")
    assert Decimal(stop.inputs["figure"]["value"]) >= Decimal("5")
    assert Decimal(stop.inputs["figure"]["inputs"]["high_water_mark"]) == state.equity_hwm
    world.wait_links(sub, "closed", n=2)
    # The master's positions are still open: nothing re-opens the stopped copies.
    assert len(world.positions(master.account.login)) == 2
    followers_reconcile()
    assert not CopyInstruction.objects.filter(subscription=sub, reason="REPAIR_REOPEN").exists()


def test_near_the_limit_a_breach_inside_the_streams_throttle_is_read_over_rest(world):
    """The stream reports an account at most once a second: a breach right after an update
    would wait for that second. Near a limit the monitor reads the account over REST
    every 0.2 s, so it acts well within the second anyway."""
    master = world.master(0)
    sub = world.follower(master, 0, balance=10000)
    SubscriptionLimits.objects.create(subscription=sub, max_drawdown_pct=Decimal("5"))
    world.start()
    login = sub.follower_account.login
    world.order(master.account.login, volume=2)
    world.wait_links(sub, "open")
    settled = _quiet_reading(world, sub)
    bid, ask = _price(world)
    # 2 lots x 100,000 x 0.0018 = 360: about 3.6% of 5% used, reported at once...
    _set_price(world, bid - Decimal("0.0018"), ask - Decimal("0.0018"))
    wait_for(
        lambda: MonitorState.objects.get(subscription=sub).equity < settled.equity - 300,
        timeout=5,
        what="the near-limit reading",
    )
    # ...and the breach comes inside the second in which the stream is throttled.
    moved = _set_price(world, bid - Decimal("0.003"), ask - Decimal("0.003"))
    wait_for(lambda: world.positions(login) == [], timeout=5, what="the copy closed")
    latency_ms = max(d["ts"] for d in _out_deals(world, login)) - moved["ts"]
    print(f"\nbreach inside the stream's throttle -> copy closed: {latency_ms:.1f} ms")
    stop = RiskStop.objects.get(subscription=sub)
    assert stop.inputs["reading"]["source"] == "poll"
    assert latency_ms < 1000


def test_daily_loss_stop_resumes_the_next_day(world):
    master = world.master(0)
    sub = world.follower(master, 0, balance=10000)
    SubscriptionLimits.objects.create(
        subscription=sub, daily_loss_limit=Decimal("300"), resume_next_period=True
    )
    world.start()
    world.order(master.account.login, volume=1)
    world.wait_links(sub, "open")
    _quiet_reading(world, sub)
    bid, ask = _price(world)
    _set_price(world, bid - Decimal("0.004"), ask - Decimal("0.004"))  # -400 today
    stop = wait_for(
        lambda: RiskStop.objects.filter(subscription=sub).first(), timeout=5, what="a stop"
    )
    assert stop.rule == "DAILY_LOSS"
    world.wait_links(sub, "closed")
    sub.refresh_from_db()
    assert sub.status == CopySubscriptionStatus.STOPPED_BY_RISK
    # While stopped, a new master trade is not copied.
    world.order(master.account.login, volume=1)
    wait_for(
        lambda: CopyInstruction.objects.filter(subscription=sub, status="skipped").exists(),
        what="the open skipped",
    )
    # The clock is the test's: one second before the next day nothing resumes...
    assert risk_stops_resume_due(now=stop.resumes_at - (stop.resumes_at - stop.fired_at) / 2) == []
    # ...and at the start of the next day (UTC, the limits' zone) copying resumes.
    assert stop.resumes_at.hour == 0
    assert stop.resumes_at > stop.fired_at
    assert risk_stops_resume_due(now=stop.resumes_at) == [stop.id]
    sub.refresh_from_db()
    assert sub.status == CopySubscriptionStatus.ACTIVE
    world.order(master.account.login, volume=1)
    world.wait_links(sub, "open")


def test_master_breach_pauses_copying_for_all_its_followers(world):
    master = world.master(0)
    subs = [world.follower(master, 0, balance=10000) for _ in range(2)]
    MasterLimits.objects.create(master=master, max_open_positions=1)
    world.start()
    login = master.account.login
    world.order(login, volume=1)
    for sub in subs:
        world.wait_links(sub, "open")
    world.order(login, volume=1)  # a second position: the declared maximum is one
    stop = wait_for(
        lambda: RiskStop.objects.filter(master=master).first(), timeout=5, what="a master stop"
    )
    assert (stop.rule, stop.subscription) == ("MASTER_MAX_POSITIONS", None)
    master.refresh_from_db()
    assert master.paused
    assert master.paused_reason.startswith("MASTER_MAX_POSITIONS")
    third = world.order(login, volume=1)
    event = wait_for(
        lambda: MasterEvent.objects.filter(
            account=master.account, master_position_id=str(third["position_id"])
        ).first(),
        what="the third open stored",
    )
    skipped = wait_for(
        lambda: (
            list(
                CopyInstruction.objects.filter(master_event=event).values_list(
                    "status", "reason", "detail"
                )
            )
            if CopyInstruction.objects.filter(master_event=event).count() == 2
            else None
        ),
        what="the third open decided for both followers",
    )
    # The engine names a master pause among its switches.
    assert [(status, reason) for status, reason, _ in skipped] == [
        ("skipped", "KILL_SWITCH"),
        ("skipped", "KILL_SWITCH"),
    ]
    assert all("master" in detail for _, _, detail in skipped)
    assert all(
        CopySubscription.objects.get(pk=s.pk).status == CopySubscriptionStatus.ACTIVE for s in subs
    )
    assert CopyMaster.objects.get(pk=master.pk).paused


def test_margin_stop_out_is_marked_and_not_reopened(world):
    master = world.master(0)
    sub = world.follower(master, 0, balance=2000)  # 1 lot needs 1,100 margin
    world.start()
    login = sub.follower_account.login
    world.order(master.account.login, volume=1)
    world.wait_links(sub, "open")
    bid, ask = _price(world)
    # Equity below half the margin: the venue stops the copy out.
    _set_price(world, bid - Decimal("0.016"), ask - Decimal("0.016"))
    wait_for(lambda: world.positions(login) == [], timeout=5, what="the stop-out")
    assert [d["reason"] for d in _out_deals(world, login)] == ["stop_out"]
    link = wait_for(
        lambda: TradeLink.objects.filter(subscription=sub, reason=STOP_OUT_REASON).first(),
        timeout=5,
        what="the link marked",
    )
    assert link.status == "closed"
    stop = RiskStop.objects.get(subscription=sub)
    assert (stop.rule, stop.policy) == ("MARGIN_STOP_OUT", "stop_openings")
    sub.refresh_from_db()
    assert sub.status == CopySubscriptionStatus.STOPPED_BY_RISK
    assert len(world.positions(master.account.login)) == 1  # the master's is still open
    followers_reconcile()
    assert not CopyInstruction.objects.filter(subscription=sub, origin="repair").exists()
    assert world.positions(login) == []


def test_reconciliation_reads_a_stop_out_it_sees_first_and_does_not_reopen(world):
    """No listener: reconciliation alone finds the vanished copy, asks the venue's deals
    why, and hands the stop-out to risk instead of re-opening."""
    from django.utils import timezone

    master = world.master(0)
    sub = world.follower(master, 0, balance=2000)
    login = sub.follower_account.login
    opened_master = world.order(master.account.login, volume=1)
    copy = world.order(login, volume=1, client_order_id="ct-test-copy")
    now = timezone.now()
    MasterEvent.objects.create(
        broker_server=world.servers[0],
        account=master.account,
        venue_event_id="m1",
        event_type="position_opened",
        master_position_id=str(opened_master["position_id"]),
        symbol="EURUSD",
        side="buy",
        volume=Decimal(1),
        raw={},
        venue_ts=now,
        received_at=now,
    )
    TradeLink.objects.create(
        subscription=sub,
        master_account=master.account,
        follower_account=sub.follower_account,
        master_position_id=str(opened_master["position_id"]),
        follower_position_id=str(copy["position_id"]),
        symbol="EURUSD",
        follower_symbol="EURUSD",
        side="buy",
        master_volume=Decimal(1),
        follower_volume=Decimal(1),
        status="open",
        opened_at=now,
    )
    bid, ask = _price(world)
    _set_price(world, bid - Decimal("0.016"), ask - Decimal("0.016"))
    assert world.positions(login) == []
    followers_reconcile()
    assert not CopyInstruction.objects.filter(subscription=sub, origin="repair").exists()
    link = TradeLink.objects.get(subscription=sub)
    assert (link.status, link.reason) == ("closed", STOP_OUT_REASON)
    assert RiskStop.objects.get(subscription=sub).rule == "MARGIN_STOP_OUT"
    sub.refresh_from_db()
    assert sub.status == CopySubscriptionStatus.STOPPED_BY_RISK


def test_sharded_listeners_stream_the_monitored_followers_too(world, settings):
    """With several shards per server a stream names its accounts: each shard adds its
    share of the monitored followers, so their readings still arrive."""
    from brokers.models import ListenerShard
    from copytrading.services.listening import listeners_supervise
    from tests.processes import celery_worker

    settings.LISTENER_SHARDS_PER_SERVER = 2
    master = world.master(0)
    sub = world.follower(master, 0, balance=10000)
    if sub.follower_account.login % 2 == master.account.login % 2:
        sub = world.follower(master, 0, balance=10000)  # the next login: the other shard
    assert sub.follower_account.login % 2 != master.account.login % 2
    SubscriptionLimits.objects.create(subscription=sub, equity_floor=Decimal("9900"))
    world.stack.enter_context(
        celery_worker(
            queues="listeners,fanout,execute,default",
            concurrency=4,
            LISTENER_SHARDS_PER_SERVER="2",
        )
    )
    listeners_supervise()
    wait_for(
        lambda: ListenerShard.objects.filter(shard_count=2, connected=True).count() == 2,
        timeout=30,
        what="both shards connected",
    )
    world.order(master.account.login, volume=1)
    world.wait_links(sub, "open")
    wait_for(
        lambda: MonitorState.objects.filter(subscription=sub, equity__isnull=False).exists(),
        timeout=10,
        what="a reading of the follower from its shard",
    )
    bid, ask = _price(world)
    _set_price(world, bid - Decimal("0.002"), ask - Decimal("0.002"))  # equity ~9,790
    wait_for(lambda: world.positions(sub.follower_account.login) == [], timeout=5, what="closed")
    assert RiskStop.objects.get(subscription=sub).rule == "EQUITY_FLOOR"
