"""Post-trade monitors against PostgreSQL: readings in, stops, closes, resumes and clears out
(no venue, no workers: the queued closes are checked as rows)."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from unittest import mock

import pytest

from copytrading.choices import CopySubscriptionStatus, TradeLinkStatus
from copytrading.models import CopyInstruction, MasterEvent, TradeLink
from risk import monitors
from risk.models import MasterLimits, MonitorState, RiskStop, SubscriptionLimits
from tests.factories import make_staff, make_subscription

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def side_effects():
    # After-commit side effects (execution, staff push) are queued to Celery; here only
    # the rows they would act on are checked.
    with (
        mock.patch("copytrading.services.fanout.enqueue_execution") as execute,
        mock.patch("risk.monitors._alert") as alert,
        mock.patch("risk.monitors._push_links"),
        mock.patch("risk.monitors._poll_soon") as poll,
    ):
        execute.poll = poll
        yield execute, alert


def limited(**limits):
    sub = make_subscription()
    SubscriptionLimits.objects.create(subscription=sub, **limits)
    return sub


def feed(sub, equity, balance=None, at=T0):
    reading = monitors.AccountReading(
        login=sub.follower_account.login,
        balance=D(balance or equity),
        equity=D(equity),
        margin=D(0),
        at=at,
    )
    return monitors.accounts_monitor(
        server_id=sub.follower_account.broker_server_id, readings=[reading], now=at
    )


def open_link(sub, n=1):
    return TradeLink.objects.create(
        subscription=sub,
        master_account=sub.master_account,
        follower_account=sub.follower_account,
        master_position_id=f"m{n}",
        follower_position_id=f"f{n}",
        symbol="EURUSD",
        follower_symbol="EURUSD",
        side="buy",
        master_volume=D(1),
        follower_volume=D("0.5"),
        status=TradeLinkStatus.OPEN,
    )


def test_a_reading_far_from_every_limit_only_stores_the_figures():
    sub = limited(max_drawdown_pct=D("5"), equity_floor=D("5000"))
    assert feed(sub, "10000") == []
    assert feed(sub, "9900", at=T0 + timedelta(seconds=1)) == []
    state = MonitorState.objects.get(subscription=sub)
    assert (state.equity_hwm, state.equity) == (D("10000"), D("9900"))
    by_rule = {f["rule"]: f for f in state.figures}
    assert by_rule["MAX_DRAWDOWN"]["value"] == "1.00"
    assert by_rule["MAX_DRAWDOWN"]["used_pct"] == "20.00"
    sub.refresh_from_db()
    assert sub.status == CopySubscriptionStatus.ACTIVE
    assert not RiskStop.objects.exists()


def test_drawdown_breach_stops_closes_every_copy_and_records_the_inputs(
    side_effects, django_capture_on_commit_callbacks
):
    execute, alert = side_effects
    sub = limited(max_drawdown_pct=D("5"))
    links = [open_link(sub, 1), open_link(sub, 2)]
    feed(sub, "10000")
    with django_capture_on_commit_callbacks(execute=True):
        (stop_id,) = feed(sub, "9500", at=T0 + timedelta(seconds=1))
    stop = RiskStop.objects.get(pk=stop_id)
    assert (stop.rule, stop.policy, stop.resumes_at) == ("MAX_DRAWDOWN", "close_positions", None)
    assert stop.inputs["figure"]["inputs"] == {
        "equity": "9500",
        "high_water_mark": "10000.0000",
        "max_drawdown_pct": "5.0000",
    }
    assert stop.inputs["reading"]["equity"] == "9500"
    sub.refresh_from_db()
    assert sub.status == CopySubscriptionStatus.STOPPED_BY_RISK
    assert sub.status_reason.startswith("MAX_DRAWDOWN: drawdown 5.00% of 5.0000%")
    assert sub.history.first().history_change_reason == sub.status_reason
    closes = CopyInstruction.objects.filter(subscription=sub, action="close").order_by("id")
    assert [c.client_order_id for c in closes] == [f"sfr{stop.id}l{link.id}" for link in links]
    assert {c.reason for c in closes} == {"RISK_MAX_DRAWDOWN"}
    assert closes[0].decision["follower_position_ids"] == ["f1"]
    alert.assert_called_once_with(stop.id)
    server_id = sub.follower_account.broker_server_id
    execute.assert_called_once_with({server_id: [c.id for c in closes]})
    # A later, lower reading fires nothing twice and queues nothing twice.
    assert feed(sub, "9000", at=T0 + timedelta(seconds=2)) == []
    assert RiskStop.objects.count() == 1
    assert CopyInstruction.objects.filter(subscription=sub).count() == 2


def test_stop_openings_policy_leaves_the_copies_open():
    sub = limited(equity_floor=D("9000"), breach_policy="stop_openings")
    open_link(sub)
    (stop_id,) = feed(sub, "9000")
    assert RiskStop.objects.get(pk=stop_id).rule == "EQUITY_FLOOR"
    sub.refresh_from_db()
    assert sub.status == CopySubscriptionStatus.STOPPED_BY_RISK
    assert not CopyInstruction.objects.filter(subscription=sub).exists()


def test_an_older_reading_than_the_stored_one_is_ignored():
    sub = limited(equity_floor=D("9000"))
    feed(sub, "10000", at=T0 + timedelta(seconds=5))
    assert feed(sub, "8000", at=T0) == []
    assert MonitorState.objects.get(subscription=sub).equity == D("10000")


def test_daily_loss_stop_resumes_when_the_next_day_starts_in_its_zone():
    sub = limited(daily_loss_limit=D("300"), period_timezone="Asia/Tokyo")
    feed(sub, "10000")
    (stop_id,) = feed(sub, "9700", at=T0 + timedelta(minutes=1))
    stop = RiskStop.objects.get(pk=stop_id)
    # 12:01 UTC on the 18th is 21:01 in Tokyo: the next Tokyo day starts 15:00 UTC.
    assert stop.resumes_at == datetime(2026, 11, 18, 15, 0, tzinfo=UTC)
    assert monitors.risk_stops_resume_due(now=stop.resumes_at - timedelta(seconds=1)) == []
    sub.refresh_from_db()
    assert sub.status == CopySubscriptionStatus.STOPPED_BY_RISK
    assert monitors.risk_stops_resume_due(now=stop.resumes_at) == [stop.id]
    sub.refresh_from_db()
    stop.refresh_from_db()
    assert sub.status == CopySubscriptionStatus.ACTIVE
    assert (stop.clear_reason, stop.cleared_by) == ("the next period started", None)
    # The new day starts from the last reading: the same equity is no loss today.
    assert feed(sub, "9700", at=datetime(2026, 11, 18, 15, 0, 1, tzinfo=UTC)) == []
    assert MonitorState.objects.get(subscription=sub).periods["periods"]["day"] == {
        "key": "2026-11-19",
        "balance": "9700.0000",
        "equity": "9700.0000",
    }


def test_a_periodic_stop_without_resume_waits_for_staff():
    sub = limited(daily_loss_limit=D("1"), resume_next_period=False)
    feed(sub, "100")
    (stop_id,) = feed(sub, "99", at=T0 + timedelta(seconds=1))
    assert RiskStop.objects.get(pk=stop_id).resumes_at is None
    assert monitors.risk_stops_resume_due(now=T0 + timedelta(days=40)) == []


def test_staff_clear_a_drawdown_stop_with_a_reason_and_the_mark_restarts():
    sub = limited(max_drawdown_pct=D("5"))
    feed(sub, "10000")
    (stop_id,) = feed(sub, "9000", at=T0 + timedelta(seconds=1))
    stop = RiskStop.objects.get(pk=stop_id)
    staff = make_staff(group="Operations")
    with pytest.raises(ValueError, match="reason is required"):
        monitors.risk_stop_clear(stop=stop, reason=" ", actor=staff)
    monitors.risk_stop_clear(stop=stop, reason="client called, limits reviewed", actor=staff)
    stop.refresh_from_db()
    sub.refresh_from_db()
    assert (stop.cleared_by, stop.clear_reason) == (staff, "client called, limits reviewed")
    assert sub.status == CopySubscriptionStatus.ACTIVE
    assert MonitorState.objects.get(subscription=sub).equity_hwm == D("9000")
    assert stop.history.first().history_user == staff
    with pytest.raises(ValueError, match="cleared already"):
        monitors.risk_stop_clear(stop=stop, reason="again", actor=staff)
    # From the new mark, the same equity is no drawdown.
    assert feed(sub, "9000", at=T0 + timedelta(seconds=2)) == []


def test_a_subscription_held_by_two_stops_resumes_only_when_both_clear():
    sub = limited(daily_loss_limit=D("100"), equity_floor=D("9000"))
    feed(sub, "10000")
    (daily,) = feed(sub, "9850", at=T0 + timedelta(seconds=1))
    floor = monitors.subscription_breach(
        subscription=sub,
        figure=monitors.rules.Figure("EQUITY_FLOOR", D(1), D(1), "amount", D(100), True, "x"),
        reading=None,
    )
    # Already stopped: a second rule does not stack a second stop.
    assert floor is None
    stop = RiskStop.objects.get(pk=daily)
    monitors.risk_stops_resume_due(now=stop.resumes_at)
    sub.refresh_from_db()
    assert sub.status == CopySubscriptionStatus.ACTIVE


def test_master_breach_pauses_the_master_for_every_follower():
    sub = make_subscription()
    master = sub.master
    MasterLimits.objects.create(master=master, max_open_positions=1)
    server = master.account.broker_server
    for n in (1, 2):
        MasterEvent.objects.create(
            broker_server=server,
            account=master.account,
            venue_event_id=str(n),
            event_type="position_opened",
            master_position_id=f"p{n}",
            symbol="EURUSD",
            side="buy",
            volume=D(1),
            raw={},
            venue_ts=T0,
            received_at=T0,
        )
    (stop_id,) = monitors.accounts_monitor(
        server_id=server.id, readings=[], master_logins=[master.account.login], now=T0
    )
    master.refresh_from_db()
    stop = RiskStop.objects.get(pk=stop_id)
    assert (stop.master, stop.rule, stop.subscription) == (master, "MASTER_MAX_POSITIONS", None)
    assert master.paused
    assert master.paused_reason.startswith("MASTER_MAX_POSITIONS: 2 positions open, 1 declared")
    state = MonitorState.objects.get(master=master)
    assert (state.open_positions, state.open_lots) == (2, D(1) * 2)
    # Clearing it (after the master closed one) ends the pause.
    monitors.risk_stop_clear(stop=stop, reason="master reduced", actor=make_staff())
    master.refresh_from_db()
    assert not master.paused


def test_master_open_book_follows_partial_and_full_closes():
    sub = make_subscription()
    account = sub.master.account
    server = account.broker_server
    events = [
        ("position_opened", "a", D(2), None),
        ("position_opened", "b", D(1), None),
        ("position_closed", "a", D("0.5"), D("1.5")),
        ("position_closed", "b", D(1), D(0)),
    ]
    for n, (kind, pid, volume, remaining) in enumerate(events):
        MasterEvent.objects.create(
            broker_server=server,
            account=account,
            venue_event_id=str(n),
            event_type=kind,
            master_position_id=pid,
            volume=volume,
            remaining_volume=remaining,
            raw={},
            venue_ts=T0,
            received_at=T0,
        )
    assert monitors.master_open_book(account.id) == (1, D("1.5"))


def test_a_stop_out_marks_the_link_and_stops_the_subscription_once():
    sub = make_subscription()
    link = open_link(sub, 1)
    link2 = open_link(sub, 2)
    server_id = sub.follower_account.broker_server_id
    login = sub.follower_account.login
    (stop_id,) = monitors.stop_outs_record(
        server_id=server_id,
        stop_outs=[{"login": login, "position_id": "f1", "price": "1.05", "profit": "-900"}],
    )
    again = monitors.stop_outs_record(
        server_id=server_id,
        stop_outs=[
            {"login": login, "position_id": "f1"},
            {"login": login, "position_id": "f2", "price": "1.05", "profit": "-100"},
        ],
    )
    assert again == []
    link.refresh_from_db()
    link2.refresh_from_db()
    assert (link.status, link.reason, link.profit) == ("closed", monitors.STOP_OUT_REASON, D(-900))
    assert link2.reason == monitors.STOP_OUT_REASON
    stop = RiskStop.objects.get(pk=stop_id)
    assert (stop.rule, stop.policy) == ("MARGIN_STOP_OUT", "stop_openings")
    assert [p["position_id"] for p in stop.inputs["positions"]] == ["f1", "f2"]
    sub.refresh_from_db()
    assert sub.status == CopySubscriptionStatus.STOPPED_BY_RISK


def test_monitored_logins_name_limited_followers_and_masters():
    watched = limited(max_drawdown_pct=D("5"))
    unwatched = limited(max_lots_total=D("3"))  # a pre-trade limit only
    server_id = watched.follower_account.broker_server_id
    assert watched.follower_account.login in monitors.monitored_logins(server_id=server_id)
    other = unwatched.follower_account
    assert other.login not in monitors.monitored_logins(server_id=other.broker_server_id)
    MasterLimits.objects.create(master=unwatched.master, max_lots=D("10"))
    master_account = unwatched.master.account
    assert master_account.login in monitors.monitored_logins(
        server_id=master_account.broker_server_id
    )
    assert server_id in monitors.monitored_server_ids()


def test_an_account_near_a_limit_is_polled_and_a_far_one_is_not(side_effects):
    execute, _ = side_effects
    sub = limited(max_drawdown_pct=D("10"))
    feed(sub, "10000")
    feed(sub, "9400", at=T0 + timedelta(seconds=1))  # 60% of the limit used
    execute.poll.assert_not_called()
    feed(sub, "9300", at=T0 + timedelta(seconds=2))  # 70%
    execute.poll.assert_called_once_with(sub.follower_account_id)
