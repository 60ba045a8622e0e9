"""Celery fan-out and execute workers SIGKILLed at random points of a 1,000-follower fan-out
(three kills per run, FAULTS_RUNS seeded runs): every copy lands once, none is lost."""

from contextlib import ExitStack

import pytest

from copytrading.models import CopyInstruction, FollowerOrder
from tests.copytrading.copy_world import connect_listener
from tests.faults.conftest import run_seeds
from tests.faults.harness import checked, master_burst, seed_copiers, settle
from tests.processes import celery_worker, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

FOLLOWERS = 1000
OPENS, CLOSES = 4, 2
KILLS = 3


def progress(master_id: int) -> int:
    """Instructions decided plus orders recorded: 0 .. 2 x events x followers."""
    instructions = CopyInstruction.objects.filter(subscription__master_account_id=master_id)
    orders = FollowerOrder.objects.filter(instruction__subscription__master_account_id=master_id)
    return instructions.count() + orders.count()


@pytest.mark.faults_budget(100)
@pytest.mark.parametrize("seed", run_seeds("worker-kills"))
def test_workers_killed_during_a_1000_follower_fanout(world, seed, rng, deadline):
    (master,) = seed_copiers(world, FOLLOWERS)
    events = OPENS + CLOSES
    total = 2 * events * FOLLOWERS
    # The kill points: random shares of the run's progress, each hitting a random worker.
    points = sorted(rng.uniform(0.05, 0.8) for _ in range(KILLS))
    targets = [rng.choice(["fanout", "execute"]) for _ in range(KILLS)]
    at_kill = []
    with ExitStack() as stack:
        stack.enter_context(celery_worker(queues="listeners,default", concurrency=1))
        workers = {
            "fanout": stack.enter_context(celery_worker(queues="fanout", concurrency=1)),
            "execute": stack.enter_context(celery_worker(queues="execute", concurrency=2)),
        }
        connect_listener()
        master_burst(world, master.login, opens=OPENS, closes=CLOSES, rng=rng)
        for point, target in zip(points, targets, strict=True):
            wait_for(
                lambda p=point: progress(master.id) >= p * total,
                timeout=60,
                what=f"{point:.0%} of the fan-out",
            )
            workers[target].kill()
            at_kill.append(progress(master.id))
            concurrency = 1 if target == "fanout" else 2
            workers[target] = stack.enter_context(
                celery_worker(queues=target, concurrency=concurrency)
            )
        settle([master.id], events=events, timeout=60)
    print(f"[faults] killed {targets} at {at_kill} of {total}")  # noqa: T201
    assert all(n < total for n in at_kill), "a kill came after the fan-out had finished"
    check = checked(world, [master])
    assert check.instructions["done"] == events * FOLLOWERS
    assert check.venue_deals == events * FOLLOWERS
