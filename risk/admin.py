"""The risk app in the staff admin: the kill switch (read here, toggled on its own page
with a reason); limits per subscription and per master (Operations edit, with history;
also inlines of the subscription and master pages); the monitors' readings (how close
each limit is to firing); and every stop, cleared here with a reason."""

from django import forms
from django.contrib import admin
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from simple_history.admin import SimpleHistoryAdmin
from unfold.admin import ModelAdmin, StackedInline, TabularInline
from unfold.decorators import action

from copytrading.admin import StaffActionsMixin, checks_html

from . import monitors
from .models import (
    KillSwitch,
    MasterLimits,
    MonitorState,
    RiskStop,
    ServerSwitch,
    SubscriptionLimits,
)
from .pretrade import pretrade_closeness, pretrade_stops


class _SwitchAdmin(SimpleHistoryAdmin, ModelAdmin):
    """A switch is read here, with its history, and changed only on its staff page, through
    a service with a reason: no add or delete; the detail button goes to that page."""

    switch_page = ""  # the staff page's URL name
    actions_list = ["toggle"]
    actions_detail = ["toggle_detail"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def _to_page(self) -> HttpResponse:
        return HttpResponseRedirect(reverse(self.switch_page))

    @action(description="Turn on or off", url_path="toggle", icon="power")
    def toggle_detail(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._to_page()


@admin.register(KillSwitch)
class KillSwitchAdmin(_SwitchAdmin):
    """Read here; changed only through risk.services.kill_switch_set (with a reason), from
    the kill switch page (the button below, or the sidebar)."""

    switch_page = "staff:kill-switch"
    list_display = ("__str__", "active", "reason", "changed_by", "changed_at")
    list_select_related = ("changed_by",)
    readonly_fields = ("active", "reason", "changed_by", "changed_at")

    @action(description="Turn on or off (asks for a reason)", url_path="toggle", icon="power")
    def toggle(self, request: HttpRequest) -> HttpResponse:
        return self._to_page()


@admin.register(ServerSwitch)
class ServerSwitchAdmin(_SwitchAdmin):
    """A kill switch per broker server: read here, with its history; changed only through a
    service with a reason."""

    switch_page = "staff:server-switches"
    list_display = ("broker_server", "active", "reason", "changed_by", "changed_at")
    list_select_related = ("broker_server", "changed_by")
    search_fields = ("broker_server__name",)
    readonly_fields = ("broker_server", "active", "reason", "changed_by", "changed_at")

    @action(
        description="Turn a server on or off (asks for a reason)", url_path="toggle", icon="power"
    )
    def toggle(self, request: HttpRequest) -> HttpResponse:
        return self._to_page()


# -- post-trade: limits, monitor state, stops --------------------------------------------


CLEAR_RISK_STOP_PERMISSION = "copytrading.clear_risk_stop_copysubscription"
MASTER_RESUME_PERMISSION = "copytrading.change_copymaster"

_POSTTRADE_FIELDS = (
    "equity_floor",
    "max_drawdown_pct",
    "daily_loss_limit",
    "weekly_loss_limit",
    "monthly_loss_limit",
    "loss_unit",
    "loss_basis",
    "period_timezone",
    "breach_policy",
    "resume_next_period",
)


_PRETRADE_LIMITS = (
    "max_lots_per_symbol",
    "max_lots_total",
    "max_leverage",
    "max_risk_per_trade_pct",
    "require_master_sl",
    "margin_policy",
    "max_slippage",
    "slippage_policy",
    "market_closed_policy",
    "market_wait_seconds",
)


def _plain(value: str) -> str:
    """A Decimal string without trailing zeros: 5.0000 -> 5, 3.20 -> 3.2."""
    from decimal import Decimal, InvalidOperation

    try:
        return format(Decimal(value).normalize(), "f")
    except InvalidOperation:
        return value


def closeness_html(figures: list[dict]) -> str:
    """How close each limit is to firing, one line per limit: "MAX_DRAWDOWN: 3.2% of 5%
    (64% used)"; a fired one says so; the rule's detail is the line's tooltip."""
    if not figures:
        return "no reading yet"

    def line(f: dict) -> tuple[str, ...]:
        unit = "%" if f["unit"] == "percent" else ""
        return (
            f["detail"],
            f["rule"],
            f"{_plain(f['value'])}{unit}",
            f"{_plain(f['limit'])}{unit}",
            _plain(f["used_pct"]),
            " FIRED" if f["fired"] else "",
        )

    return format_html_join(
        mark_safe("<br>"),  # noqa: S308 - a constant
        "<span title='{}'>{}: {} of {} ({}% used){}</span>",
        (line(f) for f in figures),
    )


class SubscriptionLimitsForm(forms.ModelForm):
    """Limits as staff edit them: the period zone must be an IANA name."""

    class Meta:
        model = SubscriptionLimits
        fields = ("subscription", *_PRETRADE_LIMITS, *_POSTTRADE_FIELDS)

    def clean_period_timezone(self) -> str:
        from .rules import RuleInputError, zone

        value = (self.cleaned_data.get("period_timezone") or "UTC").strip()
        try:
            zone(value)
        except RuleInputError as exc:
            raise forms.ValidationError(str(exc)) from exc
        return value


class PretradeDisplayMixin:
    """How close each pre-trade limit is to firing, and the opens the checks stopped or cut
    (newest first, each with its check results), on the limits' pages."""

    @admin.display(description="pre-trade: how close each limit is to firing")
    def pretrade_closeness(self, obj: SubscriptionLimits) -> str:
        if obj.pk is None:
            return "-"
        figures = pretrade_closeness(obj)
        return closeness_html(figures) if figures else "no lots or leverage limit set"

    @admin.display(description="pre-trade stops and cuts (latest 10)")
    def pretrade_stops(self, obj: SubscriptionLimits) -> str:
        if obj.pk is None:
            return "-"
        stops = pretrade_stops(obj.subscription_id)
        if not stops:
            return "none"
        rows = (
            (
                reverse("admin:copytrading_copyinstruction_change", args=[inst.pk]),
                inst.pk,
                f"{inst.created_at:%Y-%m-%d %H:%M:%S}",
                inst.reason or f"{inst.action} {inst.volume}",
                checks_html((inst.decision or {}).get("checks") or []),
            )
            for inst in stops
        )
        body = format_html_join(
            "",
            "<tr><td><a href='{}'>#{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            rows,
        )
        return format_html('<table class="bo-table">{}</table>', body)


_PRETRADE_FIELDS = (*_PRETRADE_LIMITS, "pretrade_closeness", "pretrade_stops")


class SubscriptionLimitsInline(PretradeDisplayMixin, StackedInline):
    """The subscription's risk limits, edited on its page by Operations (history kept)."""

    model = SubscriptionLimits
    form = SubscriptionLimitsForm
    extra = 0
    max_num = 1
    can_delete = False
    readonly_fields = ("pretrade_closeness", "pretrade_stops")
    fieldsets = (
        (
            "Post-trade (monitors)",
            {"fields": _POSTTRADE_FIELDS},
        ),
        ("Pre-trade (copy decision)", {"fields": _PRETRADE_FIELDS}),
    )


class MonitorStateInline(TabularInline):
    """How close each limit is to firing, from the monitor's last reading."""

    model = MonitorState
    fk_name = "subscription"
    extra = 0
    can_delete = False
    fields = ("closeness", "equity", "equity_hwm", "balance", "reading_at")
    readonly_fields = fields
    verbose_name = "risk monitor"
    verbose_name_plural = "risk monitor (how close each limit is to firing)"

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="limits")
    def closeness(self, obj: MonitorState) -> str:
        return closeness_html(obj.figures)


class MasterMonitorStateInline(MonitorStateInline):
    fk_name = "master"
    fields = ("closeness", "equity", "equity_hwm", "open_positions", "open_lots", "reading_at")
    readonly_fields = fields


class RiskStopInline(TabularInline):
    """The history of stops of a subscription (or master), newest first; cleared on the
    stop's own page."""

    model = RiskStop
    fk_name = "subscription"
    extra = 0
    can_delete = False
    fields = ("stop_link", "rule", "policy", "detail", "fired_at", "resumes_at", "cleared")
    readonly_fields = fields
    ordering = ("-fired_at", "-id")
    verbose_name_plural = "risk stops"

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="stop")
    def stop_link(self, obj: RiskStop) -> str:
        url = reverse("admin:risk_riskstop_change", args=[obj.pk])
        return format_html('<a href="{}">#{}</a>', url, obj.pk)

    @admin.display(description="cleared")
    def cleared(self, obj: RiskStop) -> str:
        if obj.cleared_at is None:
            return "open"
        who = obj.cleared_by or "system"
        return f"{obj.cleared_at:%Y-%m-%d %H:%M} by {who}: {obj.clear_reason}"


class MasterRiskStopInline(RiskStopInline):
    fk_name = "master"


class MasterLimitsInline(StackedInline):
    """The limits a master declares; a breach pauses it for every follower."""

    model = MasterLimits
    extra = 0
    max_num = 1
    can_delete = False
    fields = ("max_lots", "max_open_positions", "max_drawdown_pct")


# Inlines the copytrading admin adds to its subscription and master pages.
SUBSCRIPTION_INLINES = [SubscriptionLimitsInline, MonitorStateInline, RiskStopInline]
MASTER_INLINES = [MasterLimitsInline, MasterMonitorStateInline, MasterRiskStopInline]


@admin.register(SubscriptionLimits)
class SubscriptionLimitsAdmin(PretradeDisplayMixin, SimpleHistoryAdmin, ModelAdmin):
    """Every subscription's limits in one list, with how close each is to firing (the
    post-trade monitor's reading; the pre-trade figures and stops on each limits' page)."""

    form = SubscriptionLimitsForm
    readonly_fields = ("pretrade_closeness", "pretrade_stops")
    list_display = ("subscription", "follower", "closeness", "breach_policy", "updated_at")
    list_select_related = (
        "subscription__follower_account",
        "subscription__risk_monitor",
    )
    list_filter = ("breach_policy", "loss_unit", "loss_basis")
    search_fields = ("=subscription__id", "=subscription__follower_account__login")
    raw_id_fields = ("subscription",)

    @admin.display(description="follower")
    def follower(self, obj: SubscriptionLimits) -> int:
        return obj.subscription.follower_account.login

    @admin.display(description="how close each limit is to firing")
    def closeness(self, obj: SubscriptionLimits) -> str:
        state = getattr(obj.subscription, "risk_monitor", None)
        return closeness_html(state.figures if state else [])

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(MasterLimits)
class MasterLimitsAdmin(SimpleHistoryAdmin, ModelAdmin):
    list_display = ("master", "max_lots", "max_open_positions", "max_drawdown_pct", "updated_at")
    list_select_related = ("master",)
    raw_id_fields = ("master",)
    search_fields = ("master__strategy_name", "=master__account__login")

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(RiskStop)
class RiskStopAdmin(StaffActionsMixin, SimpleHistoryAdmin, ModelAdmin):
    """Every stop a post-trade rule fired, with the figures it read; staff clear a stop
    here with a reason (the subscription resumes, or the master's pause ends, when no
    other stop holds it). Rows are evidence: never added or deleted by hand."""

    list_display = (
        "id",
        "target",
        "rule",
        "policy",
        "detail",
        "fired_at",
        "resumes_at",
        "state",
    )
    list_filter = ("rule", "policy", ("cleared_at", admin.EmptyFieldListFilter))
    list_select_related = ("subscription", "master", "cleared_by")
    search_fields = ("=subscription__id", "=master__id", "detail")
    date_hierarchy = "fired_at"
    readonly_fields = (
        "subscription",
        "master",
        "rule",
        "policy",
        "detail",
        "inputs_table",
        "fired_at",
        "resumes_at",
        "cleared_at",
        "cleared_by",
        "clear_reason",
    )
    exclude = ("inputs",)
    actions_row = ["row_clear"]
    actions_detail = ["row_clear"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_clear_permission(self, request: HttpRequest, obj: object = None) -> bool:
        user = request.user
        return user.has_perm(CLEAR_RISK_STOP_PERMISSION) and user.has_perm(MASTER_RESUME_PERMISSION)

    @admin.display(description="on")
    def target(self, obj: RiskStop) -> str:
        if obj.subscription_id:
            url = reverse("admin:copytrading_copysubscription_change", args=[obj.subscription_id])
            return format_html('<a href="{}">subscription {}</a>', url, obj.subscription_id)
        url = reverse("admin:copytrading_copymaster_change", args=[obj.master_id])
        return format_html('<a href="{}">master {}</a>', url, obj.master)

    @admin.display(description="state")
    def state(self, obj: RiskStop) -> str:
        if obj.cleared_at is None:
            return "open"
        return f"cleared {obj.cleared_at:%Y-%m-%d %H:%M} by {obj.cleared_by or 'system'}"

    @admin.display(description="inputs (every figure the rule read)")
    def inputs_table(self, obj: RiskStop) -> str:
        rows: list[tuple[str, str]] = []

        def walk(prefix: str, value: object) -> None:
            if isinstance(value, dict):
                for key, inner in value.items():
                    walk(f"{prefix}.{key}" if prefix else str(key), inner)
            elif isinstance(value, list):
                for i, inner in enumerate(value):
                    walk(f"{prefix}[{i}]", inner)
            else:
                rows.append((prefix, str(value)))

        walk("", obj.inputs)
        body = format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows)
        return format_html('<table class="bo-table">{}</table>', body)

    def _clear(self, obj: RiskStop, reason: str, *, request: HttpRequest) -> str:
        monitors.risk_stop_clear(stop=obj, reason=reason, actor=request.user)
        return f"Risk stop {obj.pk} cleared."

    @action(
        description="Clear",
        url_path="clear",
        permissions=["clear"],
        icon="lock_open",
    )
    def row_clear(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self.reason_flow(
            request,
            object_id,
            name="clear",
            title="Clear risk stop",
            verb="Clear",
            danger=True,
            note="Copying resumes (or the master's pause ends) when no other stop holds it. "
            "Clearing a drawdown stop restarts the high-water mark at the last equity.",
            perform=lambda obj, reason: self._clear(obj, reason, request=request),
        )


@admin.register(MonitorState)
class MonitorStateAdmin(ModelAdmin):
    """The monitors' last readings: how close each limit of each subscription or master
    is to firing. A reading, rewritten every second: no history, no edits."""

    list_display = ("__str__", "closeness", "equity", "equity_hwm", "reading_at")
    list_select_related = ("subscription", "master")
    readonly_fields = (
        "subscription",
        "master",
        "closeness",
        "equity_hwm",
        "hwm_at",
        "periods",
        "balance",
        "equity",
        "margin",
        "reading_at",
        "open_lots",
        "open_positions",
        "evaluated_at",
    )
    exclude = ("figures",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="how close each limit is to firing")
    def closeness(self, obj: MonitorState) -> str:
        return closeness_html(obj.figures)
