"""Thin Celery wrappers around billing.services (names match the beat entries)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from celery import shared_task

from . import services
from .venue import GatewayVenue


@shared_task(name="billing.run")
def billing_run(as_of: str | None = None) -> dict[str, Any]:
    """Accrue, crystallise and settle what is due. `as_of` (ISO 8601) sets the clock."""
    when = datetime.fromisoformat(as_of) if as_of else None
    return services.billing_run(as_of=when)


@shared_task(name="billing.scan_cash")
def billing_scan_cash() -> int:
    return len(services.billing_scan_cash())


@shared_task(name="billing.unsubscribe")
def billing_unsubscribe(subscription_id: int) -> int:
    return len(services.billing_unsubscribe(subscription_id=subscription_id))


@shared_task(name="billing.settle")
def billing_settle(settlement_id: int) -> str:
    """Moves one settlement (a refund, say) as far as the venue allows now."""
    from .models import Settlement

    if not Settlement.objects.filter(pk=settlement_id).exists():
        return "gone"
    return services.settlement_execute(settlement_id=settlement_id, venue=GatewayVenue())
