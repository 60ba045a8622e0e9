"""Saving audited models with the actor and the reason in their history row."""

import functools
from collections.abc import Sequence
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


@functools.cache
def history_untracked_fields(model: type[models.Model]) -> frozenset[str] | None:
    """Names and attnames of `model`'s fields its django-simple-history does not keep
    (`excluded_fields`); None when the model keeps no history at all."""
    from simple_history.models import registered_models

    if registered_models.get(model._meta.db_table) is not model:
        return None
    kept = {f.name for f in model.history.model._meta.fields}  # type: ignore[attr-defined]
    return frozenset(
        name
        for f in model._meta.concrete_fields
        if f.name not in kept
        for name in (f.name, f.attname)
    )


def refuse_history_bypass(model: type[models.Model], columns: Sequence[str], write: str) -> None:
    """Raises ValueError when a write that records no history (a bulk INSERT, or an UPDATE
    of `columns`) would change what `model`'s history keeps. Hot-path helpers call this
    so that compliance history cannot be bypassed by accident (tests/security)."""
    untracked = history_untracked_fields(model)
    if untracked is None:
        return
    tracked = sorted(set(columns) - untracked) if write == "update" else ["(new rows)"]
    if tracked:
        raise ValueError(
            f"{model.__name__} keeps history: a bulk {write} of {tracked} would record none. "
            "Write it through a service (save_audited) or a history-aware bulk write."
        )
