"""The paper venue's network face: REST and the WebSocket stream, on aiohttp.

Handlers are thin: parse, call the engine (synchronously, so a call is atomic),
answer. The stream never slows trading down: an event is appended to a
per-connection queue and a writer task per connection sends it; a client that
falls too far behind is dropped, never waited for.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import logging
import os
import signal
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from aiohttp import WSCloseCode, web

from brokers.paper.engine import (
    RETAIN_EVENTS,
    Engine,
    VenueConfig,
    VenueError,
    decode_json,
    encode_json,
    parse_int_param,
)

log = logging.getLogger("brokers.paper")

DEFAULT_API_KEY = "paper-dev-key"
HEARTBEAT_S = 5.0
FLUSH_S = 0.1
# Live events a stream may have queued before the client counts as too slow and is
# dropped (it can come back with from_seq and lose nothing still retained).
LIVE_BACKLOG = 50_000
MAX_BODY = 16 * 1024 * 1024
CLOSE_TIMEOUT_S = 1.0
_JSON = "application/json"


# --- options --------------------------------------------------------------------------


@dataclass(slots=True)
class VenueOptions:
    """Everything ``runvenue`` / ``python -m brokers.paper`` accepts."""

    port: int = 8700
    host: str = "127.0.0.1"
    platform: str = "MT5"
    symbol_suffix: str = ""
    min_volume: Decimal = Decimal("0.01")
    volume_step: Decimal = Decimal("0.01")
    max_volume: Decimal = Decimal("100")
    ticks_ms: int = 250
    seed: int = 1
    api_key: str = field(default_factory=lambda: os.environ.get("PAPER_VENUE_KEY", DEFAULT_API_KEY))
    retain_events: int = RETAIN_EVENTS
    log_level: str = "INFO"

    def config(self) -> VenueConfig:
        return VenueConfig(
            platform=self.platform,
            symbol_suffix=self.symbol_suffix,
            min_volume=self.min_volume,
            volume_step=self.volume_step,
            max_volume=self.max_volume,
            seed=self.seed,
            retain_events=self.retain_events,
        )


def _positive_decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except ArithmeticError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value.is_finite() or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number: {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def add_venue_arguments(parser: argparse.ArgumentParser) -> None:
    """The venue's options, shared by ``python -m brokers.paper`` and ``manage.py runvenue``."""
    defaults = VenueOptions()
    parser.add_argument(
        "--port",
        type=_non_negative_int,
        default=defaults.port,
        help="TCP port (0: any free port; the log line says which)",
    )
    parser.add_argument("--host", default=defaults.host, help="address to listen on")
    parser.add_argument(
        "--platform",
        default=defaults.platform,
        help="platform name the venue reports (MT4, MT5, cTrader...)",
    )
    parser.add_argument(
        "--symbol-suffix",
        default=defaults.symbol_suffix,
        help='suffix of every symbol name, e.g. "m" for EURUSDm',
    )
    parser.add_argument("--min-volume", type=_positive_decimal, default=defaults.min_volume)
    parser.add_argument("--volume-step", type=_positive_decimal, default=defaults.volume_step)
    parser.add_argument("--max-volume", type=_positive_decimal, default=defaults.max_volume)
    parser.add_argument(
        "--ticks-ms",
        type=_non_negative_int,
        default=defaults.ticks_ms,
        help="random-walk tick period; 0 turns the feed off",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=defaults.seed,
        help="seed of the price walk and of the fault injection",
    )
    parser.add_argument(
        "--api-key", default=None, help="API key (default: $PAPER_VENUE_KEY, else paper-dev-key)"
    )
    parser.add_argument(
        "--retain-events",
        type=_non_negative_int,
        default=RETAIN_EVENTS,
        help="events kept for replay (at least 100000 outside tests)",
    )
    parser.add_argument("--log-level", default="INFO",
                        choices=("DEBUG", "INFO", "WARNING", "ERROR"))  # fmt: skip


def options_from(values: dict[str, Any]) -> VenueOptions:
    """Build options from parsed arguments (argparse or Django's option dict)."""
    options = VenueOptions()
    for name in VenueOptions.__slots__:
        value = values.get(name)
        if value is not None:
            setattr(options, name, value)
    return options


def parse_args(argv: Sequence[str] | None = None) -> VenueOptions:
    parser = argparse.ArgumentParser(
        prog="python -m brokers.paper", description="Run the paper venue (a simulated broker)."
    )
    add_venue_arguments(parser)
    options = options_from(vars(parser.parse_args(argv)))
    try:
        options.config()
    except ValueError as exc:
        parser.error(str(exc))
    return options


# --- streams -----------------------------------------------------------------------------


class StreamConn:
    """One WebSocket client: what it follows, and what is waiting to be sent to it.

    ``cursor`` is the seq of the last event queued for this client: every event
    of its accounts up to it is in the queue or already sent, in order. The
    heartbeat carries it, so a client can resume from it.
    """

    __slots__ = ("number", "ws", "accounts", "queue", "wake", "cursor", "limit", "live", "label")

    def __init__(
        self, number: int, ws: web.WebSocketResponse, accounts: set[int] | None, label: str
    ) -> None:
        self.number = number
        self.ws = ws
        self.accounts = accounts
        self.queue: deque[str] = deque()
        self.wake = asyncio.Event()
        self.cursor = 0
        self.limit = LIVE_BACKLOG
        self.live = True
        self.label = label

    def push(self, seq: int, text: str) -> bool:
        """Queue an event; False when the client is too far behind to keep."""
        queue = self.queue
        queue.append(text)
        self.cursor = seq
        self.wake.set()
        return len(queue) <= self.limit


class Venue:
    """The running venue: the engine plus the streams and the background loops around it."""

    def __init__(self, options: VenueOptions) -> None:
        self.options = options
        self.engine = Engine(options.config())
        self.engine.listener = self._publish
        self.api_key = options.api_key
        self._bearer = f"Bearer {options.api_key}".encode()
        self._token = options.api_key.encode()
        self.streams: set[StreamConn] = set()
        self._all: set[StreamConn] = set()
        self._by_account: dict[int, set[StreamConn]] = {}
        self._numbers = 0
        # Transports already logged: one log line per client connection, not per request.
        self._seen: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()
        self._connections = 0
        self._tasks: list[asyncio.Task] = []
        self._closing: set[asyncio.Task] = set()

    # --- auth ---------------------------------------------------------------------------

    def authorized(self, request: web.Request, *, allow_token: bool) -> bool:
        header = request.headers.get("Authorization")
        if header is not None and hmac.compare_digest(header.encode(), self._bearer):
            return True
        if allow_token:
            token = request.query.get("token")
            if token is not None and hmac.compare_digest(token.encode(), self._token):
                return True
        return False

    def note_connection(self, request: web.Request, *, is_stream: bool) -> None:
        transport = request.transport
        if transport is None or transport in self._seen:
            return
        self._seen.add(transport)
        self._connections += 1
        if not is_stream:  # a stream logs its own line, with what it follows
            peer = transport.get_extra_info("peername")
            log.info("connection #%d from %s", self._connections, _peer(peer))

    # --- fan-out ---------------------------------------------------------------------

    def _publish(self, seq: int, login: int | None, text: str) -> None:
        """Queue one event for every stream following its account. Never blocks."""
        slow: list[StreamConn] = []
        for conn in self._all:
            if not conn.push(seq, text):
                slow.append(conn)
        if login is not None:
            followers = self._by_account.get(login)
            if followers:
                for conn in followers:
                    if not conn.push(seq, text):
                        slow.append(conn)
        if slow:
            # Dropped after the loops: dropping edits the sets being walked.
            for conn in slow:
                log.warning("stream #%d (%s) dropped: too slow", conn.number, conn.label)
                self.drop(conn, WSCloseCode.TRY_AGAIN_LATER, b"too slow: reconnect with from_seq")

    def subscribe(
        self, ws: web.WebSocketResponse, accounts: set[int] | None, from_seq: int | None, label: str
    ) -> StreamConn:
        """Register a stream and queue its replay, in one synchronous step.

        Nothing can be emitted between the replay snapshot and the registration,
        so the client gets every event after ``from_seq`` exactly once.
        """
        self._numbers += 1
        conn = StreamConn(self._numbers, ws, accounts, label)
        engine = self.engine
        if from_seq is None:
            conn.cursor = engine.seq
        else:
            replay = engine.events_since(from_seq, accounts)
            if replay is None:
                conn.cursor = engine.seq
                conn.queue.append(
                    encode_json(
                        {
                            "seq": engine.seq,
                            "type": "reset",
                            "account": None,
                            "ts": engine.now_ms(),
                            "data": {},
                        }
                    )
                )
            else:
                conn.cursor = replay[-1][0] if replay else from_seq
                conn.queue.extend(text for _seq, text in replay)
                conn.limit = len(replay) + LIVE_BACKLOG
        self.streams.add(conn)
        if accounts is None:
            self._all.add(conn)
        else:
            for login in accounts:
                self._by_account.setdefault(login, set()).add(conn)
        if conn.queue:
            conn.wake.set()
        return conn

    def unsubscribe(self, conn: StreamConn) -> None:
        if not conn.live:
            return
        conn.live = False
        self.streams.discard(conn)
        self._all.discard(conn)
        if conn.accounts is not None:
            for login in conn.accounts:
                followers = self._by_account.get(login)
                if followers is not None:
                    followers.discard(conn)
                    if not followers:
                        del self._by_account[login]
        conn.wake.set()

    def drop(self, conn: StreamConn, code: int, message: bytes) -> None:
        """Stop feeding a stream at once and close it with ``code`` in the background."""
        self.unsubscribe(conn)
        conn.queue.clear()
        task = asyncio.get_running_loop().create_task(_close_ws(conn.ws, code, message))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def drop_all(self, code: int, message: bytes) -> int:
        conns = list(self.streams)
        for conn in conns:
            self.drop(conn, code, message)
        return len(conns)

    def heartbeat(self) -> None:
        now = self.engine.now_ms()
        for conn in list(self.streams):
            conn.queue.append(
                encode_json(
                    {
                        "seq": conn.cursor,
                        "type": "heartbeat",
                        "account": None,
                        "ts": now,
                        "data": {},
                    }
                )
            )
            conn.wake.set()

    # --- background loops ---------------------------------------------------------

    async def _every(self, period: float, action: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += period
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            try:
                action()
            except Exception:
                log.exception("background step %s failed", getattr(action, "__name__", action))

    def start_background(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._every(HEARTBEAT_S, self.heartbeat)))
        self._tasks.append(
            loop.create_task(self._every(FLUSH_S, self.engine.flush_account_updates))
        )
        if self.options.ticks_ms:
            self._tasks.append(
                loop.create_task(self._every(self.options.ticks_ms / 1000.0, self.engine.tick))
            )

    async def shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        self.drop_all(WSCloseCode.GOING_AWAY, b"venue shutting down")
        if self._closing:
            await asyncio.wait(list(self._closing), timeout=CLOSE_TIMEOUT_S * 2)

    def reset(self) -> None:
        """Admin reset: the engine forgets everything, so every stream must resynchronise."""
        self.drop_all(WSCloseCode.SERVICE_RESTART, b"venue reset: resynchronise")
        self.engine.reset()


def _peer(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


async def _close_ws(ws: web.WebSocketResponse, code: int, message: bytes) -> None:
    # A client that does not answer the close frame in time just loses its socket.
    with contextlib.suppress(TimeoutError, ConnectionError, RuntimeError):
        await asyncio.wait_for(ws.close(code=code, message=message), CLOSE_TIMEOUT_S)


async def _stream_writer(conn: StreamConn) -> None:
    """Send a stream's queue, in order, as fast as the client reads it."""
    ws = conn.ws
    queue = conn.queue
    wake = conn.wake
    try:
        while conn.live:
            await wake.wait()
            wake.clear()
            while queue and conn.live:
                await ws.send_str(queue.popleft())
    except (ConnectionError, RuntimeError):
        # The client went away mid-send; the reader side notices and cleans up.
        pass


# --- HTTP helpers ------------------------------------------------------------------------

VENUE_KEY: web.AppKey[Venue] = web.AppKey("venue", Venue)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=encode_json(data).encode(), status=status, content_type=_JSON)


def _error(code: str, message: str) -> web.Response:
    error = VenueError(code, message)
    return _json(error.as_dict(), error.status)


async def _body(request: web.Request) -> Any:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise VenueError("VALIDATION_ERROR", f"body: larger than {MAX_BODY} bytes") from None
    if not raw:
        raise VenueError("VALIDATION_ERROR", "body: a JSON object is required")
    return decode_json(raw)


def _path_int(request: web.Request, name: str) -> int:
    return parse_int_param(request.match_info.get(name), name)


_HTTP_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}


@web.middleware
async def _venue_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Auth, error mapping, injected latency and the log line of every refused call."""
    venue = request.app[VENUE_KEY]
    is_stream = request.path == "/v1/stream"
    venue.note_connection(request, is_stream=is_stream)
    if not venue.authorized(request, allow_token=is_stream):
        response = _error("UNAUTHORIZED", "Authorization: a valid 'Bearer <key>' is required")
    else:
        try:
            response = await handler(request)
        except VenueError as exc:
            response = _json(exc.as_dict(), exc.status)
        except web.HTTPException as exc:
            code = _HTTP_CODES.get(exc.status, "VALIDATION_ERROR")
            message = f"{request.method} {request.path}: {exc.reason}"
            response = _json({"error": code, "message": message}, exc.status)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            response = _json({"error": "INTERNAL", "message": "internal error"}, 500)
        if is_stream and isinstance(response, web.WebSocketResponse):
            return response
    if response.status >= 400:
        body = getattr(response, "body", b"")
        text = body[:300].decode(errors="replace") if isinstance(body, bytes) else ""
        log.info(
            "refused %s %s -> %d %s", request.method, request.path_qs[:200], response.status, text
        )
    latency = venue.engine.faults.latency_ms
    if latency:
        await asyncio.sleep(latency / 1000.0)
    return response


# --- REST handlers -----------------------------------------------------------------------


def _engine(request: web.Request) -> Engine:
    return request.app[VENUE_KEY].engine


async def info(request: web.Request) -> web.Response:
    return _json(_engine(request).info())


async def create_account(request: web.Request) -> web.Response:
    created, account = _engine(request).create_account(await _body(request))
    return _json(account, 201 if created else 200)


async def get_account(request: web.Request) -> web.Response:
    return _json(_engine(request).get_account(_path_int(request, "login")))


async def patch_account(request: web.Request) -> web.Response:
    login = _path_int(request, "login")
    return _json(_engine(request).patch_account(login, await _body(request)))


async def balance_operation(request: web.Request) -> web.Response:
    login = _path_int(request, "login")
    engine, body = _engine(request), await _body(request)
    created, answer = _order_call(engine, lambda: engine.balance_operation(login, body))
    return _json(answer, 201 if created else 200)


async def list_positions(request: web.Request) -> web.Response:
    return _json(_engine(request).list_positions(_path_int(request, "login")))


async def list_orders(request: web.Request) -> web.Response:
    return _json(_engine(request).list_orders(_path_int(request, "login")))


async def list_deals(request: web.Request) -> web.Response:
    login = _path_int(request, "login")
    raw = request.query.get("from_ts")
    from_ts = None
    if raw:
        try:
            from_ts = float(raw)
        except ValueError:
            raise VenueError("VALIDATION_ERROR", "from_ts: must be a number") from None
        if from_ts != from_ts or from_ts in (float("inf"), float("-inf")):
            raise VenueError("VALIDATION_ERROR", "from_ts: must be a finite number")
    return _json(_engine(request).list_deals(login, from_ts))


async def list_symbols(request: web.Request) -> web.Response:
    return _json(_engine(request).list_symbols())


async def get_price(request: web.Request) -> web.Response:
    return _json(_engine(request).get_price(request.match_info["symbol"]))


async def admin_prices(request: web.Request) -> web.Response:
    return _json(_engine(request).admin_set_price(await _body(request)))


async def admin_symbol(request: web.Request) -> web.Response:
    name = request.match_info["symbol"]
    return _json(_engine(request).admin_set_symbol(name, await _body(request)))


def _unavailable(when: str) -> VenueError:
    return VenueError("UNAVAILABLE", f"venue unavailable (injected, {when} acting): retry")


def _order_call(engine: Engine, call: Callable[[], tuple[bool, dict]]) -> tuple[bool, dict]:
    """Run one order-like call under the injected faults (rate limit, 503 before/after)."""
    engine.check_rate_limit()
    when = engine.draw_error()
    if when == "before":
        raise _unavailable(when)
    if when == "after":
        with contextlib.suppress(VenueError):
            call()
        raise _unavailable(when)
    return call()


async def place_order(request: web.Request) -> web.Response:
    engine = _engine(request)
    body = await _body(request)
    created, answer = _order_call(engine, lambda: engine.place_order(body))
    return _json(answer, 201 if created else 200)


async def place_batch(request: web.Request) -> web.Response:
    engine = _engine(request)
    orders = engine.parse_batch(await _body(request))
    results: list[dict] = []
    append = results.append
    place = engine.place_order
    refused = 0
    for item in orders:
        try:
            append(_order_call(engine, lambda item=item: place(item))[1])
        except VenueError as exc:
            refused += 1
            append(exc.as_dict())
    if refused:
        log.info("batch of %d: %d refused", len(orders), refused)
    return _json({"results": results})


async def close_position(request: web.Request) -> web.Response:
    engine = _engine(request)
    position_id = _path_int(request, "position_id")
    body = await _body(request)
    created, answer = _order_call(engine, lambda: engine.close_position(position_id, body))
    return _json(answer, 201 if created else 200)


async def modify_position(request: web.Request) -> web.Response:
    position_id = _path_int(request, "position_id")
    return _json(_engine(request).modify_position(position_id, await _body(request)))


async def cancel_order(request: web.Request) -> web.Response:
    order_id = _path_int(request, "order_id")
    login = parse_int_param(request.query.get("account"), "account")
    return _json(_engine(request).cancel_order(order_id, login))


async def admin_faults(request: web.Request) -> web.Response:
    venue = request.app[VENUE_KEY]
    faults, drop = venue.engine.set_faults(await _body(request))
    if drop:
        dropped = venue.drop_all(WSCloseCode.GOING_AWAY, b"dropped (fault injection)")
        log.info("fault injection: dropped %d streams", dropped)
    return _json(faults)


async def admin_stats(request: web.Request) -> web.Response:
    venue = request.app[VENUE_KEY]
    return _json({**venue.engine.stats(), "streams": len(venue.streams)})


async def admin_reset(request: web.Request) -> web.Response:
    venue = request.app[VENUE_KEY]
    venue.reset()
    log.info("admin reset: all state cleared")
    return _json({"reset": True, **venue.engine.stats(), "streams": 0})


# --- the stream ----------------------------------------------------------------------------


def _stream_query(request: web.Request) -> tuple[set[int] | None, int | None]:
    query = request.query
    every = query.get("all")
    if every not in (None, "", "0", "1", "true", "false"):
        raise VenueError("VALIDATION_ERROR", "all: must be 1 (or true)")
    follow_all = every in ("1", "true")
    raw_accounts = query.get("accounts")
    accounts: set[int] | None = None
    if raw_accounts:
        accounts = set()
        for part in raw_accounts.split(","):
            accounts.add(parse_int_param(part.strip(), "accounts"))
    elif not follow_all:
        raise VenueError("VALIDATION_ERROR", "accounts: give accounts=<login,...> or all=1")
    raw_from = query.get("from_seq")
    from_seq = None if raw_from is None else parse_int_param(raw_from, "from_seq")
    if follow_all:
        return None, from_seq
    return accounts, from_seq


async def stream(request: web.Request) -> web.StreamResponse:
    venue = request.app[VENUE_KEY]
    accounts, from_seq = _stream_query(request)
    if accounts is not None:
        for login in sorted(accounts):
            if login not in venue.engine.accounts:
                raise VenueError("ACCOUNT_NOT_FOUND", f"accounts: no account {login}")
    ws = web.WebSocketResponse(compress=False, timeout=CLOSE_TIMEOUT_S, max_msg_size=65536)
    if not ws.can_prepare(request).ok:
        raise VenueError("VALIDATION_ERROR", "upgrade: /v1/stream needs a WebSocket handshake")
    label = "all" if accounts is None else ",".join(map(str, sorted(accounts)))[:200]
    # Subscribe before the handshake completes: an event emitted while it is being
    # written is already queued for this client.
    conn = venue.subscribe(ws, accounts, from_seq, label)
    peer = _peer(request.transport.get_extra_info("peername") if request.transport else None)
    log.info(
        "stream #%d from %s: accounts=%s from_seq=%s (%d queued)",
        conn.number, peer, label, from_seq, len(conn.queue),
    )  # fmt: skip
    writer = None
    try:
        await ws.prepare(request)
        writer = asyncio.get_running_loop().create_task(_stream_writer(conn))
        async for _message in ws:
            pass  # the stream is one-way; pings are answered by aiohttp
    finally:
        venue.unsubscribe(conn)
        if writer is not None:
            writer.cancel()
    return ws


def make_app(venue: Venue) -> web.Application:
    """The aiohttp application for one venue."""
    app = web.Application(middlewares=[_venue_middleware], client_max_size=MAX_BODY)
    app[VENUE_KEY] = venue
    add = app.router.add_route
    add("GET", "/v1/info", info)
    add("POST", "/v1/accounts", create_account)
    add("GET", "/v1/accounts/{login}", get_account)
    add("PATCH", "/v1/accounts/{login}", patch_account)
    add("POST", "/v1/accounts/{login}/balance", balance_operation)
    add("GET", "/v1/accounts/{login}/positions", list_positions)
    add("GET", "/v1/accounts/{login}/orders", list_orders)
    add("GET", "/v1/accounts/{login}/deals", list_deals)
    add("GET", "/v1/symbols", list_symbols)
    add("GET", "/v1/prices/{symbol}", get_price)
    add("POST", "/v1/orders", place_order)
    add("POST", "/v1/orders/batch", place_batch)
    add("DELETE", "/v1/orders/{order_id}", cancel_order)
    add("POST", "/v1/positions/{position_id}/close", close_position)
    add("PATCH", "/v1/positions/{position_id}", modify_position)
    add("GET", "/v1/stream", stream)
    add("POST", "/v1/admin/prices", admin_prices)
    add("POST", "/v1/admin/symbols/{symbol}", admin_symbol)
    add("POST", "/v1/admin/faults", admin_faults)
    add("GET", "/v1/admin/stats", admin_stats)
    add("POST", "/v1/admin/reset", admin_reset)
    return app


# --- process ---------------------------------------------------------------------------------


def _install_fast_loop() -> None:
    # uvloop comes with uvicorn[standard] (already a dependency); it roughly halves
    # the per-request cost on loopback. The venue works without it.
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def serve(options: VenueOptions, stop: asyncio.Event | None = None) -> None:
    """Run a venue until SIGINT/SIGTERM (or ``stop`` is set), then close every stream cleanly."""
    started = time.monotonic()
    venue = Venue(options)
    runner = web.AppRunner(make_app(venue), access_log=None, shutdown_timeout=CLOSE_TIMEOUT_S)
    await runner.setup()
    site = web.TCPSite(runner, options.host, options.port, backlog=1024, reuse_address=True)
    await site.start()
    venue.start_background()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    cfg = venue.engine.config
    log.info(
        "paper venue listening on http://%s:%d (platform %s, suffix %r, volume %s..%s step %s, "
        "ticks %d ms, seed %d, started in %.2f s)",
        options.host, site.port, cfg.platform, cfg.symbol_suffix, cfg.min_volume,
        cfg.max_volume, cfg.volume_step, options.ticks_ms, cfg.seed, time.monotonic() - started,
    )  # fmt: skip
    try:
        await stop.wait()
    finally:
        log.info("paper venue stopping: closing %d streams", len(venue.streams))
        await venue.shutdown()
        await runner.cleanup()
        log.info("paper venue stopped")


def run(options: VenueOptions) -> None:
    """Blocking entry point: configure logging, run the venue until a signal stops it."""
    logging.basicConfig(
        level=getattr(logging, options.log_level, logging.INFO),
        format="%(asctime)s %(levelname)s paper-venue: %(message)s",
    )
    _install_fast_loop()
    asyncio.run(serve(options))


def main(argv: Sequence[str] | None = None) -> None:
    run(parse_args(argv))
