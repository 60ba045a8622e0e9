"""Reads of the copytrading app, each scoped to what the asking user may see.

Guards: a customer reaches only rows touching its own trading accounts; staff reach
everything their permission allows. Access is decided here, once, so a consumer or a
view cannot widen it by building its own query.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Q

from .choices import TradeLinkStatus
from .models import TradeLink

# Statuses the client API calls "open": a live position, or one being opened.
OPEN_LINK_STATUSES = (TradeLinkStatus.OPENING, TradeLinkStatus.PENDING, TradeLinkStatus.OPEN)

# Staff watching live positions must be allowed to see subscriptions (every staff role
# that looks after copying has it: Operations, Compliance, Support).
LIVE_POSITIONS_STAFF_PERMISSION = "copytrading.view_copysubscription"


@dataclass(frozen=True)
class LiveScope:
    """What a user may watch live: everything (staff), or the links touching these
    trading accounts (a customer's own). `account_ids` is empty for staff."""

    staff: bool
    account_ids: tuple[int, ...] = ()


def live_positions_scope(user: Any) -> LiveScope | None:
    """The live positions `user` may watch, or None when it may watch none (anonymous,
    inactive, staff without the permission, a user that is no customer).

    Staff take precedence over a customer profile on the same user: staff see
    everything already, and joining both would deliver every update twice.
    """
    if user is None or not user.is_authenticated or not user.is_active:
        return None
    if user.is_staff and user.has_perm(LIVE_POSITIONS_STAFF_PERMISSION):
        return LiveScope(staff=True)
    from accounts.models import Customer, TradingAccount

    try:
        customer = user.customer
    except Customer.DoesNotExist:
        return None
    account_ids = TradingAccount.objects.filter(customer=customer).values_list("id", flat=True)
    return LiveScope(staff=False, account_ids=tuple(sorted(account_ids)))


def trade_links_open_for_user(user: Any, limit: int = 200) -> list[TradeLink]:
    """The most recent `limit` open trade links `user` may see (newest first): all of
    them for staff, those whose follower or master account is the customer's own for a
    customer, none for anyone else. Accounts are loaded with the links (logins)."""
    scope = live_positions_scope(user)
    if scope is None:
        return []
    return trade_links_open_in_scope(scope, limit=limit)


def trade_links_open_in_scope(scope: LiveScope, *, limit: int = 200) -> list[TradeLink]:
    """As trade_links_open_for_user, for a scope already decided (the consumer decides it
    once at connect and reuses it, rather than asking the database twice)."""
    links = TradeLink.objects.filter(status__in=OPEN_LINK_STATUSES)
    if not scope.staff:
        if not scope.account_ids:
            return []
        links = links.filter(
            Q(follower_account_id__in=scope.account_ids)
            | Q(master_account_id__in=scope.account_ids)
        )
    return list(links.select_related("master_account", "follower_account").order_by("-id")[:limit])


def trade_links_in_scope(scope: LiveScope) -> Any:
    """Every trade link of the scope (a queryset), for figures computed per link on demand."""
    links = TradeLink.objects.all()
    if scope.staff:
        return links
    return links.filter(
        Q(follower_account_id__in=scope.account_ids) | Q(master_account_id__in=scope.account_ids)
    )
