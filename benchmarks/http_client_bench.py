"""Which async HTTP client should the broker gateway use? Measured on its workload.

Compares aiohttp.ClientSession with httpx.AsyncClient on the two things the
gateway does most:

1. sequential single-order round trips (`POST /v1/orders`, one at a time over a
   kept-alive connection): p50 and p99 latency, what a follower's copy waits;
2. 200 orders in flight at once over a pooled client: orders per second, what a
   fan-out to many followers needs.

Target: the paper venue (`brokers.paper.testing.running_venue(ticks_ms=0)`) when
it can be imported, else a stand-in echo server answering an order in the
protocol's shape; `--url`/`--key` point it at a running venue instead; `--echo`
forces the stand-in. Either server runs in its own process, so the client being
measured does not share its event loop. Rounds alternate between the clients
(aiohttp, httpx, aiohttp, httpx...) so drift in the server hits both alike; the
median round is reported. httpx is needed only here (`pip install httpx`).

    .venv/bin/python benchmarks/http_client_bench.py [--rounds 3] [--sequential 1000]
        [--concurrent-orders 6000] [--concurrency 200] [--echo | --url URL --key KEY]

Figures on the development machine (2 vCPU shared with the server and with
other work, Python 3.12, aiohttp 3.14.5, httpx 0.28.1, default asyncio loop,
loopback; median of 3 rounds; "gateway" is RestWsGateway.place_order, i.e.
aiohttp plus request encoding, answer parsing and the retry machinery):

    target          client    p50 ms   p99 ms   orders/s (200 in flight)
    paper venue     aiohttp    0.314    0.518     8397
    paper venue     httpx      1.003    1.453      379
    paper venue     gateway    0.413    0.724     6314
    echo stand-in   aiohttp    0.275    0.413    10154
    echo stand-in   httpx      0.970    1.479      444
    echo stand-in   gateway    0.324    0.485     6313

Repeated runs move these by about 10% (the machine is shared), never the
order: aiohttp answers a sequential order about 3x faster than httpx and
carries about 20x its throughput with 200 orders in flight (httpx's pool
degrades with many concurrent connections), so the gateway uses aiohttp, which
the project already pins; httpx is not added to the requirements.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent

Poster = Callable[["Order"], Awaitable[int]]


@dataclass
class Target:
    url: str
    key: str
    kind: str


@dataclass
class RoundResult:
    client: str
    p50_ms: float
    p99_ms: float
    orders_per_s: float
    errors: int


# --- the stand-in server ----------------------------------------------------------------


def serve_echo(port: int) -> None:
    """A tiny protocol-shaped server: answers every order like the venue's 201 fill."""
    from aiohttp import web

    counter = itertools.count(1)

    async def order(request: web.Request) -> web.Response:
        body = await request.json()
        n = next(counter)
        answer = {
            "order_id": n,
            "client_order_id": body.get("client_order_id"),
            "account": body.get("account"),
            "symbol": body.get("symbol"),
            "side": body.get("side"),
            "type": "market",
            "status": "filled",
            "requested_volume": body.get("volume"),
            "filled_volume": body.get("volume"),
            "price": 1.10012,
            "position_id": n,
            "deal_id": n,
            "ts": time.time() * 1000,
        }
        return web.json_response(answer, status=201)

    async def account(request: web.Request) -> web.Response:
        return web.json_response({"login": 100001, "balance": 1e9}, status=201)

    app = web.Application()
    app.router.add_post("/v1/orders", order)
    app.router.add_post("/v1/accounts", account)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def echo_server() -> Iterator[Target]:
    port = _free_port()
    proc = subprocess.Popen(  # noqa: S603 - our own script
        [sys.executable, __file__, "--serve-echo", str(port)], cwd=ROOT
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("echo server did not start")
            time.sleep(0.05)
        yield Target(f"http://127.0.0.1:{port}", "bench-key", "echo stand-in")
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def paper_venue() -> Iterator[Target]:
    from brokers.paper.testing import running_venue

    with running_venue(ticks_ms=0) as venue:
        yield Target(venue.url, venue.api_key, "paper venue")


# --- the clients under test --------------------------------------------------------------


async def new_account(target: Target) -> int:
    """A fresh account with room for every order of a round (so rounds do not interact)."""
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {target.key}"}) as session,
        session.post(
            target.url + "/v1/accounts",
            json={"balance": 1_000_000_000, "currency": "USD", "leverage": 500, "mode": "DEMO"},
        ) as response,
    ):
        data = await response.json()
        if response.status >= 300:
            raise RuntimeError(f"cannot create an account: {response.status} {data}")
        return int(data["login"])


@dataclass(frozen=True)
class Order:
    """One order, both as the raw body the bare clients send and as a gateway request."""

    body: bytes
    cid: str
    login: int


def new_order(login: int) -> Order:
    cid = "bench-" + uuid.uuid4().hex
    body = json.dumps(
        {
            "account": login,
            "symbol": "EURUSD",
            "side": "buy",
            "type": "market",
            "volume": 0.01,
            "client_order_id": cid,
        }
    ).encode()
    return Order(body, cid, login)


@contextlib.asynccontextmanager
async def aiohttp_poster(target: Target, pool: int):
    connector = aiohttp.TCPConnector(limit=pool, limit_per_host=0, keepalive_timeout=30)
    async with aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=30),
        headers={"Authorization": f"Bearer {target.key}", "Content-Type": "application/json"},
    ) as session:
        url = target.url + "/v1/orders"

        async def post(order: Order) -> int:
            async with session.post(url, data=order.body) as response:
                await response.read()
                return response.status

        yield post


@contextlib.asynccontextmanager
async def httpx_poster(target: Target, pool: int):
    import httpx

    limits = httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
    async with httpx.AsyncClient(
        limits=limits,
        timeout=30,
        headers={"Authorization": f"Bearer {target.key}", "Content-Type": "application/json"},
    ) as client:
        url = target.url + "/v1/orders"

        async def post(order: Order) -> int:
            response = await client.post(url, content=order.body)
            return response.status_code

        yield post


@contextlib.asynccontextmanager
async def gateway_poster(target: Target, pool: int):
    """The project's RestWsGateway (aiohttp underneath): what the copy engine really pays."""
    from decimal import Decimal

    from brokers.gateways.rest_ws import RestWsGateway
    from brokers.gateways.types import OrderRequest, Side

    async with RestWsGateway(
        target.url, target.key, dedupes_client_order_ids=True, max_connections=pool
    ) as gateway:

        async def post(order: Order) -> int:
            result = await gateway.place_order(
                OrderRequest(
                    account=order.login,
                    symbol="EURUSD",
                    side=Side.BUY,
                    volume=Decimal("0.01"),
                    client_order_id=order.cid,
                )
            )
            return 201 if result.ok else 422

        yield post


CLIENTS = {"aiohttp": aiohttp_poster, "httpx": httpx_poster, "gateway": gateway_poster}


async def run_round(client: str, target: Target, args: argparse.Namespace) -> RoundResult:
    login = await new_account(target)
    errors = 0
    async with CLIENTS[client](target, args.concurrency) as post:
        for _ in range(50):  # warm the connection and the code paths
            await post(new_order(login))
        latencies: list[float] = []
        for _ in range(args.sequential):
            one = new_order(login)
            started = time.perf_counter()
            status = await post(one)
            latencies.append(time.perf_counter() - started)
            errors += status >= 300

        orders = [new_order(login) for _ in range(args.concurrent_orders)]
        queue = iter(orders)

        async def worker() -> int:
            failed = 0
            for one in queue:
                failed += (await post(one)) >= 300
            return failed

        started = time.perf_counter()
        failures = await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        elapsed = time.perf_counter() - started
        errors += sum(failures)
    latencies.sort()
    return RoundResult(
        client=client,
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        orders_per_s=args.concurrent_orders / elapsed,
        errors=errors,
    )


async def bench(target: Target, args: argparse.Namespace) -> dict[str, list[RoundResult]]:
    results: dict[str, list[RoundResult]] = {name: [] for name in args.clients}
    for round_no in range(args.rounds):
        turn = list(args.clients) if round_no % 2 == 0 else list(reversed(args.clients))
        for client in turn:
            result = await run_round(client, target, args)
            results[client].append(result)
            print(
                f"  round {round_no + 1} {client:8s} p50 {result.p50_ms:6.3f} ms  "
                f"p99 {result.p99_ms:6.3f} ms  {result.orders_per_s:8.0f} orders/s  "
                f"errors {result.errors}",
                flush=True,
            )
    return results


def report(target: Target, results: dict[str, list[RoundResult]], args: argparse.Namespace) -> None:
    print()
    print(
        f"target: {target.kind}; {args.sequential} sequential orders, "
        f"{args.concurrent_orders} orders at {args.concurrency} in flight; "
        f"median of {args.rounds} rounds"
    )
    print(f"{'client':10s} {'p50 ms':>8s} {'p99 ms':>8s} {'orders/s':>10s}")
    for client, rounds in results.items():
        print(
            f"{client:10s} {statistics.median(r.p50_ms for r in rounds):8.3f} "
            f"{statistics.median(r.p99_ms for r in rounds):8.3f} "
            f"{statistics.median(r.orders_per_s for r in rounds):10.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve-echo", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sequential", type=int, default=1000)
    parser.add_argument("--concurrent-orders", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument(
        "--clients",
        type=lambda text: [c for c in text.split(",") if c],
        default=list(CLIENTS),
        help=f"comma-separated subset of {','.join(CLIENTS)}",
    )
    parser.add_argument("--echo", action="store_true", help="use the stand-in echo server")
    parser.add_argument("--url", help="a running venue's base URL")
    parser.add_argument("--key", default=os.environ.get("PAPER_VENUE_KEY", "paper-dev-key"))
    args = parser.parse_args()
    # Run as a script, the project root is not on the path; the venue lives there.
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    if args.serve_echo:
        serve_echo(args.serve_echo)
        return
    if args.url:
        server: contextlib.AbstractContextManager[Target] = contextlib.nullcontext(
            Target(args.url.rstrip("/"), args.key, f"venue at {args.url}")
        )
    elif args.echo:
        server = echo_server()
    else:
        try:
            import brokers.paper.testing  # noqa: F401
        except ImportError:
            print("brokers.paper.testing not importable: using the echo stand-in")
            server = echo_server()
        else:
            server = paper_venue()
    with server as target:
        print(f"target: {target.kind} at {target.url}")
        results = asyncio.run(bench(target, args))
        report(target, results, args)


if __name__ == "__main__":
    main()
