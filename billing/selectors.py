"""Reads of billing: what a customer sees of its fees, schedules as published, statements."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db.models import F, Prefetch, Q, QuerySet

from accounts.models import Customer

from . import fees
from .choices import FeeKind
from .models import FeeAccrual, FeeSchedule


def accrual_list_touching(*, customer: Customer) -> QuerySet[FeeAccrual]:
    """Accruals where the customer owns the follower account (what it pays) or the master
    account (what it earns), newest first; one query with both logins."""
    return (
        FeeAccrual.objects.filter(
            Q(follower_account__customer=customer) | Q(master_account__customer=customer)
        )
        .annotate(
            master_login=F("master_account__login"), follower_login=F("follower_account__login")
        )
        .order_by("-id")
    )


def schedules_prefetch() -> Prefetch:
    """Each master's schedule versions, newest first (for `fee_schedule_items`)."""
    return Prefetch("fee_schedules", queryset=FeeSchedule.objects.order_by("-version"))


def fee_schedule_items(schedule: FeeSchedule | None) -> list[dict[str, Any]]:
    """The fees of a schedule version as the client API publishes them: one item per fee
    charged, `rate` as accruals store it (a fraction for performance and management, an
    amount per period, per lot, or per unit of notional); amounts are in the follower
    account's currency, so `currency` is null."""
    if schedule is None:
        return []
    items = [
        (FeeKind.PERFORMANCE, schedule.performance_pct / 100),
        (FeeKind.MANAGEMENT, schedule.management_pct / 100),
        (FeeKind.SUBSCRIPTION, schedule.subscription_amount),
        (FeeKind.VOLUME, schedule.volume_per_lot),
        (FeeKind.VOLUME, schedule.volume_per_million / fees.MILLION),
    ]
    return [
        {"kind": str(kind), "rate": rate, "currency": None}
        for kind, rate in items
        if rate > Decimal(0)
    ]
