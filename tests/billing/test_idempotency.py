"""Re-running any billing job changes nothing: twice in a row, on two schedulers at once,
and after the venue answered 503 in the middle of a settlement."""

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from django.db import connection

from billing import services
from billing.choices import BalanceOpStatus, SettlementStatus
from billing.models import (
    BalanceOp,
    CashMovement,
    FeeAccrual,
    FeeDebt,
    LedgerLeg,
    LedgerTransaction,
    Settlement,
    SettlementLine,
    SubscriptionFeeState,
)
from tests.billing.conftest import Desk, ShiftedVenue, ledger_sums_per_transaction, month_end


def snapshot() -> dict[str, object]:
    """Every billing row that a job writes, as comparable values."""
    return {
        "accruals": sorted(
            FeeAccrual.objects.values_list(
                "subscription", "kind", "period_start", "amount", "status"
            )
        ),
        "transactions": sorted(LedgerTransaction.objects.values_list("key", flat=True)),
        "legs": LedgerLeg.objects.count(),
        "settlements": sorted(Settlement.objects.values_list("key", "status", "collected")),
        "lines": SettlementLine.objects.count(),
        "ops": sorted(BalanceOp.objects.values_list("client_op_id", "amount", "status")),
        "debts": sorted(FeeDebt.objects.values_list("accrual", "remaining")),
        "cash": CashMovement.objects.count(),
        "states": sorted(
            SubscriptionFeeState.objects.values_list(
                "subscription",
                "hwm",
                "cumulative",
                "period_start",
                "management_through",
                "closed_at",
            )
        ),
    }


def _world(desk: Desk):
    master = desk.master(
        performance_pct=20,
        management_pct=2,
        subscription_amount=10,
        volume_per_lot=3,
        broker_share_pct=30,
    )
    subs = [desk.follower(master) for _ in range(3)]
    desk.run(datetime.now(UTC))
    for sub in subs:
        pos = desk.open(sub)
        desk.price("1.10110", "1.10120")
        desk.close(sub, pos)
        desk.price("1.10000", "1.10010")
    return master, subs


@pytest.mark.django_db
def test_running_each_job_twice_changes_nothing(desk):
    master, subs = _world(desk)
    desk.balance_op(subs[0].follower_account, "-100")
    end = month_end(datetime.now(UTC)) + timedelta(days=2)
    for job in (
        lambda: desk.run(end),
        lambda: services.billing_scan_cash(venue=desk.venue),
        lambda: services.settlements_execute_open(venue=desk.venue),
    ):
        job()
        first = snapshot()
        balances = [desk.balance(s.follower_account) for s in subs] + [desk.balance(master.account)]
        job()
        assert snapshot() == first
        assert [desk.balance(s.follower_account) for s in subs] + [
            desk.balance(master.account)
        ] == balances
    assert (
        Settlement.objects.filter(status=SettlementStatus.SETTLED).count()
        == Settlement.objects.count()
        > 0
    )
    assert ledger_sums_per_transaction() == {D(0)}
    assert FeeAccrual.objects.filter(amount__lt=0).count() == 0


@pytest.mark.django_db(transaction=True)
def test_two_schedulers_at_once_make_the_same_rows(venue):
    desk = Desk(venue)
    master, subs = _world(desk)
    end = month_end(datetime.now(UTC)) + timedelta(hours=1)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def scheduler() -> None:
        try:
            barrier.wait(timeout=10)
            services.billing_run(as_of=end, venue=ShiftedVenue(desk.clock))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=scheduler) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    # A third run finishes whatever one scheduler skipped because the other held it.
    desk.run(end)
    once = snapshot()
    desk.run(end)
    assert snapshot() == once
    # Each follower was charged exactly once: one debit per settlement, none repeated.
    for sub in subs:
        (settlement,) = Settlement.objects.filter(subscription=sub)
        assert settlement.status == SettlementStatus.SETTLED
        assert BalanceOp.objects.filter(settlement=settlement, role="follower").count() == 1
        assert desk.balance(sub.follower_account) == D("10000") + D("100") - settlement.collected
    assert ledger_sums_per_transaction() == {D(0)}


@pytest.mark.django_db
def test_a_settlement_retried_after_a_venue_503_charges_once(desk):
    master = desk.master(subscription_amount=50, broker_share_pct=20)
    sub = desk.follower(master)
    follower = sub.follower_account
    desk.run(datetime.now(UTC))
    end = month_end(datetime.now(UTC))
    # Every balance operation fails with 503, some after acting: the outcome is unknown.
    assert desk.api.post("/v1/admin/faults", {"error_rate": 1.0, "seed": 5})[0] == 200
    try:
        desk.run(end)
        settlement = Settlement.objects.get(subscription=sub)
        assert settlement.status == SettlementStatus.COLLECTING
        op = BalanceOp.objects.get(settlement=settlement)
        assert (op.status, op.client_op_id) == (
            BalanceOpStatus.UNKNOWN,
            f"fee-{settlement.pk}-1-follower",
        )
        assert "unavailable" in op.error
        assert settlement.final_at is None
    finally:
        assert desk.api.post("/v1/admin/faults", {"error_rate": 0.0})[0] == 200
    desk.run(end)
    settlement.refresh_from_db()
    assert settlement.status == SettlementStatus.SETTLED
    (op,) = BalanceOp.objects.filter(settlement=settlement, role="follower")
    assert op.status == BalanceOpStatus.CONFIRMED
    assert op.venue_deal_id
    status, deals = desk.api.get(f"/v1/accounts/{follower.login}/deals")
    fee_deals = [
        d
        for d in deals
        if d["entry"] == "balance" and str(d.get("client_order_id", "")).startswith("fee-")
    ]
    assert len(fee_deals) == 1
    assert desk.balance(follower) == D("9950")
    assert desk.balance(master.account) == D("100040")
