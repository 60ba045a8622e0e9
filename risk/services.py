"""Writes of the risk app."""

from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from config.history import save_audited

from .models import KillSwitch, ServerSwitch


@transaction.atomic
def kill_switch_set(*, active: bool, reason: str, actor: Any) -> KillSwitch:
    """Turns the platform-wide kill switch on or off. Guards: a reason is required, and from
    the moment this commits no new opening order is claimed (the engine reads the switch
    under the same FOR SHARE read as the subscription's status)."""
    if not reason.strip():
        raise ValueError("a reason is required to change the kill switch")
    switch, _ = KillSwitch.objects.select_for_update().get_or_create(pk=1)
    return _switch_save(switch, active=active, reason=reason, actor=actor)


def _switch_save(switch: Any, *, active: bool, reason: str, actor: Any) -> Any:
    """Sets a switch's state with who, when and why; its history row keeps the reason."""
    switch.active = active
    switch.reason = reason
    switch.changed_by = actor if getattr(actor, "is_authenticated", False) else None
    switch.changed_at = timezone.now()
    save_audited(switch, actor=actor, reason=reason)
    return switch


def server_switch_set(*, server: Any, active: bool, reason: str, actor: Any) -> ServerSwitch:
    """Turns the switch of one broker server on or off. Guards: a reason is required; from
    the moment this commits no new opening order is claimed for a follower on that server
    nor copied from a master on it (the engine reads the switch FOR SHARE with the
    subscriptions); closes always go through. Every change is kept in history."""
    if not reason.strip():
        raise ValueError("a reason is required to change a server switch")
    # The row exists (off) before it is turned on, committed on its own: turning it on is
    # then an UPDATE, which waits for a claim holding it FOR SHARE (an INSERT would not).
    if not ServerSwitch.objects.filter(broker_server_id=server.pk).exists():
        try:
            with transaction.atomic():
                save_audited(
                    ServerSwitch(broker_server_id=server.pk),
                    actor=actor,
                    reason="switch created (off)",
                )
        except IntegrityError:
            pass  # created meanwhile by another call: the unique row is there
    with transaction.atomic():
        switch = ServerSwitch.objects.select_for_update().get(broker_server=server)
        return _switch_save(switch, active=active, reason=reason, actor=actor)
