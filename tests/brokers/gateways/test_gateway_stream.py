"""The gateway's event stream against the real venue: normalized events, resume, reset."""

from __future__ import annotations

from decimal import Decimal

import pytest

from brokers.gateways import GatewayError, GatewayReason
from brokers.gateways.rest_ws import RestWsGateway
from brokers.gateways.types import (
    AccountUpdate,
    ClosedPosition,
    OrderFill,
    OrderRequest,
    OrderType,
    PendingOrder,
    Position,
    Side,
    StreamEventType,
)
from tests.brokers.gateways.gateway_helpers import aware, floats_in, next_event, read_until

pytestmark = pytest.mark.e2e

TRADING = {
    StreamEventType.POSITION_OPENED,
    StreamEventType.POSITION_MODIFIED,
    StreamEventType.POSITION_CLOSED,
    StreamEventType.ORDER_PLACED,
    StreamEventType.ORDER_CANCELLED,
    StreamEventType.ORDER_FILLED,
}


def order(login: int, cid: str, volume: str = "0.10", **fields: object) -> OrderRequest:
    return OrderRequest(
        account=login,
        symbol="EURUSD",
        side=Side.BUY,
        volume=Decimal(volume),
        client_order_id=cid,
        **fields,  # type: ignore[arg-type]
    )


def opened_by(cid: str):
    return lambda e: (
        e.type is StreamEventType.POSITION_OPENED
        and isinstance(e.data, Position)
        and e.data.client_order_id == cid
    )


def test_trading_events_arrive_normalized_with_decimals(run, admin):
    async def scenario(gw: RestWsGateway):
        login = (await gw.create_account(balance=Decimal(100_000))).login
        async with gw.stream(accounts=[login], include_heartbeats=False) as stream:
            first = await gw.place_order(order(login, "e-1", sl=Decimal("1.09")))
            pid = first.position_id
            await gw.modify_position(account=login, position_id=pid, tp=Decimal("1.2"))
            await gw.close_position(
                account=login,
                position_id=first.position_id,
                client_order_id="e-close",
                volume=Decimal("0.04"),
            )
            limit = await gw.place_order(
                order(login, "e-lim", type=OrderType.LIMIT, price=Decimal("1.09500"))
            )
            admin.price("EURUSD", 1.09480, 1.09490)  # the limit fills; the SL (1.09) holds
            # The venue opens the position, then reports the order filled.
            events = await read_until(
                stream, lambda e: e.type is StreamEventType.ORDER_FILLED, timeout=5
            )
        return login, first, limit, events

    login, first, limit, events = run(scenario)
    trading = [e for e in events if e.type in TRADING]
    assert [e.type for e in trading] == [
        StreamEventType.POSITION_OPENED,
        StreamEventType.POSITION_MODIFIED,
        StreamEventType.POSITION_CLOSED,
        StreamEventType.ORDER_PLACED,
        StreamEventType.POSITION_OPENED,
        StreamEventType.ORDER_FILLED,
    ]
    opened_event, modified, closed, placed, limit_opened, filled = trading
    assert all(e.account == login and aware(e.ts) for e in trading)
    assert [e.seq for e in events] == sorted({e.seq for e in events})
    assert isinstance(opened_event.data, Position)
    assert opened_event.data.position_id == first.position_id
    assert opened_event.data.sl == Decimal("1.09")
    assert modified.data.tp == Decimal("1.2")
    assert isinstance(closed.data, ClosedPosition)
    assert (closed.data.closed_volume, closed.data.remaining_volume) == (
        Decimal("0.04"),
        Decimal("0.06"),
    )
    assert closed.data.partial
    assert isinstance(placed.data, PendingOrder)
    assert placed.data.order_id == limit.order_id
    assert isinstance(filled.data, OrderFill)
    assert filled.data.price == Decimal("1.095")
    assert filled.data.position_id == limit_opened.data.position_id
    assert limit_opened.data.client_order_id == "e-lim"
    assert floats_in([e.data for e in events]) == []
    updates = [e.data for e in events if e.type is StreamEventType.ACCOUNT_UPDATED]
    assert all(isinstance(u, AccountUpdate) for u in updates)
    assert opened_event.raw["data"]["client_order_id"] == "e-1"


def test_resume_from_a_seq_yields_exactly_the_missed_events(run):
    """A stream that drops and resumes from its last seq sees what an unbroken one saw."""

    async def scenario(gw: RestWsGateway):
        login = (await gw.create_account(balance=Decimal(100_000))).login
        other = (await gw.create_account(balance=Decimal(100_000))).login
        control_stream = gw.stream(accounts=[login], from_seq=0, include_heartbeats=False)
        async with control_stream as control:
            async with gw.stream(accounts=[login], include_heartbeats=False) as first:
                await gw.place_order(order(login, "r-1"))
                before = await read_until(first, opened_by("r-1"))
            last_seq = before[-1].seq
            # While the resuming client is away: its account trades, and so does another.
            r2 = await gw.place_order(order(login, "r-2"))
            await gw.place_order(order(other, "x-1"))
            await gw.modify_position(account=login, position_id=r2.position_id, sl=Decimal("1.0"))
            await gw.close_position(
                account=login, position_id=r2.position_id, client_order_id="r-2-close"
            )
            await gw.place_order(order(login, "r-3"))
            resumed_stream = gw.stream(
                accounts=[login], from_seq=last_seq, include_heartbeats=False
            )
            async with resumed_stream as resumed:
                await gw.place_order(order(login, "r-live"))  # a live one after the replay
                got = await read_until(resumed, opened_by("r-live"))
            seen = await read_until(control, opened_by("r-live"))
        return login, last_seq, got, seen

    login, last_seq, got, seen = run(scenario)
    expected = [e for e in seen if e.seq > last_seq]
    assert [e.seq for e in got] == [e.seq for e in expected]
    assert [e.raw for e in got] == [e.raw for e in expected]
    assert all(e.account == login for e in got)
    trading = [
        (e.type, getattr(e.data, "client_order_id", None))
        for e in got
        if e.type is not StreamEventType.ACCOUNT_UPDATED
    ]
    assert trading == [
        (StreamEventType.POSITION_OPENED, "r-2"),
        (StreamEventType.POSITION_MODIFIED, "r-2"),
        (StreamEventType.POSITION_CLOSED, None),
        (StreamEventType.POSITION_OPENED, "r-3"),
        (StreamEventType.POSITION_OPENED, "r-live"),
    ]
    assert got[2].data.position.client_order_id == "r-2"


def test_a_venue_reset_is_surfaced_and_a_stale_seq_gets_a_reset_event(run, admin):
    async def scenario(gw: RestWsGateway):
        login = (await gw.create_account(balance=Decimal(100_000))).login
        async with gw.stream(include_heartbeats=False) as live:
            await gw.place_order(order(login, "z-1"))
            last_seq = (await read_until(live, opened_by("z-1")))[-1].seq
            admin.reset()  # the venue forgets everything and drops its streams
            with pytest.raises(GatewayError) as dropped:
                await read_until(live, lambda e: False, timeout=5)
        async with gw.stream(from_seq=last_seq) as resumed:
            first = await next_event(resumed)
        return dropped.value, last_seq, first, admin.seq()

    dropped, last_seq, first, venue_seq = run(scenario)
    assert dropped.reason is GatewayReason.UNAVAILABLE
    assert dropped.retryable is True
    assert first.type is StreamEventType.RESET
    assert first.is_control
    assert first.seq == venue_seq < last_seq
    assert first.data is None


def test_a_stream_following_every_account_sees_all_of_them(run):
    async def scenario(gw: RestWsGateway):
        a = (await gw.create_account(balance=Decimal(100_000))).login
        b = (await gw.create_account(balance=Decimal(100_000))).login
        async with gw.stream(accounts=None, include_heartbeats=False) as every:
            await gw.place_order(order(a, "all-a"))
            await gw.place_order(order(b, "all-b"))
            events = await read_until(every, opened_by("all-b"))
        return a, b, events

    a, b, events = run(scenario)
    opened_accounts = [e.account for e in events if e.type is StreamEventType.POSITION_OPENED]
    assert opened_accounts == [a, b]


def test_dropped_streams_raise_retryable_unavailable(run, admin):
    async def scenario(gw: RestWsGateway):
        login = (await gw.create_account(balance=Decimal(100_000))).login
        async with gw.stream(accounts=[login], include_heartbeats=False) as stream:
            await gw.place_order(order(login, "d-1"))
            await read_until(stream, opened_by("d-1"))
            admin.faults(drop_streams=True)
            with pytest.raises(GatewayError) as caught:
                await read_until(stream, lambda e: False, timeout=5)
        return caught.value

    error = run(scenario)
    assert error.reason is GatewayReason.UNAVAILABLE
    assert error.retryable is True


def test_stream_refusals_map_to_reasons(venue, run):
    import asyncio

    async def refused(key: str, accounts: list[int]):
        async with RestWsGateway(venue.url, key, dedupes_client_order_ids=True) as gw:
            with pytest.raises(GatewayError) as caught:
                async with gw.stream(accounts=accounts) as stream:
                    await next_event(stream)
            return caught.value

    bad_key = asyncio.run(refused("wrong-key", [100001]))
    assert bad_key.reason is GatewayReason.UNAUTHORIZED
    assert "wrong-key" not in str(bad_key)
    assert bad_key.__cause__ is None  # the handshake error holds the token in its URL
    unknown = asyncio.run(refused(venue.api_key, [999_999_999]))
    assert unknown.reason is GatewayReason.ACCOUNT_NOT_FOUND


def test_heartbeats_are_yielded_by_default_with_the_last_seq(run):
    async def scenario(gw: RestWsGateway):
        login = (await gw.create_account(balance=Decimal(100_000))).login
        await gw.place_order(order(login, "h-1"))
        async with gw.stream(accounts=[login], from_seq=0) as stream:
            # The venue beats every 5 s.
            events = await read_until(
                stream, lambda e: e.type is StreamEventType.HEARTBEAT, timeout=8
            )
        return events

    events = run(scenario)
    beat = events[-1]
    trading = [e for e in events if not e.is_control]
    assert beat.seq == trading[-1].seq
    assert beat.account is None


def test_a_stream_outlives_the_rest_timeout():
    """The session's total timeout bounds REST calls, never a long-lived stream.

    A stand-in stream server (same protocol) speaks only after 1 s, well past the
    0.2 s REST timeout of the gateway reading it.
    """
    import asyncio

    from aiohttp import web

    async def stream(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await asyncio.sleep(1.0)
        await ws.send_json({"seq": 1, "type": "heartbeat", "account": None, "ts": 1.0})
        await ws.send_json({"seq": 2, "type": "margin_call", "account": 7, "ts": 2.0})
        await ws.close()
        return ws

    async def main():
        app = web.Application()
        app.router.add_get("/v1/stream", stream)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            async with RestWsGateway(
                f"http://127.0.0.1:{port}", "k", dedupes_client_order_ids=True, timeout=0.2
            ) as gw:
                async with gw.stream(accounts=[7]) as events:
                    got = [await next_event(events), await next_event(events)]
                    with pytest.raises(GatewayError) as closed:
                        await next_event(events)
                return got, closed.value
        finally:
            await runner.cleanup()

    (beat, novel), closed = asyncio.run(main())
    assert beat.type is StreamEventType.HEARTBEAT
    assert novel.type is StreamEventType.UNKNOWN
    assert novel.raw["type"] == "margin_call"
    assert closed.reason is GatewayReason.UNAVAILABLE


def test_a_cancelled_bare_async_for_still_closes_its_socket(run, admin):
    """Listeners read in a task and cancel it; the venue must see the stream go away."""
    import asyncio
    import time

    async def scenario(gw: RestWsGateway):
        login = (await gw.create_account(balance=Decimal(100_000))).login
        connected = asyncio.Event()

        async def reader():
            async for _event in gw.stream(accounts=[login], from_seq=0):
                connected.set()

        task = asyncio.create_task(reader())
        await asyncio.wait_for(connected.wait(), 5)
        assert admin.stats()["streams"] == 1
        task.cancel()
        deadline = time.monotonic() + 5
        while admin.stats()["streams"] and time.monotonic() < deadline:
            await asyncio.sleep(0.02)  # polling the condition, bounded by the deadline
        return admin.stats()["streams"]

    assert run(scenario) == 0
