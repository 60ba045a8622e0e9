"""Admin of the copy engine: masters, followers, subscriptions and the evidence rows.

The admin is a UI over services (STYLE.md, habit 8): pause, resume, force-close and
re-sync are buttons on the change list row and on the change page, each asking for a
reason on its own page (templates/admin/copytrading/<model>/) and calling the service
with the staff member as actor, so history records who, when and why. Every action
declares its permission; bulk actions ask for one reason for all the selected rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from simple_history.admin import SimpleHistoryAdmin
from unfold.admin import ModelAdmin, StackedInline, TabularInline
from unfold.decorators import action

from .choices import CopySubscriptionStatus
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
    StaffRemedy,
    TradeLink,
)
from .services import (
    SUBSCRIPTION_SETTINGS,
    follower_pause,
    follower_resume,
    master_pause,
    master_resume,
    subscription_create,
    subscription_pause,
    subscription_resume,
    subscription_update,
)

# Actions name permission methods (has_<name>_permission), never "app.codename": unfold's
# system check looks dotted names up in auth_permission, which breaks `migrate` on a
# fresh database (the table is not there yet).
PAUSE_PERMISSION = "copytrading.pause_copysubscription"
CLEAR_RISK_STOP_PERMISSION = "copytrading.clear_risk_stop_copysubscription"
MASTER_PAUSE_PERMISSION = "copytrading.change_copymaster"
REMEDY_PERMISSION = "copytrading.change_copysubscription"
LINEAGE_PERMISSION = "copytrading.view_followerorder"
# Row and detail buttons shown as buttons, not hidden in the row's "more" menu.
BUTTON = {"display_in_dropdown": False}


class ReasonForm(forms.Form):
    """The reason every staff action asks for; it goes into history with the actor."""

    reason = forms.CharField(
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "Why (kept in the record)"}),
    )


class StaffActionsMixin:
    """One-click staff actions with a reason: a row/detail button opens a small form on
    its own page (GET), and its POST calls the service and goes back where staff came
    from. Bulk actions ask once for the reason of all the selected rows."""

    admin_site: Any
    model: Any

    def _back(self, request: HttpRequest) -> str:
        opts = self.model._meta
        fallback = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        candidate = request.POST.get("next") or request.META.get("HTTP_REFERER", "")
        if candidate and url_has_allowed_host_and_scheme(
            candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            return candidate
        return fallback

    def reason_flow(
        self,
        request: HttpRequest,
        object_id: str,
        *,
        name: str,
        title: str,
        verb: str,
        perform: Callable[[Any, str], str],
        danger: bool = False,
        note: str = "",
    ) -> HttpResponse:
        """GET: the object and a reason box; POST: `perform(obj, reason)` -> message."""
        obj = self.get_object(request, unquote(object_id))  # type: ignore[attr-defined]
        if obj is None:
            raise Http404
        form = ReasonForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                message = perform(obj, form.cleaned_data["reason"])
            except CopyTradingError as exc:
                self.message_user(request, str(exc), messages.ERROR)  # type: ignore[attr-defined]
            except ValueError as exc:
                self.message_user(request, str(exc), messages.ERROR)  # type: ignore[attr-defined]
            else:
                self.message_user(request, message, messages.SUCCESS)  # type: ignore[attr-defined]
            return HttpResponseRedirect(self._back(request))
        opts = self.model._meta
        context = {
            **self.admin_site.each_context(request),
            "opts": opts,
            "app_label": opts.app_label,
            "object": obj,
            "form": form,
            "title": title,
            "verb": verb,
            "danger": danger,
            "note": note,
            "next": self._back(request),
        }
        return TemplateResponse(
            request, [f"admin/{opts.app_label}/{opts.model_name}/{name}.html"], context
        )

    def bulk_reason(
        self,
        request: HttpRequest,
        queryset: QuerySet,
        *,
        name: str,
        title: str,
        verb: str,
        perform: Callable[[Any, str], Any],
    ) -> HttpResponse | None:
        """A bulk action's two steps: the reason page, then one service call per row."""
        form = ReasonForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            done, failed = 0, []
            for obj in queryset:
                try:
                    perform(obj, form.cleaned_data["reason"])
                    done += 1
                except CopyTradingError as exc:
                    failed.append(f"{obj}: {exc.message}")
            self.message_user(request, f"{verb}: {done} done.", messages.SUCCESS)  # type: ignore[attr-defined]
            for line in failed:
                self.message_user(request, line, messages.ERROR)  # type: ignore[attr-defined]
            return None
        opts = self.model._meta
        context = {
            **self.admin_site.each_context(request),
            "opts": opts,
            "app_label": opts.app_label,
            "objects": list(queryset),
            "form": form,
            "title": title,
            "verb": verb,
            "action_name": request.POST.get("action", ""),
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(
            request, [f"admin/{opts.app_label}/{opts.model_name}/{name}.html"], context
        )


class PauseActionsMixin(StaffActionsMixin):
    """Pause and resume, each with a reason: a row and detail button for one object, a bulk
    action for the selected ones. A subclass names its objects and says what each does
    (`noun`, `pause_note`, `resume_note`) and calls the services in `_pause`/`_resume`."""

    noun = ""
    pause_note = ""
    resume_note = ""

    def _pause(self, obj: Any, reason: str, *, request: HttpRequest) -> str:
        raise NotImplementedError

    def _resume(self, obj: Any, reason: str, *, request: HttpRequest) -> str:
        raise NotImplementedError

    @action(
        description="Pause",
        url_path="pause",
        permissions=["pause"],
        icon="pause",
        extra_options=BUTTON,
    )
    def row_pause(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self.reason_flow(
            request,
            object_id,
            name="pause",
            title=f"Pause {self.noun}",
            verb="Pause",
            danger=True,
            note=self.pause_note,
            perform=lambda obj, reason: self._pause(obj, reason, request=request),
        )

    @action(
        description="Resume",
        url_path="resume",
        permissions=["pause"],
        icon="play_arrow",
        extra_options=BUTTON,
    )
    def row_resume(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self.reason_flow(
            request,
            object_id,
            name="resume",
            title=f"Resume {self.noun}",
            verb="Resume",
            note=self.resume_note,
            perform=lambda obj, reason: self._resume(obj, reason, request=request),
        )

    @admin.action(
        description="Pause selected %(verbose_name_plural)s (asks for a reason)",
        permissions=["pause"],
    )
    def pause_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self.bulk_reason(
            request,
            queryset,
            name="bulk_pause",
            title=f"Pause {self.noun}s",
            verb="Pause",
            perform=lambda obj, reason: self._pause(obj, reason, request=request),
        )

    @admin.action(
        description="Resume selected %(verbose_name_plural)s (asks for a reason)",
        permissions=["pause"],
    )
    def resume_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self.bulk_reason(
            request,
            queryset,
            name="bulk_resume",
            title=f"Resume {self.noun}s",
            verb="Resume",
            perform=lambda obj, reason: self._resume(obj, reason, request=request),
        )


def _link(url: str, text: str) -> str:
    return format_html('<a href="{}">{}</a>', url, text)


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


# -- masters -----------------------------------------------------------------------------


@admin.register(CopyMaster)
class CopyMasterAdmin(PauseActionsMixin, SimpleHistoryAdmin, ModelAdmin):
    noun = "master"
    pause_note = (
        "No follower gets a new copy of this master's trades until resumed; "
        "closes of what was copied still go through."
    )
    list_display = (
        "strategy_name",
        "login",
        "customer",
        "enabled",
        "paused",
        "visibility",
        "allowed_follower_modes",
        "live",
        "created_at",
    )
    list_filter = ("enabled", "paused", "visibility", "allowed_follower_modes")
    search_fields = (
        "strategy_name",
        "=account__login",
        "account__customer__name",
        "account__customer__email",
    )
    list_select_related = ("account", "account__customer")
    raw_id_fields = ("account",)
    readonly_fields = ("paused", "paused_reason", "created_at", "updated_at")
    actions = ["pause_selected", "resume_selected"]
    actions_row = ["row_pause", "row_resume"]
    actions_detail = ["row_pause", "row_resume", "detail_live"]

    def has_pause_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(MASTER_PAUSE_PERMISSION)

    def get_inlines(self, request: HttpRequest, obj: Any) -> list:
        # Declared limits, the monitor's reading and the stops (see CopySubscriptionAdmin).
        from risk.admin import MASTER_INLINES

        return [*super().get_inlines(request, obj), *MASTER_INLINES]

    @admin.display(ordering="account__login")
    def login(self, obj: CopyMaster) -> int:
        return obj.account.login

    @admin.display(ordering="account__customer__name")
    def customer(self, obj: CopyMaster) -> str:
        return obj.account.customer.name

    @admin.display(description="live positions")
    def live(self, obj: CopyMaster) -> str:
        return _link(reverse("staff:live-positions-master", args=[obj.pk]), "live")

    def _pause(self, obj: CopyMaster, reason: str, *, request: HttpRequest) -> str:
        master_pause(master=obj, reason=reason, actor=request.user)
        return f"Master {obj} paused: no new copies for any follower."

    def _resume(self, obj: CopyMaster, reason: str, *, request: HttpRequest) -> str:
        master_resume(master=obj, reason=reason, actor=request.user)
        return f"Master {obj} resumed."

    @action(description="Live positions", url_path="live", icon="monitoring")
    def detail_live(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return HttpResponseRedirect(reverse("staff:live-positions-master", args=[object_id]))


# -- followers ---------------------------------------------------------------------------


@admin.register(CopyFollower)
class CopyFollowerAdmin(PauseActionsMixin, SimpleHistoryAdmin, ModelAdmin):
    noun = "follower"
    pause_note = (
        "Every subscription of this follower stops opening copies at once; "
        "closes of what was copied still go through."
    )
    resume_note = "Resumes the paused subscriptions; risk stops stay."
    list_display = (
        "id",
        "login",
        "customer",
        "enabled",
        "manual_trading_mode",
        "max_master_count",
        "paused_subscriptions",
        "live",
    )
    list_filter = ("enabled", "manual_trading_mode")
    search_fields = ("=account__login", "account__customer__name", "account__customer__email")
    list_select_related = ("account", "account__customer")
    raw_id_fields = ("account",)
    readonly_fields = ("created_at", "updated_at")
    actions = ["pause_selected", "resume_selected"]
    actions_row = ["row_pause", "row_resume"]
    actions_detail = ["row_pause", "row_resume", "detail_live", "detail_drift"]

    def has_pause_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(PAUSE_PERMISSION)

    def has_drift_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("copytrading.view_tradelink")

    @admin.display(ordering="account__login")
    def login(self, obj: CopyFollower) -> int:
        return obj.account.login

    @admin.display(ordering="account__customer__name")
    def customer(self, obj: CopyFollower) -> str:
        return obj.account.customer.name

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # One count per page (not per row) of the subscriptions a pause stopped.
        return (
            super()
            .get_queryset(request)
            .annotate(
                paused_count=Count(
                    "subscriptions",
                    filter=Q(
                        subscriptions__status=CopySubscriptionStatus.PAUSED,
                        subscriptions__deleted_at__isnull=True,
                    ),
                )
            )
        )

    @admin.display(description="paused subscriptions", ordering="paused_count")
    def paused_subscriptions(self, obj: CopyFollower) -> int:
        return obj.paused_count  # type: ignore[attr-defined]

    @admin.display(description="live positions")
    def live(self, obj: CopyFollower) -> str:
        return _link(reverse("staff:live-positions-follower", args=[obj.pk]), "live")

    def _pause(self, obj: CopyFollower, reason: str, *, request: HttpRequest) -> str:
        n = follower_pause(follower=obj, reason=reason, actor=request.user)
        return f"Follower #{obj.account.login} paused ({n} subscription(s))."

    def _resume(self, obj: CopyFollower, reason: str, *, request: HttpRequest) -> str:
        n = follower_resume(follower=obj, reason=reason, actor=request.user)
        return f"Follower #{obj.account.login} resumed ({n} subscription(s))."

    @action(description="Live positions", url_path="live", icon="monitoring")
    def detail_live(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return HttpResponseRedirect(reverse("staff:live-positions-follower", args=[object_id]))

    @action(
        description="Drift",
        url_path="drift",
        icon="sync_problem",
        permissions=["drift"],
    )
    def detail_drift(self, request: HttpRequest, object_id: str) -> HttpResponse:
        follower = self.get_object(request, unquote(object_id))
        if follower is None:
            raise Http404
        return HttpResponseRedirect(reverse("staff:drift-account", args=[follower.account_id]))


# -- subscriptions -----------------------------------------------------------------------


@admin.register(CopySubscription)
class CopySubscriptionAdmin(PauseActionsMixin, SimpleHistoryAdmin, ModelAdmin):
    noun = "subscription"
    pause_note = "No new opening copy from the moment this is saved; closes still go through."
    list_display = (
        "id",
        "follower_login",
        "master_login",
        "strategy",
        "enabled",
        "status",
        "sync_status",
        "drift",
        "copy_mode",
        "volume_mode",
        "risk_multiplier",
        "status_changed_at",
    )
    list_filter = ("status", "sync_status", "enabled", "copy_mode", "volume_mode", "symbols_mode")
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
        "sync_status",
        "drift",
        "synced_at",
        "created_at",
        "updated_at",
    )
    actions = ["pause_selected", "resume_selected"]
    actions_row = ["row_pause", "row_resume"]
    actions_detail = [
        "row_pause",
        "row_resume",
        "detail_force_close",
        "detail_resync",
        "detail_live",
    ]
    change_form_template = "admin/copytrading/copysubscription/change_form.html"

    def has_pause_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(PAUSE_PERMISSION)

    def has_remedy_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(REMEDY_PERMISSION)

    def get_inlines(self, request: HttpRequest, obj: Any) -> list:
        # Risk limits, how close each is to firing, and the stops (risk.admin imports this
        # module, so its inlines are named here, late).
        from risk.admin import SUBSCRIPTION_INLINES

        return [*super().get_inlines(request, obj), *SUBSCRIPTION_INLINES]

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

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        # Support sees why trades were (not) copied without access to the engine's rows.
        decisions = (
            CopyInstruction.objects.filter(subscription_id=unquote(object_id))
            .select_related("master_event")
            .order_by("-id")[:20]
            if str(unquote(object_id)).isdigit()
            else []
        )
        extra = {"recent_decisions": decisions, **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra)

    def _pause(self, obj: CopySubscription, reason: str, *, request: HttpRequest) -> str:
        subscription_pause(subscription=obj, reason=reason, actor=request.user)
        return f"Subscription {obj.pk} paused."

    def _resume(self, obj: CopySubscription, reason: str, *, request: HttpRequest) -> str:
        subscription_resume(
            subscription=obj,
            reason=reason,
            actor=request.user,
            clear_risk_stop=request.user.has_perm(CLEAR_RISK_STOP_PERMISSION),
        )
        return f"Subscription {obj.pk} resumed."

    @action(
        description="Force-close all copies",
        url_path="force-close",
        permissions=["remedy"],
        icon="cancel",
    )
    def detail_force_close(self, request: HttpRequest, object_id: str) -> HttpResponse:
        from .services.remedies import force_close_subscription

        def perform(obj: CopySubscription, reason: str) -> str:
            results = force_close_subscription(subscription=obj, reason=reason, actor=request.user)
            sent = sum(1 for r in results if r.instruction_id)
            return (
                f"Force-close of subscription {obj.pk}: {sent} close(s) queued of {len(results)}."
            )

        return self.reason_flow(
            request,
            object_id,
            name="force_close",
            title="Force-close every copied position of this subscription",
            verb="Force-close",
            danger=True,
            note="Closes the follower's copies now at the market; the master's positions are "
            "not touched and copying goes on unless the subscription is paused.",
            perform=perform,
        )

    @action(
        description="Re-sync now",
        url_path="resync",
        permissions=["remedy"],
        icon="sync",
    )
    def detail_resync(self, request: HttpRequest, object_id: str) -> HttpResponse:
        from .services.remedies import subscription_resync

        def perform(obj: CopySubscription, reason: str) -> str:
            result = subscription_resync(subscription=obj, reason=reason, actor=request.user)
            return f"Re-sync of subscription {obj.pk}: {result.message}."

        return self.reason_flow(
            request,
            object_id,
            name="resync",
            title="Re-sync this subscription (reconcile now)",
            verb="Re-sync",
            note="Compares the follower's positions at the venue with its links and repairs "
            "by the subscription's policy, as the periodic reconciliation would.",
            perform=perform,
        )

    @action(description="Live positions", url_path="live", icon="monitoring")
    def detail_live(self, request: HttpRequest, object_id: str) -> HttpResponse:
        sub = self.get_object(request, unquote(object_id))
        if sub is None:
            raise Http404
        return HttpResponseRedirect(
            reverse("staff:live-positions-follower", args=[sub.follower_id])
        )


# -- evidence rows (read-only) -----------------------------------------------------------


class ReadOnlyAdmin(ModelAdmin):
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
class TradeLinkAdmin(StaffActionsMixin, ReadOnlyAdmin):
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
        "lineage",
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
    actions_row = ["row_force_close"]
    actions_detail = ["row_force_close", "detail_lineage"]

    def has_remedy_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(REMEDY_PERMISSION)

    @admin.display(description="lineage")
    def lineage(self, obj: TradeLink) -> str:
        return _link(reverse("staff:lineage-link", args=[obj.pk]), "lineage")

    @action(
        description="Force-close",
        url_path="force-close",
        permissions=["remedy"],
        icon="cancel",
    )
    def row_force_close(self, request: HttpRequest, object_id: str) -> HttpResponse:
        from .services.remedies import force_close_link

        def perform(obj: TradeLink, reason: str) -> str:
            return force_close_link(link=obj, reason=reason, actor=request.user).message

        return self.reason_flow(
            request,
            object_id,
            name="force_close",
            title="Force-close this copied position",
            verb="Force-close",
            danger=True,
            note="Closes the follower's position now at the market; the master's position "
            "is not touched.",
            perform=perform,
        )

    @action(description="Lineage", url_path="lineage", icon="account_tree")
    def detail_lineage(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return HttpResponseRedirect(reverse("staff:lineage-link", args=[object_id]))


class FollowerOrderInline(StackedInline):
    model = FollowerOrder
    extra = 0
    can_delete = False
    readonly_fields = [f.name for f in FollowerOrder._meta.fields]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def checks_html(checks: list[dict[str, Any]]) -> str:
    """The pre-trade check results of a decision, one line each: "MAX_LOTS_TOTAL cut:
    cut_to 0.5, max_lots 1.5, open_lots 1, volume 1"."""
    if not checks:
        return "none (no pre-trade limit applied)"
    return format_html_join(
        mark_safe("<br>"),  # noqa: S308 - a constant
        "<span class='bo-check-{}'><strong>{}</strong> {}{}</span>",
        (
            (
                c.get("outcome", ""),
                c.get("code", ""),
                c.get("outcome", ""),
                ": " + ", ".join(f"{k} {v}" for k, v in sorted((c.get("figures") or {}).items()))
                if c.get("figures")
                else "",
            )
            for c in checks
        ),
    )


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
    readonly_fields = ("pretrade_checks",)

    @admin.display(description="pre-trade checks")
    def pretrade_checks(self, obj: CopyInstruction) -> str:
        return checks_html((obj.decision or {}).get("checks") or [])


class TransitionInline(TabularInline):
    model = FollowerOrderTransition
    extra = 0
    can_delete = False
    readonly_fields = ("status", "at", "venue_ts", "detail")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class FillInline(TabularInline):
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
        "lineage",
    )
    list_filter = ("status", "action", "broker_server")
    search_fields = ("=client_order_id", "=account__login", "=venue_position_id")
    list_select_related = ("account",)
    inlines = [TransitionInline, FillInline]
    show_full_result_count = False
    actions_detail = ["detail_lineage"]

    @admin.display(description="lineage")
    def lineage(self, obj: FollowerOrder) -> str:
        return _link(reverse("staff:lineage-order", args=[obj.pk]), "lineage")

    @action(description="Lineage", url_path="lineage", icon="account_tree")
    def detail_lineage(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return HttpResponseRedirect(reverse("staff:lineage-order", args=[object_id]))


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


@admin.register(StaffRemedy)
class StaffRemedyAdmin(ReadOnlyAdmin):
    """The record of staff remedies: who did what to which position, and why."""

    list_display = (
        "id",
        "kind",
        "follower_account",
        "subscription_id",
        "position_key",
        "actor",
        "reason",
        "outcome",
        "instruction_id",
        "created_at",
    )
    list_filter = ("kind",)
    search_fields = ("=follower_account__login", "=position_key", "actor__username", "reason")
    list_select_related = ("follower_account", "actor")
    date_hierarchy = "created_at"
