"""Staff pages of the back office, inside the admin: live positions, copy health, drift
remedies, the kill switch, lineage and configuration history.

Guards: every page goes through the admin site's `admin_view` (staff only, login
redirect) and then checks the one permission it names, answering 403 otherwise; the
pages read through selectors and change nothing but through services
(copytrading.services.remedies, risk.services.kill_switch_set), each with the actor
and a reason. No page holds a transaction across a venue call.
"""

from __future__ import annotations

import csv
import functools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, time
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Model, OuterRef, Q, Subquery
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.safestring import mark_safe

from accounts.models import TradingAccount
from brokers.gateways.errors import GatewayError

from . import dashboards
from .choices import CopyInstructionStatus, MasterEventType, TradeLinkStatus
from .errors import CopyTradingError
from .models import (
    CopyFollower,
    CopyInstruction,
    CopyMaster,
    CopySubscription,
    FollowerOrder,
    MasterEvent,
    StaffRemedy,
    StaffRemedyKind,
    TradeLink,
)
from .prices import link_prices
from .selectors import OPEN_LINK_STATUSES
from .services import remedies
from .services.live import link_payload

LIVE_PERMISSION = "copytrading.view_copysubscription"
HEALTH_PERMISSION = "copytrading.view_copyinstruction"
DRIFT_VIEW_PERMISSION = "copytrading.view_tradelink"
# Remedies trade on a customer's account: Operations (who may change subscriptions).
REMEDY_PERMISSION = "copytrading.change_copysubscription"
LINEAGE_PERMISSION = "copytrading.view_followerorder"
KILL_SWITCH_VIEW_PERMISSION = "risk.view_killswitch"
KILL_SWITCH_CHANGE_PERMISSION = "risk.change_killswitch"
SERVER_SWITCH_VIEW_PERMISSION = "risk.view_serverswitch"
SERVER_SWITCH_CHANGE_PERMISSION = "risk.change_serverswitch"

LIVE_SNAPSHOT_LIMIT = 500


def staff_page(permission: str) -> Callable:
    """Wraps a view: admin login and staff check (the admin site's own), then `permission`."""

    def wrap(view: Callable) -> Callable:
        @functools.wraps(view)
        def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.has_perm(permission):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return admin.site.admin_view(checked)

    return wrap


def render(
    request: HttpRequest, template: str, context: dict[str, Any], *, title: str
) -> TemplateResponse:
    """A template inside the admin's frame (sidebar, header, kill switch banner)."""
    return TemplateResponse(
        request,
        template,
        {**admin.site.each_context(request), "title": title, **context},
    )


# -- every admin page: kill switch banner, dashboard ------------------------------------


def kill_switch_state() -> Any:
    from risk.models import KillSwitch

    return KillSwitch.objects.filter(pk=1).first()


def global_callback(request: HttpRequest) -> dict[str, Any]:
    """Context of every admin page: the kill switch, for the banner shown while it is on
    (one primary-key read: the banner must never show a stale state)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_active or not user.is_staff:
        return {}
    return {"kill_switch": kill_switch_state()}


def dashboard_callback(request: HttpRequest, context: dict[str, Any]) -> dict[str, Any]:
    """The landing dashboard: headline figures for whoever may see them, and the pages
    of each job the user may open."""
    user = request.user
    if user.has_perm(HEALTH_PERMISSION):
        context["overview"] = dashboards.overview()
    context["can_live"] = user.has_perm(LIVE_PERMISSION)
    context["can_health"] = user.has_perm(HEALTH_PERMISSION)
    context["can_drift"] = user.has_perm(DRIFT_VIEW_PERMISSION)
    context["can_history"] = bool(history_models_for(user))
    context["can_kill_switch"] = user.has_perm(KILL_SWITCH_VIEW_PERMISSION)
    return context


# -- live positions ---------------------------------------------------------------------


@dataclass(frozen=True)
class LiveScopeSpec:
    """What one live page shows: all open links, or those of a master or a follower."""

    kind: str  # "all" | "master" | "follower"
    title: str
    subscription_ids: tuple[int, ...] | None  # None: every subscription

    def links(self) -> Any:
        links = TradeLink.objects.filter(status__in=OPEN_LINK_STATUSES)
        if self.subscription_ids is not None:
            links = links.filter(subscription_id__in=self.subscription_ids)
        return links.select_related(
            "master_account", "follower_account", "subscription__master"
        ).order_by("-id")


def _scope(kind: str, pk: int | None) -> LiveScopeSpec:
    if kind == "master":
        master = get_object_or_404(CopyMaster.all_objects.select_related("account"), pk=pk)
        ids = CopySubscription.all_objects.filter(master=master).values_list("id", flat=True)
        return LiveScopeSpec("master", f"Live positions of master {master}", tuple(ids))
    if kind == "follower":
        follower = get_object_or_404(CopyFollower.all_objects.select_related("account"), pk=pk)
        ids = CopySubscription.all_objects.filter(follower=follower).values_list("id", flat=True)
        return LiveScopeSpec(
            "follower",
            f"Live positions of follower #{follower.account.login}",
            tuple(ids),
        )
    return LiveScopeSpec("all", "Live positions", None)


def _row(link: TradeLink) -> dict[str, Any]:
    payload = link_payload(link)
    payload["strategy"] = link.subscription.master.strategy_name
    payload["sync_status"] = link.subscription.sync_status
    return payload


@staff_page(LIVE_PERMISSION)
def live_positions(request: HttpRequest, kind: str = "all", pk: int | None = None) -> HttpResponse:
    """Open positions, updated over the ws/positions/ WebSocket; the first rows are
    rendered here so the page is useful before (and without) the socket."""
    scope = _scope(kind, pk)
    links = list(scope.links()[:LIVE_SNAPSHOT_LIMIT])
    data_url = reverse("staff:live-positions-data") + (f"?{kind}={pk}" if pk else "")
    return render(
        request,
        "admin/copytrading/live_positions.html",
        {
            "rows": [_row(link) for link in links],
            "scope": scope,
            "data_url": data_url,
            "prices_url": reverse("staff:live-positions-prices"),
            "lineage_base": reverse("staff:lineage-link", args=[0]).removesuffix("0/"),
            "subscription_ids": list(scope.subscription_ids or []),
            "limit": LIVE_SNAPSHOT_LIMIT,
        },
        title=scope.title,
    )


@staff_page(LIVE_PERMISSION)
def live_positions_data(request: HttpRequest) -> JsonResponse:
    """A fresh snapshot of one live page's open links (read again on every reconnect)."""
    kind, pk = "all", None
    for candidate in ("master", "follower"):
        if request.GET.get(candidate, "").isdigit():
            kind, pk = candidate, int(request.GET[candidate])
    scope = _scope(kind, pk)
    links = list(scope.links()[:LIVE_SNAPSHOT_LIMIT])
    return JsonResponse(
        {
            "links": [_row(link) for link in links],
            "subscription_ids": list(scope.subscription_ids or []),
            "at": timezone.now().isoformat(),
        }
    )


@staff_page(LIVE_PERMISSION)
def live_positions_prices(request: HttpRequest) -> JsonResponse:
    """Live price and floating P&L of the given open links (`?links=1,2,3`): the page's
    fallback while its WebSocket is down (the socket pushes the same figures)."""
    ids = [int(x) for x in request.GET.get("links", "").split(",") if x.strip().isdigit()]
    return JsonResponse({"prices": link_prices(ids), "at": timezone.now().isoformat()})


# -- copy health ------------------------------------------------------------------------


@staff_page(HEALTH_PERMISSION)
def copy_health(request: HttpRequest) -> HttpResponse:
    """Latency, slippage, fill rate, skips, rejections, errors, listeners and drift."""
    window = request.GET.get("window", "1h")
    health = dashboards.copy_health(window=window)
    return render(
        request,
        "admin/copytrading/copy_health.html",
        {
            "health": health,
            "windows": list(dashboards.WINDOWS),
            "latency_chart": mark_safe(dashboards.sparkline_svg(health.latency_series)),  # noqa: S308 - numbers only
            "volume_chart": mark_safe(dashboards.sparkline_svg(health.volume_series)),  # noqa: S308 - numbers only
        },
        title="Copy health",
    )


# -- drift and remedies -----------------------------------------------------------------


class ReasonForm(forms.Form):
    """The reason every staff action asks for, in the same click flow."""

    reason = forms.CharField(
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "Why (kept in the record)"}),
    )


@dataclass(frozen=True)
class DriftItem:
    """One position the back office did not expect, or a master position without copy."""

    kind: str  # "orphan" | "unmanaged" | "missing"
    position_key: str
    subscription: CopySubscription | None
    link: TradeLink | None
    follower_position_id: str
    master_position_id: str
    symbol: str
    side: str
    volume: Decimal | None
    detail: str

    @property
    def remedies(self) -> list[str]:
        if self.kind == "missing":
            return ["reopen", "dismiss"]
        return ["close", "adopt", "dismiss"]


def drift_items(account: TradingAccount) -> tuple[list[DriftItem], str | None]:
    """What drifts on one follower account now: the venue's positions against its links
    and the masters' open positions (a venue call: outside any transaction). Dismissed
    positions are left out. Returns (items, error message if the venue did not answer)."""
    from .listeners import open_positions_from_events

    try:
        positions = remedies.venue_positions(account)
    except GatewayError as exc:
        return [], f"The venue did not answer: {exc}"
    dismissed = set(
        StaffRemedy.objects.filter(
            follower_account=account, kind=StaffRemedyKind.DRIFT_DISMISS
        ).values_list("position_key", flat=True)
    )
    subs = list(CopySubscription.objects.filter(follower_account=account).select_related("master"))
    links = list(TradeLink.objects.filter(follower_account=account).order_by("id"))
    live_links = {
        link.follower_position_id: link
        for link in links
        if link.status in (TradeLinkStatus.OPEN, TradeLinkStatus.OPENING)
        and link.follower_position_id
    }
    master_open = {
        s.master_account_id: open_positions_from_events(s.master_account_id) for s in subs
    }
    subs_by_id = {s.id: s for s in subs}
    items: list[DriftItem] = []
    for p in positions:
        key = f"f:{p.position_id}"
        if key in dismissed:
            continue
        link = live_links.get(p.position_id)
        if link is None:
            items.append(
                DriftItem(
                    "unmanaged",
                    key,
                    None,
                    None,
                    p.position_id,
                    "",
                    p.symbol,
                    str(p.side),
                    p.volume,
                    "not opened by the back office, or its link was lost",
                )
            )
        elif link.master_position_id not in master_open.get(link.master_account_id, {}):
            items.append(
                DriftItem(
                    "orphan",
                    key,
                    subs_by_id.get(link.subscription_id),
                    link,
                    p.position_id,
                    link.master_position_id,
                    p.symbol,
                    str(p.side),
                    p.volume,
                    f"master position {link.master_position_id} is closed",
                )
            )
    held = {p.position_id for p in positions}
    covered: set[tuple[int, str]] = set()
    for link in links:
        sub = subs_by_id.get(link.subscription_id)
        if sub is None or not link.master_position_id:
            continue
        if link.master_position_id not in master_open.get(link.master_account_id, {}):
            continue
        alive = link.status in OPEN_LINK_STATUSES and (
            link.status != TradeLinkStatus.OPEN or link.follower_position_id in held
        )
        covered.add((sub.id, link.master_position_id))
        if alive or f"m:{link.master_position_id}" in dismissed:
            continue
        items.append(
            DriftItem(
                "missing",
                f"m:{link.master_position_id}",
                sub,
                link,
                link.follower_position_id,
                link.master_position_id,
                link.symbol,
                link.side,
                link.follower_volume,
                f"copy {link.status}: {link.reason or 'no position at the venue'}",
            )
        )
    # Master positions whose copy was decided against (skipped), with no link at all.
    skipped = CopyInstruction.objects.filter(
        subscription__in=subs,
        status=CopyInstructionStatus.SKIPPED,
        master_event__event_type=MasterEventType.POSITION_OPENED,
    ).select_related("master_event")
    for inst in skipped:
        sub = subs_by_id[inst.subscription_id]
        mpid = inst.master_event.master_position_id
        if (sub.id, mpid) in covered or f"m:{mpid}" in dismissed:
            continue
        if mpid not in master_open.get(sub.master_account_id, {}):
            continue
        covered.add((sub.id, mpid))
        items.append(
            DriftItem(
                "missing",
                f"m:{mpid}",
                sub,
                None,
                "",
                mpid,
                inst.master_event.symbol,
                inst.master_event.side,
                inst.master_event.volume,
                f"copy skipped: {inst.reason}",
            )
        )
    # Master positions never decided for a subscription (opened before it subscribed).
    never = {
        (sub.id, mpid)
        for sub in subs
        for mpid in master_open.get(sub.master_account_id, {})
        if (sub.id, mpid) not in covered and f"m:{mpid}" not in dismissed
    }
    if never:
        openings = {
            (e.account_id, e.master_position_id): e
            for e in MasterEvent.objects.filter(
                account_id__in={sub.master_account_id for sub in subs},
                event_type=MasterEventType.POSITION_OPENED,
                master_position_id__in={mpid for _sid, mpid in never},
            )
        }
        for sub_id, mpid in sorted(never):
            sub = subs_by_id[sub_id]
            opening = openings.get((sub.master_account_id, mpid))
            state = master_open[sub.master_account_id][mpid]
            items.append(
                DriftItem(
                    "missing",
                    f"m:{mpid}",
                    sub,
                    None,
                    "",
                    mpid,
                    opening.symbol if opening else "",
                    opening.side if opening else "",
                    state.get("volume"),
                    "never copied: opened before this subscription",
                )
            )
    return items, None


@staff_page(DRIFT_VIEW_PERMISSION)
def drift(request: HttpRequest) -> HttpResponse:
    """Drifting subscriptions (from the last reconciliation), each to its account's page."""
    return render(
        request,
        "admin/copytrading/drift.html",
        {"drifting": dashboards.drifting_subscriptions()},
        title="Drift",
    )


class AdoptForm(ReasonForm):
    master_position_id = forms.CharField(max_length=64)
    subscription = forms.IntegerField()


@staff_page(DRIFT_VIEW_PERMISSION)
def drift_account(request: HttpRequest, account_id: int) -> HttpResponse:
    """One follower account's drift, with a remedy per item (close, adopt, re-open or
    dismiss), each with a reason; remedies need the remedy permission."""
    account = get_object_or_404(
        TradingAccount.objects.select_related("broker_server"), pk=account_id
    )
    can_remedy = request.user.has_perm(REMEDY_PERMISSION)
    if request.method == "POST":
        if not can_remedy:
            raise PermissionDenied
        return _drift_remedy(request, account)
    items, error = drift_items(account)
    subs = list(CopySubscription.objects.filter(follower_account=account).select_related("master"))
    recent = StaffRemedy.objects.filter(follower_account=account).select_related("actor")[:20]
    return render(
        request,
        "admin/copytrading/drift_account.html",
        {
            "account": account,
            "items": items,
            "error": error,
            "subscriptions": subs,
            "can_remedy": can_remedy,
            "recent": recent,
            "form": ReasonForm(),
        },
        title=f"Drift of account #{account.login}",
    )


def _drift_remedy(request: HttpRequest, account: TradingAccount) -> HttpResponse:
    remedy = request.POST.get("remedy", "")
    form = (AdoptForm if remedy == "adopt" else ReasonForm)(request.POST)
    back = reverse("staff:drift-account", args=[account.pk])
    if not form.is_valid():
        messages.error(request, "A reason is required (and, to adopt, a master position).")
        return HttpResponseRedirect(back)
    reason = form.cleaned_data["reason"]
    position_key = request.POST.get("position_key", "")
    sub_id = request.POST.get("subscription", "")
    sub = (
        CopySubscription.all_objects.filter(pk=int(sub_id), follower_account=account).first()
        if sub_id.isdigit()
        else None
    )
    try:
        if remedy == "close" and position_key.startswith("f:"):
            result = remedies.drift_close(
                account=account,
                position_id=position_key[2:],
                reason=reason,
                actor=request.user,
                subscription=sub,
            )
        elif remedy == "adopt" and position_key.startswith("f:") and sub is not None:
            result = remedies.drift_adopt(
                account=account,
                position_id=position_key[2:],
                subscription=sub,
                master_position_id=form.cleaned_data["master_position_id"].strip(),
                reason=reason,
                actor=request.user,
            )
        elif remedy == "reopen" and position_key.startswith("m:") and sub is not None:
            result = remedies.drift_reopen(
                subscription=sub,
                master_position_id=position_key[2:],
                reason=reason,
                actor=request.user,
            )
        elif remedy == "dismiss":
            result = remedies.drift_dismiss(
                account=account,
                position_key=position_key,
                reason=reason,
                actor=request.user,
                subscription=sub,
            )
        else:
            messages.error(request, "Unknown remedy for this item.")
            return HttpResponseRedirect(back)
    except (CopyTradingError, GatewayError) as exc:
        messages.error(request, str(exc))
        return HttpResponseRedirect(back)
    messages.success(request, f"{result.remedy.get_kind_display()}: {result.message}")
    return HttpResponseRedirect(back)


# -- kill switch ------------------------------------------------------------------------


@staff_page(KILL_SWITCH_VIEW_PERMISSION)
def kill_switch(request: HttpRequest) -> HttpResponse:
    """The platform-wide kill switch: its state, and a toggle with a reason."""
    from risk.services import kill_switch_set

    can_change = request.user.has_perm(KILL_SWITCH_CHANGE_PERMISSION)
    switch = kill_switch_state()
    form = ReasonForm(request.POST or None)
    if request.method == "POST":
        if not can_change:
            raise PermissionDenied
        if form.is_valid():
            active = request.POST.get("active") == "1"
            kill_switch_set(active=active, reason=form.cleaned_data["reason"], actor=request.user)
            messages.warning(
                request,
                "Kill switch ON: no new opening order is sent anywhere."
                if active
                else "Kill switch off: copying opens positions again.",
            )
            return HttpResponseRedirect(reverse("staff:kill-switch"))
    history = []
    if request.user.has_perm("risk.view_historicalkillswitch"):
        from risk.models import KillSwitch

        history = list(
            KillSwitch.history.select_related("history_user").order_by("-history_id")[:20]
        )
    return render(
        request,
        "admin/risk/killswitch/toggle.html",
        {"switch": switch, "form": form, "can_change": can_change, "history": history},
        title="Kill switch",
    )


@staff_page(SERVER_SWITCH_VIEW_PERMISSION)
def server_switches(request: HttpRequest) -> HttpResponse:
    """The switch of every broker server: its state, a toggle with a reason, its history."""
    from brokers.models import BrokerServer
    from risk.models import ServerSwitch

    switches = {s.broker_server_id: s for s in ServerSwitch.objects.select_related("changed_by")}
    servers = [
        (server, switches.get(server.pk)) for server in BrokerServer.objects.order_by("name")
    ]
    history = []
    if request.user.has_perm("risk.view_historicalserverswitch"):
        history = list(
            ServerSwitch.history.select_related("history_user", "broker_server").order_by(
                "-history_id"
            )[:30]
        )
    return render(
        request,
        "admin/risk/serverswitch/switches.html",
        {
            "servers": servers,
            "can_change": request.user.has_perm(SERVER_SWITCH_CHANGE_PERMISSION),
            "history": history,
        },
        title="Server switches",
    )


@staff_page(SERVER_SWITCH_CHANGE_PERMISSION)
def server_switch_toggle(request: HttpRequest, server_id: int) -> HttpResponse:
    """Turns one server's switch on (`active` 1) or off, with a reason; back to the page."""
    from brokers.models import BrokerServer
    from risk.services import server_switch_set

    back = HttpResponseRedirect(reverse("staff:server-switches"))
    server = get_object_or_404(BrokerServer, pk=server_id)
    form = ReasonForm(request.POST or None)
    if request.method != "POST":
        return back
    if not form.is_valid():
        messages.error(request, "A reason is required to change a server switch.")
        return back
    active = request.POST.get("active") == "1"
    server_switch_set(
        server=server, active=active, reason=form.cleaned_data["reason"], actor=request.user
    )
    messages.warning(
        request,
        f"{server}: switch ON, no new opening order for its followers or from its masters."
        if active
        else f"{server}: switch off, copying opens positions again.",
    )
    return back


# -- lineage ----------------------------------------------------------------------------


@dataclass
class Lineage:
    """Everything behind one follower trade, in pipeline order."""

    order: FollowerOrder | None
    instruction: CopyInstruction | None
    event: MasterEvent | None
    link: TradeLink | None
    transitions: list[Any]
    fills: list[Any]
    other_orders: list[FollowerOrder]
    remedies: list[StaffRemedy]
    fees: list[Any]

    @property
    def inputs(self) -> dict[str, Any]:
        if self.instruction is None:
            return {}
        shared = (self.event.decision_context or {}) if self.event else {}
        return {**shared, **self.instruction.inputs}

    @property
    def checks(self) -> str:
        """The pre-trade check results of the instruction's decision, as the admin shows them."""
        from .admin import checks_html

        if self.instruction is None:
            return ""
        return checks_html((self.instruction.decision or {}).get("checks") or [])

    @property
    def raw_json(self) -> str:
        return _pretty(self.event.raw) if self.event else ""

    @property
    def decision_json(self) -> str:
        return _pretty(self.instruction.decision) if self.instruction else ""

    @property
    def inputs_json(self) -> str:
        return _pretty(self.inputs)


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def lineage_of_order(order: FollowerOrder) -> Lineage:
    """The lineage of one follower order: event, instruction, states, fills, link, fees."""
    inst = order.instruction
    link = inst.trade_link
    other = []
    if link is not None:
        other = list(
            FollowerOrder.objects.filter(instruction__trade_link=link)
            .exclude(pk=order.pk)
            .select_related("instruction")
            .order_by("id")
        )
    return Lineage(
        order=order,
        instruction=inst,
        event=inst.master_event,
        link=link,
        transitions=list(order.transitions.order_by("id")),
        fills=list(order.fills.order_by("id")),
        other_orders=other,
        remedies=list(
            StaffRemedy.objects.filter(
                Q(instruction=inst) | Q(trade_link=link) if link else Q(instruction=inst)
            )
            .select_related("actor")
            .order_by("id")
        ),
        fees=_fees(inst.subscription_id),
    )


def _fees(subscription_id: int) -> list[Any]:
    """Step 6: the fees of the trade's subscription (billing)."""
    from billing.staff_views import fees_of_subscription

    return fees_of_subscription(subscription_id)


def _order_for_link(link: TradeLink) -> FollowerOrder | None:
    return (
        FollowerOrder.objects.filter(instruction__trade_link=link)
        .select_related("instruction__master_event", "instruction__trade_link")
        .order_by("id")
        .first()
    )


@staff_page(LINEAGE_PERMISSION)
def lineage_order(request: HttpRequest, order_id: int) -> HttpResponse:
    order = get_object_or_404(
        FollowerOrder.objects.select_related(
            "instruction__master_event", "instruction__trade_link", "account"
        ),
        pk=order_id,
    )
    return _lineage_page(request, lineage_of_order(order), f"Lineage of order {order}")


@staff_page(LINEAGE_PERMISSION)
def lineage_link(request: HttpRequest, link_id: int) -> HttpResponse:
    link = get_object_or_404(TradeLink, pk=link_id)
    order = _order_for_link(link)
    if order is None:
        lineage = Lineage(None, None, None, link, [], [], [], [], _fees(link.subscription_id))
        first = (
            CopyInstruction.objects.filter(trade_link=link)
            .select_related("master_event")
            .order_by("id")
            .first()
        )
        if first is not None:
            lineage.instruction, lineage.event = first, first.master_event
    else:
        lineage = lineage_of_order(order)
    return _lineage_page(request, lineage, f"Lineage of trade link {link.id}")


def lineage_fee(request: HttpRequest, fee_id: int) -> HttpResponse:
    """The lineage of one fee accrual: billing's page (its own permission check)."""
    from billing.staff_views import fee_lineage

    return fee_lineage(request, fee_id)


def _lineage_page(request: HttpRequest, lineage: Lineage, title: str) -> HttpResponse:
    return render(
        request,
        "admin/copytrading/lineage.html",
        {"lineage": lineage, "inputs": lineage.inputs},
        title=title,
    )


# -- configuration history ---------------------------------------------------------------


def history_models_for(user: Any) -> list[type[Model]]:
    """Audited models (django-simple-history) whose history `user` may read."""
    from simple_history.models import registered_models

    found = []
    for model in registered_models.values():
        opts = model._meta
        if opts.app_label not in ("accounts", "brokers", "copytrading", "risk", "billing"):
            continue
        history = model.history.model
        if user.has_perm(f"{opts.app_label}.view_{history._meta.model_name}"):
            found.append(model)
    return sorted(found, key=lambda m: (m._meta.app_label, m._meta.model_name))


class HistoryFilter(forms.Form):
    user = forms.ModelChoiceField(queryset=None, required=False, empty_label="anyone")
    model = forms.ChoiceField(required=False)
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args: Any, models: list[type[Model]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["user"].queryset = (
            get_user_model().objects.filter(is_staff=True).order_by("username")
        )
        self.fields["model"].choices = [("", "every model")] + [
            (m._meta.label_lower, f"{m._meta.app_label} / {m._meta.verbose_name}") for m in models
        ]


@dataclass
class HistoryEntry:
    """One history row with its field-by-field change against the row before it."""

    model: type[Model]
    record: Any
    changes: list[tuple[str, Any, Any]]

    @property
    def kind(self) -> str:
        return {"+": "created", "~": "changed", "-": "deleted"}.get(self.record.history_type, "?")

    @property
    def label(self) -> str:
        return self.model._meta.label_lower


def _tracked_fields(history_model: type[Model]) -> list[str]:
    return [
        f.attname
        for f in history_model._meta.concrete_fields
        if not f.name.startswith("history_") and f.name != "id"
    ]


def history_entries(
    *,
    models: list[type[Model]],
    user_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 200,
) -> list[HistoryEntry]:
    """The newest history rows of `models` (filtered by who and when), each with its diff
    against the object's previous row: two queries per model, whatever the page size."""
    entries: list[HistoryEntry] = []
    for model in models:
        hist = model.history.model
        rows = hist.objects.all()
        if user_id is not None:
            rows = rows.filter(history_user_id=user_id)
        if since is not None:
            rows = rows.filter(history_date__gte=since)
        if until is not None:
            rows = rows.filter(history_date__lt=until)
        previous = hist.objects.filter(
            id=OuterRef("id"), history_id__lt=OuterRef("history_id")
        ).order_by("-history_id")
        rows = list(
            rows.annotate(prev_history_id=Subquery(previous.values("history_id")[:1]))
            .select_related("history_user")
            .order_by("-history_date", "-history_id")[:limit]
        )
        prev_ids = [r.prev_history_id for r in rows if r.prev_history_id]
        prevs = {p.history_id: p for p in hist.objects.filter(history_id__in=prev_ids)}
        fields = _tracked_fields(hist)
        for row in rows:
            prev = prevs.get(row.prev_history_id)
            if prev is None:
                changes = [
                    (f, None, getattr(row, f)) for f in fields if getattr(row, f) not in ("", None)
                ]
            else:
                changes = [
                    (f, getattr(prev, f), getattr(row, f))
                    for f in fields
                    if getattr(prev, f) != getattr(row, f)
                ]
            entries.append(HistoryEntry(model, row, changes))
    entries.sort(key=lambda e: (e.record.history_date, e.record.history_id), reverse=True)
    return entries[:limit]


def _history_query(request: HttpRequest) -> tuple[HistoryFilter, list[HistoryEntry], list]:
    models = history_models_for(request.user)
    if not models:
        raise PermissionDenied
    form = HistoryFilter(request.GET or None, models=models)
    chosen = models
    user_id = since = until = None
    if form.is_valid():
        data = form.cleaned_data
        if data.get("model"):
            chosen = [m for m in models if m._meta.label_lower == data["model"]]
        if data.get("user"):
            user_id = data["user"].pk
        tz = timezone.get_current_timezone()
        if data.get("since"):
            since = datetime.combine(data["since"], time.min, tzinfo=tz)
        if data.get("until"):
            until = datetime.combine(data["until"], time.max, tzinfo=tz)
    return form, chosen, [user_id, since, until]


@admin.site.admin_view
def history(request: HttpRequest) -> HttpResponse:
    """Every configuration change with who, when, why and a field-by-field diff; filter by
    user, model and date; `?format=csv` exports the filtered rows."""
    form, chosen, (user_id, since, until) = _history_query(request)
    if request.GET.get("format") == "csv":
        entries = history_entries(
            models=chosen, user_id=user_id, since=since, until=until, limit=10000
        )
        return _history_csv(entries)
    entries = history_entries(models=chosen, user_id=user_id, since=since, until=until)
    query = request.GET.copy()
    query["format"] = "csv"
    return render(
        request,
        "admin/copytrading/history.html",
        {"form": form, "entries": entries, "csv_query": query.urlencode()},
        title="Configuration history",
    )


class _Echo:
    def write(self, value: str) -> str:
        return value


def _history_csv(entries: list[HistoryEntry]) -> StreamingHttpResponse:
    writer = csv.writer(_Echo())

    def rows() -> Iterator[str]:
        yield writer.writerow(
            [
                "when",
                "user",
                "model",
                "object id",
                "object",
                "kind",
                "reason",
                "field",
                "old",
                "new",
            ]
        )
        for e in entries:
            r = e.record
            base = [
                r.history_date.isoformat(),
                r.history_user.get_username() if r.history_user else "system",
                e.label,
                r.id,
                str(r),
                e.kind,
                r.history_change_reason or "",
            ]
            if not e.changes:
                yield writer.writerow([*base, "", "", ""])
            for field_name, old, new in e.changes:
                yield writer.writerow([*base, field_name, _csv_value(old), _csv_value(new)])

    response = StreamingHttpResponse(rows(), content_type="text/csv")
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="history-{stamp}.csv"'
    return response


def _csv_value(value: Any) -> str:
    text = "" if value is None else str(value)
    # A cell starting with = + - @ is a formula to a spreadsheet: quote it as text.
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


urlpatterns = [
    path("positions/", live_positions, name="live-positions"),
    path("positions/data/", live_positions_data, name="live-positions-data"),
    path("positions/prices/", live_positions_prices, name="live-positions-prices"),
    path(
        "positions/master/<int:pk>/",
        live_positions,
        {"kind": "master"},
        name="live-positions-master",
    ),
    path(
        "positions/follower/<int:pk>/",
        live_positions,
        {"kind": "follower"},
        name="live-positions-follower",
    ),
    path("health/", copy_health, name="copy-health"),
    path("drift/", drift, name="drift"),
    path("drift/<int:account_id>/", drift_account, name="drift-account"),
    path("kill-switch/", kill_switch, name="kill-switch"),
    path("server-switches/", server_switches, name="server-switches"),
    path("server-switches/<int:server_id>/", server_switch_toggle, name="server-switch-toggle"),
    path("lineage/order/<int:order_id>/", lineage_order, name="lineage-order"),
    path("lineage/link/<int:link_id>/", lineage_link, name="lineage-link"),
    path("lineage/fee/<int:fee_id>/", lineage_fee, name="lineage-fee"),
    path("history/", history, name="history"),
]
