"""Copying the master's open positions to a new subscriber (`copy_existing_positions`)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.db import transaction

from ..choices import MasterEventType
from ..listeners import open_positions_from_events
from ..models import CopySubscription, MasterEvent
from .fanout import EventRow, enqueue_execution, fanout_subscription_event, prefetch_quotes


def subscription_copy_existing(*, subscription_id: int) -> int:
    """Decides an open for each master position open now, for this subscription only, as
    the opening event marked `existing` (the decision opens only with the setting on).

    Guards: one instruction per (opening event, subscription) as always, so calling this
    twice copies nothing twice. Runs after the subscription's creation has committed.
    Returns how many instructions were made.
    """
    sub = (
        CopySubscription.objects.filter(pk=subscription_id, copy_existing_positions=True)
        .select_related("master", "follower", "follower_account__broker_server")
        .first()
    )
    if sub is None:
        return 0
    open_ids = list(open_positions_from_events(sub.master_account_id))
    if not open_ids:
        return 0
    openings = (
        MasterEvent.objects.filter(
            account_id=sub.master_account_id,
            event_type=MasterEventType.POSITION_OPENED,
            master_position_id__in=open_ids,
        )
        .select_related("account__broker_server")
        .order_by("id")
    )
    # The prices the pre-trade checks read, from the venues before the transaction.
    quotes: dict[Any, Any] = {}
    for event in openings:
        quotes.update(prefetch_quotes(EventRow.from_model(event)))
    ready: dict[int, list[int]] = defaultdict(list)
    made = 0
    with transaction.atomic():
        seen = set()
        for event in openings:
            if event.master_position_id in seen:
                continue
            seen.add(event.master_position_id)
            decided = fanout_subscription_event(event, sub, existing=True, quotes=quotes)
            for server_id, ids in decided.items():
                ready[server_id].extend(ids)
            made += 1
        if ready:
            transaction.on_commit(lambda: enqueue_execution(ready))
    return made
