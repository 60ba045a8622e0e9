"""Saving audited models with the actor and the reason in their history row."""

from typing import Any

from django.db import models


def save_audited(
    obj: models.Model,
    *,
    actor: Any,
    reason: str = "",
    update_fields: list[str] | None = None,
) -> None:
    """Saves `obj`; its django-simple-history row names `actor` (None: the system) and `reason`."""
    obj._history_user = actor if getattr(actor, "is_authenticated", False) else None  # type: ignore[attr-defined]
    obj._change_reason = reason  # type: ignore[attr-defined]
    obj.save(update_fields=update_fields)


def delete_audited(obj: models.Model, *, actor: Any, reason: str = "") -> None:
    """Deletes `obj`, leaving a history row that names `actor` and `reason`."""
    obj._history_user = actor if getattr(actor, "is_authenticated", False) else None  # type: ignore[attr-defined]
    obj._change_reason = reason  # type: ignore[attr-defined]
    obj.delete()
