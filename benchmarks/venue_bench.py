"""Benchmark of the paper venue over loopback.

Prints single-order round trips (p50/p99) through ``POST /v1/orders``, orders/s
through ``POST /v1/orders`` with many requests in flight and through
``POST /v1/orders/batch``, and stream events/s delivered to a client (live while
orders pour in, and a replay from ``from_seq``).

    python benchmarks/venue_bench.py                   # starts its own venue
    python benchmarks/venue_bench.py --url http://127.0.0.1:8700 --api-key paper-dev-key

Targets on the 2-core reference machine: 5,000+ orders/s through /batch, p50
single-order round trip under 2 ms. Client and venue share the machine, so the
figures are what one core of each gives.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_ids = itertools.count(1)


def order_body(login: int) -> dict[str, Any]:
    return {
        "account": login,
        "symbol": "EURUSD",
        "side": "buy" if next(_ids) % 2 else "sell",
        "type": "market",
        "volume": "0.01",
        "client_order_id": f"bench-{time.monotonic_ns()}-{next(_ids)}",
    }


async def create_accounts(session: aiohttp.ClientSession, url: str, count: int) -> list[int]:
    logins = []
    for _ in range(count):
        body = {"balance": 1_000_000_000, "currency": "USD", "leverage": 100, "mode": "DEMO"}
        async with session.post(f"{url}/v1/accounts", json=body) as response:
            assert response.status == 201, await response.text()
            logins.append((await response.json())["login"])
    return logins


async def single_round_trips(
    session: aiohttp.ClientSession, url: str, logins: list[int], count: int
) -> dict[str, float]:
    timings = []
    for i in range(count + 200):
        body = json.dumps(order_body(logins[i % len(logins)]))
        started = time.perf_counter()
        async with session.post(f"{url}/v1/orders", data=body) as response:
            await response.read()
            assert response.status == 201
        if i >= 200:  # the first ones warm up the connection and the caches
            timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    return {
        "p50_ms": statistics.median(timings),
        "p99_ms": timings[int(len(timings) * 0.99) - 1],
        "mean_ms": statistics.fmean(timings),
    }


async def concurrent_orders(
    session: aiohttp.ClientSession, url: str, logins: list[int], total: int, in_flight: int
) -> float:
    bodies = [json.dumps(order_body(logins[i % len(logins)])) for i in range(total)]
    queue = iter(bodies)

    async def worker() -> None:
        for body in queue:
            async with session.post(f"{url}/v1/orders", data=body) as response:
                await response.read()
                assert response.status == 201

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return total / (time.perf_counter() - started)


async def batch_orders(
    session: aiohttp.ClientSession, url: str, logins: list[int], batches: int, size: int
) -> float:
    payloads = [
        json.dumps({"orders": [order_body(logins[i % len(logins)]) for i in range(size)]})
        for _ in range(batches)
    ]
    queue = iter(payloads)

    async def worker() -> None:
        for payload in queue:
            async with session.post(f"{url}/v1/orders/batch", data=payload) as response:
                results = (await response.json())["results"]
                assert all("error" not in r for r in results), results[:3]

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(2)))
    return batches * size / (time.perf_counter() - started)


async def stream_live(
    session: aiohttp.ClientSession, url: str, logins: list[int], batches: int
) -> tuple[float, int]:
    """Events/s a client following every account receives while batches of orders run."""
    async with session.get(f"{url}/v1/info") as response:
        start_seq = (await response.json())["seq"]
    ws_url = url.replace("http", "ws", 1) + "/v1/stream?all=1"
    async with session.ws_connect(ws_url) as ws:
        sender = asyncio.create_task(batch_orders(session, url, logins, batches, 1000))
        received = 0
        first_at = None
        last_seq = start_seq
        expected_last = None
        while True:
            message = await asyncio.wait_for(ws.receive(), 30)
            if message.type != aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"stream ended: {message}")
            event = json.loads(message.data)
            if event["type"] == "heartbeat":
                continue
            if first_at is None:
                first_at = time.perf_counter()
            assert event["seq"] == last_seq + 1, (event["seq"], last_seq)  # no gap, no repeat
            last_seq = event["seq"]
            received += 1
            if sender.done() and expected_last is None:
                async with session.get(f"{url}/v1/info") as response:
                    expected_last = (await response.json())["seq"]
            if expected_last is not None and last_seq >= expected_last:
                break
        await sender
        return received / (time.perf_counter() - first_at), received


async def stream_replay(session: aiohttp.ClientSession, url: str) -> tuple[float, int]:
    """Events/s of a replay of everything retained (``from_seq=0`` or the oldest kept)."""
    async with session.get(f"{url}/v1/info") as response:
        current = (await response.json())["seq"]
    from_seq = max(0, current - 100_000)
    ws_url = url.replace("http", "ws", 1) + f"/v1/stream?all=1&from_seq={from_seq}"
    started = time.perf_counter()
    received = 0
    async with session.ws_connect(ws_url) as ws:
        while received < current - from_seq:
            message = await asyncio.wait_for(ws.receive(), 30)
            if json.loads(message.data)["type"] != "heartbeat":
                received += 1
    return received / (time.perf_counter() - started), received


async def run(url: str, api_key: str, args: argparse.Namespace) -> None:
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=max(64, args.in_flight))
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
        logins = await create_accounts(session, url, args.accounts)
        single = await single_round_trips(session, url, logins, args.single)
        print(
            f"single order round trip ({args.single} sequential): p50 {single['p50_ms']:.3f} ms, "
            f"p99 {single['p99_ms']:.3f} ms, mean {single['mean_ms']:.3f} ms"
        )
        rate = await concurrent_orders(session, url, logins, args.concurrent, args.in_flight)
        print(
            f"POST /v1/orders, {args.in_flight} in flight ({args.concurrent}): {rate:,.0f} orders/s"
        )
        rate = await batch_orders(session, url, logins, args.batches, 1000)
        print(
            f"POST /v1/orders/batch, 1000 per batch ({args.batches} batches): {rate:,.0f} orders/s"
        )
        rate, count = await stream_live(session, url, logins, args.stream_batches)
        print(f"stream, all=1, live during batches: {rate:,.0f} events/s ({count} events, no gap)")
        rate, count = await stream_replay(session, url)
        print(f"stream, all=1, replay from from_seq: {rate:,.0f} events/s ({count} events)")
        async with session.get(f"{url}/v1/admin/stats") as response:
            print(f"venue stats: {await response.json()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running venue; default: start one")
    parser.add_argument("--api-key", default="paper-dev-key")
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--single", type=int, default=3000)
    parser.add_argument("--concurrent", type=int, default=20_000)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--stream-batches", type=int, default=20)
    args = parser.parse_args()
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    if args.url:
        asyncio.run(run(args.url.rstrip("/"), args.api_key, args))
        return
    from brokers.paper.testing import running_venue

    with running_venue(api_key=args.api_key, ticks_ms=0) as venue:
        print(f"venue started at {venue.url} (feed off)")
        asyncio.run(run(venue.url, venue.api_key, args))


if __name__ == "__main__":
    main()
