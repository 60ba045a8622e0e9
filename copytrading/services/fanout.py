"""Fan-out: from a stored master event to one copy instruction per subscription.

A fan-out task first claims its events (pending -> started) with a conditional
update, so two tasks given the same event (a sweeper's re-enqueue, a redelivery)
do the work once; instructions are unique per (event, subscription) besides.
"""

from django.db import transaction
from django.utils import timezone

from ..choices import MasterEventFanoutState
from ..models import MasterEvent


def master_events_claim(*, event_ids: list[int]) -> list[int]:
    """Moves pending events to started; returns the ids this call claimed (in id order).

    Events already started by a task that then died stay `started`; the engine's own
    sweeper (fanout_recover) finishes them, since decisions are idempotent.
    """
    with transaction.atomic():
        claimed = list(
            MasterEvent.objects.select_for_update(skip_locked=True)
            .filter(id__in=event_ids, fanout_state=MasterEventFanoutState.PENDING)
            .order_by("id")
            .values_list("id", flat=True)
        )
        MasterEvent.objects.filter(id__in=claimed).update(
            fanout_state=MasterEventFanoutState.STARTED, fanout_started_at=timezone.now()
        )
    return claimed


def fanout_events(*, event_ids: list[int]) -> int:
    """Fans out each claimed event; returns how many events this call handled."""
    claimed = master_events_claim(event_ids=event_ids)
    if not claimed:
        return 0
    # The copy engine (decide, execute) plugs in here.
    MasterEvent.objects.filter(id__in=claimed).update(
        fanout_state=MasterEventFanoutState.DONE, fanout_done_at=timezone.now()
    )
    return len(claimed)
