"""Test settings whose beat schedule runs five times as often (a 5 s job every second), so
a scenario watches several periods in a few seconds."""

from config.settings.test import *  # noqa: F403
from config.settings.test import CELERY_BEAT_SCHEDULE as _SCHEDULE

CELERY_BEAT_SCHEDULE = {
    name: {**entry, "schedule": entry["schedule"] / 5} for name, entry in _SCHEDULE.items()
}
