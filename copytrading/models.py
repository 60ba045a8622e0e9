from decimal import Decimal

from django.db import models
from django.db.models import F, Q
from simple_history.models import HistoricalRecords

from config.fields import money_field, price_field, volume_field

from .choices import (
    CopyInstructionAction,
    CopyInstructionOrigin,
    CopyInstructionStatus,
    CopyMasterAllowedFollowerModes,
    CopyMasterVisibility,
    CopySubscriptionCopyMode,
    CopySubscriptionStatus,
    CopySubscriptionSymbolsMode,
    CopySubscriptionVolumeMode,
    FollowerOrderStatus,
    MasterEventFanoutState,
    MasterEventType,
    SubscriptionSyncStatus,
    TradeLinkStatus,
)


class LiveManager(models.Manager):
    """Rows not deleted. Deleting a profile or subscription keeps the row (deleted_at set),
    so the lineage of every copied trade survives; every default query skips it."""

    def get_queryset(self) -> models.QuerySet:
        return super().get_queryset().filter(deleted_at__isnull=True)


class CopyMaster(models.Model):
    """A strategy profile on a trading account: what followers copy from.

    Guards: one live profile per account; the account (and so the owner) never
    changes after create. Deleting keeps the row with `deleted_at` set.
    """

    account = models.ForeignKey(
        "accounts.TradingAccount", on_delete=models.PROTECT, related_name="copy_masters"
    )
    enabled = models.BooleanField(default=True)
    strategy_name = models.CharField(max_length=100)
    description = models.TextField(blank=True, max_length=2000)
    visibility = models.CharField(
        max_length=8, choices=CopyMasterVisibility.choices, default=CopyMasterVisibility.PUBLIC
    )
    allowed_follower_modes = models.PositiveSmallIntegerField(
        choices=CopyMasterAllowedFollowerModes.choices, default=CopyMasterAllowedFollowerModes.BOTH
    )
    paused = models.BooleanField(
        default=False, help_text="Paused by staff: no new copies for any follower."
    )
    paused_reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True, editable=False)

    history = HistoricalRecords()
    all_objects = models.Manager()
    objects = LiveManager()

    class Meta:
        ordering = ["id"]
        base_manager_name = "all_objects"
        default_manager_name = "objects"
        constraints = [
            models.UniqueConstraint(
                fields=["account"],
                condition=Q(deleted_at__isnull=True),
                name="copymaster_one_live_profile_per_account",
            ),
            models.CheckConstraint(
                condition=Q(allowed_follower_modes__in=[1, 2, 3]),
                name="copymaster_allowed_follower_modes_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.strategy_name


class CopyFollower(models.Model):
    """Copy settings of a trading account that follows masters.

    Guards: one live profile per account; `max_master_count` bounds its subscriptions
    (enforced under a row lock in copytrading.services).
    """

    account = models.ForeignKey(
        "accounts.TradingAccount", on_delete=models.PROTECT, related_name="copy_followers"
    )
    enabled = models.BooleanField(default=True)
    manual_trading_mode = models.BooleanField(
        default=True, help_text="Off: copy only; positions the back office did not open are closed."
    )
    max_master_count = models.PositiveSmallIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True, editable=False)

    history = HistoricalRecords()
    all_objects = models.Manager()
    objects = LiveManager()

    class Meta:
        ordering = ["id"]
        base_manager_name = "all_objects"
        default_manager_name = "objects"
        constraints = [
            models.UniqueConstraint(
                fields=["account"],
                condition=Q(deleted_at__isnull=True),
                name="copyfollower_one_live_profile_per_account",
            ),
            models.CheckConstraint(
                condition=Q(max_master_count__gte=1), name="copyfollower_max_master_count_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"Follower {self.account_id}"


class CopySubscription(models.Model):
    """Links a follower account to a master account, with the copy settings of that link.

    Guards, in the database: one live subscription per (follower, master); an account never
    follows itself; multipliers and volume bounds are in range. `follower_account` and
    `master_account` repeat the profiles' accounts (fixed after create) so that these
    constraints can be checked by PostgreSQL.
    """

    follower = models.ForeignKey(
        CopyFollower, on_delete=models.PROTECT, related_name="subscriptions"
    )
    master = models.ForeignKey(CopyMaster, on_delete=models.PROTECT, related_name="subscriptions")
    follower_account = models.ForeignKey(
        "accounts.TradingAccount", on_delete=models.PROTECT, related_name="+", editable=False
    )
    master_account = models.ForeignKey(
        "accounts.TradingAccount", on_delete=models.PROTECT, related_name="+", editable=False
    )
    enabled = models.BooleanField(default=True)
    status = models.PositiveSmallIntegerField(
        choices=CopySubscriptionStatus.choices, default=CopySubscriptionStatus.ACTIVE
    )
    status_reason = models.CharField(max_length=500, blank=True)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    copy_mode = models.PositiveSmallIntegerField(
        choices=CopySubscriptionCopyMode.choices, default=CopySubscriptionCopyMode.FULL
    )
    volume_mode = models.PositiveSmallIntegerField(
        choices=CopySubscriptionVolumeMode.choices, default=CopySubscriptionVolumeMode.MULTIPLIER
    )
    risk_multiplier = models.DecimalField(max_digits=12, decimal_places=4, default=Decimal("1"))
    fixed_volume = volume_field()
    base_equity = money_field(default=Decimal("10000"))
    copy_sl = models.BooleanField(default=True)
    copy_tp = models.BooleanField(default=True)
    copy_partial_close = models.BooleanField(default=True)
    copy_pending_orders = models.BooleanField(default=False)
    copy_existing_positions = models.BooleanField(default=False)
    reverse_direction = models.BooleanField(default=False)
    max_volume = volume_field()
    min_volume = volume_field()
    max_positions = models.PositiveIntegerField(default=0)
    symbols_mode = models.PositiveSmallIntegerField(
        choices=CopySubscriptionSymbolsMode.choices, default=CopySubscriptionSymbolsMode.ALL
    )
    symbols = models.CharField(max_length=2000, blank=True)
    sync_status = models.CharField(
        max_length=12,
        choices=SubscriptionSyncStatus.choices,
        default=SubscriptionSyncStatus.IN_SYNC,
    )
    drift = volume_field(help_text="Lots the follower holds beyond (or short of) its links.")
    synced_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True, editable=False)

    # Reconciliation rewrites these every few seconds: readings, not configuration.
    history = HistoricalRecords(excluded_fields=["sync_status", "drift", "synced_at"])
    all_objects = models.Manager()
    objects = LiveManager()

    class Meta:
        ordering = ["id"]
        base_manager_name = "all_objects"
        default_manager_name = "objects"
        permissions = [
            ("pause_copysubscription", "Can pause and resume copy subscriptions"),
            ("clear_risk_stop_copysubscription", "Can clear a risk stop of a subscription"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["follower_account", "master_account"],
                condition=Q(deleted_at__isnull=True),
                name="copysubscription_one_per_follower_and_master",
            ),
            models.CheckConstraint(
                condition=~Q(follower_account=F("master_account")),
                name="copysubscription_no_self_follow",
            ),
            models.CheckConstraint(
                condition=Q(risk_multiplier__gt=0), name="copysubscription_risk_multiplier_positive"
            ),
            models.CheckConstraint(
                condition=Q(fixed_volume__gte=0)
                & Q(min_volume__gte=0)
                & Q(max_volume__gte=0)
                & Q(base_equity__gt=0),
                name="copysubscription_volumes_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(max_volume=0) | Q(max_volume__gte=F("min_volume")),
                name="copysubscription_max_volume_not_below_min",
            ),
            models.CheckConstraint(
                condition=Q(status__in=[0, 1, 2])
                & Q(copy_mode__in=[0, 1])
                & Q(volume_mode__in=[0, 1, 2, 3])
                & Q(symbols_mode__in=[0, 1, 2]),
                name="copysubscription_enums_valid",
            ),
        ]
        indexes = [models.Index(fields=["master_account", "status"], name="copysub_master_status")]

    def __str__(self) -> str:
        return f"Subscription {self.id}"

    @property
    def symbol_list(self) -> list[str]:
        return [s.strip() for s in self.symbols.split(",") if s.strip()]


class MasterEvent(models.Model):
    """One trading event on a master account, as the venue reported it.

    Guards: stored once per (venue, venue event id), whatever the stream redelivers;
    the raw payload is kept beside the normalized fields. It is also the outbox of
    the fan-out: `fanout_state` stays `pending` until a fan-out task picks it up, so a
    sweeper finds events whose enqueue was lost (a process died after commit).
    Synthetic events (implied by a snapshot after a reset or gap) are marked so.
    """

    broker_server = models.ForeignKey(
        "brokers.BrokerServer", on_delete=models.PROTECT, related_name="master_events"
    )
    account = models.ForeignKey(
        "accounts.TradingAccount", on_delete=models.PROTECT, related_name="master_events"
    )
    venue_event_id = models.CharField(max_length=64)
    venue_seq = models.BigIntegerField(null=True, blank=True)
    event_type = models.CharField(max_length=24, choices=MasterEventType.choices)
    synthetic = models.BooleanField(default=False)
    master_position_id = models.CharField(max_length=64, blank=True)
    master_order_id = models.CharField(max_length=64, blank=True)
    client_order_id = models.CharField(
        max_length=64, blank=True, help_text="The master's own client order id, if it gave one."
    )
    symbol = models.CharField(max_length=32, blank=True)
    side = models.CharField(max_length=4, blank=True)
    order_type = models.CharField(max_length=8, blank=True)
    volume = volume_field(null=True, blank=True, default=None)
    remaining_volume = volume_field(null=True, blank=True, default=None)
    price = price_field(null=True, blank=True)
    sl = price_field(null=True, blank=True)
    tp = price_field(null=True, blank=True)
    profit = money_field(null=True, blank=True, default=None)
    close_reason = models.CharField(max_length=16, blank=True)
    raw = models.JSONField()
    decision_context = models.JSONField(
        null=True,
        blank=True,
        help_text="The decision inputs every subscription shares (event, master); "
        "each instruction stores the rest.",
    )
    venue_ts = models.DateTimeField()
    received_at = models.DateTimeField()
    stored_at = models.DateTimeField(auto_now_add=True, db_index=True)
    fanout_state = models.CharField(
        max_length=8, choices=MasterEventFanoutState.choices, default=MasterEventFanoutState.PENDING
    )
    fanout_started_at = models.DateTimeField(null=True, blank=True)
    fanout_done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["broker_server", "venue_event_id"], name="masterevent_once_per_venue_event"
            ),
        ]
        indexes = [
            models.Index(
                fields=["stored_at"],
                condition=~Q(fanout_state="done"),
                name="masterevent_fanout_outbox",
            ),
            models.Index(fields=["account", "master_position_id"], name="masterevent_position"),
            models.Index(
                fields=["account", "client_order_id"],
                condition=~Q(client_order_id=""),
                name="masterevent_client_order_id",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} #{self.venue_event_id} on {self.account_id}"


class TradeLink(models.Model):
    """Master position (or pending order) <-> the follower's copy of it, per subscription.

    Guards: one link per (subscription, master position) and per (subscription, master
    order), so a redelivered open can never make a second copy; closes and changes of the
    master position find the follower position through it. Status `opening` holds
    closes and changes back until the open's fill is known.
    """

    subscription = models.ForeignKey(
        CopySubscription, on_delete=models.PROTECT, related_name="trade_links"
    )
    master_account = models.ForeignKey(
        "accounts.TradingAccount",
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
    )
    follower_account = models.ForeignKey(
        "accounts.TradingAccount",
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
    )
    master_position_id = models.CharField(max_length=64, blank=True)
    master_order_id = models.CharField(max_length=64, blank=True)
    follower_position_id = models.CharField(max_length=64, blank=True)
    follower_order_id = models.CharField(max_length=64, blank=True)
    symbol = models.CharField(max_length=32)
    follower_symbol = models.CharField(max_length=32)
    side = models.CharField(max_length=4, help_text="The follower's side.")
    master_volume = volume_field()
    follower_volume = volume_field(help_text="Open volume of the follower position.")
    open_price = price_field(null=True, blank=True)
    close_price = price_field(null=True, blank=True)
    sl = price_field(null=True, blank=True)
    tp = price_field(null=True, blank=True)
    status = models.CharField(
        max_length=8, choices=TradeLinkStatus.choices, default=TradeLinkStatus.OPENING
    )
    reason = models.CharField(max_length=200, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    profit = money_field()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["subscription", "master_position_id"],
                condition=~Q(master_position_id=""),
                name="tradelink_one_per_master_position",
            ),
            models.UniqueConstraint(
                fields=["subscription", "master_order_id"],
                condition=~Q(master_order_id=""),
                name="tradelink_one_per_master_order",
            ),
        ]
        indexes = [
            models.Index(fields=["follower_account", "status"], name="tradelink_follower_status"),
            models.Index(fields=["master_account", "status"], name="tradelink_master_status"),
        ]

    def __str__(self) -> str:
        return f"Link {self.id}: {self.master_position_id or self.master_order_id}"


class CopyInstruction(models.Model):
    """What to do for one (master event, subscription), decided once, with why.

    Guards: unique per (master event, subscription), so re-running a fan-out changes
    nothing; the client order id is derived from that pair, so a retry after a timeout
    reaches the same venue order and can never open a second position. The inputs and
    the rule version are stored, so the decision can be replayed.
    """

    origin = models.CharField(
        max_length=8, choices=CopyInstructionOrigin.choices, default=CopyInstructionOrigin.EVENT
    )
    master_event = models.ForeignKey(
        MasterEvent,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="instructions",
        db_index=False,
    )
    subscription = models.ForeignKey(
        CopySubscription,
        on_delete=models.PROTECT,
        related_name="instructions",
        db_index=False,
    )
    follower_account = models.ForeignKey(
        "accounts.TradingAccount", on_delete=models.PROTECT, related_name="+"
    )
    trade_link = models.ForeignKey(
        TradeLink, on_delete=models.PROTECT, null=True, blank=True, related_name="instructions"
    )
    action = models.CharField(max_length=16, choices=CopyInstructionAction.choices)
    status = models.CharField(max_length=10, choices=CopyInstructionStatus.choices)
    reason = models.CharField(max_length=40, blank=True)
    detail = models.CharField(max_length=500, blank=True)
    rule_version = models.CharField(max_length=16)
    inputs = models.JSONField(default=dict)
    decision = models.JSONField(default=dict)
    client_order_id = models.CharField(max_length=64, unique=True)
    follower_symbol = models.CharField(max_length=32, blank=True)
    side = models.CharField(max_length=4, blank=True)
    volume = volume_field(null=True, blank=True, default=None)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["master_event", "subscription"],
                condition=Q(master_event__isnull=False),
                name="copyinstruction_once_per_event_and_subscription",
            ),
        ]
        indexes = [
            models.Index(
                fields=["status", "claimed_at"],
                condition=Q(status__in=["ready", "in_flight", "waiting"]),
                name="copyinstruction_open_work",
            ),
            models.Index(fields=["subscription", "status"], name="copyinstruction_sub_status"),
            # Opens and closes waiting for a closed market: the recovery task takes them up.
            models.Index(
                fields=["created_at"],
                condition=Q(status="market"),
                name="copyinstruction_market_wait",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.client_order_id}"


class FollowerOrder(models.Model):
    """The order sent to the follower's venue for one instruction.

    Guards: one per instruction (one-to-one) and unique client order id: the only
    order the back office ever sends for that (master event, subscription). Every
    state change is kept in FollowerOrderTransition with the venue's time.
    """

    instruction = models.OneToOneField(
        CopyInstruction, on_delete=models.PROTECT, related_name="order"
    )
    # Covered by composite indexes below (or never filtered on alone): no index of their own,
    # one less index to write per order.
    broker_server = models.ForeignKey(
        "brokers.BrokerServer", on_delete=models.PROTECT, db_index=False
    )
    account = models.ForeignKey(
        "accounts.TradingAccount",
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
    )
    client_order_id = models.CharField(max_length=64, unique=True)
    action = models.CharField(max_length=16, choices=CopyInstructionAction.choices)
    symbol = models.CharField(max_length=32)
    side = models.CharField(max_length=4, blank=True)
    order_type = models.CharField(max_length=8, blank=True)
    requested_volume = volume_field(null=True, blank=True, default=None)
    filled_volume = volume_field()
    price = price_field(null=True, blank=True)
    venue_order_id = models.CharField(max_length=64, blank=True)
    venue_position_id = models.CharField(max_length=64, blank=True)
    status = models.CharField(
        max_length=16, choices=FollowerOrderStatus.choices, default=FollowerOrderStatus.CREATED
    )
    reason = models.CharField(max_length=40, blank=True)
    message = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    venue_ts = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["account", "status"], name="followerorder_account")]

    def __str__(self) -> str:
        return self.client_order_id


class FollowerOrderTransition(models.Model):
    """One state change of a follower order, with our time and the venue's."""

    order = models.ForeignKey(FollowerOrder, on_delete=models.CASCADE, related_name="transitions")
    status = models.CharField(max_length=16, choices=FollowerOrderStatus.choices)
    at = models.DateTimeField()
    venue_ts = models.DateTimeField(null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.status} at {self.at:%H:%M:%S.%f}"


class Fill(models.Model):
    """Volume executed for a follower order, at a price and a venue time."""

    order = models.ForeignKey(FollowerOrder, on_delete=models.PROTECT, related_name="fills")
    volume = volume_field()
    price = price_field(null=True, blank=True)
    profit = money_field(null=True, blank=True, default=None)
    venue_position_id = models.CharField(max_length=64, blank=True)
    venue_ts = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.volume} @ {self.price}"


# Staff remedies (issue 7); appended, so its import stays here.
from django.conf import settings  # noqa: E402


class StaffRemedyKind(models.TextChoices):
    FORCE_CLOSE = "force_close", "Force-close a copied position"
    RESYNC = "resync", "Re-sync (reconcile now)"
    DRIFT_CLOSE = "drift_close", "Drift: close the position"
    DRIFT_ADOPT = "drift_adopt", "Drift: adopt (link to the master position)"
    DRIFT_REOPEN = "drift_reopen", "Drift: re-open the copy"
    DRIFT_DISMISS = "drift_dismiss", "Drift: dismiss"


class StaffRemedy(models.Model):
    """One staff remedy (force-close, re-sync, a drift close, adopt, re-open or dismissal),
    with who, when and why: the audit trail of copytrading.services.remedies.

    Guards: rows are evidence, written only by the remedy services and never edited;
    `position_key` names what the remedy was about (`f:<follower position id>` or
    `m:<master position id>`); a drift is dismissed at most once per (follower account,
    position key), so the drift page stops offering remedies for it. The order a remedy
    sent is `instruction` (origin `staff`), whose client order id makes a double click
    send nothing twice.
    """

    kind = models.CharField(max_length=16, choices=StaffRemedyKind.choices)
    follower_account = models.ForeignKey(
        "accounts.TradingAccount", on_delete=models.PROTECT, related_name="+"
    )
    subscription = models.ForeignKey(
        CopySubscription, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    trade_link = models.ForeignKey(
        TradeLink, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    instruction = models.ForeignKey(
        CopyInstruction, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    position_key = models.CharField(max_length=80, blank=True)
    reason = models.TextField()
    outcome = models.CharField(max_length=500, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["follower_account", "position_key"],
                condition=Q(kind="drift_dismiss"),
                name="staffremedy_one_dismissal_per_position",
            ),
        ]
        indexes = [models.Index(fields=["follower_account", "kind"], name="staffremedy_account")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} on {self.follower_account_id}"
