"""Load: masters trading at a steady rate while customers call the client API, on the real
processes (paper venue, listener, fan-out and execute workers, default worker, beat, ASGI).

Prints the copy latency (master fill -> follower fill, both venue timestamps) p50/p99, the
queue depths and the copy backlog sampled every few seconds, the errors, the memory (RSS) of
every process, and two verdicts: "queues bounded" (the backlog stopped growing while the
masters traded) and "lost/duplicated = 0" (the venue's order log against the database, the
faults suite's check). Runs on a database of its own (copytrade_load, recreated each run) and
Redis db 5.

    .venv/bin/python benchmarks/load.py                       # the issue's shape (2 min)
    .venv/bin/python benchmarks/load.py --followers 10 --rate 10 --seconds 60
    .venv/bin/python benchmarks/load.py --masters 1 --followers 5 --seconds 10 --json  # smoke

--followers is per master. The full shape offers 5 x 10 x 200 = 10,000 follower orders a
second: more than one 2-core machine copies (see the figures in README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from copytrading.management.commands.bench_processes import wait_until  # noqa: E402

# Its own database and Redis db (LOAD_DATABASE, LOAD_REDIS_URL override them: the suite's
# smoke run uses names of its checkout, so a CI clone on the same machine does not collide).
DATABASE = os.environ.get("LOAD_DATABASE", "copytrade_load")
REDIS_DB = 5
QUEUES = ("listeners", "fanout", "execute", "default")


def configure_environment() -> None:
    """Points this process (and every process it starts) at the load's own database and
    Redis db; DEBUG off (its query log would cost time and memory in every worker)."""
    base_db = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/copytrade")
    base_redis = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    os.environ.update(
        DJANGO_SETTINGS_MODULE="config.settings.local",
        DEBUG="false",
        SECRET_KEY=os.environ.get("SECRET_KEY", "load-test-secret-key-not-for-production"),
        CREDENTIALS_KEYS=os.environ.get(
            "CREDENTIALS_KEYS", "bG9hZC10ZXN0LW9ubHktY3JlZGVudGlhbHMta2V5LTM="
        ),
        DATABASE_URL=base_db.rsplit("/", 1)[0] + "/" + DATABASE,
        REDIS_URL=os.environ.get("LOAD_REDIS_URL", base_redis.rsplit("/", 1)[0] + f"/{REDIS_DB}"),
        CHANNELS_PREFIX=os.environ.get("LOAD_CHANNELS_PREFIX", "load"),
        # 20 clients from one address: the per-IP and per-customer limits would throttle
        # the load itself, not measure the server.
        API_RATE_PER_IP="1000000/min",
        API_RATE_PER_CUSTOMER="1000000/min",
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )


def fresh_database() -> None:
    """Recreates the load's database: a copy of LOAD_TEMPLATE when given (an already migrated
    database nobody is connected to, e.g. the test database: the suite's smoke run), else
    created empty and migrated."""
    import psycopg

    url = os.environ["DATABASE_URL"]
    admin = url.rsplit("/", 1)[0].replace("postgres://", "postgresql://", 1) + "/postgres"
    template = os.environ.get("LOAD_TEMPLATE")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        if template:
            try:
                conn.execute(f'CREATE DATABASE "{DATABASE}" TEMPLATE "{template}"')
                return
            except psycopg.Error as exc:  # someone is connected to it: migrate instead
                print(f"load: no copy of {template} ({exc}); migrating", file=sys.stderr)  # noqa: T201
        conn.execute(f'CREATE DATABASE "{DATABASE}"')
    subprocess.run(  # noqa: S603
        [sys.executable, "manage.py", "migrate", "-v", "0", "--skip-checks"], cwd=ROOT, check=True
    )


# -- processes ---------------------------------------------------------------------------


class Processes:
    """Every process of the run, by name, each in its own process group."""

    def __init__(self, stack: ExitStack, logdir: Path) -> None:
        self.logdir = logdir
        self.procs: dict[str, subprocess.Popen] = {}
        self.watched: dict[str, int] = {}  # started elsewhere (the venue): memory only
        stack.callback(self.stop_all)

    def start(self, name: str, args: list[str], **env: str) -> subprocess.Popen:
        with (self.logdir / f"{name}.log").open("w") as log:
            proc = subprocess.Popen(  # noqa: S603
                args,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **env},
            )
        self.procs[name] = proc
        return proc

    def stop_all(self, timeout: float = 15.0) -> None:
        """SIGTERM to every process group at once, SIGKILL to those still up after `timeout`."""
        for proc in self.procs.values():
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)

    def worker(self, name: str, queues: str, concurrency: int, pool: str = "prefork") -> None:
        self.start(
            name,
            [
                sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queues,
                "-c", str(concurrency), "-P", pool, "-n", f"load-{name}@%h",
                "--without-gossip", "--without-mingle", "-l", "WARNING",
            ],
        )  # fmt: skip

    def log(self, name: str) -> str:
        return (self.logdir / f"{name}.log").read_text(errors="replace")

    def rss_mb(self) -> dict[str, float]:
        """Resident memory of each process with its children (prefork pools), in MB."""
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        result = {}
        pids = {name: proc.pid for name, proc in self.procs.items()} | self.watched
        for name, root in pids.items():
            total, todo = 0, [root]
            while todo:
                pid = todo.pop()
                total += _rss_kb(pid)
                todo.extend(children.get(pid, []))
            result[name] = total / 1024
        return result


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the load ------------------------------------------------------------------------------


async def trader(
    session: Any, venue_url: str, login: int, rate: float, stop_at: float, stats: dict
) -> None:
    """One master: an order every 1/rate s on a fixed schedule (no drift), alternating an
    open with a close of its oldest position, so its book stays small."""
    open_ids: list[str] = []
    ids = itertools.count()
    start = time.monotonic()
    for k in itertools.count():
        at = start + k / rate
        if at >= stop_at:
            return
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        n = next(ids)
        try:
            if open_ids and k % 2 == 1:
                pid = open_ids.pop(0)
                body = {"account": login, "client_order_id": f"load-c-{login}-{n}"}
                url = f"{venue_url}/v1/positions/{pid}/close"
            else:
                body = {
                    "account": login,
                    "symbol": "EURUSD",
                    "side": "buy" if n % 4 < 2 else "sell",
                    "type": "market",
                    "volume": 1,
                    "client_order_id": f"load-o-{login}-{n}",
                }
                url = f"{venue_url}/v1/orders"
            async with session.post(url, json=body) as response:
                answer = await response.json()
                if response.status in (200, 201):
                    stats["master_orders"] += 1
                    if "position_id" in answer and url.endswith("/orders"):
                        open_ids.append(str(answer["position_id"]))
                else:
                    stats["master_errors"][f"{response.status} {answer.get('error')}"] += 1
        except Exception as exc:  # noqa: BLE001 - counted and reported
            stats["master_errors"][type(exc).__name__] += 1
        if time.monotonic() - at > 1.0:
            stats["trader_late"] += 1


async def api_client(
    session: Any, api_url: str, credentials: dict, stop_at: float, stats: dict
) -> None:
    """A customer's terminal: signs in, then reads its copy trading pages, twice a second."""
    async with session.post(
        f"{api_url}/auth/login",
        json={"username": credentials["username"], "password": credentials["password"]},
    ) as response:
        if response.status != 200:
            stats["api_errors"][f"login {response.status}"] += 1
            return
        token = (await response.json())["token"]
    headers = {"Authorization": f"Bearer {token}"}
    paths = ["/copytrade/my", "/copytrade/trade-links?limit=50", "/copytrade/masters"]
    for k in itertools.count():
        if time.monotonic() >= stop_at:
            return
        started = time.monotonic()
        try:
            async with session.get(f"{api_url}{paths[k % 3]}", headers=headers) as response:
                await response.read()
                if response.status == 200:
                    stats["api_ms"].append((time.monotonic() - started) * 1000)
                else:
                    stats["api_errors"][str(response.status)] += 1
        except Exception as exc:  # noqa: BLE001 - counted and reported
            stats["api_errors"][type(exc).__name__] += 1
        await asyncio.sleep(0.5)


def copy_backlog() -> dict[str, int]:
    from copytrading.models import CopyInstruction, MasterEvent

    return {
        "events_pending": MasterEvent.objects.exclude(fanout_state="done").count(),
        "instructions_open": CopyInstruction.objects.filter(
            status__in=["ready", "in_flight", "waiting"]
        ).count(),
    }


async def sampler(processes: Processes, stop: asyncio.Event, samples: list, every: float) -> None:
    from asgiref.sync import sync_to_async

    from config.redis import get_redis

    redis = get_redis()
    started = time.monotonic()
    while not stop.is_set():
        depths = {q: redis.llen(q) for q in QUEUES}
        backlog = await sync_to_async(copy_backlog)()
        samples.append(
            {
                "t": round(time.monotonic() - started, 1),
                "queues": depths,
                **backlog,
                "rss_mb": processes.rss_mb(),
            }
        )
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every)


async def drive(
    processes: Processes,
    venue: Any,
    api_url: str,
    masters: list[int],
    customers: list[dict],
    options: dict,
    samples: list,
) -> dict:
    from collections import Counter

    import aiohttp

    stats: dict[str, Any] = {
        "master_orders": 0,
        "master_errors": Counter(),
        "trader_late": 0,
        "api_ms": [],
        "api_errors": Counter(),
    }
    stop = asyncio.Event()
    sampling = asyncio.create_task(sampler(processes, stop, samples, options["sample_every"]))
    stop_at = time.monotonic() + options["seconds"]
    connector = aiohttp.TCPConnector(limit=200)
    async with (
        aiohttp.ClientSession(
            connector=connector, headers={"Authorization": f"Bearer {venue.api_key}"}
        ) as venue_session,
        aiohttp.ClientSession() as api_session,
    ):
        await asyncio.gather(
            *(
                trader(venue_session, venue.url, login, options["rate"], stop_at, stats)
                for login in masters
            ),
            *(api_client(api_session, api_url, c, stop_at, stats) for c in customers),
        )
    stats["trading_s"] = options["seconds"]
    # Drain: the copies still queued when the masters stop.
    from asgiref.sync import sync_to_async

    drain_started = time.monotonic()
    from config.redis import get_redis

    redis = get_redis()
    while time.monotonic() - drain_started < options["drain_seconds"]:
        backlog = await sync_to_async(copy_backlog)()
        queued = sum(redis.llen(q) for q in ("fanout", "execute"))
        if not any(backlog.values()) and queued == 0:
            break
        await asyncio.sleep(1)
    stats["drain_s"] = time.monotonic() - drain_started
    stop.set()
    await sampling
    return stats


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def latency_ms() -> dict[str, float]:
    """Master fill -> follower fill, from the two venue timestamps, over every copy."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            """
            SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY ms), count(*),
                min(o.venue_ts), max(o.venue_ts)
            FROM (
                SELECT EXTRACT(EPOCH FROM (o.venue_ts - e.venue_ts)) * 1000 AS ms, o.venue_ts
                FROM copytrading_followerorder AS o
                JOIN copytrading_copyinstruction AS i ON i.id = o.instruction_id
                JOIN copytrading_masterevent AS e ON e.id = i.master_event_id
                WHERE o.filled_volume > 0 AND o.venue_ts IS NOT NULL
            ) AS o
            """
        )
        quantiles, count, first, last = cur.fetchone()
    p50, p99 = quantiles or (0, 0)
    busy = (last - first).total_seconds() if first and last else 0.0
    return {
        "p50": float(p50 or 0),
        "p99": float(p99 or 0),
        "copies": count,
        "busy_s": busy,
        "orders_per_s": count / busy if busy else 0.0,
    }


def bounded(samples: list[dict], trading_s: float) -> tuple[bool, str]:
    """The copy backlog (open instructions and pending events, plus queued tasks) while the
    masters traded: bounded when the last third does not sit above the first two thirds'
    peak (a backlog that keeps up rises and falls; one that does not, climbs)."""
    during = [s for s in samples if s["t"] <= trading_s]
    if len(during) < 3:
        return True, "too few samples to judge"

    def size(s: dict) -> int:
        return s["instructions_open"] + s["events_pending"] + sum(s["queues"].values())

    cut = len(during) * 2 // 3
    early_peak = max(size(s) for s in during[:cut])
    late = [size(s) for s in during[cut:]]
    ok = max(late) <= 1.1 * early_peak + 100
    return ok, f"backlog peak {early_peak} in the first 2/3, {max(late)} in the last 1/3"


def lost_and_duplicated(venue: Any, masters: list[int]) -> dict[str, Any]:
    from accounts.models import TradingAccount
    from tests.faults.invariants import check_copies

    master_ids = list(TradingAccount.objects.filter(login__in=masters).values_list("id", flat=True))
    server_id = TradingAccount.objects.filter(login__in=masters).first().broker_server_id
    check = check_copies({server_id: venue.client()}, master_account_ids=master_ids)
    return {
        "summary": check.summary(),
        "kinds": dict(check.kinds),
        "problems": check.problems[:20],
        "ok": not check.problems,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--masters", type=int, default=5)
    parser.add_argument("--followers", type=int, default=200, help="per master")
    parser.add_argument("--rate", type=float, default=10.0, help="events/s per master")
    parser.add_argument("--seconds", type=float, default=120.0, help="how long masters trade")
    parser.add_argument("--clients", type=int, default=20, help="client API users")
    parser.add_argument("--execute-workers", type=int, default=2)
    parser.add_argument("--sample-every", type=float, default=5.0)
    parser.add_argument("--drain-seconds", type=float, default=600.0)
    parser.add_argument("--json", action="store_true", help="print one JSON report")
    options = vars(parser.parse_args())
    configure_environment()
    began = time.monotonic()
    fresh_database()
    import django

    django.setup()
    report = run(options)
    database_s = round(report.pop("_setup_at") - began, 1)
    report["phases_s"] = {"database": database_s, **report["phases_s"]}
    if options["json"]:
        print(json.dumps(report, default=str))  # noqa: T201
    else:
        print_report(report)  # noqa: T201
    sys.exit(0 if report["verdict"]["lost_duplicated_zero"] else 1)


def run(options: dict) -> dict:

    from brokers.models import ListenerShard
    from brokers.paper.testing import running_venue
    from config.redis import get_redis
    from copytrading.services.demo import demo_server
    from copytrading.tasks import listen_shard
    from tests.faults.harness import seed_copy_everything

    get_redis().flushdb()
    setup_at = time.monotonic()
    phases: dict[str, float] = {}
    mark = [setup_at]

    def phase(name: str) -> None:
        now = time.monotonic()
        phases[name] = round(now - mark[0], 1)
        mark[0] = now

    logdir = Path(tempfile.mkdtemp(prefix="ct-load-"))
    samples: list[dict] = []
    with ExitStack() as stack:
        venue = stack.enter_context(running_venue(ticks_ms=0, retain_events=1_000_000))
        server = demo_server(url=venue.url, name=f"load-{venue.port}", api_key=venue.api_key)
        followers = options["masters"] * options["followers"]
        seeded = seed_copy_everything(
            masters=options["masters"], followers=followers, servers=[server]
        )
        shard, _ = ListenerShard.objects.get_or_create(broker_server=server)
        phase("seed")
        processes = Processes(stack, logdir)
        processes.watched["venue"] = venue.process.pid
        processes.worker("listener", "listeners", 1)
        processes.worker("fanout", "fanout", 1, pool="solo")
        for i in range(options["execute_workers"]):
            processes.worker(f"execute-{i + 1}", "execute", 1, pool="solo")
        processes.worker("default", "default", 1, pool="solo")
        schedule = logdir / "beat-schedule"
        processes.start(
            "beat", [sys.executable, "-m", "celery", "-A", "config", "beat", "-s", str(schedule)]
        )
        port = free_port()
        processes.start(
            "asgi",
            [
                sys.executable, "-m", "uvicorn", "config.asgi:application", "--host",
                "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning",
            ],
            # Under load a kept connection per ASGI worker thread exhausts PostgreSQL's
            # max_connections ("too many clients"): the server closes each after its request.
            CONN_MAX_AGE="0",
        )  # fmt: skip
        # Started now rather than at the supervisor's first run (beat, 5 s after start).
        listen_shard.delay(shard.id)
        wait_until(lambda: ListenerShard.objects.filter(connected=True).exists(), 60)
        api_url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(api_url), 60)
        customers = [c for c in seeded.customers if c["accounts"][0] in set(seeded.followers)][
            : options["clients"]
        ]
        phase("start")
        started = time.monotonic()
        stats = asyncio.run(
            drive(processes, venue, api_url, seeded.masters, customers, options, samples)
        )
        wall = time.monotonic() - started
        phase("drive")
        venue_stats = venue.client().get("/v1/admin/stats")[1]
        errors_in_logs = {
            name: sum(
                1
                for line in processes.log(name).splitlines()
                if " ERROR/" in line or "Traceback" in line
            )
            for name in processes.procs
        }
        checks = lost_and_duplicated(venue, seeded.masters)
        phase("check")
    phase("stop")
    latency = latency_ms()
    ok_bounded, why = bounded(samples, options["seconds"])
    api_ms = stats.pop("api_ms")
    offered = options["masters"] * options["rate"] * options["followers"]
    return {
        "shape": {
            "masters": options["masters"],
            "followers_per_master": options["followers"],
            "rate_per_master": options["rate"],
            "seconds": options["seconds"],
            "clients": options["clients"],
            "offered_orders_per_s": offered,
        },
        "latency_ms": latency,
        "api": {
            "requests": len(api_ms),
            "p50_ms": percentile(api_ms, 50),
            "p99_ms": percentile(api_ms, 99),
            "errors": dict(stats.pop("api_errors")),
        },
        "master": {
            "orders": stats["master_orders"],
            "errors": dict(stats["master_errors"]),
            "late": stats["trader_late"],
        },
        "drain_s": stats["drain_s"],
        "wall_s": wall,
        "venue": venue_stats,
        "errors_in_logs": errors_in_logs,
        "samples": samples,
        "check": checks,
        "verdict": {
            "queues_bounded": ok_bounded,
            "queues_note": why,
            "lost_duplicated_zero": checks["ok"],
        },
        "logs": str(logdir),
        "phases_s": phases,
        "_setup_at": setup_at,
    }


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:  # noqa: S310
            return response.status == 200
    except OSError:
        return False


def print_report(r: dict) -> None:
    s = r["shape"]
    print(  # noqa: T201
        f"shape: {s['masters']} masters x {s['rate_per_master']:g} events/s x "
        f"{s['seconds']:g} s x {s['followers_per_master']} followers each, "
        f"{s['clients']} API clients (offered {s['offered_orders_per_s']:,.0f} follower orders/s)"
    )
    print("t(s)   fanout execute default listeners | events pending  open instr | RSS MB")  # noqa: T201
    for sample in r["samples"]:
        q = sample["queues"]
        rss = " ".join(f"{k}={v:.0f}" for k, v in sample["rss_mb"].items())
        print(  # noqa: T201
            f"{sample['t']:5.0f} {q['fanout']:7} {q['execute']:7} {q['default']:7} "
            f"{q['listeners']:9} | {sample['events_pending']:14} {sample['instructions_open']:11}"
            f" | {rss}"
        )
    lat = r["latency_ms"]
    print(  # noqa: T201
        f"copy latency (master fill -> follower fill): p50={lat['p50']:.0f} ms "
        f"p99={lat['p99']:.0f} ms over {lat['copies']:,} copies; "
        f"{lat['orders_per_s']:,.0f} follower orders/s over {lat['busy_s']:.0f} s"
    )
    api = r["api"]
    print(  # noqa: T201
        f"client API: {api['requests']} requests p50={api['p50_ms']:.0f} ms "
        f"p99={api['p99_ms']:.0f} ms errors={api['errors']}"
    )
    print(  # noqa: T201
        f"master orders: {r['master']['orders']} errors={r['master']['errors']} "
        f"late={r['master']['late']}; drained in {r['drain_s']:.0f} s after trading stopped"
    )
    print(f"errors in process logs: {r['errors_in_logs']}")  # noqa: T201
    peak = {}
    for sample in r["samples"]:
        for name, mb in sample["rss_mb"].items():
            peak[name] = max(peak.get(name, 0.0), mb)
    print("peak RSS MB: " + ", ".join(f"{k} {v:.0f}" for k, v in peak.items()))  # noqa: T201
    print(f"check: {r['check']['summary']}; problems by kind {r['check']['kinds']}")  # noqa: T201
    for problem in r["check"]["problems"][:10]:
        print(f"  {problem}")  # noqa: T201
    v = r["verdict"]
    print(  # noqa: T201
        f"queues bounded: {'yes' if v['queues_bounded'] else 'NO'} ({v['queues_note']})"
    )
    kinds = r["check"]["kinds"]
    if v["lost_duplicated_zero"]:
        print("lost/duplicated = 0: yes")  # noqa: T201
    elif set(kinds) <= {"unfinished"}:
        print(  # noqa: T201
            f"lost/duplicated = 0: NOT DRAINED ({kinds['unfinished']} copies still to do when "
            "the drain time ran out: not judged; none duplicated)"
        )
    else:
        print(f"lost/duplicated = 0: NO {kinds}")  # noqa: T201
    print(f"phases (s): {r['phases_s']}; logs: {r['logs']}")  # noqa: T201


if __name__ == "__main__":
    main()
