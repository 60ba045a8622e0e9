"""The Celery app: queues `listeners`, `fanout`, `execute`, `default`, and beat."""

import os

from celery import Celery
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
