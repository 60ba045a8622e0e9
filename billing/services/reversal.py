"""Compliance reverses an accrual: a new posting with the legs negated (never an edit), and
a refund on the venue of what the follower had paid of it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from ..choices import FeeAccrualStatus, SettlementStatus
from ..errors import BillingError
from ..models import FeeAccrual, FeeDebt, FeeReversal, SettlementLine
from .ledger import accrual_legs, ledger_post
from .settlement import refund_plan


@transaction.atomic
def fee_accrual_reverse(*, accrual: FeeAccrual, reason: str, actor: Any) -> FeeReversal:
    """Reverses an accrual: its legs posted negated, its open fee debt cancelled, and what
    the follower paid of it refunded on the venue (the master's and IB's shares taken
    back) by a refund settlement. Guards: a reason is required; once only; not while a
    settlement holding it is still moving money; the accrual's figures stay as they were
    (the database refuses edits) and its status says `reversed`; the high-water mark is
    left as it is (it never falls)."""
    if not reason.strip():
        raise BillingError("A reason is required to reverse an accrual.")
    accrual = (
        FeeAccrual.objects.select_for_update(of=("self",))
        .select_related("schedule", "follower_account", "master_account")
        .get(pk=accrual.pk)
    )
    if accrual.status == FeeAccrualStatus.REVERSED:
        raise BillingError(f"Accrual {accrual.pk} is reversed already.")
    lines = list(SettlementLine.objects.filter(accrual=accrual).select_related("settlement"))
    moving = [
        line.settlement for line in lines if line.settlement.status != SettlementStatus.SETTLED
    ]
    if moving:
        raise BillingError(
            f"Accrual {accrual.pk} is in settlement {moving[0].pk}, which is not final yet "
            f"({moving[0].get_status_display().lower()}): reverse it once the venue has "
            "confirmed that settlement."
        )
    txn = ledger_post(
        key=f"reversal:{accrual.pk}",
        memo=f"Reversal of accrual {accrual.pk}: {reason}",
        currency=accrual.currency,
        legs=[(account, -amount) for account, amount in accrual_legs(accrual)],
        accrual=accrual,
    )
    now = timezone.now()
    for debt in FeeDebt.objects.select_for_update().filter(accrual=accrual, remaining__gt=0):
        debt.remaining, debt.cleared_at = Decimal(0), now
        debt.save(update_fields=["remaining", "cleared_at"])
    paid = sum((line.paid for line in lines), Decimal(0))
    refund = None
    if paid > 0:
        refund = refund_plan(
            accrual=accrual,
            paid=paid,
            master=sum((line.master_share for line in lines), Decimal(0)),
            ib=sum((line.ib_share for line in lines), Decimal(0)),
        )
        from ..tasks import billing_settle

        transaction.on_commit(lambda: billing_settle.delay(refund.pk))
    accrual.status = FeeAccrualStatus.REVERSED
    accrual.save(update_fields=["status"])
    user = actor if getattr(actor, "is_authenticated", False) else None
    return FeeReversal.objects.create(
        accrual=accrual, reason=reason, actor=user, transaction=txn, refund=refund
    )
