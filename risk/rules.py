"""Post-trade risk rules: pure functions of (limits, monitor state, account reading).

No database, no clock: every input is an argument, so a stop can be re-checked from the
figures stored with it (RiskStop.inputs) and the rules are tested at their boundaries.

What the figures mean:
- **Equity floor**: fires when equity <= the floor (the floor is the last acceptable
  equity: "stop when equity falls to this amount").
- **Max drawdown**: the subscription's high-water mark is the highest equity of the
  *follower account* seen by the monitor since the limits were set (or since staff last
  cleared a drawdown stop, which restarts the mark at the equity of that moment). The
  mark never falls. Drawdown % = (mark - equity) / mark x 100; fires when >= the limit.
  The whole account is measured, not only the copied positions: that is what the
  follower risks, and what the venue reports every second. A withdrawal lowers equity
  and so counts as drawdown (staff clear the stop and the mark restarts).
- **Loss limits** (day, week, month): loss = start - current, on balance or equity (the
  `loss_basis`), where start is the reading at the start of the period in the limits'
  time zone (days start at 00:00, weeks on Monday 00:00, months on the 1st). Absolute:
  fires when loss >= the limit. Percent: fires when loss >= limit % of start.
- **Master declared limits**: open lots > max lots, open positions > max positions (the
  declared maximum may be reached, not exceeded), drawdown from the master account's own
  mark >= max drawdown.

A limit of zero is no limit. Every evaluation returns one Figure per limit that is set,
fired or not, saying how close it is to firing (`used_pct`: 100 means it fires).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

RULES_VERSION = "posttrade-1"

DAY, WEEK, MONTH = "day", "week", "month"
PERIODS = (DAY, WEEK, MONTH)
PERIOD_RULE = {DAY: "DAILY_LOSS", WEEK: "WEEKLY_LOSS", MONTH: "MONTHLY_LOSS"}
PERIODIC_RULES = frozenset(PERIOD_RULE.values())

_HUNDRED = Decimal(100)
_CENT = Decimal("0.01")


class RuleInputError(ValueError):
    """A limit or reading the rules cannot work with; the message says what to fix."""


def zone(name: str) -> ZoneInfo:
    """The IANA zone of the limits' periods; a clear error for a name that is not one."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise RuleInputError(
            f"period_timezone {name!r} is not an IANA time zone (e.g. 'UTC', 'Europe/London')"
        ) from exc


def period_start(kind: str, at: datetime, tz: str) -> datetime:
    """The aware start of the day, week (Monday) or month holding `at`, in zone `tz`."""
    if at.tzinfo is None:
        raise RuleInputError("readings need an aware time (UTC)")
    local = at.astimezone(zone(tz))
    day = local.replace(hour=0, minute=0, second=0, microsecond=0, fold=0)
    if kind == DAY:
        start = day
    elif kind == WEEK:
        start = day - timedelta(days=local.weekday())
    elif kind == MONTH:
        start = day.replace(day=1)
    else:
        raise RuleInputError(f"unknown period {kind!r}; one of {PERIODS}")
    # Re-attach the zone for the naive wall time: the offset at a DST change is the one
    # of the start itself, not of `at`.
    return start.replace(tzinfo=None).replace(tzinfo=zone(tz))


def next_period_start(kind: str, at: datetime, tz: str) -> datetime:
    """The aware start of the period after the one holding `at` (when a stop resumes)."""
    start = period_start(kind, at, tz).replace(tzinfo=None)
    if kind == DAY:
        nxt = start + timedelta(days=1)
    elif kind == WEEK:
        nxt = start + timedelta(days=7)
    else:
        nxt = (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    return nxt.replace(tzinfo=zone(tz))


def period_key(kind: str, at: datetime, tz: str) -> str:
    """A stable name of the period holding `at`: 2026-11-22, 2026-W47, 2026-11."""
    start = period_start(kind, at, tz)
    if kind == DAY:
        return start.strftime("%Y-%m-%d")
    if kind == WEEK:
        year, week, _ = start.isocalendar()
        return f"{year}-W{week:02d}"
    return start.strftime("%Y-%m")


@dataclass(frozen=True, slots=True)
class Reading:
    """An account's figures at one moment (the venue's account_updated)."""

    balance: Decimal
    equity: Decimal
    at: datetime
    margin: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class SubscriptionLimitSet:
    """The post-trade limits of one subscription (zero: no limit)."""

    equity_floor: Decimal = Decimal(0)
    max_drawdown_pct: Decimal = Decimal(0)
    daily_loss_limit: Decimal = Decimal(0)
    weekly_loss_limit: Decimal = Decimal(0)
    monthly_loss_limit: Decimal = Decimal(0)
    loss_unit: str = "amount"
    loss_basis: str = "equity"
    period_timezone: str = "UTC"

    def loss_limit(self, kind: str) -> Decimal:
        return {
            DAY: self.daily_loss_limit,
            WEEK: self.weekly_loss_limit,
            MONTH: self.monthly_loss_limit,
        }[kind]

    @property
    def any_set(self) -> bool:
        return any(
            v > 0
            for v in (
                self.equity_floor,
                self.max_drawdown_pct,
                self.daily_loss_limit,
                self.weekly_loss_limit,
                self.monthly_loss_limit,
            )
        )


@dataclass(frozen=True, slots=True)
class MasterLimitSet:
    """A master's declared limits (zero: no limit)."""

    max_lots: Decimal = Decimal(0)
    max_open_positions: int = 0
    max_drawdown_pct: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class PeriodStart:
    """The figures an account had when a period started."""

    key: str
    balance: Decimal
    equity: Decimal


@dataclass(frozen=True, slots=True)
class MonitorFigures:
    """What the monitor remembers between readings: the mark, period starts, last reading."""

    hwm: Decimal | None = None
    periods: dict[str, PeriodStart] = field(default_factory=dict)
    last: Reading | None = None


@dataclass(frozen=True, slots=True)
class Figure:
    """One limit's state after a reading: its value, its limit, how close it is to firing."""

    rule: str
    value: Decimal
    limit: Decimal
    unit: str  # "amount" or "percent"
    used_pct: Decimal
    fired: bool
    detail: str
    inputs: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "value": str(self.value),
            "limit": str(self.limit),
            "unit": self.unit,
            "used_pct": str(self.used_pct),
            "fired": self.fired,
            "detail": self.detail,
            "inputs": self.inputs,
        }


def _pct(part: Decimal, whole: Decimal) -> Decimal:
    return (part / whole * _HUNDRED).quantize(_CENT) if whole else Decimal(0)


def advance(
    figures: MonitorFigures, reading: Reading, *, tz: str, periods: tuple[str, ...] = PERIODS
) -> MonitorFigures:
    """The monitor's memory after `reading`: the mark raised (never lowered) and each
    period's start rolled when a new period began.

    A new period starts from the last reading before it (the venue reports every change
    within a second, so that reading is the account at the boundary); the very first
    reading starts its periods from itself.
    """
    hwm = reading.equity if figures.hwm is None else max(figures.hwm, reading.equity)
    base = figures.last or reading
    rolled = dict(figures.periods)
    for kind in periods:
        key = period_key(kind, reading.at, tz)
        current = rolled.get(kind)
        if current is None or current.key != key:
            rolled[kind] = PeriodStart(key, base.balance, base.equity)
    return replace(figures, hwm=hwm, periods=rolled, last=reading)


def evaluate_subscription(
    limits: SubscriptionLimitSet, figures: MonitorFigures, reading: Reading
) -> list[Figure]:
    """Every set limit of a subscription against `reading`, with `figures` already
    advanced to it (see `advance`). Fired figures come first, in a fixed rule order."""
    out: list[Figure] = []
    equity = reading.equity
    if limits.equity_floor > 0:
        floor = limits.equity_floor
        out.append(
            Figure(
                rule="EQUITY_FLOOR",
                value=equity,
                limit=floor,
                unit="amount",
                used_pct=_pct(floor, equity) if equity > 0 else _HUNDRED,
                fired=equity <= floor,
                detail=f"equity {equity} vs floor {floor}",
                inputs={"equity": str(equity), "equity_floor": str(floor)},
            )
        )
    if limits.max_drawdown_pct > 0 and figures.hwm is not None and figures.hwm > 0:
        mark = figures.hwm
        drawdown = (mark - equity) / mark * _HUNDRED
        out.append(
            Figure(
                rule="MAX_DRAWDOWN",
                value=drawdown.quantize(_CENT),
                limit=limits.max_drawdown_pct,
                unit="percent",
                used_pct=_pct(max(drawdown, Decimal(0)), limits.max_drawdown_pct),
                fired=drawdown >= limits.max_drawdown_pct,
                detail=f"drawdown {drawdown.quantize(_CENT)}% of {limits.max_drawdown_pct}% "
                f"(equity {equity}, high-water mark {mark})",
                inputs={
                    "equity": str(equity),
                    "high_water_mark": str(mark),
                    "max_drawdown_pct": str(limits.max_drawdown_pct),
                },
            )
        )
    for kind in PERIODS:
        limit = limits.loss_limit(kind)
        start = figures.periods.get(kind)
        if limit <= 0 or start is None:
            continue
        basis = limits.loss_basis
        start_value = start.balance if basis == "balance" else start.equity
        now_value = reading.balance if basis == "balance" else reading.equity
        loss = start_value - now_value
        if limits.loss_unit == "percent":
            allowed = start_value * limit / _HUNDRED
            shown = f"{limit}% of {start_value}"
        else:
            allowed = limit
            shown = f"{limit}"
        out.append(
            Figure(
                rule=PERIOD_RULE[kind],
                value=loss,
                limit=allowed,
                unit="amount",
                used_pct=_pct(max(loss, Decimal(0)), allowed) if allowed > 0 else _HUNDRED,
                fired=loss >= allowed,
                detail=f"{kind} loss {loss} on {basis} of {shown} allowed "
                f"(period {start.key} started at {start_value}, now {now_value})",
                inputs={
                    "period": start.key,
                    "basis": basis,
                    "unit": limits.loss_unit,
                    "limit": str(limit),
                    "allowed_loss": str(allowed),
                    "start": str(start_value),
                    "now": str(now_value),
                    "timezone": limits.period_timezone,
                },
            )
        )
    return sorted(out, key=lambda f: not f.fired)


def evaluate_master(
    limits: MasterLimitSet,
    *,
    open_lots: Decimal | None,
    open_positions: int | None,
    hwm: Decimal | None,
    equity: Decimal | None,
) -> list[Figure]:
    """A master's declared limits against what its account holds now (None: not known)."""
    out: list[Figure] = []
    if limits.max_lots > 0 and open_lots is not None:
        out.append(
            Figure(
                rule="MASTER_MAX_LOTS",
                value=open_lots,
                limit=limits.max_lots,
                unit="amount",
                used_pct=_pct(open_lots, limits.max_lots),
                fired=open_lots > limits.max_lots,
                detail=f"{open_lots} lots open, {limits.max_lots} declared",
                inputs={"open_lots": str(open_lots), "max_lots": str(limits.max_lots)},
            )
        )
    if limits.max_open_positions > 0 and open_positions is not None:
        cap = Decimal(limits.max_open_positions)
        out.append(
            Figure(
                rule="MASTER_MAX_POSITIONS",
                value=Decimal(open_positions),
                limit=cap,
                unit="amount",
                used_pct=_pct(Decimal(open_positions), cap),
                fired=open_positions > limits.max_open_positions,
                detail=f"{open_positions} positions open, {limits.max_open_positions} declared",
                inputs={
                    "open_positions": str(open_positions),
                    "max_open_positions": str(limits.max_open_positions),
                },
            )
        )
    if limits.max_drawdown_pct > 0 and hwm and equity is not None:
        drawdown = (hwm - equity) / hwm * _HUNDRED
        out.append(
            Figure(
                rule="MASTER_MAX_DRAWDOWN",
                value=drawdown.quantize(_CENT),
                limit=limits.max_drawdown_pct,
                unit="percent",
                used_pct=_pct(max(drawdown, Decimal(0)), limits.max_drawdown_pct),
                fired=drawdown >= limits.max_drawdown_pct,
                detail=f"drawdown {drawdown.quantize(_CENT)}% of {limits.max_drawdown_pct}% "
                f"(equity {equity}, high-water mark {hwm})",
                inputs={
                    "equity": str(equity),
                    "high_water_mark": str(hwm),
                    "max_drawdown_pct": str(limits.max_drawdown_pct),
                },
            )
        )
    return sorted(out, key=lambda f: not f.fired)


def near_limit_equity(limits: SubscriptionLimitSet, figures: MonitorFigures) -> Decimal | None:
    """The highest equity at which an equity-based limit would fire, or None when no
    equity limit is set. A reading above it (and not above the mark) changes nothing but
    the last reading: the monitor's cheap path."""
    candidates = []
    if limits.equity_floor > 0:
        candidates.append(limits.equity_floor)
    if limits.max_drawdown_pct > 0 and figures.hwm:
        candidates.append(figures.hwm * (1 - limits.max_drawdown_pct / _HUNDRED))
    return max(candidates) if candidates else None


def figures_to_json(figures: MonitorFigures) -> dict[str, Any]:
    """The monitor's memory as JSON (Decimals as strings), for MonitorState."""
    return {
        "periods": {
            k: {"key": p.key, "balance": str(p.balance), "equity": str(p.equity)}
            for k, p in figures.periods.items()
        }
    }


def periods_from_json(data: dict[str, Any] | None) -> dict[str, PeriodStart]:
    periods = (data or {}).get("periods", {})
    return {
        k: PeriodStart(p["key"], Decimal(p["balance"]), Decimal(p["equity"]))
        for k, p in periods.items()
    }
