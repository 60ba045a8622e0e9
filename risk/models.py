"""Risk configuration and what it did: limits per subscription and per master, switches per
broker server and platform, the monitors' running state, and every stop with its inputs.

Limits and switches are configuration (history kept); the monitor state is a reading
(rewritten on every account update, no history); a stop is a record that staff clear.
"""

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from simple_history.models import HistoricalRecords

from config.fields import money_field, price_field, volume_field

from .choices import (
    BreachPolicy,
    LossBasis,
    LossUnit,
    MarginPolicy,
    MarketClosedPolicy,
    RiskRule,
    SlippagePolicy,
)

_PERCENT = [MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("100"))]


def percent_field(**kwargs: object) -> models.DecimalField:
    """A percentage 0-100 (0 = no limit where the help text says so)."""
    kwargs.setdefault("default", Decimal("0"))
    return models.DecimalField(max_digits=7, decimal_places=4, validators=_PERCENT, **kwargs)


class KillSwitch(models.Model):
    """The platform-wide kill switch: while active, no new opening order is sent anywhere.

    Guards: a single row (id 1, enforced by a check constraint), changed only through
    risk.services.kill_switch_set with a reason; every change is kept in history.
    Closes always go through.
    """

    active = models.BooleanField(default=False)
    reason = models.CharField(max_length=500, blank=True)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    changed_at = models.DateTimeField(null=True, blank=True)

    history = HistoricalRecords()

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(id=1), name="killswitch_single_row")]

    def __str__(self) -> str:
        return "Kill switch ON" if self.active else "Kill switch off"


class ServerSwitch(models.Model):
    """A kill switch for one broker server: while active, no new opening order is sent for a
    follower on that server, nor copied from a master on it. Closes always go through.

    Guards: one row per server; changed only through a service with a reason (history).
    """

    broker_server = models.OneToOneField(
        "brokers.BrokerServer", on_delete=models.CASCADE, related_name="risk_switch"
    )
    active = models.BooleanField(default=False)
    reason = models.CharField(max_length=500, blank=True)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    changed_at = models.DateTimeField(null=True, blank=True)

    history = HistoricalRecords()

    def __str__(self) -> str:
        return f"{self.broker_server}: {'ON' if self.active else 'off'}"


class SubscriptionLimits(models.Model):
    """The risk limits of one subscription, beyond the spec's copy bounds (max/min volume,
    max positions), which stay on the subscription. A zero limit is no limit.

    Pre-trade limits are checked inside the copy decision (each failure is a skip or a cut
    with a reason code); post-trade limits are watched by the monitors on every account
    update and price move. A subscription without a row has no limits beyond the spec's.
    """

    subscription = models.OneToOneField(
        "copytrading.CopySubscription", on_delete=models.CASCADE, related_name="risk_limits"
    )
    # -- pre-trade
    max_lots_per_symbol = volume_field(help_text="Open copied lots per follower symbol; 0 = none.")
    max_lots_total = volume_field(help_text="Open copied lots in total; 0 = none.")
    max_leverage = models.DecimalField(
        max_digits=9,
        decimal_places=2,
        default=Decimal("0"),
        validators=[MinValueValidator(Decimal("0"))],
        help_text="Open notional / equity after the order; 0 = none.",
    )
    max_risk_per_trade_pct = percent_field(
        help_text="Stop-loss distance x volume x contract size / equity, in %; 0 = none."
    )
    require_master_sl = models.BooleanField(
        default=False, help_text="Skip master trades that carry no stop loss."
    )
    margin_policy = models.CharField(
        max_length=8, choices=MarginPolicy.choices, default=MarginPolicy.OFF
    )
    max_slippage = price_field(
        default=Decimal("0"),
        help_text="Price distance between the master's fill and the follower's current "
        "price beyond which an open is not sent at market; 0 = none.",
    )
    slippage_policy = models.CharField(
        max_length=8, choices=SlippagePolicy.choices, default=SlippagePolicy.SKIP
    )
    market_closed_policy = models.CharField(
        max_length=8, choices=MarketClosedPolicy.choices, default=MarketClosedPolicy.SKIP
    )
    market_wait_seconds = models.PositiveIntegerField(
        default=3600, help_text="How long an open may wait for a closed market to reopen."
    )
    # -- post-trade
    equity_floor = money_field(help_text="Stop when equity falls to this amount; 0 = none.")
    max_drawdown_pct = percent_field(
        help_text="Stop at this drawdown from the equity high-water mark, in %; 0 = none."
    )
    daily_loss_limit = money_field(help_text="0 = none; an amount or % as loss_unit says.")
    weekly_loss_limit = money_field(help_text="0 = none.")
    monthly_loss_limit = money_field(help_text="0 = none.")
    loss_unit = models.CharField(max_length=8, choices=LossUnit.choices, default=LossUnit.AMOUNT)
    loss_basis = models.CharField(max_length=8, choices=LossBasis.choices, default=LossBasis.EQUITY)
    period_timezone = models.CharField(
        max_length=64,
        default="UTC",
        help_text="IANA time zone where days, weeks and months of the loss limits start "
        "(the follower's zone, or UTC).",
    )
    breach_policy = models.CharField(
        max_length=16, choices=BreachPolicy.choices, default=BreachPolicy.CLOSE_POSITIONS
    )
    resume_next_period = models.BooleanField(
        default=True,
        help_text="A daily, weekly or monthly stop resumes copying when the next period "
        "starts. Drawdown and equity-floor stops always need staff to clear.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords()

    class Meta:
        verbose_name_plural = "subscription limits"
        constraints = [
            models.CheckConstraint(
                condition=Q(max_lots_per_symbol__gte=0)
                & Q(max_lots_total__gte=0)
                & Q(max_leverage__gte=0)
                & Q(max_slippage__gte=0)
                & Q(equity_floor__gte=0)
                & Q(daily_loss_limit__gte=0)
                & Q(weekly_loss_limit__gte=0)
                & Q(monthly_loss_limit__gte=0),
                name="subscriptionlimits_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(max_risk_per_trade_pct__gte=0, max_risk_per_trade_pct__lte=100)
                & Q(max_drawdown_pct__gte=0, max_drawdown_pct__lte=100),
                name="subscriptionlimits_percent_range",
            ),
        ]

    def __str__(self) -> str:
        return f"Limits of subscription {self.subscription_id}"


class MasterLimits(models.Model):
    """Limits a master declares to its followers. A breach pauses copying from the master for
    every follower and alerts operations. A zero limit is no limit."""

    master = models.OneToOneField(
        "copytrading.CopyMaster", on_delete=models.CASCADE, related_name="risk_limits"
    )
    max_lots = volume_field(help_text="Open lots on the master account; 0 = none.")
    max_open_positions = models.PositiveIntegerField(default=0, help_text="0 = none.")
    max_drawdown_pct = percent_field(
        help_text="Drawdown from the master's equity high-water mark, in %; 0 = none."
    )
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords()

    class Meta:
        verbose_name_plural = "master limits"
        constraints = [
            models.CheckConstraint(
                condition=Q(max_lots__gte=0)
                & Q(max_drawdown_pct__gte=0, max_drawdown_pct__lte=100),
                name="masterlimits_range",
            )
        ]

    def __str__(self) -> str:
        return f"Declared limits of master {self.master_id}"


class RiskStop(models.Model):
    """One firing of a post-trade rule: on a subscription (stopped by risk, status 2) or on a
    master (paused for every follower), with the figures that fired it.

    Guards: exactly one of subscription and master; `inputs` holds every figure the rule
    read, so the stop can be explained and re-checked; a stop is cleared (by staff, or at the
    next period when `resumes_at` is set), never deleted.
    """

    subscription = models.ForeignKey(
        "copytrading.CopySubscription",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="risk_stops",
    )
    master = models.ForeignKey(
        "copytrading.CopyMaster",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="risk_stops",
    )
    rule = models.CharField(max_length=32, choices=RiskRule.choices)
    policy = models.CharField(max_length=16, choices=BreachPolicy.choices, blank=True)
    detail = models.CharField(max_length=500)
    inputs = models.JSONField(default=dict)
    fired_at = models.DateTimeField(db_index=True)
    resumes_at = models.DateTimeField(null=True, blank=True)
    cleared_at = models.DateTimeField(null=True, blank=True)
    cleared_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    clear_reason = models.CharField(max_length=500, blank=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["-fired_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(subscription__isnull=False, master__isnull=True)
                | Q(subscription__isnull=True, master__isnull=False),
                name="riskstop_one_target",
            )
        ]

    def __str__(self) -> str:
        target = (
            f"subscription {self.subscription_id}"
            if self.subscription_id
            else f"master {self.master_id}"
        )
        return f"{self.rule} on {target}"


class MonitorState(models.Model):
    """The post-trade monitor's memory of one subscription or one master: a reading,
    rewritten on every evaluation (no history; the stops keep the figures that fired).

    Guards: exactly one of subscription and master, one row each. `equity_hwm` never
    falls (risk.rules.advance), except when staff clear a drawdown stop, which restarts
    the mark at the equity of that moment. `periods` holds the start figures of the
    current day, week and month (keys in the limits' time zone); `figures` is the last
    evaluation, one entry per limit set: how close each is to firing.
    """

    subscription = models.OneToOneField(
        "copytrading.CopySubscription",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="risk_monitor",
    )
    master = models.OneToOneField(
        "copytrading.CopyMaster",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="risk_monitor",
    )
    equity_hwm = money_field(null=True, blank=True, default=None)
    hwm_at = models.DateTimeField(null=True, blank=True)
    periods = models.JSONField(default=dict, blank=True)
    balance = money_field(null=True, blank=True, default=None)
    equity = money_field(null=True, blank=True, default=None)
    margin = money_field(null=True, blank=True, default=None)
    reading_at = models.DateTimeField(
        null=True, blank=True, help_text="The venue's time of the last reading."
    )
    open_lots = volume_field(null=True, blank=True, default=None)
    open_positions = models.PositiveIntegerField(null=True, blank=True)
    figures = models.JSONField(default=list, blank=True)
    evaluated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(subscription__isnull=False, master__isnull=True)
                | Q(subscription__isnull=True, master__isnull=False),
                name="monitorstate_one_target",
            )
        ]

    def __str__(self) -> str:
        target = (
            f"subscription {self.subscription_id}"
            if self.subscription_id
            else f"master {self.master_id}"
        )
        return f"Monitor of {target}"
