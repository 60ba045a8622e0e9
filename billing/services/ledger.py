"""The double-entry ledger: accounts and balanced postings.

Debits are positive, credits negative; every posting's legs sum to zero per currency
(PostgreSQL checks it at commit) and postings are append-only. A posting has a unique
key, so posting it again changes nothing.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Sum

from accounts.models import TradingAccount

from ..choices import LedgerAccountKind
from ..models import FeeAccrual, LedgerAccount, LedgerLeg, LedgerTransaction, Settlement

Kind = LedgerAccountKind


def ledger_account(
    *, kind: str, currency: str, trading_account: TradingAccount | None = None
) -> LedgerAccount:
    """The ledger account of `kind` for a trading account (or the broker's), made once."""
    owner = trading_account.pk if trading_account is not None else "broker"
    code = f"{kind}:{owner}:{currency}"
    account, _ = LedgerAccount.objects.get_or_create(
        code=code,
        defaults={"kind": kind, "currency": currency, "trading_account": trading_account},
    )
    return account


def ledger_post(
    *,
    key: str,
    memo: str,
    currency: str,
    legs: list[tuple[LedgerAccount, Decimal]],
    accrual: FeeAccrual | None = None,
    settlement: Settlement | None = None,
) -> LedgerTransaction | None:
    """Posts a balanced transaction once per `key`; None when it was posted already.

    Zero legs are dropped; legs on one account are summed. The balance is checked here
    (a clear error) and again by the database at commit (the guarantee)."""
    merged: dict[int, tuple[LedgerAccount, Decimal]] = {}
    for account, amount in legs:
        prev = merged.get(account.pk, (account, Decimal(0)))[1]
        merged[account.pk] = (account, prev + amount)
    kept = [(a, amt) for a, amt in merged.values() if amt != 0]
    if sum((amt for _, amt in kept), Decimal(0)) != 0:
        raise ValueError(f"ledger posting {key} does not balance: {kept}")
    if not kept:
        return None
    try:
        with transaction.atomic():
            txn = LedgerTransaction.objects.create(
                key=key, memo=memo[:300], accrual=accrual, settlement=settlement
            )
    except IntegrityError:
        return None  # posted before: the key is the idempotency key
    LedgerLeg.objects.bulk_create(
        [LedgerLeg(transaction=txn, account=a, amount=amt, currency=currency) for a, amt in kept]
    )
    return txn


def ledger_balance(account: LedgerAccount) -> Decimal:
    """The account's balance (debits positive)."""
    return account.legs.aggregate(s=Sum("amount"))["s"] or Decimal(0)


def accrual_legs(accrual: FeeAccrual) -> list[tuple[LedgerAccount, Decimal]]:
    """What an accrual posts: the follower owes the fee; the master, the broker and the IB
    are owed their shares."""
    cur = accrual.currency
    legs = [
        (
            ledger_account(
                kind=Kind.FOLLOWER_RECEIVABLE,
                currency=cur,
                trading_account=accrual.follower_account,
            ),
            accrual.amount,
        ),
        (
            ledger_account(
                kind=Kind.MASTER_PAYABLE, currency=cur, trading_account=accrual.master_account
            ),
            -accrual.master_share,
        ),
        (ledger_account(kind=Kind.BROKER_REVENUE, currency=cur), -accrual.broker_share),
    ]
    if accrual.ib_share:
        legs.append(
            (
                ledger_account(
                    kind=Kind.IB_PAYABLE,
                    currency=cur,
                    trading_account=accrual.schedule.ib_account,
                ),
                -accrual.ib_share,
            )
        )
    return legs
