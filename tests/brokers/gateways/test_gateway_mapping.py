"""Plain unit tests of the gateway's pure functions: no venue, no database, no network."""

from __future__ import annotations

import json
import pickle
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokers.gateways.errors import (
    RETRYABLE_REASONS,
    VENUE_ERROR_REASONS,
    GatewayError,
    GatewayReason,
    reason_for_response,
    reason_for_venue_code,
)
from brokers.gateways.rest_ws import (
    RestWsGateway,
    RetryPolicy,
    encode_json,
    error_from_answer,
    order_request_to_payload,
    parse_close_answer,
    parse_deal,
    parse_order_answer,
    parse_pending_order,
    parse_position,
    parse_retry_after,
    parse_stream_event,
)
from brokers.gateways.types import (
    AccountUpdate,
    ClosedPosition,
    CloseReason,
    DealEntry,
    OrderFill,
    OrderRequest,
    OrderStatus,
    OrderType,
    PendingOrder,
    Position,
    Side,
    StreamEventType,
    datetime_to_ms,
    ms_to_datetime,
    to_decimal,
)

# The protocol's error codes and HTTP statuses (spec/paper-venue.md, "Errors").
SPEC_CODES = {
    "UNAUTHORIZED": (401, GatewayReason.UNAUTHORIZED),
    "ACCOUNT_NOT_FOUND": (404, GatewayReason.ACCOUNT_NOT_FOUND),
    "POSITION_NOT_FOUND": (404, GatewayReason.POSITION_NOT_FOUND),
    "ORDER_NOT_FOUND": (404, GatewayReason.ORDER_NOT_FOUND),
    "IDEMPOTENCY_CONFLICT": (409, GatewayReason.IDEMPOTENCY_CONFLICT),
    "INVALID_VOLUME": (422, GatewayReason.INVALID_VOLUME),
    "INVALID_STOPS": (422, GatewayReason.INVALID_STOPS),
    "SYMBOL_NOT_FOUND": (422, GatewayReason.SYMBOL_NOT_FOUND),
    "INSUFFICIENT_MARGIN": (422, GatewayReason.INSUFFICIENT_MARGIN),
    "MARKET_CLOSED": (422, GatewayReason.MARKET_CLOSED),
    "ACCOUNT_DISABLED": (422, GatewayReason.ACCOUNT_DISABLED),
    "VALIDATION_ERROR": (422, GatewayReason.VALIDATION),
    "RATE_LIMITED": (429, GatewayReason.RATE_LIMITED),
    "UNAVAILABLE": (503, GatewayReason.UNAVAILABLE),
}

POSITION = {
    "position_id": 1000001,
    "account": 100001,
    "symbol": "EURUSDm",
    "side": "buy",
    "volume": 0.1,
    "open_price": 1.1001,
    "open_ts": 1763779200123.4,
    "sl": None,
    "tp": 1.12,
    "profit": -0.3,
    "client_order_id": "copy-1",
    "comment": None,
}


def request(**fields: object) -> OrderRequest:
    values: dict[str, object] = {
        "account": 100001,
        "symbol": "EURUSD",
        "side": Side.BUY,
        "volume": Decimal("0.10"),
        "client_order_id": "copy-1",
    }
    values.update(fields)
    return OrderRequest(**values)  # type: ignore[arg-type]


# --- error codes ---------------------------------------------------------------------


def test_every_spec_error_code_maps_to_its_own_reason():
    assert set(SPEC_CODES) == set(VENUE_ERROR_REASONS)
    for code, (status, reason) in SPEC_CODES.items():
        assert reason_for_venue_code(code) is reason
        error = error_from_answer(status, {"error": code, "message": "m"})
        assert error.reason is reason
        assert error.code == code
        assert error.http_status == status
    # One reason per code: no two protocol codes collapse into the same reason.
    assert len({r for _, r in SPEC_CODES.values()}) == len(SPEC_CODES)


@pytest.mark.parametrize("code", ["INTERNAL", "NOT_FOUND", "", None, 42, "SOMETHING_NEW"])
def test_unknown_codes_map_to_unknown(code):
    assert reason_for_venue_code(code) is GatewayReason.UNKNOWN


def test_a_known_code_wins_over_the_status():
    assert reason_for_response(400, "INVALID_VOLUME") is GatewayReason.INVALID_VOLUME


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (401, GatewayReason.UNAUTHORIZED),
        (429, GatewayReason.RATE_LIMITED),
        (502, GatewayReason.UNAVAILABLE),
        (503, GatewayReason.UNAVAILABLE),
        (504, GatewayReason.TIMEOUT),
        (500, GatewayReason.UNKNOWN),
        (418, GatewayReason.UNKNOWN),
    ],
)
def test_a_body_without_a_code_falls_back_on_the_status(status, reason):
    assert error_from_answer(status, "<html>bad gateway</html>").reason is reason
    assert error_from_answer(status, None).reason is reason


def test_error_bodies_of_the_same_shape_family_are_read():
    nested = error_from_answer(422, {"error": {"code": "MARKET_CLOSED", "message": "closed"}})
    assert (nested.reason, nested.message) == (GatewayReason.MARKET_CLOSED, "closed")
    flat = error_from_answer(404, {"code": "ORDER_NOT_FOUND", "message": "gone"})
    assert (flat.reason, flat.message) == (GatewayReason.ORDER_NOT_FOUND, "gone")


def test_retryable_defaults_from_the_reason_and_can_be_overridden():
    for reason in GatewayReason:
        assert GatewayError(reason).retryable is (reason in RETRYABLE_REASONS)
    assert GatewayError(GatewayReason.UNKNOWN, retryable=True).retryable is True
    assert GatewayReason.INSUFFICIENT_MARGIN not in RETRYABLE_REASONS


def test_gateway_error_survives_pickling_for_celery():
    error = GatewayError(
        GatewayReason.TIMEOUT, "slow", 504, code="X", outcome_unknown=True, retryable=False
    )
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.reason, copy.message, copy.http_status, copy.retryable, copy.code) == (
        GatewayReason.TIMEOUT,
        "slow",
        504,
        False,
        "X",
    )
    assert copy.outcome_unknown is True


# --- numbers and times -----------------------------------------------------------------


def test_floats_become_decimals_through_their_text_never_their_binary_value():
    assert to_decimal(1.1) == Decimal("1.1")
    assert str(to_decimal(0.1)) == "0.1"
    assert to_decimal(0.1) != Decimal(0.1)  # the binary value is what we avoid
    assert to_decimal("0.50") == Decimal("0.50")
    assert to_decimal(3) == Decimal(3)


@pytest.mark.parametrize("bad", [None, True, "abc", float("nan"), float("inf"), [1]])
def test_non_numbers_are_refused_not_zeroed(bad):
    with pytest.raises(ValueError, match="decimal"):
        to_decimal(bad)


@given(st.floats(allow_nan=False, allow_infinity=False, width=64))
def test_to_decimal_keeps_the_shortest_repr_of_any_float(value):
    assert to_decimal(value) == Decimal(repr(value))


def test_venue_milliseconds_convert_to_aware_utc_and_back_exactly():
    when = ms_to_datetime(1763779200123.4)
    assert when == datetime(2025, 11, 22, 2, 40, 0, 123400, tzinfo=UTC)
    assert datetime_to_ms(when) == Decimal("1763779200123.4")
    with pytest.raises(ValueError, match="naive"):
        datetime_to_ms(datetime(2025, 1, 1))  # noqa: DTZ001


@given(st.integers(min_value=0, max_value=4_000_000_000_000_000))
def test_microsecond_times_round_trip(micros):
    when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    assert ms_to_datetime(datetime_to_ms(when)) == when


# --- request bodies --------------------------------------------------------------------


def test_decimals_are_sent_as_json_numbers_with_their_exact_digits():
    body = encode_json({"volume": Decimal("0.30"), "sl": Decimal("1.09999"), "n": [1, None]})
    assert body == b'{"volume":0.30,"sl":1.09999,"n":[1,null]}'


def test_floats_are_refused_in_request_bodies():
    with pytest.raises(TypeError, match="Decimal"):
        encode_json({"volume": 0.1})
    with pytest.raises(TypeError, match="set"):
        encode_json({"ids": {1, 2}})


def test_request_bodies_are_valid_json_whatever_the_text():
    text = 'caf\u00e9 "quoted" \\ \n'
    body = encode_json({"comment": text, "side": Side.SELL, "flags": [True, False, None]})
    assert json.loads(body) == {"comment": text, "side": "sell", "flags": [True, False, None]}


def test_order_payload_leaves_unset_fields_out_so_identical_requests_match():
    payload = order_request_to_payload(request())
    assert payload == {
        "account": 100001,
        "symbol": "EURUSD",
        "side": "buy",
        "type": "market",
        "volume": Decimal("0.10"),
        "client_order_id": "copy-1",
    }
    full = order_request_to_payload(
        request(type=OrderType.LIMIT, price=Decimal("1.09"), sl=Decimal("1.08"), comment="c")
    )
    assert (full["price"], full["sl"], full["comment"]) == (Decimal("1.09"), Decimal("1.08"), "c")
    assert "tp" not in full
    assert encode_json(order_request_to_payload(request())) == encode_json(payload)


def test_order_requests_refuse_floats_and_missing_client_ids():
    with pytest.raises(TypeError, match="Decimal"):
        request(volume=0.1)
    with pytest.raises(TypeError, match="Decimal"):
        request(sl=1.1)
    with pytest.raises(ValueError, match="client_order_id"):
        request(client_order_id="")


# --- answers ---------------------------------------------------------------------------


def test_position_parses_to_decimals_and_string_ids():
    position = parse_position(POSITION)
    assert position == Position(
        position_id="1000001",
        account=100001,
        symbol="EURUSDm",
        side=Side.BUY,
        volume=Decimal("0.1"),
        open_price=Decimal("1.1001"),
        open_ts=ms_to_datetime(1763779200123.4),
        sl=None,
        tp=Decimal("1.12"),
        profit=Decimal("-0.3"),
        client_order_id="copy-1",
        comment="",
    )


def test_order_answers_parse_per_status():
    filled = parse_order_answer(
        {
            "order_id": 7,
            "client_order_id": "copy-1",
            "status": "partially_filled",
            "requested_volume": 0.1,
            "filled_volume": 0.04,
            "price": 1.1001,
            "position_id": 7,
            "ts": 1763779200000,
        },
        request(),
    )
    assert filled.status is OrderStatus.PARTIALLY_FILLED
    assert (filled.requested_volume, filled.filled_volume) == (Decimal("0.1"), Decimal("0.04"))
    assert (filled.order_id, filled.position_id, filled.ok) == ("7", "7", True)
    assert filled.replayed is False
    assert filled.reason is None

    rejected = parse_order_answer({"error": "MARKET_CLOSED", "message": "closed"}, request())
    assert rejected.status is OrderStatus.REJECTED
    assert rejected.reason is GatewayReason.MARKET_CLOSED
    assert (rejected.message, rejected.ok, rejected.retryable) == ("closed", False, False)
    assert rejected.requested_volume == Decimal("0.10")

    busy = parse_order_answer({"error": "UNAVAILABLE", "message": "retry"}, request())
    assert busy.retryable is True


def test_close_answer_parses():
    result = parse_close_answer(
        {
            "position_id": 5,
            "client_order_id": "close-1",
            "closed_volume": 0.04,
            "remaining_volume": 0.06,
            "price": 1.1,
            "profit": -1.2,
            "ts": 1763779200000,
        },
        position_id="5",
        client_order_id="close-1",
    )
    assert (result.closed_volume, result.remaining_volume) == (Decimal("0.04"), Decimal("0.06"))
    assert result.profit == Decimal("-1.2")


def test_deals_and_pending_orders_parse():
    deal = parse_deal(
        {
            "deal_id": 3,
            "account": 100001,
            "order_id": 9,
            "position_id": 9,
            "client_order_id": None,
            "symbol": None,
            "side": None,
            "entry": "balance",
            "volume": 0,
            "price": 0,
            "profit": 12.5,
            "reason": "client",
            "ts": 1763779200000,
        }
    )
    assert (deal.entry, deal.side, deal.profit, deal.client_order_id) == (
        DealEntry.BALANCE,
        None,
        Decimal("12.5"),
        None,
    )
    order = parse_pending_order(
        {
            "order_id": 11,
            "account": 100001,
            "client_order_id": "lim-1",
            "symbol": "EURUSD",
            "side": "sell",
            "type": "limit",
            "volume": 0.2,
            "price": 1.2,
            "sl": None,
            "tp": None,
            "comment": None,
            "status": "working",
            "ts": 1763779200000,
        }
    )
    assert order == PendingOrder(
        order_id="11",
        account=100001,
        symbol="EURUSD",
        side=Side.SELL,
        type=OrderType.LIMIT,
        volume=Decimal("0.2"),
        price=Decimal("1.2"),
        client_order_id="lim-1",
        ts=ms_to_datetime(1763779200000),
    )


# --- stream ----------------------------------------------------------------------------


def event(type_: str, data: dict | None = None, seq: int = 5) -> dict:
    return {"seq": seq, "type": type_, "account": 100001, "ts": 1763779200000.5, "data": data}


def test_stream_events_normalize_by_type_and_keep_the_raw_message():
    opened = parse_stream_event(event("position_opened", POSITION))
    assert opened.type is StreamEventType.POSITION_OPENED
    assert isinstance(opened.data, Position)
    assert opened.raw["data"]["open_price"] == 1.1001  # raw stays plain JSON

    closed = parse_stream_event(
        event(
            "position_closed",
            {
                **POSITION,
                "volume": 0.06,
                "closed_volume": 0.04,
                "remaining_volume": 0.06,
                "close_price": 1.1,
                "profit": 2.5,
                "reason": "sl",
            },
        )
    )
    assert isinstance(closed.data, ClosedPosition)
    assert closed.data.partial
    assert closed.data.reason is CloseReason.SL
    assert closed.data.profit == Decimal("2.5")

    filled = parse_stream_event(
        event(
            "order_filled",
            {
                "order_id": 4,
                "account": 100001,
                "client_order_id": "lim",
                "symbol": "EURUSD",
                "side": "buy",
                "type": "limit",
                "volume": 0.1,
                "price": 1.09,
                "fill_price": 1.09,
                "position_id": 4,
                "status": "filled",
                "ts": 1,
            },
        )
    )
    assert filled.data == OrderFill(
        order_id="4",
        account=100001,
        symbol="EURUSD",
        side=Side.BUY,
        volume=Decimal("0.1"),
        price=Decimal("1.09"),
        position_id="4",
        client_order_id="lim",
    )
    updated = parse_stream_event(
        event("account_updated", {"login": 100001, "balance": 10, "equity": 9.5, "margin": 1})
    )
    assert updated.data == AccountUpdate(
        account=100001, balance=Decimal(10), equity=Decimal("9.5"), margin=Decimal(1)
    )


def test_control_and_unknown_events_are_kept_not_dropped():
    reset = parse_stream_event({"seq": 42, "type": "reset", "account": None, "ts": 1, "data": {}})
    assert (reset.type, reset.seq, reset.data, reset.is_control) == (
        StreamEventType.RESET,
        42,
        None,
        True,
    )
    beat = parse_stream_event({"seq": 41, "type": "heartbeat", "account": None, "ts": 1})
    assert beat.type is StreamEventType.HEARTBEAT
    assert beat.is_control
    novel = parse_stream_event(event("margin_call", {"x": 1}))
    assert novel.type is StreamEventType.UNKNOWN
    assert novel.raw["type"] == "margin_call"
    broken = parse_stream_event(event("position_opened", {"position_id": 1}))
    assert broken.type is StreamEventType.POSITION_OPENED
    assert broken.data is None


# --- retry timing ----------------------------------------------------------------------


def test_retry_after_reads_seconds_and_http_dates():
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("Wed, 01 Jan 2025 12:00:03 GMT", now) == 3.0
    assert parse_retry_after("Wed, 01 Jan 2025 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_backoff_grows_exponentially_with_full_jitter_and_a_cap():
    policy = RetryPolicy(base_delay=0.1, max_delay=1.0)
    rng = random.Random(3)
    for retry, bound in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (12, 1.0)]:
        delays = [policy.backoff(retry, rng) for _ in range(200)]
        assert all(0 <= d <= bound for d in delays)
        assert max(delays) > bound * 0.8  # jitter spreads over the whole range


def test_gateway_repr_never_shows_the_key():
    gateway = RestWsGateway(
        "http://venue:8700/", "s3cret-key-value", dedupes_client_order_ids=False, name="Broker A"
    )
    text = repr(gateway) + str(vars(gateway) if hasattr(gateway, "__dict__") else "")
    assert "s3cret-key-value" not in text
    assert "Broker A" in repr(gateway)
    assert gateway.ws_url == "ws://venue:8700"
