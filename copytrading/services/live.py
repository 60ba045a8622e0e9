"""Live position push: trade link changes to Channels groups, for the live pages.

Guards: a push is best effort and never breaks copying. It runs after the change has
committed (the Celery task `copytrading.push_positions`), it never raises because the
channel layer is slow or down (it logs and returns 0), and a page that missed updates
converges from the database when it reconnects (the consumer sends a snapshot). A
customer's updates go only to the groups of its own trading accounts; everything goes
to staff in one batched message per push.

Groups are keyed by the trading account's primary key, not by its login: a login is
unique only per broker server, so two customers on two brokers may share one, and a
login-keyed group would hand one customer the other's positions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import BaseChannelLayer, get_channel_layer

from ..choices import TradeLinkStatus
from ..models import TradeLink

logger = logging.getLogger(__name__)

# Channels group names: ASCII alphanumerics, hyphens, underscores and periods, < 100 chars.
STAFF_GROUP = "live.positions.staff"

# The Channels message type; consumers handle it in `position_update`.
POSITION_UPDATE = "position.update"

# Group sends in flight at once on the push's event loop. The cost is Python (redis-py,
# msgpack), not Redis round trips: for a 1,000-link burst, 8 in flight was fastest of
# 1-64 (benchmarks/live_push_bench.py). redis-py's pool refuses a 101st connection, so
# keep this well under 100.
SEND_CONCURRENCY = 8

# One staff message carries at most this many links, so a huge push does not become one
# multi-megabyte WebSocket frame (a 1,000-fill burst is still a single message).
STAFF_BATCH_SIZE = 1000

# A push that takes longer than this is abandoned: a Redis that hangs must not hold a
# Celery worker, and the pages resync from the database anyway.
PUSH_TIMEOUT_SECONDS = 10.0

# The client API knows four link statuses; `opening` and `pending` are both "open" to it
# (a position or resting order that exists, or is about to). `state` keeps the detail.
_PUBLIC_STATUS = {
    TradeLinkStatus.OPENING: "open",
    TradeLinkStatus.PENDING: "open",
    TradeLinkStatus.OPEN: "open",
    TradeLinkStatus.CLOSED: "closed",
    TradeLinkStatus.FAILED: "failed",
    TradeLinkStatus.SKIPPED: "skipped",
}


def follower_group(account_id: int) -> str:
    """The group that gets updates of links whose follower is this trading account."""
    return f"live.positions.follower.{int(account_id)}"


def master_group(account_id: int) -> str:
    """The group that gets updates of links copying from this (master) trading account."""
    return f"live.positions.master.{int(account_id)}"


def _decimal(value: Decimal | None) -> str | None:
    # Fixed-point text, never exponent form ("1E+1") nor float.
    return None if value is None else format(value, "f")


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def link_payload(link: TradeLink) -> dict[str, Any]:
    """A trade link as the client API describes it (spec/client-api.md, "Trade link"),
    JSON-safe: Decimals as strings, times ISO 8601. `status` is one of the spec's four
    values; `state` is the internal status; `updated_at` lets a client drop an update
    older than one it already has (pushes from two workers may cross).

    Needs `master_account` and `follower_account` loaded (select_related) for the logins.
    """
    return {
        "id": link.id,
        "subscription_id": link.subscription_id,
        "master_login": link.master_account.login,
        "follower_login": link.follower_account.login,
        "master_position_id": link.master_position_id,
        "follower_position_id": link.follower_position_id,
        "symbol": link.symbol,
        "follower_symbol": link.follower_symbol,
        "side": link.side,
        "master_volume": _decimal(link.master_volume),
        "follower_volume": _decimal(link.follower_volume),
        "open_price": _decimal(link.open_price),
        "status": _PUBLIC_STATUS.get(link.status, link.status),
        "state": link.status,
        "reason": link.reason,
        "opened_at": _time(link.opened_at),
        "closed_at": _time(link.closed_at),
        "profit": _decimal(link.profit),
        "updated_at": _time(link.updated_at),
    }


def _messages(links: Iterable[TradeLink]) -> list[tuple[str, dict[str, Any]]]:
    """(group, message) pairs: each link to its follower and master groups, then the
    staff batches. Per-account messages carry `link`, staff messages carry `links`."""
    sends: list[tuple[str, dict[str, Any]]] = []
    staff: list[dict[str, Any]] = []
    for link in links:
        payload = link_payload(link)
        message = {"type": POSITION_UPDATE, "link": payload}
        sends.append((follower_group(link.follower_account_id), message))
        sends.append((master_group(link.master_account_id), message))
        staff.append(payload)
    for start in range(0, len(staff), STAFF_BATCH_SIZE):
        batch = staff[start : start + STAFF_BATCH_SIZE]
        sends.append((STAFF_GROUP, {"type": POSITION_UPDATE, "links": batch}))
    return sends


async def _send_all(layer: BaseChannelLayer, sends: list[tuple[str, dict[str, Any]]]) -> None:
    """Every group send on this one event loop (so one set of Redis connections), at
    most SEND_CONCURRENCY at a time. The first failure cancels the rest: a layer that
    refuses one send will refuse them all, and waiting for each would hold the worker."""
    async with asyncio.timeout(PUSH_TIMEOUT_SECONDS):
        for start in range(0, len(sends), SEND_CONCURRENCY):
            async with asyncio.TaskGroup() as tg:
                for group, message in sends[start : start + SEND_CONCURRENCY]:
                    tg.create_task(layer.group_send(group, message))


def positions_push(*, link_ids: list[int]) -> int:
    """Sends the current state of these trade links to their follower and master groups
    and, batched, to the staff group; returns how many links were pushed.

    Invariant: never raises because the channel layer is unavailable (copying goes on
    without it; pages resync from the database on reconnect): it logs a warning and
    returns 0. Links are read in one query; a link id that no longer exists is skipped.
    """
    if not link_ids:
        return 0
    layer = get_channel_layer()
    if layer is None:
        logger.debug("live push skipped: no channel layer configured")
        return 0
    links = list(
        TradeLink.objects.filter(id__in=set(link_ids))
        .select_related("master_account", "follower_account")
        .order_by("id")
    )
    if not links:
        return 0
    try:
        async_to_sync(_send_all)(layer, _messages(links))
    except Exception as exc:
        # Redis down, refusing, timing out or full: all mean the same here, so one
        # broad catch; the traceback would only add noise to a known outage.
        logger.warning(
            "live push of %d trade links dropped, channel layer unavailable: %s",
            len(links),
            _first_cause(exc),
        )
        return 0
    return len(links)


def _first_cause(exc: BaseException) -> str:
    # A TaskGroup wraps the failures in an ExceptionGroup; the first one says it all.
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, TimeoutError):
        return f"no answer within {PUSH_TIMEOUT_SECONDS} s"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# -- coalesced pushes from the copy pipeline ----------------------------------------------

# Link ids waiting for a push, and the marker of a push task queued to send them.
PENDING_KEY = "ct:live:pending"
QUEUED_KEY = "ct:live:queued"
# A queued push task lost (its worker died) stops holding the marker after this long.
QUEUED_TTL_SECONDS = 30
# What one push task sends at most before it hands the rest to a fresh task.
DRAIN_MAX_LINKS = 5000


def positions_push_soon(*, link_ids: list[int]) -> None:
    """Queues a live push of these links, coalesced with every other waiting push.

    The executors record a batch every few milliseconds under load; a push task per batch
    flooded the default queue (reconciliation and the sweepers wait behind it). Here the
    ids join one set in Redis, and a push task is queued only when none is queued yet: it
    sends everything waiting when it runs. Best effort, like every push: if Redis refuses,
    the pages resync from the database on reconnect."""
    from redis.exceptions import RedisError

    from config.redis import get_redis

    from ..tasks import push_positions

    if not link_ids:
        return
    try:
        pipe = get_redis().pipeline()
        pipe.sadd(PENDING_KEY, *link_ids)
        pipe.set(QUEUED_KEY, 1, nx=True, ex=QUEUED_TTL_SECONDS)
        _added, first = pipe.execute()
    except RedisError as exc:
        logger.warning("live push of %d trade links dropped: %s", len(link_ids), exc)
        return
    if first:
        push_positions.delay()


def positions_push_pending() -> int:
    """Pushes the links waiting in the coalesced set (the push task's work); returns how
    many were pushed. The marker is cleared first, so ids added while this runs queue a
    new task; more than DRAIN_MAX_LINKS waiting go to a fresh task."""
    from config.redis import get_redis

    from ..tasks import push_positions

    redis = get_redis()
    redis.delete(QUEUED_KEY)
    pushed = taken = 0
    while taken < DRAIN_MAX_LINKS:
        ids = redis.spop(PENDING_KEY, 1000)
        if not ids:
            return pushed
        taken += len(ids)
        pushed += positions_push(link_ids=sorted(int(i) for i in ids))
    if redis.scard(PENDING_KEY) and redis.set(QUEUED_KEY, 1, nx=True, ex=QUEUED_TTL_SECONDS):
        push_positions.delay()
    return pushed
