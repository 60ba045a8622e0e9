"""Long-lived listeners: one stream of master events per shard, stored exactly once.

A shard is (broker server, index, count). With one shard per server the listener
uses the venue's manager view (`all=1`) and keeps only master accounts' events; with
several, each shard streams its share of the master accounts (by login hash).

Exactly-once storage rests on three things: a Redis lease (one running listener per
shard across all workers), the (venue, venue event id) unique constraint (a replay or
a racing listener inserts nothing new), and resuming from the last sequence stored.
After a `reset` or a gap the listener resynchronises from the REST snapshot and
stores the events the snapshot implies, marked synthetic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from asgiref.sync import sync_to_async
from django.db import InterfaceError, OperationalError, close_old_connections, connection
from django.db.models import F
from django.utils import timezone
from redis.exceptions import RedisError

from brokers.gateways.errors import GatewayError
from brokers.gateways.types import (
    AccountUpdate,
    ClosedPosition,
    CloseReason,
    Position,
    StreamEvent,
    StreamEventType,
)
from brokers.models import ListenerShard

from .choices import MasterEventType
from .leases import Lease
from .models import CopyMaster, MasterEvent
from .services.events import (
    SyntheticEvent,
    master_events_record,
    master_events_record_synthetic,
)

logger = logging.getLogger(__name__)

LEASE_TTL_MS = 10_000
HEARTBEAT_SECONDS = 2.0
MAX_BATCH = 500
BACKOFF_START = 0.1
BACKOFF_MAX = 10.0


def shard_lease_name(shard: ListenerShard) -> str:
    return f"shard:{shard.key}"


def shard_master_accounts(shard: ListenerShard) -> dict[int, int]:
    """{login: account id} of live master profiles on the shard's server and in its share."""
    rows = CopyMaster.objects.filter(account__broker_server_id=shard.broker_server_id).values_list(
        "account__login", "account_id"
    )
    return {
        login: account_id
        for login, account_id in rows
        if shard.shard_count == 1 or login % shard.shard_count == shard.shard_index
    }


def open_positions_from_events(account_id: int) -> dict[str, dict]:
    """The master's open positions as its stored events tell them: {position id: state}."""
    state: dict[str, dict] = {}
    events = (
        MasterEvent.objects.filter(account_id=account_id)
        .exclude(master_position_id="")
        .order_by("id")
        .values("event_type", "master_position_id", "volume", "remaining_volume", "sl", "tp")
    )
    for e in events:
        pid = e["master_position_id"]
        if e["event_type"] == MasterEventType.POSITION_OPENED:
            state[pid] = {"volume": e["volume"], "sl": e["sl"], "tp": e["tp"]}
        elif e["event_type"] == MasterEventType.POSITION_MODIFIED and pid in state:
            state[pid].update(sl=e["sl"], tp=e["tp"])
        elif e["event_type"] == MasterEventType.POSITION_CLOSED and pid in state:
            if e["remaining_volume"]:
                state[pid]["volume"] = e["remaining_volume"]
            else:
                del state[pid]
    return state


def _norm(value: Decimal | None) -> str:
    return "" if value is None else format(value.normalize(), "f")


def snapshot_diff(
    *, account_id: int, recorded: dict[str, dict], positions: list[Position], now: datetime
) -> list[SyntheticEvent]:
    """Events implied by the venue's open positions compared with what was recorded.

    Ids are derived from the position and its new state, so the same difference found
    twice is stored once.
    """
    events: list[SyntheticEvent] = []
    live = {p.position_id: p for p in positions}
    for pid, p in live.items():
        base = {
            "master_position_id": pid,
            "symbol": p.symbol,
            "side": str(p.side),
            "sl": p.sl,
            "tp": p.tp,
        }
        known = recorded.get(pid)
        if known is None:
            events.append(
                SyntheticEvent(
                    f"sync:{pid}:opened",
                    MasterEventType.POSITION_OPENED,
                    account_id,
                    {**base, "volume": p.volume, "price": p.open_price},
                    p.open_ts or now,
                )
            )
            continue
        if known["volume"] is not None and p.volume < known["volume"]:
            events.append(
                SyntheticEvent(
                    f"sync:{pid}:volume:{_norm(p.volume)}",
                    MasterEventType.POSITION_CLOSED,
                    account_id,
                    {**base, "volume": known["volume"] - p.volume, "remaining_volume": p.volume},
                    now,
                )
            )
        if (known["sl"], known["tp"]) != (p.sl, p.tp):
            events.append(
                SyntheticEvent(
                    f"sync:{pid}:sltp:{_norm(p.sl)}:{_norm(p.tp)}",
                    MasterEventType.POSITION_MODIFIED,
                    account_id,
                    {**base, "volume": p.volume},
                    now,
                )
            )
    for pid, known in recorded.items():
        if pid not in live:
            events.append(
                SyntheticEvent(
                    f"sync:{pid}:closed",
                    MasterEventType.POSITION_CLOSED,
                    account_id,
                    {
                        "master_position_id": pid,
                        "volume": known["volume"],
                        "remaining_volume": Decimal(0),
                        "sl": known["sl"],
                        "tp": known["tp"],
                    },
                    now,
                )
            )
    return events


def _fill_symbol_side(account_id: int, events: list[SyntheticEvent]) -> list[SyntheticEvent]:
    """Synthetic closes carry the symbol and side of the position's opening event."""
    needed = [e.fields["master_position_id"] for e in events if "symbol" not in e.fields]
    if not needed:
        return events
    opened = {
        row["master_position_id"]: row
        for row in MasterEvent.objects.filter(
            account_id=account_id,
            master_position_id__in=needed,
            event_type=MasterEventType.POSITION_OPENED,
        ).values("master_position_id", "symbol", "side")
    }
    result = []
    for e in events:
        if "symbol" not in e.fields and e.fields["master_position_id"] in opened:
            row = opened[e.fields["master_position_id"]]
            e = SyntheticEvent(
                e.venue_event_id,
                e.event_type,
                e.account_id,
                {**e.fields, "symbol": row["symbol"], "side": row["side"]},
                e.venue_ts,
            )
        result.append(e)
    return result


_MASTER_BOOK_EVENTS = (
    StreamEventType.POSITION_OPENED,
    StreamEventType.POSITION_CLOSED,
    StreamEventType.ORDER_FILLED,
)


def risk_work(
    events: list[StreamEvent], *, monitored: set[int], masters: dict[int, int], at: datetime
) -> dict[str, list] | None:
    """What of a stored batch the risk monitors need (None: nothing)."""
    readings: list[dict] = []
    master_logins: set[int] = set()
    stop_outs: list[dict] = []
    for event in events:
        login = event.account
        if login is None:
            continue
        data = event.data
        if event.type == StreamEventType.ACCOUNT_UPDATED:
            if login in monitored and isinstance(data, AccountUpdate) and data.equity is not None:
                readings.append(
                    {
                        "login": login,
                        "balance": str(data.balance if data.balance is not None else data.equity),
                        "equity": str(data.equity),
                        "margin": str(data.margin or 0),
                        "at": (event.ts or at).isoformat(),
                    }
                )
        elif event.type in _MASTER_BOOK_EVENTS and login in masters and login in monitored:
            master_logins.add(login)
        if (
            event.type == StreamEventType.POSITION_CLOSED
            and isinstance(data, ClosedPosition)
            and data.reason == CloseReason.STOP_OUT
            and login not in masters
        ):
            stop_outs.append(
                {
                    "login": login,
                    "position_id": data.position.position_id,
                    "price": str(data.close_price),
                    "profit": str(data.profit),
                }
            )
    if not (readings or master_logins or stop_outs):
        return None
    return {"readings": readings, "master_logins": sorted(master_logins), "stop_outs": stop_outs}


def _monitored_logins(server_id: int) -> set[int]:
    from risk.monitors import monitored_logins

    return monitored_logins(server_id=server_id)


def _enqueue_risk(server_id: int, work: dict[str, list]) -> None:
    from risk.tasks import monitor_accounts

    try:
        monitor_accounts.delay(
            server_id, work["readings"], work["master_logins"], work["stop_outs"]
        )
    except Exception as exc:  # the broker down: the listener must go on storing events
        logger.warning("risk monitor batch of server %s not queued: %s", server_id, exc)


class ShardListener:
    """Runs one shard: holds its lease, streams, stores, resynchronises, reports health.

    `run()` returns when asked to stop (`stop`), when `max_seconds` pass, or when the
    lease is lost to another holder; it returns at once if another holder has it.
    """

    def __init__(
        self,
        shard_id: int,
        *,
        max_seconds: float | None = None,
        stop: threading.Event | None = None,
        on_batch: Callable[[list[StreamEvent], float], None] | None = None,
    ) -> None:
        self.shard = ListenerShard.objects.select_related("broker_server").get(pk=shard_id)
        self.lease = Lease(shard_lease_name(self.shard), LEASE_TTL_MS)
        self.max_seconds = max_seconds
        self.stop = stop or threading.Event()
        self.on_batch = on_batch
        self.accounts: dict[int, int] = {}
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self._lost = False
        self._seen = 0
        self._resubscribe = False
        # Logins the risk monitors watch (risk.monitors.monitored_logins), refreshed with
        # the master accounts.
        self.monitored: set[int] = set()

    def _stream_logins(self) -> list[int]:
        """A sharded stream names its accounts: its masters and its share of the accounts
        the risk monitors watch."""
        n, i = self.shard.shard_count, self.shard.shard_index
        watched = {login for login in self.monitored if login % n == i}
        return sorted(set(self.accounts) | watched)

    # -- database work, run in a worker thread (the ORM is synchronous) --

    def _db(self, func: Callable, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        def call():  # type: ignore[no-untyped-def]
            close_old_connections()
            try:
                return func(*args, **kwargs)
            except (OperationalError, InterfaceError):
                # A terminated or broken connection: dropped now, so the next call (the
                # health update, the reconnect count) opens a fresh one instead of failing
                # on the dead one and ending the listener task.
                connection.close()
                raise

        return sync_to_async(call, thread_sensitive=True)()

    def _set_health(self, **fields: object) -> None:
        ListenerShard.objects.filter(pk=self.shard.pk).update(**fields)

    def _resync(self, gateway_positions: dict[int, list[Position]]) -> int:
        now = timezone.now()
        stored = 0
        for login, positions in gateway_positions.items():
            account_id = self.accounts[login]
            recorded = open_positions_from_events(account_id)
            events = snapshot_diff(
                account_id=account_id, recorded=recorded, positions=positions, now=now
            )
            events = _fill_symbol_side(account_id, events)
            stored += len(
                master_events_record_synthetic(
                    server_id=self.shard.broker_server_id, events=events, received_at=now
                )
            )
        ListenerShard.objects.filter(pk=self.shard.pk).update(resyncs=F("resyncs") + 1)
        return stored

    # -- the async loop --

    async def run(self) -> str:
        """Holds the shard until stopped; returns why it stopped."""
        if not await self._db(self.lease.acquire):
            return "busy"
        from brokers.gateways import gateway_for

        gateway = gateway_for(self.shard.broker_server)
        self.accounts = await self._db(shard_master_accounts, self.shard)
        self.monitored = await self._db(_monitored_logins, self.shard.broker_server_id)
        await self._db(self._set_health, worker=self.worker, heartbeat_at=timezone.now())
        keeper = asyncio.create_task(self._keep_lease())
        try:
            return await self._stream_forever(gateway, keeper)
        finally:
            keeper.cancel()
            await gateway.close()
            # Give the shard back even if the database or Redis is what ended the run (the
            # lease would otherwise block a new listener for its whole TTL).
            with contextlib.suppress(OperationalError, InterfaceError, RedisError):
                await self._db(self._set_health, connected=False)
            with contextlib.suppress(RedisError):
                await self._db(self.lease.release)

    async def _keep_lease(self) -> None:
        """Renews the lease, beats the heartbeat and refreshes the master accounts.

        Survives transient errors (Redis restarting, a database connection terminated): it
        logs and tries again at the next beat. Only a renewal that answers "not yours" stops
        the listener; a keeper that died silently would let the lease expire under a
        listener still streaming, and the supervisor would start a second one."""
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                held = await self._db(self.lease.renew)
            except Exception as exc:  # noqa: BLE001 - transient: keep beating
                logger.warning("listener %s: lease renewal failed: %s", self.shard.key, exc)
                continue
            if not held:
                logger.warning("listener %s lost its lease; stopping", self.shard.key)
                self._lost = True
                self.stop.set()
                return
            try:
                await self._refresh()
            except Exception as exc:  # noqa: BLE001 - transient: keep beating
                logger.warning("listener %s: heartbeat failed: %s", self.shard.key, exc)

    async def _refresh(self) -> None:
        accounts = await self._db(shard_master_accounts, self.shard)
        monitored = await self._db(_monitored_logins, self.shard.broker_server_id)
        before = self._stream_logins()
        self.accounts, self.monitored = accounts, monitored
        if self.shard.shard_count > 1 and self._stream_logins() != before:
            # This shard's stream names its accounts: a new or removed master (or
            # monitored follower) needs a new connection (it resumes from the last
            # sequence, so nothing is lost).
            self._resubscribe = True
        await self._db(self._set_health, heartbeat_at=timezone.now(), worker=self.worker)

    def _should_stop(self, started: float) -> bool:
        if self.stop.is_set():
            return True
        return self.max_seconds is not None and time.monotonic() - started > self.max_seconds

    async def _stream_forever(self, gateway, keeper: asyncio.Task) -> str:  # type: ignore[no-untyped-def]
        started = time.monotonic()
        backoff = BACKOFF_START
        first = True
        while not self._should_stop(started):
            try:
                await self._stream_once(gateway, started, resume=not first)
                backoff = BACKOFF_START
            except (
                TimeoutError,
                GatewayError,
                OSError,
                OperationalError,
                InterfaceError,
                RedisError,
            ) as exc:
                # A database or Redis error (a restart, a terminated connection) is handled
                # like a dropped stream: reconnect and resume from the last stored sequence.
                with contextlib.suppress(OperationalError, InterfaceError):
                    await self._db(self._set_health, connected=False, last_error=str(exc)[:500])
                logger.info("listener %s disconnected: %s", self.shard.key, exc)
            if self._should_stop(started):
                break
            first = False
            with contextlib.suppress(OperationalError, InterfaceError):
                await self._db(self._count_reconnect)
            # Exponential backoff with full jitter, so many listeners do not reconnect in step.
            await asyncio.sleep(random.uniform(0, backoff))  # noqa: S311 - jitter, not security
            backoff = min(backoff * 2, BACKOFF_MAX)
        return "lost" if self._lost else "stopped"

    def _count_reconnect(self) -> None:
        ListenerShard.objects.filter(pk=self.shard.pk).update(reconnects=F("reconnects") + 1)

    async def _stream_once(self, gateway, started: float, *, resume: bool) -> None:  # type: ignore[no-untyped-def]
        """One connection: read into a queue, store in batches, until it drops or we stop."""
        manager_view = self.shard.shard_count == 1
        accounts = None if manager_view else self._stream_logins()
        if accounts == []:
            # No master in this shard's share yet: nothing to stream until one appears.
            await self._db(self._set_health, connected=False, last_error="no masters in shard")
            while not self._should_stop(started) and not self._resubscribe:
                await asyncio.sleep(0.2)
            self._resubscribe = False
            return
        from_seq = self.shard.last_seq or None
        if resume and from_seq is None:
            from_seq = 0
        queue: asyncio.Queue[StreamEvent | BaseException] = asyncio.Queue()
        self._seen = self.shard.last_seq

        async def reader() -> None:
            try:
                # `async with` connects at once and closes the socket cleanly on the way out.
                async with gateway.stream(accounts=accounts, from_seq=from_seq) as events:
                    async for event in events:
                        queue.put_nowait(event)
                queue.put_nowait(GatewayError("unavailable", "stream ended"))
            except BaseException as exc:  # handed to the writer, which decides
                queue.put_nowait(exc)

        read_task = asyncio.create_task(reader())
        await self._db(self._set_health, connected=True, last_error="")
        try:
            while not self._should_stop(started):
                if self._resubscribe:
                    self._resubscribe = False
                    return
                try:
                    item = await asyncio.wait_for(queue.get(), timeout=1.0)
                except TimeoutError:
                    continue
                batch: list[StreamEvent] = []
                failure: BaseException | None = None
                for candidate in [item, *self._drain(queue)]:
                    if isinstance(candidate, BaseException):
                        failure = candidate
                        break
                    batch.append(candidate)
                if batch and await self._handle(gateway, batch, manager_view):
                    return  # resynchronised: reconnect from the new resume point
                if failure is not None:
                    raise failure
        finally:
            read_task.cancel()

    @staticmethod
    def _drain(queue: asyncio.Queue) -> list:
        items = []
        while len(items) < MAX_BATCH:
            try:
                items.append(queue.get_nowait())
            except asyncio.QueueEmpty:
                break
        return items

    async def _handle(self, gateway, batch: list[StreamEvent], manager_view: bool) -> bool:  # type: ignore[no-untyped-def]
        """Stores a batch; True when the stream must restart after a resync."""
        received_at = timezone.now()
        trade: list[StreamEvent] = []
        for event in batch:
            if event.type == StreamEventType.RESET:
                await self._store(trade, received_at)
                await self._resync_from_snapshot(gateway, reset_seq=event.seq)
                return True
            if event.type == StreamEventType.HEARTBEAT:
                continue
            if event.seq <= self._seen:
                continue  # already seen on this connection or stored before it
            if manager_view and self._seen and event.seq > self._seen + 1:
                # The manager view carries every venue sequence number: a hole means lost
                # events, so the snapshot is the only truth left.
                logger.warning(
                    "listener %s: gap after seq %s (got %s); resynchronising",
                    self.shard.key,
                    self._seen,
                    event.seq,
                )
                await self._store(trade, received_at)
                await self._resync_from_snapshot(gateway, reset_seq=event.seq - 1)
                return True
            self._seen = event.seq
            trade.append(event)
        await self._store(trade, received_at)
        await self._to_risk(trade, received_at)
        return False

    async def _store(self, events: list[StreamEvent], received_at: datetime) -> None:
        if not events:
            return
        await self._db(
            master_events_record,
            shard=self.shard,
            events=events,
            accounts_by_login=self.accounts,
            received_at=received_at,
        )
        committed = time.time() * 1000
        if self.on_batch is not None:
            self.on_batch(events, committed)

    async def _to_risk(self, events: list[StreamEvent], received_at: datetime) -> None:
        """Hands the risk monitors what they watch, after the events are stored: readings
        of monitored accounts, trade events of monitored masters (their open book
        changed), and every margin stop-out of a follower. One task per batch, none when
        the batch holds nothing of theirs."""
        work = risk_work(events, monitored=self.monitored, masters=self.accounts, at=received_at)
        if work is not None:
            await self._db(_enqueue_risk, self.shard.broker_server_id, work)

    async def _resync_from_snapshot(self, gateway, *, reset_seq: int) -> None:  # type: ignore[no-untyped-def]
        positions = {login: await gateway.list_positions(login) for login in self.accounts}
        stored = await self._db(self._resync, positions)
        logger.info("listener %s resynchronised: %s synthetic events", self.shard.key, stored)
        # What followers hold may have drifted too while the stream was away.
        from .tasks import reconcile_followers

        await self._db(reconcile_followers.delay)
        await self._db(self._move_to, reset_seq)

    def _move_to(self, seq: int) -> None:
        ListenerShard.objects.filter(pk=self.shard.pk).update(last_seq=seq)
        self.shard.last_seq = seq
        self._seen = seq
