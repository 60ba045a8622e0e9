"""A real ASGI server (uvicorn serving config.asgi) on the test database, and a WebSocket
client that runs on its own thread, for end-to-end tests of HTTP and Channels routes.

Test runs of several checkouts share one Redis database, and Channels group names are
built from primary keys that every fresh test database hands out again; a run that wants
its messages to itself gives the server (and its own process, `prefixed_channel_layers`)
a channel layer prefix of its own.

    with asgi_server() as server, websocket(server, "/ws/positions/", session=sid) as ws:
        frame = ws.wait_frame(lambda f: f["type"] == "snapshot")
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import os
import socket
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tests.processes import ManagedProcess, managed, process_env, wait_for


@dataclass
class AsgiServer:
    """A running server: its port, and the URLs and Origin a client should use."""

    port: int
    process: ManagedProcess
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def origin(self) -> str:
        # AllowedHostsOriginValidator checks the Origin against ALLOWED_HOSTS.
        return self.url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(server: AsgiServer) -> bool:
    if server.process.popen.poll() is not None:
        raise AssertionError(f"uvicorn exited at start:\n{server.process.log()[-3000:]}")
    try:
        with urllib.request.urlopen(f"{server.url}/healthz", timeout=2) as response:  # noqa: S310
            return response.status == 200
    except urllib.error.HTTPError as exc:
        # It answers but a service is down: keep waiting, the deadline reports it.
        return exc.code == 200
    except OSError:
        return False


_PREFIX_ENV = "TEST_CHANNELS_PREFIX"


def prefixed_channel_layers(prefix: str) -> dict[str, Any]:
    """CHANNEL_LAYERS as configured, with the Redis key prefix replaced by `prefix`."""
    from django.conf import settings

    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    layers["default"].setdefault("CONFIG", {})["prefix"] = prefix
    return layers


def application_with_channels_prefix() -> Any:
    """config.asgi.application, unchanged but for the channel layer's Redis key prefix,
    taken from TEST_CHANNELS_PREFIX (uvicorn --factory calls this in the server)."""
    from django.conf import settings

    import config.asgi  # sets Django up; no channel layer exists before the first message

    prefix = os.environ.get(_PREFIX_ENV)
    if prefix:
        settings.CHANNEL_LAYERS = prefixed_channel_layers(prefix)
    return config.asgi.application


@contextmanager
def asgi_server(
    *, channels_prefix: str | None = None, timeout: float = 60.0, **env: str
) -> Iterator[AsgiServer]:
    """uvicorn serving config.asgi:application on a free port, against the test database
    (call it where pytest-django's test database exists) and the test Redis; yields once
    GET /healthz answers 200, stops the server (and its process group) on exit.

    With `channels_prefix`, the server's channel layer uses that Redis key prefix; send to
    it from the test under `override_settings(CHANNEL_LAYERS=prefixed_channel_layers(p))`.
    """
    port = free_port()
    if channels_prefix:
        env[_PREFIX_ENV] = channels_prefix
        app = ["--factory", "tests.asgi:application_with_channels_prefix"]
    else:
        app = ["config.asgi:application"]
    args = [
        sys.executable,
        "-m",
        "uvicorn",
        *app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        # Django's ASGI handler does not speak the lifespan protocol.
        "--lifespan",
        "off",
        "--log-level",
        "warning",
    ]
    with managed(f"asgi-{port}", args, ready=None, env=process_env(**env)) as proc:
        server = AsgiServer(port=port, process=proc)
        wait_for(lambda: _healthy(server), timeout=timeout, what=f"uvicorn on {port} /healthz")
        yield server


class HandshakeRefused(Exception):
    """The server refused the WebSocket handshake with this HTTP status."""

    def __init__(self, status: int) -> None:
        super().__init__(f"handshake refused with HTTP {status}")
        self.status = status


@dataclass
class WebSocketClient:
    """A WebSocket connection driven by an aiohttp client on a private thread; JSON
    frames are collected in `frames` (in arrival order) for the test to wait on."""

    frames: list[Any] = field(default_factory=list)
    close_code: int | None = None
    closed: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _send: Callable[[Any], None] | None = None

    def send_json(self, payload: Any) -> None:
        """Sends one JSON frame to the server (from the test's thread)."""
        assert self._send is not None, "not connected"
        self._send(payload)

    def _add(self, frame: Any) -> None:
        with self._lock:
            self.frames.append(frame)

    def snapshot(self) -> list[Any]:
        """A copy of the frames received so far."""
        with self._lock:
            return list(self.frames)

    def wait_frame(self, predicate: Callable[[Any], bool], *, timeout: float = 10.0) -> Any:
        """The first frame (of all received, in order) that matches; waits for it."""

        def found() -> Any:
            for frame in self.snapshot():
                if predicate(frame):
                    return frame
            if self.closed.is_set():
                raise AssertionError(f"socket closed ({self.close_code}) before the frame came")
            return None

        return wait_for(found, timeout=timeout, what="a matching WebSocket frame")

    def frames_before(self, predicate: Callable[[Any], bool]) -> list[Any]:
        """The frames received before the first one matching `predicate` (which must have
        arrived): what a marker frame proves has, or has not, come first."""
        frames = self.snapshot()
        for i, frame in enumerate(frames):
            if predicate(frame):
                return frames[:i]
        raise AssertionError("the marker frame has not arrived")


@contextmanager
def websocket(
    server: AsgiServer,
    path: str,
    *,
    session: str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 15.0,
) -> Iterator[WebSocketClient]:
    """Connects to `path` (with the session cookie, if given, and a valid Origin) and
    yields a client collecting frames. Raises HandshakeRefused if the server answers the
    handshake with an HTTP error."""
    sent = {"Origin": server.origin, **(headers or {})}
    if session:
        sent["Cookie"] = f"sessionid={session}"
    client = WebSocketClient()
    loop = asyncio.new_event_loop()
    connected: concurrent.futures.Future[None] = concurrent.futures.Future()
    stop = asyncio.Event()

    async def run() -> None:
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.ws_connect(f"{server.ws_url}{path}", headers=sent, max_msg_size=0) as ws,
            ):
                client._send = lambda payload: asyncio.run_coroutine_threadsafe(
                    ws.send_json(payload), loop
                ).result(timeout=5)
                connected.set_result(None)
                reader = asyncio.ensure_future(_read(ws, client))
                stopper = asyncio.ensure_future(stop.wait())
                await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
                for task in (reader, stopper):
                    task.cancel()
                await ws.close()
        except aiohttp.WSServerHandshakeError as exc:
            if not connected.done():
                connected.set_exception(HandshakeRefused(exc.status))
        except Exception as exc:
            if not connected.done():
                connected.set_exception(exc)
        finally:
            client.closed.set()

    thread = threading.Thread(target=loop.run_until_complete, args=(run(),), daemon=True)
    thread.start()
    try:
        connected.result(timeout=timeout)
        yield client
    finally:
        with suppress(RuntimeError):
            loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)
        loop.close()


async def _read(ws: aiohttp.ClientWebSocketResponse, client: WebSocketClient) -> None:
    async for message in ws:
        if message.type == aiohttp.WSMsgType.TEXT:
            client._add(message.json())
    client.close_code = ws.close_code
