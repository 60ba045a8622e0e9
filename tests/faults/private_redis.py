"""A Redis server of the test's own, on its own port, that a scenario may kill and restart.

Never the machine's shared Redis on 6379: other checkouts and engineers use it. The server
keeps an append-only file fsynced on every write, as a production Redis would, so a restart
loses no queued task or lease; what a restart breaks is every open connection.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import redis
from django.test import override_settings

from config.celery import app
from config.redis import get_redis
from tests.asgi import free_port
from tests.processes import wait_for


@dataclass
class PrivateRedis:
    port: int
    directory: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]
        args += ["--dir", str(self.directory), "--daemonize", "no"]
        log = (self.directory / "redis.log").open("a")
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)

        def answers() -> bool:
            with suppress(redis.RedisError):
                return bool(client.ping())
            return False

        wait_for(answers, timeout=15, what=f"redis-server on port {self.port}")

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    """A private Redis server, and this test process switched to it (settings, the shared
    client, Celery's broker pools): what the test queues goes where its workers listen."""
    if shutil.which("redis-server") is None:
        raise AssertionError("redis-server is not installed: apt-get install redis-server")
    directory = Path(tempfile.mkdtemp(prefix="ct-redis-"))
    server = PrivateRedis(free_port(), directory)
    server.start()
    old_broker = app.conf.broker_url
    try:
        with override_settings(REDIS_URL=server.url, CELERY_BROKER_URL=server.url):
            _switch_broker(server.url)
            yield server
    finally:
        _switch_broker(old_broker)
        server.kill()
        shutil.rmtree(directory, ignore_errors=True)


def _switch_broker(url: str) -> None:
    get_redis.cache_clear()
    # kombu keeps its pools per broker URL: forgetting ours makes the next publish take the
    # pool of the new URL (the old one stays, usable, for when the test switches back).
    app.conf.broker_url = url
    app._pool = None
    app.amqp._producer_pool = None
