"""Writes of the risk app."""

from typing import Any

from django.db import transaction
from django.utils import timezone

from config.history import save_audited

from .models import KillSwitch


@transaction.atomic
def kill_switch_set(*, active: bool, reason: str, actor: Any) -> KillSwitch:
    """Turns the platform-wide kill switch on or off. Guards: a reason is required, and from
    the moment this commits no new opening order is claimed (the engine reads the switch
    under the same FOR SHARE read as the subscription's status)."""
    if not reason.strip():
        raise ValueError("a reason is required to change the kill switch")
    switch, _ = KillSwitch.objects.select_for_update().get_or_create(pk=1)
    switch.active = active
    switch.reason = reason
    switch.changed_by = actor if getattr(actor, "is_authenticated", False) else None
    switch.changed_at = timezone.now()
    save_audited(switch, actor=actor, reason=reason)
    return switch
