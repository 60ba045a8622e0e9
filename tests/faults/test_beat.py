"""Two beat schedulers started at once: every periodic job is sent once per period, not
once per beat (config.celery.SingleBeatScheduler)."""

import json
import re
from collections import Counter
from datetime import datetime

import pytest
from django.conf import settings

from config.redis import get_redis
from tests.processes import celery_beat, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.e2e]

SENT = re.compile(r"\[([\d-]+ [\d:,]+): INFO/MainProcess\] Scheduler: Sending due task (\S+)")


def sends(*beats) -> dict[str, list[datetime]]:
    """{job name: when any beat sent it}, from the beats' logs."""
    found: dict[str, list[datetime]] = {}
    for beat in beats:
        for at, name in SENT.findall(beat.log()):
            found.setdefault(name, []).append(datetime.strptime(at, "%Y-%m-%d %H:%M:%S,%f"))
    return {name: sorted(times) for name, times in found.items()}


def queued_tasks() -> Counter:
    redis = get_redis()
    names: Counter = Counter()
    for queue in ("default", "fanout", "execute", "listeners"):
        for raw in redis.lrange(queue, 0, -1):
            names[json.loads(raw)["headers"]["task"]] += 1
    return names


@pytest.mark.faults_budget(60)
def test_two_beats_send_each_job_once_per_period(fault_seed, deadline):
    get_redis().flushdb()  # no worker runs: what the beats send stays in the queues
    fast = {"DJANGO_SETTINGS_MODULE": "tests.faults.fast_beat_settings"}
    schedule = {
        name: {**entry, "schedule": entry["schedule"] / 5}
        for name, entry in settings.CELERY_BEAT_SCHEDULE.items()
    }
    with celery_beat(**fast) as first, celery_beat(**fast) as second:
        wait_for(
            lambda: len(sends(first, second).get("supervise-listeners", [])) >= 4,
            timeout=30,
            what="four periods of the (1 s) supervisor job",
        )
    sent = sends(first, second)
    # A fresh schedule first sends a job one period after start: the 1 s jobs ran here.
    short = {name for name, entry in schedule.items() if entry["schedule"] <= 1}
    assert short <= sent.keys() <= schedule.keys()
    for name, times in sent.items():
        period = schedule[name]["schedule"]
        gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
        # Once per period: never two sends of one job closer than the lock's 90%.
        assert all(gap >= 0.85 * period for gap in gaps), (name, gaps)
    both = [beat for beat in (first, second) if "Sending due task" in beat.log()]
    skipped = first.log().count("another beat sent it") + second.log().count("another beat")
    assert skipped > 0 or len(both) == 1
    # What reached the broker is what the logs say was sent.
    queued = queued_tasks()
    for name, times in sent.items():
        assert queued[schedule[name]["task"]] == len(times), (name, queued)
