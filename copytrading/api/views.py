"""Endpoints of spec/client-api.md under /copytrade/.

Every write goes through copytrading.services with the customer's user as the actor
(so history names it); ownership comes from the session only. Views resolve logins
to the customer's own accounts, check record ownership (404 NOT_FOUND when there is
no such live record, 403 PERMISSION_DENIED when it is another customer's), validate
the body strictly, and leave the rules to the services.
"""

from typing import Any

from django.db import transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import status as http
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import Customer, TradingAccount

from ..choices import CopySubscriptionStatus
from ..errors import CopyTradingError
from ..models import CopyFollower, CopyMaster, CopySubscription
from ..services import (
    follower_create,
    follower_delete,
    follower_update,
    master_create,
    master_delete,
    master_is_available,
    master_update,
    subscription_create,
    subscription_delete,
    subscription_pause,
    subscription_resume,
    subscription_update,
)
from . import selectors
from .base import ClientApiView
from .errors import ApiError
from .fields import MAX_BIGINT
from .pagination import MAX_OFFSET, page_bounds, paginate
from .schema import error_responses
from .serializers import (
    TRADE_LINK_STATUSES,
    FollowerCreateSerializer,
    FollowerSerializer,
    FollowerUpdateSerializer,
    MasterCreateSerializer,
    MasterSerializer,
    MasterUpdateSerializer,
    MySerializer,
    RewardAccrualSerializer,
    SubscriptionCreateSerializer,
    SubscriptionSerializer,
    SubscriptionUpdateSerializer,
    TradeLinkSerializer,
)

# The reason history and the subscription show for a customer's own pause or resume.
CUSTOMER_REASON = "customer via API"

PAGE_PARAMETERS = [
    OpenApiParameter(
        "limit",
        {"type": "integer", "minimum": 1},
        description="Rows per page (default 100; more than 1000 is cut to 1000).",
    ),
    OpenApiParameter(
        "offset",
        {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
        description="Rows to skip (default 0).",
    ),
]
LOGIN_FILTER = {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_BIGINT}
ID_PARAMETER = OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH)
FLAG_FIELDS = {
    "enabled",
    "manual_trading_mode",
}


def _validated(serializer_class: type, data: dict[str, Any]) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _record_id(raw: str) -> int:
    # Ids travel as path text; anything but a positive bigint cannot name a record.
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_BIGINT:
        raise ApiError("NOT_FOUND", "No such record.")
    return int(raw)


def _fixed_after_create(changed: list[str]) -> None:
    if changed:
        raise ApiError(
            "VALIDATION_ERROR",
            "Fixed after create: " + ", ".join(changed) + ".",
            fields={name: ["is fixed after create; it cannot change"] for name in changed},
        )


def _customer_account(customer: Customer, login: int, *, field: str) -> TradingAccount:
    """The customer's account with this login; INVALID_ACCOUNT whether another customer's
    account has that login or none does (the answer must not tell them apart)."""
    accounts = list(TradingAccount.objects.filter(customer=customer, login=login)[:2])
    if not accounts:
        raise CopyTradingError(
            f"Account {login} is not a trading account of yours.", code="INVALID_ACCOUNT"
        )
    if len(accounts) > 1:
        # The same login on two broker servers of this customer: the spec's payloads
        # name accounts by login only, so refuse rather than guess.
        raise ApiError(
            "VALIDATION_ERROR",
            f"{field}: {login} names accounts on several broker servers.",
            fields={field: ["names accounts on several broker servers"]},
        )
    return accounts[0]


def _master_account(customer: Customer, login: int, follower: TradingAccount) -> TradingAccount:
    """The account behind `master_login`. Logins are unique per broker server only, so
    among several masters with that login the one available to the customer wins, then
    the one on the follower's server. With no master profile at all, an account with the
    login (if any) goes to the service, which answers in its own order of checks."""
    masters = list(CopyMaster.objects.select_related("account").filter(account__login=login))
    if len(masters) > 1:
        available = [m for m in masters if master_is_available(master=m, customer=customer)]
        same_server = [
            m for m in available if m.account.broker_server_id == follower.broker_server_id
        ]
        for candidates in (same_server, available):
            if len(candidates) == 1:
                return candidates[0].account
        if available:
            raise ApiError(
                "VALIDATION_ERROR",
                f"master_login: {login} names masters on several broker servers.",
                fields={"master_login": ["names masters on several broker servers"]},
            )
        return masters[0].account
    if masters:
        return masters[0].account
    account = TradingAccount.objects.filter(login=login).order_by("pk").first()
    if account is not None:
        return account
    if not CopyFollower.objects.filter(account=follower).exists():
        raise CopyTradingError(
            f"Account {follower.login} has no follower profile.", code="FOLLOWER_NOT_FOUND"
        )
    raise CopyTradingError(f"Account {login} has no master profile.", code="MASTER_NOT_FOUND")


def _flags_to_bool(values: dict[str, Any]) -> dict[str, Any]:
    return {k: bool(v) if k in FLAG_FIELDS else v for k, v in values.items()}


# Lists -----------------------------------------------------------------------


class MasterListApi(ClientApiView):
    @extend_schema(
        operation_id="masters_list",
        summary="Public enabled masters plus the customer's own masters",
        parameters=PAGE_PARAMETERS,
        responses={200: MasterSerializer(many=True), **error_responses("VALIDATION_ERROR")},
    )
    def get(self, request: Request) -> Response:
        masters = paginate(selectors.master_list_visible(customer=self.customer(request)), request)
        return Response(MasterSerializer(masters, many=True).data)


class MyApi(ClientApiView):
    @extend_schema(
        operation_id="my",
        summary="The customer's masters, followers and the subscriptions touching them",
        description="Each of the three lists takes the same `limit` and `offset`.",
        parameters=PAGE_PARAMETERS,
        responses={200: MySerializer, **error_responses("VALIDATION_ERROR")},
    )
    def get(self, request: Request) -> Response:
        customer = self.customer(request)
        offset, limit = page_bounds(request)
        window = slice(offset, offset + limit)
        body = {
            "masters": selectors.master_list_owned(customer=customer)[window],
            "followers": selectors.follower_list_owned(customer=customer)[window],
            "subscriptions": selectors.subscription_list_touching(customer=customer)[window],
        }
        return Response(MySerializer(body).data)


class TradeLinkListApi(ClientApiView):
    @extend_schema(
        operation_id="trade_links_list",
        summary="Trade links touching the customer's accounts",
        parameters=[
            *PAGE_PARAMETERS,
            OpenApiParameter("status", OpenApiTypes.STR, enum=TRADE_LINK_STATUSES),
            OpenApiParameter("master_login", LOGIN_FILTER),
            OpenApiParameter("follower_login", LOGIN_FILTER),
        ],
        responses={200: TradeLinkSerializer(many=True), **error_responses("VALIDATION_ERROR")},
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        errors: dict[str, list[str]] = {}
        status = params.get("status") or None
        if status is not None and status not in TRADE_LINK_STATUSES:
            errors["status"] = [f"must be one of {TRADE_LINK_STATUSES}"]
        logins: dict[str, int | None] = {}
        for name in ("master_login", "follower_login"):
            raw = params.get(name) or None
            if raw is not None and not (
                raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_BIGINT
            ):
                errors[name] = ["must be a positive integer"]
            logins[name] = int(raw) if raw is not None and name not in errors else None
        if errors:
            raise ApiError("VALIDATION_ERROR", "Invalid filter.", fields=errors)
        links = selectors.trade_link_list_touching(
            customer=self.customer(request), status=status, **logins
        )
        return Response(TradeLinkSerializer(paginate(links, request), many=True).data)


class RewardListApi(ClientApiView):
    @extend_schema(
        operation_id="rewards_list",
        summary="Reward (fee) accruals touching the customer's accounts",
        description="A master's owner sees what it earns, a follower's owner what it pays.",
        parameters=PAGE_PARAMETERS,
        responses={200: RewardAccrualSerializer(many=True), **error_responses("VALIDATION_ERROR")},
    )
    def get(self, request: Request) -> Response:
        rewards = selectors.reward_list_touching(customer=self.customer(request))
        return Response(RewardAccrualSerializer(paginate(rewards, request), many=True).data)


# Masters ---------------------------------------------------------------------

MASTER_EXAMPLE = OpenApiExample(
    "Master",
    value={
        "login": 100001,
        "enabled": 1,
        "strategy_name": "Conservative FX",
        "description": "Low risk major pairs strategy",
        "visibility": "public",
        "allowed_follower_modes": 3,
    },
    request_only=True,
)


class MasterCreateApi(ClientApiView):
    @extend_schema(
        operation_id="master_create",
        summary="Create a master profile for a customer-owned account",
        request=MasterCreateSerializer,
        examples=[MASTER_EXAMPLE],
        responses={
            201: MasterSerializer,
            **error_responses("VALIDATION_ERROR", "INVALID_ACCOUNT", "ALREADY_EXISTS"),
        },
    )
    def post(self, request: Request) -> Response:
        customer = self.customer(request)
        data = _validated(MasterCreateSerializer, self.body(request))
        account = _customer_account(customer, data.pop("login"), field="login")
        master = master_create(
            account=account, customer=customer, actor=request.user, **_flags_to_bool(data)
        )
        return Response(
            MasterSerializer(selectors.master_get(pk=master.pk)).data, status=http.HTTP_201_CREATED
        )


class MasterDetailApi(ClientApiView):
    def _owned(self, request: Request, raw_id: str) -> CopyMaster:
        master = selectors.master_get(pk=_record_id(raw_id))
        if master is None:
            raise ApiError("NOT_FOUND", "No such master profile.")
        if master.account.customer_id != self.customer(request).pk:
            raise ApiError("PERMISSION_DENIED", "This master profile is not yours.")
        return master

    @extend_schema(
        operation_id="master_update",
        summary="Update a customer-owned master profile (partial body)",
        parameters=[ID_PARAMETER],
        request=MasterUpdateSerializer,
        responses={
            200: MasterSerializer,
            **error_responses("VALIDATION_ERROR", "PERMISSION_DENIED", "NOT_FOUND"),
        },
    )
    def put(self, request: Request, id: str) -> Response:  # noqa: A002 - the spec's name
        master = self._owned(request, id)
        data = _validated(MasterUpdateSerializer, self.body(request))
        login = data.pop("login", None)
        _fixed_after_create(
            ["login"] if login is not None and login != master.account.login else []
        )
        if data:
            master_update(master=master, values=_flags_to_bool(data), actor=request.user)
        return Response(MasterSerializer(selectors.master_get(pk=master.pk)).data)

    @extend_schema(
        operation_id="master_delete",
        summary="Delete a customer-owned master profile (and the subscriptions to it)",
        parameters=[ID_PARAMETER],
        request=None,
        responses={204: None, **error_responses("PERMISSION_DENIED", "NOT_FOUND")},
    )
    def delete(self, request: Request, id: str) -> Response:  # noqa: A002
        master_delete(master=self._owned(request, id), actor=request.user)
        return Response(status=http.HTTP_204_NO_CONTENT)


# Followers -------------------------------------------------------------------

FOLLOWER_EXAMPLE = OpenApiExample(
    "Follower",
    value={"login": 100002, "enabled": 1, "manual_trading_mode": 1, "max_master_count": 1},
    request_only=True,
)


class FollowerCreateApi(ClientApiView):
    @extend_schema(
        operation_id="follower_create",
        summary="Create follower settings for a customer-owned account",
        request=FollowerCreateSerializer,
        examples=[FOLLOWER_EXAMPLE],
        responses={
            201: FollowerSerializer,
            **error_responses("VALIDATION_ERROR", "INVALID_ACCOUNT", "ALREADY_EXISTS"),
        },
    )
    def post(self, request: Request) -> Response:
        customer = self.customer(request)
        data = _validated(FollowerCreateSerializer, self.body(request))
        account = _customer_account(customer, data.pop("login"), field="login")
        follower = follower_create(
            account=account, customer=customer, actor=request.user, **_flags_to_bool(data)
        )
        return Response(
            FollowerSerializer(selectors.follower_get(pk=follower.pk)).data,
            status=http.HTTP_201_CREATED,
        )


class FollowerDetailApi(ClientApiView):
    def _owned(self, request: Request, raw_id: str) -> CopyFollower:
        follower = selectors.follower_get(pk=_record_id(raw_id))
        if follower is None:
            raise ApiError("NOT_FOUND", "No such follower profile.")
        if follower.account.customer_id != self.customer(request).pk:
            raise ApiError("PERMISSION_DENIED", "This follower profile is not yours.")
        return follower

    @extend_schema(
        operation_id="follower_update",
        summary="Update customer-owned follower settings (partial body)",
        parameters=[ID_PARAMETER],
        request=FollowerUpdateSerializer,
        responses={
            200: FollowerSerializer,
            **error_responses(
                "VALIDATION_ERROR", "PERMISSION_DENIED", "NOT_FOUND", "LIMIT_REACHED"
            ),
        },
    )
    def put(self, request: Request, id: str) -> Response:  # noqa: A002
        follower = self._owned(request, id)
        data = _validated(FollowerUpdateSerializer, self.body(request))
        login = data.pop("login", None)
        _fixed_after_create(
            ["login"] if login is not None and login != follower.account.login else []
        )
        if data:
            follower_update(follower=follower, values=_flags_to_bool(data), actor=request.user)
        return Response(FollowerSerializer(selectors.follower_get(pk=follower.pk)).data)

    @extend_schema(
        operation_id="follower_delete",
        summary="Delete customer-owned follower settings (and its subscriptions)",
        parameters=[ID_PARAMETER],
        request=None,
        responses={204: None, **error_responses("PERMISSION_DENIED", "NOT_FOUND")},
    )
    def delete(self, request: Request, id: str) -> Response:  # noqa: A002
        follower_delete(follower=self._owned(request, id), actor=request.user)
        return Response(status=http.HTTP_204_NO_CONTENT)


# Subscriptions ---------------------------------------------------------------

SUBSCRIPTION_EXAMPLE = OpenApiExample(
    "Subscription",
    value={
        "master_login": 100001,
        "follower_login": 100002,
        "enabled": 1,
        "status": 0,
        "copy_mode": 0,
        "volume_mode": 1,
        "risk_multiplier": 1,
        "fixed_volume": 0,
        "copy_sl": 1,
        "copy_tp": 1,
        "copy_partial_close": 1,
        "copy_pending_orders": 0,
        "copy_existing_positions": 0,
        "reverse_direction": 0,
        "max_volume": 0,
        "min_volume": 0,
        "max_positions": 0,
        "symbols_mode": 0,
        "symbols": "",
    },
    request_only=True,
)


class SubscriptionCreateApi(ClientApiView):
    @extend_schema(
        operation_id="subscription_create",
        summary="Subscribe a customer-owned follower account to an available master",
        description="`status` 1 creates the subscription paused; 2 is refused.",
        request=SubscriptionCreateSerializer,
        examples=[SUBSCRIPTION_EXAMPLE],
        responses={
            201: SubscriptionSerializer,
            **error_responses(
                "VALIDATION_ERROR",
                "INVALID_ACCOUNT",
                "MASTER_NOT_FOUND",
                "MASTER_NOT_AVAILABLE",
                "FOLLOWER_NOT_FOUND",
                "FOLLOWER_MODE_NOT_ALLOWED",
                "ALREADY_EXISTS",
                "LIMIT_REACHED",
            ),
        },
    )
    def post(self, request: Request) -> Response:
        customer = self.customer(request)
        data = _validated(SubscriptionCreateSerializer, self.body(request))
        follower_account = _customer_account(
            customer, data.pop("follower_login"), field="follower_login"
        )
        master_account = _master_account(customer, data.pop("master_login"), follower_account)
        status = data.pop("status", CopySubscriptionStatus.ACTIVE)
        # One transaction: a subscription asked for paused is never seen active.
        with transaction.atomic():
            sub = subscription_create(
                follower_account=follower_account,
                master_account=master_account,
                customer=customer,
                settings=data,
                actor=request.user,
            )
            if status == CopySubscriptionStatus.PAUSED:
                subscription_pause(subscription=sub, reason=CUSTOMER_REASON, actor=request.user)
        return Response(
            SubscriptionSerializer(selectors.subscription_get(pk=sub.pk)).data,
            status=http.HTTP_201_CREATED,
        )


class SubscriptionDetailApi(ClientApiView):
    def _owned(self, request: Request, raw_id: str) -> CopySubscription:
        sub = selectors.subscription_get(pk=_record_id(raw_id))
        if sub is None:
            raise ApiError("NOT_FOUND", "No such subscription.")
        # Only the follower's owner may change a subscription (spec: ownership rules).
        if sub.follower_account.customer_id != self.customer(request).pk:
            raise ApiError("PERMISSION_DENIED", "This subscription is not yours.")
        return sub

    @extend_schema(
        operation_id="subscription_update",
        summary="Update a customer-owned subscription (partial body)",
        description="`status` 0 resumes and 1 pauses; 2 is refused (VALIDATION_ERROR), and a "
        "subscription stopped by a risk rule (status 2) is resumed or paused by staff only "
        "(PERMISSION_DENIED).",
        parameters=[ID_PARAMETER],
        request=SubscriptionUpdateSerializer,
        responses={
            200: SubscriptionSerializer,
            **error_responses("VALIDATION_ERROR", "PERMISSION_DENIED", "NOT_FOUND"),
        },
    )
    def put(self, request: Request, id: str) -> Response:  # noqa: A002
        sub = self._owned(request, id)
        data = _validated(SubscriptionUpdateSerializer, self.body(request))
        changed = [
            name
            for name, current in (
                ("master_login", sub.master_account.login),
                ("follower_login", sub.follower_account.login),
            )
            if data.pop(name, current) != current
        ]
        _fixed_after_create(changed)
        status = data.pop("status", None)
        with transaction.atomic():
            # Locked, so the status read here is the one the change applies to.
            current = CopySubscription.objects.select_for_update().get(pk=sub.pk)
            if (
                status is not None
                and status != current.status
                and current.status == CopySubscriptionStatus.STOPPED_BY_RISK
            ):
                raise ApiError(
                    "PERMISSION_DENIED",
                    "This subscription was stopped by a risk rule; only staff can clear it.",
                )
            if data:
                subscription_update(subscription=current, settings=data, actor=request.user)
            if status == CopySubscriptionStatus.ACTIVE and current.status != status:
                subscription_resume(
                    subscription=current, reason=CUSTOMER_REASON, actor=request.user
                )
            elif status == CopySubscriptionStatus.PAUSED and current.status != status:
                subscription_pause(subscription=current, reason=CUSTOMER_REASON, actor=request.user)
        return Response(SubscriptionSerializer(selectors.subscription_get(pk=sub.pk)).data)

    @extend_schema(
        operation_id="subscription_delete",
        summary="Delete a customer-owned subscription (copying stops; open copies stay)",
        parameters=[ID_PARAMETER],
        request=None,
        responses={204: None, **error_responses("PERMISSION_DENIED", "NOT_FOUND")},
    )
    def delete(self, request: Request, id: str) -> Response:  # noqa: A002
        subscription_delete(subscription=self._owned(request, id), actor=request.user)
        return Response(status=http.HTTP_204_NO_CONTENT)
