"""benchmarks/load.py, run small: it starts every process, drives masters and API clients,
and reports latency, queue depths, memory and its two verdicts (both must hold here)."""

import json
import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.db import connection

from tests.processes import ROOT

pytestmark = [pytest.mark.faults, pytest.mark.e2e]


def _drop_database(name: str) -> None:
    """The script's database is of no use after the run: not left behind in every checkout."""
    import psycopg

    db = settings.DATABASES["default"]
    params = {k.lower(): db[k] for k in ("HOST", "PORT", "USER", "PASSWORD") if db.get(k)}
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.faults_budget(120)
def test_load_script_smoke(django_db_setup, django_db_blocker, deadline):
    env = {
        **os.environ,
        # A database and Redis db of this checkout's (the script recreates its database).
        "LOAD_DATABASE": "load_" + settings.DATABASES["default"]["TEST"]["NAME"],
        # A copy of the (migrated) test database saves migrating a fresh one.
        "LOAD_TEMPLATE": settings.DATABASES["default"]["TEST"]["NAME"],
        "LOAD_REDIS_URL": settings.REDIS_URL,
        "LOAD_CHANNELS_PREFIX": f"{settings.CHANNEL_LAYERS['default']['CONFIG']['prefix']}-load",
    }
    args = [sys.executable, "benchmarks/load.py", "--masters", "2", "--followers", "5"]
    args += ["--rate", "4", "--seconds", "6", "--clients", "4", "--sample-every", "2"]
    args += ["--drain-seconds", "30", "--json"]
    with django_db_blocker.unblock():
        connection.close()  # a template must have no other session
    try:
        done = subprocess.run(  # noqa: S603
            args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=110
        )
    finally:
        _drop_database(env["LOAD_DATABASE"])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["verdict"] == {
        "queues_bounded": True,
        "queues_note": report["verdict"]["queues_note"],
        "lost_duplicated_zero": True,
    }
    assert report["latency_ms"]["copies"] == report["master"]["orders"] * 5
    assert report["latency_ms"]["p50"] > 0
    assert report["api"]["requests"] > 0
    assert report["api"]["errors"] == {}
    assert len(report["samples"]) >= 3
    assert {"listener", "fanout", "execute-1", "asgi", "beat", "venue"} <= set(
        report["samples"][-1]["rss_mb"]
    )
