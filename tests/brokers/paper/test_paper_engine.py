"""The venue's pure trading logic, without sockets: margins, fills, triggers, events."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brokers.paper.engine import (
    RETAIN_EVENTS,
    Engine,
    VenueConfig,
    VenueError,
    decode_json,
    round_down_to_step,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_engine(**config: Any) -> tuple[Engine, FakeClock, list[dict]]:
    clock = FakeClock()
    engine = Engine(
        VenueConfig(**config), clock=lambda: 1_763_779_200.0 + clock.now, monotonic=clock
    )
    events: list[dict] = []
    engine.listener = lambda seq, login, text: events.append(json.loads(text))
    return engine, clock, events


def account(engine: Engine, balance: Any = 10000, **fields: Any) -> int:
    body = {"balance": balance, "currency": "USD", "leverage": 100, "mode": "DEMO", **fields}
    created, data = engine.create_account(body)
    assert created
    return data["login"]


counter = iter(range(1, 10**9))


def order(engine: Engine, login: int, **fields: Any) -> dict[str, Any]:
    body = {
        "account": login,
        "symbol": "EURUSD",
        "side": "buy",
        "type": "market",
        "volume": Decimal("1"),
        "client_order_id": f"c{next(counter)}",
        **fields,
    }
    return engine.place_order(body)[1]


def price(engine: Engine, symbol: str, bid: str, ask: str) -> None:
    engine.admin_set_price({"symbol": symbol, "bid": Decimal(bid), "ask": Decimal(ask)})


def refused(code: str, call: Any, *args: Any, **kwargs: Any) -> VenueError:
    with pytest.raises(VenueError) as info:
        call(*args, **kwargs)
    assert info.value.code == code, info.value.message
    return info.value


def snapshot(engine: Engine) -> Any:
    """Everything a refused call must leave as it was."""
    return (
        engine.seq,
        dict(engine.counters),
        {login: engine.get_account(login) for login in engine.accounts},
        {login: engine.list_positions(login) for login in engine.accounts},
        {login: engine.list_orders(login) for login in engine.accounts},
        {login: engine.list_deals(login) for login in engine.accounts},
        {login: dict(a.order_keys) for login, a in engine.accounts.items()},
    )


# --- accounts and margin ---------------------------------------------------------------------


def test_logins_are_numbered_from_100001_and_can_be_chosen():
    engine, _, _ = make_engine()
    assert account(engine) == 100001
    assert account(engine, login=555) == 555
    assert account(engine) == 100002


def test_creating_an_existing_login_again_is_idempotent_and_a_different_body_conflicts():
    engine, _, _ = make_engine()
    account(engine, login=42)
    created, again = engine.create_account(
        {"login": 42, "balance": 10000, "currency": "USD", "leverage": 100, "mode": "DEMO"}
    )
    assert not created
    assert again["login"] == 42
    refused(
        "IDEMPOTENCY_CONFLICT",
        engine.create_account,
        {"login": 42, "balance": 1, "currency": "USD", "leverage": 100, "mode": "DEMO"},
    )


def test_margin_is_volume_times_contract_times_price_over_leverage():
    engine, _, _ = make_engine()
    login = account(engine)
    order(engine, login, volume="1")  # buys at the ask, 1.10010
    data = engine.get_account(login)
    assert data["margin"] == 1100.10
    assert data["equity"] == 10000 - 10.0  # one pip of spread on 100,000
    assert data["free_margin"] == pytest.approx(data["equity"] - data["margin"])


def test_margin_and_profit_of_a_jpy_quoted_symbol_are_converted_to_the_account_currency():
    engine, _, _ = make_engine()
    login = account(engine)
    order(engine, login, symbol="USDJPY", volume="1")  # 100,000 USD at 150.012
    data = engine.get_account(login)
    # 100000 * 150.012 / 100 JPY, at the 150.006 mid: 1000.04 USD
    assert data["margin"] == pytest.approx(1000.04, abs=0.01)
    price(engine, "USDJPY", "151.000", "151.012")
    (position,) = engine.list_positions(login)
    assert position["profit"] == pytest.approx((151.000 - 150.012) * 100000 / 151.006, abs=0.01)


def test_an_order_that_would_take_free_margin_below_zero_is_refused():
    engine, _, _ = make_engine()
    login = account(engine, balance=1000)
    before = snapshot(engine)
    refused("INSUFFICIENT_MARGIN", order, engine, login, volume="1")
    assert snapshot(engine) == before
    order(engine, login, volume="0.5")  # 550 of margin fits


def test_hedging_keeps_a_buy_and_a_sell_as_two_positions():
    engine, _, _ = make_engine()
    login = account(engine)
    order(engine, login, side="buy")
    order(engine, login, side="sell")
    sides = sorted(p["side"] for p in engine.list_positions(login))
    assert sides == ["buy", "sell"]


def test_a_debit_beyond_free_margin_is_refused_and_a_credit_records_a_balance_deal():
    engine, _, _ = make_engine()
    login = account(engine, balance=1000)
    refused(
        "INSUFFICIENT_MARGIN",
        engine.balance_operation,
        login,
        {"amount": "-1000.01", "client_op_id": "x"},
    )
    created, answer = engine.balance_operation(
        login, {"amount": "12.50", "comment": "bonus", "client_op_id": "y"}
    )
    assert created
    assert answer["balance"] == 1012.5
    (deal,) = engine.list_deals(login)
    assert deal["entry"] == "balance"
    assert deal["profit"] == 12.5
    assert deal["comment"] == "bonus"


# --- volumes ---------------------------------------------------------------------------------


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(cents=st.integers(min_value=-500, max_value=20_000))
def test_a_volume_is_accepted_exactly_when_it_is_on_the_step_and_in_range(cents):
    engine, _, _ = make_engine(min_volume="0.1", volume_step="0.05", max_volume="100")
    volume = Decimal(cents) / 100
    error = None
    try:
        engine._check_volume(volume)
    except VenueError as exc:
        error = exc.code
    assert error in (None, "INVALID_VOLUME")
    accepted = error is None
    assert accepted == (Decimal("0.1") <= volume <= 100 and volume % Decimal("0.05") == 0)


@pytest.mark.parametrize("volume", ["0.5", 0.5, Decimal("0.50"), "0.50"])
def test_volume_may_be_a_decimal_string_or_a_number(volume):
    engine, _, _ = make_engine()
    login = account(engine)
    assert order(engine, login, volume=volume)["filled_volume"] == 0.5


@pytest.mark.parametrize("volume", [0, "-1", "0.001", "1000", Decimal("1E+400"), Decimal("1E-400")])
def test_bad_volumes_are_invalid_volume(volume):
    engine, _, _ = make_engine()
    login = account(engine)
    refused("INVALID_VOLUME", order, engine, login, volume=volume)


def test_round_down_to_step():
    assert round_down_to_step(Decimal("0.379"), Decimal("0.01")) == Decimal("0.37")
    assert round_down_to_step(Decimal("1.24"), Decimal("0.1")) == Decimal("1.2")


# --- idempotency -------------------------------------------------------------------------------


def test_same_client_order_id_and_body_answers_the_first_answer_and_changes_nothing():
    engine, _, _ = make_engine()
    login = account(engine)
    body = {
        "account": login,
        "symbol": "EURUSD",
        "side": "buy",
        "type": "market",
        "volume": "0.5",
        "client_order_id": "k1",
    }
    created, first = engine.place_order(dict(body))
    before = snapshot(engine)
    created_again, second = engine.place_order(
        {**body, "volume": 0.5}
    )  # same value, other spelling
    assert created
    assert not created_again
    assert second == first
    after = snapshot(engine)
    assert after[0] == before[0]
    assert after[2:] == before[2:]
    assert engine.counters["duplicates_absorbed"] == 1
    refused("IDEMPOTENCY_CONFLICT", engine.place_order, {**body, "volume": "0.6"})
    assert engine.counters["conflicts"] == 1


def test_a_refused_order_creates_nothing_and_is_checked_afresh_on_repost():
    engine, _, _ = make_engine()
    login = account(engine, balance=100)
    body = {
        "account": login,
        "symbol": "EURUSD",
        "side": "buy",
        "type": "market",
        "volume": "1",
        "client_order_id": "again",
    }
    refused("INSUFFICIENT_MARGIN", engine.place_order, body)
    engine.balance_operation(login, {"amount": 100000, "client_op_id": "topup"})
    created, answer = engine.place_order(body)
    assert created
    assert answer["status"] == "filled"


def test_closes_share_the_client_order_id_namespace_of_orders():
    engine, _, _ = make_engine()
    login = account(engine)
    opened = order(engine, login, client_order_id="same")
    refused(
        "IDEMPOTENCY_CONFLICT",
        engine.close_position,
        opened["position_id"],
        {"account": login, "client_order_id": "same"},
    )


# --- closes, stops, triggers ---------------------------------------------------------------


def test_a_partial_close_keeps_the_position_open_with_the_rest():
    engine, _, events = make_engine()
    login = account(engine)
    opened = order(engine, login, volume="1")
    price(engine, "EURUSD", "1.10110", "1.10120")
    _, answer = engine.close_position(
        opened["position_id"], {"account": login, "volume": "0.4", "client_order_id": "p"}
    )
    assert answer["closed_volume"] == 0.4
    assert answer["remaining_volume"] == 0.6
    assert answer["profit"] == pytest.approx(0.0010 * 40000)
    (position,) = engine.list_positions(login)
    assert position["volume"] == 0.6
    closed = [e for e in events if e["type"] == "position_closed"][-1]["data"]
    assert closed["remaining_volume"] == 0.6
    assert closed["reason"] == "client"
    assert engine.get_account(login)["balance"] == 10040.0


def test_a_partial_close_may_not_leave_less_than_the_minimum():
    engine, _, _ = make_engine(min_volume="0.1", volume_step="0.01")
    login = account(engine)
    opened = order(engine, login, volume="1")
    refused(
        "INVALID_VOLUME",
        engine.close_position,
        opened["position_id"],
        {"account": login, "volume": "0.95", "client_order_id": "p"},
    )


def test_sl_and_tp_close_positions_at_market_with_their_reason():
    engine, _, events = make_engine()
    login = account(engine)
    buy = order(engine, login, sl=Decimal("1.09"), tp=Decimal("1.12"))
    sell = order(engine, login, side="sell", sl=Decimal("1.12"), tp=Decimal("1.09"))
    price(engine, "EURUSD", "1.08900", "1.08910")  # buy SL and sell TP
    reasons = {
        e["data"]["position_id"]: (e["data"]["reason"], e["data"]["close_price"])
        for e in events
        if e["type"] == "position_closed"
    }
    assert reasons == {buy["position_id"]: ("sl", 1.089), sell["position_id"]: ("tp", 1.0891)}
    assert engine.list_positions(login) == []


def test_stops_on_the_wrong_side_are_invalid_stops():
    engine, _, _ = make_engine()
    login = account(engine)
    before = snapshot(engine)
    refused("INVALID_STOPS", order, engine, login, sl=Decimal("1.2"))
    refused("INVALID_STOPS", order, engine, login, side="sell", tp=Decimal("1.2"))
    refused(
        "INVALID_STOPS",
        order,
        engine,
        login,
        type="limit",
        price=Decimal("1.05"),
        tp=Decimal("1.04"),
    )
    assert snapshot(engine) == before


def test_stop_out_closes_the_worst_position_first_until_equity_is_half_the_margin():
    engine, _, events = make_engine()
    login = account(engine, balance=1200)
    order(engine, login, volume="0.5", symbol="EURUSD")
    order(engine, login, volume="0.01", symbol="XAUUSD")
    # margin 550.05 + 20.003; equity must fall below ~285: EURUSD down 190 pips is -950
    price(engine, "EURUSD", "1.08100", "1.08110")
    closed = [e["data"] for e in events if e["type"] == "position_closed"]
    assert [c["reason"] for c in closed] == ["stop_out"]
    assert closed[0]["symbol"] == "EURUSD"
    (left,) = engine.list_positions(login)
    assert left["symbol"] == "XAUUSD"


def test_limit_orders_rest_and_fill_at_their_price_stop_orders_fill_at_market():
    engine, _, events = make_engine()
    login = account(engine)
    limit = order(engine, login, type="limit", price=Decimal("1.09500"))
    stop = order(engine, login, type="stop", side="sell", price=Decimal("1.09000"))
    assert limit["status"] == stop["status"] == "placed"
    assert {o["order_id"] for o in engine.list_orders(login)} == {
        limit["order_id"],
        stop["order_id"],
    }
    price(engine, "EURUSD", "1.08800", "1.08810")  # gaps through both
    filled = {e["data"]["order_id"]: e["data"] for e in events if e["type"] == "order_filled"}
    assert filled[limit["order_id"]]["fill_price"] == 1.095
    assert filled[stop["order_id"]]["fill_price"] == 1.088
    assert engine.list_orders(login) == []
    assert len(engine.list_positions(login)) == 2


def test_a_marketable_limit_order_fills_at_once_at_the_market_price():
    engine, _, _ = make_engine()
    login = account(engine)
    answer = order(engine, login, type="limit", price=Decimal("1.2"))
    assert answer["status"] == "filled"
    assert answer["price"] == 1.1001


def test_a_pending_order_without_margin_at_trigger_time_is_cancelled():
    engine, _, events = make_engine()
    login = account(engine, balance=500)
    placed = order(engine, login, type="limit", price=Decimal("1.09"), volume="1")
    price(engine, "EURUSD", "1.08990", "1.09000")
    cancelled = [e["data"] for e in events if e["type"] == "order_cancelled"]
    assert cancelled[0]["order_id"] == placed["order_id"]
    assert cancelled[0]["reason"] == "insufficient_margin"


def test_a_closed_market_refuses_orders_and_triggers_nothing_until_it_reopens():
    engine, _, _ = make_engine()
    login = account(engine)
    opened = order(engine, login, sl=Decimal("1.09"))
    engine.admin_set_symbol("EURUSD", {"trading": False})
    refused("MARKET_CLOSED", order, engine, login)
    price(engine, "EURUSD", "1.08000", "1.08010")
    assert engine.list_positions(login)[0]["position_id"] == opened["position_id"]
    engine.admin_set_symbol("EURUSD", {"trading": True})
    assert engine.list_positions(login) == []


def test_disabled_accounts_get_account_disabled():
    engine, _, _ = make_engine()
    login = account(engine)
    engine.patch_account(login, {"status": "disabled"})
    refused("ACCOUNT_DISABLED", order, engine, login)
    engine.patch_account(login, {"status": "connected"})
    order(engine, login)


def test_symbol_suffix_is_part_of_every_name():
    engine, _, _ = make_engine(symbol_suffix=".r")
    login = account(engine)
    assert {s["symbol"] for s in engine.list_symbols()} >= {"EURUSD.r", "US30.r"}
    refused("SYMBOL_NOT_FOUND", order, engine, login, symbol="EURUSD")
    assert order(engine, login, symbol="EURUSD.r")["symbol"] == "EURUSD.r"


# --- events ---------------------------------------------------------------------------------


def test_account_updated_is_sent_at_most_once_a_second_and_the_last_state_is_sent():
    engine, clock, events = make_engine()
    login = account(engine)
    for _ in range(5):
        order(engine, login, volume="0.01")
    updates = [e for e in events if e["type"] == "account_updated"]
    assert len(updates) == 1
    clock.now += 0.5
    engine.flush_account_updates()
    assert len([e for e in events if e["type"] == "account_updated"]) == 1
    clock.now += 0.6
    engine.flush_account_updates()
    updates = [e for e in events if e["type"] == "account_updated"]
    assert len(updates) == 2
    assert updates[-1]["data"] == engine.get_account(login)


def test_seq_is_one_counter_strictly_increasing():
    engine, _, events = make_engine()
    one = account(engine)
    two = account(engine)
    for login in (one, two, one):
        order(engine, login)
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(events) + 1))


def test_replay_gives_the_events_after_a_seq_for_the_asked_accounts():
    engine, _, events = make_engine()
    one = account(engine)
    two = account(engine)
    order(engine, one)
    mark = engine.seq
    order(engine, two)
    order(engine, one)
    replay = engine.events_since(mark, {one})
    expected = [e["seq"] for e in events if e["seq"] > mark and e["account"] == one]
    assert [seq for seq, _ in replay] == expected
    assert engine.events_since(engine.seq, None) == []
    assert engine.events_since(engine.seq + 1, None) is None  # from another life of the venue


def test_at_least_100000_events_are_retained_then_replay_asks_for_a_reset():
    engine, _, _ = make_engine()
    engine.listener = None
    for _ in range(RETAIN_EVENTS + 1):
        engine.emit("heartbeat_test", None, {})
    assert engine.events_since(0, None) is None
    assert len(engine.events_since(1, None)) == RETAIN_EVENTS


# --- faults, determinism ----------------------------------------------------------------------


def run_with_faults(seed: int) -> list[str]:
    engine, _, _ = make_engine()
    login = account(engine, balance=1_000_000)
    engine.set_faults({"reject_rate": 0.3, "partial_fill_rate": 0.3, "seed": seed})
    outcomes = []
    for _ in range(40):
        try:
            answer = order(engine, login, volume="1")
            outcomes.append(f"{answer['status']}:{answer['filled_volume']}")
        except VenueError as exc:
            outcomes.append(exc.code)
    return outcomes


def test_faults_repeat_for_a_seed():
    first = run_with_faults(3)
    assert first == run_with_faults(3)
    assert "INSUFFICIENT_MARGIN" in first
    assert any(o.startswith("partially_filled") for o in first)
    assert first != run_with_faults(4)


def test_a_partial_fill_fills_part_of_the_volume_on_the_step():
    engine, _, _ = make_engine()
    login = account(engine, balance=1_000_000)
    engine.set_faults({"partial_fill_rate": 1.0})
    answer = order(engine, login, volume="1")
    assert answer["status"] == "partially_filled"
    assert 0.01 <= answer["filled_volume"] < 1
    assert Decimal(str(answer["filled_volume"])) % Decimal("0.01") == 0
    assert engine.list_positions(login)[0]["volume"] == answer["filled_volume"]


def test_the_price_walk_repeats_for_a_seed():
    def walk(seed: int) -> list[float]:
        engine, _, _ = make_engine(seed=seed)
        for _ in range(20):
            engine.tick()
        return [engine.get_price(name)["bid"] for name in engine.symbols]

    assert walk(1) == walk(1)
    assert walk(1) != walk(2)


def test_reset_forgets_everything():
    engine, _, _ = make_engine()
    login = account(engine)
    order(engine, login)
    engine.reset()
    assert engine.accounts == {}
    assert engine.seq == 0
    assert account(engine) == 100001


# --- bad input -----------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
order_fields = st.fixed_dictionaries(
    {},
    optional={
        "account": st.sampled_from([100001, 0, -1, "100001", None, True, 10**30]) | json_values,
        "symbol": st.sampled_from(["EURUSD", "eurusd", "", "NOPE"]) | json_values,
        "side": st.sampled_from(["buy", "sell", "BUY"]) | json_values,
        "type": st.sampled_from(["market", "limit", "stop", "fok"]) | json_values,
        "volume": st.sampled_from(["0.1", "abc", "1e3", "NaN", "0.001", 0, -1, 1e308])
        | json_values,
        "price": json_values,
        "sl": st.sampled_from([1.0, 1.2, 0, -1]) | json_values,
        "tp": st.sampled_from([1.0, 1.2, 0]) | json_values,
        "client_order_id": st.sampled_from(["dup", ""]) | json_values,
        "comment": json_values,
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=order_fields | json_values)
def test_any_malformed_order_is_refused_with_a_spec_code_and_changes_nothing(body):
    engine, _, _ = make_engine()
    login = account(engine)
    order(engine, login, client_order_id="dup", volume="0.1")
    before = snapshot(engine)
    status = None
    try:
        engine.place_order(copy.deepcopy(body))
    except VenueError as exc:  # anything else (TypeError, InvalidOperation...) fails the test
        status = exc.status
    if status is not None:
        assert status in (404, 409, 422)
        after = snapshot(engine)
        assert after[0] == before[0]
        assert after[2:] == before[2:]


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b"[1,2]", b'{"a": NaN}', b'{"a": Infinity}', b"\xff\xfe", b"[" * 100_000],
)
def test_decode_json_refuses_what_is_not_json_numbers(raw):
    error = value = None
    try:
        value = decode_json(raw)
    except VenueError as exc:
        error = exc
    if error is None:
        assert not isinstance(value, dict)
    else:
        assert error.code == "VALIDATION_ERROR"
        assert error.message.startswith("body")


def test_decode_json_keeps_fractions_exact():
    assert decode_json(b'{"v": 0.1}') == {"v": Decimal("0.1")}


def prices_and_faults(engine: Engine) -> Any:
    return (
        [engine.get_price(name) for name in engine.symbols],
        [s["trading"] for s in engine.list_symbols()],
        engine.faults.as_dict(),
    )


maybe_number = st.sampled_from([None, 0, -1, 1, 1.1, "1.10", "x", 1e308, True]) | json_values
operation_bodies = st.fixed_dictionaries(
    {},
    optional={
        "account": st.sampled_from([100001, 100002, 0, "100001"]) | json_values,
        "login": st.sampled_from([100001, 7, 0, -5, 2**80]) | json_values,
        "volume": maybe_number,
        "amount": maybe_number,
        "balance": maybe_number,
        "leverage": maybe_number,
        "currency": st.sampled_from(["USD", "EUR", "usd"]) | json_values,
        "mode": st.sampled_from(["DEMO", "REAL"]) | json_values,
        "status": st.sampled_from(["connected", "disabled", "gone"]) | json_values,
        "sl": maybe_number,
        "tp": maybe_number,
        "symbol": st.sampled_from(["EURUSD", "US30", "x"]) | json_values,
        "bid": maybe_number,
        "ask": maybe_number,
        "trading": json_values,
        "client_order_id": st.sampled_from(["dup", "new"]) | json_values,
        "client_op_id": st.sampled_from(["dup", "new"]) | json_values,
        "comment": json_values,
        "reject_rate": maybe_number,
        "latency_ms": maybe_number,
        "drop_streams": json_values,
        "seed": maybe_number,
    },
)
OPERATIONS = {
    "create_account": lambda engine, body, pid: engine.create_account(body),
    "balance_operation": lambda engine, body, pid: engine.balance_operation(100001, body),
    "patch_account": lambda engine, body, pid: engine.patch_account(100001, body),
    "close_position": lambda engine, body, pid: engine.close_position(pid, body),
    "modify_position": lambda engine, body, pid: engine.modify_position(pid, body),
    "admin_set_price": lambda engine, body, pid: engine.admin_set_price(body),
    "admin_set_symbol": lambda engine, body, pid: engine.admin_set_symbol("EURUSD", body),
    "set_faults": lambda engine, body, pid: engine.set_faults(body),
    "batch": lambda engine, body, pid: engine.parse_batch(body),
}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(OPERATIONS)),
    body=operation_bodies | json_values,
)
def test_any_malformed_call_is_refused_with_a_spec_code_and_changes_nothing(name, body):
    engine, _, _ = make_engine()
    login = account(engine)
    opened = order(engine, login, client_order_id="dup", volume="0.1")
    engine.balance_operation(login, {"amount": 1, "client_op_id": "dup"})
    before = (snapshot(engine), prices_and_faults(engine))
    status = None
    try:
        OPERATIONS[name](engine, copy.deepcopy(body), opened["position_id"])
    except VenueError as exc:  # anything else fails the test
        status = exc.status
    if status is not None:
        assert status in (404, 409, 422)
        after = (snapshot(engine), prices_and_faults(engine))
        assert after[0][0] == before[0][0]
        assert after[0][2:] == before[0][2:]
        assert after[1] == before[1]
