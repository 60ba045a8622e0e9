"""Pre-trade risk checks: pure functions of (limits, the trade, the follower's exposure and
quote), run inside the copy decision (copytrading.decision, rules version 2).

No database, no network, no clock and no dependence on the thread's decimal context: every
input is an argument and all arithmetic runs in one fixed context (`_CTX`, 40 digits,
ROUND_DOWN), so a decision replays from the inputs stored with its instruction. Every check
returns a `CheckResult` (its code, its outcome, and the figures it compared as Decimal
strings), stored on the instruction, shown in the lineage page and the instruction admin.

The checks run in this order; a skip stops the run, cuts accumulate (each later check sees
the volume the earlier ones left), and a cut volume is rounded down to the symbol's step and
skipped, with the check's code, when it falls below the minimum lot:

1. NO_MASTER_SL: `require_master_sl` and the master's trade carries no stop loss: skip.
2. MAX_SLIPPAGE (market opens only): |follower price - master fill price| > `max_slippage`:
   skip, or (policy `limit`) send a limit order at the master's price instead. The
   follower price is the ask for a buy, the bid for a sell. Without a quote: NO_PRICE.
3. MAX_LOTS_PER_SYMBOL: open copied lots of this subscription on the follower symbol plus
   the new volume > the limit: cut to what fits.
4. MAX_LOTS_TOTAL: the same across every symbol of the subscription.
5. MAX_LEVERAGE: (open notional + the new trade's notional) / equity > the limit: cut.
6. MAX_RISK_PER_TRADE: stop-loss distance x volume x contract size (in the account
   currency) / equity x 100 > the limit %: cut. A follower trade without a stop loss has
   an unbounded risk: skip.
7. INSUFFICIENT_MARGIN (policy skip or cut): the new trade's margin (notional / account
   leverage) > free margin (equity - used margin): skip, or cut to what fits.

A limit of zero (or policy `off`) is no check, and no result. Equal to the limit passes.

Notional of a trade in the account currency = volume x contract size x entry price x the
rate of the symbol's price (quote) currency, or volume x contract size x the rate of its
base currency when that is known instead (USDJPY for a USD account: the rate of USD is 1).
The entry price is the follower's current price (ask for a buy, bid for a sell), or the
order's price for a pending or limit order. Open notional is what the fan-out summed over
the subscription's open copies at their open prices (`Exposure.open_notional`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from decimal import (
    ROUND_DOWN,
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
    localcontext,
)
from typing import Any, Self

__all__ = [
    "CUT",
    "LIMIT",
    "PASS",
    "SKIP",
    "WAIT",
    "CheckResult",
    "Exposure",
    "FollowerQuote",
    "Outcome",
    "PretradeLimits",
    "run_checks",
    "stored_decimal",
]

_CTX = Context(prec=40, rounding=ROUND_DOWN, traps=[InvalidOperation, DivisionByZero, Overflow])
_ZERO = Decimal(0)
_HUNDRED = Decimal(100)
_FIGURE = Decimal("0.0001")

PASS, CUT, SKIP, LIMIT, WAIT = "pass", "cut", "skip", "limit", "wait"

# Reason codes (copytrading.decision.SkipReason carries the same strings).
NO_MASTER_SL = "NO_MASTER_SL"
MAX_SLIPPAGE = "MAX_SLIPPAGE"
NO_PRICE = "NO_PRICE"
NO_EQUITY = "NO_EQUITY"
MAX_LOTS_PER_SYMBOL = "MAX_LOTS_PER_SYMBOL"
MAX_LOTS_TOTAL = "MAX_LOTS_TOTAL"
MAX_LEVERAGE = "MAX_LEVERAGE"
MAX_RISK_PER_TRADE = "MAX_RISK_PER_TRADE"
INSUFFICIENT_MARGIN = "INSUFFICIENT_MARGIN"
MARKET_CLOSED = "MARKET_CLOSED"


# Cached by value: limits, prices and volumes repeat across the followers of one event, and
# formatting is most of the checks' cost. Equal Decimals give the same string either way.
@functools.lru_cache(maxsize=65536)
def _fig(value: Decimal | None) -> str:
    """A figure as stored: a plain Decimal string, ratios to 4 places (half-even)."""
    if value is None:
        return ""
    if value.as_tuple().exponent < -4:  # type: ignore[operator]
        value = value.quantize(_FIGURE, rounding=ROUND_HALF_EVEN)
    return format(value.normalize(), "f")


class _Plain:
    """to_dict/from_dict of the frozen inputs below (Decimals as strings), without the
    copy decision's codec (this module must not import it)."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            out[f.name] = str(value) if isinstance(value, Decimal) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
        unknown = set(data) - known.keys()
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown field(s) {sorted(unknown)}")
        values: dict[str, Any] = {}
        for name, value in data.items():
            default = known[name].default
            if isinstance(default, Decimal) or name in _OPTIONAL_DECIMALS:
                values[name] = _decimal(name, value)
            elif isinstance(default, bool):
                if not isinstance(value, bool):
                    raise ValueError(f"{cls.__name__}.{name}: expected a boolean, got {value!r}")
                values[name] = value
            elif isinstance(default, int):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError(f"{cls.__name__}.{name}: expected an integer, got {value!r}")
                values[name] = value
            else:
                if not isinstance(value, str):
                    raise ValueError(f"{cls.__name__}.{name}: expected a string, got {value!r}")
                values[name] = value
        return cls(**values)


_OPTIONAL_DECIMALS = {"bid", "ask", "quote_rate", "base_rate", "margin", "open_notional"}


def stored_decimal(value: Any, name: str = "") -> Decimal:
    """A Decimal read back from stored JSON (limits here, decision inputs in copytrading):
    a decimal string, an int or a Decimal. A float would already be inexact, so it is
    refused, as are booleans, non-numbers and infinities, with an error naming the field."""
    where = f"{name}: " if name else ""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise ValueError(f"{where}expected a decimal string, got {value!r}")
    try:
        result = Decimal(value)
    except InvalidOperation as exc:
        raise ValueError(f"{where}not a decimal: {value!r}") from exc
    if not result.is_finite():
        raise ValueError(f"{where}not a finite decimal: {value!r}")
    return result


def _decimal(name: str, value: Any) -> Decimal | None:
    return None if value is None else stored_decimal(value, name)


@dataclass(frozen=True, slots=True)
class PretradeLimits(_Plain):
    """The pre-trade fields of risk.models.SubscriptionLimits (0 = no limit)."""

    max_lots_per_symbol: Decimal = _ZERO
    max_lots_total: Decimal = _ZERO
    max_leverage: Decimal = _ZERO
    max_risk_per_trade_pct: Decimal = _ZERO
    require_master_sl: bool = False
    margin_policy: str = "off"  # off | skip | cut
    max_slippage: Decimal = _ZERO
    slippage_policy: str = "skip"  # skip | limit
    market_closed_policy: str = "skip"  # skip | wait
    market_wait_seconds: int = 3600

    @classmethod
    def from_model(cls, limits: Any) -> Self | None:
        """Reads a SubscriptionLimits row (or anything with its attributes); None when no
        pre-trade limit is set, so a subscription without one decides exactly as before."""
        if limits is None:
            return None
        value = cls(**{f.name: getattr(limits, f.name) for f in fields(cls)})  # type: ignore[arg-type]
        return value if value.any_set() else None

    def any_set(self) -> bool:
        return bool(
            self.max_lots_per_symbol
            or self.max_lots_total
            or self.max_leverage
            or self.max_risk_per_trade_pct
            or self.require_master_sl
            or self.margin_policy != "off"
            or self.max_slippage
            or self.market_closed_policy != "skip"
        )

    def needs_quote(self) -> bool:
        """Whether a check reads the follower's current price."""
        return bool(
            self.max_slippage
            or self.max_leverage
            or self.max_risk_per_trade_pct
            or self.margin_policy != "off"
        )


@dataclass(frozen=True, slots=True)
class Exposure(_Plain):
    """What the subscription already holds, and the follower account's margin figures.

    `symbol_lots`/`total_lots`: open copied lots of this subscription (links opening, open
    or pending) on the trade's follower symbol / on every symbol. `open_notional`: their
    notional in the account currency at open prices (None: a rate was missing). `margin`:
    used margin of the last account snapshot; `leverage`: the account's leverage.
    """

    symbol_lots: Decimal = _ZERO
    total_lots: Decimal = _ZERO
    open_notional: Decimal | None = _ZERO
    margin: Decimal | None = None
    leverage: int = 100


@dataclass(frozen=True, slots=True)
class FollowerQuote(_Plain):
    """The follower symbol's current quote and how to value it in the account currency.

    `quote_rate`: account-currency units per unit of the symbol's price currency;
    `base_rate`: per unit of its base currency (either may be None when unknown).
    """

    contract_size: Decimal = Decimal(1)
    bid: Decimal | None = None
    ask: Decimal | None = None
    quote_rate: Decimal | None = None
    base_rate: Decimal | None = None


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check's answer: its code, outcome (pass, cut, skip, limit, wait) and figures."""

    code: str
    outcome: str
    figures: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "outcome": self.outcome, "figures": dict(self.figures)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        if set(data) - {"code", "outcome", "figures"}:
            raise ValueError(f"CheckResult: unknown field(s) {sorted(set(data) - {'code'})}")
        figures = data.get("figures") or {}
        return cls(
            code=str(data["code"]),
            outcome=str(data["outcome"]),
            figures=tuple(sorted((str(k), str(v)) for k, v in figures.items())),
        )

    def line(self) -> str:
        """ "MAX_LOTS_TOTAL cut: open 1.5, max 2, volume 1 -> 0.5"."""
        figures = ", ".join(f"{k} {v}" for k, v in self.figures)
        return f"{self.code} {self.outcome}" + (f": {figures}" if figures else "")


@dataclass(frozen=True, slots=True)
class Outcome:
    """The checks' answer for one trade: the volume to send (None: skipped, with `reason`),
    every check result, and `limit_price` when the open goes as a limit order instead."""

    volume: Decimal | None
    reason: str | None = None
    detail: str = ""
    checks: tuple[CheckResult, ...] = ()
    limit_price: Decimal | None = None


def round_down_to_step(volume: Decimal, step: Decimal) -> Decimal:
    """`volume` rounded down to a multiple of `step` (0 when negative)."""
    if volume <= 0:
        return _ZERO
    with localcontext(_CTX):
        steps = (volume / step).to_integral_value(rounding=ROUND_DOWN)
        return (steps * step).normalize() if steps else _ZERO


def _result(code: str, outcome: str, **figures: Decimal | str | None) -> CheckResult:
    # Sorted by name: the stored JSON (jsonb) keeps no order, and a replay must compare equal.
    pairs = [(k, v if v.__class__ is str else _fig(v)) for k, v in figures.items()]  # type: ignore[arg-type]
    pairs.sort()
    return CheckResult(code, outcome, tuple(pairs))


def _fixed_context(func: Callable[..., Outcome]) -> Callable[..., Outcome]:
    """Runs `func` in the module's decimal context, whatever the thread's is."""

    @functools.wraps(func)
    def run(**kwargs: Any) -> Outcome:
        with localcontext(_CTX):
            return func(**kwargs)

    return run


@_fixed_context
def run_checks(
    *,
    limits: PretradeLimits,
    side: str,
    volume: Decimal,
    pending: bool,
    order_price: Decimal | None,
    master_sl: Decimal | None,
    follower_sl: Decimal | None,
    quote: FollowerQuote | None,
    exposure: Exposure,
    equity: Decimal | None,
    min_volume: Decimal,
    step: Decimal,
) -> Outcome:
    """Runs every check that `limits` set, in the module's order (see the docstring).

    `volume`: what sizing gave (on the step, within every bound). `order_price`: the
    master's fill price for a market open, the order's price for a pending copy.
    `min_volume`: the larger of the subscription's and the symbol's minimum.
    """
    checks: list[CheckResult] = []
    limit_price: Decimal | None = None

    def skip(result: CheckResult, detail: str) -> Outcome:
        checks.append(result)
        return Outcome(None, result.code, detail, tuple(checks), None)

    def fit(code: str, room: Decimal, **figures: Decimal | None) -> tuple[Decimal | None, str]:
        """Cuts the volume to `room` lots (rounded down to the step); None below the
        minimum. Appends the result."""
        cut = round_down_to_step(room, step)
        if cut < min_volume or cut <= 0:
            checks.append(
                _result(code, SKIP, **figures, volume=volume, fits=cut, min_volume=min_volume)
            )
            return None, (
                f"{code}: only {_fig(max(cut, _ZERO))} lots fit, below the minimum "
                f"{_fig(min_volume)}"
            )
        checks.append(_result(code, CUT, **figures, volume=volume, cut_to=cut))
        return cut, ""

    # 1. the master's stop loss
    if limits.require_master_sl:
        if master_sl is None:
            return skip(
                _result(NO_MASTER_SL, SKIP, master_sl="none"),
                "the master's trade carries no stop loss (require_master_sl)",
            )
        checks.append(_result(NO_MASTER_SL, PASS, master_sl=master_sl))

    # The price the trade enters at: the follower's market, or the order's own price.
    market_price = None
    if quote is not None:
        market_price = quote.ask if side == "buy" else quote.bid
    entry = order_price if pending else market_price

    # 2. slippage
    if limits.max_slippage and not pending:
        if market_price is None or order_price is None:
            checks.append(
                _result(MAX_SLIPPAGE, SKIP, follower_price="none", master_price=order_price)
            )
            return Outcome(
                None, NO_PRICE, "no follower quote to measure slippage against", tuple(checks)
            )
        distance = abs(market_price - order_price)
        figures = {
            "master_price": order_price,
            "follower_price": market_price,
            "distance": distance,
            "max_slippage": limits.max_slippage,
        }
        if distance <= limits.max_slippage:
            checks.append(_result(MAX_SLIPPAGE, PASS, **figures))
        elif limits.slippage_policy == "limit":
            checks.append(_result(MAX_SLIPPAGE, LIMIT, **figures))
            limit_price = order_price
            entry = order_price
        else:
            return skip(
                _result(MAX_SLIPPAGE, SKIP, **figures),
                f"follower price {_fig(market_price)} is {_fig(distance)} from the master's "
                f"{_fig(order_price)} (max {_fig(limits.max_slippage)})",
            )

    # 3-4. lots per symbol, lots in total
    for code, held, limit in (
        (MAX_LOTS_PER_SYMBOL, exposure.symbol_lots, limits.max_lots_per_symbol),
        (MAX_LOTS_TOTAL, exposure.total_lots, limits.max_lots_total),
    ):
        if not limit:
            continue
        if held + volume <= limit:
            checks.append(_result(code, PASS, open_lots=held, volume=volume, max_lots=limit))
            continue
        cut, why = fit(code, limit - held, open_lots=held, max_lots=limit)
        if cut is None:
            return Outcome(None, code, why, tuple(checks))
        volume = cut

    # 5-7 value the trade in the account currency.
    needs_value = (
        limits.max_leverage or limits.max_risk_per_trade_pct or limits.margin_policy != "off"
    )
    if not needs_value:
        return Outcome(volume, None, "", tuple(checks), limit_price)
    code = (
        MAX_LEVERAGE
        if limits.max_leverage
        else MAX_RISK_PER_TRADE
        if limits.max_risk_per_trade_pct
        else INSUFFICIENT_MARGIN
    )
    if equity is None or equity <= 0:
        checks.append(_result(code, SKIP, equity=equity if equity is not None else "unknown"))
        return Outcome(
            None, NO_EQUITY, f"{code}: no follower equity to compare with", tuple(checks)
        )
    lot_value = _lot_value(quote, entry)
    if lot_value is None:
        checks.append(
            _result(code, SKIP, entry_price=entry if entry is not None else "none", rate="none")
        )
        return Outcome(
            None,
            NO_PRICE,
            f"{code}: no follower price or currency rate to value the trade",
            tuple(checks),
        )

    # 5. leverage
    if limits.max_leverage:
        if exposure.open_notional is None:
            checks.append(_result(MAX_LEVERAGE, SKIP, open_notional="unknown"))
            return Outcome(
                None, NO_PRICE, "MAX_LEVERAGE: an open copy cannot be valued", tuple(checks)
            )
        notional = volume * lot_value
        after = (exposure.open_notional + notional) / equity
        figures = {
            "open_notional": exposure.open_notional,
            "notional": notional,
            "equity": equity,
            "leverage": after,
            "max_leverage": limits.max_leverage,
        }
        if after <= limits.max_leverage:
            checks.append(_result(MAX_LEVERAGE, PASS, **figures))
        else:
            room = (limits.max_leverage * equity - exposure.open_notional) / lot_value
            cut, why = fit(MAX_LEVERAGE, room, **figures)
            if cut is None:
                return Outcome(None, MAX_LEVERAGE, why, tuple(checks))
            volume = cut

    # 6. risk per trade
    if limits.max_risk_per_trade_pct:
        if follower_sl is None:
            checks.append(_result(MAX_RISK_PER_TRADE, SKIP, follower_sl="none"))
            return Outcome(
                None,
                MAX_RISK_PER_TRADE,
                "MAX_RISK_PER_TRADE: the follower's trade has no stop loss (risk unbounded)",
                tuple(checks),
            )
        distance = abs(entry - follower_sl)  # type: ignore[operator]
        loss_per_lot = distance * lot_value / entry  # type: ignore[operator]
        risk_pct = volume * loss_per_lot / equity * _HUNDRED
        figures = {
            "entry_price": entry,
            "sl": follower_sl,
            "sl_distance": distance,
            "loss_per_lot": loss_per_lot,
            "equity": equity,
            "risk_pct": risk_pct,
            "max_risk_pct": limits.max_risk_per_trade_pct,
        }
        if risk_pct <= limits.max_risk_per_trade_pct:
            checks.append(_result(MAX_RISK_PER_TRADE, PASS, **figures))
        else:
            room = limits.max_risk_per_trade_pct / _HUNDRED * equity / loss_per_lot
            cut, why = fit(MAX_RISK_PER_TRADE, room, **figures)
            if cut is None:
                return Outcome(None, MAX_RISK_PER_TRADE, why, tuple(checks))
            volume = cut

    # 7. margin
    if limits.margin_policy != "off":
        used = exposure.margin if exposure.margin is not None else _ZERO
        free = equity - used
        leverage = Decimal(max(exposure.leverage, 1))
        required = volume * lot_value / leverage
        figures = {
            "required_margin": required,
            "free_margin": free,
            "equity": equity,
            "used_margin": used,
            "account_leverage": leverage,
        }
        if required <= free:
            checks.append(_result(INSUFFICIENT_MARGIN, PASS, **figures))
        elif limits.margin_policy == "cut":
            cut, why = fit(INSUFFICIENT_MARGIN, free * leverage / lot_value, **figures)
            if cut is None:
                return Outcome(None, INSUFFICIENT_MARGIN, why, tuple(checks))
            volume = cut
        else:
            return skip(
                _result(INSUFFICIENT_MARGIN, SKIP, **figures),
                f"margin {_fig(required)} > free margin {_fig(free)}",
            )
    return Outcome(volume, None, "", tuple(checks), limit_price)


def _lot_value(quote: FollowerQuote | None, entry: Decimal | None) -> Decimal | None:
    """The notional of one lot at `entry`, in the account currency; None when unknown."""
    if quote is None or entry is None or entry <= 0:
        return None
    if quote.quote_rate is not None:
        return quote.contract_size * entry * quote.quote_rate
    if quote.base_rate is not None:
        return quote.contract_size * quote.base_rate
    return None


def currency_rates(
    symbol: str, suffix: str, margin_currency: str, account_currency: str
) -> tuple[Decimal | None, Decimal | None]:
    """(quote_rate, base_rate) of a symbol for an account, where the names tell them: a
    six-letter name (suffix removed) is base + quote currency (EURUSD, XAUUSD); another
    name (an index, US30) is priced in its margin currency. A rate is 1 where the currency
    is the account's, else unknown (None): no cross rates are guessed."""
    name = symbol[: len(symbol) - len(suffix)] if suffix and symbol.endswith(suffix) else symbol
    name = name.upper()
    if len(name) == 6 and name.isalpha():
        base, quote = name[:3], name[3:]
    else:
        base, quote = "", (margin_currency or "").upper()
    account = account_currency.upper()
    return (
        Decimal(1) if quote == account else None,
        Decimal(1) if base == account else None,
    )
