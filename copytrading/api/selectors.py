"""Reads of the client API, scoped to one customer in one place.

Each list is one query however many rows it holds: owners' accounts come by
select_related and counts by a correlated subquery evaluated only for the page.
"""

from django.db.models import IntegerField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.aggregates import Count
from django.db.models.functions import Coalesce

from accounts.models import Customer

from ..choices import CopyMasterVisibility, TradeLinkStatus
from ..models import CopyFollower, CopyMaster, CopySubscription, TradeLink

# The spec's trade link status -> the internal ones it stands for.
TRADE_LINK_STATUS_IN = {
    "open": [TradeLinkStatus.OPENING, TradeLinkStatus.PENDING, TradeLinkStatus.OPEN],
    "closed": [TradeLinkStatus.CLOSED],
    "failed": [TradeLinkStatus.FAILED],
    "skipped": [TradeLinkStatus.SKIPPED],
}


def _with_followers_count(queryset: QuerySet[CopyMaster]) -> QuerySet[CopyMaster]:
    live_subscriptions = (
        CopySubscription.objects.filter(master=OuterRef("pk"))
        .order_by()
        .values("master")
        .annotate(n=Count("pk"))
        .values("n")
    )
    from billing.selectors import schedules_prefetch

    return (
        queryset.select_related("account")
        .prefetch_related(schedules_prefetch())
        .annotate(
            followers_count=Coalesce(
                Subquery(live_subscriptions, output_field=IntegerField()), Value(0)
            )
        )
    )


def master_list_visible(*, customer: Customer) -> QuerySet[CopyMaster]:
    """Enabled public masters and every master of the customer (disabled or private too)."""
    visible = Q(enabled=True, visibility=CopyMasterVisibility.PUBLIC) | Q(
        account__customer=customer
    )
    return _with_followers_count(CopyMaster.objects.filter(visible)).order_by("id")


def master_list_owned(*, customer: Customer) -> QuerySet[CopyMaster]:
    return _with_followers_count(CopyMaster.objects.filter(account__customer=customer)).order_by(
        "id"
    )


def master_get(*, pk: int) -> CopyMaster | None:
    """A live master by id, with its account (owner) and follower count; None if absent."""
    return _with_followers_count(CopyMaster.objects.filter(pk=pk)).first()


def follower_list_owned(*, customer: Customer) -> QuerySet[CopyFollower]:
    return (
        CopyFollower.objects.filter(account__customer=customer)
        .select_related("account")
        .order_by("id")
    )


def follower_get(*, pk: int) -> CopyFollower | None:
    return CopyFollower.objects.filter(pk=pk).select_related("account").first()


def subscription_list_touching(*, customer: Customer) -> QuerySet[CopySubscription]:
    """Subscriptions where the customer owns the follower or the master account."""
    return (
        CopySubscription.objects.filter(
            Q(follower_account__customer=customer) | Q(master_account__customer=customer)
        )
        .select_related("follower_account", "master_account")
        .order_by("id")
    )


def subscription_get(*, pk: int) -> CopySubscription | None:
    return (
        CopySubscription.objects.filter(pk=pk)
        .select_related("follower_account", "master_account")
        .first()
    )


def reward_list_touching(*, customer: Customer) -> QuerySet:
    """Fee accruals touching the customer's accounts (billing keeps them)."""
    from billing.selectors import accrual_list_touching

    return accrual_list_touching(customer=customer)


def trade_link_list_touching(
    *,
    customer: Customer,
    status: str | None = None,
    master_login: int | None = None,
    follower_login: int | None = None,
) -> QuerySet[TradeLink]:
    """Links where the customer owns the master or the follower account, filtered."""
    links = TradeLink.objects.filter(
        Q(follower_account__customer=customer) | Q(master_account__customer=customer)
    )
    if status is not None:
        links = links.filter(status__in=TRADE_LINK_STATUS_IN[status])
    if master_login is not None:
        links = links.filter(master_account__login=master_login)
    if follower_login is not None:
        links = links.filter(follower_account__login=follower_login)
    return links.select_related("follower_account", "master_account").order_by("id")
