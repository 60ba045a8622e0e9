"""Billing: fee schedules and caps, per-subscription fee state (high-water mark), accruals,
reversals, a double-entry ledger, settlements with their venue balance operations, fee
debts and the follower's deposits and withdrawals.

Invariants the database enforces (migration 0002 adds the triggers):
- every ledger transaction's legs sum to zero per currency, checked at commit
  (a DEFERRABLE INITIALLY DEFERRED constraint trigger), and legs are never updated or
  deleted;
- an accrual is unique per (subscription, fee kind, period start), never negative, and its
  figures (base, rate, amount, currency, period, schedule version) never change after insert;
- a balance operation's client op id is unique, so a retry can never charge twice.
"""

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q
from simple_history.models import HistoricalRecords

from config.fields import money_field

from .choices import (
    BalanceOpRole,
    BalanceOpStatus,
    CashMovementKind,
    FeeAccrualStatus,
    FeeAccrualTrigger,
    FeeKind,
    FeePeriod,
    LedgerAccountKind,
    SettlementReason,
    SettlementStatus,
)


def pct_field(**kwargs: object) -> models.DecimalField:
    """A percentage (20 = 20 %)."""
    kwargs.setdefault("default", Decimal("0"))
    return models.DecimalField(max_digits=9, decimal_places=4, **kwargs)


def rate_field(**kwargs: object) -> models.DecimalField:
    """A rate as stored with an accrual (a fraction for % fees, an amount per unit else)."""
    return models.DecimalField(max_digits=20, decimal_places=8, **kwargs)


class FeeCap(models.Model):
    """The broker's ceiling for one fee kind: no schedule may set a higher percentage
    (`max_pct`, performance and management) or a higher amount (`max_amount`: the flat
    subscription fee, the volume fee per lot and per million). Empty: no ceiling."""

    kind = models.CharField(max_length=12, choices=FeeKind.choices, unique=True)
    max_pct = pct_field(null=True, blank=True, default=None)
    max_amount = money_field(null=True, blank=True, default=None)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["kind"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(max_pct__isnull=True) | Q(max_pct__gte=0, max_pct__lte=100))
                & (Q(max_amount__isnull=True) | Q(max_amount__gte=0)),
                name="feecap_bounds_valid",
            )
        ]

    def __str__(self) -> str:
        return f"Cap on {self.get_kind_display().lower()}"


class FeeSchedule(models.Model):
    """One version of a master's fees, set by Operations. A change is a new row (version
    n + 1); rows are never edited, so every accrual can name the version it used.

    Amounts are in the follower account's currency (no FX). `broker_share_pct` of every fee
    goes to the broker, `ib_share_pct` of the broker's share to the IB (when `ib_account` is
    set), the rest to the master. Guards: one row per (master, version); rates in range;
    the caps (FeeCap) are checked by billing.services.fee_schedule_create.
    """

    master = models.ForeignKey(
        "copytrading.CopyMaster", on_delete=models.PROTECT, related_name="fee_schedules"
    )
    version = models.PositiveIntegerField(editable=False)
    period = models.CharField(
        max_length=10,
        choices=FeePeriod.choices,
        default=FeePeriod.MONTHLY,
        help_text="Crystallisation and settlement period (UTC calendar).",
    )
    performance_pct = pct_field(help_text="% of new profit above the high-water mark.")
    management_pct = pct_field(help_text="% a year of the follower's equity, accrued daily.")
    subscription_amount = money_field(help_text="Flat, per period started.")
    volume_per_lot = money_field(help_text="Per lot copied (opening fills).")
    volume_per_million = money_field(help_text="Per million notional copied (opening fills).")
    broker_share_pct = pct_field(help_text="% of each fee that goes to the broker.")
    ib_share_pct = pct_field(help_text="% of the broker's share rebated to the IB.")
    ib_account = models.ForeignKey(
        "accounts.TradingAccount",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The introducing broker's trading account that receives the rebate.",
    )
    note = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["master_id", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["master", "version"], name="feeschedule_one_per_version"
            ),
            models.CheckConstraint(
                condition=Q(performance_pct__gte=0, performance_pct__lte=100)
                & Q(management_pct__gte=0, management_pct__lte=100)
                & Q(broker_share_pct__gte=0, broker_share_pct__lte=100)
                & Q(ib_share_pct__gte=0, ib_share_pct__lte=100)
                & Q(subscription_amount__gte=0)
                & Q(volume_per_lot__gte=0)
                & Q(volume_per_million__gte=0),
                name="feeschedule_rates_in_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.master} fees v{self.version}"

    def rate_of(self, kind: str) -> Decimal:
        """The schedule's figure for a fee kind, as stated (percent, amount)."""
        return {
            FeeKind.PERFORMANCE: self.performance_pct,
            FeeKind.MANAGEMENT: self.management_pct,
            FeeKind.SUBSCRIPTION: self.subscription_amount,
            FeeKind.VOLUME: self.volume_per_lot,
        }[FeeKind(kind)]


class SubscriptionFeeState(models.Model):
    """A subscription's standing with billing: the schedule version it joined under (until
    Operations move it), its high-water mark and cumulative net result, the loss carried
    forward, where the current performance period starts and how far management is accrued.

    Guards: the mark never falls (a check constraint: hwm >= 0, and services only raise it);
    every change happens under this row's lock, which is what makes two schedulers running
    the same job at once change nothing twice.
    """

    subscription = models.OneToOneField(
        "copytrading.CopySubscription", on_delete=models.PROTECT, related_name="fee_state"
    )
    schedule = models.ForeignKey(FeeSchedule, on_delete=models.PROTECT, related_name="states")
    currency = models.CharField(max_length=3)
    joined_at = models.DateTimeField()
    hwm = money_field(help_text="High-water mark of the cumulative net result.")
    cumulative = money_field(help_text="Net result of copied trades since joining.")
    carried_loss = money_field(help_text="Loss to make up before the next performance fee.")
    floating_mark = money_field(help_text="Floating P&L of copied positions at the last mark.")
    period_start = models.DateTimeField(help_text="Start of the current performance period.")
    management_through = models.DateTimeField(help_text="Management fee accrued up to here.")
    subscription_through = models.DateTimeField(
        help_text="Subscription fee charged for periods starting before this."
    )
    closed_at = models.DateTimeField(
        null=True, blank=True, help_text="Unsubscribed: crystallised and settled."
    )
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["subscription_id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(hwm__gte=0) & Q(carried_loss__gte=0), name="feestate_hwm_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"Fees of subscription {self.subscription_id}"


class FeeAccrual(models.Model):
    """One fee a follower owes for one (subscription, kind, period), with every figure that
    made it: base, rate, amount, currency, period, schedule version, and the explanation a
    customer can check by hand.

    Guards: unique per (subscription, kind, period start), so re-running a job or two
    schedulers at once insert it once; the amount is never negative; the figures never
    change after insert (a trigger refuses it): a mistake is reversed, never edited.
    """

    subscription = models.ForeignKey(
        "copytrading.CopySubscription", on_delete=models.PROTECT, related_name="fee_accruals"
    )
    follower_account = models.ForeignKey(
        "accounts.TradingAccount", on_delete=models.PROTECT, related_name="+"
    )
    master_account = models.ForeignKey(
        "accounts.TradingAccount", on_delete=models.PROTECT, related_name="+"
    )
    schedule = models.ForeignKey(FeeSchedule, on_delete=models.PROTECT, related_name="accruals")
    schedule_version = models.PositiveIntegerField()
    kind = models.CharField(max_length=12, choices=FeeKind.choices)
    trigger = models.CharField(
        max_length=12, choices=FeeAccrualTrigger.choices, default=FeeAccrualTrigger.SCHEDULE
    )
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    base_amount = money_field()
    rate = rate_field()
    amount = money_field()
    currency = models.CharField(max_length=3)
    master_share = money_field()
    broker_share = money_field()
    ib_share = money_field()
    explanation = models.TextField()
    inputs = models.JSONField(default=dict)
    status = models.CharField(
        max_length=10, choices=FeeAccrualStatus.choices, default=FeeAccrualStatus.ACCRUED
    )
    created_at = models.DateTimeField(auto_now_add=True)
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-period_end", "-id"]
        permissions = [("reverse_feeaccrual", "Can reverse a fee accrual (with a reason)")]
        constraints = [
            models.UniqueConstraint(
                fields=["subscription", "kind", "period_start"],
                name="feeaccrual_once_per_subscription_kind_period",
            ),
            models.CheckConstraint(
                condition=Q(amount__gte=0)
                & Q(master_share__gte=0)
                & Q(broker_share__gte=0)
                & Q(ib_share__gte=0),
                name="feeaccrual_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(period_end__gte=models.F("period_start")),
                name="feeaccrual_period_ordered",
            ),
        ]
        indexes = [
            models.Index(fields=["follower_account", "period_end"], name="feeaccrual_follower"),
            models.Index(fields=["master_account", "period_end"], name="feeaccrual_master"),
            models.Index(fields=["subscription", "status"], name="feeaccrual_sub_status"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.amount} {self.currency} (#{self.pk})"


class LedgerAccount(models.Model):
    """An account of the double-entry ledger: what a follower owes, what a master or IB is
    owed, the broker's revenue, and the clearing account of money moved on the venues.
    Amounts are positive on the debit side. Guards: one per code (kind, owner, currency)."""

    code = models.CharField(max_length=80, unique=True)
    kind = models.CharField(max_length=20, choices=LedgerAccountKind.choices)
    trading_account = models.ForeignKey(
        "accounts.TradingAccount", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    currency = models.CharField(max_length=3)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code


class LedgerTransaction(models.Model):
    """One balanced posting. Guards: legs sum to zero per currency (checked by PostgreSQL at
    commit), the idempotency `key` is unique (a re-run posts nothing twice), and neither the
    transaction nor its legs are ever updated or deleted."""

    key = models.CharField(max_length=120, unique=True)
    memo = models.CharField(max_length=300)
    accrual = models.ForeignKey(
        FeeAccrual, on_delete=models.PROTECT, null=True, blank=True, related_name="transactions"
    )
    settlement = models.ForeignKey(
        "Settlement", on_delete=models.PROTECT, null=True, blank=True, related_name="transactions"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.key}: {self.memo}"


class LedgerLeg(models.Model):
    """One side of a posting: a signed amount (debit positive) on one ledger account."""

    transaction = models.ForeignKey(
        LedgerTransaction, on_delete=models.PROTECT, related_name="legs"
    )
    account = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="legs")
    amount = money_field()
    currency = models.CharField(max_length=3)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=~Q(amount=0), name="ledgerleg_amount_not_zero"),
        ]

    def __str__(self) -> str:
        return f"{self.account}: {self.amount} {self.currency}"


class FeeReversal(models.Model):
    """Compliance's reversal of one accrual, with the reason and who: it posts the accrual's
    legs negated (a new transaction, never an edit), cancels its open fee debt and refunds
    on the venue what the follower had paid of it. Guards: at most one per accrual."""

    accrual = models.OneToOneField(FeeAccrual, on_delete=models.PROTECT, related_name="reversal")
    reason = models.TextField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    transaction = models.OneToOneField(
        LedgerTransaction,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="Empty when the accrual was zero (nothing was posted).",
    )
    refund = models.OneToOneField(
        "Settlement",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="refund_of",
        help_text="The refund of what the follower had paid of the fee (on the venue).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"Reversal of accrual {self.accrual_id}"


class Settlement(models.Model):
    """Collecting what a follower owes (accruals of a period, or fee debts) and paying the
    master and IB their shares, through venue balance operations.

    Guards: one per `key` (what triggered it), so a re-run plans nothing twice; final
    (`settled`) only once the venue has confirmed every balance operation.
    """

    key = models.CharField(max_length=120, unique=True)
    reason = models.CharField(max_length=12, choices=SettlementReason.choices)
    follower_account = models.ForeignKey(
        "accounts.TradingAccount", on_delete=models.PROTECT, related_name="+"
    )
    subscription = models.ForeignKey(
        "copytrading.CopySubscription",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="settlements",
    )
    currency = models.CharField(max_length=3)
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    due = money_field()
    collected = money_field()
    status = models.CharField(
        max_length=10, choices=SettlementStatus.choices, default=SettlementStatus.PLANNED
    )
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    final_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(
                fields=["status"],
                condition=~Q(status="settled"),
                name="settlement_open",
            ),
        ]

    def __str__(self) -> str:
        return f"Settlement {self.pk} ({self.get_reason_display().lower()})"


class FeeDebt(models.Model):
    """What a follower could not pay at a settlement, per fee kind: collected from the next
    deposit, withdrawal or unsubscribe. `comment` names the master and the settlement."""

    follower_account = models.ForeignKey(
        "accounts.TradingAccount", on_delete=models.PROTECT, related_name="+"
    )
    master_account = models.ForeignKey(
        "accounts.TradingAccount", on_delete=models.PROTECT, related_name="+"
    )
    subscription = models.ForeignKey(
        "copytrading.CopySubscription", on_delete=models.PROTECT, related_name="fee_debts"
    )
    accrual = models.ForeignKey(FeeAccrual, on_delete=models.PROTECT, related_name="debts")
    settlement = models.ForeignKey(Settlement, on_delete=models.PROTECT, related_name="debts")
    kind = models.CharField(max_length=12, choices=FeeKind.choices)
    amount = money_field()
    remaining = money_field()
    currency = models.CharField(max_length=3)
    comment = models.CharField(max_length=300)
    created_at = models.DateTimeField(auto_now_add=True)
    cleared_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["accrual"], name="feedebt_once_per_accrual"),
            models.CheckConstraint(
                condition=Q(remaining__gte=0) & Q(remaining__lte=models.F("amount")),
                name="feedebt_remaining_in_range",
            ),
        ]

    def __str__(self) -> str:
        return f"Debt {self.remaining} {self.currency}: {self.comment}"


class SettlementLine(models.Model):
    """One accrual (or fee debt) in a settlement: due, paid, and the shares of what was paid.

    Guards: an accrual is in at most one settlement (a debt line names the debt instead)."""

    settlement = models.ForeignKey(Settlement, on_delete=models.PROTECT, related_name="lines")
    accrual = models.ForeignKey(FeeAccrual, on_delete=models.PROTECT, related_name="lines")
    debt = models.ForeignKey(
        FeeDebt, on_delete=models.PROTECT, null=True, blank=True, related_name="lines"
    )
    kind = models.CharField(max_length=12, choices=FeeKind.choices)
    position = models.PositiveSmallIntegerField(help_text="Order the payment is applied in.")
    due = money_field()
    paid = money_field()
    master_share = money_field()
    broker_share = money_field()
    ib_share = money_field()

    class Meta:
        ordering = ["settlement_id", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["accrual"],
                condition=Q(debt__isnull=True),
                name="settlementline_accrual_settled_once",
            ),
            models.UniqueConstraint(
                fields=["settlement", "debt"],
                condition=Q(debt__isnull=False),
                name="settlementline_debt_once_per_settlement",
            ),
            models.CheckConstraint(
                condition=Q(paid__gte=0) & Q(paid__lte=models.F("due")),
                name="settlementline_paid_in_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.paid}/{self.due}"


class BalanceOp(models.Model):
    """One balance operation on a venue for a settlement: the follower's debit, the master's
    or IB's credit. `client_op_id` (`fee-<settlement>-<attempt>-<role>`) is the venue's
    idempotency key: a retry after a timeout or a 503 reuses it, so the venue applies it
    once. A new attempt (new id) is made only after the venue refused the previous one."""

    settlement = models.ForeignKey(Settlement, on_delete=models.PROTECT, related_name="ops")
    role = models.CharField(max_length=8, choices=BalanceOpRole.choices)
    attempt = models.PositiveSmallIntegerField(default=1)
    trading_account = models.ForeignKey(
        "accounts.TradingAccount", on_delete=models.PROTECT, related_name="+"
    )
    amount = money_field(help_text="Signed: a debit is negative.")
    currency = models.CharField(max_length=3)
    comment = models.CharField(max_length=200)
    client_op_id = models.CharField(max_length=64, unique=True)
    status = models.CharField(
        max_length=10, choices=BalanceOpStatus.choices, default=BalanceOpStatus.PENDING
    )
    tries = models.PositiveSmallIntegerField(default=0)
    venue_deal_id = models.CharField(max_length=64, blank=True)
    venue_balance = money_field(null=True, blank=True, default=None)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["settlement", "role", "attempt"], name="balanceop_once_per_attempt"
            ),
            models.CheckConstraint(condition=~Q(amount=0), name="balanceop_amount_not_zero"),
        ]

    def __str__(self) -> str:
        return self.client_op_id


class CashMovement(models.Model):
    """A deposit or withdrawal on a follower account, as read from the venue's balance
    deals (the back office's own fee operations excluded). Guards: stored once per venue
    deal; `handled_at` is set once its crystallisation and debt collection are done."""

    trading_account = models.ForeignKey(
        "accounts.TradingAccount", on_delete=models.PROTECT, related_name="+"
    )
    venue_deal_id = models.CharField(max_length=64)
    kind = models.CharField(max_length=10, choices=CashMovementKind.choices)
    amount = money_field()
    venue_ts = models.DateTimeField()
    comment = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    handled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-venue_ts"]
        constraints = [
            models.UniqueConstraint(
                fields=["trading_account", "venue_deal_id"], name="cashmovement_once_per_deal"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.amount} on {self.trading_account_id}"
