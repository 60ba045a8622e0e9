"""A fan-out task that finds a backlog of a master's events (more than INLINE_MAX_EVENTS,
each larger than one chunk) hands every chunk of every event to the execute workers: none
is left ready with no execute task to carry it, none held in flight by the fan-out."""

import base64
import json

import pytest

from config.redis import get_redis
from copytrading.models import CopyInstruction
from copytrading.services import fanout
from copytrading.services.fanout import INLINE_MAX_EVENTS, fanout_and_execute
from tests.faults.harness import master_event, seed_copiers

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def queued_execute_tasks() -> list[list[int]]:
    tasks = []
    for raw in get_redis().lrange("execute", 0, -1):
        message = json.loads(raw)
        tasks.append(json.loads(base64.b64decode(message["body"]))[0][1])
    return tasks


def queued_execute_ids() -> set[int]:
    return {i for task in queued_execute_tasks() for i in task}


@pytest.mark.faults_budget(60)
def test_every_chunk_of_a_six_event_backlog_is_sent_or_queued(world, monkeypatch, deadline):
    # Chunks of 50 (500 in production) keep the scenario small: 60 followers make two
    # chunks per event, as 600 would.
    monkeypatch.setattr(fanout, "FANOUT_CHUNK", 50)
    monkeypatch.setattr(fanout, "EXECUTE_CHUNK", 50)
    followers = fanout.FANOUT_CHUNK + 10
    (master,) = seed_copiers(world, followers)
    events = [
        master_event(world, master, "position_opened", world.order(master.login, volume=1))
        for _ in range(6)
    ]
    get_redis().delete("execute")
    fanout_and_execute(event_ids=[events[-1].id])  # one task finds all six pending
    instructions = CopyInstruction.objects.filter(master_event__in=events)
    assert instructions.count() == 6 * followers
    assert len(events) > INLINE_MAX_EVENTS
    ready = set(instructions.filter(status="ready").values_list("id", flat=True))
    assert len(ready) == 6 * followers  # nothing claimed, nor sent, by the fan-out task
    assert ready == queued_execute_ids(), "ready instructions with no execute task"
    # In tasks of up to EXECUTE_CHUNK, across events: 360 orders, 8 tasks at most (12 if
    # each chunk of each event were a task of its own).
    assert len(queued_execute_tasks()) <= 8


@pytest.mark.faults_budget(30)
def test_a_backlog_of_small_events_goes_out_in_few_execute_tasks(world, deadline):
    (master,) = seed_copiers(world, 10)
    events = [
        master_event(world, master, "position_opened", world.order(master.login, volume=1))
        for _ in range(20)
    ]
    get_redis().delete("execute")
    fanout_and_execute(event_ids=[events[0].id])
    tasks = queued_execute_tasks()
    assert sorted(i for task in tasks for i in task) == sorted(
        CopyInstruction.objects.filter(master_event__in=events).values_list("id", flat=True)
    )
    assert len(tasks) == 1  # 200 orders of 20 events: one task, not twenty
