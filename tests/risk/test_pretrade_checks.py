"""Each pre-trade check at its boundaries: equal to the limit passes, one step over cuts (or
skips); cuts accumulate and a cut below the minimum lot is a skip with the check's code."""

from decimal import Decimal as D

import pytest

from risk.checks import (
    CheckResult,
    Exposure,
    FollowerQuote,
    PretradeLimits,
    currency_rates,
    run_checks,
)

# EURUSD for a USD account: one lot is 100,000 x price dollars.
QUOTE = FollowerQuote(contract_size=D(100000), bid=D("1.10000"), ask=D("1.10010"), quote_rate=D(1))


def run(limits: PretradeLimits, volume: str = "1", **kwargs):
    args = {
        "limits": limits,
        "side": "buy",
        "volume": D(volume),
        "pending": False,
        "order_price": D("1.10010"),
        "master_sl": D("1.09010"),
        "follower_sl": D("1.09010"),
        "quote": QUOTE,
        "exposure": Exposure(),
        "equity": D(100000),
        "min_volume": D("0.01"),
        "step": D("0.01"),
        **kwargs,
    }
    return run_checks(**args)


def only(outcome, code: str) -> CheckResult:
    found = [c for c in outcome.checks if c.code == code]
    assert len(found) == 1, outcome.checks
    return found[0]


def test_no_limit_set_runs_no_check() -> None:
    outcome = run(PretradeLimits())
    assert (outcome.volume, outcome.reason, outcome.checks) == (D(1), None, ())


def test_require_master_sl() -> None:
    limits = PretradeLimits(require_master_sl=True)
    assert run(limits).volume == D(1)
    skipped = run(limits, master_sl=None)
    assert (skipped.volume, skipped.reason) == (None, "NO_MASTER_SL")
    assert only(skipped, "NO_MASTER_SL").outcome == "skip"


@pytest.mark.parametrize(
    ("ask", "outcome", "reason"),
    [
        ("1.10110", "pass", None),  # exactly 0.001 away: passes
        ("1.10111", "skip", "MAX_SLIPPAGE"),  # one point more
        ("1.09910", "pass", None),  # the other direction, at the limit
        ("1.09909", "skip", "MAX_SLIPPAGE"),
    ],
)
def test_slippage_boundary(ask: str, outcome: str, reason: str | None) -> None:
    quote = FollowerQuote(contract_size=D(100000), bid=D(ask), ask=D(ask), quote_rate=D(1))
    result = run(PretradeLimits(max_slippage=D("0.001")), quote=quote)
    assert result.reason == reason
    check = only(result, "MAX_SLIPPAGE")
    assert check.outcome == outcome
    assert dict(check.figures)["master_price"] == "1.1001"


def test_slippage_limit_policy_sends_a_limit_at_the_master_price() -> None:
    quote = FollowerQuote(contract_size=D(1), bid=D("1.2"), ask=D("1.2"), quote_rate=D(1))
    limits = PretradeLimits(max_slippage=D("0.001"), slippage_policy="limit")
    result = run(limits, quote=quote)
    assert (result.volume, result.limit_price) == (D(1), D("1.10010"))
    assert only(result, "MAX_SLIPPAGE").outcome == "limit"


def test_slippage_is_measured_on_the_bid_for_a_sell() -> None:
    limits = PretradeLimits(max_slippage=D("0.0001"))
    assert run(limits, side="sell", order_price=D("1.10000")).reason is None
    assert run(limits, side="sell", order_price=D("1.10011")).reason == "MAX_SLIPPAGE"


def test_slippage_without_a_quote_is_no_price() -> None:
    result = run(PretradeLimits(max_slippage=D("0.001")), quote=None)
    assert (result.volume, result.reason) == (None, "NO_PRICE")


def test_slippage_is_not_checked_for_pending_copies() -> None:
    result = run(PretradeLimits(max_slippage=D("0.0001")), pending=True, order_price=D("1.05"))
    assert (result.volume, result.checks) == (D(1), ())


@pytest.mark.parametrize(
    ("field", "code", "exposure"),
    [
        ("max_lots_per_symbol", "MAX_LOTS_PER_SYMBOL", Exposure(symbol_lots=D("1.5"))),
        ("max_lots_total", "MAX_LOTS_TOTAL", Exposure(total_lots=D("1.5"))),
    ],
)
def test_lots_limits_boundaries(field: str, code: str, exposure: Exposure) -> None:
    limits = PretradeLimits(**{field: D("2.5")})
    at_limit = run(limits, volume="1", exposure=exposure)
    assert (at_limit.volume, only(at_limit, code).outcome) == (D(1), "pass")
    over = run(limits, volume="1.01", exposure=exposure)
    assert (over.volume, only(over, code).outcome) == (D(1), "cut")
    assert dict(only(over, code).figures) == {
        "open_lots": "1.5",
        "max_lots": "2.5",
        "volume": "1.01",
        "cut_to": "1",
    }
    full = run(limits, volume="1", exposure=Exposure(symbol_lots=D("2.5"), total_lots=D("2.5")))
    assert (full.volume, full.reason) == (None, code)


def test_a_cut_below_the_minimum_lot_is_a_skip() -> None:
    limits = PretradeLimits(max_lots_total=D("2"))
    result = run(limits, exposure=Exposure(total_lots=D("1.95")), min_volume=D("0.1"))
    assert (result.volume, result.reason) == (None, "MAX_LOTS_TOTAL")
    assert dict(only(result, "MAX_LOTS_TOTAL").figures)["fits"] == "0.05"


def test_leverage_boundary() -> None:
    # 1 lot at 1.1001 = 110,010 notional; with 90,000 open, leverage after = 2.0001.
    limits = PretradeLimits(max_leverage=D("2.0001"))
    exposure = Exposure(open_notional=D(90000))
    at_limit = run(limits, exposure=exposure)
    assert (at_limit.volume, only(at_limit, "MAX_LEVERAGE").outcome) == (D(1), "pass")
    over = run(replace_limits(limits, max_leverage=D("2")), exposure=exposure)
    check = only(over, "MAX_LEVERAGE")
    assert (over.volume, check.outcome) == (D("0.99"), "cut")
    assert dict(check.figures)["leverage"] == "2.0001"


def replace_limits(limits: PretradeLimits, **changes: object) -> PretradeLimits:
    from dataclasses import replace

    return replace(limits, **changes)


def test_leverage_without_equity_or_price_skips() -> None:
    limits = PretradeLimits(max_leverage=D(10))
    assert run(limits, equity=None).reason == "NO_EQUITY"
    assert run(limits, quote=None).reason == "NO_PRICE"
    no_rate = FollowerQuote(contract_size=D(100000), bid=D(1), ask=D(1))
    assert run(limits, quote=no_rate).reason == "NO_PRICE"


def test_risk_per_trade_boundary() -> None:
    # SL 0.01 below the entry: 1 lot loses 0.01 x 100,000 = 1,000 = 1% of 100,000.
    limits = PretradeLimits(max_risk_per_trade_pct=D(1))
    at_limit = run(limits)
    assert (at_limit.volume, only(at_limit, "MAX_RISK_PER_TRADE").outcome) == (D(1), "pass")
    over = run(limits, volume="1.01")
    check = only(over, "MAX_RISK_PER_TRADE")
    assert (over.volume, check.outcome) == (D(1), "cut")
    assert dict(check.figures)["risk_pct"] == "1.01"


def test_risk_per_trade_without_a_stop_loss_skips() -> None:
    result = run(PretradeLimits(max_risk_per_trade_pct=D(5)), follower_sl=None)
    assert (result.volume, result.reason) == (None, "MAX_RISK_PER_TRADE")


def test_risk_per_trade_in_a_base_currency_account() -> None:
    # USDJPY for a USD account: one lot is 100,000 USD; a 1.5 yen stop at 150 is 1%.
    quote = FollowerQuote(contract_size=D(100000), bid=D(150), ask=D(150), base_rate=D(1))
    limits = PretradeLimits(max_risk_per_trade_pct=D(1))
    result = run(limits, quote=quote, order_price=D(150), follower_sl=D("148.5"))
    assert (result.volume, only(result, "MAX_RISK_PER_TRADE").outcome) == (D(1), "pass")


@pytest.mark.parametrize(("policy", "volume", "reason"), [("skip", None, "INSUFFICIENT_MARGIN")])
def test_margin_skip_policy(policy: str, volume: D | None, reason: str) -> None:
    # 1 lot needs 110,010 / 100 = 1,100.10 of margin.
    limits = PretradeLimits(margin_policy=policy)
    exposure = Exposure(margin=D("98899.90"), leverage=100)  # free margin exactly 1,100.10
    assert run(limits, exposure=exposure).volume == D(1)
    short = run(limits, exposure=Exposure(margin=D("98899.91"), leverage=100))
    assert (short.volume, short.reason) == (volume, reason)


def test_margin_cut_policy_cuts_to_what_fits() -> None:
    limits = PretradeLimits(margin_policy="cut")
    result = run(limits, exposure=Exposure(margin=D(99500), leverage=100))  # free 500
    check = only(result, "INSUFFICIENT_MARGIN")
    assert (result.volume, check.outcome) == (D("0.45"), "cut")
    broke = run(limits, exposure=Exposure(margin=D(100000), leverage=100))
    assert (broke.volume, broke.reason) == (None, "INSUFFICIENT_MARGIN")


def test_cuts_accumulate_in_order() -> None:
    limits = PretradeLimits(
        max_lots_per_symbol=D(3), max_lots_total=D(2), margin_policy="cut", require_master_sl=True
    )
    result = run(limits, volume="4", exposure=Exposure(margin=D(99500), leverage=100))
    assert [c.code for c in result.checks] == [
        "NO_MASTER_SL",
        "MAX_LOTS_PER_SYMBOL",
        "MAX_LOTS_TOTAL",
        "INSUFFICIENT_MARGIN",
    ]
    assert [c.outcome for c in result.checks] == ["pass", "cut", "cut", "cut"]
    assert result.volume == D("0.45")


def test_check_results_round_trip_as_json() -> None:
    result = run(PretradeLimits(max_lots_total=D(1)), volume="2")
    for check in result.checks:
        assert CheckResult.from_dict(check.to_dict()) == check
    limits = PretradeLimits(max_leverage=D(5), margin_policy="cut")
    assert PretradeLimits.from_dict(limits.to_dict()) == limits
    assert FollowerQuote.from_dict(QUOTE.to_dict()) == QUOTE
    with pytest.raises(ValueError, match="unknown field"):
        PretradeLimits.from_dict({"max_lots": "1"})


@pytest.mark.parametrize(
    ("symbol", "suffix", "margin", "account", "rates"),
    [
        ("EURUSD", "", "EUR", "USD", (D(1), None)),
        ("USDJPYm", "m", "USD", "USD", (None, D(1))),
        ("XAUUSD", "", "USD", "USD", (D(1), None)),
        ("US30", "", "USD", "USD", (D(1), None)),
        ("EURGBP", "", "EUR", "USD", (None, None)),
    ],
)
def test_currency_rates_from_symbol_names(symbol, suffix, margin, account, rates) -> None:
    assert currency_rates(symbol, suffix, margin, account) == rates
