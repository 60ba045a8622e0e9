"""Fee arithmetic: pure functions of Decimals and datetimes, no database, no clock.

Every figure is a `Decimal` computed in one fixed context (28 digits) and rounded once, at
the end, to the currency's cents with ROUND_HALF_UP (`round_money`). Shares of a fee are
split so that they add up to the fee exactly: the broker's share is rounded, the IB's share
is rounded out of the broker's, and the master gets the rest.

The formulas (billing/README.md has a worked example):

- performance: gain = realized + floating_end - floating_start - other_fees;
  cumulative += gain; base = max(0, cumulative - hwm); fee = base x rate;
  hwm = max(hwm, cumulative) (the mark never falls; a loss is carried forward as
  hwm - cumulative and must be made up before any fee is due).
- management: fee = equity x annual_rate x seconds / (365 x 86400).
- subscription: the flat amount, once per period started.
- volume: lots x per_lot + notional / 1,000,000 x per_million.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Generic, TypeVar

CENTS = Decimal("0.01")
ZERO = Decimal("0")
YEAR_SECONDS = Decimal(365 * 86400)
MILLION = Decimal(1_000_000)
# One context for every fee computation: 28 significant digits, half-up, traps on.
FEE_CONTEXT = decimal.Context(
    prec=28,
    rounding=ROUND_HALF_UP,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
)

PERIOD_KINDS = ("weekly", "monthly", "quarterly")


class FeeInputError(ValueError):
    """A fee input that cannot be right (a negative rate, a naive datetime...)."""


def round_money(value: Decimal) -> Decimal:
    """`value` rounded half-up to cents: the only rounding applied to an amount."""
    return value.quantize(CENTS, rounding=ROUND_HALF_UP, context=FEE_CONTEXT)


def floor_money(value: Decimal) -> Decimal:
    """`value` rounded down to cents (what can be collected from a free margin)."""
    return value.quantize(CENTS, rounding=decimal.ROUND_DOWN, context=FEE_CONTEXT)


def _dec(value: Decimal, name: str, *, non_negative: bool = False) -> Decimal:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise FeeInputError(f"{name} must be a finite Decimal, got {value!r}")
    if non_negative and value < 0:
        raise FeeInputError(f"{name} must not be negative, got {value}")
    return value


# -- periods ---------------------------------------------------------------------------


def _aware(at: datetime, name: str = "at") -> datetime:
    if at.tzinfo is None:
        raise FeeInputError(f"{name} must be timezone-aware")
    return at.astimezone(UTC)


def period_bounds(kind: str, at: datetime) -> tuple[datetime, datetime]:
    """The calendar period (UTC) of `kind` that contains `at`: [start, end).

    Weeks start on Monday 00:00, months on the 1st, quarters on 1 Jan/Apr/Jul/Oct.
    """
    at = _aware(at)
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    if kind == "weekly":
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    if kind == "monthly":
        start = day.replace(day=1)
    elif kind == "quarterly":
        start = day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)
    else:
        raise FeeInputError(f"period must be one of {PERIOD_KINDS}, got {kind!r}")
    months = 1 if kind == "monthly" else 3
    month = start.month - 1 + months
    end = start.replace(year=start.year + month // 12, month=month % 12 + 1)
    return start, end


def day_bounds(at: datetime) -> tuple[datetime, datetime]:
    """The UTC day that contains `at`: [midnight, next midnight)."""
    start = _aware(at).replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


# -- the four fees ---------------------------------------------------------------------


@dataclass(frozen=True)
class PerformanceResult:
    """Every figure of one crystallisation, as stored with the accrual."""

    gain: Decimal  # this period's net result of the copied trades
    cumulative: Decimal  # net result since subscribing, after this period
    hwm_before: Decimal
    hwm_after: Decimal
    base: Decimal  # new profit above the mark
    amount: Decimal  # the fee, in cents
    carried_loss: Decimal  # what must be made up before the next fee


def performance_fee(
    *,
    rate: Decimal,
    hwm: Decimal,
    cumulative: Decimal,
    realized: Decimal,
    floating_start: Decimal,
    floating_end: Decimal,
    other_fees: Decimal,
) -> PerformanceResult:
    """The performance fee of one period, charged only on profit above the high-water mark.

    `cumulative` is the subscription's net result of copied trades up to the period's start
    (other fees deducted, performance fees not); `hwm` the highest it has been at a
    crystallisation (0 at subscribing). Deposits and withdrawals are not trades, so they
    never enter the base.
    """
    _dec(rate, "rate", non_negative=True)
    _dec(hwm, "hwm", non_negative=True)
    for name, value in (
        ("cumulative", cumulative),
        ("realized", realized),
        ("floating_start", floating_start),
        ("floating_end", floating_end),
    ):
        _dec(value, name)
    _dec(other_fees, "other_fees", non_negative=True)
    with decimal.localcontext(FEE_CONTEXT):
        gain = realized + floating_end - floating_start - other_fees
        after = cumulative + gain
        base = max(ZERO, after - hwm)
        amount = round_money(base * rate)
        hwm_after = max(hwm, after)
        return PerformanceResult(
            gain=gain,
            cumulative=after,
            hwm_before=hwm,
            hwm_after=hwm_after,
            base=base,
            amount=amount,
            carried_loss=hwm_after - after,
        )


def management_fee(*, equity: Decimal, annual_rate: Decimal, seconds: int) -> Decimal:
    """The management fee on `equity` for `seconds` at `annual_rate` (a fraction a year of
    365 days). Negative equity is charged nothing."""
    _dec(equity, "equity")
    _dec(annual_rate, "annual_rate", non_negative=True)
    if seconds < 0:
        raise FeeInputError(f"seconds must not be negative, got {seconds}")
    with decimal.localcontext(FEE_CONTEXT):
        return round_money(max(ZERO, equity) * annual_rate * Decimal(seconds) / YEAR_SECONDS)


def volume_fee(
    *, lots: Decimal, notional: Decimal, per_lot: Decimal, per_million: Decimal
) -> Decimal:
    """The volume fee on opening fills: per lot copied plus per million of notional."""
    for name, value in (
        ("lots", lots),
        ("notional", notional),
        ("per_lot", per_lot),
        ("per_million", per_million),
    ):
        _dec(value, name, non_negative=True)
    with decimal.localcontext(FEE_CONTEXT):
        return round_money(lots * per_lot + notional / MILLION * per_million)


# -- shares and payments ---------------------------------------------------------------


@dataclass(frozen=True)
class Shares:
    """Who gets what of one fee; master + broker + ib == fee exactly."""

    master: Decimal
    broker: Decimal
    ib: Decimal


def split_fee(amount: Decimal, *, broker_pct: Decimal, ib_pct: Decimal) -> Shares:
    """Splits a fee (in cents): the broker's share is `broker_pct` % of it, the IB's rebate
    `ib_pct` % of the broker's share, the master the rest."""
    _dec(amount, "amount")
    for name, pct in (("broker_pct", broker_pct), ("ib_pct", ib_pct)):
        if not ZERO <= _dec(pct, name) <= 100:
            raise FeeInputError(f"{name} must be between 0 and 100, got {pct}")
    with decimal.localcontext(FEE_CONTEXT):
        broker_total = round_money(amount * broker_pct / 100)
        ib = round_money(broker_total * ib_pct / 100)
        return Shares(master=amount - broker_total, broker=broker_total - ib, ib=ib)


K = TypeVar("K")


@dataclass(frozen=True)
class Allocation(Generic[K]):
    key: K
    due: Decimal
    paid: Decimal

    @property
    def unpaid(self) -> Decimal:
        return self.due - self.paid


def allocate_payment(paid: Decimal, dues: Sequence[tuple[K, Decimal]]) -> list[Allocation[K]]:
    """Spreads a payment over dues in the given order (the payment order): each due is paid
    in full before the next gets anything."""
    _dec(paid, "paid", non_negative=True)
    total = sum((d for _, d in dues), ZERO)
    if paid > total:
        raise FeeInputError(f"paid {paid} exceeds the total due {total}")
    left = paid
    out: list[Allocation[K]] = []
    for key, due in dues:
        _dec(due, "due", non_negative=True)
        part = min(left, due)
        left -= part
        out.append(Allocation(key, due, part))
    return out


def total(values: Iterable[Decimal]) -> Decimal:
    return sum(values, ZERO)
