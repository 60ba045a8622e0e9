"""Properties of the whole billing flow (PostgreSQL, the paper venue, a controlled clock),
over generated months of copied trades, deposits and withdrawals: every ledger transaction
balances, no fee is negative, the mark never falls, re-running a job changes nothing."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.models import FeeAccrual, SubscriptionFeeState
from billing.services import billing_scan_cash
from tests.billing.conftest import Clock, ShiftedVenue, ledger_sums_per_transaction, month_end
from tests.billing.test_idempotency import snapshot

pytestmark = pytest.mark.django_db

# A month: trades (price move in points, lots) and a cash movement (0 = none).
trades = st.lists(
    st.tuples(st.integers(min_value=-60, max_value=60), st.sampled_from(["0.1", "0.5", "1"])),
    max_size=2,
)
months = st.lists(st.tuples(trades, st.sampled_from([0, 500, -300])), min_size=1, max_size=2)


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=months)
def test_generated_months_keep_every_invariant(desk, plan):
    desk.clock = Clock()
    desk.venue = ShiftedVenue(desk.clock)
    master = desk.master(
        performance_pct=20, management_pct=2, volume_per_lot=1, broker_share_pct=30
    )
    sub = desk.follower(master, balance=20000)
    now = datetime.now(UTC)
    desk.run(now)
    marks = [D(0)]
    end = month_end(now)
    for month_trades, cash in plan:
        for points, lots in month_trades:
            desk.price("1.10000", "1.10010")
            pos = desk.open(sub, volume=lots)
            bid = D("1.10000") + D(points) / 10000
            desk.price(str(bid), str(bid + D("0.0001")))
            desk.close(sub, pos)
        if cash:
            desk.balance_op(sub.follower_account, str(cash))
            billing_scan_cash(venue=desk.venue)
        desk.run(end + timedelta(minutes=1))
        first = snapshot()
        desk.run(end + timedelta(minutes=1))
        billing_scan_cash(venue=desk.venue)
        assert snapshot() == first  # re-running changes nothing
        state = SubscriptionFeeState.objects.get(subscription=sub)
        assert state.hwm >= marks[-1]  # the mark never falls
        marks.append(state.hwm)
        desk.clock.advance(end - desk.clock.now() + timedelta(days=1))
        end = month_end(end + timedelta(days=1))
    fees = FeeAccrual.objects.filter(subscription=sub)
    assert all(f.amount >= 0 and f.master_share >= 0 and f.broker_share >= 0 for f in fees)
    assert ledger_sums_per_transaction() == {D(0)}
    # Performance fees add up to 20 % of the final mark (one half-cent rounding per fee).
    perf = [f.amount for f in fees if f.kind == "performance"]
    assert abs(sum(perf, D(0)) - marks[-1] * D("0.2")) <= D("0.005") * len(perf)
