from typing import Any

from django import forms
from django.contrib import admin
from django.db import transaction
from django.http import HttpRequest
from simple_history.admin import SimpleHistoryAdmin

from .errors import CopyTradingError
from .models import (
    CopyFollower,
    CopyInstruction,
    CopyMaster,
    CopySubscription,
    Fill,
    FollowerOrder,
    FollowerOrderTransition,
    MasterEvent,
    TradeLink,
)
from .services import SUBSCRIPTION_SETTINGS, subscription_create, subscription_update


class _DryRun(Exception):
    pass


class CopySubscriptionForm(forms.ModelForm):
    """Runs the same service the API uses, so staff get the same rules and messages."""

    class Meta:
        model = CopySubscription
        fields = ("follower", "master", *SUBSCRIPTION_SETTINGS)

    def write(self, *, actor: Any) -> CopySubscription:
        values = {f: self.cleaned_data[f] for f in SUBSCRIPTION_SETTINGS if f in self.cleaned_data}
        if self.instance.pk:
            return subscription_update(subscription=self.instance, settings=values, actor=actor)
        return subscription_create(
            follower_account=self.cleaned_data["follower"].account,
            master_account=self.cleaned_data["master"].account,
            settings=values,
            actor=actor,
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        try:
            with transaction.atomic():
                self.write(actor=None)
                raise _DryRun  # roll the trial write back; save_model writes for real
        except _DryRun:
            pass
        except CopyTradingError as exc:
            raise forms.ValidationError(f"{exc.code}: {exc.message}") from None
        return cleaned


@admin.register(CopyMaster)
class CopyMasterAdmin(SimpleHistoryAdmin):
    list_display = (
        "strategy_name",
        "login",
        "customer",
        "enabled",
        "visibility",
        "allowed_follower_modes",
        "created_at",
    )
    list_filter = ("enabled", "visibility", "allowed_follower_modes")
    search_fields = (
        "strategy_name",
        "=account__login",
        "account__customer__name",
        "account__customer__email",
    )
    list_select_related = ("account", "account__customer")
    raw_id_fields = ("account",)
    readonly_fields = ("created_at", "updated_at")

    @admin.display(ordering="account__login")
    def login(self, obj: CopyMaster) -> int:
        return obj.account.login

    @admin.display(ordering="account__customer__name")
    def customer(self, obj: CopyMaster) -> str:
        return obj.account.customer.name


@admin.register(CopyFollower)
class CopyFollowerAdmin(SimpleHistoryAdmin):
    list_display = (
        "id",
        "login",
        "customer",
        "enabled",
        "manual_trading_mode",
        "max_master_count",
    )
    list_filter = ("enabled", "manual_trading_mode")
    search_fields = ("=account__login", "account__customer__name", "account__customer__email")
    list_select_related = ("account", "account__customer")
    raw_id_fields = ("account",)
    readonly_fields = ("created_at", "updated_at")

    @admin.display(ordering="account__login")
    def login(self, obj: CopyFollower) -> int:
        return obj.account.login

    @admin.display(ordering="account__customer__name")
    def customer(self, obj: CopyFollower) -> str:
        return obj.account.customer.name


@admin.register(CopySubscription)
class CopySubscriptionAdmin(SimpleHistoryAdmin):
    list_display = (
        "id",
        "follower_login",
        "master_login",
        "strategy",
        "enabled",
        "status",
        "copy_mode",
        "volume_mode",
        "risk_multiplier",
        "status_changed_at",
    )
    list_filter = ("status", "enabled", "copy_mode", "volume_mode", "symbols_mode")
    search_fields = (
        "=follower_account__login",
        "=master_account__login",
        "master__strategy_name",
        "follower_account__customer__name",
        "follower_account__customer__email",
    )
    list_select_related = ("follower_account", "master_account", "master")
    form = CopySubscriptionForm
    raw_id_fields = ("follower", "master")
    readonly_fields = (
        "status",
        "status_reason",
        "status_changed_at",
        "created_at",
        "updated_at",
    )

    @admin.display(ordering="follower_account__login", description="follower")
    def follower_login(self, obj: CopySubscription) -> int:
        return obj.follower_account.login

    @admin.display(ordering="master_account__login", description="master")
    def master_login(self, obj: CopySubscription) -> int:
        return obj.master_account.login

    @admin.display(ordering="master__strategy_name")
    def strategy(self, obj: CopySubscription) -> str:
        return obj.master.strategy_name

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fixed = ("follower", "master") if obj is not None else ()
        return (*fixed, *self.readonly_fields)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        saved = form.write(actor=request.user)
        obj.pk = saved.pk


class ReadOnlyAdmin(admin.ModelAdmin):
    """Evidence rows: staff read them, nobody edits or deletes them from the admin."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(MasterEvent)
class MasterEventAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "event_type",
        "login",
        "broker_server",
        "symbol",
        "side",
        "volume",
        "price",
        "master_position_id",
        "venue_seq",
        "synthetic",
        "venue_ts",
        "stored_at",
        "fanout_state",
    )
    list_filter = ("event_type", "fanout_state", "synthetic", "broker_server")
    search_fields = ("=account__login", "=master_position_id", "=venue_event_id", "symbol")
    list_select_related = ("account", "broker_server")
    date_hierarchy = "stored_at"
    show_full_result_count = False

    @admin.display(ordering="account__login", description="master")
    def login(self, obj: MasterEvent) -> int:
        return obj.account.login


@admin.register(TradeLink)
class TradeLinkAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "subscription_id",
        "master_account",
        "follower_account",
        "master_position_id",
        "follower_position_id",
        "follower_symbol",
        "side",
        "master_volume",
        "follower_volume",
        "open_price",
        "status",
        "reason",
        "profit",
        "opened_at",
        "closed_at",
    )
    list_filter = ("status",)
    search_fields = (
        "=master_account__login",
        "=follower_account__login",
        "=master_position_id",
        "=follower_position_id",
    )
    list_select_related = ("master_account", "follower_account")
    show_full_result_count = False


class FollowerOrderInline(admin.StackedInline):
    model = FollowerOrder
    extra = 0
    can_delete = False
    readonly_fields = [f.name for f in FollowerOrder._meta.fields]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(CopyInstruction)
class CopyInstructionAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "origin",
        "master_event_id",
        "subscription_id",
        "follower_account",
        "action",
        "status",
        "reason",
        "follower_symbol",
        "side",
        "volume",
        "rule_version",
        "created_at",
    )
    list_filter = ("status", "action", "origin", "reason")
    search_fields = ("=client_order_id", "=follower_account__login", "=master_event__id")
    list_select_related = ("follower_account",)
    inlines = [FollowerOrderInline]
    show_full_result_count = False


class TransitionInline(admin.TabularInline):
    model = FollowerOrderTransition
    extra = 0
    can_delete = False
    readonly_fields = ("status", "at", "venue_ts", "detail")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class FillInline(admin.TabularInline):
    model = Fill
    extra = 0
    can_delete = False
    readonly_fields = ("volume", "price", "profit", "venue_position_id", "venue_ts")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(FollowerOrder)
class FollowerOrderAdmin(ReadOnlyAdmin):
    list_display = (
        "client_order_id",
        "account",
        "action",
        "symbol",
        "side",
        "requested_volume",
        "filled_volume",
        "price",
        "status",
        "reason",
        "sent_at",
        "venue_ts",
    )
    list_filter = ("status", "action", "broker_server")
    search_fields = ("=client_order_id", "=account__login", "=venue_position_id")
    list_select_related = ("account",)
    inlines = [TransitionInline, FillInline]
    show_full_result_count = False


@admin.register(FollowerOrderTransition)
class FollowerOrderTransitionAdmin(ReadOnlyAdmin):
    list_display = ("order", "status", "at", "venue_ts")
    list_filter = ("status",)
    search_fields = ("=order__client_order_id",)
    list_select_related = ("order",)
    show_full_result_count = False


@admin.register(Fill)
class FillAdmin(ReadOnlyAdmin):
    list_display = ("order", "volume", "price", "profit", "venue_position_id", "venue_ts")
    search_fields = ("=order__client_order_id", "=venue_position_id")
    list_select_related = ("order",)
    show_full_result_count = False


from .models import StaffRemedy  # noqa: E402


@admin.register(StaffRemedy)
class StaffRemedyAdmin(ReadOnlyAdmin):
    list_display = ("id", "kind", "follower_account", "subscription", "actor", "created_at")
    list_select_related = ("follower_account", "subscription", "actor")
