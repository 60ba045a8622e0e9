"""The Celery app: queues `listeners`, `fanout`, `execute`, `default`, and beat."""

import os

from celery import Celery
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
