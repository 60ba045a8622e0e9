"""Wire shapes of spec/client-api.md: request serializers (strict) and answers.

Requests: unknown fields are refused, naming each; `customer_id` and the answer-only
fields of a resource (id, timestamps, counts) are accepted and ignored, so a terminal
may send back what it was given. Answers: flags and enums as integers, decimals as
strings, times in ISO 8601.
"""

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..choices import CopyMasterVisibility
from ..services.profiles import MAX_LOTS, MAX_RISK_MULTIPLIER
from .errors import ERROR_CODES
from .fields import (
    DecimalInField,
    FlagField,
    IntChoiceField,
    LoginField,
    StrictCharField,
    StrictChoiceField,
    StrictIntegerField,
)

MAX_FOLLOWED_MASTERS = 1000
MAX_POSITIONS = 100_000
REWARD_KINDS = ["performance", "management", "subscription", "volume"]
REWARD_STATUSES = ["accrued", "settled", "reversed"]
TRADE_LINK_STATUSES = ["open", "closed", "failed", "skipped"]


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know, naming every one, together with the other errors."""

    ignored_fields: ClassVar[frozenset[str]] = frozenset({"customer_id"})

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, Mapping):
            raise serializers.ValidationError({"body": ["must be a JSON object"]})
        errors: dict[str, Any] = {
            name: ["unknown field"]
            for name in data
            if name not in self.fields and name not in self.ignored_fields
        }
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            errors = {**exc.detail, **errors}  # type: ignore[dict-item]
        if errors:
            raise serializers.ValidationError(errors)
        return value


def _optional(fields: dict[str, serializers.Field]) -> dict[str, serializers.Field]:
    """The same fields, none required and without defaults: the body of a partial PUT."""
    optional = {}
    for name, field in fields.items():
        args, kwargs = field._args, dict(field._kwargs)  # type: ignore[attr-defined]
        kwargs.pop("default", None)
        kwargs["required"] = False
        optional[name] = type(field)(*args, **kwargs)
    return optional


def _serializer(name: str, fields: dict[str, serializers.Field], ignored: set[str]) -> type:
    attrs: dict[str, Any] = dict(fields)
    attrs["ignored_fields"] = frozenset({"customer_id", *ignored})
    attrs["__module__"] = __name__
    return type(name, (StrictSerializer,), attrs)


def _volume(**kwargs: Any) -> DecimalInField:
    return DecimalInField(low=Decimal(0), high=MAX_LOTS, **kwargs)


# Masters ---------------------------------------------------------------------

_MASTER_FIELDS: dict[str, serializers.Field] = {
    "login": LoginField(help_text="A trading account of the customer."),
    "enabled": FlagField(default=1),
    "strategy_name": StrictCharField(max_length=100),
    "description": StrictCharField(max_length=2000, allow_blank=True, default=""),
    "visibility": StrictChoiceField(choices=CopyMasterVisibility.values, default="public"),
    "allowed_follower_modes": IntChoiceField(
        [1, 2, 3], default=3, help_text="Bit mask: 1 = REAL, 2 = DEMO, 3 = both."
    ),
}
_MASTER_ANSWER_ONLY = {"id", "followers_count", "fee_schedule", "created_at", "updated_at"}
MasterCreateSerializer = _serializer("MasterCreateSerializer", _MASTER_FIELDS, _MASTER_ANSWER_ONLY)
MasterUpdateSerializer = _serializer(
    "MasterUpdateSerializer", _optional(_MASTER_FIELDS), _MASTER_ANSWER_ONLY
)


class FeeScheduleItemSerializer(serializers.Serializer):
    """One fee a master charges its followers (set by staff in billing)."""

    kind = serializers.ChoiceField(choices=REWARD_KINDS, read_only=True)
    rate = serializers.DecimalField(max_digits=20, decimal_places=8, read_only=True)
    currency = serializers.CharField(read_only=True, allow_null=True)


def fee_schedule_of(master: Any) -> list[dict[str, Any]]:
    """The master's fees: its latest schedule version (billing.selectors)."""
    from billing.selectors import fee_schedule_items

    versions = master.fee_schedules.all()  # prefetched newest first by the selectors
    items = fee_schedule_items(versions[0] if versions else None)
    return FeeScheduleItemSerializer(items, many=True).data


class MasterSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    customer_id = serializers.IntegerField(source="account.customer_id", read_only=True)
    login = serializers.IntegerField(source="account.login", read_only=True)
    enabled = FlagField(read_only=True)
    strategy_name = serializers.CharField(read_only=True)
    description = serializers.CharField(read_only=True)
    visibility = serializers.ChoiceField(choices=CopyMasterVisibility.values, read_only=True)
    allowed_follower_modes = IntChoiceField([1, 2, 3], read_only=True)
    followers_count = serializers.IntegerField(read_only=True, default=0)
    fee_schedule = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)

    @extend_schema_field(FeeScheduleItemSerializer(many=True))
    def get_fee_schedule(self, master: Any) -> list[dict[str, Any]]:
        return fee_schedule_of(master)


# Followers -------------------------------------------------------------------

_FOLLOWER_FIELDS: dict[str, serializers.Field] = {
    "login": LoginField(help_text="A trading account of the customer."),
    "enabled": FlagField(default=1),
    "manual_trading_mode": FlagField(
        default=1, help_text="1: the customer may also trade by hand; 0: copy only."
    ),
    "max_master_count": StrictIntegerField(min_value=1, max_value=MAX_FOLLOWED_MASTERS, default=1),
}
_FOLLOWER_ANSWER_ONLY = {"id", "created_at", "updated_at"}
FollowerCreateSerializer = _serializer(
    "FollowerCreateSerializer", _FOLLOWER_FIELDS, _FOLLOWER_ANSWER_ONLY
)
FollowerUpdateSerializer = _serializer(
    "FollowerUpdateSerializer", _optional(_FOLLOWER_FIELDS), _FOLLOWER_ANSWER_ONLY
)


class FollowerSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    customer_id = serializers.IntegerField(source="account.customer_id", read_only=True)
    login = serializers.IntegerField(source="account.login", read_only=True)
    enabled = FlagField(read_only=True)
    manual_trading_mode = FlagField(read_only=True)
    max_master_count = serializers.IntegerField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)


# Subscriptions ---------------------------------------------------------------

_SUBSCRIPTION_FIELDS: dict[str, serializers.Field] = {
    "master_login": LoginField(help_text="The master's trading account."),
    "follower_login": LoginField(help_text="A trading account of the customer."),
    "enabled": FlagField(default=1),
    "status": IntChoiceField(
        [0, 1], default=0, help_text="0 active, 1 paused; 2 (risk stop) is set by the back office."
    ),
    "copy_mode": IntChoiceField([0, 1], default=0, help_text="0 full copy, 1 close only."),
    "volume_mode": IntChoiceField(
        [0, 1, 2, 3],
        default=0,
        help_text="0 multiplier, 1 proportional, 2 fixed, 3 equity-based.",
    ),
    "risk_multiplier": DecimalInField(
        low=Decimal(0), high=MAX_RISK_MULTIPLIER, low_open=True, default=Decimal("1")
    ),
    "fixed_volume": _volume(default=Decimal(0)),
    "base_equity": DecimalInField(
        low=Decimal(0), high=Decimal("1e12"), low_open=True, default=Decimal("10000")
    ),
    "copy_sl": FlagField(default=1),
    "copy_tp": FlagField(default=1),
    "copy_partial_close": FlagField(default=1),
    "copy_pending_orders": FlagField(default=0),
    "copy_existing_positions": FlagField(default=0),
    "reverse_direction": FlagField(default=0),
    "max_volume": _volume(default=Decimal(0)),
    "min_volume": _volume(default=Decimal(0)),
    "max_positions": StrictIntegerField(min_value=0, max_value=MAX_POSITIONS, default=0),
    "symbols_mode": IntChoiceField(
        [0, 1, 2], default=0, help_text="0 all, 1 only the listed, 2 all but the listed."
    ),
    "symbols": StrictCharField(
        max_length=2000,
        allow_blank=True,
        trim_whitespace=False,
        default="",
        help_text="Comma-separated master symbol names.",
    ),
}
_SUBSCRIPTION_ANSWER_ONLY = {
    "id",
    "master_id",
    "follower_id",
    "status_reason",
    "created_at",
    "updated_at",
}
SubscriptionCreateSerializer = _serializer(
    "SubscriptionCreateSerializer", _SUBSCRIPTION_FIELDS, _SUBSCRIPTION_ANSWER_ONLY
)
SubscriptionUpdateSerializer = _serializer(
    "SubscriptionUpdateSerializer", _optional(_SUBSCRIPTION_FIELDS), _SUBSCRIPTION_ANSWER_ONLY
)

_VOLUME = {"max_digits": settings.VOLUME_MAX_DIGITS, "decimal_places": 4, "read_only": True}
_MONEY = {"max_digits": settings.MONEY_MAX_DIGITS, "decimal_places": 4, "read_only": True}
_PRICE = {"max_digits": settings.PRICE_MAX_DIGITS, "decimal_places": 8, "read_only": True}


class SubscriptionSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    master_id = serializers.IntegerField(read_only=True)
    follower_id = serializers.IntegerField(read_only=True)
    master_login = serializers.IntegerField(source="master_account.login", read_only=True)
    follower_login = serializers.IntegerField(source="follower_account.login", read_only=True)
    enabled = FlagField(read_only=True)
    status = IntChoiceField([0, 1, 2], read_only=True)
    status_reason = serializers.CharField(read_only=True)
    copy_mode = IntChoiceField([0, 1], read_only=True)
    volume_mode = IntChoiceField([0, 1, 2, 3], read_only=True)
    risk_multiplier = serializers.DecimalField(max_digits=12, decimal_places=4, read_only=True)
    fixed_volume = serializers.DecimalField(**_VOLUME)
    base_equity = serializers.DecimalField(**_MONEY)
    copy_sl = FlagField(read_only=True)
    copy_tp = FlagField(read_only=True)
    copy_partial_close = FlagField(read_only=True)
    copy_pending_orders = FlagField(read_only=True)
    copy_existing_positions = FlagField(read_only=True)
    reverse_direction = FlagField(read_only=True)
    max_volume = serializers.DecimalField(**_VOLUME)
    min_volume = serializers.DecimalField(**_VOLUME)
    max_positions = serializers.IntegerField(read_only=True)
    symbols_mode = IntChoiceField([0, 1, 2], read_only=True)
    symbols = serializers.CharField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)


class MySerializer(serializers.Serializer):
    masters = MasterSerializer(many=True, read_only=True)
    followers = FollowerSerializer(many=True, read_only=True)
    subscriptions = SubscriptionSerializer(many=True, read_only=True)


# Trade links and rewards -----------------------------------------------------

# Internal link states -> the spec's four: a copy being opened or resting as a pending
# order is, to the customer, an open copy.
TRADE_LINK_STATUS_OUT = {
    "opening": "open",
    "pending": "open",
    "open": "open",
    "closed": "closed",
    "failed": "failed",
    "skipped": "skipped",
}


class TradeLinkSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    subscription_id = serializers.IntegerField(read_only=True)
    master_login = serializers.IntegerField(source="master_account.login", read_only=True)
    follower_login = serializers.IntegerField(source="follower_account.login", read_only=True)
    master_position_id = serializers.CharField(read_only=True)
    follower_position_id = serializers.CharField(read_only=True)
    symbol = serializers.CharField(read_only=True)
    follower_symbol = serializers.CharField(read_only=True)
    side = serializers.CharField(read_only=True)
    master_volume = serializers.DecimalField(**_VOLUME)
    follower_volume = serializers.DecimalField(**_VOLUME)
    open_price = serializers.DecimalField(**_PRICE, allow_null=True)
    status = serializers.SerializerMethodField()
    reason = serializers.CharField(read_only=True)
    opened_at = serializers.DateTimeField(read_only=True, allow_null=True)
    closed_at = serializers.DateTimeField(read_only=True, allow_null=True)
    profit = serializers.DecimalField(**_MONEY)

    @extend_schema_field(serializers.ChoiceField(choices=TRADE_LINK_STATUSES))
    def get_status(self, link: Any) -> str:
        return TRADE_LINK_STATUS_OUT.get(link.status, link.status)


class RewardAccrualSerializer(serializers.Serializer):
    """A fee accrual; a master's owner sees what it earns, a follower's owner what it pays."""

    id = serializers.IntegerField(read_only=True)
    subscription_id = serializers.IntegerField(read_only=True)
    master_login = serializers.IntegerField(read_only=True)
    follower_login = serializers.IntegerField(read_only=True)
    kind = serializers.ChoiceField(choices=REWARD_KINDS, read_only=True)
    period_start = serializers.DateTimeField(read_only=True)
    period_end = serializers.DateTimeField(read_only=True)
    base_amount = serializers.DecimalField(**_MONEY)
    rate = serializers.DecimalField(max_digits=20, decimal_places=8, read_only=True)
    amount = serializers.DecimalField(**_MONEY)
    currency = serializers.CharField(read_only=True)
    status = serializers.ChoiceField(choices=REWARD_STATUSES, read_only=True)
    created_at = serializers.DateTimeField(read_only=True)


# Errors ----------------------------------------------------------------------


class ErrorSerializer(serializers.Serializer):
    """Every error answer of the API (an answer only, so its fields are plain, and only
    `fields` is optional)."""

    error = serializers.ChoiceField(choices=list(ERROR_CODES))
    message = serializers.CharField()
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="VALIDATION_ERROR only: each bad field (or 'body') with its messages.",
    )
