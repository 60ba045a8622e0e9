"""A fan-out task that finds a backlog of a master's events (more than a few, each larger
than one chunk) sends or queues every chunk of every event: none is left ready with no
execute task to carry it."""

import base64
import json

import pytest

from config.redis import get_redis
from copytrading.models import CopyInstruction
from copytrading.services.fanout import FANOUT_CHUNK, fanout_and_execute
from tests.faults.harness import master_event, seed_copiers

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def queued_execute_ids() -> set[int]:
    ids: set[int] = set()
    for raw in get_redis().lrange("execute", 0, -1):
        message = json.loads(raw)
        args = json.loads(base64.b64decode(message["body"]))[0]
        ids.update(args[1])
    return ids


@pytest.mark.faults_budget(60)
def test_every_chunk_of_a_six_event_backlog_is_sent_or_queued(world, deadline):
    followers = FANOUT_CHUNK + 100  # two chunks per event
    (master,) = seed_copiers(world, followers)
    events = [
        master_event(world, master, "position_opened", world.order(master.login, volume=1))
        for _ in range(6)
    ]
    get_redis().delete("execute")
    fanout_and_execute(event_ids=[events[-1].id])  # one task finds all six pending
    instructions = CopyInstruction.objects.filter(master_event__in=events)
    assert instructions.count() == 6 * followers
    assert not instructions.filter(status="in_flight").exists()  # claimed ones were sent
    ready = set(instructions.filter(status="ready").values_list("id", flat=True))
    done = instructions.filter(status="done").count()
    assert done + len(ready) == 6 * followers
    assert ready == queued_execute_ids(), "ready instructions with no execute task"
