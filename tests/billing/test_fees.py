"""The fee arithmetic of billing/fees.py: worked examples as tables, and properties."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing import fees

# -- performance: a table of months, each row one crystallisation ----------------------
# (realized, floating_end, other_fees) -> (fee, hwm after, carried loss after)
# Rate 20 %. The floating P&L at the start of each month is the previous row's end.
MONTHS = [
    # month 1: a loss of 500 -> no fee, loss carried forward
    ((D("-500"), D("0"), D("0")), (D("0.00"), D("0"), D("500"))),
    # month 2: +300 realized, still 200 below the mark -> no fee
    ((D("300"), D("0"), D("0")), (D("0.00"), D("0"), D("200"))),
    # month 3: +400 realized: 200 makes up the loss, 200 above the mark -> 40.00
    ((D("400"), D("0"), D("0")), (D("40.00"), D("200"), D("0"))),
    # month 4: +100 realized, +50 floating open at the end, 10 of other fees -> base 140
    ((D("100"), D("50"), D("10")), (D("28.00"), D("340"), D("0"))),
    # month 5: the open position closes at +50 (realized 50, floating 50 -> 0): no new profit
    ((D("50"), D("0"), D("0")), (D("0.00"), D("340"), D("0"))),
    # month 6: partial closes worth 33.335 in total -> 20 % = 6.667 -> 6.67 (half up)
    ((D("33.335"), D("0"), D("0")), (D("6.67"), D("373.335"), D("0"))),
]


def crystallise_each(rate, periods):
    """performance_fee over consecutive periods of (realized, floating_end, other_fees),
    each starting from the previous one's mark, net result and floating figure."""
    hwm, cumulative, floating = D(0), D(0), D(0)
    results = []
    for realized, floating_end, other in periods:
        r = fees.performance_fee(
            rate=rate,
            hwm=hwm,
            cumulative=cumulative,
            realized=realized,
            floating_start=floating,
            floating_end=floating_end,
            other_fees=other,
        )
        results.append(r)
        hwm, cumulative, floating = r.hwm_after, r.cumulative, floating_end
    return results


def test_a_loss_then_a_recovery_charges_only_above_the_mark():
    results = crystallise_each(D("0.2"), [inputs for inputs, _ in MONTHS])
    got = [(r.amount, r.hwm_after, r.carried_loss) for r in results]
    assert got == [expected for _, expected in MONTHS]


@pytest.mark.parametrize(
    ("equity", "rate", "seconds", "fee"),
    [
        (D("10000"), D("0.02"), 86400, D("0.55")),  # 10000 x 2 % / 365 = 0.5479
        (D("10000"), D("0.02"), 43200, D("0.27")),  # half a day (joined at noon)
        (D("36500"), D("0.01"), 86400, D("1.00")),
        (D("-50"), D("0.02"), 86400, D("0.00")),  # negative equity is charged nothing
        (D("1000000"), D("0.02"), 365 * 86400, D("20000.00")),
    ],
)
def test_management_fee(equity, rate, seconds, fee):
    assert fees.management_fee(equity=equity, annual_rate=rate, seconds=seconds) == fee


@pytest.mark.parametrize(
    ("lots", "notional", "per_lot", "per_million", "fee"),
    [
        (D("1.5"), D("0"), D("2"), D("0"), D("3.00")),
        (D("0"), D("165015"), D("0"), D("10"), D("1.65")),  # 1.5 lots EURUSD @ 1.1001
        (D("0.33"), D("0"), D("0.015"), D("0"), D("0.00")),  # 0.00495 rounds down
        (D("0.34"), D("0"), D("0.015"), D("0"), D("0.01")),  # 0.0051 rounds up
    ],
)
def test_volume_fee(lots, notional, per_lot, per_million, fee):
    got = fees.volume_fee(lots=lots, notional=notional, per_lot=per_lot, per_million=per_million)
    assert got == fee


@pytest.mark.parametrize(
    ("amount", "broker", "ib", "shares"),
    [
        (D("40.00"), D("30"), D("0"), (D("28.00"), D("12.00"), D("0.00"))),
        (D("40.00"), D("30"), D("25"), (D("28.00"), D("9.00"), D("3.00"))),
        (D("0.01"), D("50"), D("50"), (D("0.00"), D("0.00"), D("0.01"))),
        (D("10.00"), D("0"), D("50"), (D("10.00"), D("0.00"), D("0.00"))),
    ],
)
def test_split_fee_adds_up_exactly(amount, broker, ib, shares):
    s = fees.split_fee(amount, broker_pct=broker, ib_pct=ib)
    assert (s.master, s.broker, s.ib) == shares
    assert s.master + s.broker + s.ib == amount


def test_a_partial_payment_goes_in_payment_order():
    dues = [("performance", D("40")), ("management", D("5")), ("subscription", D("10"))]
    out = fees.allocate_payment(D("42.50"), dues)
    assert [(a.key, a.paid, a.unpaid) for a in out] == [
        ("performance", D("40"), D("0")),
        ("management", D("2.50"), D("2.50")),
        ("subscription", D("0"), D("10")),
    ]
    with pytest.raises(fees.FeeInputError, match="exceeds the total due"):
        fees.allocate_payment(D("56"), dues)


@pytest.mark.parametrize(
    ("kind", "at", "start", "end"),
    [
        (
            "weekly",
            datetime(2026, 12, 6, 9, tzinfo=UTC),
            datetime(2026, 11, 30),
            datetime(2026, 12, 7),
        ),
        (
            "monthly",
            datetime(2026, 12, 31, 23, tzinfo=UTC),
            datetime(2026, 12, 1),
            datetime(2027, 1, 1),
        ),
        (
            "quarterly",
            datetime(2026, 11, 2, tzinfo=UTC),
            datetime(2026, 10, 1),
            datetime(2027, 1, 1),
        ),
        ("quarterly", datetime(2027, 1, 1, tzinfo=UTC), datetime(2027, 1, 1), datetime(2027, 4, 1)),
    ],
)
def test_period_bounds(kind, at, start, end):
    assert fees.period_bounds(kind, at) == (start.replace(tzinfo=UTC), end.replace(tzinfo=UTC))


def test_bad_inputs_say_what_to_fix():
    with pytest.raises(fees.FeeInputError, match="rate must not be negative"):
        fees.performance_fee(
            rate=D("-0.1"),
            hwm=D(0),
            cumulative=D(0),
            realized=D(1),
            floating_start=D(0),
            floating_end=D(0),
            other_fees=D(0),
        )
    with pytest.raises(fees.FeeInputError, match="finite Decimal"):
        fees.management_fee(equity=1000.0, annual_rate=D("0.02"), seconds=1)  # type: ignore[arg-type]
    with pytest.raises(fees.FeeInputError, match="timezone-aware"):
        fees.period_bounds("monthly", datetime(2026, 1, 1))
    with pytest.raises(fees.FeeInputError, match="period must be one of"):
        fees.period_bounds("daily", datetime(2026, 1, 1, tzinfo=UTC))


# -- properties --------------------------------------------------------------------------

money = st.decimals(min_value=D("-100000"), max_value=D("100000"), places=2)
rates = st.decimals(min_value=D("0"), max_value=D("1"), places=4)


@settings(max_examples=300, deadline=None)
@given(rate=rates, periods=st.lists(st.tuples(money, money, money.map(abs)), max_size=12))
def test_the_mark_never_falls_and_fees_are_never_negative(rate, periods):
    hwm = charged = D(0)
    for r in crystallise_each(rate, periods):
        assert r.amount >= 0
        assert r.hwm_after >= hwm
        assert r.carried_loss >= 0
        assert r.amount == fees.round_money(r.base * rate)
        charged += r.base
        hwm = r.hwm_after
    # Charged bases add up to the mark: no profit is charged twice.
    assert charged == hwm


@settings(max_examples=300, deadline=None)
@given(
    amount=st.decimals(min_value=D("0"), max_value=D("1000000"), places=2),
    broker=st.decimals(min_value=D("0"), max_value=D("100"), places=2),
    ib=st.decimals(min_value=D("0"), max_value=D("100"), places=2),
)
def test_shares_are_never_negative_and_add_up(amount, broker, ib):
    s = fees.split_fee(amount, broker_pct=broker, ib_pct=ib)
    assert min(s.master, s.broker, s.ib) >= 0
    assert s.master + s.broker + s.ib == amount


@settings(max_examples=200, deadline=None)
@given(
    dues=st.lists(st.decimals(min_value=D("0"), max_value=D("1000"), places=2), max_size=6),
    share=st.fractions(min_value=0, max_value=1),
)
def test_allocation_pays_exactly_what_was_collected(dues, share):
    due_total = sum(dues, D(0))
    paid = fees.floor_money(due_total * D(share.numerator) / D(share.denominator))
    out = fees.allocate_payment(paid, list(enumerate(dues)))
    assert sum((a.paid for a in out), D(0)) == paid
    assert all(0 <= a.paid <= a.due for a in out)


def test_timedelta_day_bounds():
    start, end = fees.day_bounds(datetime(2026, 12, 6, 13, 5, tzinfo=UTC))
    assert end - start == timedelta(days=1)
    assert start == datetime(2026, 12, 6, tzinfo=UTC)
