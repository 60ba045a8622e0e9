"""Accruals and crystallisation: what a follower owes, per (subscription, kind, period).

Every change to a subscription's fee standing happens under its SubscriptionFeeState row
lock, and every accrual is inserted under a unique (subscription, kind, period start): a
job run twice, or by two schedulers at once, finds the cursors advanced (or the row
there) and changes nothing. Venue reads (deals, positions) happen before the lock, never
inside a transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Sum
from django.utils import timezone

from accounts.models import TradingAccount
from brokers.gateways.types import Deal, DealEntry, Position
from brokers.models import Symbol
from config.history import save_audited
from copytrading.models import CopySubscription, TradeLink

from .. import fees
from ..choices import (
    PAYMENT_ORDER,
    FeeAccrualStatus,
    FeeAccrualTrigger,
    FeeKind,
    SettlementReason,
)
from ..models import (
    FeeAccrual,
    FeeDebt,
    FeeSchedule,
    Settlement,
    SettlementLine,
    SubscriptionFeeState,
)
from ..venue import Venue
from .ledger import accrual_legs, ledger_post
from .schedules import schedule_for_join

logger = logging.getLogger(__name__)

# A job that was down for a long time catches up at most this much per run.
MAX_DAYS_PER_RUN = 400
MAX_PERIODS_PER_RUN = 24
OTHER_KINDS = [FeeKind.MANAGEMENT, FeeKind.SUBSCRIPTION, FeeKind.VOLUME]


@dataclass
class AccountData:
    """What the venue said about one follower account, read before any lock is taken."""

    deals: list[Deal]
    positions: list[Position]
    read_at: datetime


def account_data_read(*, venue: Venue, account: TradingAccount, since: datetime) -> AccountData:
    return AccountData(
        deals=venue.deals(account, since),
        positions=venue.positions(account),
        read_at=timezone.now(),
    )


def fee_states_ensure() -> int:
    """Gives every live subscription whose master has a fee schedule its fee state: the
    version it joined under, a mark of 0, its first period starting when it subscribed."""
    made = 0
    subs = (
        CopySubscription.objects.filter(fee_state__isnull=True, master__fee_schedules__isnull=False)
        .select_related("follower_account")
        .distinct()
    )
    for sub in subs:
        schedule = schedule_for_join(subscription=sub)
        if schedule is None:
            continue
        joined = max(sub.created_at, schedule.created_at)
        _, created = SubscriptionFeeState.objects.get_or_create(
            subscription=sub,
            defaults={
                "schedule": schedule,
                "currency": sub.follower_account.currency,
                "joined_at": joined,
                "period_start": joined,
                "management_through": joined,
                "subscription_through": joined,
            },
        )
        made += created
    return made


def _money(value: Decimal) -> str:
    """An amount as statements show it: cents, thousands separated."""
    return format(fees.round_money(value), ",f")


def _pct(value: Decimal) -> str:
    """A percentage without trailing zeros: 20.0000 -> 20."""
    return format(value.normalize(), "f")


class _Accruer:
    """The accrual steps of one locked fee state (inside its transaction)."""

    def __init__(self, state: SubscriptionFeeState) -> None:
        self.state = state
        self.sub: CopySubscription = state.subscription
        self.schedule: FeeSchedule = state.schedule
        self.currency = state.currency

    def accrue(
        self,
        *,
        kind: str,
        start: datetime,
        end: datetime,
        base: Decimal,
        rate: Decimal,
        amount: Decimal,
        explanation: str,
        inputs: dict[str, Any],
        trigger: str = FeeAccrualTrigger.SCHEDULE,
    ) -> FeeAccrual | None:
        schedule = self.schedule
        ib_pct = schedule.ib_share_pct if schedule.ib_account_id else Decimal(0)
        shares = fees.split_fee(amount, broker_pct=schedule.broker_share_pct, ib_pct=ib_pct)
        accrual = FeeAccrual(
            subscription=self.sub,
            follower_account_id=self.sub.follower_account_id,
            master_account_id=self.sub.master_account_id,
            schedule=schedule,
            schedule_version=schedule.version,
            kind=kind,
            trigger=trigger,
            period_start=start,
            period_end=end,
            base_amount=base if kind == FeeKind.VOLUME else fees.round_money(base),
            rate=rate,
            amount=amount,
            currency=self.currency,
            master_share=shares.master,
            broker_share=shares.broker,
            ib_share=shares.ib,
            explanation=explanation,
            inputs={
                k: str(v) if isinstance(v, Decimal | datetime) else v for k, v in inputs.items()
            },
        )
        try:
            with transaction.atomic():
                accrual.save()
        except IntegrityError:
            return None  # accrued already: (subscription, kind, period start) is unique
        ledger_post(
            key=f"accrual:{accrual.pk}",
            memo=f"{accrual.get_kind_display()} of subscription {self.sub.pk}, "
            f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M}",
            currency=self.currency,
            legs=accrual_legs(accrual),
            accrual=accrual,
        )
        return accrual

    # -- subscription ------------------------------------------------------------------

    def subscription_fees(self, *, as_of: datetime) -> None:
        """The flat fee, in full, for every period started by `as_of` and not charged yet."""
        state, amount = self.state, self.schedule.subscription_amount
        for _ in range(MAX_PERIODS_PER_RUN):
            if state.subscription_through > as_of:
                return
            start = state.subscription_through
            p0, p1 = fees.period_bounds(self.schedule.period, start)
            if amount > 0:
                self.accrue(
                    kind=FeeKind.SUBSCRIPTION,
                    start=start,
                    end=p1,
                    base=amount,
                    rate=Decimal(1),
                    amount=amount,
                    explanation=f"Flat {_money(amount)} {self.currency} for the "
                    f"{self.schedule.period} period starting {p0:%Y-%m-%d} "
                    f"(charged in full for a period started).",
                    inputs={"period_start": p0, "period_end": p1},
                )
            state.subscription_through = p1

    # -- management --------------------------------------------------------------------

    def equity_share(self) -> tuple[Decimal, dict[str, Any]]:
        """The follower's equity under this subscription: its last equity snapshot split
        equally between its subscriptions that pay fees."""
        account = self.sub.follower_account
        open_states = SubscriptionFeeState.objects.filter(
            subscription__follower_account_id=account.pk, closed_at__isnull=True
        ).count()
        n = max(open_states, 1)
        share = fees.round_money(account.equity / n)
        return share, {
            "account_equity": account.equity,
            "equity_snapshot_at": account.snapshot_at,
            "fee_paying_subscriptions": n,
        }

    def management_fees(self, *, until: datetime, partial: bool) -> None:
        """Daily accruals from the cursor up to `until`: whole UTC days only, unless
        `partial` (a crystallisation point), when the last day is cut at `until`."""
        state = self.state
        annual = self.schedule.management_pct / 100
        for _ in range(MAX_DAYS_PER_RUN):
            start = state.management_through
            if start >= until:
                return
            _, day_end = fees.day_bounds(start)
            end = min(day_end, until)
            if end < day_end and not partial:
                return
            if annual > 0:
                seconds = int((end - start).total_seconds())
                equity, inputs = self.equity_share()
                amount = fees.management_fee(equity=equity, annual_rate=annual, seconds=seconds)
                self.accrue(
                    kind=FeeKind.MANAGEMENT,
                    start=start,
                    end=end,
                    base=equity,
                    rate=annual,
                    amount=amount,
                    explanation=f"{_money(equity)} {self.currency} equity x "
                    f"{_pct(self.schedule.management_pct)}% a year x {seconds} s / 31,536,000 s "
                    f"= {_money(amount)}",
                    inputs={**inputs, "seconds": seconds},
                )
            state.management_through = end

    # -- crystallisation -----------------------------------------------------------------

    def crystallise(self, *, data: AccountData, at: datetime, trigger: str) -> None:
        """Closes the performance window [period_start, at): volume of its opening fills,
        then the performance fee on its net result above the mark. Management and the
        subscription fee are accrued up to `at` first, as they are deducted."""
        state, schedule = self.state, self.schedule
        start = state.period_start
        self.subscription_fees(as_of=at)
        self.management_fees(until=at, partial=True)
        ids = set(
            TradeLink.objects.filter(subscription=self.sub)
            .exclude(follower_position_id="")
            .values_list("follower_position_id", flat=True)
        )

        def in_window(d: Deal, entry: DealEntry) -> bool:
            return d.entry == entry and d.position_id in ids and start <= d.ts < at

        opens = [d for d in data.deals if in_window(d, DealEntry.IN)]
        closes = [d for d in data.deals if in_window(d, DealEntry.OUT)]
        if schedule.volume_per_lot > 0 or schedule.volume_per_million > 0:
            self._volume(opens, start=start, end=at, trigger=trigger)
        realized = fees.total(d.profit for d in closes)
        floating = fees.total(p.profit for p in data.positions if p.position_id in ids)
        other = FeeAccrual.objects.filter(
            subscription=self.sub,
            kind__in=OTHER_KINDS,
            period_start__gte=start,
            period_start__lt=at,
        ).exclude(status=FeeAccrualStatus.REVERSED).aggregate(s=Sum("amount"))["s"] or Decimal(0)
        rate = schedule.performance_pct / 100
        r = fees.performance_fee(
            rate=rate,
            hwm=state.hwm,
            cumulative=state.cumulative,
            realized=realized,
            floating_start=state.floating_mark,
            floating_end=floating,
            other_fees=other,
        )
        if rate > 0:
            self.accrue(
                kind=FeeKind.PERFORMANCE,
                start=start,
                end=at,
                base=r.base,
                rate=rate,
                amount=r.amount,
                trigger=trigger,
                explanation=(
                    f"Realized {_money(realized)} + floating now {_money(floating)} - floating "
                    f"at the last mark {_money(state.floating_mark)} - other fees "
                    f"{_money(other)} = {_money(r.gain)}; net result since joining "
                    f"{_money(r.cumulative)}, high-water mark {_money(r.hwm_before)}: "
                    f"{_money(r.base)} above the mark x {_pct(schedule.performance_pct)}% "
                    f"= {_money(r.amount)}"
                    + (f"; loss carried forward {_money(r.carried_loss)}" if r.carried_loss else "")
                ),
                inputs={
                    "realized": realized,
                    "floating_end": floating,
                    "floating_start": state.floating_mark,
                    "other_fees": other,
                    "gain": r.gain,
                    "cumulative_before": state.cumulative,
                    "cumulative_after": r.cumulative,
                    "hwm_before": r.hwm_before,
                    "hwm_after": r.hwm_after,
                    "carried_loss": r.carried_loss,
                    "closing_deals": [d.deal_id for d in closes],
                    "open_positions": sorted(
                        p.position_id for p in data.positions if p.position_id in ids
                    ),
                    "floating_read_at": data.read_at,
                },
            )
        state.hwm = fees.round_money(r.hwm_after)
        state.cumulative = fees.round_money(r.cumulative)
        state.carried_loss = fees.round_money(r.carried_loss)
        state.floating_mark = floating
        state.period_start = at

    def _volume(self, opens: list[Deal], *, start: datetime, end: datetime, trigger: str) -> None:
        schedule = self.schedule
        sizes = dict(
            Symbol.objects.filter(
                broker_server_id=self.sub.follower_account.broker_server_id,
                name__in={d.symbol for d in opens},
            ).values_list("name", "contract_size")
        )
        lots = fees.total(d.volume for d in opens)
        notional = fees.total(d.volume * sizes.get(d.symbol, Decimal(0)) * d.price for d in opens)
        amount = fees.volume_fee(
            lots=lots,
            notional=notional,
            per_lot=schedule.volume_per_lot,
            per_million=schedule.volume_per_million,
        )
        # The base is the lots (kept to the lot's places), or the notional in cents when
        # only a per-million rate is charged.
        if schedule.volume_per_lot == 0:
            base, rate = fees.round_money(notional), schedule.volume_per_million / fees.MILLION
        else:
            base, rate = lots, schedule.volume_per_lot
        self.accrue(
            kind=FeeKind.VOLUME,
            start=start,
            end=end,
            base=base,
            rate=rate,
            amount=amount,
            trigger=trigger,
            explanation=f"{lots} lots x {_money(schedule.volume_per_lot)} + "
            f"{_money(notional)} notional / 1,000,000 x {_money(schedule.volume_per_million)} "
            f"= {_money(amount)} ({len(opens)} opening fills)",
            inputs={
                "lots": lots,
                "notional": notional,
                "opening_deals": [d.deal_id for d in opens],
            },
        )


# -- settlements: planning -------------------------------------------------------------


def settlement_plan(
    *,
    state: SubscriptionFeeState,
    key: str,
    reason: str,
    cutoff: datetime | None,
    period_start: datetime | None = None,
) -> Settlement | None:
    """Plans collecting, for one subscription, its open fee debts and (when `cutoff` is
    given) its accruals for periods starting before `cutoff` that no settlement holds yet.
    Debts come first (oldest money first), then accruals in the payment order. None when
    there is nothing to collect, or when `key` was planned already."""
    sub = state.subscription
    debts = list(
        FeeDebt.objects.filter(subscription=sub, remaining__gt=0)
        .select_related("accrual")
        .order_by("id")
    )
    accruals: list[FeeAccrual] = []
    if cutoff is not None:
        in_a_line = SettlementLine.objects.filter(accrual=OuterRef("pk"), debt__isnull=True)
        accruals = list(
            FeeAccrual.objects.filter(
                subscription=sub, status=FeeAccrualStatus.ACCRUED, period_start__lt=cutoff
            )
            .exclude(Exists(in_a_line))
            .order_by("period_start", "id")
        )
        accruals.sort(key=lambda a: (PAYMENT_ORDER.index(FeeKind(a.kind)), a.period_start, a.pk))
    if not debts and not accruals:
        return None
    due = fees.total(d.remaining for d in debts) + fees.total(a.amount for a in accruals)
    try:
        with transaction.atomic():
            settlement = Settlement.objects.create(
                key=key,
                reason=reason,
                follower_account_id=sub.follower_account_id,
                subscription=sub,
                currency=state.currency,
                period_start=period_start,
                period_end=cutoff,
                due=due,
            )
    except IntegrityError:
        return None
    lines = [
        SettlementLine(
            settlement=settlement,
            accrual=d.accrual,
            debt=d,
            kind=d.kind,
            position=i,
            due=d.remaining,
        )
        for i, d in enumerate(debts)
    ]
    lines += [
        SettlementLine(
            settlement=settlement, accrual=a, kind=a.kind, position=len(debts) + i, due=a.amount
        )
        for i, a in enumerate(accruals)
    ]
    SettlementLine.objects.bulk_create(lines)
    return settlement


# -- the jobs ----------------------------------------------------------------------------


def _period_end(state: SubscriptionFeeState) -> datetime:
    return fees.period_bounds(state.schedule.period, state.period_start)[1]


def _locked_state(state_id: int) -> SubscriptionFeeState:
    return (
        SubscriptionFeeState.objects.select_for_update(of=("self",))
        .select_related("schedule", "subscription__follower_account")
        .get(pk=state_id)
    )


def _crystallise_due_periods(
    acc: _Accruer, data: AccountData, *, as_of: datetime
) -> list[Settlement]:
    planned = []
    for _ in range(MAX_PERIODS_PER_RUN):
        end = _period_end(acc.state)
        if end > as_of:
            break
        start = acc.state.period_start
        acc.crystallise(data=data, at=end, trigger=FeeAccrualTrigger.SCHEDULE)
        settlement = settlement_plan(
            state=acc.state,
            key=f"period:{acc.sub.pk}:{end:%Y%m%dT%H%M%S}",
            reason=SettlementReason.PERIOD_END,
            cutoff=end,
            period_start=start,
        )
        if settlement is not None:
            planned.append(settlement)
    return planned


def fee_state_run(*, state_id: int, as_of: datetime, venue: Venue) -> list[Settlement]:
    """The scheduled job for one subscription: crystallise every period that ended by
    `as_of` (planning its settlement), then accrue the subscription fee of the period
    started and the management fee of every whole day elapsed."""
    state = SubscriptionFeeState.objects.select_related(
        "schedule", "subscription__follower_account"
    ).get(pk=state_id)
    if state.closed_at is not None:
        return []
    data = None
    if _period_end(state) <= as_of:
        data = account_data_read(
            venue=venue, account=state.subscription.follower_account, since=state.period_start
        )
    with transaction.atomic():
        state = _locked_state(state_id)
        if state.closed_at is not None:
            return []
        acc = _Accruer(state)
        planned = _crystallise_due_periods(acc, data, as_of=as_of) if data else []
        acc.subscription_fees(as_of=as_of)
        acc.management_fees(until=as_of, partial=False)
        save_audited(state, actor=None, reason="fees accrued")
    return planned


def fee_state_crystallise_now(
    *,
    state_id: int,
    at: datetime,
    trigger: str,
    key: str,
    reason: str,
    data: AccountData,
    close: bool = False,
) -> list[Settlement]:
    """Crystallises a subscription at `at` at once (a withdrawal, an unsubscribe), so a
    fee cannot be dodged by leaving just before period end; plans a settlement of
    everything it owes, debts included. `close` ends its billing (unsubscribe)."""
    with transaction.atomic():
        state = _locked_state(state_id)
        if state.closed_at is not None:
            return []
        acc = _Accruer(state)
        planned = _crystallise_due_periods(acc, data, as_of=at)
        if state.period_start < at:
            acc.crystallise(data=data, at=at, trigger=trigger)
        if close:
            state.closed_at = at
        save_audited(state, actor=None, reason=f"crystallised ({trigger})")
        settlement = settlement_plan(state=state, key=key, reason=reason, cutoff=at)
        return [*planned, settlement] if settlement is not None else planned
