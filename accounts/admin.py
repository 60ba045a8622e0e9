"""Customers, trading accounts and API tokens in the staff admin (django-unfold skin).

Support finds a customer here and goes from the account to its follower profile
(pause, resume, live positions); nobody deletes a customer or an account.
"""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html
from simple_history.admin import SimpleHistoryAdmin
from unfold.admin import ModelAdmin, TabularInline

from .models import Customer, TradingAccount


class TradingAccountInline(TabularInline):
    model = TradingAccount
    fields = ("login", "broker_server", "mode", "currency", "balance", "equity", "status")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False


@admin.register(Customer)
class CustomerAdmin(SimpleHistoryAdmin, ModelAdmin):
    list_display = ("id", "name", "email", "country", "status", "created_at")
    list_filter = ("status", "country")
    search_fields = ("name", "email", "user__username", "accounts__login")
    list_select_related = ("user",)
    readonly_fields = ("created_at",)
    raw_id_fields = ("user",)
    inlines = [TradingAccountInline]

    def has_delete_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False


@admin.register(TradingAccount)
class TradingAccountAdmin(SimpleHistoryAdmin, ModelAdmin):
    list_display = (
        "login",
        "broker_server",
        "customer",
        "mode",
        "currency",
        "leverage",
        "balance",
        "equity",
        "margin",
        "snapshot_at",
        "status",
        "copying",
    )
    list_filter = ("mode", "status", "broker_server", "currency")
    search_fields = ("=login", "customer__name", "customer__email", "group")
    list_select_related = ("broker_server", "customer")
    autocomplete_fields = ("customer",)
    readonly_fields = ("balance", "equity", "margin", "snapshot_at", "created_at")

    @admin.display(description="copying")
    def copying(self, obj: TradingAccount) -> str:
        # Links to the account's drift page (positions against links); no query per row.
        return format_html('<a href="{}">drift</a>', reverse("staff:drift-account", args=[obj.pk]))

    def has_delete_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False


# Client API tokens (issue 6); imported here to keep this block appended.
from .models import CustomerApiToken  # noqa: E402


@admin.register(CustomerApiToken)
class CustomerApiTokenAdmin(ModelAdmin):
    """Read-only: tokens are issued by /auth/login and revoked by /auth/logout; the stored
    hash is not a secret, but nothing here can make or change a token."""

    list_display = ("id", "customer", "created_at", "expires_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("customer__name", "customer__email", "customer__user__username")
    list_select_related = ("customer",)
    fields = ("customer", "created_at", "expires_at", "revoked_at")
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False
