"""Live push throughput: positions_push of a burst of trade links over channels_redis.

A burst of N fills (default 1,000: one master trade copied to 1,000 follower accounts) is
N follower-group sends, N master-group sends and one batched staff send. Compared:

  per-send   async_to_sync(layer.group_send) once per message (one event loop, and so one
             fresh Redis connection, per send)
  one-loop   positions_push: every send on one event loop, SEND_CONCURRENCY in flight

each with empty groups (nobody watching) and with one listener in every group (every
send delivers). Runs on a database of its own (copytrade_livebench, recreated each run)
and Redis db 8 under a private key prefix, removed at the end.

    .venv/bin/python benchmarks/live_push_bench.py [--links 1000] [--repeat 3]
"""

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
os.environ["DATABASE_URL"] = "postgres://postgres@127.0.0.1:5432/copytrade_livebench"
os.environ["REDIS_URL"] = "redis://127.0.0.1:6379/8"

PREFIX = f"livebench-{uuid.uuid4().hex[:8]}"


def build(n: int) -> list[int]:
    """One master account copied by n follower accounts (10 customers), one open link each."""
    from decimal import Decimal

    from django.utils import timezone

    from accounts.models import TradingAccount
    from brokers.services import broker_server_create
    from copytrading.models import CopyFollower, CopySubscription, TradeLink
    from tests.factories import make_account, make_customer, make_master

    server = broker_server_create(name="bench", platform="Paper", base_url="http://127.0.0.1:1")
    master = make_master(account=make_account(server=server, login=1))
    customers = [make_customer() for _ in range(10)]
    accounts = TradingAccount.objects.bulk_create(
        TradingAccount(
            login=1000 + i, broker_server=server, customer=customers[i % 10], mode="DEMO"
        )
        for i in range(n)
    )
    followers = CopyFollower.objects.bulk_create(CopyFollower(account=a) for a in accounts)
    subs = CopySubscription.objects.bulk_create(
        CopySubscription(
            follower=f, master=master, follower_account=f.account, master_account=master.account
        )
        for f in followers
    )
    now = timezone.now()
    links = TradeLink.objects.bulk_create(
        TradeLink(
            subscription=s,
            master_account=master.account,
            follower_account=s.follower_account,
            master_position_id="P1",
            follower_position_id=f"F{s.id}",
            symbol="EURUSD",
            follower_symbol="EURUSD",
            side="buy",
            master_volume=Decimal("1"),
            follower_volume=Decimal("0.5"),
            open_price=Decimal("1.08512"),
            status="open",
            opened_at=now,
            profit=Decimal("12.34"),
        )
        for s in subs
    )
    return [link.id for link in links]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--links", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS copytrade_livebench WITH (FORCE)")
        c.execute("CREATE DATABASE copytrade_livebench")
    import django

    django.setup()
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer
    from django.conf import settings
    from django.core.management import call_command

    settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = PREFIX
    call_command("migrate", verbosity=0)

    from copytrading.models import TradeLink
    from copytrading.services import live

    link_ids = build(args.links)
    layer = get_channel_layer()
    sends_per_push = 2 * args.links + -(-args.links // live.STAFF_BATCH_SIZE)

    def per_send() -> None:
        links = TradeLink.objects.filter(id__in=link_ids).select_related(
            "master_account", "follower_account"
        )
        for group, message in live._messages(links):
            async_to_sync(layer.group_send)(group, message)

    def one_loop() -> None:
        assert live.positions_push(link_ids=link_ids) == args.links

    import redis

    r = redis.Redis.from_url(os.environ["REDIS_URL"])

    def drain() -> None:
        # The listeners never read: empty their queues between runs, as a reading
        # consumer would, so no run finds a channel over capacity.
        keys = list(r.scan_iter(match=f"{PREFIX}bench.listener.*", count=1000))
        if keys:
            r.delete(*keys)

    def timed(fn) -> float:  # type: ignore[no-untyped-def]
        runs = []
        for _ in range(args.repeat):
            drain()
            started = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - started)
        return statistics.median(runs)

    def report(name: str, seconds: float) -> None:
        print(
            f"  {name:<22} {seconds * 1000:8.1f} ms  {sends_per_push / seconds:9.0f} group sends/s"
            f"  {args.links / seconds:8.0f} links/s"
        )

    one_loop()  # warm-up: connections, query plans
    try:
        for watched in (False, True):
            if watched:
                # One listener channel in every group the push reaches.
                for i, link in enumerate(
                    TradeLink.objects.filter(id__in=link_ids).only("follower_account_id")
                ):
                    async_to_sync(layer.group_add)(
                        live.follower_group(link.follower_account_id), f"bench.listener.{i}"
                    )
                async_to_sync(layer.group_add)(
                    live.master_group(link.master_account_id), "bench.listener.master"
                )
                async_to_sync(layer.group_add)(live.STAFF_GROUP, "bench.listener.staff")
            print(
                f"{args.links} links, {sends_per_push} group sends per push, "
                f"{'one listener in every group' if watched else 'nobody watching'}"
                f" (median of {args.repeat}):"
            )
            report("per-send async_to_sync", timed(per_send))
            for concurrency in (1, 4, 8, 16, 32, 64):
                live.SEND_CONCURRENCY = concurrency
                report(f"one-loop, {concurrency} in flight", timed(one_loop))
    finally:
        async_to_sync(layer.flush)()


if __name__ == "__main__":
    main()
