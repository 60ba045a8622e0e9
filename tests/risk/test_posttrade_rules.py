"""The post-trade rules at their boundaries: pure, no database, no clock."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from risk import rules
from risk.rules import MonitorFigures, PeriodStart, Reading, SubscriptionLimitSet

T0 = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)  # a Wednesday


def reading(equity: str, balance: str | None = None, at: datetime = T0) -> Reading:
    return Reading(balance=D(balance or equity), equity=D(equity), at=at)


def fired(limits: SubscriptionLimitSet, figures: MonitorFigures, r: Reading) -> dict[str, bool]:
    return {f.rule: f.fired for f in rules.evaluate_subscription(limits, figures, r)}


# -- equity floor


@pytest.mark.parametrize(
    ("equity", "fires"), [("9000.01", False), ("9000.00", True), ("8999.99", True)]
)
def test_equity_floor_fires_at_the_floor_and_below(equity, fires):
    limits = SubscriptionLimitSet(equity_floor=D("9000"))
    assert fired(limits, MonitorFigures(), reading(equity)) == {"EQUITY_FLOOR": fires}


def test_equity_floor_says_how_close_it_is():
    limits = SubscriptionLimitSet(equity_floor=D("9000"))
    (figure,) = rules.evaluate_subscription(limits, MonitorFigures(), reading("10000"))
    assert figure.used_pct == D("90.00")
    assert figure.inputs == {"equity": "10000", "equity_floor": "9000"}


# -- drawdown


@pytest.mark.parametrize(
    ("equity", "fires"), [("9500.01", False), ("9500", True), ("9499.99", True)]
)
def test_drawdown_fires_at_the_limit_from_the_mark(equity, fires):
    limits = SubscriptionLimitSet(max_drawdown_pct=D("5"))
    figures = MonitorFigures(hwm=D("10000"))
    figures = rules.advance(figures, reading(equity), tz="UTC")
    assert figures.hwm == D("10000")
    assert fired(limits, figures, reading(equity)) == {"MAX_DRAWDOWN": fires}


def test_drawdown_figure_reads_like_the_admin_shows_it():
    limits = SubscriptionLimitSet(max_drawdown_pct=D("5"))
    figures = rules.advance(MonitorFigures(hwm=D("10000")), reading("9680"), tz="UTC")
    (figure,) = rules.evaluate_subscription(limits, figures, reading("9680"))
    assert (figure.value, figure.limit, figure.used_pct) == (D("3.20"), D("5"), D("64.00"))
    assert "drawdown 3.20% of 5%" in figure.detail


def test_the_mark_rises_with_equity_and_never_falls():
    figures = MonitorFigures()
    for equity, mark in [("10000", "10000"), ("10500", "10500"), ("9000", "10500")]:
        figures = rules.advance(figures, reading(equity), tz="UTC")
        assert figures.hwm == D(mark)


@given(st.lists(st.decimals(min_value=0, max_value=10**7, places=2), min_size=1, max_size=30))
def test_the_mark_is_the_highest_equity_seen(equities):
    figures = MonitorFigures()
    for i, equity in enumerate(equities):
        r = Reading(balance=equity, equity=equity, at=T0 + timedelta(seconds=i))
        previous = figures.hwm
        figures = rules.advance(figures, r, tz="UTC")
        assert previous is None or figures.hwm >= previous
    assert figures.hwm == max(equities)


def test_a_new_high_is_no_drawdown():
    limits = SubscriptionLimitSet(max_drawdown_pct=D("1"))
    figures = rules.advance(MonitorFigures(hwm=D("100")), reading("200"), tz="UTC")
    (figure,) = rules.evaluate_subscription(limits, figures, reading("200"))
    assert (figure.fired, figure.value, figure.used_pct) == (False, D("0.00"), D("0"))


# -- loss limits


def day_start(balance: str, equity: str, key: str = "2026-11-18") -> MonitorFigures:
    return MonitorFigures(
        hwm=D(equity), periods={"day": PeriodStart(key, D(balance), D(equity))}, last=None
    )


@pytest.mark.parametrize(
    ("equity", "fires"), [("9500.01", False), ("9500.00", True), ("9400", True)]
)
def test_daily_loss_amount_on_equity_fires_at_the_limit(equity, fires):
    limits = SubscriptionLimitSet(daily_loss_limit=D("500"), loss_basis="equity")
    assert fired(limits, day_start("10000", "10000"), reading(equity, "10000")) == {
        "DAILY_LOSS": fires
    }


@pytest.mark.parametrize(("balance", "fires"), [("9800.01", False), ("9800", True)])
def test_daily_loss_percent_on_balance(balance, fires):
    limits = SubscriptionLimitSet(
        daily_loss_limit=D("2"), loss_unit="percent", loss_basis="balance"
    )
    # Equity far below: the balance basis ignores floating losses.
    figures = day_start("10000", "10000")
    assert fired(limits, figures, reading("5000", balance)) == {"DAILY_LOSS": fires}


def test_weekly_and_monthly_limits_use_their_own_starts():
    limits = SubscriptionLimitSet(weekly_loss_limit=D("100"), monthly_loss_limit=D("1000"))
    figures = MonitorFigures(
        periods={
            "week": PeriodStart("2026-W47", D("10000"), D("10000")),
            "month": PeriodStart("2026-11", D("11000"), D("11000")),
        }
    )
    result = fired(limits, figures, reading("9950"))
    assert result == {"WEEKLY_LOSS": False, "MONTHLY_LOSS": True}


def test_a_profit_is_no_loss():
    limits = SubscriptionLimitSet(daily_loss_limit=D("1"))
    (figure,) = rules.evaluate_subscription(limits, day_start("100", "100"), reading("150"))
    assert (figure.fired, figure.value, figure.used_pct) == (False, D("-50"), D("0"))


def test_zero_limits_are_no_limits():
    assert rules.evaluate_subscription(SubscriptionLimitSet(), MonitorFigures(), reading("1")) == []
    assert not SubscriptionLimitSet().any_set


# -- periods


def test_a_new_day_starts_from_the_last_reading_before_it():
    late = reading("9000", at=datetime(2026, 11, 18, 23, 59, 59, tzinfo=UTC))
    figures = rules.advance(MonitorFigures(), reading("10000"), tz="UTC")
    figures = rules.advance(figures, late, tz="UTC")
    assert figures.periods["day"] == PeriodStart("2026-11-18", D("10000"), D("10000"))
    next_day = reading("8900", at=datetime(2026, 11, 19, 0, 0, 1, tzinfo=UTC))
    figures = rules.advance(figures, next_day, tz="UTC")
    assert figures.periods["day"] == PeriodStart("2026-11-19", D("9000"), D("9000"))
    # The week (Monday 16th) and month go on.
    assert figures.periods["week"].key == "2026-W47"
    assert figures.periods["week"].equity == D("10000")


def test_periods_follow_the_limits_time_zone():
    # 23:30 UTC on the 18th is already the 19th in Tokyo (UTC+9) but not in New York.
    at = datetime(2026, 11, 18, 23, 30, tzinfo=UTC)
    assert rules.period_key("day", at, "Asia/Tokyo") == "2026-11-19"
    assert rules.period_key("day", at, "America/New_York") == "2026-11-18"
    assert rules.next_period_start("day", at, "Asia/Tokyo") == datetime(
        2026, 11, 19, 15, 0, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("kind", "at", "start", "nxt"),
    [
        ("day", datetime(2026, 11, 18, 0, 0, tzinfo=UTC), "2026-11-18 00:00", "2026-11-19 00:00"),
        (
            "week",
            datetime(2026, 11, 22, 23, 59, tzinfo=UTC),
            "2026-11-16 00:00",
            "2026-11-23 00:00",
        ),
        ("week", datetime(2026, 11, 23, 0, 0, tzinfo=UTC), "2026-11-23 00:00", "2026-11-30 00:00"),
        (
            "month",
            datetime(2026, 12, 31, 23, 59, tzinfo=UTC),
            "2026-12-01 00:00",
            "2027-01-01 00:00",
        ),
        ("month", datetime(2027, 2, 1, 0, 0, tzinfo=UTC), "2027-02-01 00:00", "2027-03-01 00:00"),
    ],
)
def test_period_boundaries(kind, at, start, nxt):
    fmt = "%Y-%m-%d %H:%M"
    assert rules.period_start(kind, at, "UTC").strftime(fmt) == start
    assert rules.next_period_start(kind, at, "UTC").strftime(fmt) == nxt


def test_a_day_across_a_dst_change_starts_at_local_midnight():
    # London leaves summer time on 25 Oct 2026: that day is 25 hours long.
    at = datetime(2026, 10, 25, 12, 0, tzinfo=UTC)
    assert rules.period_start("day", at, "Europe/London") == datetime(
        2026, 10, 24, 23, 0, tzinfo=UTC
    )
    assert rules.next_period_start("day", at, "Europe/London") == datetime(
        2026, 10, 26, 0, 0, tzinfo=UTC
    )


def test_a_bad_time_zone_says_what_to_fix():
    with pytest.raises(rules.RuleInputError, match="IANA time zone"):
        rules.period_key("day", T0, "Mars/Olympus")


def test_a_naive_time_is_refused():
    with pytest.raises(rules.RuleInputError, match="aware"):
        rules.period_key("day", datetime(2026, 1, 1), "UTC")  # noqa: DTZ001


def test_figures_round_trip_through_json():
    figures = rules.advance(MonitorFigures(), reading("10000.55"), tz="UTC")
    again = rules.periods_from_json(rules.figures_to_json(figures))
    assert again == figures.periods


# -- master declared limits


def master(**kw):
    return rules.evaluate_master(
        rules.MasterLimitSet(max_lots=D("5"), max_open_positions=3, max_drawdown_pct=D("10")),
        **{"open_lots": D(0), "open_positions": 0, "hwm": D("1000"), "equity": D("1000"), **kw},
    )


@pytest.mark.parametrize(("lots", "fires"), [("5", False), ("5.01", True)])
def test_master_max_lots_may_be_reached_not_exceeded(lots, fires):
    by_rule = {f.rule: f.fired for f in master(open_lots=D(lots))}
    assert by_rule["MASTER_MAX_LOTS"] is fires


@pytest.mark.parametrize(("n", "fires"), [(3, False), (4, True)])
def test_master_max_positions_may_be_reached_not_exceeded(n, fires):
    by_rule = {f.rule: f.fired for f in master(open_positions=n)}
    assert by_rule["MASTER_MAX_POSITIONS"] is fires


@pytest.mark.parametrize(("equity", "fires"), [("900.01", False), ("900", True)])
def test_master_drawdown_fires_at_the_limit(equity, fires):
    by_rule = {f.rule: f.fired for f in master(equity=D(equity))}
    assert by_rule["MASTER_MAX_DRAWDOWN"] is fires


def test_master_fired_figures_come_first_and_unknowns_are_skipped():
    figures = master(open_positions=None, open_lots=D("6"))
    assert [f.rule for f in figures] == ["MASTER_MAX_LOTS", "MASTER_MAX_DRAWDOWN"]
    assert figures[0].fired
