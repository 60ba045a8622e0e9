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
    import asyncio

    from brokers.paper.testing import running_venue
    from brokers.services import broker_server_create
    from config.redis import get_redis
    from copytrading.listeners import ShardListener
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

        latencies: list[float] = []
        stored = threading.Event()
        target = {"n": 0}

        def on_batch(events, committed_ms):  # type: ignore[no-untyped-def]
            for e in events:
                if e.account == login and e.type.value == "position_opened":
                    latencies.append(committed_ms - e.ts.timestamp() * 1000)
            if len(latencies) >= target["n"]:
                stored.set()

        stop = threading.Event()
        listener = ShardListener(shard.id, stop=stop, on_batch=on_batch)
        thread = threading.Thread(target=lambda: asyncio.run(listener.run()), daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not listener.accounts and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.5)  # let the stream connect before the burst (not a measurement)

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

        # Trickle: single orders one after another.
        latencies.clear()
        stored.clear()
        target["n"] = args.trickle
        for i in range(args.trickle):
            api.post(
                "/v1/orders",
                {
                    "account": login,
                    "symbol": "EURUSD",
                    "side": "buy",
                    "type": "market",
                    "volume": 0.01,
                    "client_order_id": f"trickle-{i}",
                },
            )
            time.sleep(0.005)
        if not stored.wait(60):
            sys.exit(f"only {len(latencies)} of {args.trickle} trickle events stored")
        report(f"trickle of {args.trickle} single orders", latencies)
        stop.set()
        thread.join(10)


if __name__ == "__main__":
    main()
