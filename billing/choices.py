"""Choices of the billing app."""

from django.db import models


class FeeKind(models.TextChoices):
    PERFORMANCE = "performance", "Performance fee"
    MANAGEMENT = "management", "Management fee"
    SUBSCRIPTION = "subscription", "Subscription fee"
    VOLUME = "volume", "Volume fee"


# The order a partial payment is applied in (billing/README.md).
PAYMENT_ORDER = [FeeKind.PERFORMANCE, FeeKind.MANAGEMENT, FeeKind.SUBSCRIPTION, FeeKind.VOLUME]


class FeePeriod(models.TextChoices):
    WEEKLY = "weekly", "Weekly"
    MONTHLY = "monthly", "Monthly"
    QUARTERLY = "quarterly", "Quarterly"


class FeeAccrualStatus(models.TextChoices):
    ACCRUED = "accrued", "Accrued"
    SETTLED = "settled", "Settled"
    REVERSED = "reversed", "Reversed"


class FeeAccrualTrigger(models.TextChoices):
    SCHEDULE = "schedule", "Period end or daily job"
    WITHDRAWAL = "withdrawal", "Withdrawal from the follower account"
    UNSUBSCRIBE = "unsubscribe", "Unsubscribe"


class SettlementStatus(models.TextChoices):
    PLANNED = "planned", "Planned"
    COLLECTING = "collecting", "Debiting the follower"
    PAYING = "paying", "Crediting master and IB"
    SETTLED = "settled", "Settled (venue confirmed)"
    FAILED = "failed", "Failed: the venue refused an operation (retried each run)"


class SettlementReason(models.TextChoices):
    PERIOD_END = "period_end", "Period end"
    WITHDRAWAL = "withdrawal", "Withdrawal"
    DEPOSIT = "deposit", "Deposit (fee debt)"
    UNSUBSCRIBE = "unsubscribe", "Unsubscribe"
    REFUND = "refund", "Refund of a reversed fee"


class BalanceOpRole(models.TextChoices):
    FOLLOWER = "follower", "Debit of the follower"
    MASTER = "master", "Credit of the master"
    IB = "ib", "Credit of the introducing broker"


class BalanceOpStatus(models.TextChoices):
    PENDING = "pending", "Not sent yet"
    UNKNOWN = "unknown", "Sent, outcome unknown (retried under the same id)"
    CONFIRMED = "confirmed", "Confirmed by the venue"
    REFUSED = "refused", "Refused by the venue"


class LedgerAccountKind(models.TextChoices):
    FOLLOWER_RECEIVABLE = "follower_receivable", "Fees a follower owes"
    MASTER_PAYABLE = "master_payable", "Fees owed to a master"
    IB_PAYABLE = "ib_payable", "Rebates owed to an introducing broker"
    BROKER_REVENUE = "broker_revenue", "The broker's fee revenue"
    VENUE_CLEARING = "venue_clearing", "Money moved on the trading venues"


class CashMovementKind(models.TextChoices):
    DEPOSIT = "deposit", "Deposit"
    WITHDRAWAL = "withdrawal", "Withdrawal"
