"""Start a real paper venue for a test suite or a benchmark, and talk to it.

``running_venue`` runs ``python -m brokers.paper`` as a subprocess on a free
port, waits (with a deadline) until it answers, and stops it with SIGTERM
(SIGKILL after a deadline). ``VenueClient`` is a small synchronous REST client
for tests: it keeps one keep-alive connection and returns (status, body).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

START_DEADLINE_S = 15.0
STOP_DEADLINE_S = 10.0
_PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Venue:
    """A venue process started by ``running_venue``."""

    host: str
    port: int
    api_key: str
    process: subprocess.Popen
    log_path: Path
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """The stream endpoint (add ``?accounts=...`` or ``?all=1``)."""
        return f"ws://{self.host}:{self.port}/v1/stream"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def stream_url(self, **query: Any) -> str:
        """``ws_url`` with a query, e.g. ``stream_url(accounts="100001", from_seq=5)``."""
        return f"{self.ws_url}?{urlencode(query)}" if query else self.ws_url

    def client(self) -> VenueClient:
        return VenueClient(self.host, self.port, self.api_key)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _command(host: str, port: int, api_key: str, options: dict[str, Any]) -> list[str]:
    args = [sys.executable, "-m", "brokers.paper", "--host", host, "--port", str(port)]
    args += ["--api-key", api_key]
    for name, value in options.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    return args


def _answers(host: str, port: int, api_key: str) -> bool:
    try:
        connection = http.client.HTTPConnection(host, port, timeout=1.0)
        try:
            connection.request("GET", "/v1/info", headers={"Authorization": f"Bearer {api_key}"})
            return connection.getresponse().status == 200
        finally:
            connection.close()
    except OSError:
        return False


def _stop(process: subprocess.Popen, deadline_s: float = STOP_DEADLINE_S) -> int | None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(deadline_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(deadline_s)
    return process.returncode


def start_venue(
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    api_key: str = "paper-dev-key",
    ticks_ms: int = 0,
    deadline_s: float = START_DEADLINE_S,
    **options: Any,
) -> Venue:
    """Start a venue process and return once it answers; the caller must stop it.

    ``options`` are the command-line options with underscores
    (``symbol_suffix="m"``, ``min_volume="0.1"``, ``seed=1``...). The price feed is
    off by default (``ticks_ms=0``) so that prices move only when a test says so.
    """
    options = {"ticks_ms": ticks_ms, **options}
    attempts = 1 if port else 3
    last_error = ""
    for _attempt in range(attempts):
        chosen = port or _free_port(host)
        log_file = tempfile.NamedTemporaryFile(  # noqa: SIM115 (the venue writes it, we keep it)
            prefix=f"paper-venue-{chosen}-", suffix=".log", delete=False
        )
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(_PROJECT_ROOT), env.get("PYTHONPATH")])
        )
        process = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
            _command(host, chosen, api_key, options),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=_PROJECT_ROOT,
            env=env,
        )
        log_file.close()
        venue = Venue(host, chosen, api_key, process, Path(log_file.name), options)
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            if _answers(host, chosen, api_key):
                return venue
            time.sleep(0.02)
        _stop(process)
        last_error = venue.log_text()[-2000:]
        if "address already in use" not in last_error.lower():
            break
    raise RuntimeError(f"paper venue did not start:\n{last_error}")


def stop_venue(venue: Venue) -> int | None:
    """SIGTERM, then SIGKILL after a deadline. Returns the exit code."""
    return _stop(venue.process)


@contextlib.contextmanager
def running_venue(**options: Any) -> Iterator[Venue]:
    """A venue subprocess for the length of the ``with`` block (see ``start_venue``)."""
    venue = start_venue(**options)
    try:
        yield venue
    finally:
        stop_venue(venue)
        with contextlib.suppress(OSError):
            venue.log_path.unlink()


class VenueClient:
    """A minimal synchronous REST client: ``get/post/patch/delete -> (status, json body)``."""

    def __init__(self, host: str, port: int, api_key: str | None, timeout: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.api_key = api_key
        self.timeout = timeout
        self._connection: http.client.HTTPConnection | None = None

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        sent = {"Content-Type": "application/json"}
        if self.api_key is not None:
            sent["Authorization"] = f"Bearer {self.api_key}"
        sent.update(headers or {})
        for attempt in (1, 2):
            if self._connection is None:
                self._connection = http.client.HTTPConnection(
                    self.host, self.port, timeout=self.timeout
                )
            try:
                self._connection.request(method, path, body=data, headers=sent)
                response = self._connection.getresponse()
                payload = response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # A keep-alive connection the server closed: open a new one once.
                self.close()
                if attempt == 2:
                    raise
            except BaseException:
                # Never reuse a connection left half-way through a request.
                self.close()
                raise
        text = payload.decode()
        return response.status, (json.loads(text) if text else None)

    def get(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
        return self.request("POST", path, body, **kwargs)

    def patch(self, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
        return self.request("PATCH", path, body, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        return self.request("DELETE", path, **kwargs)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class StreamRecorder:
    """A WebSocket client on its own thread that records every message it receives.

    Tests stay synchronous: act through REST, then ``wait_for`` a condition on
    what the stream delivered, with a deadline (never a blind sleep).
    """

    def __init__(
        self, url: str, headers: dict[str, str] | None = None, timeout: float = 5.0
    ) -> None:
        self.url = url
        self.headers = headers or {}
        self.messages: list[dict[str, Any]] = []
        self.handshake_status: int | None = None
        self.close_code: int | None = None
        self.closed = threading.Event()
        self._ready = threading.Event()
        self._changed = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ws: Any = None
        self._thread = threading.Thread(target=self._run, name="stream-recorder", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"no WebSocket handshake with {url} in {timeout} s")

    @property
    def connected(self) -> bool:
        return self._ws is not None

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        import aiohttp

        self._loop = asyncio.get_running_loop()
        try:
            async with aiohttp.ClientSession() as session:
                try:
                    ws = await session.ws_connect(self.url, headers=self.headers, autoping=True)
                except aiohttp.WSServerHandshakeError as exc:
                    self.handshake_status = exc.status
                    return
                self._ws = ws
                self._ready.set()
                async for message in ws:
                    if message.type == aiohttp.WSMsgType.TEXT:
                        with self._changed:
                            self.messages.append(json.loads(message.data))
                            self._changed.notify_all()
                self.close_code = ws.close_code
        finally:
            self._ready.set()
            with self._changed:
                self.closed.set()
                self._changed.notify_all()

    def wait_for(self, predicate: Any, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until ``predicate(messages)`` is true; returns the messages, or raises."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"stream condition not met in {timeout} s; got {len(self.messages)} "
                        f"messages, last: {self.messages[-3:]}"
                    )
                if self.closed.is_set():
                    raise ConnectionError(
                        f"stream closed (code {self.close_code}) before the condition was met; "
                        f"got {len(self.messages)} messages"
                    )
                self._changed.wait(left)
            return list(self.messages)

    def wait_closed(self, timeout: float = 5.0) -> int | None:
        if not self.closed.wait(timeout):
            raise TimeoutError(f"stream not closed in {timeout} s")
        return self.close_code

    def events(self, type_: str | None = None) -> list[dict[str, Any]]:
        """Recorded events (heartbeats left out), optionally of one type."""
        with self._changed:
            return [
                m
                for m in self.messages
                if m.get("type") != "heartbeat" and (type_ is None or m.get("type") == type_)
            ]

    def close(self) -> None:
        loop = self._loop
        if self._ws is not None and loop is not None and not self.closed.is_set():
            with contextlib.suppress(RuntimeError):
                asyncio.run_coroutine_threadsafe(self._ws.close(), loop).result(5)
        self._thread.join(5)

    def __enter__(self) -> StreamRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
