"""The master stream dropped in a burst of 50 trades, the listener worker SIGKILLed and
restarted, two listener workers racing for one shard: every master trade is copied to
every follower exactly once."""

from contextlib import ExitStack

import pytest

from brokers.models import ListenerShard
from copytrading.leases import lease_holder
from copytrading.listeners import shard_lease_name
from copytrading.models import MasterEvent
from copytrading.services.listening import listener_shards_ensure, listeners_supervise
from copytrading.tasks import listen_shard
from tests.copytrading.test_listeners_e2e import assert_stored_once
from tests.faults.harness import checked, master_burst, seed_copiers, settle
from tests.processes import celery_worker, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PIPELINE = "fanout,execute,default"


def connected() -> bool:
    return ListenerShard.objects.filter(connected=True).exists()


@pytest.mark.faults_budget(75)
def test_stream_dropped_and_listener_killed_during_a_50_trade_burst(world, rng, deadline):
    (master,) = seed_copiers(world, 20)
    api = world.api()
    burst = 50
    drop_at, kill_at = sorted(rng.sample(range(5, burst - 5), 2))
    with ExitStack() as stack:
        stack.enter_context(celery_worker(queues=PIPELINE, concurrency=2))
        listener = stack.enter_context(celery_worker(queues="listeners", concurrency=1))
        listeners_supervise()
        wait_for(connected, timeout=30, what="the listener")
        master_burst(world, master.login, opens=drop_at, closes=0, rng=rng)
        assert api.post("/v1/admin/faults", {"drop_streams": True})[0] == 200
        # The listener must see the drop before it is killed, else (on a loaded machine) the
        # kill can come first and the dropped stream is never counted.
        wait_for(
            lambda: ListenerShard.objects.get().reconnects >= 1,
            timeout=30,
            what="the listener to notice the dropped stream",
        )
        master_burst(world, master.login, opens=kill_at - drop_at, closes=0, rng=rng)
        listener.kill()
        ListenerShard.objects.update(connected=False)
        master_burst(world, master.login, opens=burst - kill_at, closes=0, rng=rng)
        stack.enter_context(celery_worker(queues="listeners", concurrency=1))
        # The dead listener's lease lapses; the supervisor (beat's job, run here) starts a
        # new one, which resumes from the last stored sequence.
        wait_for(
            lambda: listeners_supervise() or connected(),
            timeout=30,
            interval=0.5,
            what="a new listener after the kill",
        )
        settle([master.id], events=burst, timeout=60)
    assert ListenerShard.objects.get().reconnects >= 1  # the dropped stream
    # The followers' own fills are on the manager stream too: never stored as master events.
    assert not MasterEvent.objects.exclude(account=master).exists()
    assert_stored_once()
    check = checked(world, [master])
    assert check.instructions["done"] == burst * 20


@pytest.mark.faults_budget(60)
def test_two_listener_workers_racing_for_one_shard(world, rng, deadline):
    (master,) = seed_copiers(world, 10)
    (shard,) = listener_shards_ensure()
    with ExitStack() as stack:
        stack.enter_context(celery_worker(queues=PIPELINE, concurrency=2))
        first = stack.enter_context(celery_worker(queues="listeners", concurrency=2))
        second = stack.enter_context(celery_worker(queues="listeners", concurrency=2))
        for _ in range(4):
            listen_shard.delay(shard.id)
        wait_for(connected, timeout=30, what="a listener")
        holder = lease_holder(shard_lease_name(shard))
        master_burst(world, master.login, opens=20, closes=10, rng=rng)
        settle([master.id], events=30, timeout=60)
        assert lease_holder(shard_lease_name(shard)) == holder  # one listener all along
        wait_for(
            lambda: (first.log() + second.log()).count("ended: busy") == 3,
            what="the three listener tasks that lost the race to give up",
        )
    assert_stored_once()
    check = checked(world, [master])
    assert check.instructions["done"] == 30 * 10
