"""Stream-to-stored latency: venue `ts` of a master event -> its MasterEvent committed.

Runs the real listener (ShardListener, in this process) against a real paper venue
and PostgreSQL, on a database of its own (copytrade_bench, recreated each run), and
prints p50/p99/max over a burst of master events (one batch of N orders) and over a
steady trickle of single orders.

    .venv/bin/python benchmarks/listener_bench.py [--events 1000]
"""

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
os.environ["DATABASE_URL"] = "postgres://postgres@127.0.0.1:5432/copytrade_bench"
os.environ["REDIS_URL"] = "redis://127.0.0.1:6379/8"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> None:
    if sys.argv[1:2] == ["--listen"]:
        listen(int(sys.argv[2]), int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--trickle", type=int, default=200)
    args = parser.parse_args()

    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS copytrade_bench WITH (FORCE)")
        c.execute("CREATE DATABASE copytrade_bench")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from brokers.paper.testing import running_venue
    from brokers.services import broker_server_create
    from config.redis import get_redis
    from copytrading.services.listening import listener_shards_ensure
    from tests.factories import make_account, make_master

    get_redis().flushdb()
    with running_venue(ticks_ms=0) as venue:
        api = venue.client()
        server = broker_server_create(
            name="bench",
            platform="Paper",
            base_url=venue.url,
            credentials={"api_key": venue.api_key},
        )
        status, account = api.post(
            "/v1/accounts", {"balance": 10**9, "currency": "USD", "leverage": 500, "mode": "DEMO"}
        )
        login = account["login"]
        make_master(account=make_account(server=server, login=login))
        (shard,) = listener_shards_ensure()

        # The listener runs in its own process, as in production, and reports the latency
        # of every stored event through Redis.
        redis = get_redis()
        child = subprocess.Popen(  # noqa: S603
            [sys.executable, __file__, "--listen", str(shard.id), str(login)]
        )
        target = {"n": 0}
        latencies: list[float] = []

        class Stored:
            def clear(self) -> None:
                redis.delete("bench:latency")
                latencies.clear()

            def wait(self, timeout: float) -> bool:
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    if redis.llen("bench:latency") >= target["n"]:
                        latencies[:] = [float(x) for x in redis.lrange("bench:latency", 0, -1)]
                        return True
                    time.sleep(0.01)
                return False

        stored = Stored()
        deadline = time.monotonic() + 15
        while not redis.get("bench:ready") and time.monotonic() < deadline:
            time.sleep(0.01)

        def single(prefix: str, i: int, client=api) -> None:  # type: ignore[no-untyped-def]
            client.post(
                "/v1/orders",
                {
                    "account": login,
                    "symbol": "EURUSD",
                    "side": "buy",
                    "type": "market",
                    "volume": 0.01,
                    "client_order_id": f"{prefix}-{i}",
                },
            )

        # Warm-up: the first batch pays for connections (database, Celery producer).
        target["n"] = 5
        for i in range(5):
            single("warmup", i)
        stored.wait(30)
        latencies.clear()
        stored.clear()

        def report(name: str, values: list[float]) -> None:
            print(
                f"{name}: n={len(values)} p50={statistics.median(values):.2f} ms "
                f"p99={percentile(values, 99):.2f} ms max={max(values):.2f} ms"
            )

        # Burst: one batch call opens N positions at once.
        target["n"] = args.events
        orders = [
            {
                "account": login,
                "symbol": "EURUSD",
                "side": "buy",
                "type": "market",
                "volume": 0.01,
                "client_order_id": f"burst-{i}",
            }
            for i in range(args.events)
        ]
        api.post("/v1/orders/batch", {"orders": orders})
        if not stored.wait(60):
            sys.exit(f"only {len(latencies)} of {args.events} events stored")
        report(f"burst of {args.events} events", latencies)

        # Concurrent: N single orders from 20 clients at once, as many masters trading.
        latencies.clear()
        stored.clear()
        target["n"] = args.events
        per_client = args.events // 20

        def client_run(c: int) -> None:
            client = venue.client()
            for i in range(per_client):
                single(f"conc-{c}", i, client)

        started = time.perf_counter()
        threads = [threading.Thread(target=client_run, args=(c,)) for c in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        if not stored.wait(60):
            sys.exit(f"only {len(latencies)} of {args.events} concurrent events stored")
        report(
            f"{args.events} single orders from 20 clients ({args.events / elapsed:.0f}/s)",
            latencies,
        )

        # Trickle: single orders one after another.
        latencies.clear()
        stored.clear()
        target["n"] = args.trickle
        for i in range(args.trickle):
            single("trickle", i)
            time.sleep(0.005)
        if not stored.wait(60):
            sys.exit(f"only {len(latencies)} of {args.trickle} trickle events stored")
        report(f"trickle of {args.trickle} single orders", latencies)
        child.terminate()
        child.wait(10)


def listen(shard_id: int, login: int) -> None:
    """The child process: runs the listener, pushes each stored event's latency to Redis."""
    import asyncio

    import django

    django.setup()
    from config.redis import get_redis
    from copytrading.listeners import ShardListener

    redis = get_redis()

    def on_batch(events, committed_ms):  # type: ignore[no-untyped-def]
        values = [
            committed_ms - e.ts.timestamp() * 1000
            for e in events
            if e.account == login and e.type.value == "position_opened"
        ]
        if values:
            redis.rpush("bench:latency", *values)

    listener = ShardListener(shard_id, on_batch=on_batch)

    async def run() -> None:
        task = asyncio.create_task(listener.run())
        while not listener.accounts:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # the stream connects (not a measurement)
        redis.set("bench:ready", "1")
        await task

    asyncio.run(run())


if __name__ == "__main__":
    main()
