"""Every write to masters, followers and subscriptions.

The rules of spec/client-api.md live here, so the client API, the admin and the
demo loader all go through the same checks.
"""

from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from accounts.models import Customer, TradingAccount
from config.history import save_audited

from ..choices import (
    MODE_BITS,
    CopyMasterAllowedFollowerModes,
    CopyMasterVisibility,
    CopySubscriptionCopyMode,
    CopySubscriptionStatus,
    CopySubscriptionSymbolsMode,
    CopySubscriptionVolumeMode,
)
from ..errors import CopyTradingError, validation_error
from ..models import CopyFollower, CopyMaster, CopySubscription

MAX_RISK_MULTIPLIER = Decimal("100")
MAX_LOTS = Decimal("1000")
# One lock for every subscription create, so two creates cannot both pass the cycle check.
_SUBSCRIPTION_GRAPH_LOCK = 0x5C0B7_0001

SUBSCRIPTION_SETTINGS = (
    "enabled",
    "copy_mode",
    "volume_mode",
    "risk_multiplier",
    "fixed_volume",
    "base_equity",
    "copy_sl",
    "copy_tp",
    "copy_partial_close",
    "copy_pending_orders",
    "copy_existing_positions",
    "reverse_direction",
    "max_volume",
    "min_volume",
    "max_positions",
    "symbols_mode",
    "symbols",
)
_BOOL_FIELDS = {
    "enabled",
    "copy_sl",
    "copy_tp",
    "copy_partial_close",
    "copy_pending_orders",
    "copy_existing_positions",
    "reverse_direction",
}
_ENUMS = {
    "copy_mode": CopySubscriptionCopyMode,
    "volume_mode": CopySubscriptionVolumeMode,
    "symbols_mode": CopySubscriptionSymbolsMode,
}


def _owned_account(customer: Customer | None, account: TradingAccount) -> TradingAccount:
    if customer is not None and account.customer_id != customer.id:
        raise CopyTradingError(
            f"Account {account.login} does not belong to you.", code="INVALID_ACCOUNT"
        )
    return account


def _decimal(field: str, value: Any, *, low: Decimal, high: Decimal, low_open: bool) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise validation_error(field, "must be a decimal number")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise validation_error(field, "must be a decimal number") from None
    if not number.is_finite():
        raise validation_error(field, "must be a finite decimal number")
    if (number <= low if low_open else number < low) or number > high:
        bound = f"> {low}" if low_open else f">= {low}"
        raise validation_error(field, f"must be {bound} and <= {high}")
    if number.as_tuple().exponent < -4:  # type: ignore[operator]
        raise validation_error(field, "must have at most 4 decimal places")
    return number


def _clean_subscription_settings(values: dict[str, Any]) -> dict[str, Any]:
    """Checks types and ranges of subscription settings; returns them normalized."""
    cleaned: dict[str, Any] = {}
    for field, value in values.items():
        if field in _BOOL_FIELDS:
            if value not in (0, 1) or isinstance(value, float):
                raise validation_error(field, "must be 0 or 1")
            cleaned[field] = bool(value)
        elif field in _ENUMS:
            allowed = [int(c) for c in _ENUMS[field]]
            if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
                raise validation_error(field, f"must be one of {allowed}")
            cleaned[field] = value
        elif field == "risk_multiplier":
            cleaned[field] = _decimal(
                field, value, low=Decimal(0), high=MAX_RISK_MULTIPLIER, low_open=True
            )
        elif field == "base_equity":
            cleaned[field] = _decimal(
                field, value, low=Decimal(0), high=Decimal("1e12"), low_open=True
            )
        elif field in ("fixed_volume", "max_volume", "min_volume"):
            cleaned[field] = _decimal(field, value, low=Decimal(0), high=MAX_LOTS, low_open=False)
        elif field == "max_positions":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100000:
                raise validation_error(field, "must be an integer from 0 to 100000")
            cleaned[field] = value
        elif field == "symbols":
            if not isinstance(value, str) or len(value) > 2000:
                raise validation_error(field, "must be a comma-separated string of symbols")
            names = [s.strip() for s in value.split(",") if s.strip()]
            if any(len(n) > 32 or not n.replace(".", "").replace("_", "").isalnum() for n in names):
                raise validation_error(field, "each symbol must be letters, digits, '.' or '_'")
            cleaned[field] = ",".join(names)
        else:
            raise validation_error(field, "unknown field")
    return cleaned


def _check_subscription_consistency(sub: CopySubscription) -> None:
    if sub.max_volume and sub.min_volume and sub.max_volume < sub.min_volume:
        raise validation_error("max_volume", "must be 0 or at least min_volume")
    if (
        sub.volume_mode
        in (CopySubscriptionVolumeMode.FIXED, CopySubscriptionVolumeMode.EQUITY_BASED)
        and sub.fixed_volume <= 0
    ):
        raise validation_error("fixed_volume", "must be > 0 when volume_mode is 2 or 3")
    if sub.symbols_mode != CopySubscriptionSymbolsMode.ALL and not sub.symbol_list:
        raise validation_error(
            "symbols", "must list at least one symbol when symbols_mode is 1 or 2"
        )


# Masters ---------------------------------------------------------------------


@transaction.atomic
def master_create(
    *,
    account: TradingAccount,
    strategy_name: str,
    customer: Customer | None = None,
    enabled: bool = True,
    description: str = "",
    visibility: str = CopyMasterVisibility.PUBLIC,
    allowed_follower_modes: int = CopyMasterAllowedFollowerModes.BOTH,
    actor: Any = None,
) -> CopyMaster:
    """Creates a master profile on an account of `customer` (None: staff acting for anyone)."""
    _owned_account(customer, account)
    master = CopyMaster(
        account=account,
        enabled=enabled,
        strategy_name=strategy_name,
        description=description,
        visibility=visibility,
        allowed_follower_modes=allowed_follower_modes,
    )
    try:
        with transaction.atomic():
            save_audited(master, actor=actor, reason="master profile created")
    except IntegrityError:
        raise CopyTradingError(
            f"Account {account.login} already has a master profile.", code="ALREADY_EXISTS"
        ) from None
    return master


@transaction.atomic
def master_update(*, master: CopyMaster, values: dict[str, Any], actor: Any) -> CopyMaster:
    """Changes a master profile; its account never changes."""
    master = CopyMaster.objects.select_for_update().get(pk=master.pk)
    for field, value in values.items():
        setattr(master, field, value)
    save_audited(master, actor=actor, reason="master profile updated")
    return master


def _soft_delete(obj: Any, *, actor: Any, reason: str) -> None:
    obj.deleted_at = timezone.now()
    save_audited(obj, actor=actor, reason=reason)
    if isinstance(obj, CopySubscription):
        # Billing crystallises an unsubscribe at once (a fee cannot be dodged by leaving).
        from billing.tasks import billing_unsubscribe

        transaction.on_commit(lambda: billing_unsubscribe.delay(obj.pk))


@transaction.atomic
def master_delete(*, master: CopyMaster, actor: Any) -> None:
    """Deletes a master profile and its subscriptions, which stops copying from it at once.
    Rows are kept (deleted_at set) so the lineage of copied trades survives."""
    master = CopyMaster.objects.select_for_update().get(pk=master.pk)
    for sub in CopySubscription.objects.select_for_update().filter(master=master).order_by("id"):
        _soft_delete(sub, actor=actor, reason="master profile deleted")
    _soft_delete(master, actor=actor, reason="master profile deleted")


@transaction.atomic
def master_pause(*, master: CopyMaster, reason: str, actor: Any) -> CopyMaster:
    """Staff pause of a master: no new copies for any follower from the moment this commits
    (the engine reads the flag when deciding and again when claiming opening orders);
    closes of what was copied still go through."""
    if not reason.strip():
        raise validation_error("reason", "a reason is required")
    master = CopyMaster.objects.select_for_update().get(pk=master.pk)
    master.paused = True
    master.paused_reason = reason
    save_audited(master, actor=actor, reason=reason)
    return master


@transaction.atomic
def master_resume(*, master: CopyMaster, reason: str, actor: Any) -> CopyMaster:
    """Ends a staff pause of a master."""
    master = CopyMaster.objects.select_for_update().get(pk=master.pk)
    master.paused = False
    master.paused_reason = ""
    save_audited(master, actor=actor, reason=reason or "resumed")
    return master


@transaction.atomic
def follower_pause(*, follower: CopyFollower, reason: str, actor: Any) -> int:
    """Pauses every live subscription of a follower; returns how many changed."""
    if not reason.strip():
        raise validation_error("reason", "a reason is required")
    changed = 0
    for sub in CopySubscription.objects.filter(follower=follower).order_by("id"):
        if sub.status == CopySubscriptionStatus.ACTIVE:
            subscription_pause(subscription=sub, reason=reason, actor=actor)
            changed += 1
    return changed


@transaction.atomic
def follower_resume(*, follower: CopyFollower, reason: str, actor: Any) -> int:
    """Resumes every paused subscription of a follower (risk stops stay); returns how many."""
    changed = 0
    for sub in CopySubscription.objects.filter(
        follower=follower, status=CopySubscriptionStatus.PAUSED
    ).order_by("id"):
        subscription_resume(subscription=sub, reason=reason or "resumed", actor=actor)
        changed += 1
    return changed


# Followers -------------------------------------------------------------------


@transaction.atomic
def follower_create(
    *,
    account: TradingAccount,
    customer: Customer | None = None,
    enabled: bool = True,
    manual_trading_mode: bool = True,
    max_master_count: int = 1,
    actor: Any = None,
) -> CopyFollower:
    """Creates follower settings on an account of `customer`."""
    _owned_account(customer, account)
    if max_master_count < 1:
        raise validation_error("max_master_count", "must be at least 1")
    follower = CopyFollower(
        account=account,
        enabled=enabled,
        manual_trading_mode=manual_trading_mode,
        max_master_count=max_master_count,
    )
    try:
        with transaction.atomic():
            save_audited(follower, actor=actor, reason="follower profile created")
    except IntegrityError:
        raise CopyTradingError(
            f"Account {account.login} already has a follower profile.", code="ALREADY_EXISTS"
        ) from None
    return follower


@transaction.atomic
def follower_update(*, follower: CopyFollower, values: dict[str, Any], actor: Any) -> CopyFollower:
    """Changes follower settings; lowering max_master_count below the current count is refused."""
    follower = CopyFollower.objects.select_for_update().get(pk=follower.pk)
    for field, value in values.items():
        setattr(follower, field, value)
    if follower.max_master_count < 1:
        raise validation_error("max_master_count", "must be at least 1")
    if follower.subscriptions.count() > follower.max_master_count:
        raise CopyTradingError(
            "max_master_count is below the number of current subscriptions.",
            code="LIMIT_REACHED",
        )
    save_audited(follower, actor=actor, reason="follower profile updated")
    return follower


@transaction.atomic
def follower_delete(*, follower: CopyFollower, actor: Any) -> None:
    """Deletes follower settings and its subscriptions (copying stops; nothing is closed)."""
    follower = CopyFollower.objects.select_for_update().get(pk=follower.pk)
    for sub in follower.subscriptions.select_for_update().order_by("id"):
        _soft_delete(sub, actor=actor, reason="follower profile deleted")
    _soft_delete(follower, actor=actor, reason="follower profile deleted")


# Subscriptions ---------------------------------------------------------------


def _would_close_cycle(*, follower_account_id: int, master_account_id: int) -> bool:
    """True when the master account already copies, directly or not, from the follower."""
    seen = {master_account_id}
    frontier = [master_account_id]
    while frontier:
        upstream = list(
            CopySubscription.objects.filter(follower_account_id__in=frontier).values_list(
                "master_account_id", flat=True
            )
        )
        if follower_account_id in upstream:
            return True
        frontier = [a for a in upstream if a not in seen]
        seen.update(frontier)
    return False


def master_is_available(*, master: CopyMaster, customer: Customer | None) -> bool:
    """An enabled master that is public or owned by the customer (None: staff see all)."""
    if not master.enabled:
        return False
    if customer is None or master.visibility == CopyMasterVisibility.PUBLIC:
        return True
    return master.account.customer_id == customer.id


@transaction.atomic
def subscription_create(
    *,
    follower_account: TradingAccount,
    master_account: TradingAccount,
    customer: Customer | None = None,
    settings: dict[str, Any] | None = None,
    actor: Any = None,
) -> CopySubscription:
    """Subscribes a follower account to a master account.

    Guards: ownership, master availability, follower mode, no self-follow, one
    subscription per pair, max_master_count and no copy cycle, checked under a
    transaction-wide advisory lock and the follower's row lock so that concurrent
    creates cannot both slip past a limit.
    """
    _owned_account(customer, follower_account)
    cleaned = _clean_subscription_settings(settings or {})
    if "status" in cleaned:
        raise validation_error("status", "is set by pause and resume")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_SUBSCRIPTION_GRAPH_LOCK])
    follower = CopyFollower.objects.select_for_update().filter(account=follower_account).first()
    if follower is None:
        raise CopyTradingError(
            f"Account {follower_account.login} has no follower profile.", code="FOLLOWER_NOT_FOUND"
        )
    master = CopyMaster.objects.select_related("account").filter(account=master_account).first()
    if master is None:
        raise CopyTradingError(
            f"Account {master_account.login} has no master profile.", code="MASTER_NOT_FOUND"
        )
    if not master_is_available(master=master, customer=customer):
        raise CopyTradingError("This master is not available.", code="MASTER_NOT_AVAILABLE")
    if not master.allowed_follower_modes & MODE_BITS[follower_account.mode]:
        raise CopyTradingError(
            f"This master does not accept {follower_account.mode} followers.",
            code="FOLLOWER_MODE_NOT_ALLOWED",
        )
    if follower_account.pk == master_account.pk:
        raise validation_error("master_login", "an account cannot follow itself")
    if CopySubscription.objects.filter(
        follower_account=follower_account, master_account=master_account
    ).exists():
        raise CopyTradingError("This subscription exists already.", code="ALREADY_EXISTS")
    if follower.subscriptions.count() >= follower.max_master_count:
        raise CopyTradingError(
            f"This follower may follow at most {follower.max_master_count} master(s).",
            code="LIMIT_REACHED",
        )
    if _would_close_cycle(
        follower_account_id=follower_account.pk, master_account_id=master_account.pk
    ):
        raise validation_error("master_login", "this subscription would close a copy cycle")
    sub = CopySubscription(
        follower=follower,
        master=master,
        follower_account=follower_account,
        master_account=master_account,
        status_changed_at=timezone.now(),
        **cleaned,
    )
    _check_subscription_consistency(sub)
    save_audited(sub, actor=actor, reason="subscription created")
    if sub.copy_existing_positions:
        from ..tasks import copy_existing_positions

        transaction.on_commit(lambda: copy_existing_positions.delay(sub.id))
    return sub


@transaction.atomic
def subscription_update(
    *, subscription: CopySubscription, settings: dict[str, Any], actor: Any
) -> CopySubscription:
    """Changes the copy settings of a subscription; it takes effect on the next master event."""
    cleaned = _clean_subscription_settings(settings)
    sub = CopySubscription.objects.select_for_update().get(pk=subscription.pk)
    for field, value in cleaned.items():
        setattr(sub, field, value)
    _check_subscription_consistency(sub)
    save_audited(sub, actor=actor, reason="subscription settings updated")
    return sub


def _subscription_set_status(
    *, subscription: CopySubscription, status: int, reason: str, actor: Any
) -> CopySubscription:
    sub = CopySubscription.objects.select_for_update().get(pk=subscription.pk)
    if sub.status == status:
        return sub
    sub.status = status
    sub.status_reason = reason
    sub.status_changed_at = timezone.now()
    save_audited(sub, actor=actor, reason=reason)
    return sub


@transaction.atomic
def subscription_pause(
    *, subscription: CopySubscription, reason: str, actor: Any
) -> CopySubscription:
    """Pauses copying. Guards: from the moment this commits, no new opening order is sent
    (the copy engine re-reads the status under lock before sending)."""
    if not reason.strip():
        raise validation_error("reason", "a reason is required")
    return _subscription_set_status(
        subscription=subscription, status=CopySubscriptionStatus.PAUSED, reason=reason, actor=actor
    )


@transaction.atomic
def subscription_resume(
    *, subscription: CopySubscription, reason: str, actor: Any, clear_risk_stop: bool = False
) -> CopySubscription:
    """Resumes copying. A risk stop (status 2) is cleared only when `clear_risk_stop` says
    the actor may (staff with the permission)."""
    current = CopySubscription.objects.select_for_update().get(pk=subscription.pk)
    if current.status == CopySubscriptionStatus.STOPPED_BY_RISK and not clear_risk_stop:
        raise CopyTradingError(
            "This subscription was stopped by a risk rule; only staff can clear it.",
            code="PERMISSION_DENIED",
        )
    return _subscription_set_status(
        subscription=current, status=CopySubscriptionStatus.ACTIVE, reason=reason, actor=actor
    )


@transaction.atomic
def subscription_stop_by_risk(*, subscription: CopySubscription, reason: str) -> CopySubscription:
    """Sets status 2 (stopped by a risk rule); only the back office calls this."""
    return _subscription_set_status(
        subscription=subscription,
        status=CopySubscriptionStatus.STOPPED_BY_RISK,
        reason=reason,
        actor=None,
    )


@transaction.atomic
def subscription_delete(*, subscription: CopySubscription, actor: Any) -> None:
    """Deletes a subscription: copying stops at once; open copies are left as they are.
    The row is kept (deleted_at set) for the lineage of what it copied."""
    sub = CopySubscription.objects.select_for_update().get(pk=subscription.pk)
    _soft_delete(sub, actor=actor, reason="subscription deleted")
