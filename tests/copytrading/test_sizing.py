"""Volume maths of the copy decision (copytrading/sizing.py): Decimal only, never rounds up."""

from decimal import Decimal as D
from decimal import localcontext
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from copytrading.sizing import (
    SizingSkip,
    VolumeMode,
    bound_volume,
    copy_volume,
    partial_close_volume,
    raw_copy_volume,
    round_down_to_step,
)

EURUSDM = {"symbol": "EURUSDm", "symbol_min": D("0.01"), "symbol_max": D("100"), "step": D("0.01")}


def size(mode: VolumeMode = VolumeMode.MULTIPLIER, **kwargs: object):
    args = {
        "mode": mode,
        "master_volume": D("1"),
        "risk_multiplier": D("1"),
        "fixed_volume": D("0"),
        "base_equity": D("10000"),
        "follower_equity": D("10000"),
        "master_equity": D("10000"),
        "min_volume": D("0"),
        "max_volume": D("0"),
        **EURUSDM,
    }
    args.update(kwargs)
    return copy_volume(**args)


# --- round_down_to_step


@pytest.mark.parametrize(
    ("volume", "step", "expected"),
    [
        ("0.379", "0.01", "0.37"),
        ("0.37", "0.01", "0.37"),
        ("0.009", "0.01", "0.00"),
        ("1.99999", "0.1", "1.9"),
        ("7", "2", "6"),
        ("0.125", "0.05", "0.10"),
        ("3", "0.5", "3.0"),
    ],
)
def test_round_down_to_step_never_rounds_up(volume: str, step: str, expected: str) -> None:
    result = round_down_to_step(D(volume), D(step))
    assert result == D(expected)
    assert str(result) == expected


def test_round_down_to_step_refuses_a_zero_step() -> None:
    with pytest.raises(ValueError, match="step"):
        round_down_to_step(D("1"), D("0"))


def test_round_down_to_step_ignores_the_threads_decimal_context() -> None:
    with localcontext() as ctx:
        ctx.prec = 3
        ctx.rounding = "ROUND_UP"
        assert round_down_to_step(D("12.3456"), D("0.001")) == D("12.345")


@given(
    st.decimals(min_value=0, max_value=10_000, places=6),
    st.sampled_from([D("0.01"), D("0.001"), D("0.1"), D("1"), D("0.05")]),
)
def test_round_down_to_step_is_the_largest_multiple_not_above(volume: D, step: D) -> None:
    result = round_down_to_step(volume, step)
    assert result <= volume < result + step
    assert result % step == 0


# --- volume modes


def test_multiplier_mode_multiplies_master_volume() -> None:
    result = size(VolumeMode.MULTIPLIER, master_volume=D("1.50"), risk_multiplier=D("0.5"))
    assert result.volume == D("0.75")
    assert result.skip is None
    assert "1.50 lots × multiplier 0.5" in result.detail


def test_proportional_mode_scales_by_equity_ratio() -> None:
    result = size(
        VolumeMode.PROPORTIONAL,
        master_volume=D("2"),
        follower_equity=D("2500"),
        master_equity=D("10000"),
        risk_multiplier=D("2"),
    )
    assert result.volume == D("1.00")


def test_proportional_mode_converts_master_equity_at_the_given_rate() -> None:
    # Master 10,000 USD at 150 JPY/USD = 1,500,000 JPY; follower holds 300,000 JPY.
    result = size(
        VolumeMode.PROPORTIONAL,
        master_volume=D("1"),
        follower_equity=D("300000"),
        master_equity=D("10000"),
        equity_rate=D("150"),
    )
    assert result.volume == D("0.20")


@pytest.mark.parametrize("equity", [None, D("0"), D("-5")])
def test_proportional_mode_without_follower_equity_is_a_skip(equity: D | None) -> None:
    result = size(VolumeMode.PROPORTIONAL, follower_equity=equity)
    assert result.volume is None
    assert result.skip is SizingSkip.NO_EQUITY
    assert "follower equity" in result.detail


@pytest.mark.parametrize("equity", [None, D("0")])
def test_proportional_mode_without_master_equity_is_a_skip(equity: D | None) -> None:
    result = size(VolumeMode.PROPORTIONAL, master_equity=equity)
    assert result.skip is SizingSkip.NO_EQUITY
    assert "master equity" in result.detail


def test_fixed_mode_ignores_master_volume() -> None:
    result = size(VolumeMode.FIXED, master_volume=D("7"), fixed_volume=D("0.30"))
    assert result.volume == D("0.30")


def test_fixed_mode_with_zero_fixed_volume_is_below_minimum() -> None:
    result = size(VolumeMode.FIXED, fixed_volume=D("0"))
    assert result.skip is SizingSkip.VOLUME_BELOW_MINIMUM


def test_equity_based_mode_scales_fixed_volume_by_base_equity() -> None:
    result = size(VolumeMode.EQUITY_BASED, fixed_volume=D("0.10"), follower_equity=D("25000"))
    assert result.volume == D("0.25")
    assert "base equity 10000" in result.detail


def test_equity_based_mode_without_equity_is_a_skip() -> None:
    result = size(VolumeMode.EQUITY_BASED, fixed_volume=D("0.10"), follower_equity=D("0"))
    assert result.skip is SizingSkip.NO_EQUITY


def test_equity_based_mode_with_zero_base_equity_is_a_skip_not_an_error() -> None:
    result = size(VolumeMode.EQUITY_BASED, fixed_volume=D("0.10"), base_equity=D("0"))
    assert result.skip is SizingSkip.NO_EQUITY
    assert "base_equity" in result.detail


def test_unknown_volume_mode_is_an_error() -> None:
    with pytest.raises(ValueError, match="volume mode"):
        raw_copy_volume(
            mode=9,  # type: ignore[arg-type]
            master_volume=D("1"),
            risk_multiplier=D("1"),
            fixed_volume=D("0"),
            base_equity=D("1"),
            follower_equity=D("1"),
            master_equity=D("1"),
        )


# --- bounds


def test_volume_below_symbol_minimum_is_skipped_not_rounded_up() -> None:
    result = size(master_volume=D("0.004"))
    assert result.volume is None
    assert result.skip is SizingSkip.VOLUME_BELOW_MINIMUM
    assert "0.00 lots < minimum 0.01 on EURUSDm" in result.detail


def test_detail_names_the_unrounded_volume() -> None:
    result = bound_volume(
        D("0.004"),
        min_volume=D("0"),
        max_volume=D("0"),
        symbol="EURUSDm",
        symbol_min=D("0.01"),
        symbol_max=D("100"),
        step=D("0.001"),
    )
    assert result.detail == "0.004 lots < minimum 0.01 on EURUSDm"


def test_volume_below_subscription_min_volume_is_skipped() -> None:
    result = size(master_volume=D("0.05"), min_volume=D("0.10"))
    assert result.skip is SizingSkip.VOLUME_BELOW_MINIMUM
    assert "min_volume 0.10" in result.detail


def test_volume_above_subscription_max_volume_is_cut() -> None:
    result = size(master_volume=D("5"), max_volume=D("1.5"))
    assert result.volume == D("1.50")
    assert "cut to max_volume 1.5" in result.detail


def test_volume_above_symbol_maximum_is_cut() -> None:
    result = size(master_volume=D("500"))
    assert result.volume == D("100.00")
    assert "EURUSDm's maximum 100" in result.detail


def test_max_volume_below_symbol_minimum_skips() -> None:
    result = size(master_volume=D("1"), max_volume=D("0.005"))
    assert result.skip is SizingSkip.VOLUME_BELOW_MINIMUM


def test_volume_is_rounded_down_to_the_follower_step() -> None:
    result = size(master_volume=D("1"), risk_multiplier=D("0.3333"))
    assert result.volume == D("0.33")
    assert "rounded down to step 0.01" in result.detail


def test_coarse_step_rounds_down() -> None:
    result = size(master_volume=D("0.39"), symbol_min=D("0.1"), step=D("0.1"))
    assert result.volume == D("0.3")


# --- partial closes


def partial(**kwargs: object):
    args = {
        "follower_volume": D("1.00"),
        "closed_volume": D("0.5"),
        "remaining_volume": D("0.5"),
        "symbol": "EURUSDm",
        "symbol_min": D("0.01"),
        "step": D("0.01"),
    }
    args.update(kwargs)
    return partial_close_volume(**args)


def test_partial_close_closes_the_same_share() -> None:
    result = partial(follower_volume=D("0.60"), closed_volume=D("1"), remaining_volume=D("2"))
    assert result.volume == D("0.20")
    assert result.close_all is False


def test_partial_close_rounds_the_share_down() -> None:
    result = partial(follower_volume=D("0.10"), closed_volume=D("1"), remaining_volume=D("2"))
    assert result.volume == D("0.03")


def test_partial_close_below_minimum_is_skipped() -> None:
    result = partial(follower_volume=D("0.01"), closed_volume=D("1"), remaining_volume=D("1"))
    assert result.volume is None
    assert result.skip is SizingSkip.VOLUME_BELOW_MINIMUM
    assert "< minimum 0.01 on EURUSDm" in result.detail


def test_partial_close_leaving_less_than_minimum_closes_all() -> None:
    result = partial(
        follower_volume=D("0.10"),
        closed_volume=D("0.95"),
        remaining_volume=D("0.05"),
        symbol_min=D("0.02"),
    )
    # 0.095 -> 0.09 would leave 0.01 < 0.02: close the whole 0.10.
    assert result.volume == D("0.10")
    assert result.close_all is True


def test_partial_close_without_closed_volume_is_a_skip() -> None:
    assert partial(closed_volume=D("0")).skip is SizingSkip.VOLUME_BELOW_MINIMUM


# --- properties

steps = st.sampled_from([D("0.01"), D("0.001"), D("0.1"), D("1"), D("0.05")])
positive = st.decimals(min_value=D("0.0001"), max_value=D("100000"), places=4)
maybe_equity = st.none() | st.decimals(min_value=D("-10"), max_value=D("1000000"), places=2)


@given(
    mode=st.sampled_from(list(VolumeMode)),
    master_volume=st.decimals(min_value=0, max_value=1000, places=2),
    risk_multiplier=positive,
    fixed_volume=st.decimals(min_value=0, max_value=100, places=2),
    base_equity=st.decimals(min_value=0, max_value=1000000, places=2),
    follower_equity=maybe_equity,
    master_equity=maybe_equity,
    min_volume=st.decimals(min_value=0, max_value=5, places=2),
    extra=st.decimals(min_value=0, max_value=50, places=2),
    use_max=st.booleans(),
    step=steps,
    symbol_min_steps=st.integers(min_value=1, max_value=100),
    symbol_max=st.decimals(min_value=D("0.01"), max_value=1000, places=2),
)
def test_sized_volume_respects_every_bound(
    mode: VolumeMode,
    master_volume: D,
    risk_multiplier: D,
    fixed_volume: D,
    base_equity: D,
    follower_equity: D | None,
    master_equity: D | None,
    min_volume: D,
    extra: D,
    use_max: bool,
    step: D,
    symbol_min_steps: int,
    symbol_max: D,
) -> None:
    symbol_min = step * symbol_min_steps
    symbol_max = max(symbol_max, symbol_min)
    max_volume = min_volume + extra if use_max else D(0)
    result = size(
        mode,
        master_volume=master_volume,
        risk_multiplier=risk_multiplier,
        fixed_volume=fixed_volume,
        base_equity=base_equity,
        follower_equity=follower_equity,
        master_equity=master_equity,
        min_volume=min_volume,
        max_volume=max_volume,
        symbol_min=symbol_min,
        symbol_max=symbol_max,
        step=step,
    )
    if result.volume is None:
        assert result.skip is not None
        assert result.detail
        return
    volume = result.volume
    assert isinstance(volume, D)
    assert volume > 0
    assert volume % step == 0
    assert volume >= symbol_min
    assert volume >= min_volume
    assert volume <= symbol_max
    if max_volume > 0:
        assert volume <= max_volume


@given(
    master_volume=st.decimals(min_value=D("0.01"), max_value=1000, places=2),
    risk_multiplier=positive,
    follower_equity=st.decimals(min_value=D("0.01"), max_value=10**7, places=2),
    master_equity=st.decimals(min_value=D("0.01"), max_value=10**7, places=2),
    step=steps,
)
def test_proportional_volume_is_the_exact_value_rounded_down(
    master_volume: D, risk_multiplier: D, follower_equity: D, master_equity: D, step: D
) -> None:
    exact = (
        Fraction(master_volume)
        * Fraction(follower_equity)
        * Fraction(risk_multiplier)
        / Fraction(master_equity)
    )
    result = raw_copy_volume(
        mode=VolumeMode.PROPORTIONAL,
        master_volume=master_volume,
        risk_multiplier=risk_multiplier,
        fixed_volume=D(0),
        base_equity=D(1),
        follower_equity=follower_equity,
        master_equity=master_equity,
    )
    assert result.volume is not None
    rounded = round_down_to_step(result.volume, step)
    assert Fraction(rounded) <= exact < Fraction(rounded) + Fraction(step)


@given(
    follower_steps=st.integers(min_value=1, max_value=100_000),
    closed=st.decimals(min_value=D("0.01"), max_value=1000, places=2),
    remaining=st.decimals(min_value=D("0.01"), max_value=1000, places=2),
    step=steps,
    min_steps=st.integers(min_value=1, max_value=50),
)
def test_partial_close_never_exceeds_the_position_nor_leaves_dust(
    follower_steps: int, closed: D, remaining: D, step: D, min_steps: int
) -> None:
    follower_volume = step * follower_steps
    symbol_min = step * min_steps
    result = partial(
        follower_volume=follower_volume,
        closed_volume=closed,
        remaining_volume=remaining,
        symbol_min=symbol_min,
        step=step,
    )
    if result.volume is None:
        assert result.skip is SizingSkip.VOLUME_BELOW_MINIMUM
        return
    assert result.volume % step == 0
    assert 0 < result.volume <= follower_volume
    if result.close_all:
        assert result.volume == follower_volume
    else:
        assert result.volume >= symbol_min
        assert follower_volume - result.volume >= symbol_min
