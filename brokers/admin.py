"""Broker servers, symbols, symbol maps and listener health in the staff admin.

Operations configure servers and maps here (every change kept in history); credentials
are write-only; listener shards are read-only health rows.
"""

import json

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest
from simple_history.admin import SimpleHistoryAdmin
from unfold.admin import ModelAdmin

from .models import BrokerServer, ListenerShard, Symbol, SymbolMap
from .services import broker_server_set_credentials


class BrokerServerForm(forms.ModelForm):
    """Credentials are write-only: the form never shows what is stored."""

    new_credentials = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text='JSON object, e.g. {"api_key": "..."}. Leave empty to keep the current ones.',
    )

    class Meta:
        model = BrokerServer
        fields = (
            "name",
            "platform",
            "gateway_kind",
            "base_url",
            "symbol_suffix",
            "dedupes_client_order_ids",
            "enabled",
        )

    def clean_new_credentials(self) -> dict[str, str] | None:
        raw = self.cleaned_data.get("new_credentials")
        if not raw:
            return None
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            raise forms.ValidationError(
                'Credentials must be a JSON object such as {"api_key": "..."}.'
            ) from None
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise forms.ValidationError("Credentials must be a JSON object of strings.")
        return value


@admin.register(BrokerServer)
class BrokerServerAdmin(SimpleHistoryAdmin, ModelAdmin):
    form = BrokerServerForm
    list_display = (
        "name",
        "platform",
        "gateway_kind",
        "base_url",
        "symbol_suffix",
        "enabled",
        "credentials_set",
    )
    list_filter = ("platform", "gateway_kind", "enabled")
    search_fields = ("name", "base_url")
    readonly_fields = ("credentials_set", "credentials_rotated_at", "created_at")
    actions = ["sync_symbols"]

    @admin.action(description="Sync symbols and lot rules from the broker", permissions=["change"])
    def sync_symbols(self, request: HttpRequest, queryset) -> None:  # type: ignore[no-untyped-def]
        from .gateways.errors import GatewayError
        from .services import symbols_sync

        for server in queryset:
            try:
                counts = symbols_sync(server=server, actor=request.user)
            except GatewayError as exc:
                self.message_user(
                    request, f"{server}: the broker did not answer ({exc})", messages.ERROR
                )
                continue
            self.message_user(
                request,
                f"{server}: {counts['listed']} symbols listed, {counts['created']} new, "
                f"{counts['updated']} changed, {counts['retired']} no longer listed.",
                messages.SUCCESS,
            )

    @admin.display(boolean=True, description="credentials set")
    def credentials_set(self, obj: BrokerServer) -> bool:
        return obj.has_credentials

    def save_model(self, request: HttpRequest, obj: BrokerServer, form, change: bool) -> None:  # type: ignore[no-untyped-def]
        credentials = form.cleaned_data.get("new_credentials")
        if credentials:
            # The service encrypts and stamps the rotation, and saves the form's other changes
            # with them: one history row by this user, "credentials rotated".
            broker_server_set_credentials(server=obj, credentials=credentials, actor=request.user)
        else:
            super().save_model(request, obj, form, change)


@admin.register(Symbol)
class SymbolAdmin(SimpleHistoryAdmin, ModelAdmin):
    list_display = (
        "name",
        "broker_server",
        "contract_size",
        "min_volume",
        "max_volume",
        "volume_step",
        "digits",
        "margin_currency",
        "trading",
    )
    list_filter = ("broker_server", "trading")
    search_fields = ("name",)
    list_select_related = ("broker_server",)


@admin.register(SymbolMap)
class SymbolMapAdmin(SimpleHistoryAdmin, ModelAdmin):
    list_display = ("master_symbol", "follower_symbol", "broker_server", "account", "source_server")
    list_filter = ("broker_server",)
    search_fields = ("master_symbol", "follower_symbol", "=account__login")
    list_select_related = ("broker_server", "account", "source_server")
    raw_id_fields = ("account",)


@admin.register(ListenerShard)
class ListenerShardAdmin(ModelAdmin):
    """Listener health for operations: read-only, kept up to date by the listeners."""

    list_display = (
        "broker_server",
        "shard_index",
        "shard_count",
        "connected",
        "heartbeat_at",
        "last_event_at",
        "lag_ms",
        "last_seq",
        "reconnects",
        "resyncs",
        "worker",
        "last_error",
    )
    list_filter = ("connected", "broker_server")
    list_select_related = ("broker_server",)

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
