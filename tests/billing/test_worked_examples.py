"""Worked examples against PostgreSQL and a real paper venue, with a controlled clock:
what each fee comes to, what the venue balances do, what is left as debt."""

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP
from decimal import Decimal as D

import pytest

from billing.choices import FeeAccrualStatus, SettlementStatus
from billing.models import BalanceOp, FeeDebt, Settlement, SubscriptionFeeState
from billing.services import billing_scan_cash, billing_unsubscribe, fee_unsubscribe
from copytrading.services import subscription_delete
from tests.billing.conftest import ledger_sums_per_transaction, month_end

pytestmark = pytest.mark.django_db

# EURUSD on the paper venue: bid 1.10000 / ask 1.10010 until a test sets it.


def test_a_loss_then_a_recovery_pays_only_above_the_mark(desk):
    master = desk.master(performance_pct=20, broker_share_pct=30)
    sub = desk.follower(master)
    follower, master_account = sub.follower_account, master.account
    # Month 1: bought at 1.10010, closed at 1.09710: -300.
    pos = desk.open(sub)
    desk.price("1.09710", "1.09720")
    assert desk.close(sub, pos) == D("-300")
    end1 = month_end(datetime.now(UTC))
    desk.run(end1 + timedelta(hours=1))
    (p1,) = desk.accruals(sub, "performance")
    assert (p1.base_amount, p1.amount, p1.status) == (D("0"), D("0"), FeeAccrualStatus.SETTLED)
    state = SubscriptionFeeState.objects.get(subscription=sub)
    assert (state.hwm, state.carried_loss) == (D("0"), D("300"))
    # Month 2: +500 -> 200 above the mark -> 40.00, 28.00 to the master.
    desk.clock.advance(end1 - datetime.now(UTC) + timedelta(days=3))
    desk.price("1.09700", "1.09710")
    pos = desk.open(sub)
    desk.price("1.10210", "1.10220")
    assert desk.close(sub, pos) == D("500")
    before = desk.balance(follower), desk.balance(master_account)
    end2 = month_end(end1 + timedelta(days=1))
    desk.run(end2 + timedelta(minutes=5))
    p2 = desk.accruals(sub, "performance")[1]
    assert (p2.base_amount, p2.rate, p2.amount) == (D("200"), D("0.2"), D("40.00"))
    assert (p2.master_share, p2.broker_share) == (D("28.00"), D("12.00"))
    assert p2.schedule_version == 1
    assert p2.period_start == end1
    assert p2.period_end == end2
    assert "200.00 above the mark" in p2.explanation
    assert desk.balance(follower) == before[0] - D("40.00")
    assert desk.balance(master_account) == before[1] + D("28.00")
    state.refresh_from_db()
    assert (state.hwm, state.carried_loss) == (D("200"), D("0"))
    assert ledger_sums_per_transaction() == {D(0)}


def test_partial_closes_and_floating_at_period_end(desk):
    master = desk.master(performance_pct=20)
    sub = desk.follower(master)
    pos = desk.open(sub)  # 1 lot at 1.10010
    desk.price("1.10110", "1.10120")
    assert desk.close(sub, pos, "0.4") == D("40")
    desk.price("1.10210", "1.10220")
    assert desk.close(sub, pos, "0.3") == D("60")
    # 0.3 lots still open, floating +60 at the end of the period.
    desk.run(month_end(datetime.now(UTC)) + timedelta(minutes=1))
    (perf,) = desk.accruals(sub, "performance")
    assert (perf.base_amount, perf.amount) == (D("160"), D("32.00"))
    assert D(perf.inputs["realized"]) == D("100")
    assert D(perf.inputs["floating_end"]) == D("60")
    # Next month the position closes flat: nothing new above the mark.
    desk.clock.advance(timedelta(days=31))
    desk.close(sub, pos)
    end2 = month_end(month_end(datetime.now(UTC)) + timedelta(days=1))
    desk.run(end2)
    assert desk.accruals(sub, "performance")[1].amount == D("0.00")


def test_deposits_and_withdrawals_mid_period(desk):
    """A deposit is not profit; a withdrawal crystallises at once and settles."""
    master = desk.master(performance_pct=20, management_pct=2)
    sub = desk.follower(master, balance=10000)
    follower = sub.follower_account
    desk.run(datetime.now(UTC))  # the fee state starts now
    pos = desk.open(sub)
    desk.price("1.10210", "1.10220")
    desk.close(sub, pos)  # +200
    desk.balance_op(follower, "5000")  # a deposit: no fee on it, no debt to collect
    desk.balance_op(follower, "-1000")  # a withdrawal: crystallise now
    before = desk.balance(follower)
    billing_scan_cash(venue=desk.venue)
    (perf,) = desk.accruals(sub, "performance")
    # Management for the part of the day since joining is deducted from the 200 first.
    mgmt = sum(a.amount for a in desk.accruals(sub, "management"))
    assert perf.trigger == "withdrawal"
    assert perf.base_amount == D("200") - mgmt
    settlement = Settlement.objects.get(reason="withdrawal", subscription=sub)
    assert settlement.status == SettlementStatus.SETTLED
    assert desk.balance(follower) == before - settlement.collected
    assert settlement.collected == perf.amount + mgmt
    # Running the scan again changes nothing.
    billing_scan_cash(venue=desk.venue)
    assert Settlement.objects.filter(subscription=sub).count() == 1
    assert desk.balance(follower) == before - settlement.collected


def test_unsubscribe_mid_period_crystallises_at_once(desk):
    master = desk.master(performance_pct=25, subscription_amount=15)
    sub = desk.follower(master)
    follower = sub.follower_account
    desk.run(datetime.now(UTC))  # subscription fee of this period: 15.00
    desk.open(sub)
    desk.price("1.10160", "1.10170")  # +150 floating
    before = desk.balance(follower)
    subscription_delete(subscription=sub, actor=None)
    billing_unsubscribe(subscription_id=sub.pk, venue=desk.venue)
    (perf,) = desk.accruals(sub, "performance")
    assert perf.trigger == "unsubscribe"
    assert (perf.base_amount, perf.amount) == (D("135"), D("33.75"))  # (150 - 15) x 25 %
    settlement = Settlement.objects.get(subscription=sub, reason="unsubscribe")
    assert settlement.status == SettlementStatus.SETTLED
    assert settlement.collected == D("48.75")
    assert desk.balance(follower) == before - D("48.75")
    assert SubscriptionFeeState.objects.get(subscription=sub).closed_at is not None
    # The unsubscribe job again, or the periodic run, adds nothing.
    assert fee_unsubscribe(state_id=sub.fee_state.pk, venue=desk.venue) == []
    desk.run(month_end(datetime.now(UTC)) + timedelta(days=40))
    assert Settlement.objects.filter(subscription=sub).count() == 1
    assert desk.balance(follower) == before - D("48.75")


def test_unpaid_fees_become_debt_collected_from_the_next_deposit(desk):
    master = desk.master(subscription_amount=500, broker_share_pct=20)
    sub = desk.follower(master, balance=300)
    follower = sub.follower_account
    desk.run(datetime.now(UTC))
    desk.run(month_end(datetime.now(UTC)))
    first = Settlement.objects.get(subscription=sub, reason="period_end")
    assert (first.status, first.due, first.collected) == (
        SettlementStatus.SETTLED,
        D("500"),
        D("300"),
    )
    assert desk.balance(follower) == D("0")
    debt = FeeDebt.objects.get(subscription=sub)
    assert (debt.kind, debt.remaining) == ("subscription", D("200"))
    assert f"#{master.account.login}" in debt.comment
    assert f"settlement {first.pk}" in debt.comment
    assert BalanceOp.objects.get(settlement=first, role="master").amount == D("240.00")
    debit = BalanceOp.objects.get(settlement=first, role="follower")
    assert (
        debit.comment
        == f"Copy-trading fees to master #{master.account.login}, settlement {first.pk}"
    )
    desk.balance_op(follower, "1000")
    billing_scan_cash(venue=desk.venue)
    debt.refresh_from_db()
    assert (debt.remaining, debt.cleared_at is not None) == (D("0"), True)
    assert desk.balance(follower) == D("800")
    (fee,) = desk.accruals(sub, "subscription")[:1]
    assert fee.status == FeeAccrualStatus.SETTLED
    assert ledger_sums_per_transaction() == {D(0)}


def test_the_ib_rebate_is_paid_out_of_the_broker_share(desk):
    ib = desk.account(1000)
    master = desk.master(
        subscription_amount=100, broker_share_pct=40, ib_share_pct=25, ib_account=ib
    )
    sub = desk.follower(master)
    desk.run(datetime.now(UTC))
    (fee,) = desk.accruals(sub, "subscription")
    assert (fee.master_share, fee.broker_share, fee.ib_share) == (D("60"), D("30"), D("10"))
    desk.run(month_end(datetime.now(UTC)))
    settlement = Settlement.objects.get(subscription=sub)
    assert settlement.status == SettlementStatus.SETTLED
    ops = {op.role: op for op in BalanceOp.objects.filter(settlement=settlement)}
    assert ops["ib"].client_op_id == f"fee-{settlement.pk}-1-ib{ib.pk}"
    assert desk.balance(ib) == D("1010")
    assert desk.balance(master.account) == D("100060")
    assert desk.balance(sub.follower_account) == D("9900")


def test_a_subscription_keeps_its_version_until_operations_move_it(desk):
    from billing.services import fee_schedule_create, fee_state_move

    master = desk.master(subscription_amount=10)
    sub = desk.follower(master)
    desk.run(datetime.now(UTC))
    v2 = fee_schedule_create(master=master, values={"subscription_amount": D("30")}, actor=None)
    end = month_end(datetime.now(UTC))
    desk.run(end)  # next month's fee: still v1
    assert [(a.schedule_version, a.amount) for a in desk.accruals(sub, "subscription")] == [
        (1, D("10")),
        (1, D("10")),
    ]
    state = SubscriptionFeeState.objects.get(subscription=sub)
    fee_state_move(state=state, schedule=v2, actor=None)
    assert state.history.first().history_change_reason == "moved from fees v1 to v2"
    desk.run(month_end(end + timedelta(days=1)))
    assert [(a.schedule_version, a.amount) for a in desk.accruals(sub, "subscription")][-1] == (
        2,
        D("30"),
    )


def test_debt_left_at_unsubscribe_is_collected_from_the_next_deposit(desk):
    master = desk.master(subscription_amount=500)
    sub = desk.follower(master, balance=300)
    follower = sub.follower_account
    desk.run(datetime.now(UTC))
    subscription_delete(subscription=sub, actor=None)
    billing_unsubscribe(subscription_id=sub.pk, venue=desk.venue)
    settlement = Settlement.objects.get(subscription=sub, reason="unsubscribe")
    assert (settlement.collected, desk.balance(follower)) == (D("300"), D("0"))
    assert FeeDebt.objects.get(subscription=sub).remaining == D("200")
    desk.balance_op(follower, "250")
    billing_scan_cash(venue=desk.venue)
    assert FeeDebt.objects.get(subscription=sub).remaining == D("0")
    assert desk.balance(follower) == D("50")
    assert Settlement.objects.get(subscription=sub, reason="deposit").status == "settled"


def test_management_accrues_once_per_day_on_the_equity_snapshot(desk):
    master = desk.master(management_pct=2)
    sub = desk.follower(master, balance=10000)
    joined = sub.created_at
    midnight = joined.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    desk.run(midnight + timedelta(days=2, hours=5))
    desk.run(midnight + timedelta(days=2, hours=6))  # the same days: nothing new
    first, *days = desk.accruals(sub, "management")
    assert (first.period_start, first.period_end) == (joined, midnight)  # from joining
    assert [(a.period_end - a.period_start, a.amount) for a in days] == [
        (timedelta(days=1), D("0.55")),  # 10,000 x 2 % / 365 = 0.5479
        (timedelta(days=1), D("0.55")),
    ]
    seconds = int((midnight - joined).total_seconds())
    exact = D("10000") * D("0.02") * seconds / (365 * 86400)
    assert first.amount == exact.quantize(D("0.01"), rounding=ROUND_HALF_UP)
    assert "10,000.00 USD equity x 2% a year" in days[0].explanation
