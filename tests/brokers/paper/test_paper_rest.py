"""Every REST call of the paper venue, over a real socket, with its error codes."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brokers.paper.testing import VenueClient

ORDER = {"symbol": "EURUSD", "side": "buy", "type": "market", "volume": 0.1}


def test_every_call_needs_the_api_key(paper):
    venue = paper.venue
    for key in (None, "wrong-key"):
        client = VenueClient(venue.host, venue.port, key)
        for method, path in [
            ("GET", "/v1/symbols"),
            ("POST", "/v1/orders"),
            ("GET", "/v1/admin/stats"),
            ("GET", "/v1/no/such/route"),
        ]:
            status, body = client.request(method, path, {})
            assert status == 401
            assert body["error"] == "UNAUTHORIZED"
        client.close()
    # the query-string token is for the WebSocket only
    status, _ = VenueClient(venue.host, venue.port, None).get(f"/v1/symbols?token={venue.api_key}")
    assert status == 401


def test_unknown_route_and_method_answer_json_errors(paper):
    status, body = paper.api.get("/v1/nothing")
    assert status == 404
    assert body["error"] == "NOT_FOUND"
    status, body = paper.api.request("PUT", "/v1/orders", {})
    assert status == 405
    assert body["error"] == "METHOD_NOT_ALLOWED"


def test_accounts_create_get_and_patch(paper):
    status, created = paper.api.post(
        "/v1/accounts",
        {"balance": 2500, "currency": "EUR", "leverage": 50, "mode": "REAL", "name": "Ann"},
    )
    assert status == 201
    login = created["login"]
    account = paper.get(f"/v1/accounts/{login}")
    for key in ("login", "mode", "currency", "leverage", "balance", "equity", "margin"):
        assert account[key] == created[key]
    assert account["free_margin"] == 2500
    assert account["status"] == "connected"
    status, patched = paper.api.patch(f"/v1/accounts/{login}", {"status": "disabled"})
    assert status == 200
    assert patched["status"] == "disabled"
    answer = paper.order(login, expect=422)
    assert answer["error"] == "ACCOUNT_DISABLED"
    status, body = paper.api.patch(f"/v1/accounts/{login}", {"status": "asleep"})
    assert status == 422
    assert body["error"] == "VALIDATION_ERROR"
    assert "status" in body["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"currency": "USD", "leverage": 100, "mode": "DEMO"}, "balance"),
        ({"balance": "x", "currency": "USD", "leverage": 100, "mode": "DEMO"}, "balance"),
        ({"balance": 1, "currency": "XYZ", "leverage": 100, "mode": "DEMO"}, "currency"),
        ({"balance": 1, "currency": "USD", "leverage": 0, "mode": "DEMO"}, "leverage"),
        ({"balance": 1, "currency": "USD", "leverage": 100, "mode": "PAPER"}, "mode"),
        ({"balance": 1, "currency": "USD", "leverage": 100, "mode": "DEMO", "login": "7"}, "login"),
    ],
)
def test_account_creation_refuses_missing_or_mistyped_fields(paper, body, field):
    status, answer = paper.api.post("/v1/accounts", body)
    assert status == 422
    assert answer["error"] == "VALIDATION_ERROR"
    assert answer["message"].startswith(field)


def test_unknown_accounts_positions_orders(paper):
    login = paper.account()
    for path in ["/v1/accounts/999", "/v1/accounts/999/positions", "/v1/accounts/999/deals"]:
        status, body = paper.api.get(path)
        assert status == 404
        assert body["error"] == "ACCOUNT_NOT_FOUND"
    status, body = paper.api.get("/v1/accounts/abc")
    assert status == 422
    assert body["message"].startswith("login")
    assert paper.order(999, expect=404)["error"] == "ACCOUNT_NOT_FOUND"
    status, body = paper.api.post(
        "/v1/positions/123/close", {"account": login, "client_order_id": "c"}
    )
    assert status == 404
    assert body["error"] == "POSITION_NOT_FOUND"
    status, body = paper.api.patch("/v1/positions/123", {"account": login, "sl": 1.0})
    assert status == 404
    assert body["error"] == "POSITION_NOT_FOUND"
    status, body = paper.api.delete(f"/v1/orders/123?account={login}")
    assert status == 404
    assert body["error"] == "ORDER_NOT_FOUND"
    status, body = paper.api.delete("/v1/orders/123")
    assert status == 422
    assert body["message"].startswith("account")


def test_symbols_and_prices(paper):
    symbols = {s["symbol"]: s for s in paper.get("/v1/symbols")}
    assert set(symbols) == {"EURUSD", "GBPUSD", "USDJPY", "XAUUSD", "US30", "BTCUSD"}
    assert symbols["EURUSD"]["contract_size"] == 100000
    assert symbols["EURUSD"]["digits"] == 5
    assert symbols["XAUUSD"]["contract_size"] == 100
    assert symbols["US30"]["contract_size"] == symbols["BTCUSD"]["contract_size"] == 1
    assert all(s["trading"] and s["min_volume"] == 0.01 for s in symbols.values())
    quote = paper.get("/v1/prices/EURUSD")
    assert quote["bid"] < quote["ask"]
    assert quote["ts"] > 1.7e12
    paper.price("EURUSD", 1.2, 1.2002)
    assert paper.get("/v1/prices/EURUSD")["bid"] == 1.2
    status, body = paper.api.get("/v1/prices/NOPE")
    assert status == 422
    assert body["error"] == "SYMBOL_NOT_FOUND"
    status, body = paper.api.post("/v1/admin/prices", {"symbol": "EURUSD", "bid": 1.3, "ask": 1.2})
    assert status == 422
    assert body["message"].startswith("ask")


def test_market_order_opens_a_position_with_the_spec_fields(paper):
    login = paper.account()
    answer = paper.order(
        login, volume="0.5", sl=1.09, tp=1.12, client_order_id="copy-1", comment="hello"
    )
    assert answer["status"] == "filled"
    assert answer["client_order_id"] == "copy-1"
    assert answer["requested_volume"] == answer["filled_volume"] == 0.5
    assert answer["price"] == 1.1001
    assert answer["ts"] > 0
    (position,) = paper.positions(login)
    assert position == {
        "position_id": answer["position_id"],
        "account": login,
        "symbol": "EURUSD",
        "side": "buy",
        "volume": 0.5,
        "open_price": 1.1001,
        "open_ts": position["open_ts"],
        "sl": 1.09,
        "tp": 1.12,
        "profit": -5.0,
        "client_order_id": "copy-1",
        "comment": "hello",
    }
    (deal,) = paper.get(f"/v1/accounts/{login}/deals")
    assert deal["entry"] == "in"
    assert deal["order_id"] == answer["order_id"]
    assert deal["position_id"] == answer["position_id"]
    assert deal["reason"] == "client"


def test_order_error_codes(paper):
    login = paper.account(balance=100)
    cases = [
        ({"volume": 0}, "INVALID_VOLUME", "volume"),
        ({"volume": "-0.1"}, "INVALID_VOLUME", "volume"),
        ({"volume": "0.015"}, "INVALID_VOLUME", "volume"),
        ({"volume": 101}, "INVALID_VOLUME", "volume"),
        ({"volume": "lots"}, "VALIDATION_ERROR", "volume"),
        ({"sl": 1.2}, "INVALID_STOPS", "sl"),
        ({"tp": 1.0}, "INVALID_STOPS", "tp"),
        ({"symbol": "EURUSDm"}, "SYMBOL_NOT_FOUND", "symbol"),
        ({"volume": 1}, "INSUFFICIENT_MARGIN", "volume"),
        ({"side": "long"}, "VALIDATION_ERROR", "side"),
        ({"type": "limit"}, "VALIDATION_ERROR", "price"),
        ({"client_order_id": None}, "VALIDATION_ERROR", "client_order_id"),
        ({"account": "x"}, "VALIDATION_ERROR", "account"),
        ({"sl": "1.0"}, "VALIDATION_ERROR", "sl"),
    ]
    for fields, code, field in cases:
        answer = paper.order(login, expect=None, **fields)
        assert answer["error"] == code, (fields, answer)
        assert answer["message"].startswith(field), (fields, answer)
    paper.api.post("/v1/admin/symbols/EURUSD", {"trading": False})
    assert paper.order(login, expect=422)["error"] == "MARKET_CLOSED"
    assert paper.positions(login) == []
    assert paper.stats()["orders"] == 0


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[1, 2, 3]",
        b'"a string"',
        b"null",
        b'{"account": NaN}',
        b"{" * 5000,
        b"\xff\xfe\xfd",
        b"",
    ],
)
def test_malformed_bodies_are_validation_errors_and_change_nothing(paper, raw):
    login = paper.account()
    paper.order(login)
    before = (paper.stats(), paper.positions(login), paper.get(f"/v1/accounts/{login}"))
    for path in [
        "/v1/orders",
        "/v1/orders/batch",
        "/v1/accounts",
        f"/v1/accounts/{login}/balance",
        "/v1/admin/prices",
        "/v1/admin/faults",
        f"/v1/positions/{before[1][0]['position_id']}/close",
    ]:
        status, body = paper.api.post(path, raw=raw)
        assert status == 422, (path, body)
        assert body["error"] == "VALIDATION_ERROR", (path, body)
        assert body["message"].startswith("body")
    after = (paper.stats(), paper.positions(login), paper.get(f"/v1/accounts/{login}"))
    assert after == before


def test_pending_orders_list_cancel_and_trigger(paper):
    login = paper.account()
    limit = paper.order(login, type="limit", price=1.095, tp=1.2)
    stop = paper.order(login, type="stop", side="sell", price=1.09, sl=1.1)
    assert limit["status"] == stop["status"] == "placed"
    assert limit["position_id"] is None
    orders = paper.get(f"/v1/accounts/{login}/orders")
    assert [o["order_id"] for o in orders] == [limit["order_id"], stop["order_id"]]
    assert orders[0]["type"] == "limit"
    assert orders[0]["price"] == 1.095
    status, cancelled = paper.api.delete(f"/v1/orders/{stop['order_id']}?account={login}")
    assert status == 200
    assert cancelled["status"] == "cancelled"
    status, body = paper.api.delete(f"/v1/orders/{stop['order_id']}?account={login}")
    assert status == 404
    assert body["error"] == "ORDER_NOT_FOUND"
    paper.price("EURUSD", 1.0949, 1.0950)
    (position,) = paper.positions(login)
    assert position["position_id"] == limit["order_id"]
    assert position["open_price"] == 1.095
    assert paper.get(f"/v1/accounts/{login}/orders") == []


def test_modify_and_close_positions(paper):
    login = paper.account()
    opened = paper.order(login, volume=1)
    pid = opened["position_id"]
    status, modified = paper.api.patch(f"/v1/positions/{pid}", {"account": login, "sl": 1.05})
    assert status == 200
    assert modified["sl"] == 1.05
    assert modified["tp"] is None
    status, body = paper.api.patch(f"/v1/positions/{pid}", {"account": login, "tp": 1.0})
    assert status == 422
    assert body["error"] == "INVALID_STOPS"
    status, modified = paper.api.patch(f"/v1/positions/{pid}", {"account": login, "sl": None})
    assert modified["sl"] is None
    paper.price("EURUSD", 1.1020, 1.1021)
    body = {"account": login, "volume": "0.3", "client_order_id": "close-1"}
    status, closed = paper.api.post(f"/v1/positions/{pid}/close", body)
    assert status == 201
    assert closed["closed_volume"] == 0.3
    assert closed["remaining_volume"] == 0.7
    assert closed["price"] == 1.102
    assert closed["profit"] == pytest.approx(57.0)
    status, again = paper.api.post(f"/v1/positions/{pid}/close", body)
    assert status == 200
    assert again == closed
    status, conflict = paper.api.post(f"/v1/positions/{pid}/close", {**body, "volume": "0.2"})
    assert status == 409
    assert conflict["error"] == "IDEMPOTENCY_CONFLICT"
    status, too_much = paper.api.post(
        f"/v1/positions/{pid}/close", {"account": login, "volume": 5, "client_order_id": "c2"}
    )
    assert status == 422
    assert too_much["error"] == "INVALID_VOLUME"
    status, rest = paper.api.post(
        f"/v1/positions/{pid}/close", {"account": login, "client_order_id": "close-all"}
    )
    assert status == 201
    assert rest["closed_volume"] == 0.7
    assert rest["remaining_volume"] == 0
    assert paper.positions(login) == []
    deals = paper.get(f"/v1/accounts/{login}/deals")
    assert [d["entry"] for d in deals] == ["in", "out", "out"]
    account = paper.get(f"/v1/accounts/{login}")
    assert account["balance"] == pytest.approx(10000 + sum(d["profit"] for d in deals))
    later = paper.get(f"/v1/accounts/{login}/deals?from_ts={deals[1]['ts']}")
    assert [d["deal_id"] for d in later] == [d["deal_id"] for d in deals[1:]]
    status, body = paper.api.get(f"/v1/accounts/{login}/deals?from_ts=yesterday")
    assert status == 422
    assert body["message"].startswith("from_ts")


def test_balance_operations_are_idempotent_by_client_op_id(paper):
    login = paper.account(balance=100)
    body = {"amount": "-12.50", "comment": "fee", "client_op_id": "fee-1"}
    status, first = paper.api.post(f"/v1/accounts/{login}/balance", body)
    assert status == 201
    assert first["balance"] == 87.5
    assert first["deal_id"] > 0
    status, again = paper.api.post(f"/v1/accounts/{login}/balance", body)
    assert status == 200
    assert again == first
    status, conflict = paper.api.post(f"/v1/accounts/{login}/balance", {**body, "amount": "-1"})
    assert status == 409
    assert conflict["error"] == "IDEMPOTENCY_CONFLICT"
    status, refused = paper.api.post(
        f"/v1/accounts/{login}/balance", {"amount": "-500", "comment": "", "client_op_id": "big"}
    )
    assert status == 422
    assert refused["error"] == "INSUFFICIENT_MARGIN"
    assert paper.get(f"/v1/accounts/{login}")["balance"] == 87.5
    (deal,) = paper.get(f"/v1/accounts/{login}/deals")
    assert deal["entry"] == "balance"
    assert deal["profit"] == -12.5


def test_same_client_order_id_answers_200_with_the_first_answer(paper):
    login = paper.account()
    first = paper.order(login, client_order_id="same", volume=0.2)
    again = paper.order(login, client_order_id="same", volume="0.20", expect=200)
    assert again == first
    conflict = paper.order(login, client_order_id="same", volume=0.3, expect=409)
    assert conflict["error"] == "IDEMPOTENCY_CONFLICT"
    assert conflict["message"].startswith("client_order_id")
    assert len(paper.positions(login)) == 1
    # ids are per account: another account may use the same one
    other = paper.account()
    assert paper.order(other, client_order_id="same")["status"] == "filled"


def test_100_concurrent_posts_of_one_client_order_id_open_one_position(paper):
    login = paper.account()
    body = {**ORDER, "account": login, "client_order_id": "storm"}

    async def storm() -> list[tuple[int, dict]]:
        async with aiohttp.ClientSession(headers=paper.venue.headers) as session:

            async def post() -> tuple[int, dict]:
                async with session.post(f"{paper.venue.url}/v1/orders", json=body) as response:
                    return response.status, await response.json()

            return await asyncio.gather(*(post() for _ in range(100)))

    results = asyncio.run(storm())
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] * 99 + [201]
    assert len({answer["order_id"] for _, answer in results}) == 1
    assert len(paper.positions(login)) == 1
    stats = paper.stats()
    assert stats["duplicates_absorbed"] == 99
    assert stats["orders"] == 1


def test_batch_handles_each_order_as_if_alone(paper):
    login = paper.account(balance=1000)
    orders = [
        {**ORDER, "account": login, "client_order_id": "b1"},
        {**ORDER, "account": login, "client_order_id": "b2", "volume": 50},  # no margin
        {**ORDER, "account": login, "client_order_id": "b3", "symbol": "NOPE"},
        "not an order",
        {**ORDER, "account": login, "client_order_id": "b1"},  # repeat of the first
        {**ORDER, "account": 424242, "client_order_id": "b5"},
        {**ORDER, "account": login, "client_order_id": "b6", "side": "sell"},
    ]
    status, body = paper.api.post("/v1/orders/batch", {"orders": orders})
    assert status == 200
    results = body["results"]
    assert [r.get("status") or r["error"] for r in results] == [
        "filled",
        "INSUFFICIENT_MARGIN",
        "SYMBOL_NOT_FOUND",
        "VALIDATION_ERROR",
        "filled",
        "ACCOUNT_NOT_FOUND",
        "filled",
    ]
    assert results[4] == results[0]
    assert len(paper.positions(login)) == 2


def test_batch_size_is_limited_to_1000(paper):
    login = paper.account(balance=1_000_000)
    orders = [{**ORDER, "account": login, "client_order_id": f"o{i}"} for i in range(1001)]
    status, body = paper.api.post("/v1/orders/batch", {"orders": orders})
    assert status == 422
    assert body["error"] == "VALIDATION_ERROR"
    assert body["message"].startswith("orders")
    status, body = paper.api.post("/v1/orders/batch", {"orders": orders[:1000]})
    assert status == 200
    assert all(r["status"] == "filled" for r in body["results"])
    status, body = paper.api.post("/v1/orders/batch", {"orders": "all of them"})
    assert status == 422
    assert body["message"].startswith("orders")


def test_error_rate_fails_before_or_after_acting_and_idempotency_recovers(paper):
    login = paper.account(balance=1_000_000)
    paper.api.post("/v1/admin/faults", {"error_rate": 0.5, "seed": 11})
    outcomes = {}
    for i in range(40):
        key = f"e{i}"
        status, _ = paper.api.post(
            "/v1/orders", {**ORDER, "account": login, "client_order_id": key}
        )
        outcomes[key] = status
    assert {201, 503} == set(outcomes.values())
    failed = [key for key, status in outcomes.items() if status == 503]
    opened = {p["client_order_id"] for p in paper.positions(login)}
    acted_anyway = [key for key in failed if key in opened]
    never_acted = [key for key in failed if key not in opened]
    assert acted_anyway
    assert never_acted
    paper.api.post("/v1/admin/faults", {"error_rate": 0})
    for key in failed:
        status, answer = paper.api.post(
            "/v1/orders", {**ORDER, "account": login, "client_order_id": key}
        )
        assert status == (200 if key in acted_anyway else 201), answer
    assert len(paper.positions(login)) == 40


def test_reject_partial_fill_and_latency_faults(paper):
    login = paper.account(balance=1_000_000)
    status, faults = paper.api.post("/v1/admin/faults", {"reject_rate": 1.0})
    assert status == 200
    assert faults["reject_rate"] == 1.0
    answer = paper.order(login, expect=422)
    assert answer["error"] == "INSUFFICIENT_MARGIN"
    paper.api.post("/v1/admin/faults", {"reject_rate": 0, "partial_fill_rate": 1.0})
    answer = paper.order(login, volume=1)
    assert answer["status"] == "partially_filled"
    assert 0 < answer["filled_volume"] < 1
    assert paper.positions(login)[0]["volume"] == answer["filled_volume"]
    paper.api.post("/v1/admin/faults", {"partial_fill_rate": 0, "latency_ms": 150})
    started = time.monotonic()
    paper.get("/v1/symbols")
    assert time.monotonic() - started >= 0.15
    paper.api.post("/v1/admin/faults", {"latency_ms": 0})
    status, body = paper.api.post("/v1/admin/faults", {"error_rat": 0.1})
    assert status == 422
    assert body["message"].startswith("error_rat")
    status, body = paper.api.post("/v1/admin/faults", {"reject_rate": 2})
    assert status == 422
    assert body["message"].startswith("reject_rate")


def test_rate_limit_fault_answers_rate_limited(paper):
    login = paper.account(balance=1_000_000)
    paper.api.post("/v1/admin/faults", {"rate_limit_per_s": 3})
    statuses = [paper.order(login, expect=None).get("error", "ok") for _ in range(8)]
    assert "RATE_LIMITED" in statuses
    assert statuses[0] == "ok"


def test_fault_outcomes_repeat_for_a_seed(paper):
    def run() -> list:
        paper.api.post("/v1/admin/reset", {})
        login = paper.account(balance=1_000_000)
        paper.api.post(
            "/v1/admin/faults",
            {"reject_rate": 0.2, "error_rate": 0.2, "partial_fill_rate": 0.2, "seed": 5},
        )
        return [
            (answer.get("status"), answer.get("filled_volume"), answer.get("error"))
            for answer in (paper.order(login, expect=None, volume=1) for _ in range(30))
        ]

    assert run() == run()


def test_stats_and_reset(paper):
    login = paper.account()
    paper.order(login)
    stats = paper.stats()
    assert stats["orders"] == 1
    assert stats["fills"] == 1
    assert stats["events"] >= 2
    assert set(stats) >= {
        "orders",
        "fills",
        "duplicates_absorbed",
        "conflicts",
        "events",
        "streams",
    }
    status, _ = paper.api.post("/v1/admin/reset", {})
    assert status == 200
    assert paper.stats()["orders"] == 0
    status, body = paper.api.get(f"/v1/accounts/{login}")
    assert status == 404


def test_sl_tp_and_stop_out_over_rest(paper):
    login = paper.account(balance=600)
    tp_order = paper.order(login, volume=0.1, tp=1.1050)
    paper.price("EURUSD", 1.1050, 1.1051)
    deals = paper.get(f"/v1/accounts/{login}/deals")
    assert deals[-1]["reason"] == "tp"
    assert deals[-1]["position_id"] == tp_order["position_id"]
    paper.order(login, volume=0.5)  # margin ~552.6, equity ~605
    paper.price("EURUSD", 1.0950, 1.0951)  # -552 on the position: stop-out
    assert paper.positions(login) == []
    assert paper.get(f"/v1/accounts/{login}/deals")[-1]["reason"] == "stop_out"


segments = st.sampled_from(["100001", "0", "abc", "-1", "1000001", "EURUSD", "%FF", "", "9" * 30])
paths = st.builds(
    lambda template, a, b: template.format(a=a, b=b),
    st.sampled_from(
        [
            "/v1/accounts", "/v1/accounts/{a}", "/v1/accounts/{a}/balance",
            "/v1/accounts/{a}/positions", "/v1/accounts/{a}/orders",
            "/v1/accounts/{a}/deals?from_ts={b}", "/v1/symbols", "/v1/prices/{a}",
            "/v1/orders", "/v1/orders/batch", "/v1/orders/{a}?account={b}",
            "/v1/positions/{a}/close", "/v1/positions/{a}", "/v1/stream?accounts={a}&from_seq={b}",
            "/v1/admin/prices", "/v1/admin/symbols/{a}", "/v1/admin/faults", "/v1/admin/stats",
            "/v1/{a}", "/{a}/{b}",
        ]
    ),
    segments,
    segments,
)  # fmt: skip
bodies = st.one_of(
    st.binary(max_size=40),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(
                st.sampled_from(["account", "volume", "symbol", "orders", "amount", "sl", "x"]),
                children,
                max_size=4,
            )
        ),
        max_leaves=10,
    ).map(lambda value: json.dumps(value).encode()),
)


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
@given(method=st.sampled_from(["GET", "POST", "PATCH", "DELETE", "PUT"]), path=paths, raw=bodies)
def test_no_request_gets_a_500_or_a_non_json_answer(venue, method, path, raw):
    client = venue.client()
    try:
        status, body = client.request(method, path, raw=raw)
    finally:
        client.close()
    assert status < 500 or (status == 503 and body["error"] == "UNAVAILABLE")
    if status >= 400:
        assert set(body) == {"error", "message"}
