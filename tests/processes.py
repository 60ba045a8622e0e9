"""Real processes for end-to-end tests: Celery workers (and beat) against the test database.

Each process gets its own process group, so a test can SIGKILL a worker and every
child it forked, as a crash would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parents[1]


def wait_for(
    condition: Callable[[], object],
    *,
    timeout: float = 20.0,
    interval: float = 0.05,
    what: str = "",
) -> object:
    """Polls `condition` until it returns something truthy; fails the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or condition}")
        time.sleep(interval)


def test_database_url() -> str:
    """The URL of the database this test run uses (pytest-django's test database)."""
    s = connection.settings_dict
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    user = s.get("USER") or "postgres"
    host = s.get("HOST") or "127.0.0.1"
    return f"postgres://{user}{password}@{host}:{s.get('PORT') or 5432}/{s['NAME']}"


def process_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.test",
        DATABASE_URL=test_database_url(),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@dataclass
class ManagedProcess:
    name: str
    popen: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the process and all its children, as a crash would."""
        with suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        except ProcessLookupError:
            pass


@contextmanager
def managed(
    name: str, args: list[str], *, ready: str | None, env: dict[str, str]
) -> Iterator[ManagedProcess]:
    log_path = Path(tempfile.gettempdir()) / f"ct-{name}-{uuid.uuid4().hex[:8]}.log"
    log = log_path.open("w")
    popen = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    proc = ManagedProcess(name, popen, log_path)
    try:
        if ready:
            wait_for(
                lambda: ready in proc.log() or popen.poll() is not None,
                timeout=60,
                what=f"{name} to start",
            )
            if popen.poll() is not None:
                raise AssertionError(f"{name} exited at start:\n{proc.log()[-3000:]}")
        yield proc
    finally:
        proc.stop()
        log.close()


@contextmanager
def celery_worker(
    *, queues: str = "default,listeners,fanout,execute", concurrency: int = 2, **env: str
) -> Iterator[ManagedProcess]:
    """A real Celery worker (prefork) on the test database and the test Redis."""
    name = f"worker-{uuid.uuid4().hex[:6]}"
    args = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "-Q",
        queues,
        "-c",
        str(concurrency),
        "-n",
        f"{name}@%h",
        "--without-gossip",
        "--without-mingle",
        "-l",
        "INFO",
    ]
    with managed(name, args, ready=" ready.", env=process_env(**env)) as proc:
        yield proc


@contextmanager
def celery_beat(**env: str) -> Iterator[ManagedProcess]:
    """A real Celery beat on the test Redis, with a schedule file of its own."""
    name = f"beat-{uuid.uuid4().hex[:6]}"
    schedule = Path(tempfile.gettempdir()) / f"ct-{name}-schedule"
    args = [sys.executable, "-m", "celery", "-A", "config", "beat", "-s", str(schedule)]
    args += ["-l", "INFO"]
    try:
        with managed(name, args, ready="beat: Starting", env=process_env(**env)) as proc:
            yield proc
    finally:
        for leftover in schedule.parent.glob(schedule.name + "*"):
            leftover.unlink(missing_ok=True)
