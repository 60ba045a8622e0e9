"""copybench: the real copy pipeline, measured from venue timestamps.

Starts a paper venue and Celery workers (listener, fan-out, execution) as separate
processes on this machine's PostgreSQL and Redis, creates one master and N followers,
has the master open E positions, and prints per-follower latency (master fill ->
follower fill), the time to the last follower fill of each event, follower orders/s,
and the missing and duplicate follower orders counted at the venue (both must be 0).
"""

import json
import os
import statistics
import sys
import time
from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

BENCH_REDIS_DB = 7
BENCH_DATABASE = "copytrade_bench"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class Command(BaseCommand):
    help = "Runs the real copy pipeline on a paper venue and prints latency and throughput."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--followers", type=int, default=100)
        parser.add_argument("--events", type=int, default=20)
        parser.add_argument("--interval-ms", type=int, default=200, help="between master trades")
        parser.add_argument("--workers", type=int, default=2, help="execution worker processes")
        parser.add_argument(
            "--pool",
            default="solo",
            choices=["solo", "prefork", "threads"],
            help="pool of the fan-out and execute workers (one process each)",
        )
        parser.add_argument(
            "--limits",
            action="store_true",
            help="give every follower pre-trade limits that read lots, a quote, leverage "
            "and margin, loose enough never to fire (the checks' cost on the hot path)",
        )
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        if os.environ.get("COPYBENCH_CHILD") != "1":
            # Run with a Redis database of its own, so a running demo's queues, leases and
            # beat never mix with the benchmark's.
            from django.conf import settings

            base = settings.REDIS_URL.rsplit("/", 1)[0]
            database = settings.DATABASE_URL.rsplit("/", 1)[0] + "/" + BENCH_DATABASE
            env = {
                **os.environ,
                "COPYBENCH_CHILD": "1",
                "REDIS_URL": f"{base}/{BENCH_REDIS_DB}",
                "DATABASE_URL": database,
            }
            self.fresh_database(database)
            os.execvpe(sys.executable, [sys.executable, *sys.argv], env)  # noqa: S606
        self.run_bench(options)

    def fresh_database(self, url: str) -> None:
        """Recreates the benchmark's own database and migrates it, so no run sees another's."""
        import subprocess
        from urllib.parse import urlsplit

        import psycopg

        parts = urlsplit(url)
        admin = parts._replace(path="/postgres").geturl().replace("postgres://", "postgresql://", 1)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DATABASE}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{BENCH_DATABASE}"')
        subprocess.run(  # noqa: S603
            [sys.executable, "manage.py", "migrate", "-v", "0", "--skip-checks"],
            env={**os.environ, "DATABASE_URL": url},
            check=True,
        )

    def run_bench(self, options: dict[str, Any]) -> None:
        from contextlib import ExitStack

        from brokers.models import ListenerShard
        from brokers.paper.testing import running_venue
        from config.redis import get_redis
        from copytrading.models import CopyInstruction, MasterEvent
        from copytrading.services.demo import demo_seed, demo_server
        from copytrading.tasks import listen_shard

        from .bench_processes import start_worker, wait_until

        followers, events = options["followers"], options["events"]
        get_redis().flushdb()
        stack = ExitStack()
        with stack:
            venue = stack.enter_context(running_venue(ticks_ms=0))
            server = demo_server(url=venue.url, name=f"bench-{venue.port}", api_key=venue.api_key)
            seeded = demo_seed(masters=1, followers=followers, servers=[server])
            master_login = seeded.masters[0]
            # Followers copy 1:1 so that every follower trades every event.
            from copytrading.models import CopySubscription

            CopySubscription.objects.filter(master_account__login=master_login).update(
                volume_mode=0,
                risk_multiplier=Decimal("0.01"),
                symbols_mode=0,
                symbols="",
                max_volume=0,
                reverse_direction=False,
            )
            if options["limits"]:
                from risk.models import SubscriptionLimits

                SubscriptionLimits.objects.bulk_create(
                    SubscriptionLimits(
                        subscription=sub,
                        max_lots_per_symbol=Decimal(100),
                        max_lots_total=Decimal(100),
                        max_leverage=Decimal(1000),
                        margin_policy="cut",
                        max_slippage=Decimal(1),
                    )
                    for sub in CopySubscription.objects.filter(master_account__login=master_login)
                )
            shard, _ = ListenerShard.objects.get_or_create(broker_server=server)
            stack.enter_context(start_worker("listeners", 1))
            # One task at a time per worker: the solo pool runs it in the worker process
            # itself, without prefork's hand-over to a child (queue hop p50 3.4 -> 2.7 ms,
            # max 25 -> 3 ms).
            stack.enter_context(start_worker("fanout", 1, pool=options["pool"]))
            for _ in range(options["workers"]):
                stack.enter_context(start_worker("execute", 1, pool=options["pool"]))
            listen_shard.delay(shard.id)
            wait_until(
                lambda: ListenerShard.objects.filter(pk=shard.pk, connected=True).exists(), 30
            )
            api = venue.client()
            started = time.monotonic()
            for i in range(events):
                status, answer = api.post(
                    "/v1/orders",
                    {
                        "account": master_login,
                        "symbol": "EURUSD",
                        "side": "buy" if i % 2 == 0 else "sell",
                        "type": "market",
                        "volume": 1,
                        "client_order_id": f"bench-{venue.port}-{i}",
                    },
                )
                assert status == 201, answer
                time.sleep(options["interval_ms"] / 1000)
            event_ids = wait_until(
                lambda: (
                    ids
                    if len(
                        ids := list(
                            MasterEvent.objects.filter(account__login=master_login).values_list(
                                "id", flat=True
                            )
                        )
                    )
                    == events
                    else None
                ),
                60,
            )

            def finished() -> bool:
                return (
                    CopyInstruction.objects.filter(master_event_id__in=event_ids).count()
                    == events * followers
                    and not CopyInstruction.objects.filter(
                        master_event_id__in=event_ids, status__in=["ready", "in_flight", "waiting"]
                    ).exists()
                )

            wait_until(finished, 120 + events * followers / 200)
            elapsed = time.monotonic() - started
            report = self.measure(venue, event_ids, seeded.followers, elapsed)
        report.update(followers=followers, events=events)
        if options["json"]:
            self.stdout.write(json.dumps(report))
            return
        self.stdout.write(
            f"followers={followers} events={events}\n"
            f"per-follower latency, master fill -> follower fill: "
            f"p50={report['latency_ms']['p50']:.1f} ms p95={report['latency_ms']['p95']:.1f} ms "
            f"p99={report['latency_ms']['p99']:.1f} ms\n"
            f"last follower filled after: p50={report['last_fill_ms']['p50']:.1f} ms "
            f"p99={report['last_fill_ms']['p99']:.1f} ms "
            f"max={report['last_fill_ms']['max']:.1f} ms\n"
            f"follower orders: {report['orders']} in {report['busy_s']:.2f} s of copying "
            f"= {report['orders_per_s']:.0f}/s\n"
            f"missing={report['missing']} duplicates={report['duplicates']}"
        )

    def measure(
        self, venue: Any, event_ids: list[int], follower_logins: list[int], elapsed: float
    ) -> dict:
        from copytrading.models import FollowerOrder, MasterEvent

        master_ts = dict(MasterEvent.objects.filter(id__in=event_ids).values_list("id", "venue_ts"))
        fills = list(
            FollowerOrder.objects.filter(
                instruction__master_event_id__in=event_ids, filled_volume__gt=0
            ).values_list("instruction__master_event_id", "venue_ts")
        )
        latencies = [(ts - master_ts[e]).total_seconds() * 1000 for e, ts in fills]
        last: dict[int, float] = {}
        for e, ts in fills:
            ms = (ts - master_ts[e]).total_seconds() * 1000
            last[e] = max(last.get(e, 0.0), ms)
        first = min(master_ts.values())
        busy = max(ts for _e, ts in fills) - first if fills else None
        # Count at the venue: each follower must hold exactly one opening deal per event.
        expected = {f"ct{e}s" for e in event_ids}
        client = venue.client()
        per_coid: dict[str, int] = {}
        for login in follower_logins:
            _status, deals = client.get(f"/v1/accounts/{login}/deals")
            for deal in deals:
                if deal["entry"] == "in" and deal["client_order_id"]:
                    per_coid[deal["client_order_id"]] = per_coid.get(deal["client_order_id"], 0) + 1
        ours = {k: v for k, v in per_coid.items() if any(k.startswith(p) for p in expected)}
        total_expected = len(event_ids) * len(follower_logins)
        lasts = list(last.values()) or [0.0]
        return {
            "latency_ms": {
                "p50": percentile(latencies, 50) if latencies else 0,
                "p95": percentile(latencies, 95) if latencies else 0,
                "p99": percentile(latencies, 99) if latencies else 0,
            },
            "last_fill_ms": {
                "p50": statistics.median(lasts),
                "p99": percentile(lasts, 99),
                "max": max(lasts),
            },
            "orders": len(fills),
            "busy_s": busy.total_seconds() if busy else 0,
            "orders_per_s": len(fills) / busy.total_seconds() if busy else 0,
            "missing": total_expected - len(ours),
            "duplicates": sum(v - 1 for v in ours.values()),
            "wall_s": elapsed,
        }
