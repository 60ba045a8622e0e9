"""Retries that can never duplicate: injected 503s and timeouts on the real venue, and a
scripted stand-in server (same protocol) for 429 and for counting what was re-sent."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import pytest
from aiohttp import web

from brokers.gateways import GatewayError, GatewayReason
from brokers.gateways.rest_ws import RestWsGateway, RetryPolicy
from brokers.gateways.types import OrderRequest, OrderStatus, Side
from tests.brokers.gateways.gateway_helpers import FAST_RETRY

pytestmark = pytest.mark.e2e


def order(login: int, cid: str, volume: str = "0.10") -> OrderRequest:
    return OrderRequest(
        account=login,
        symbol="EURUSD",
        side=Side.BUY,
        volume=Decimal(volume),
        client_order_id=cid,
    )


def held_once(admin, login: int, cids: list[str]) -> None:
    """The venue holds exactly one position per client order id, no more, no fewer."""
    held = [p["client_order_id"] for p in admin.positions(login)]
    assert sorted(held) == sorted(cids)


# --- injected 503s on the real venue -------------------------------------------------------


@pytest.mark.parametrize("dedupes", [True, False], ids=["resend", "lookup-first"])
def test_orders_retried_after_503_never_open_a_second_position(run, admin, dedupes):
    cids = [f"o-{i}" for i in range(40)]

    async def scenario(gw: RestWsGateway):
        login = (await gw.create_account(balance=Decimal(1_000_000))).login
        admin.faults(error_rate=0.5, seed=11)
        results = [await gw.place_order(order(login, cid)) for cid in cids]
        admin.faults(error_rate=0.0)
        return login, results

    login, results = run(scenario, dedupes_client_order_ids=dedupes)
    assert all(r.status is OrderStatus.FILLED for r in results)
    held_once(admin, login, cids)
    stats = admin.stats()
    # Some 503s came after the venue had acted, and were answered from its record:
    assert any(r.replayed for r in results)
    if dedupes:
        assert stats["duplicates_absorbed"] > 0  # resent, and the venue absorbed it
    else:
        assert stats["duplicates_absorbed"] == 0  # never resent an order that existed


@pytest.mark.parametrize("dedupes", [True, False], ids=["resend", "lookup-first"])
def test_batches_retried_after_503_never_open_a_second_position(run, admin, dedupes):
    cids = [f"b-{i}" for i in range(60)]

    async def scenario(gw: RestWsGateway):
        login = (await gw.create_account(balance=Decimal(1_000_000))).login
        admin.faults(error_rate=0.3, seed=12)
        results = await gw.place_orders([order(login, cid, "0.01") for cid in cids])
        admin.faults(error_rate=0.0)
        return login, results

    login, results = run(scenario, dedupes_client_order_ids=dedupes, batch_size=25)
    assert [r.client_order_id for r in results] == cids
    assert all(r.status is OrderStatus.FILLED for r in results), [
        (r.client_order_id, r.reason) for r in results if not r.ok
    ]
    held_once(admin, login, cids)
    if not dedupes:
        assert admin.stats()["duplicates_absorbed"] == 0


@pytest.mark.parametrize("dedupes", [True, False], ids=["resend", "lookup-first"])
def test_closes_retried_after_503_close_once(run, admin, dedupes):
    async def scenario(gw: RestWsGateway):
        login = (await gw.create_account(balance=Decimal(1_000_000))).login
        opened = [await gw.place_order(order(login, f"p-{i}")) for i in range(20)]
        admin.faults(error_rate=0.5, seed=13)
        closes = [
            await gw.close_position(
                account=login,
                position_id=o.position_id,
                client_order_id=f"close-{o.client_order_id}",
                volume=Decimal("0.04"),
            )
            for o in opened
        ]
        admin.faults(error_rate=0.0)
        return login, closes

    login, closes = run(scenario, dedupes_client_order_ids=dedupes)
    assert all(c.closed_volume == Decimal("0.04") for c in closes)
    assert all(c.remaining_volume == Decimal("0.06") for c in closes)
    assert any(c.replayed for c in closes)
    # A close applied twice would leave 0.02 lots.
    assert {p["volume"] for p in admin.positions(login)} == {0.06}


@pytest.mark.parametrize("dedupes", [True, False], ids=["resend", "lookup-first"])
def test_a_timed_out_order_that_the_venue_executed_exists_once(run, admin, dedupes):
    async def scenario(gw: RestWsGateway):
        login = (await gw.create_account(balance=Decimal(100_000))).login
        admin.faults(latency_ms=400)
        with pytest.raises(GatewayError) as caught:
            await gw.place_order(order(login, "slow-1"))
        admin.faults(latency_ms=0)
        # The caller retries later with the same request, as the execute task does; on
        # a platform that does not deduplicate it looks the id up first.
        again = None if dedupes else await gw.lookup_order(login, "slow-1")
        again = again or await gw.place_order(order(login, "slow-1"))
        return login, caught.value, again

    login, error, again = run(
        scenario,
        dedupes_client_order_ids=dedupes,
        timeout=0.15,
        retry=RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.002),
    )
    assert error.reason is GatewayReason.TIMEOUT
    assert error.outcome_unknown is True
    assert error.retryable is True
    assert again.status is OrderStatus.FILLED
    assert again.replayed is True
    held_once(admin, login, ["slow-1"])
    if not dedupes:
        # The gateway's lookup could not answer in time either, so it re-sent nothing.
        assert admin.stats()["duplicates_absorbed"] == 0


# --- a scripted stand-in speaking the same protocol ----------------------------------------


class Script:
    """Answers each call from a list of (status, body, headers); the last one repeats."""

    def __init__(self, answers: list[tuple[int, Any, dict[str, str]]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, str, bytes, float]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.calls.append((request.method, request.path, body, time.monotonic()))
        index = min(len(self.calls), len(self.answers)) - 1
        status, payload, headers = self.answers[index]
        return web.Response(
            status=status,
            body=json.dumps(payload).encode(),
            headers=headers,
            content_type="application/json",
        )


FILLED = {
    "order_id": 9,
    "client_order_id": "s-1",
    "status": "filled",
    "requested_volume": 0.1,
    "filled_volume": 0.1,
    "price": 1.1001,
    "position_id": 9,
    "ts": 1763779200000.0,
}
LIMITED = {"error": "RATE_LIMITED", "message": "slow down"}


@asynccontextmanager
async def serving(handler: Any) -> AsyncIterator[str]:
    """A local aiohttp server answering every path with `handler`; yields its base URL."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def scripted(
    answers: list[tuple[int, Any, dict[str, str]]], **options: Any
) -> AsyncIterator[tuple[RestWsGateway, Script]]:
    script = Script(answers)
    options.setdefault("dedupes_client_order_ids", False)
    options.setdefault("retry", FAST_RETRY)
    async with serving(script.handle) as url, RestWsGateway(url, "k", **options) as gw:
        yield gw, script


def test_429_honours_retry_after_then_succeeds_with_the_same_body():
    async def main():
        answers = [(429, LIMITED, {"Retry-After": "0.2"}), (429, LIMITED, {}), (201, FILLED, {})]
        async with scripted(answers) as (gw, script):
            result = await gw.place_order(order(100001, "s-1"))
            return result, script.calls

    result, calls = asyncio.run(main())
    assert result.status is OrderStatus.FILLED
    assert len(calls) == 3
    assert len({body for _, _, body, _ in calls}) == 1  # the very same order each time
    assert calls[1][3] - calls[0][3] >= 0.2  # waited as told


def test_429_past_the_bound_raises_rate_limited_without_waiting_it_out():
    async def main():
        policy = RetryPolicy(base_delay=0.001, max_delay=0.01, rate_limit_max_wait=0.5)
        async with scripted([(429, LIMITED, {"Retry-After": "30"})], retry=policy) as (gw, script):
            started = time.monotonic()
            with pytest.raises(GatewayError) as caught:
                await gw.place_order(order(100001, "s-1"))
            return caught.value, time.monotonic() - started, script.calls

    error, elapsed, calls = asyncio.run(main())
    assert error.reason is GatewayReason.RATE_LIMITED
    assert error.http_status == 429
    assert elapsed < 5
    assert len(calls) == 1


def test_429_without_retry_after_backs_off_until_the_bound():
    async def main():
        policy = RetryPolicy(base_delay=0.01, max_delay=0.05, rate_limit_max_wait=0.3)
        async with scripted([(429, LIMITED, {})], retry=policy) as (gw, script):
            with pytest.raises(GatewayError) as caught:
                await gw.list_symbols()
            return caught.value, script.calls

    error, calls = asyncio.run(main())
    assert error.reason is GatewayReason.RATE_LIMITED
    assert 2 <= len(calls) <= 100
    waited = calls[-1][3] - calls[0][3]
    assert waited <= 0.3 + 0.2  # the bound, plus scheduling slack


def test_reads_are_retried_after_503_but_refusals_are_not():
    async def main():
        reads = [(503, {"error": "UNAVAILABLE"}, {}), (502, "bad gateway", {}), (200, [], {})]
        async with scripted(reads) as (gw, script):
            symbols = await gw.list_symbols()
            read_calls = len(script.calls)
        refusal = [(422, {"error": "INSUFFICIENT_MARGIN", "message": "no"}, {})]
        async with scripted(refusal) as (gw, script):
            result = await gw.place_order(order(100001, "s-1"))
            refusal_calls = len(script.calls)
        return symbols, read_calls, result, refusal_calls

    symbols, read_calls, result, refusal_calls = asyncio.run(main())
    assert (symbols, read_calls) == ([], 3)
    assert result.reason is GatewayReason.INSUFFICIENT_MARGIN
    assert refusal_calls == 1  # the same order would be refused the same way


def test_an_account_without_a_login_is_never_created_twice():
    async def main():
        answers = [(503, {"error": "UNAVAILABLE"}, {}), (201, {"login": 1, "balance": 5}, {})]
        async with scripted(answers, dedupes_client_order_ids=True) as (gw, script):
            with pytest.raises(GatewayError) as caught:
                await gw.create_account(balance=Decimal(5))
            return caught.value, len(script.calls)

    error, calls = asyncio.run(main())
    assert (error.reason, error.outcome_unknown, calls) == (GatewayReason.UNAVAILABLE, True, 1)


LOOKUP_POSITION = {
    "position_id": 9,
    "account": 100001,
    "symbol": "EURUSD",
    "side": "buy",
    "volume": 0.1,
    "open_price": 1.1001,
    "open_ts": 1763779200000.0,
    "sl": None,
    "tp": None,
    "profit": 0,
    "client_order_id": "s-1",
    "comment": None,
}


def test_lookup_before_retry_returns_the_order_found_without_resending():
    calls: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        calls.append(f"{request.method} {request.path}")
        if request.path == "/v1/orders":
            return web.json_response({"error": "UNAVAILABLE", "message": "after"}, status=503)
        if request.path == "/v1/accounts/100001/positions":
            return web.json_response([LOOKUP_POSITION])
        return web.json_response([])

    async def main():
        async with (
            serving(handle) as url,
            RestWsGateway(url, "k", dedupes_client_order_ids=False, retry=FAST_RETRY) as gw,
        ):
            return await gw.place_order(order(100001, "s-1"))

    result = asyncio.run(main())
    assert result.status is OrderStatus.FILLED
    assert (result.position_id, result.replayed) == ("9", True)
    assert calls.count("POST /v1/orders") == 1
    assert "GET /v1/accounts/100001/positions" in calls
