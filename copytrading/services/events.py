"""Recording master events: each venue event stored once, fan-out enqueued after commit.

The stored event is the fan-out's outbox: it stays `pending` until a fan-out task
claims it, and `master_events_sweep` re-enqueues any pending event older than a few
seconds (a process that died between commit and enqueue), so no committed event is
ever left uncopied.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from brokers.gateways.types import (
    ClosedPosition,
    OrderFill,
    PendingOrder,
    Position,
    StreamEvent,
)
from brokers.models import ListenerShard

from ..choices import MasterEventFanoutState, MasterEventType
from ..models import MasterEvent

TRADE_EVENT_TYPES = {t.value for t in MasterEventType}
# A pending event older than this has lost its enqueue; the sweeper enqueues it again.
OUTBOX_GRACE = timedelta(seconds=3)
OUTBOX_BACKLOG_GRACE = timedelta(seconds=60)


def _enqueue_fanout(event_ids: list[int]) -> None:
    from ..tasks import fanout_events

    for start in range(0, len(event_ids), 100):
        fanout_events.delay(event_ids[start : start + 100])


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


def _store(rows: list[MasterEvent], server_id: int) -> list[int]:
    """Inserts rows, skipping those stored before; returns ids of pending events among them."""
    if not rows:
        return []
    MasterEvent.objects.bulk_create(rows, ignore_conflicts=True)
    return list(
        MasterEvent.objects.filter(
            broker_server_id=server_id,
            venue_event_id__in=[r.venue_event_id for r in rows],
            fanout_state=MasterEventFanoutState.PENDING,
        ).values_list("id", flat=True)
    )


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
            MasterEvent(
                broker_server_id=shard.broker_server_id,
                account_id=account_id,
                venue_event_id=str(event.seq),
                venue_seq=event.seq,
                event_type=event.type.value,
                raw=dict(event.raw),
                venue_ts=event.ts or received_at,
                received_at=received_at,
                **_event_fields(event),
            )
        )
    with transaction.atomic():
        pending = _store(rows, shard.broker_server_id)
        ListenerShard.objects.filter(pk=shard.pk, last_seq__lt=last_seq).update(
            last_seq=last_seq, last_event_at=timezone.now()
        )
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
        MasterEvent(
            broker_server_id=server_id,
            account_id=e.account_id,
            venue_event_id=e.venue_event_id,
            venue_seq=None,
            event_type=e.event_type,
            synthetic=True,
            raw={"synthetic": True, **{k: _json(v) for k, v in e.fields.items()}},
            venue_ts=e.venue_ts,
            received_at=received_at,
            **e.fields,
        )
        for e in events
    ]
    with transaction.atomic():
        pending = _store(rows, server_id)
        if pending:
            transaction.on_commit(lambda: _enqueue_fanout(pending))
    return pending


def _json(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal) else value


def master_events_sweep(*, now: datetime | None = None) -> int:
    """Enqueues fan-out again for pending events older than the grace period; returns how many."""
    from config.redis import get_redis

    # While the fan-out queue has a backlog, a pending event may simply be waiting its
    # turn: re-enqueue only the ones that waited far longer, or the backlog would grow.
    backlog = get_redis().llen("fanout")
    grace = OUTBOX_GRACE if backlog == 0 else OUTBOX_BACKLOG_GRACE
    cutoff = (now or timezone.now()) - grace
    ids = list(
        MasterEvent.objects.filter(
            fanout_state=MasterEventFanoutState.PENDING, stored_at__lt=cutoff
        )
        .order_by("id")
        .values_list("id", flat=True)[:5000]
    )
    if ids:
        _enqueue_fanout(ids)
    return len(ids)
