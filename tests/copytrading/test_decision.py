"""The copy decision (copytrading/decision.py): one example per setting and event kind."""

import json
import subprocess
import sys
from dataclasses import replace
from decimal import Decimal as D
from pathlib import Path

import pytest

from copytrading.decision import (
    RULE_VERSION,
    RULES,
    AccountSnapshot,
    CopyAction,
    CopyDecision,
    CopyMode,
    DecisionInputs,
    EventKind,
    KillSwitches,
    LinkState,
    LinkStatus,
    MasterEvent,
    OrderType,
    Side,
    SkipReason,
    SubscriptionSettings,
    SubscriptionStatus,
    SymbolMapping,
    SymbolsMode,
    SymbolSpec,
    VolumeMode,
    decide,
    follower_symbol_needed,
    replay,
    reverse_order_type,
)

EURUSDM = SymbolSpec(
    symbol="EURUSDm", min_volume=D("0.01"), max_volume=D("100"), volume_step=D("0.01")
)


def opened(**kwargs: object) -> MasterEvent:
    fields = {
        "kind": EventKind.POSITION_OPENED,
        "symbol": "EURUSD.pro",
        "side": Side.BUY,
        "volume": D("1.00"),
        "position_id": "P1",
        "price": D("1.10000"),
        "sl": D("1.09000"),
        "tp": D("1.12000"),
    }
    fields.update(kwargs)
    return MasterEvent(**fields)


def link(**kwargs: object) -> LinkState:
    fields = {
        "status": LinkStatus.OPEN,
        "follower_symbol": "EURUSDm",
        "follower_side": Side.BUY,
        "follower_volume": D("0.50"),
        "follower_position_ids": ("F1",),
        "follower_sl": D("1.09000"),
        "follower_tp": D("1.12000"),
    }
    fields.update(kwargs)
    return LinkState(**fields)


def inputs(
    event: MasterEvent | None = None, *, sub: object = None, **kwargs: object
) -> DecisionInputs:
    fields = {
        "event": event or opened(),
        "subscription": sub or SubscriptionSettings(subscription_id=7),
        "follower": AccountSnapshot(login=100002, currency="USD", equity=D("5000")),
        "master": AccountSnapshot(login=100001, currency="USD", equity=D("10000")),
        "symbol_map": SymbolMapping(master_suffix=".pro", follower_suffix="m"),
        "follower_symbol": EURUSDM,
    }
    fields.update(kwargs)
    return DecisionInputs(**fields)


def settings(**kwargs: object) -> SubscriptionSettings:
    return SubscriptionSettings(subscription_id=7, **kwargs)


def assert_skip(decision: CopyDecision, reason: SkipReason, *in_detail: str) -> None:
    assert decision.action is CopyAction.SKIP, decision
    assert decision.skipped
    assert decision.reason is reason, decision
    for text in in_detail:
        assert text in decision.detail, decision.detail


# --- opens


def test_open_copies_side_symbol_volume_and_levels() -> None:
    decision = decide(inputs(sub=settings(risk_multiplier=D("0.5"))))
    assert decision == CopyDecision(
        rule_version=RULE_VERSION,
        action=CopyAction.OPEN,
        detail=decision.detail,
        follower_symbol="EURUSDm",
        side=Side.BUY,
        volume=D("0.50"),
        order_type=OrderType.MARKET,
        price=D("1.10000"),
        sl=D("1.09000"),
        tp=D("1.12000"),
    )
    assert decision.reason is None
    assert "1.00 lots × multiplier 0.5" in decision.detail


def test_proportional_open_scales_by_equity() -> None:
    decision = decide(inputs(sub=settings(volume_mode=VolumeMode.PROPORTIONAL)))
    assert decision.volume == D("0.50")


def test_fixed_volume_open() -> None:
    decision = decide(inputs(sub=settings(volume_mode=VolumeMode.FIXED, fixed_volume=D("0.2"))))
    assert decision.volume == D("0.20")


def test_equity_based_open() -> None:
    sub = settings(
        volume_mode=VolumeMode.EQUITY_BASED, fixed_volume=D("0.10"), base_equity=D("1000")
    )
    assert decide(inputs(sub=sub)).volume == D("0.50")


def test_proportional_open_without_follower_equity_is_skipped() -> None:
    decision = decide(
        inputs(
            sub=settings(volume_mode=VolumeMode.PROPORTIONAL),
            follower=AccountSnapshot(login=100002, currency="USD", equity=None),
        )
    )
    assert_skip(decision, SkipReason.NO_EQUITY, "follower equity is unknown")


def test_proportional_open_across_currencies_needs_a_rate() -> None:
    eur = AccountSnapshot(login=100002, currency="EUR", equity=D("5000"))
    sub = settings(volume_mode=VolumeMode.PROPORTIONAL)
    assert_skip(decide(inputs(sub=sub, follower=eur)), SkipReason.NO_FX_RATE, "USD->EUR")
    # 10,000 USD at 0.5 EUR/USD = 5,000 EUR: the same equity as the follower's.
    assert decide(inputs(sub=sub, follower=eur, fx_rate=D("0.5"))).volume == D("1.00")


def test_open_below_symbol_minimum_is_skipped_with_figures() -> None:
    decision = decide(inputs(opened(volume=D("0.004")), sub=settings()))
    assert_skip(decision, SkipReason.VOLUME_BELOW_MINIMUM, "< minimum 0.01 on EURUSDm")


def test_open_below_subscription_min_volume_is_skipped() -> None:
    decision = decide(inputs(sub=settings(min_volume=D("2"))))
    assert_skip(decision, SkipReason.VOLUME_BELOW_MINIMUM, "min_volume 2")


def test_open_above_max_volume_is_cut() -> None:
    assert decide(inputs(sub=settings(max_volume=D("0.3")))).volume == D("0.30")


def test_open_is_rounded_down_to_the_follower_step() -> None:
    coarse = replace(EURUSDM, min_volume=D("0.1"), volume_step=D("0.1"))
    decision = decide(inputs(opened(volume=D("0.39")), follower_symbol=coarse))
    assert decision.volume == D("0.3")


def test_existing_position_is_copied_only_with_copy_existing_positions() -> None:
    event = opened(existing=True)
    assert_skip(decide(inputs(event)), SkipReason.EXISTING_NOT_COPIED, "P1")
    decision = decide(inputs(event, sub=settings(copy_existing_positions=True)))
    assert decision.action is CopyAction.OPEN
    assert "existing master position" in decision.detail


def test_open_of_a_position_already_copied_is_skipped() -> None:
    decision = decide(inputs(link=link()))
    assert_skip(decision, SkipReason.ALREADY_COPIED, "P1")


# --- states that refuse opening and never refuse closing

REFUSING = [
    ({"subscription": settings(status=SubscriptionStatus.PAUSED)}, SkipReason.SUBSCRIPTION_PAUSED),
    (
        {"subscription": settings(status=SubscriptionStatus.STOPPED_BY_RISK)},
        SkipReason.SUBSCRIPTION_STOPPED,
    ),
    ({"subscription": settings(enabled=False)}, SkipReason.SUBSCRIPTION_DISABLED),
    ({"subscription": settings(copy_mode=CopyMode.CLOSE_ONLY)}, SkipReason.CLOSE_ONLY_MODE),
    (
        {"master": AccountSnapshot(login=1, currency="USD", equity=D(1), profile_enabled=False)},
        SkipReason.MASTER_DISABLED,
    ),
    (
        {"follower": AccountSnapshot(login=2, currency="USD", equity=D(1), profile_enabled=False)},
        SkipReason.FOLLOWER_DISABLED,
    ),
    ({"kill_switches": KillSwitches(platform=True)}, SkipReason.KILL_SWITCH),
    ({"kill_switches": KillSwitches(master_server=True)}, SkipReason.KILL_SWITCH),
    ({"kill_switches": KillSwitches(follower_server=True)}, SkipReason.KILL_SWITCH),
    ({"kill_switches": KillSwitches(master=True)}, SkipReason.KILL_SWITCH),
]


@pytest.mark.parametrize(("state", "reason"), REFUSING)
def test_refusing_state_gets_no_new_open(state: dict, reason: SkipReason) -> None:
    assert_skip(decide(inputs(**state)), reason)


@pytest.mark.parametrize(("state", "reason"), REFUSING)
def test_refusing_state_gets_no_pending_placement(state: dict, reason: SkipReason) -> None:
    event = opened(kind=EventKind.ORDER_PLACED, order_type=OrderType.LIMIT, order_id="O1")
    state = {**state}
    state["subscription"] = replace(state.get("subscription", settings()), copy_pending_orders=True)
    assert_skip(decide(inputs(event, **state)), reason)


@pytest.mark.parametrize(("state", "reason"), REFUSING)
def test_refusing_state_still_mirrors_closes(state: dict, reason: SkipReason) -> None:
    event = opened(kind=EventKind.POSITION_CLOSED, closed_volume=D("1.00"), remaining_volume=D("0"))
    decision = decide(inputs(event, link=link(), **state))
    assert decision.action is CopyAction.CLOSE


@pytest.mark.parametrize(("state", "reason"), REFUSING)
def test_refusing_state_still_mirrors_partial_closes_and_sltp(
    state: dict, reason: SkipReason
) -> None:
    partial = opened(
        kind=EventKind.POSITION_CLOSED, closed_volume=D("0.50"), remaining_volume=D("0.50")
    )
    assert decide(inputs(partial, link=link(), **state)).action is CopyAction.PARTIAL_CLOSE
    modified = opened(kind=EventKind.POSITION_MODIFIED, sl=D("1.09500"))
    assert decide(inputs(modified, link=link(), **state)).action is CopyAction.MODIFY_SLTP


def test_kill_switch_detail_names_the_switches() -> None:
    decision = decide(inputs(kill_switches=KillSwitches(platform=True, master=True)))
    assert_skip(decision, SkipReason.KILL_SWITCH, "platform, master")


def test_kill_switch_is_checked_before_a_pause() -> None:
    state = inputs(
        sub=settings(status=SubscriptionStatus.PAUSED), kill_switches=KillSwitches(platform=True)
    )
    assert decide(state).reason is SkipReason.KILL_SWITCH


# --- symbols


def test_only_listed_symbols_filter() -> None:
    sub = settings(symbols_mode=SymbolsMode.ONLY_LISTED, symbols="GBPUSD, xauusd")
    assert_skip(decide(inputs(sub=sub)), SkipReason.SYMBOL_FILTERED, "EURUSD.pro")
    sub = replace(sub, symbols="gbpusd,eurusd")
    assert decide(inputs(sub=sub)).action is CopyAction.OPEN


def test_all_but_listed_symbols_filter_is_suffix_insensitive() -> None:
    sub = settings(symbols_mode=SymbolsMode.ALL_BUT_LISTED, symbols="EURUSD.PRO")
    assert_skip(decide(inputs(sub=sub)), SkipReason.SYMBOL_FILTERED)


def test_symbol_filter_does_not_block_closes() -> None:
    sub = settings(symbols_mode=SymbolsMode.ONLY_LISTED, symbols="GBPUSD")
    event = opened(kind=EventKind.POSITION_CLOSED, closed_volume=D("1"), remaining_volume=D("0"))
    assert decide(inputs(event, sub=sub, link=link())).action is CopyAction.CLOSE


def test_symbol_missing_on_follower_server_is_skipped() -> None:
    decision = decide(inputs(follower_symbol=None))
    assert_skip(decision, SkipReason.SYMBOL_NOT_FOUND, "EURUSD.pro -> EURUSDm", "suffix_rule")


def test_spec_of_another_symbol_counts_as_missing() -> None:
    decision = decide(inputs(follower_symbol=replace(EURUSDM, symbol="GBPUSDm")))
    assert_skip(decision, SkipReason.SYMBOL_NOT_FOUND, "GBPUSDm")


def test_explicit_map_picks_the_follower_symbol() -> None:
    gold = SymbolSpec(symbol="GOLD", min_volume=D("0.1"), max_volume=D("50"), volume_step=D("0.1"))
    mapping = SymbolMapping(
        master_suffix=".pro",
        follower_suffix="m",
        account_maps=(("XAUUSD.pro", "GOLD"),),
        server_maps=(("XAUUSD.pro", "XAUUSDm"),),
    )
    event = opened(symbol="XAUUSD.pro", volume=D("0.35"))
    assert follower_symbol_needed(event, mapping, None) == "GOLD"
    decision = decide(inputs(event, symbol_map=mapping, follower_symbol=gold))
    assert decision.follower_symbol == "GOLD"
    assert decision.volume == D("0.3")


def test_closed_market_skips_opens() -> None:
    closed = replace(EURUSDM, trading=False)
    assert_skip(decide(inputs(follower_symbol=closed)), SkipReason.MARKET_CLOSED, "EURUSDm")


def test_closed_market_does_not_stop_closes() -> None:
    closed = replace(EURUSDM, trading=False)
    event = opened(kind=EventKind.POSITION_CLOSED, closed_volume=D("1"), remaining_volume=D("0"))
    assert decide(inputs(event, follower_symbol=closed, link=link())).action is CopyAction.CLOSE


def test_follower_symbol_needed_for_a_close_is_the_linked_one() -> None:
    event = opened(kind=EventKind.POSITION_CLOSED)
    mapping = SymbolMapping(master_suffix=".pro", follower_suffix="m")
    assert follower_symbol_needed(event, mapping, link(follower_symbol="EURUSD.x")) == "EURUSD.x"
    assert follower_symbol_needed(event, mapping, None) == "EURUSDm"


# --- max positions


def test_max_positions_reached_skips_opens() -> None:
    sub = settings(max_positions=3)
    assert decide(inputs(sub=sub, open_copied_positions=2)).action is CopyAction.OPEN
    assert_skip(
        decide(inputs(sub=sub, open_copied_positions=3)), SkipReason.MAX_POSITIONS_REACHED, "3"
    )


def test_max_positions_zero_means_no_limit() -> None:
    assert decide(inputs(open_copied_positions=10_000)).action is CopyAction.OPEN


# --- reverse direction and SL/TP flags


def test_reverse_direction_flips_side_and_swaps_levels() -> None:
    decision = decide(inputs(sub=settings(reverse_direction=True)))
    assert decision.side is Side.SELL
    assert decision.sl == D("1.12000")
    assert decision.tp == D("1.09000")


def test_copy_sl_off_leaves_no_stop_loss() -> None:
    decision = decide(inputs(sub=settings(copy_sl=False)))
    assert (decision.sl, decision.tp) == (None, D("1.12000"))


def test_copy_tp_off_leaves_no_take_profit() -> None:
    decision = decide(inputs(sub=settings(copy_tp=False)))
    assert (decision.sl, decision.tp) == (D("1.09000"), None)


def test_copy_flags_name_the_followers_levels_after_reversing() -> None:
    decision = decide(inputs(sub=settings(reverse_direction=True, copy_tp=False)))
    # The reversed seller keeps its stop loss, taken from the master's TP level.
    assert (decision.sl, decision.tp) == (D("1.12000"), None)


@pytest.mark.parametrize(
    ("order_type", "reversed_type"),
    [(OrderType.LIMIT, OrderType.STOP), (OrderType.STOP, OrderType.LIMIT)],
)
def test_reversed_pending_order_flips_limit_and_stop(
    order_type: OrderType, reversed_type: OrderType
) -> None:
    event = opened(kind=EventKind.ORDER_PLACED, order_type=order_type, order_id="O1")
    sub = settings(copy_pending_orders=True, reverse_direction=True)
    decision = decide(inputs(event, sub=sub))
    assert decision.action is CopyAction.PLACE_PENDING
    assert (decision.side, decision.order_type) == (Side.SELL, reversed_type)
    assert decision.price == D("1.10000")
    assert reverse_order_type(reverse_order_type(order_type)) is order_type


# --- SL/TP modifications


def modified(**kwargs: object) -> MasterEvent:
    return opened(kind=EventKind.POSITION_MODIFIED, **kwargs)


def test_sltp_change_is_copied() -> None:
    decision = decide(inputs(modified(sl=D("1.09500")), link=link()))
    assert decision.action is CopyAction.MODIFY_SLTP
    assert (decision.sl, decision.tp) == (D("1.09500"), D("1.12000"))
    assert decision.follower_position_ids == ("F1",)


def test_sltp_change_of_an_uncopied_level_is_skipped() -> None:
    sub = settings(copy_tp=False)
    decision = decide(inputs(modified(tp=D("1.13000")), sub=sub, link=link(follower_tp=None)))
    assert_skip(decision, SkipReason.SLTP_NOT_COPIED, "copying SL")


def test_sltp_change_with_nothing_copied_is_skipped() -> None:
    sub = settings(copy_sl=False, copy_tp=False)
    decision = decide(inputs(modified(sl=D("1.095")), sub=sub, link=link()))
    assert_skip(decision, SkipReason.SLTP_NOT_COPIED, "neither SL nor TP")


def test_sltp_change_keeps_the_followers_uncopied_level() -> None:
    sub = settings(copy_tp=False)
    follower = link(follower_tp=D("1.15000"))
    decision = decide(inputs(modified(sl=D("1.09500"), tp=D("1.13")), sub=sub, link=follower))
    assert (decision.sl, decision.tp) == (D("1.09500"), D("1.15000"))


def test_sltp_already_matching_is_nothing_to_do() -> None:
    decision = decide(inputs(modified(), link=link()))
    assert_skip(decision, SkipReason.NOTHING_TO_DO, "already match")


def test_removed_stop_loss_is_removed_on_the_follower() -> None:
    decision = decide(inputs(modified(sl=None), link=link()))
    assert decision.action is CopyAction.MODIFY_SLTP
    assert decision.sl is None


def test_reversed_sltp_change_lands_on_the_swapped_level() -> None:
    sub = settings(reverse_direction=True)
    follower = link(follower_side=Side.SELL, follower_sl=D("1.12000"), follower_tp=D("1.09000"))
    decision = decide(inputs(modified(sl=D("1.09500")), sub=sub, link=follower))
    assert (decision.sl, decision.tp) == (D("1.12000"), D("1.09500"))
    assert decision.side is Side.SELL


def test_sltp_change_without_link_is_skipped() -> None:
    assert_skip(decide(inputs(modified())), SkipReason.NO_LINKED_POSITION, "P1")


def test_sltp_change_while_follower_copy_still_pending_is_skipped() -> None:
    pending = link(status=LinkStatus.PENDING, follower_order_id="FO1")
    assert_skip(
        decide(inputs(modified(sl=D("1.095")), link=pending)), SkipReason.PENDING_NOT_FILLED
    )


# --- closes


def closed(closed_volume: str, remaining_volume: str | None) -> MasterEvent:
    return opened(
        kind=EventKind.POSITION_CLOSED,
        closed_volume=D(closed_volume),
        remaining_volume=None if remaining_volume is None else D(remaining_volume),
    )


def test_full_close_closes_the_whole_follower_position() -> None:
    decision = decide(inputs(closed("1.00", "0"), link=link()))
    assert decision.action is CopyAction.CLOSE
    assert decision.follower_symbol == "EURUSDm"
    assert decision.side is Side.BUY
    assert decision.volume == D("0.50")
    assert decision.follower_position_ids == ("F1",)


def test_close_without_remaining_volume_is_a_full_close() -> None:
    assert decide(inputs(closed("1.00", None), link=link())).action is CopyAction.CLOSE


def test_close_without_link_is_skipped() -> None:
    assert_skip(decide(inputs(closed("1", "0"))), SkipReason.NO_LINKED_POSITION, "P1")


def test_close_of_a_failed_open_is_skipped() -> None:
    failed = link(status=LinkStatus.FAILED, follower_position_ids=())
    assert_skip(decide(inputs(closed("1", "0"), link=failed)), SkipReason.OPEN_FAILED)


def test_close_of_an_already_closed_copy_is_skipped() -> None:
    gone = link(status=LinkStatus.CLOSED)
    assert_skip(decide(inputs(closed("1", "0"), link=gone)), SkipReason.ALREADY_CLOSED)


def test_close_while_the_open_is_in_flight_is_still_decided() -> None:
    opening = link(status=LinkStatus.OPENING, follower_position_ids=())
    assert decide(inputs(closed("1", "0"), link=opening)).action is CopyAction.CLOSE


def test_partial_close_closes_the_same_share() -> None:
    decision = decide(inputs(closed("0.25", "0.75"), link=link(follower_volume=D("0.40"))))
    assert decision.action is CopyAction.PARTIAL_CLOSE
    assert decision.volume == D("0.10")
    assert decision.follower_position_ids == ("F1",)


def test_partial_close_rounding_below_minimum_is_skipped() -> None:
    decision = decide(inputs(closed("0.10", "0.90"), link=link(follower_volume=D("0.05"))))
    assert_skip(decision, SkipReason.VOLUME_BELOW_MINIMUM, "minimum 0.01 on EURUSDm")


def test_partial_close_leaving_dust_closes_everything() -> None:
    spec = replace(EURUSDM, min_volume=D("0.10"))
    decision = decide(
        inputs(closed("0.85", "0.15"), link=link(follower_volume=D("0.50")), follower_symbol=spec)
    )
    assert decision.action is CopyAction.CLOSE
    assert decision.volume == D("0.50")


def test_partial_close_not_copied_when_switched_off() -> None:
    sub = settings(copy_partial_close=False)
    assert_skip(
        decide(inputs(closed("0.5", "0.5"), sub=sub, link=link())),
        SkipReason.PARTIAL_CLOSE_NOT_COPIED,
    )
    assert decide(inputs(closed("0.5", "0"), sub=sub, link=link())).action is CopyAction.CLOSE


def test_partial_close_needs_the_linked_symbols_lot_rules() -> None:
    decision = decide(inputs(closed("0.5", "0.5"), link=link(), follower_symbol=None))
    assert_skip(decision, SkipReason.SYMBOL_NOT_FOUND, "EURUSDm")


def test_reversed_follower_close_keeps_the_followers_side() -> None:
    sub = settings(reverse_direction=True)
    decision = decide(inputs(closed("1", "0"), sub=sub, link=link(follower_side=Side.SELL)))
    assert decision.side is Side.SELL


def test_master_close_before_pending_copy_fills_cancels_it() -> None:
    pending = link(status=LinkStatus.PENDING, follower_position_ids=(), follower_order_id="FO1")
    decision = decide(inputs(closed("1", "0"), link=pending))
    assert decision.action is CopyAction.CANCEL_PENDING
    assert decision.follower_order_id == "FO1"
    assert_skip(decide(inputs(closed("0.5", "0.5"), link=pending)), SkipReason.PENDING_NOT_FILLED)


# --- pending orders


def placed(**kwargs: object) -> MasterEvent:
    fields = {
        "kind": EventKind.ORDER_PLACED,
        "order_type": OrderType.LIMIT,
        "order_id": "O1",
        "position_id": None,
    }
    fields.update(kwargs)
    return opened(**fields)


def test_pending_order_is_placed_with_copy_pending_orders() -> None:
    sub = settings(copy_pending_orders=True, risk_multiplier=D("2"))
    decision = decide(inputs(placed(), sub=sub))
    assert decision.action is CopyAction.PLACE_PENDING
    assert (decision.order_type, decision.side, decision.price) == (
        OrderType.LIMIT,
        Side.BUY,
        D("1.10000"),
    )
    assert decision.volume == D("2.00")
    assert (decision.sl, decision.tp) == (D("1.09000"), D("1.12000"))


def test_pending_order_is_not_placed_without_copy_pending_orders() -> None:
    assert_skip(decide(inputs(placed())), SkipReason.PENDING_NOT_COPIED, "O1")


def test_pending_placement_respects_max_positions_and_market() -> None:
    sub = settings(copy_pending_orders=True, max_positions=1)
    assert_skip(
        decide(inputs(placed(), sub=sub, open_copied_positions=1)),
        SkipReason.MAX_POSITIONS_REACHED,
    )
    sub = settings(copy_pending_orders=True)
    assert_skip(
        decide(inputs(placed(), sub=sub, follower_symbol=replace(EURUSDM, trading=False))),
        SkipReason.MARKET_CLOSED,
    )


def test_pending_order_already_copied_is_skipped() -> None:
    sub = settings(copy_pending_orders=True)
    pending = link(status=LinkStatus.PENDING, follower_order_id="FO1")
    assert_skip(decide(inputs(placed(), sub=sub, link=pending)), SkipReason.ALREADY_COPIED)


def test_market_order_placed_is_unsupported() -> None:
    sub = settings(copy_pending_orders=True)
    assert_skip(
        decide(inputs(placed(order_type=OrderType.MARKET), sub=sub)), SkipReason.UNSUPPORTED_EVENT
    )
    assert_skip(decide(inputs(placed(price=None), sub=sub)), SkipReason.UNSUPPORTED_EVENT)


def cancelled() -> MasterEvent:
    return placed(kind=EventKind.ORDER_CANCELLED)


def test_cancel_cancels_the_linked_follower_order() -> None:
    pending = link(status=LinkStatus.PENDING, follower_position_ids=(), follower_order_id="FO1")
    sub = settings(copy_pending_orders=True)
    decision = decide(inputs(cancelled(), sub=sub, link=pending))
    assert decision.action is CopyAction.CANCEL_PENDING
    assert decision.follower_order_id == "FO1"


def test_cancel_goes_through_when_paused_or_switched_off_later() -> None:
    pending = link(status=LinkStatus.PENDING, follower_position_ids=(), follower_order_id="FO1")
    sub = settings(status=SubscriptionStatus.PAUSED, copy_pending_orders=False)
    assert decide(inputs(cancelled(), sub=sub, link=pending)).action is CopyAction.CANCEL_PENDING


def test_cancel_without_link() -> None:
    assert_skip(decide(inputs(cancelled())), SkipReason.PENDING_NOT_COPIED)
    sub = settings(copy_pending_orders=True)
    assert_skip(decide(inputs(cancelled(), sub=sub)), SkipReason.NO_LINKED_ORDER, "O1")


def test_cancel_of_a_failed_placement_is_skipped() -> None:
    failed = link(status=LinkStatus.FAILED, follower_position_ids=())
    sub = settings(copy_pending_orders=True)
    assert_skip(decide(inputs(cancelled(), sub=sub, link=failed)), SkipReason.OPEN_FAILED)


def test_cancel_after_the_follower_copy_filled_closes_it() -> None:
    sub = settings(copy_pending_orders=True)
    decision = decide(inputs(cancelled(), sub=sub, link=link(follower_order_id="FO1")))
    assert decision.action is CopyAction.CLOSE
    assert decision.follower_position_ids == ("F1",)


def test_order_filled_is_never_an_action() -> None:
    event = placed(kind=EventKind.ORDER_FILLED, position_id="P9")
    assert_skip(decide(inputs(event)), SkipReason.NOTHING_TO_DO, "position_opened")
    sub = settings(copy_pending_orders=True)
    assert_skip(decide(inputs(event, sub=sub)), SkipReason.NOTHING_TO_DO, "fills at its own")


def test_fill_of_an_uncopied_pending_order_opens_once_through_position_opened() -> None:
    # copy_pending_orders off: order_filled does nothing, position_opened opens.
    event = opened(from_order_id="O1")
    assert decide(inputs(event)).action is CopyAction.OPEN


def test_fill_of_a_copied_pending_order_does_not_open_again() -> None:
    sub = settings(copy_pending_orders=True)
    pending = link(status=LinkStatus.PENDING, follower_position_ids=(), follower_order_id="FO1")
    event = opened(from_order_id="O1")
    assert_skip(decide(inputs(event, sub=sub, link=pending)), SkipReason.NOTHING_TO_DO, "O1")
    failed = link(status=LinkStatus.FAILED)
    assert_skip(decide(inputs(event, sub=sub, link=failed)), SkipReason.OPEN_FAILED)


def test_fill_of_a_pending_order_placed_before_subscribing_opens_at_market() -> None:
    sub = settings(copy_pending_orders=True)
    assert decide(inputs(opened(from_order_id="O1"), sub=sub)).action is CopyAction.OPEN


# --- versions, replay, storage


def test_decision_carries_the_rule_version() -> None:
    assert decide(inputs()).rule_version == RULE_VERSION
    assert RULE_VERSION in RULES


def test_unknown_rule_version_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown rule version"):
        decide(inputs(), rule_version="0.9")


def test_replay_from_stored_json_gives_the_same_decision() -> None:
    state = inputs(
        closed("0.25", "0.75"),
        link=link(follower_volume=D("0.40")),
        kill_switches=KillSwitches(master=True),
        fx_rate=D("1.0850"),
    )
    decision = decide(state)
    stored_inputs = json.loads(json.dumps(state.to_dict()))
    stored_decision = json.loads(json.dumps(decision.to_dict()))
    assert replay(stored_inputs, stored_decision["rule_version"]) == decision
    assert CopyDecision.from_dict(stored_decision) == decision


def test_to_dict_writes_decimals_as_strings_and_enums_as_wire_values() -> None:
    data = inputs(sub=settings(status=SubscriptionStatus.PAUSED)).to_dict()
    assert data["event"]["volume"] == "1.00"
    assert data["event"]["kind"] == "position_opened"
    assert data["subscription"]["status"] == 1
    assert data["subscription"]["risk_multiplier"] == "1"
    assert data["link"] is None


def test_from_dict_refuses_floats_and_unknown_fields() -> None:
    data = inputs().to_dict()
    data["event"]["volume"] = 1.1
    with pytest.raises(ValueError, match="decimal"):
        DecisionInputs.from_dict(data)
    data = inputs().to_dict()
    data["surprise"] = 1
    with pytest.raises(ValueError, match="surprise"):
        DecisionInputs.from_dict(data)


def test_from_dict_fills_defaults_for_fields_added_later() -> None:
    data = inputs().to_dict()
    del data["kill_switches"], data["fx_rate"]
    assert DecisionInputs.from_dict(data) == inputs()


def test_subscription_settings_from_model_reads_attributes() -> None:
    class Row:
        id = 5
        enabled = True
        status = 1
        copy_mode = 0
        volume_mode = 3
        risk_multiplier = D("1.5")
        fixed_volume = D("0.1")
        base_equity = D("10000")
        copy_sl = copy_tp = copy_partial_close = True
        copy_pending_orders = copy_existing_positions = reverse_direction = False
        max_volume = min_volume = D("0")
        max_positions = 0
        symbols_mode = 2
        symbols = "XAUUSD"

    sub = SubscriptionSettings.from_model(Row())
    assert sub.status is SubscriptionStatus.PAUSED
    assert sub.volume_mode is VolumeMode.EQUITY_BASED
    assert sub.symbols_mode is SymbolsMode.ALL_BUT_LISTED


def test_enums_mirror_the_model_choices() -> None:
    # Imported here, not at module level: these tests must run without Django set up.
    from copytrading import choices

    pairs = [
        (SubscriptionStatus, choices.CopySubscriptionStatus),
        (CopyMode, choices.CopySubscriptionCopyMode),
        (VolumeMode, choices.CopySubscriptionVolumeMode),
        (SymbolsMode, choices.CopySubscriptionSymbolsMode),
    ]
    for ours, theirs in pairs:
        assert {m.name: m.value for m in ours} == {m.name: m.value for m in theirs}


def test_decision_modules_import_without_django() -> None:
    code = (
        "import sys; import copytrading.decision, copytrading.sizing, copytrading.symbols; "
        "assert 'django' not in sys.modules, 'django imported'"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True)
