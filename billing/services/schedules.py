"""Fee caps, fee schedules (a new version per change) and which version a subscription
pays under."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Max

from config.history import save_audited
from copytrading.models import CopyMaster, CopySubscription

from ..choices import FeeKind
from ..errors import BillingError
from ..models import FeeCap, FeeSchedule, SubscriptionFeeState

SCHEDULE_FIELDS = (
    "period",
    "performance_pct",
    "management_pct",
    "subscription_amount",
    "volume_per_lot",
    "volume_per_million",
    "broker_share_pct",
    "ib_share_pct",
    "ib_account",
    "note",
)
# Which schedule figure each cap bounds, and whether the cap is a percentage or an amount.
CAPPED = {
    FeeKind.PERFORMANCE: [("performance_pct", "max_pct")],
    FeeKind.MANAGEMENT: [("management_pct", "max_pct")],
    FeeKind.SUBSCRIPTION: [("subscription_amount", "max_amount")],
    FeeKind.VOLUME: [("volume_per_lot", "max_amount"), ("volume_per_million", "max_amount")],
}


def fee_schedule_check(*, values: dict[str, Any]) -> None:
    """Refuses a schedule above the broker's caps or with an IB share but no IB account."""
    problems = []
    caps = {cap.kind: cap for cap in FeeCap.objects.all()}
    for kind, bounded in CAPPED.items():
        cap = caps.get(kind)
        if cap is None:
            continue
        for field, cap_field in bounded:
            limit = getattr(cap, cap_field)
            value = values.get(field)
            if limit is not None and value is not None and Decimal(value) > limit:
                unit = "%" if cap_field == "max_pct" else ""
                problems.append(
                    f"{field} {value}{unit} exceeds the broker's cap on the "
                    f"{kind.label.lower()} ({limit}{unit})"
                )
    if values.get("ib_share_pct") and not values.get("ib_account"):
        problems.append("ib_share_pct is set but no ib_account receives the rebate")
    if problems:
        raise BillingError("; ".join(problems) + ".")


@transaction.atomic
def fee_schedule_create(*, master: CopyMaster, values: dict[str, Any], actor: Any) -> FeeSchedule:
    """Makes the master's next schedule version. Existing versions are never edited, so
    each accrual keeps naming the figures it used. Guards: caps; versions numbered under
    the master's row lock."""
    unknown = set(values) - set(SCHEDULE_FIELDS)
    if unknown:
        raise BillingError(f"Unknown schedule fields: {', '.join(sorted(unknown))}.")
    fee_schedule_check(values=values)
    master = CopyMaster.all_objects.select_for_update().get(pk=master.pk)
    last = FeeSchedule.objects.filter(master=master).aggregate(v=Max("version"))["v"] or 0
    schedule = FeeSchedule(master=master, version=last + 1, **values)
    if getattr(actor, "is_authenticated", False):
        schedule.created_by = actor
    schedule.full_clean(exclude=["created_by"])
    save_audited(schedule, actor=actor, reason=f"fee schedule v{schedule.version}")
    return schedule


@transaction.atomic
def fee_cap_set(
    *, kind: str, max_pct: Decimal | None, max_amount: Decimal | None, actor: Any
) -> FeeCap:
    """Sets the broker's cap on one fee kind. It bounds schedules made from now on;
    existing versions keep their figures (a later version must respect the cap)."""
    cap = FeeCap.objects.select_for_update().filter(kind=kind).first() or FeeCap(kind=kind)
    cap.max_pct, cap.max_amount = max_pct, max_amount
    cap.full_clean()
    save_audited(cap, actor=actor, reason="fee cap set")
    return cap


@transaction.atomic
def fee_state_move(*, state: SubscriptionFeeState, schedule: FeeSchedule, actor: Any) -> None:
    """Operations move a subscription to another version of its master's schedule; it
    applies to accruals from now on (earlier ones keep naming their version)."""
    current = SubscriptionFeeState.objects.select_for_update().get(pk=state.pk)
    old = FeeSchedule.objects.get(pk=current.schedule_id)
    if schedule.master_id != old.master_id:
        raise BillingError("A subscription can only move to a version of its own master's fees.")
    current.schedule = schedule
    save_audited(
        current, actor=actor, reason=f"moved from fees v{old.version} to v{schedule.version}"
    )


def schedule_for_join(*, subscription: CopySubscription) -> FeeSchedule | None:
    """The version a subscription joins under: the master's latest made before it
    subscribed, else (fees set up later) the first one made after."""
    versions = FeeSchedule.objects.filter(master_id=subscription.master_id)
    before = versions.filter(created_at__lte=subscription.created_at).order_by("-version").first()
    return before or versions.order_by("version").first()
