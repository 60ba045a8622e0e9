"""Settlement: collect from the follower's account, pay the master and the IB, on the venue.

A settlement moves through planned -> collecting -> paying -> settled; a payout the venue
refuses (a refund's claw-back from a master without the margin) makes it `failed`, with
the venue's reason, retried each run until the venue confirms it (`_pay`). Each move of money
is first recorded as a BalanceOp with its client op id (`fee-<settlement>-<attempt>-<role>`),
committed, then sent to the venue outside any transaction, then its outcome recorded
(STYLE: no network inside a transaction). An outcome that is unknown (a timeout, a 503
that may have acted) is retried later under the same id after looking for it in the
account's deals, so the venue applies it once; a new attempt with a new id is made only
after the venue refused the previous one. The settlement is final only when the venue
has confirmed every operation. One executor at a time per settlement (a PostgreSQL
advisory lock, held only while it runs).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import F, QuerySet, Sum
from django.utils import timezone

from brokers.gateways.errors import RETRYABLE_REASONS, GatewayError, GatewayReason
from brokers.gateways.types import DealEntry

from .. import fees
from ..choices import (
    BalanceOpRole,
    BalanceOpStatus,
    FeeAccrualStatus,
    LedgerAccountKind,
    SettlementReason,
    SettlementStatus,
)
from ..models import BalanceOp, FeeAccrual, FeeDebt, Settlement, SettlementLine
from ..venue import Venue
from .ledger import ledger_account, ledger_post

logger = logging.getLogger(__name__)

_LOCK_NAMESPACE = 0x0B11  # advisory lock class of billing settlements
# Whose ledger account a balance operation settles.
_PARTY_ACCOUNT = {
    BalanceOpRole.FOLLOWER: LedgerAccountKind.FOLLOWER_RECEIVABLE,
    BalanceOpRole.MASTER: LedgerAccountKind.MASTER_PAYABLE,
    BalanceOpRole.IB: LedgerAccountKind.IB_PAYABLE,
}
MAX_FOLLOWER_ATTEMPTS = 3
Kind = LedgerAccountKind


@contextmanager
def _executor_lock(settlement_id: int) -> Iterator[bool]:
    with connection.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(%s, %s)", [_LOCK_NAMESPACE, settlement_id])
        got = cur.fetchone()[0]
    try:
        yield got
    finally:
        if got:
            with connection.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s, %s)", [_LOCK_NAMESPACE, settlement_id])


def op_id(settlement: Settlement, attempt: int, role: str, suffix: str = "") -> str:
    return f"fee-{settlement.pk}-{attempt}-{role}{suffix}"


def refund_plan(*, accrual: FeeAccrual, paid: Decimal, master: Decimal, ib: Decimal) -> Settlement:
    """A reversed accrual that was (partly) paid: give the follower back what it paid and
    take back the master's and IB's shares of it, as a settlement that starts paying
    (inside the reversal's transaction)."""
    s = Settlement.objects.create(
        key=f"refund:{accrual.pk}",
        reason=SettlementReason.REFUND,
        follower_account_id=accrual.follower_account_id,
        subscription_id=accrual.subscription_id,
        currency=accrual.currency,
        period_start=accrual.period_start,
        period_end=accrual.period_end,
        due=-paid,
        collected=-paid,
        status=SettlementStatus.PAYING,
    )
    moves = [
        (BalanceOpRole.FOLLOWER, accrual.follower_account_id, paid, ""),
        (BalanceOpRole.MASTER, accrual.master_account_id, -master, ""),
        (
            BalanceOpRole.IB,
            accrual.schedule.ib_account_id,
            -ib,
            str(accrual.schedule.ib_account_id),
        ),
    ]
    for role, account_id, amount, suffix in moves:
        if amount != 0:
            BalanceOp.objects.create(
                settlement=s,
                role=role,
                trading_account_id=account_id,
                amount=amount,
                currency=accrual.currency,
                comment=f"Refund of reversed fee {accrual.pk}, settlement {s.pk}",
                client_op_id=op_id(s, 1, role, suffix),
            )
    return s


def settlement_execute(*, settlement_id: int, venue: Venue) -> str:
    """Moves a settlement as far as the venue allows now; returns its status."""
    with _executor_lock(settlement_id) as got:
        if not got:
            return "busy"
        for _ in range(2 * MAX_FOLLOWER_ATTEMPTS + 4):
            s = Settlement.objects.select_related("follower_account").get(pk=settlement_id)
            if s.status == SettlementStatus.SETTLED:
                break
            Settlement.objects.filter(pk=s.pk).update(attempts=F("attempts") + 1)
            step = {
                SettlementStatus.PLANNED: _start_collection,
                SettlementStatus.COLLECTING: _collect,
                SettlementStatus.PAYING: _pay,
                SettlementStatus.FAILED: _pay,  # retried: a refused operation is sent again
            }[SettlementStatus(s.status)]
            try:
                moved = step(s, venue)
            except GatewayError as exc:
                _note_error(s, f"{exc.reason}: {exc.message}")
                moved = False
            if not moved:
                break
        return Settlement.objects.values_list("status", flat=True).get(pk=settlement_id)


def _note_error(s: Settlement, message: str) -> None:
    logger.warning("settlement %s: %s", s.pk, message)
    Settlement.objects.filter(pk=s.pk).update(last_error=message[:500])


def _collectable(s: Settlement, venue: Venue) -> Decimal:
    """What can be debited now: the amount due, at most the free margin (in cents)."""
    snap = venue.snapshot(s.follower_account)
    return min(s.due, fees.floor_money(max(Decimal(0), snap.free_margin)))


def _new_follower_op(s: Settlement, attempt: int, amount: Decimal) -> None:
    master = s.subscription.master_account.login if s.subscription_id else "?"
    BalanceOp.objects.create(
        settlement=s,
        role=BalanceOpRole.FOLLOWER,
        attempt=attempt,
        trading_account_id=s.follower_account_id,
        amount=-amount,
        currency=s.currency,
        comment=f"Copy-trading fees to master #{master}, settlement {s.pk}",
        client_op_id=op_id(s, attempt, BalanceOpRole.FOLLOWER),
    )


def _start_collection(s: Settlement, venue: Venue) -> bool:
    amount = _collectable(s, venue) if s.due > 0 else Decimal(0)
    with transaction.atomic():
        s = Settlement.objects.select_for_update().get(pk=s.pk)
        if s.status != SettlementStatus.PLANNED:
            return True
        if amount > 0:
            _new_follower_op(s, 1, amount)
        s.status = SettlementStatus.COLLECTING
        s.save(update_fields=["status"])
    return True


def _send(op: BalanceOp, venue: Venue) -> None:
    """Sends one balance operation (or finds that an earlier try reached the venue)."""
    account = op.trading_account
    if op.tries > 0:
        # Lookup before retry: a try whose answer was lost may have been applied.
        since = op.created_at - timedelta(minutes=1)
        for deal in venue.deals(account, since):
            if deal.entry == DealEntry.BALANCE and deal.client_order_id == op.client_op_id:
                BalanceOp.objects.filter(pk=op.pk).update(
                    status=BalanceOpStatus.CONFIRMED,
                    venue_deal_id=deal.deal_id,
                    confirmed_at=timezone.now(),
                    error="",
                )
                return
    BalanceOp.objects.filter(pk=op.pk).update(tries=F("tries") + 1)
    try:
        result = venue.balance_operation(
            account, amount=op.amount, comment=op.comment, client_op_id=op.client_op_id
        )
    except GatewayError as exc:
        unknown = exc.outcome_unknown or exc.reason in RETRYABLE_REASONS
        BalanceOp.objects.filter(pk=op.pk).update(
            status=BalanceOpStatus.UNKNOWN if unknown else BalanceOpStatus.REFUSED,
            error=f"{exc.reason}: {exc.message}"[:500],
        )
        return
    BalanceOp.objects.filter(pk=op.pk).update(
        status=BalanceOpStatus.CONFIRMED,
        venue_deal_id=result.deal_id,
        venue_balance=result.balance,
        confirmed_at=timezone.now(),
        error="",
    )


def _collect(s: Settlement, venue: Venue) -> bool:
    op = s.ops.filter(role=BalanceOpRole.FOLLOWER).order_by("-attempt").first()
    if op is None:
        _allocate(s, paid=Decimal(0))
        return True
    if op.status in (BalanceOpStatus.PENDING, BalanceOpStatus.UNKNOWN):
        _send(op, venue)
        op.refresh_from_db()
    if op.status == BalanceOpStatus.CONFIRMED:
        _allocate(s, paid=-op.amount)
        return True
    if op.status == BalanceOpStatus.REFUSED:
        margin = op.error.startswith(GatewayReason.INSUFFICIENT_MARGIN.value)
        amount = _collectable(s, venue) if margin else Decimal(0)
        if amount > 0 and op.attempt < MAX_FOLLOWER_ATTEMPTS:
            with transaction.atomic():
                _new_follower_op(s, op.attempt + 1, amount)
        else:
            _allocate(s, paid=Decimal(0))  # nothing can be taken now: all of it is debt
        return True
    _note_error(s, f"debit {op.client_op_id}: {op.error}")
    return False


def _line_shares(line: SettlementLine, paid: Decimal) -> tuple[Decimal, Decimal, Decimal]:
    """(master, broker, ib) of what this line paid; the payment that completes an accrual
    gets exactly the rest of its shares, so shares paid add up to the accrual's."""
    accrual = line.accrual
    before = (
        SettlementLine.objects.filter(accrual=accrual)
        .exclude(pk=line.pk)
        .aggregate(paid=Sum("paid"), master=Sum("master_share"), ib=Sum("ib_share"))
    )
    prev_paid = before["paid"] or Decimal(0)
    if prev_paid + paid == accrual.amount:
        master = accrual.master_share - (before["master"] or Decimal(0))
        ib = accrual.ib_share - (before["ib"] or Decimal(0))
        return master, paid - master - ib, ib
    schedule = accrual.schedule
    ib_pct = schedule.ib_share_pct if schedule.ib_account_id else Decimal(0)
    split = fees.split_fee(paid, broker_pct=schedule.broker_share_pct, ib_pct=ib_pct)
    return split.master, split.broker, split.ib


def _allocate(s: Settlement, *, paid: Decimal) -> None:
    """The follower's debit is confirmed (or nothing could be taken): spread it over the
    lines in order, keep the unpaid part as fee debt, post the collection, and record
    the master's and IB's credits to send."""
    with transaction.atomic():
        s = (
            Settlement.objects.select_for_update(of=("self",))
            .select_related("subscription__master", "subscription__master_account")
            .get(pk=s.pk)
        )
        if s.status not in (SettlementStatus.PLANNED, SettlementStatus.COLLECTING):
            return
        lines = list(s.lines.select_related("accrual__schedule", "debt").order_by("position", "id"))
        master_total = Decimal(0)
        ib_totals: dict[int, Decimal] = {}
        sub = s.subscription
        for alloc in fees.allocate_payment(paid, [(line, line.due) for line in lines]):
            line = alloc.key
            line.paid = alloc.paid
            line.master_share, line.broker_share, line.ib_share = _line_shares(line, alloc.paid)
            line.save(update_fields=["paid", "master_share", "broker_share", "ib_share"])
            master_total += line.master_share
            if line.ib_share:
                ib_id = line.accrual.schedule.ib_account_id
                ib_totals[ib_id] = ib_totals.get(ib_id, Decimal(0)) + line.ib_share
            if line.debt is not None:
                debt = FeeDebt.objects.select_for_update().get(pk=line.debt_id)
                debt.remaining -= alloc.paid
                if debt.remaining == 0:
                    debt.cleared_at = timezone.now()
                debt.save(update_fields=["remaining", "cleared_at"])
            elif alloc.unpaid > 0:
                FeeDebt.objects.create(
                    follower_account_id=s.follower_account_id,
                    master_account_id=sub.master_account_id,
                    subscription=sub,
                    accrual=line.accrual,
                    settlement=s,
                    kind=line.kind,
                    amount=alloc.unpaid,
                    remaining=alloc.unpaid,
                    currency=s.currency,
                    comment=f"{line.accrual.get_kind_display()} owed to master "
                    f"#{sub.master_account.login} ({sub.master.strategy_name}), "
                    f"unpaid at settlement {s.pk}",
                )
        if paid > 0:
            ledger_post(
                key=f"collect:{s.pk}",
                memo=f"Fees collected from #{s.follower_account.login}, settlement {s.pk}",
                currency=s.currency,
                legs=[
                    (ledger_account(kind=Kind.VENUE_CLEARING, currency=s.currency), paid),
                    (
                        ledger_account(
                            kind=Kind.FOLLOWER_RECEIVABLE,
                            currency=s.currency,
                            trading_account=s.follower_account,
                        ),
                        -paid,
                    ),
                ],
                settlement=s,
            )
        credits = [(BalanceOpRole.MASTER, sub.master_account_id, master_total, "")]
        credits += [(BalanceOpRole.IB, ib, amt, str(ib)) for ib, amt in sorted(ib_totals.items())]
        for role, account_id, amount, suffix in credits:
            if amount > 0:
                BalanceOp.objects.create(
                    settlement=s,
                    role=role,
                    trading_account_id=account_id,
                    amount=amount,
                    currency=s.currency,
                    comment=f"Copy-trading fees from #{s.follower_account.login}, "
                    f"settlement {s.pk}",
                    client_op_id=op_id(s, 1, role, suffix),
                )
        s.collected = paid
        s.status = SettlementStatus.PAYING
        s.save(update_fields=["collected", "status"])


def _payouts(s: Settlement) -> QuerySet[BalanceOp]:
    """The operations sent while paying: the master's and IB's credits; for a refund,
    every operation (the follower's credit and the claw-backs)."""
    ops = s.ops.select_related("trading_account").order_by("id")
    return ops if s.reason == SettlementReason.REFUND else ops.exclude(role=BalanceOpRole.FOLLOWER)


def _pay(s: Settlement, venue: Venue) -> bool:
    """Sends the payouts not confirmed yet. One the venue refused (e.g. a refund's debit of
    the master beyond its free margin) makes the settlement `failed` with the venue's
    reason: staff see it, and each billing run sends the refused operation again (under
    its id: a refused operation was not applied) until the venue confirms it. Nothing is
    posted to the ledger before every operation is confirmed, so it stays balanced; the
    master's (IB's) payable meanwhile shows what it owes back."""
    for op in _payouts(s).exclude(status=BalanceOpStatus.CONFIRMED):
        _send(op, venue)
    waiting = list(_payouts(s).exclude(status=BalanceOpStatus.CONFIRMED))
    if waiting:
        _note_error(s, "; ".join(f"{op.client_op_id}: {op.error}" for op in waiting))
        refused = any(op.status == BalanceOpStatus.REFUSED for op in waiting)
        status = SettlementStatus.FAILED if refused else SettlementStatus.PAYING
        Settlement.objects.filter(
            pk=s.pk, status__in=(SettlementStatus.PAYING, SettlementStatus.FAILED)
        ).update(status=status)
        return False
    _finalize(s)
    return True


def _finalize(s: Settlement) -> None:
    """Every operation is confirmed by the venue: post the payouts, settle what is paid."""
    with transaction.atomic():
        s = (
            Settlement.objects.select_for_update(of=("self",))
            .select_related("follower_account")
            .get(pk=s.pk)
        )
        if s.status not in (SettlementStatus.PAYING, SettlementStatus.FAILED):
            return
        legs = []
        for op in _payouts(s):
            party = ledger_account(
                kind=_PARTY_ACCOUNT[BalanceOpRole(op.role)],
                currency=s.currency,
                trading_account=op.trading_account,
            )
            legs += [
                (party, op.amount),
                (ledger_account(kind=Kind.VENUE_CLEARING, currency=s.currency), -op.amount),
            ]
        refund = s.reason == SettlementReason.REFUND
        ledger_post(
            key=f"payout:{s.pk}",
            memo=f"{'Refund of a reversed fee' if refund else 'Fee shares paid out'}, "
            f"settlement {s.pk}",
            currency=s.currency,
            legs=legs,
            settlement=s,
        )
        now = timezone.now()
        for accrual in FeeAccrual.objects.filter(lines__settlement=s).distinct():
            paid = accrual.lines.aggregate(p=Sum("paid"))["p"] or Decimal(0)
            if paid == accrual.amount and accrual.status == FeeAccrualStatus.ACCRUED:
                accrual.status, accrual.settled_at = FeeAccrualStatus.SETTLED, now
                accrual.save(update_fields=["status", "settled_at"])
        s.status, s.final_at = SettlementStatus.SETTLED, now
        s.save(update_fields=["status", "final_at"])
