"""The copy decision under rules 2: rules 1 plus the pre-trade checks. Without limits it
gives rules 1's answer (a property over any inputs); with limits each check skips, cuts,
turns an open into a limit order or makes it wait for its market, and every result is kept
in the decision and replays from the stored inputs."""

from dataclasses import replace
from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from copytrading.decision import (
    CopyAction,
    DecisionInputs,
    OrderType,
    SkipReason,
    decide,
    replay,
)
from risk.checks import Exposure, FollowerQuote, PretradeLimits
from tests.copytrading.test_decision import EURUSDM, inputs, opened
from tests.copytrading.test_decision_properties import decision_inputs

QUOTE = FollowerQuote(contract_size=D(100000), bid=D("1.10000"), ask=D("1.10010"), quote_rate=D(1))


@settings(max_examples=300, deadline=None)
@given(decision_inputs())
def test_rules_2_without_limits_give_rules_1s_answer(given_inputs: DecisionInputs) -> None:
    v1 = decide(given_inputs, rule_version="1")
    v2 = decide(given_inputs, rule_version="2")
    assert v2 == replace(v1, rule_version="2")


@settings(max_examples=100, deadline=None)
@given(decision_inputs(), st.sampled_from(["1", "2"]))
def test_rules_1_ignore_the_pretrade_inputs(given_inputs: DecisionInputs, version: str) -> None:
    limited = replace(given_inputs, limits=PretradeLimits(max_lots_total=D("0.01")))
    if version == "1":
        assert decide(limited, rule_version="1") == decide(given_inputs, rule_version="1")
    stored = limited.to_dict()
    assert replay(stored, version) == decide(limited, rule_version=version)


def limited(**limits: object) -> DecisionInputs:
    return inputs(
        limits=PretradeLimits(**limits),
        quote=QUOTE,
        exposure=Exposure(total_lots=D("1.5"), open_notional=D(0), margin=D(0), leverage=100),
    )


def test_max_lots_total_cuts_the_open_and_keeps_every_check() -> None:
    decision = decide(limited(max_lots_total=D("2")))
    assert (decision.action, decision.volume, decision.rule_version) == (
        CopyAction.OPEN,
        D("0.5"),
        "2",
    )
    (check,) = decision.checks
    assert (check.code, check.outcome) == ("MAX_LOTS_TOTAL", "cut")
    assert "MAX_LOTS_TOTAL cut" in decision.detail
    assert replay(limited(max_lots_total=D("2")).to_dict(), "2") == decision


def test_a_failed_check_is_a_skip_with_its_reason_and_results() -> None:
    decision = decide(limited(max_lots_total=D("1.5")))
    assert (decision.action, decision.reason) == (CopyAction.SKIP, SkipReason.MAX_LOTS_TOTAL)
    assert decision.checks[0].outcome == "skip"
    no_sl = decide(replace(limited(require_master_sl=True), event=opened(sl=None)))
    assert no_sl.reason is SkipReason.NO_MASTER_SL


def test_slippage_limit_policy_places_a_limit_order_at_the_masters_price() -> None:
    far = replace(
        limited(max_slippage=D("0.00005"), slippage_policy="limit"), event=opened(price=D("1.1"))
    )
    decision = decide(far)
    assert (decision.action, decision.order_type, decision.price) == (
        CopyAction.PLACE_PENDING,
        OrderType.LIMIT,
        D("1.1"),
    )
    skip = decide(replace(far, limits=PretradeLimits(max_slippage=D("0.00005"))))
    assert skip.reason is SkipReason.MAX_SLIPPAGE


def test_closed_market_waits_under_the_wait_policy() -> None:
    closed = replace(
        limited(market_closed_policy="wait", market_wait_seconds=600),
        follower_symbol=replace(EURUSDM, trading=False),
    )
    decision = decide(closed)
    assert decision.action is CopyAction.OPEN
    assert decision.waits_for_market
    assert decision.market_wait_seconds == 600
    assert decide(replace(closed, limits=PretradeLimits())).reason is SkipReason.MARKET_CLOSED
    # Open again: no wait, but a venue's MARKET_CLOSED answer may still wait.
    reopened = decide(replace(closed, follower_symbol=EURUSDM))
    assert not reopened.waits_for_market
    assert reopened.market_wait_seconds == 600


def test_a_waiting_open_decided_again() -> None:
    base = replace(
        limited(market_closed_policy="wait", market_wait_seconds=600),
        follower_symbol=replace(EURUSDM, trading=False),
    )
    still_closed = decide(replace(base, waited_seconds=600))
    assert still_closed.waits_for_market
    expired = decide(replace(base, waited_seconds=601))
    assert expired.reason is SkipReason.MARKET_WAIT_EXPIRED
    gone = decide(replace(base, waited_seconds=5, master_position_open=False))
    assert gone.reason is SkipReason.MASTER_POSITION_CLOSED
    opened_again = decide(replace(base, waited_seconds=5, follower_symbol=EURUSDM))
    assert (opened_again.action, opened_again.waits_for_market) == (CopyAction.OPEN, False)


def test_closes_are_never_checked() -> None:
    from copytrading.decision import EventKind
    from tests.copytrading.test_decision import link

    event = opened(kind=EventKind.POSITION_CLOSED, remaining_volume=D(0), closed_volume=D(1))
    tight = replace(limited(max_lots_total=D("0.01"), require_master_sl=True), event=event)
    decision = decide(replace(tight, link=link()))
    assert (decision.action, decision.checks) == (CopyAction.CLOSE, ())
