"""Compliance reverses an accrual: a new posting with the legs negated, never an edit."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from ..choices import FeeAccrualStatus
from ..errors import BillingError
from ..models import FeeAccrual, FeeReversal, SettlementLine
from .ledger import accrual_legs, ledger_post


@transaction.atomic
def fee_accrual_reverse(*, accrual: FeeAccrual, reason: str, actor: Any) -> FeeReversal:
    """Reverses an accrual not yet taken into a settlement. Guards: a reason is required;
    once only; the accrual's figures stay as they were (the database refuses edits) and
    its status says `reversed`; the high-water mark is left as it is (it never falls)."""
    if not reason.strip():
        raise BillingError("A reason is required to reverse an accrual.")
    accrual = (
        FeeAccrual.objects.select_for_update(of=("self",))
        .select_related("schedule", "follower_account", "master_account")
        .get(pk=accrual.pk)
    )
    if accrual.status == FeeAccrualStatus.REVERSED:
        raise BillingError(f"Accrual {accrual.pk} is reversed already.")
    line = SettlementLine.objects.filter(accrual=accrual).select_related("settlement").first()
    if line is not None:
        raise BillingError(
            f"Accrual {accrual.pk} is in settlement {line.settlement_id} "
            f"({line.settlement.get_status_display().lower()}): money has moved or is moving "
            "on the venue, so reversing it needs a refund, which is not automated; "
            "refund by a balance operation and record it with the broker's adjustment process."
        )
    txn = ledger_post(
        key=f"reversal:{accrual.pk}",
        memo=f"Reversal of accrual {accrual.pk}: {reason}",
        currency=accrual.currency,
        legs=[(account, -amount) for account, amount in accrual_legs(accrual)],
        accrual=accrual,
    )
    accrual.status = FeeAccrualStatus.REVERSED
    accrual.save(update_fields=["status"])
    user = actor if getattr(actor, "is_authenticated", False) else None
    return FeeReversal.objects.create(accrual=accrual, reason=reason, actor=user, transaction=txn)
