"""Worker processes and waiting helpers for copybench (not a command)."""

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]


def wait_until(condition: Callable[[], Any], timeout: float) -> Any:
    """Polls `condition` until it returns something truthy; raises after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"copybench: gave up waiting after {timeout:.0f} s")
        time.sleep(0.05)


@contextmanager
def start_worker(
    queues: str, concurrency: int, pool: str = "prefork"
) -> Iterator[subprocess.Popen]:
    """A Celery worker on `queues`, stopped (with its children) on exit."""
    log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - kept for reading after the run
        prefix=f"copybench-{queues}-", suffix=".log", delete=False
    )
    name = f"bench-{queues}-{os.getpid()}-{time.monotonic_ns()}@%h"
    args = [
        sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queues,
        "-c", str(concurrency), "-P", pool, "-n", name,
        "--without-gossip", "--without-mingle", "-l", "WARNING",
    ]  # fmt: skip
    proc = subprocess.Popen(  # noqa: S603
        args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        yield proc
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
