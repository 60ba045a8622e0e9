"""Recording master events: each venue event stored once, fan-out enqueued after commit.

The stored event is the fan-out's outbox: it stays `pending` until a fan-out task
claims it, and `master_events_sweep` re-enqueues any pending event older than a few
seconds (a process that died between commit and enqueue), so no committed event is
ever left uncopied.
"""

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Count, Max
from django.utils import timezone

from brokers.gateways.types import (
    ClosedPosition,
    OrderFill,
    PendingOrder,
    Position,
    StreamEvent,
)
from brokers.models import ListenerShard
from config.bulk import cursor, insert_rows, insert_sql
from config.db import relax_commit

from ..choices import MasterEventFanoutState, MasterEventType
from ..models import MasterEvent

logger = logging.getLogger(__name__)

TRADE_EVENT_TYPES = {t.value for t in MasterEventType}
# A pending event older than this has lost its enqueue; the sweeper enqueues it again.
OUTBOX_GRACE = timedelta(seconds=3)
OUTBOX_BACKLOG_GRACE = timedelta(seconds=60)


def _enqueue_fanout(event_ids: list[int]) -> None:
    """Queues the fan-out of stored events. A broker that does not answer (Redis restarting)
    loses nothing: the events stay pending and `master_events_sweep` queues them again, so
    the caller (the listener) goes on storing events."""
    from ..tasks import fanout_events

    try:
        for start in range(0, len(event_ids), 100):
            fanout_events.delay(event_ids[start : start + 100])
    except Exception as exc:  # noqa: BLE001 - any broker failure: the outbox sweeper covers it
        logger.warning("fan-out of events %s..%s not queued: %s", event_ids[0], event_ids[-1], exc)


@dataclass(frozen=True, slots=True)
class SyntheticEvent:
    """An event the snapshot implies (it happened while the stream was away)."""

    venue_event_id: str
    event_type: str
    account_id: int
    fields: dict[str, Any]
    venue_ts: datetime


def _event_fields(event: StreamEvent) -> dict[str, Any]:
    data = event.data
    fields: dict[str, Any] = {}
    if isinstance(data, Position):
        fields.update(
            master_position_id=data.position_id,
            client_order_id=data.client_order_id or "",
            symbol=data.symbol,
            side=str(data.side),
            volume=data.volume,
            price=data.open_price,
            sl=data.sl,
            tp=data.tp,
        )
    elif isinstance(data, ClosedPosition):
        fields.update(
            master_position_id=data.position.position_id,
            symbol=data.position.symbol,
            side=str(data.position.side),
            volume=data.closed_volume,
            remaining_volume=data.remaining_volume,
            price=data.close_price,
            sl=data.position.sl,
            tp=data.position.tp,
            profit=data.profit,
            close_reason=str(data.reason),
        )
    elif isinstance(data, PendingOrder):
        fields.update(
            master_order_id=data.order_id,
            client_order_id=data.client_order_id or "",
            symbol=data.symbol,
            side=str(data.side),
            order_type=str(data.type),
            volume=data.volume,
            price=data.price,
            sl=data.sl,
            tp=data.tp,
        )
    elif isinstance(data, OrderFill):
        fields.update(
            master_order_id=data.order_id,
            master_position_id=data.position_id or "",
            symbol=data.symbol,
            side=str(data.side),
            volume=data.volume,
            price=data.price,
        )
    return fields


_COLUMNS = (
    "broker_server",
    "account",
    "venue_event_id",
    "venue_seq",
    "event_type",
    "synthetic",
    "master_position_id",
    "master_order_id",
    "client_order_id",
    "symbol",
    "side",
    "order_type",
    "volume",
    "remaining_volume",
    "price",
    "sl",
    "tp",
    "profit",
    "close_reason",
    "venue_ts",
    "received_at",
    "stored_at",
    "fanout_state",
    "raw",
)


def _full_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    stored_at = timezone.now()
    defaults = {
        "venue_seq": None,
        "synthetic": False,
        "master_position_id": "",
        "master_order_id": "",
        "client_order_id": "",
        "symbol": "",
        "side": "",
        "order_type": "",
        "volume": None,
        "remaining_volume": None,
        "price": None,
        "sl": None,
        "tp": None,
        "profit": None,
        "close_reason": "",
        "stored_at": stored_at,
        "fanout_state": MasterEventFanoutState.PENDING.value,
    }
    return [{**defaults, **row} for row in rows]


def _store(rows: list[dict[str, Any]]) -> list[int]:
    """Inserts rows of MasterEvent columns, skipping those stored before (the unique
    constraint); returns the ids this call inserted. Runs in the caller's transaction."""
    return insert_rows(MasterEvent, _full_rows(rows), columns=_COLUMNS)


# The shard's resume point moves in the same statement as the events' insert: one round
# trip, and no queryset (its Python costs more than the statement) on the listener's path.
_ADVANCE_SQL = (
    "UPDATE brokers_listenershard SET last_seq = GREATEST(last_seq, %b::bigint), "
    "last_event_at = %b::timestamptz, lag_ms = %b::float8 WHERE id = %b::bigint"
)


def _store_and_advance(
    rows: list[dict[str, Any]], *, shard_id: int, last_seq: int, lag_ms: float | None
) -> list[int]:
    advance = [last_seq, timezone.now(), lag_ms, shard_id]
    with cursor() as cur:
        if not rows:
            cur.execute(_ADVANCE_SQL, advance)
            return []
        sql, params = insert_sql(MasterEvent, _full_rows(rows), columns=_COLUMNS)
        cur.execute(f"WITH advance AS ({_ADVANCE_SQL}) {sql}", [*advance, *params])
        return sorted(row[0] for row in cur.fetchall())


def master_events_record(
    *,
    shard: ListenerShard,
    events: Sequence[StreamEvent],
    accounts_by_login: dict[int, int],
    received_at: datetime,
) -> list[int]:
    """Stores the trade events of master accounts in one transaction and moves the shard's
    resume point past every event seen (stored or not). Fan-out is enqueued after commit.

    Guards: an event already stored (a replay after reconnect, a racing listener) is
    skipped by the (venue, venue event id) unique constraint, and the shard's last_seq
    never moves backwards.
    """
    rows = []
    last_seq = shard.last_seq
    for event in events:
        last_seq = max(last_seq, event.seq)
        if event.type.value not in TRADE_EVENT_TYPES or event.account is None:
            continue
        account_id = accounts_by_login.get(event.account)
        if account_id is None:
            continue  # not a master account: not stored
        rows.append(
            {
                "broker_server_id": shard.broker_server_id,
                "account_id": account_id,
                "venue_event_id": str(event.seq),
                "venue_seq": event.seq,
                "event_type": event.type.value,
                "raw": event.raw,
                "venue_ts": event.ts or received_at,
                "received_at": received_at,
                **_event_fields(event),
            }
        )
    newest = events[-1].ts if events else None
    lag_ms = (timezone.now() - newest).total_seconds() * 1000 if newest else None
    with transaction.atomic():
        # The events and the shard's resume point commit together, so a commit lost in a
        # database crash loses both and the listener replays those events from the venue:
        # the wait for the WAL flush buys nothing here, and costs milliseconds per batch.
        relax_commit()
        pending = _store_and_advance(rows, shard_id=shard.pk, last_seq=last_seq, lag_ms=lag_ms)
        if pending:
            transaction.on_commit(lambda: _enqueue_fanout(pending))
    shard.last_seq = last_seq
    return pending


def master_events_record_synthetic(
    *, server_id: int, events: Iterable[SyntheticEvent], received_at: datetime
) -> list[int]:
    """Stores events implied by a snapshot after a reset or gap, marked synthetic.

    Their ids derive from what they describe (position and new state), so resyncing
    twice stores them once.
    """
    rows = [
        {
            "broker_server_id": server_id,
            "account_id": e.account_id,
            "venue_event_id": e.venue_event_id,
            "event_type": str(e.event_type),
            "synthetic": True,
            "raw": {"synthetic": True, **{k: _json(v) for k, v in e.fields.items()}},
            "venue_ts": e.venue_ts,
            "received_at": received_at,
            **e.fields,
        }
        for e in events
    ]
    with transaction.atomic():
        pending = _store(rows)
        if pending:
            transaction.on_commit(lambda: _enqueue_fanout(pending))
    return pending


def _json(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal) else value


def master_events_sweep(*, now: datetime | None = None) -> int:
    """Enqueues fan-out again for pending events older than the grace period; returns how
    many events were found.

    One task per master account, naming its newest pending event: a fan-out task handles
    every earlier pending event of that master first (in order, under the master's lock),
    so one task drains a master's whole backlog. A task per event (or per hundred) would
    only queue tasks that wait on that lock and then find nothing to do."""
    from config.redis import get_redis

    from ..tasks import fanout_events

    # While the fan-out queue has a backlog, a pending event may simply be waiting its
    # turn: re-enqueue only the ones that waited far longer, or the backlog would grow.
    backlog = get_redis().llen("fanout")
    grace = OUTBOX_GRACE if backlog == 0 else OUTBOX_BACKLOG_GRACE
    cutoff = (now or timezone.now()) - grace
    per_master = (
        MasterEvent.objects.filter(
            fanout_state=MasterEventFanoutState.PENDING, stored_at__lt=cutoff
        )
        .values("account_id")
        .annotate(newest=Max("id"), n=Count("id"))
        .order_by("account_id")
    )
    found = 0
    for row in per_master:
        fanout_events.delay([row["newest"]])
        found += row["n"]
    return found
