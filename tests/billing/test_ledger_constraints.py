"""What PostgreSQL itself refuses: an unbalanced posting (at commit), editing or deleting a
ledger leg, changing an accrual's figures; and what a reversal posts instead."""

from datetime import UTC, datetime
from decimal import Decimal as D

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.utils import DatabaseError

from billing.choices import FeeAccrualStatus, LedgerAccountKind
from billing.errors import BillingError
from billing.models import FeeAccrual, LedgerLeg, LedgerTransaction
from billing.services import (
    fee_accrual_reverse,
    fee_state_run,
    ledger_account,
    ledger_balance,
    ledger_post,
    settlement_execute,
)
from tests.billing.conftest import ledger_sums_per_transaction, month_end
from tests.factories import make_account, make_staff


def _accounts():
    follower = make_account()
    receivable = ledger_account(
        kind=LedgerAccountKind.FOLLOWER_RECEIVABLE, currency="USD", trading_account=follower
    )
    revenue = ledger_account(kind=LedgerAccountKind.BROKER_REVENUE, currency="USD")
    return receivable, revenue


def _post_leg_by_leg(receivable, revenue) -> None:
    """Legs are checked at commit, so a posting may be written leg by leg; this one is
    off by a cent."""
    with transaction.atomic():
        txn = LedgerTransaction.objects.create(key="bad", memo="one-legged")
        LedgerLeg.objects.create(
            transaction=txn, account=receivable, amount=D("10"), currency="USD"
        )
        LedgerLeg.objects.create(
            transaction=txn, account=revenue, amount=D("-9.99"), currency="USD"
        )


@pytest.mark.django_db(transaction=True)
def test_an_unbalanced_transaction_fails_at_commit():
    receivable, revenue = _accounts()
    with pytest.raises(IntegrityError, match="does not balance"):
        _post_leg_by_leg(receivable, revenue)
    assert not LedgerTransaction.objects.filter(key="bad").exists()
    with transaction.atomic():
        ledger_post(
            key="good",
            memo="balanced",
            currency="USD",
            legs=[(receivable, D("10")), (revenue, D("-10"))],
        )
    assert ledger_balance(receivable) == D("10")


@pytest.mark.django_db
def test_the_service_refuses_an_unbalanced_posting_before_the_database_does():
    receivable, revenue = _accounts()
    with pytest.raises(ValueError, match="does not balance"):
        ledger_post(key="x", memo="", currency="USD", legs=[(receivable, D("1"))])


@pytest.mark.django_db
def test_a_leg_in_another_currency_than_its_account_is_refused():
    receivable, revenue = _accounts()
    txn = LedgerTransaction.objects.create(key="eur", memo="")
    with pytest.raises(IntegrityError, match="another currency"), transaction.atomic():
        LedgerLeg.objects.create(transaction=txn, account=receivable, amount=D("1"), currency="EUR")


@pytest.mark.django_db
def test_legs_and_transactions_are_append_only():
    receivable, revenue = _accounts()
    txn = ledger_post(
        key="k", memo="m", currency="USD", legs=[(receivable, D("5")), (revenue, D("-5"))]
    )
    leg = txn.legs.first()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        LedgerLeg.objects.filter(pk=leg.pk).update(amount=D("6"))
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        leg.delete()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        LedgerTransaction.objects.filter(pk=txn.pk).update(memo="edited")
    # Posting the same key again changes nothing.
    again = ledger_post(
        key="k", memo="m", currency="USD", legs=[(receivable, D("5")), (revenue, D("-5"))]
    )
    assert again is None
    assert ledger_balance(receivable) == D("5")


@pytest.mark.django_db
def test_accrual_figures_are_fixed_and_a_reversal_posts_negated_legs(desk):
    master = desk.master(subscription_amount=20, broker_share_pct=25)
    sub = desk.follower(master)
    desk.run(datetime.now(UTC))
    (fee,) = desk.accruals(sub, "subscription")
    with pytest.raises(DatabaseError, match="figures are fixed"), transaction.atomic():
        FeeAccrual.objects.filter(pk=fee.pk).update(amount=D("1"))
    with (
        pytest.raises(DatabaseError, match="cannot be deleted"),
        transaction.atomic(),
        connection.cursor() as cur,
    ):
        cur.execute("DELETE FROM billing_feeaccrual WHERE id = %s", [fee.pk])
    with pytest.raises(BillingError, match="reason is required"):
        fee_accrual_reverse(accrual=fee, reason=" ", actor=None)
    compliance = make_staff(group="Compliance")
    reversal = fee_accrual_reverse(accrual=fee, reason="charged by mistake", actor=compliance)
    fee.refresh_from_db()
    assert (fee.status, fee.amount) == (FeeAccrualStatus.REVERSED, D("20.00"))
    assert reversal.actor == compliance
    receivable = ledger_account(
        kind=LedgerAccountKind.FOLLOWER_RECEIVABLE,
        currency="USD",
        trading_account=sub.follower_account,
    )
    assert ledger_balance(receivable) == D("0")
    assert ledger_sums_per_transaction() == {D(0)}
    with pytest.raises(BillingError, match="reversed already"):
        fee_accrual_reverse(accrual=fee, reason="again", actor=compliance)
    # A reversed accrual is not collected at period end (next month's fee is accrued, and
    # collected at the end of next month).
    before = desk.balance(sub.follower_account)
    desk.run(month_end(datetime.now(UTC)))
    assert desk.balance(sub.follower_account) == before
    assert len(desk.accruals(sub, "subscription")) == 2


@pytest.mark.django_db
def test_reversing_a_settled_fee_refunds_it_on_the_venue(desk):
    master = desk.master(subscription_amount=20, broker_share_pct=25)
    sub = desk.follower(master)
    follower = sub.follower_account
    desk.run(datetime.now(UTC))
    end = month_end(datetime.now(UTC))
    # Planned but not yet paid: the settlement is still moving money, so no reversal yet.
    fee_state_run(state_id=sub.fee_state.pk, as_of=end, venue=desk.venue)
    fee = desk.accruals(sub, "subscription")[0]
    with pytest.raises(BillingError, match="not final yet"):
        fee_accrual_reverse(accrual=fee, reason="too early", actor=None)
    desk.run(end)
    fee.refresh_from_db()
    assert fee.status == FeeAccrualStatus.SETTLED
    before = desk.balance(follower), desk.balance(master.account)
    reversal = fee_accrual_reverse(accrual=fee, reason="charged twice", actor=None)
    # (The refund is enqueued on commit; this test's transaction never commits.)
    assert settlement_execute(settlement_id=reversal.refund.pk, venue=desk.venue) == "settled"
    assert desk.balance(follower) == before[0] + D("20")
    assert desk.balance(master.account) == before[1] - D("15")
    ops = {op.role: op.client_op_id for op in reversal.refund.ops.all()}
    assert ops == {
        "follower": f"fee-{reversal.refund.pk}-1-follower",
        "master": f"fee-{reversal.refund.pk}-1-master",
    }
    # What is left on the ledger is next month's fee (accrued at its start, not due yet):
    # the reversed one, its collection, payout and refund net to zero.
    expected = {
        (LedgerAccountKind.FOLLOWER_RECEIVABLE, follower): D("20"),
        (LedgerAccountKind.MASTER_PAYABLE, master.account): D("-15"),
        (LedgerAccountKind.BROKER_REVENUE, None): D("-5"),
        (LedgerAccountKind.VENUE_CLEARING, None): D("0"),
    }
    for (kind, account), balance in expected.items():
        ledger = ledger_account(kind=kind, currency="USD", trading_account=account)
        assert ledger_balance(ledger) == balance, kind
    assert ledger_sums_per_transaction() == {D(0)}


@pytest.mark.django_db
def test_a_refund_the_master_cannot_pay_back_fails_visibly_and_settles_when_it_can(desk):
    from billing.choices import SettlementStatus

    master = desk.master(subscription_amount=20, broker_share_pct=25)
    sub = desk.follower(master)
    desk.run(datetime.now(UTC))
    end = month_end(datetime.now(UTC))
    desk.run(end)
    fee = desk.accruals(sub, "subscription")[0]
    fee.refresh_from_db()
    assert fee.status == FeeAccrualStatus.SETTLED
    # The master withdrew all but 10: the claw-back of its 15 exceeds its free margin.
    drained = desk.balance(master.account) - D("10")
    desk.balance_op(master.account, str(-drained))
    reversal = fee_accrual_reverse(accrual=fee, reason="charged twice", actor=None)
    refund = reversal.refund
    assert settlement_execute(settlement_id=refund.pk, venue=desk.venue) == "failed"
    refund.refresh_from_db()
    assert refund.status == SettlementStatus.FAILED
    assert f"fee-{refund.pk}-1-master: insufficient_margin" in refund.last_error
    assert ledger_sums_per_transaction() == {D(0)}
    # The master's payable shows what it owes back; the billing run retries the refund.
    payable = ledger_account(
        kind=LedgerAccountKind.MASTER_PAYABLE, currency="USD", trading_account=master.account
    )
    assert ledger_balance(payable) == D("-15") + D("15")  # next month's 15, and the 15 owed
    desk.balance_op(master.account, "100")
    desk.run(end)
    refund.refresh_from_db()
    assert refund.status == SettlementStatus.SETTLED
    assert desk.balance(master.account) == D("95")
    assert ledger_balance(payable) == D("-15")
    assert ledger_sums_per_transaction() == {D(0)}
