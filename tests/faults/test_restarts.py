"""Redis restarted mid-run, PostgreSQL connections terminated mid-run: the pipeline
reconnects, the sweepers re-queue what was lost, every copy lands exactly once."""

from contextlib import ExitStack

import pytest
from django.db import connection
from django.utils import timezone

from brokers.models import ListenerShard
from copytrading.leases import lease_holder
from copytrading.listeners import shard_lease_name
from copytrading.models import MasterEvent
from tests.copytrading.copy_world import connect_listener
from tests.faults.harness import checked, master_burst, seed_copiers, settle
from tests.faults.private_redis import private_redis
from tests.processes import celery_worker, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PIPELINE = "fanout,execute,default"


@pytest.mark.faults_budget(75)
def test_redis_restarted_mid_run(world, rng, deadline):
    (master,) = seed_copiers(world, 100)
    with private_redis() as redis_server, ExitStack() as stack:
        env = {"REDIS_URL": redis_server.url}
        stack.enter_context(celery_worker(queues=PIPELINE, concurrency=2, **env))
        listener = stack.enter_context(celery_worker(queues="listeners", concurrency=1, **env))
        connect_listener()
        shard = ListenerShard.objects.get()
        holder = lease_holder(shard_lease_name(shard))
        master_burst(world, master.login, opens=rng.randint(2, 5), closes=0, rng=rng)
        redis_server.kill()  # down while the master trades on
        master_burst(world, master.login, opens=4, closes=2, rng=rng)
        # The outage lasts until the listener has felt it (a lease renewal failed).
        wait_for(
            lambda: "lease renewal failed" in listener.log(),
            timeout=15,
            what="the listener to meet the outage",
        )
        redis_server.start()
        back = timezone.now()
        master_burst(world, master.login, opens=2, closes=2, rng=rng)
        # The listener rode the outage out: its lease keeper beats again, same holder.
        wait_for(
            lambda: ListenerShard.objects.get().heartbeat_at > back,
            timeout=15,
            what="the listener's heartbeat after the restart",
        )
        assert lease_holder(shard_lease_name(shard)) == holder
        events = MasterEvent.objects.filter(account=master).count()
        settle([master.id], events=events, timeout=60)
    check = checked(world, [master])
    assert check.instructions["done"] == events * 100


def terminate_app_connections() -> int:
    """pg_terminate_backend on every other connection to this test database (never another
    database's: other checkouts run their suites on this server too)."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            [connection.settings_dict["NAME"]],
        )
        return cur.fetchone()[0]


@pytest.mark.faults_budget(75)
def test_postgres_connections_terminated_mid_run(world, rng, deadline):
    (master,) = seed_copiers(world, 100)
    opens = 8
    points = set(rng.sample(range(opens), 3))
    terminated = []
    with ExitStack() as stack:
        stack.enter_context(celery_worker(queues=PIPELINE, concurrency=2))
        stack.enter_context(celery_worker(queues="listeners", concurrency=1))
        connect_listener()
        for i in range(opens):
            master_burst(world, master.login, opens=1, closes=0, rng=rng)
            if i in points:
                terminated.append(terminate_app_connections())
        positions = [str(p["position_id"]) for p in world.positions(master.login)]
        for pid in rng.sample(positions, 3):
            world.close(master.login, pid)
        terminated.append(terminate_app_connections())
        settle([master.id], events=opens + 3, timeout=60)
    assert sum(terminated) > 0, terminated
    print(f"[faults] backends terminated: {terminated}")  # noqa: T201
    check = checked(world, [master])
    assert check.instructions["done"] == (opens + 3) * 100
