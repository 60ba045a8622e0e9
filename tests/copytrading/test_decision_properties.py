"""Properties of the copy decision that hold for every input (hypothesis)."""

import json
from dataclasses import replace
from decimal import ROUND_UP, Decimal, localcontext
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from copytrading.decision import (
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
    follower_levels,
    follower_symbol_needed,
    replay,
    reverse_order_type,
    reverse_side,
)

OPENING = {CopyAction.OPEN, CopyAction.PLACE_PENDING}
GATES = {
    SkipReason.KILL_SWITCH,
    SkipReason.MASTER_DISABLED,
    SkipReason.FOLLOWER_DISABLED,
    SkipReason.SUBSCRIPTION_DISABLED,
    SkipReason.SUBSCRIPTION_STOPPED,
    SkipReason.SUBSCRIPTION_PAUSED,
    SkipReason.CLOSE_ONLY_MODE,
    SkipReason.SYMBOL_FILTERED,
    SkipReason.MARKET_CLOSED,
    SkipReason.MAX_POSITIONS_REACHED,
}
STEPS = [Decimal("0.01"), Decimal("0.001"), Decimal("0.1"), Decimal("1"), Decimal("0.05")]
SYMBOLS = ["EURUSD", "GBPUSD", "XAUUSD", "US30"]


def dec(lo: str, hi: str, places: int) -> st.SearchStrategy[Decimal]:
    return st.decimals(min_value=Decimal(lo), max_value=Decimal(hi), places=places)


prices = st.none() | dec("0.5", "2", 5)
volumes = dec("0", "500", 2)
rarely = st.sampled_from([False] * 9 + [True])
UNLINKED_KINDS = {EventKind.POSITION_OPENED, EventKind.ORDER_PLACED, EventKind.ORDER_FILLED}


@st.composite
def decision_inputs(
    draw: st.DrawFn, kind: EventKind | None = None, *, gates: bool = True
) -> DecisionInputs:
    """Any inputs; with gates=False, no switch or state refuses opening (to reach sizing)."""
    gate = rarely if gates else st.just(False)
    kind = kind or draw(st.sampled_from(list(EventKind)))
    master_suffix = draw(st.sampled_from(["", ".pro", "m"]))
    follower_suffix = draw(st.sampled_from(["", ".ecn", "m"]))
    base = draw(st.sampled_from(SYMBOLS))
    closed_volume = remaining_volume = None
    if kind is EventKind.POSITION_CLOSED:
        closed_volume = draw(dec("0.01", "50", 2))
        remaining_volume = draw(st.sampled_from([None, Decimal(0)]) | dec("0", "50", 2))
    pending_kinds = {EventKind.ORDER_PLACED, EventKind.ORDER_CANCELLED, EventKind.ORDER_FILLED}
    event = MasterEvent(
        kind=kind,
        symbol=base + master_suffix,
        side=draw(st.sampled_from(list(Side))),
        volume=draw(volumes),
        position_id=draw(st.sampled_from(["P1", "P2"])),
        order_id=draw(st.sampled_from(["O1", "O2"])),
        order_type=draw(
            st.sampled_from([OrderType.LIMIT, OrderType.STOP])
            if kind in pending_kinds
            else st.just(OrderType.MARKET)
        ),
        price=draw(dec("0.5", "2", 5) if kind is EventKind.ORDER_PLACED else prices),
        sl=draw(prices),
        tp=draw(prices),
        closed_volume=closed_volume,
        remaining_volume=remaining_volume,
        from_order_id=draw(st.sampled_from([None, None, None, "O1"])),
        existing=draw(rarely),
    )
    min_volume = draw(st.just(Decimal("0")) | dec("0", "5", 2))
    subscription = SubscriptionSettings(
        subscription_id=draw(st.integers(1, 10**6)),
        enabled=not draw(gate),
        status=draw(
            st.sampled_from([SubscriptionStatus.ACTIVE] * 10 + list(SubscriptionStatus))
            if gates
            else st.just(SubscriptionStatus.ACTIVE)
        ),
        copy_mode=draw(
            st.sampled_from([CopyMode.FULL] * 9 + [CopyMode.CLOSE_ONLY])
            if gates
            else st.just(CopyMode.FULL)
        ),
        volume_mode=draw(st.sampled_from(list(VolumeMode))),
        risk_multiplier=draw(dec("0.0001", "100", 4)),
        fixed_volume=draw(dec("0", "20", 2)),
        base_equity=draw(dec("0.01", "1000000", 2)),
        copy_sl=draw(st.booleans()),
        copy_tp=draw(st.booleans()),
        copy_partial_close=draw(st.booleans()),
        copy_pending_orders=draw(st.booleans()),
        copy_existing_positions=draw(st.booleans()),
        reverse_direction=draw(st.booleans()),
        max_volume=draw(st.just(Decimal("0")) | dec("0", "20", 2).map(lambda v: v + min_volume)),
        min_volume=min_volume,
        max_positions=draw(st.sampled_from([0, 0, 0, 1, 5, 10])),
        symbols_mode=draw(st.sampled_from([SymbolsMode.ALL] * 3 + list(SymbolsMode))),
        symbols=",".join(draw(st.lists(st.sampled_from(SYMBOLS + ["eurusd.pro"]), max_size=3))),
    )
    currencies = st.sampled_from(["USD", "USD", "EUR"])
    equities = st.none() | dec("-100", "1000000", 2)
    follower = AccountSnapshot(
        login=100002,
        currency=draw(currencies),
        equity=draw(equities),
        profile_enabled=not draw(gate),
    )
    master = AccountSnapshot(
        login=100001,
        currency=draw(currencies),
        equity=draw(equities),
        profile_enabled=not draw(gate),
    )
    mapping = SymbolMapping(
        master_suffix=master_suffix,
        follower_suffix=follower_suffix,
        account_maps=draw(st.sampled_from([(), ((base + master_suffix, base + "-acct"),)])),
        server_maps=draw(st.sampled_from([(), ((base, base + "-srv"),)])),
    )
    step = draw(st.sampled_from(STEPS))
    link = None
    if draw(rarely) if kind in UNLINKED_KINDS else not draw(rarely):
        link = LinkState(
            status=draw(st.sampled_from([LinkStatus.OPEN] * 4 + list(LinkStatus))),
            follower_symbol=draw(st.sampled_from([base + follower_suffix, base + "-acct"])),
            follower_side=draw(st.sampled_from(list(Side))),
            follower_volume=step * draw(st.integers(1, 5000)),
            follower_position_ids=tuple(draw(st.lists(st.sampled_from(["F1", "F2"]), max_size=2))),
            follower_order_id=draw(st.none() | st.just("FO1")),
            follower_sl=draw(prices),
            follower_tp=draw(prices),
        )
    needed = follower_symbol_needed(event, mapping, link)
    symbol_min = step * draw(st.integers(1, 20))
    spec_name = draw(st.sampled_from([needed] * 8 + [None, "OTHER"]))
    spec = None
    if spec_name is not None:
        spec = SymbolSpec(
            symbol=spec_name,
            min_volume=symbol_min,
            max_volume=symbol_min + step * draw(st.integers(0, 10000)),
            volume_step=step,
            trading=not draw(rarely),
        )
    return DecisionInputs(
        event=event,
        subscription=subscription,
        follower=follower,
        master=master,
        symbol_map=mapping,
        follower_symbol=spec,
        link=link,
        open_copied_positions=draw(st.integers(0, 12)),
        kill_switches=KillSwitches()
        if not gates
        else draw(
            st.sampled_from(
                [KillSwitches()] * 12
                + [
                    KillSwitches(platform=True),
                    KillSwitches(master_server=True),
                    KillSwitches(follower_server=True),
                    KillSwitches(master=True, platform=True),
                ]
            )
        ),
        fx_rate=draw(st.none() | dec("0.01", "200", 4)),
    )


def floats_in(value: Any) -> list[Any]:
    if isinstance(value, float):
        return [value]
    if isinstance(value, dict):
        return [f for v in value.values() for f in floats_in(v)]
    if isinstance(value, list | tuple):
        return [f for v in value for f in floats_in(v)]
    return []


@settings(max_examples=300)
@given(
    decision_inputs(EventKind.POSITION_OPENED, gates=False)
    | decision_inputs(EventKind.ORDER_PLACED, gates=False)
    | decision_inputs(EventKind.POSITION_CLOSED)
)
def test_volumes_stay_within_every_bound(inputs: DecisionInputs) -> None:
    decision = decide(inputs)
    if decision.skipped:
        return
    volume = decision.volume
    assert isinstance(volume, Decimal)
    assert volume > 0
    if decision.action in OPENING:
        spec = inputs.follower_symbol
        sub = inputs.subscription
        assert spec is not None
        assert volume % spec.volume_step == 0
        assert spec.min_volume <= volume <= spec.max_volume
        assert volume >= sub.min_volume
        if sub.max_volume > 0:
            assert volume <= sub.max_volume
    elif decision.action is CopyAction.PARTIAL_CLOSE:
        spec = inputs.follower_symbol
        assert inputs.link is not None
        assert spec is not None
        assert volume % spec.volume_step == 0
        assert spec.min_volume <= volume < inputs.link.follower_volume
        assert inputs.link.follower_volume - volume >= spec.min_volume
    else:
        assert inputs.link is not None
        assert volume == inputs.link.follower_volume


@settings(max_examples=200)
@given(decision_inputs())
def test_skips_always_carry_a_reason_and_actions_never_do(inputs: DecisionInputs) -> None:
    decision = decide(inputs)
    if decision.skipped:
        assert isinstance(decision.reason, SkipReason)
        assert decision.detail.strip()
    else:
        assert decision.reason is None
        assert decision.follower_symbol


@settings(max_examples=150)
@given(decision_inputs())
def test_decide_is_deterministic_and_replays_from_json(inputs: DecisionInputs) -> None:
    decision = decide(inputs)
    assert decide(inputs) == decision
    stored = json.loads(json.dumps(inputs.to_dict()))
    assert DecisionInputs.from_dict(stored) == inputs
    assert replay(stored, decision.rule_version) == decision
    stored_decision = json.loads(json.dumps(decision.to_dict()))
    assert CopyDecision.from_dict(stored_decision) == decision


@settings(max_examples=100)
@given(decision_inputs())
def test_decide_ignores_the_threads_decimal_context(inputs: DecisionInputs) -> None:
    expected = decide(inputs)
    with localcontext() as ctx:
        ctx.prec = 3
        ctx.rounding = ROUND_UP
        assert decide(inputs) == expected


@settings(max_examples=150)
@given(decision_inputs())
def test_no_float_anywhere_in_outputs(inputs: DecisionInputs) -> None:
    decision = decide(inputs)
    assert not floats_in(decision.to_dict())
    assert not [name for name in decision.__slots__ if isinstance(getattr(decision, name), float)]
    assert not floats_in(inputs.to_dict())


@settings(max_examples=150)
@given(decision_inputs())
def test_opening_never_passes_a_gate(inputs: DecisionInputs) -> None:
    decision = decide(inputs)
    if decision.action not in OPENING:
        return
    sub = inputs.subscription
    assert sub.enabled
    assert sub.status is SubscriptionStatus.ACTIVE
    assert sub.copy_mode is CopyMode.FULL
    assert inputs.master.profile_enabled
    assert inputs.follower.profile_enabled
    assert inputs.kill_switches == KillSwitches()
    assert inputs.follower_symbol is not None
    assert inputs.follower_symbol.trading
    assert sub.max_positions == 0 or inputs.open_copied_positions < sub.max_positions


@settings(max_examples=150)
@given(decision_inputs(kind=EventKind.POSITION_CLOSED) | decision_inputs(EventKind.ORDER_CANCELLED))
def test_closing_is_never_blocked_by_a_gate(inputs: DecisionInputs) -> None:
    assert decide(inputs).reason not in GATES


@settings(max_examples=150)
@given(
    decision_inputs(EventKind.POSITION_OPENED, gates=False)
    | decision_inputs(EventKind.ORDER_PLACED, gates=False),
)
def test_reversing_twice_is_the_identity(inputs: DecisionInputs) -> None:
    event = inputs.event
    sub = inputs.subscription
    straight = replace(inputs, subscription=replace(sub, reverse_direction=False))
    mirrored_event = replace(
        event,
        side=reverse_side(event.side),
        order_type=reverse_order_type(event.order_type),
        sl=event.tp,
        tp=event.sl,
    )
    twice = replace(inputs, event=mirrored_event, subscription=replace(sub, reverse_direction=True))
    a, b = decide(straight), decide(twice)
    assert replace(a, detail="") == replace(b, detail="")


@given(
    st.sampled_from(list(Side)),
    st.sampled_from(list(OrderType)),
    prices,
    prices,
    st.booleans(),
    st.booleans(),
)
def test_reverse_helpers_are_involutions(
    side: Side,
    order_type: OrderType,
    sl: Decimal | None,
    tp: Decimal | None,
    copy_sl: bool,
    copy_tp: bool,
) -> None:
    assert reverse_side(reverse_side(side)) is side
    assert reverse_side(side) is not side
    assert reverse_order_type(reverse_order_type(order_type)) is order_type
    swapped = follower_levels(sl, tp, reverse=True, copy_sl=True, copy_tp=True)
    assert follower_levels(*swapped, reverse=True, copy_sl=copy_sl, copy_tp=copy_tp) == (
        follower_levels(sl, tp, reverse=False, copy_sl=copy_sl, copy_tp=copy_tp)
    )
