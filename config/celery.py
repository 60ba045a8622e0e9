"""The Celery app: queues `listeners`, `fanout`, `execute`, `default`, and beat."""

import logging
import os
import socket

from celery import Celery
from celery.beat import PersistentScheduler, ScheduleEntry
from celery.signals import task_prerun, worker_process_shutdown
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("copytrade")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = (
    Queue("default"),
    Queue("listeners"),
    Queue("fanout"),
    Queue("execute"),
)
app.autodiscover_tasks()
app.conf.beat_scheduler = "config.celery:SingleBeatScheduler"

logger = logging.getLogger(__name__)

# The share of a job's period for which the first beat to send it holds its turn.
BEAT_LOCK_SHARE = 0.9


class SingleBeatScheduler(PersistentScheduler):
    """Celery beat that sends each periodic job once per period however many beats run.

    Two beats started at once (a deploy overlap, a second machine started by mistake)
    would each send every job: sweepers and reconciliations would do their work twice.
    Before sending, a beat takes the job's turn in Redis (SET NX with a time to live of
    90% of the period); a beat that finds the turn taken skips the job until its next
    period. If Redis does not answer, nothing could be sent anyway: the job waits.
    """

    def apply_entry(self, entry: ScheduleEntry, producer: object = None) -> None:
        from config.redis import get_redis

        period = _period_seconds(entry)
        ttl_ms = max(int(period * BEAT_LOCK_SHARE * 1000), 100)
        holder = f"{socket.gethostname()}:{os.getpid()}"
        try:
            turn = get_redis().set(f"ct:beat:{entry.name}", holder, nx=True, px=ttl_ms)
        except Exception as exc:  # noqa: BLE001 - any Redis failure: skip this turn
            logger.warning("beat: %s not sent, Redis unavailable: %s", entry.name, exc)
            return
        if not turn:
            logger.info("beat: %s skipped, another beat sent it this period", entry.name)
            return
        super().apply_entry(entry, producer=producer)


def _period_seconds(entry: ScheduleEntry) -> float:
    run_every = getattr(entry.schedule, "run_every", None)
    if run_every is not None:
        return run_every.total_seconds()
    # A crontab: the time from now to its next run approximates its period.
    return max(entry.schedule.remaining_estimate(entry.last_run_at).total_seconds(), 1.0)


@worker_process_shutdown.connect
def _close_gateways(**kwargs: object) -> None:
    """Closes the broker gateways' pooled sessions of a worker process that stops."""
    from brokers.gateways import close_sync_gateways

    close_sync_gateways()


@task_prerun.connect
def _drop_unusable_connections(**kwargs: object) -> None:
    """Like a request does: a connection that errored or outlived CONN_MAX_AGE is closed
    before the task, so a database restart costs one failed task at most, not every one."""
    from django.db import close_old_connections

    close_old_connections()
