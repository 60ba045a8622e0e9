"""Volume maths of the copy decision: `Decimal` only, explicit rounding, never float.

Invariant: a volume this module hands back for a trade is a positive multiple of the
follower symbol's volume step, at least the larger of the subscription's `min_volume`
and the symbol's minimum lot, and at most the smaller of the subscription's
`max_volume` and the symbol's maximum. A volume that would need rounding *up* to reach
the minimum is a skip with a reason and the figures, never a bigger trade than the
rules give (the follower's risk must never grow by rounding).

Volume modes (spec/client-api.md, subscription `volume_mode`):

- 0 multiplier: master volume × `risk_multiplier`
- 1 proportional: master volume × follower equity / master equity × `risk_multiplier`
  (master equity converted to the follower's currency first, when they differ)
- 2 fixed: `fixed_volume`
- 3 equity-based: `fixed_volume` × follower equity / `base_equity`

Then: cut at `max_volume` (0 = none) and at the symbol's maximum, round down to the
symbol's volume step, and skip below `min_volume` (0 = none) or the symbol's minimum.
Steps count from zero (0.37 with step 0.01), as MT4/MT5 and the paper venue do.

All arithmetic runs in one fixed decimal context (`_CTX`: 40 digits, ROUND_DOWN)
rather than the thread's current context. Two reasons: the result must not depend on
what other code did to the thread's context (decisions are replayed from stored
inputs), and an inexact quotient must be truncated, never rounded up across a step
boundary. Every factor is positive, so truncating each intermediate towards zero keeps
the result at or below the exact value.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import (
    ROUND_DOWN,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
)
from enum import IntEnum, StrEnum

__all__ = [
    "SizingSkip",
    "Sized",
    "VolumeMode",
    "bound_volume",
    "copy_volume",
    "partial_close_volume",
    "raw_copy_volume",
    "round_down_to_step",
]

_CTX = Context(prec=40, rounding=ROUND_DOWN, traps=[InvalidOperation, DivisionByZero, Overflow])
_ZERO = Decimal(0)


class VolumeMode(IntEnum):
    """Wire values of the subscription's `volume_mode` (copytrading.choices mirrors them)."""

    MULTIPLIER = 0
    PROPORTIONAL = 1
    FIXED = 2
    EQUITY_BASED = 3


class SizingSkip(StrEnum):
    """Why sizing gave no volume. The values are also `decision.SkipReason` codes."""

    NO_EQUITY = "NO_EQUITY"
    VOLUME_BELOW_MINIMUM = "VOLUME_BELOW_MINIMUM"


@dataclass(frozen=True, slots=True)
class Sized:
    """A sizing outcome: a volume, or no volume with a skip code; `detail` names the figures.

    `close_all` is set only by `partial_close_volume`, when the share to close would leave
    less than the symbol's minimum open and the whole follower position is closed instead.
    """

    volume: Decimal | None
    skip: SizingSkip | None
    detail: str
    close_all: bool = False


def round_down_to_step(volume: Decimal, step: Decimal) -> Decimal:
    """Rounds `volume` towards zero to a whole multiple of `step`; exact, never float.

    The result carries the step's exponent (0.37 for step 0.01), so the same inputs
    always give the same digits. Rounding towards zero never increases a volume.
    """
    if step <= 0:
        raise ValueError(f"volume step must be positive, got {step}")
    return _CTX.multiply(_CTX.divide_int(volume, step), step)


def raw_copy_volume(
    *,
    mode: VolumeMode,
    master_volume: Decimal,
    risk_multiplier: Decimal,
    fixed_volume: Decimal,
    base_equity: Decimal,
    follower_equity: Decimal | None,
    master_equity: Decimal | None,
    equity_rate: Decimal | None = None,
) -> Sized:
    """The follower volume a volume mode asks for, before bounds and step rounding.

    `equity_rate` converts the master's equity into the follower's currency (follower
    units per master unit); None means both accounts share a currency. Zero, negative or
    unknown equity in the modes that divide by it is a NO_EQUITY skip, never a
    division error.
    """
    if mode == VolumeMode.MULTIPLIER:
        volume = _CTX.multiply(master_volume, risk_multiplier)
        return Sized(volume, None, f"{master_volume} lots × multiplier {risk_multiplier}")
    if mode == VolumeMode.FIXED:
        return Sized(fixed_volume, None, f"fixed volume {fixed_volume}")
    if mode == VolumeMode.PROPORTIONAL:
        if follower_equity is None or follower_equity <= 0:
            return Sized(
                None,
                SizingSkip.NO_EQUITY,
                f"follower equity is {_show(follower_equity)}: proportional sizing needs it",
            )
        if master_equity is None or master_equity <= 0:
            return Sized(
                None,
                SizingSkip.NO_EQUITY,
                f"master equity is {_show(master_equity)}: proportional sizing needs it",
            )
        if equity_rate is not None and equity_rate <= 0:
            return Sized(
                None, SizingSkip.NO_EQUITY, f"currency rate for master equity is {equity_rate}"
            )
        # Multiply first, divide last: one truncation per division, each towards zero.
        volume = _CTX.multiply(_CTX.multiply(master_volume, follower_equity), risk_multiplier)
        volume = _CTX.divide(volume, master_equity)
        rate_note = ""
        if equity_rate is not None:
            volume = _CTX.divide(volume, equity_rate)
            rate_note = f" at rate {equity_rate}"
        return Sized(
            volume,
            None,
            f"{master_volume} lots × follower equity {follower_equity} / master equity "
            f"{master_equity}{rate_note} × multiplier {risk_multiplier}",
        )
    if mode == VolumeMode.EQUITY_BASED:
        if follower_equity is None or follower_equity <= 0:
            return Sized(
                None,
                SizingSkip.NO_EQUITY,
                f"follower equity is {_show(follower_equity)}: equity-based sizing needs it",
            )
        if base_equity <= 0:
            return Sized(None, SizingSkip.NO_EQUITY, f"base_equity is {base_equity}")
        volume = _CTX.divide(_CTX.multiply(fixed_volume, follower_equity), base_equity)
        return Sized(
            volume,
            None,
            f"fixed volume {fixed_volume} × follower equity {follower_equity} / "
            f"base equity {base_equity}",
        )
    raise ValueError(f"unknown volume mode {mode!r}")


def bound_volume(
    volume: Decimal,
    *,
    min_volume: Decimal,
    max_volume: Decimal,
    symbol: str,
    symbol_min: Decimal,
    symbol_max: Decimal,
    step: Decimal,
) -> Sized:
    """Applies the bounds to a raw volume: cut at the maxima, round down, skip below minima.

    `min_volume`/`max_volume` are the subscription's (0 = none); `symbol_*` and `step` are
    the follower symbol's lot rules. Never rounds up: below a minimum is a
    VOLUME_BELOW_MINIMUM skip whose detail names the volume, the bound and the symbol.
    """
    notes: list[str] = []
    if max_volume > 0 and volume > max_volume:
        notes.append(f"cut to max_volume {max_volume}")
        volume = max_volume
    if symbol_max > 0 and volume > symbol_max:
        notes.append(f"cut to {symbol}'s maximum {symbol_max}")
        volume = symbol_max
    rounded = round_down_to_step(volume, step)
    if rounded != volume:
        notes.append(f"{volume:f} rounded down to step {step}")
    note = f" ({'; '.join(notes)})" if notes else ""
    if rounded < symbol_min or rounded <= 0:
        return Sized(
            None,
            SizingSkip.VOLUME_BELOW_MINIMUM,
            f"{rounded} lots < minimum {symbol_min} on {symbol}{note}",
        )
    if min_volume > 0 and rounded < min_volume:
        return Sized(
            None,
            SizingSkip.VOLUME_BELOW_MINIMUM,
            f"{rounded} lots < subscription min_volume {min_volume} on {symbol}{note}",
        )
    return Sized(rounded, None, f"{rounded} lots{note}")


def copy_volume(
    *,
    mode: VolumeMode,
    master_volume: Decimal,
    risk_multiplier: Decimal,
    fixed_volume: Decimal,
    base_equity: Decimal,
    follower_equity: Decimal | None,
    master_equity: Decimal | None,
    min_volume: Decimal,
    max_volume: Decimal,
    symbol: str,
    symbol_min: Decimal,
    symbol_max: Decimal,
    step: Decimal,
    equity_rate: Decimal | None = None,
) -> Sized:
    """The follower's volume for an opening trade: `raw_copy_volume`, then `bound_volume`.

    The detail reads as the whole calculation ("1.5 lots × multiplier 0.5 = 0.75 ->
    0.75 lots"), so a support agent can explain a size without re-deriving it.
    """
    raw = raw_copy_volume(
        mode=mode,
        master_volume=master_volume,
        risk_multiplier=risk_multiplier,
        fixed_volume=fixed_volume,
        base_equity=base_equity,
        follower_equity=follower_equity,
        master_equity=master_equity,
        equity_rate=equity_rate,
    )
    if raw.volume is None:
        return raw
    bounded = bound_volume(
        raw.volume,
        min_volume=min_volume,
        max_volume=max_volume,
        symbol=symbol,
        symbol_min=symbol_min,
        symbol_max=symbol_max,
        step=step,
    )
    detail = f"{raw.detail} = {raw.volume:f} -> {bounded.detail}"
    return Sized(bounded.volume, bounded.skip, detail)


def partial_close_volume(
    *,
    follower_volume: Decimal,
    closed_volume: Decimal,
    remaining_volume: Decimal,
    symbol: str,
    symbol_min: Decimal,
    step: Decimal,
) -> Sized:
    """The share of the follower position to close when the master closes part of its own.

    Share = follower volume × closed / (closed + remaining), rounded down to the step.
    Below the symbol's minimum: a VOLUME_BELOW_MINIMUM skip (the follower keeps the
    whole position until a later close). If what would stay open is below the minimum
    (a position the venue could not close in part later), the whole position closes:
    `close_all` is set and `volume` is the follower volume. The subscription's
    `min_volume` bounds opening trades only, not closes.
    """
    total = _CTX.add(closed_volume, remaining_volume)
    if closed_volume <= 0 or total <= 0:
        return Sized(
            None,
            SizingSkip.VOLUME_BELOW_MINIMUM,
            f"master closed {closed_volume} of {total} lots: no share to close",
        )
    raw = _CTX.divide(_CTX.multiply(follower_volume, closed_volume), total)
    share = round_down_to_step(raw, step)
    ratio = f"{closed_volume}/{total} of {follower_volume}"
    if share >= follower_volume:
        return Sized(follower_volume, None, f"{ratio} covers the whole position: closing all", True)
    if share < symbol_min or share <= 0:
        return Sized(
            None,
            SizingSkip.VOLUME_BELOW_MINIMUM,
            f"partial close of {share} lots ({ratio}) < minimum {symbol_min} on {symbol}",
        )
    rest = _CTX.subtract(follower_volume, share)
    if rest < symbol_min:
        return Sized(
            follower_volume,
            None,
            f"closing {share} lots ({ratio}) would leave {rest} < minimum {symbol_min} on "
            f"{symbol}: closing all {follower_volume}",
            True,
        )
    return Sized(share, None, f"closing {share} lots ({ratio}), {rest} stay open")


def _show(value: Decimal | None) -> str:
    return "unknown" if value is None else str(value)
