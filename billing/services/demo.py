"""Fee schedules for the demo masters, so `make demo` shows fees from its first minutes."""

from __future__ import annotations

from decimal import Decimal as D

from copytrading.models import CopyMaster

from ..venue import GatewayVenue
from .accruals import fee_state_run, fee_states_ensure
from .schedules import fee_schedule_create

DEMO_SCHEDULES = [
    {"period": "monthly", "performance_pct": D("20"), "broker_share_pct": D("30")},
    {
        "period": "weekly",
        "performance_pct": D("25"),
        "management_pct": D("2"),
        "subscription_amount": D("10"),
        "broker_share_pct": D("20"),
    },
    {
        "period": "quarterly",
        "performance_pct": D("15"),
        "volume_per_lot": D("2"),
        "broker_share_pct": D("40"),
    },
]


def demo_fee_schedules(*, masters: list[CopyMaster]) -> None:
    """Gives each demo master a schedule (round-robin over DEMO_SCHEDULES) and accrues what
    is due at once (the subscription fee of the period started; the venue is asked
    nothing before a period ends)."""
    from django.utils import timezone

    from ..models import SubscriptionFeeState

    for i, master in enumerate(masters):
        fee_schedule_create(
            master=master, values=DEMO_SCHEDULES[i % len(DEMO_SCHEDULES)], actor=None
        )
    fee_states_ensure()
    now = timezone.now()
    for state_id in SubscriptionFeeState.objects.filter(
        subscription__master__in=masters
    ).values_list("id", flat=True):
        fee_state_run(state_id=state_id, as_of=now, venue=GatewayVenue())
