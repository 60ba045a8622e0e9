"""Staff remedies: force-close, re-sync, and the four answers to drift.

Each remedy is a write with an `actor` and a `reason`, and leaves a `StaffRemedy` row
(who, when, why, what it sent). Remedies that trade make a `CopyInstruction` of origin
`staff`, built like reconciliation's repairs (copytrading.services.reconcile) and
executed by the same engine, so they are claimed, sent, recorded and linked like any
other order: a re-open is still refused at sending time when the subscription is
paused, stopped or under the kill switch; closes always go through.

Guards:
- A double click sends nothing twice. Remedies of one follower account run under that
  account's transaction-wide advisory lock; a position (or link) that already has work
  in flight gets no second order; and client order ids are derived from (link or venue
  position, number of staff remedies before it): `sf<link>n<k>` and
  `sfa<account>p<position>n<k>`, unique in the database, so two racing clicks insert
  one row between them.
- No network call inside a transaction: venue positions are read before the
  transaction, and orders are queued after commit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from accounts.models import TradingAccount
from brokers.gateways.types import Position
from config.bulk import insert_rows

from .. import decision as d
from ..choices import (
    CopyInstructionAction,
    CopyInstructionOrigin,
    CopyInstructionStatus,
    MasterEventType,
    TradeLinkStatus,
)
from ..errors import CopyTradingError
from ..models import (
    CopyInstruction,
    CopySubscription,
    MasterEvent,
    StaffRemedy,
    StaffRemedyKind,
    TradeLink,
)
from .fanout import INSTRUCTION_COLUMNS
from .reconcile import ready_instruction_row

STAFF_RULE_VERSION = "staff-1"
_REMEDY_LOCK_SPACE = 0x5C0B_57AF  # first key of the two-key advisory lock: "remedies of account"
_OPEN_WORK = [
    CopyInstructionStatus.READY,
    CopyInstructionStatus.IN_FLIGHT,
    CopyInstructionStatus.WAITING,
    CopyInstructionStatus.MARKET,  # an open waiting for its market: its link is busy
]


@dataclass(frozen=True)
class RemedyResult:
    """What a remedy did: its audit row, the instruction it queued (if any), and a line
    for the staff member who asked."""

    remedy: StaffRemedy
    instruction_id: int | None
    message: str


def _require_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise CopyTradingError("A reason is required.", code="VALIDATION_ERROR")
    return reason


def _lock_account(account_id: int) -> None:
    # Serialises remedies of one follower: the open-work check and the count behind the
    # client order id are then read by one remedy at a time.
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_REMEDY_LOCK_SPACE, account_id])


def _actor_name(actor: Any) -> str:
    return getattr(actor, "get_username", lambda: "system")() if actor else "system"


def _actor_or_none(actor: Any) -> Any:
    return actor if getattr(actor, "is_authenticated", False) else None


def _staff_row(
    *,
    sub: CopySubscription,
    link: TradeLink | None,
    action: str,
    reason_code: str,
    reason: str,
    actor: Any,
    coid: str,
    decision: d.CopyDecision,
    remedy: str,
    now: Any,
) -> dict[str, Any]:
    """A ready instruction of origin `staff`; its inputs keep who asked and why, so the
    lineage page can show them."""
    return ready_instruction_row(
        origin=CopyInstructionOrigin.STAFF,
        rule_version=STAFF_RULE_VERSION,
        sub=sub,
        link=link,
        action=action,
        reason=reason_code,
        detail=f"{remedy} by {_actor_name(actor)}: {reason}",
        coid=coid,
        decision=decision,
        now=now,
        inputs={"remedy": remedy, "actor": _actor_name(actor), "reason": reason},
    )


def _insert_and_queue(row: dict[str, Any], server_id: int) -> int | None:
    """Inserts the staff instruction (once per client order id) and queues it after commit.
    Returns its id, or None when the same client order id was inserted before."""
    from .fanout import enqueue_execution

    inserted = insert_rows(CopyInstruction, [row], columns=INSTRUCTION_COLUMNS)
    if not inserted:
        return None
    transaction.on_commit(lambda: enqueue_execution({server_id: list(inserted)}))
    return inserted[0]


def _record(
    *,
    kind: str,
    account_id: int,
    reason: str,
    actor: Any,
    sub: CopySubscription | None = None,
    link: TradeLink | None = None,
    instruction_id: int | None = None,
    position_key: str = "",
    outcome: str = "",
) -> StaffRemedy:
    return StaffRemedy.objects.create(
        kind=kind,
        follower_account_id=account_id,
        subscription=sub,
        trade_link=link,
        instruction_id=instruction_id,
        position_key=position_key,
        reason=reason,
        outcome=outcome[:500],
        actor=_actor_or_none(actor),
    )


def _link_busy(link_id: int) -> bool:
    return CopyInstruction.objects.filter(trade_link_id=link_id, status__in=_OPEN_WORK).exists()


def _link_coid(link: TradeLink) -> str:
    n = CopyInstruction.objects.filter(
        trade_link_id=link.id, origin=CopyInstructionOrigin.STAFF
    ).count()
    return f"sf{link.id}n{n}"


def _position_coid(account_id: int, position_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9]", "", position_id)[:24]
    prefix = f"sfa{account_id}p{safe}n"
    n = CopyInstruction.objects.filter(
        follower_account_id=account_id, client_order_id__startswith=prefix
    ).count()
    return f"{prefix}{n}"


# -- force-close -----------------------------------------------------------------------


def _close_link_locked(
    link: TradeLink, *, reason: str, actor: Any, kind: str, reason_code: str
) -> RemedyResult:
    """Queues a close of an open linked position; the caller holds the account's lock."""
    link = TradeLink.objects.select_for_update().get(pk=link.pk)
    sub = CopySubscription.all_objects.select_related("follower_account").get(
        pk=link.subscription_id
    )
    if link.status != TradeLinkStatus.OPEN or not link.follower_position_id:
        raise CopyTradingError(
            f"Link {link.id} has no open follower position to close ({link.status}).",
            code="NOTHING_TO_CLOSE",
        )
    if _link_busy(link.id):
        remedy = _record(
            kind=kind,
            account_id=link.follower_account_id,
            reason=reason,
            actor=actor,
            sub=sub,
            link=link,
            position_key=f"f:{link.follower_position_id}",
            outcome="nothing sent: an order for this position is already under way",
        )
        return RemedyResult(remedy, None, remedy.outcome)
    decision = d.CopyDecision(
        rule_version=STAFF_RULE_VERSION,
        action=d.CopyAction.CLOSE,
        follower_symbol=link.follower_symbol,
        side=d.Side(link.side),
        volume=link.follower_volume,
        follower_position_ids=(link.follower_position_id,),
    )
    row = _staff_row(
        sub=sub,
        link=link,
        action=CopyInstructionAction.CLOSE,
        reason_code=reason_code,
        reason=reason,
        actor=actor,
        coid=_link_coid(link),
        decision=decision,
        remedy=kind,
        now=timezone.now(),
    )
    inst_id = _insert_and_queue(row, sub.follower_account.broker_server_id)
    remedy = _record(
        kind=kind,
        account_id=link.follower_account_id,
        reason=reason,
        actor=actor,
        sub=sub,
        link=link,
        instruction_id=inst_id,
        position_key=f"f:{link.follower_position_id}",
        outcome=f"close of position {link.follower_position_id} queued"
        if inst_id
        else "nothing sent: the same close was queued already",
    )
    return RemedyResult(remedy, inst_id, remedy.outcome)


def force_close_link(*, link: TradeLink, reason: str, actor: Any) -> RemedyResult:
    """Closes the follower position of one trade link now, whatever the master does.

    Guards: only an open link with a follower position; nothing is sent while an order
    for the link is in flight; the client order id `sf<link>n<k>` is unique, so a
    repeated click queues nothing twice. The master position stays open; its later
    close finds the link closed and sends nothing.
    """
    reason = _require_reason(reason)
    with transaction.atomic():
        _lock_account(link.follower_account_id)
        return _close_link_locked(
            link,
            reason=reason,
            actor=actor,
            kind=StaffRemedyKind.FORCE_CLOSE,
            reason_code="STAFF_FORCE_CLOSE",
        )


def force_close_subscription(
    *, subscription: CopySubscription, reason: str, actor: Any
) -> list[RemedyResult]:
    """Closes every open copied position of a subscription (one remedy per link).

    Guards: as force_close_link, per link; links with work in flight are reported, not
    closed twice. Copying goes on unless the subscription is also paused.
    """
    reason = _require_reason(reason)
    results = []
    with transaction.atomic():
        _lock_account(subscription.follower_account_id)
        links = TradeLink.objects.filter(
            subscription_id=subscription.pk, status=TradeLinkStatus.OPEN
        ).exclude(follower_position_id="")
        for link in links.order_by("id"):
            results.append(
                _close_link_locked(
                    link,
                    reason=reason,
                    actor=actor,
                    kind=StaffRemedyKind.FORCE_CLOSE,
                    reason_code="STAFF_FORCE_CLOSE",
                )
            )
    return results


# -- re-sync ----------------------------------------------------------------------------


def subscription_resync(*, subscription: CopySubscription, reason: str, actor: Any) -> RemedyResult:
    """Runs reconciliation of the subscription's follower account now (repairs by its
    policy, as the periodic task would) and records who asked and the sync status found.

    Guards: reconciliation's own (repair client order ids derive from the link and the
    repair count, so running it again while a repair is in flight sends nothing twice).
    The venue is read outside any transaction.
    """
    from .reconcile import followers_reconcile

    reason = _require_reason(reason)
    statuses = followers_reconcile(account_ids=[subscription.follower_account_id])
    found = statuses.get(subscription.pk)
    if found is None:
        outcome = "the venue did not answer for this account; nothing was compared"
    else:
        outcome = f"sync status {found[0]}, drift {found[1]} lots"
    remedy = _record(
        kind=StaffRemedyKind.RESYNC,
        account_id=subscription.follower_account_id,
        reason=reason,
        actor=actor,
        sub=subscription,
        outcome=outcome,
    )
    return RemedyResult(remedy, None, outcome)


# -- drift ------------------------------------------------------------------------------


def venue_positions(account: TradingAccount) -> list[Position]:
    """The account's open positions at its venue now (a network call: never inside a
    transaction). Raises GatewayError when the venue does not answer."""
    from brokers.gateways import sync_gateway_for

    gateway = sync_gateway_for(account.broker_server)
    return gateway.run(gateway.gateway.list_positions(account.login))


def _venue_position(account: TradingAccount, position_id: str) -> Position:
    for p in venue_positions(account):
        if p.position_id == position_id:
            return p
    raise CopyTradingError(
        f"Position {position_id} is not open on account {account.login} any more.",
        code="POSITION_NOT_FOUND",
    )


def _subscription_of(account: TradingAccount, subscription: CopySubscription | None) -> Any:
    if subscription is not None:
        if subscription.follower_account_id != account.pk:
            raise CopyTradingError(
                "The subscription is not this account's.", code="VALIDATION_ERROR"
            )
        return subscription
    sub = (
        CopySubscription.all_objects.filter(follower_account=account)
        .order_by("deleted_at", "id")
        .first()
    )
    if sub is None:
        raise CopyTradingError(
            f"Account {account.login} follows nobody; there is no copy to remedy.",
            code="FOLLOWER_NOT_FOUND",
        )
    return sub


def drift_close(
    *,
    account: TradingAccount,
    position_id: str,
    reason: str,
    actor: Any,
    subscription: CopySubscription | None = None,
) -> RemedyResult:
    """Closes a follower position the back office did not expect: an orphan (its link's
    master position closed) or a position the back office never opened.

    Guards: the position is read from the venue first (a stale page cannot close what is
    gone); a linked position is closed through its link (`sf<link>n<k>`), an unlinked
    one under `sfa<account>p<position>n<k>`; a position with a close already queued or
    in flight gets nothing more.
    """
    reason = _require_reason(reason)
    held = _venue_position(account, position_id)
    with transaction.atomic():
        _lock_account(account.pk)
        link = (
            TradeLink.objects.filter(
                follower_account=account,
                follower_position_id=position_id,
                status=TradeLinkStatus.OPEN,
            )
            .order_by("-id")
            .first()
        )
        if link is not None:
            return _close_link_locked(
                link,
                reason=reason,
                actor=actor,
                kind=StaffRemedyKind.DRIFT_CLOSE,
                reason_code="STAFF_DRIFT_CLOSE",
            )
        sub = _subscription_of(account, subscription)
        busy = CopyInstruction.objects.filter(
            follower_account=account,
            status__in=_OPEN_WORK,
            action=CopyInstructionAction.CLOSE,
            decision__follower_position_ids__contains=[position_id],
        ).exists()
        inst_id = None
        if not busy:
            decision = d.CopyDecision(
                rule_version=STAFF_RULE_VERSION,
                action=d.CopyAction.CLOSE,
                follower_symbol=held.symbol,
                side=d.Side(str(held.side)),
                volume=held.volume,
                follower_position_ids=(position_id,),
            )
            row = _staff_row(
                sub=sub,
                link=None,
                action=CopyInstructionAction.CLOSE,
                reason_code="STAFF_DRIFT_CLOSE",
                reason=reason,
                actor=actor,
                coid=_position_coid(account.pk, position_id),
                decision=decision,
                remedy=StaffRemedyKind.DRIFT_CLOSE,
                now=timezone.now(),
            )
            inst_id = _insert_and_queue(row, account.broker_server_id)
        remedy = _record(
            kind=StaffRemedyKind.DRIFT_CLOSE,
            account_id=account.pk,
            reason=reason,
            actor=actor,
            sub=sub,
            instruction_id=inst_id,
            position_key=f"f:{position_id}",
            outcome=f"close of position {position_id} ({held.volume} {held.symbol}) queued"
            if inst_id
            else "nothing sent: a close of this position is already under way",
        )
    return RemedyResult(remedy, inst_id, remedy.outcome)


def _master_open_position(sub: CopySubscription, master_position_id: str) -> dict[str, Any]:
    from ..listeners import open_positions_from_events

    state = open_positions_from_events(sub.master_account_id).get(master_position_id)
    if state is None:
        raise CopyTradingError(
            f"Master position {master_position_id} is not open.", code="POSITION_NOT_FOUND"
        )
    opened = (
        MasterEvent.objects.filter(
            account_id=sub.master_account_id,
            master_position_id=master_position_id,
            event_type=MasterEventType.POSITION_OPENED,
        )
        .order_by("id")
        .first()
    )
    return {**state, "event": opened}


def drift_adopt(
    *,
    account: TradingAccount,
    position_id: str,
    subscription: CopySubscription,
    master_position_id: str,
    reason: str,
    actor: Any,
) -> RemedyResult:
    """Links a follower position the back office did not open (or whose link was lost)
    to an open master position of the subscription, so the master's closes and changes
    reach it from now on. Sends no order.

    Guards: the follower position is read from the venue, the master position must be
    open by its stored events, and the follower position may not be the copy of another
    open link. The subscription's link for the master position is created, or updated
    when one exists (closed, failed or skipped; never a live one): one link per
    (subscription, master position) stays true.
    """
    reason = _require_reason(reason)
    if subscription.follower_account_id != account.pk:
        raise CopyTradingError("The subscription is not this account's.", code="VALIDATION_ERROR")
    held = _venue_position(account, position_id)
    master = _master_open_position(subscription, master_position_id)
    with transaction.atomic():
        _lock_account(account.pk)
        if (
            TradeLink.objects.filter(
                follower_account=account,
                follower_position_id=position_id,
                status__in=[TradeLinkStatus.OPEN, TradeLinkStatus.OPENING],
            )
            .exclude(subscription=subscription, master_position_id=master_position_id)
            .exists()
        ):
            raise CopyTradingError(
                f"Position {position_id} is already the copy of another master position.",
                code="ALREADY_LINKED",
            )
        values = {
            "follower_position_id": position_id,
            "follower_order_id": "",
            "follower_symbol": held.symbol,
            "side": str(held.side),
            "follower_volume": held.volume,
            "open_price": held.open_price,
            "sl": held.sl,
            "tp": held.tp,
            "status": TradeLinkStatus.OPEN,
            "reason": f"adopted by {_actor_name(actor)}"[:200],
            "opened_at": held.open_ts,
            "closed_at": None,
            "close_price": None,
        }
        link = (
            TradeLink.objects.select_for_update()
            .filter(subscription=subscription, master_position_id=master_position_id)
            .first()
        )
        if (
            link is not None
            and link.status in (TradeLinkStatus.OPENING, TradeLinkStatus.OPEN)
            and link.follower_position_id != position_id
        ):
            raise CopyTradingError(
                f"Master position {master_position_id} already has its copy "
                f"({link.follower_position_id or 'opening'}).",
                code="ALREADY_LINKED",
            )
        event = master["event"]
        if link is None:
            try:
                with transaction.atomic():
                    link = TradeLink.objects.create(
                        subscription=subscription,
                        master_account_id=subscription.master_account_id,
                        follower_account=account,
                        master_position_id=master_position_id,
                        symbol=event.symbol if event else held.symbol,
                        master_volume=master["volume"] or Decimal(0),
                        **values,
                    )
            except IntegrityError:
                raise CopyTradingError(
                    "The link was created meanwhile; reload and try again.", code="CONFLICT"
                ) from None
        else:
            for field, value in values.items():
                setattr(link, field, value)
            link.save()
        remedy = _record(
            kind=StaffRemedyKind.DRIFT_ADOPT,
            account_id=account.pk,
            reason=reason,
            actor=actor,
            sub=subscription,
            link=link,
            position_key=f"f:{position_id}",
            outcome=f"position {position_id} linked to master position {master_position_id}",
        )
        link_id = link.id
        transaction.on_commit(lambda: _push([link_id]))
    return RemedyResult(remedy, None, remedy.outcome)


def _push(link_ids: list[int]) -> None:
    from ..tasks import push_positions

    push_positions.delay(link_ids)


def _reopen_decision(
    sub: CopySubscription,
    link: TradeLink | None,
    master: dict[str, Any],
    quotes: dict[tuple[int, str], Any] | None = None,
) -> tuple[d.CopyDecision, dict[str, Any]]:
    """(the open to send, the inputs it was decided from). A link that was sized before
    keeps its size; a master position never copied is decided afresh by the copy rules,
    as a copy of an existing position, its pre-trade checks reading `quotes` (fetched
    before the transaction like fan-out's, `_reopen_quotes`)."""
    if link is not None and link.follower_symbol and link.follower_volume > 0:
        return (
            d.CopyDecision(
                rule_version=STAFF_RULE_VERSION,
                action=d.CopyAction.OPEN,
                follower_symbol=link.follower_symbol,
                side=d.Side(link.side),
                volume=link.follower_volume,
                order_type=d.OrderType.MARKET,
                sl=link.sl,
                tp=link.tp,
            ),
            {},
        )
    sized = (
        CopyInstruction.objects.filter(trade_link=link, action=CopyInstructionAction.OPEN)
        .exclude(volume=None)
        .order_by("-id")
        .first()
        if link is not None
        else None
    )
    if sized is not None:
        return (
            d.CopyDecision(
                rule_version=STAFF_RULE_VERSION,
                action=d.CopyAction.OPEN,
                follower_symbol=sized.follower_symbol,
                side=d.Side(sized.side),
                volume=sized.volume,
                order_type=d.OrderType.MARKET,
                sl=link.sl if link else None,
                tp=link.tp if link else None,
            ),
            {},
        )
    from .fanout import build_inputs, split_inputs

    event = master["event"]
    if event is None:
        raise CopyTradingError(
            "The master position's opening event is not stored; it cannot be sized.",
            code="POSITION_NOT_FOUND",
        )
    sub = CopySubscription.all_objects.select_related(
        "master", "follower", "follower_account__broker_server"
    ).get(pk=sub.pk)
    ((_, inputs, _),) = build_inputs(event, [sub], existing=True, quotes=quotes)
    decision = d.decide(inputs)
    shared, own = split_inputs(inputs)
    return decision, {**shared, **own}


def _reopen_quotes(sub: CopySubscription, master: dict[str, Any]) -> dict[tuple[int, str], Any]:
    """The follower quotes the pre-trade checks of a fresh re-open decision read, fetched
    like fan-out's (`prefetch_quotes`, only for this subscription), outside any
    transaction; empty when its limits read no price or the opening event is unknown."""
    from .fanout import EventRow, prefetch_quotes

    event = master["event"]
    if event is None:
        return {}
    return prefetch_quotes(EventRow.from_model(event), subscription_ids=[sub.pk])


def drift_reopen(
    *,
    subscription: CopySubscription,
    master_position_id: str,
    reason: str,
    actor: Any,
) -> RemedyResult:
    """Opens the follower's copy again of a master position that is open without it (the
    copy was closed behind the back office, failed, or was never made).

    Guards: the master position must be open; the link goes back to `opening` (closes of
    the master position wait for this open) and gets the new position on fill, one link
    per (subscription, master position) as always; the open is refused at sending time
    if the subscription may not open now (paused, stopped, master paused, kill switch);
    its client order id `sf<link>n<k>` makes a repeated click send nothing twice. A
    position never copied is decided by the copy rules with the follower quote fetched
    as fan-out does, so its price checks (slippage, leverage, risk, margin) can pass.
    """
    reason = _require_reason(reason)
    master = _master_open_position(subscription, master_position_id)
    quotes = _reopen_quotes(subscription, master)  # a venue call: before the transaction
    now = timezone.now()
    with transaction.atomic():
        _lock_account(subscription.follower_account_id)
        sub = CopySubscription.all_objects.select_related("follower_account").get(
            pk=subscription.pk
        )
        link = (
            TradeLink.objects.select_for_update()
            .filter(subscription=sub, master_position_id=master_position_id)
            .first()
        )
        if link is not None and link.status in (
            TradeLinkStatus.OPEN,
            TradeLinkStatus.OPENING,
            TradeLinkStatus.PENDING,
        ):
            raise CopyTradingError(
                f"Master position {master_position_id} has its copy already ({link.status}).",
                code="ALREADY_LINKED",
            )
        decision, inputs = _reopen_decision(sub, link, master, quotes)
        if decision.skipped:
            raise CopyTradingError(
                f"The copy rules refuse this open now: {decision.reason} {decision.detail}",
                code="REFUSED",
            )
        event = master["event"]
        if link is None:
            link = TradeLink.objects.create(
                subscription=sub,
                master_account_id=sub.master_account_id,
                follower_account_id=sub.follower_account_id,
                master_position_id=master_position_id,
                symbol=event.symbol if event else (decision.follower_symbol or ""),
                follower_symbol=decision.follower_symbol or "",
                side=str(decision.side),
                master_volume=master["volume"] or Decimal(0),
                follower_volume=decision.volume or Decimal(0),
                sl=decision.sl,
                tp=decision.tp,
                status=TradeLinkStatus.OPENING,
            )
        else:
            # Like a reconciliation re-open: the link waits in `opening` for the new fill.
            link.status = TradeLinkStatus.OPENING
            link.follower_position_id = ""
            link.follower_volume = decision.volume or Decimal(0)
            link.closed_at = None
            link.reason = f"re-opened by {_actor_name(actor)}"[:200]
            link.save()
        row = _staff_row(
            sub=sub,
            link=link,
            action=CopyInstructionAction.OPEN,
            reason_code="STAFF_REOPEN",
            reason=reason,
            actor=actor,
            coid=_link_coid(link),
            decision=decision,
            remedy=StaffRemedyKind.DRIFT_REOPEN,
            now=now,
        )
        if inputs:
            row["inputs"] = {**row["inputs"], "decision_inputs": inputs}
        inst_id = _insert_and_queue(row, sub.follower_account.broker_server_id)
        remedy = _record(
            kind=StaffRemedyKind.DRIFT_REOPEN,
            account_id=sub.follower_account_id,
            reason=reason,
            actor=actor,
            sub=sub,
            link=link,
            instruction_id=inst_id,
            position_key=f"m:{master_position_id}",
            outcome=f"open of {decision.volume} {decision.follower_symbol} queued"
            if inst_id
            else "nothing sent: the same open was queued already",
        )
    return RemedyResult(remedy, inst_id, remedy.outcome)


def drift_dismiss(
    *,
    account: TradingAccount,
    position_key: str,
    reason: str,
    actor: Any,
    subscription: CopySubscription | None = None,
) -> RemedyResult:
    """Leaves a drifting position as it is, on record: who decided, when and why.

    Guards: one dismissal per (follower account, position key) in the database; a second
    dismissal of the same position answers with the first. `position_key` is
    `f:<follower position id>` or `m:<master position id>`.
    """
    reason = _require_reason(reason)
    if not re.fullmatch(r"[fm]:[^\s]{1,64}", position_key or ""):
        raise CopyTradingError(
            "position_key must be f:<follower position> or m:<master position>.",
            code="VALIDATION_ERROR",
        )
    try:
        with transaction.atomic():
            remedy = _record(
                kind=StaffRemedyKind.DRIFT_DISMISS,
                account_id=account.pk,
                reason=reason,
                actor=actor,
                sub=subscription,
                position_key=position_key,
                outcome="left as it is",
            )
    except IntegrityError:
        remedy = StaffRemedy.objects.get(
            follower_account=account,
            position_key=position_key,
            kind=StaffRemedyKind.DRIFT_DISMISS,
        )
        return RemedyResult(remedy, None, "dismissed already")
    return RemedyResult(remedy, None, remedy.outcome)
