"""Reconciliation: the venue's follower positions against what the trade links say.

DESIGN.md step 6. For each follower account, compares its open positions at the venue
with its open links and the master positions behind them, stores each subscription's
sync status and drift, and repairs by policy, each repair a `CopyInstruction` (origin
`repair`) with its reason, executed like any other:

- a follower position whose master position has closed: closed (REPAIR_CLOSE_ORPHAN);
- a linked follower position closed behind the back office (its own stop, by hand, by
  the broker) while the master position is still open: the link is closed and, when the
  subscription may still open, the position is opened again (REPAIR_REOPEN); except a
  margin stop-out (read from the venue's deals): risk marks it and stops the
  subscription, and nothing is re-opened. A re-open passes the pre-trade checks of a
  normal open (kill and server switches, master pause, lots, leverage, risk, margin,
  slippage, on a quote fetched like fan-out's); one they refuse is stored skipped with
  their reason (the link stays closed, the subscription out of sync);
- a position the back office did not open: flagged as drift; closed when the follower
  is copy-only (`manual_trading_mode` 0) (REPAIR_CLOSE_UNMANAGED).

Guards: repair client order ids derive from the link (or the venue position) and the
repair's count, so running reconciliation again while a repair is in flight sends
nothing twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import defaultdict
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import TradingAccount
from brokers.gateways.errors import GatewayError
from brokers.gateways.types import Position
from brokers.models import BrokerServer
from config.bulk import insert_rows, update_objects

from .. import decision as d
from ..choices import (
    CopyInstructionAction,
    CopyInstructionStatus,
    CopySubscriptionCopyMode,
    CopySubscriptionStatus,
    MasterEventFanoutState,
    MasterEventType,
    SubscriptionSyncStatus,
    TradeLinkStatus,
)
from ..listeners import open_positions_from_events
from ..models import CopyInstruction, CopySubscription, MasterEvent, TradeLink
from .fanout import INSTRUCTION_COLUMNS

REPAIR_RULE_VERSION = "repair-1"
# Client order ids the back office gives its orders: copies (ct), repairs (rp), staff (sf).
OUR_PREFIXES = ("ct", "rp", "sf")
_OPEN_WORK = [
    CopyInstructionStatus.READY,
    CopyInstructionStatus.IN_FLIGHT,
    CopyInstructionStatus.WAITING,
    CopyInstructionStatus.MARKET,  # an open waiting for its market: its link is busy
]


def ready_instruction_row(
    *,
    origin: str,
    rule_version: str,
    sub: CopySubscription,
    link: TradeLink | None,
    action: str,
    reason: str,
    detail: str,
    coid: str,
    decision: d.CopyDecision,
    now: Any,
    inputs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ready instruction that no master event decided (a repair, a staff remedy), as a
    row of INSTRUCTION_COLUMNS; executed like any other."""
    return {
        "origin": origin,
        "master_event_id": None,
        "subscription_id": sub.id,
        "follower_account_id": sub.follower_account_id,
        "trade_link_id": link.id if link else None,
        "action": action,
        "status": CopyInstructionStatus.READY,
        "reason": reason,
        "detail": detail[:500],
        "rule_version": rule_version,
        "client_order_id": coid,
        "follower_symbol": decision.follower_symbol or "",
        "side": str(decision.side) if decision.side else "",
        "volume": decision.volume,
        "attempts": 0,
        "created_at": now,
        "inputs": inputs or {},
        "decision": decision.to_dict(),
    }


def _repair_row(**fields: Any) -> dict[str, Any]:
    return ready_instruction_row(origin="repair", rule_version=REPAIR_RULE_VERSION, **fields)


def _may_open(sub: CopySubscription) -> bool:
    return (
        sub.enabled
        and sub.status == CopySubscriptionStatus.ACTIVE
        and sub.copy_mode == CopySubscriptionCopyMode.FULL
        and sub.follower.enabled
        and sub.master.enabled
    )


def _promote_filled_pending(*, account: TradingAccount, live: dict[str, Position], now: Any) -> int:
    """Pending copies that filled at the follower's venue become open links.

    The follower's resting copy fills by itself (at its own prices), so nothing in the
    stream of the master says when; the position carries the client order id of the
    order that placed it, which is how it is found here.
    """
    by_coid = {p.client_order_id: p for p in live.values() if p.client_order_id}
    if not by_coid:
        return 0
    placed = CopyInstruction.objects.filter(
        follower_account=account,
        action=CopyInstructionAction.PLACE_PENDING,
        trade_link__status=TradeLinkStatus.PENDING,
        client_order_id__in=list(by_coid),
    ).values_list("trade_link_id", "client_order_id")
    promoted = 0
    for link_id, coid in placed:
        position = by_coid[coid]
        promoted += TradeLink.objects.filter(id=link_id, status=TradeLinkStatus.PENDING).update(
            status=TradeLinkStatus.OPEN,
            follower_position_id=position.position_id,
            follower_volume=position.volume,
            open_price=position.open_price,
            opened_at=position.open_ts or now,
            updated_at=now,
        )
    return promoted


def reconcile_account(
    *, account: TradingAccount, positions: list[Position], fetched_at: Any = None
) -> tuple[dict[int, list[int]], dict[int, tuple[str, Decimal]]]:
    """Compares one follower account with the venue; stores repairs and sync status.

    `positions` is the venue's answer fetched at `fetched_at` (default: now). A link that
    changed after that moment (a copy filled or closed while the snapshot was on its way)
    is judged next time: against an older snapshot, a copy that has just filled looks
    closed behind our back and would be re-opened (a second position), and one that has
    just closed looks orphaned. Nor is a copy whose master position has closed an orphan
    while that master's events are still being fanned out: the copy's close is on its way.

    Returns (ready repair ids by server, {subscription id: (sync status, drift)}).
    """
    now = timezone.now()
    fetched_at = fetched_at or now
    live = {p.position_id: p for p in positions}
    subs = list(
        CopySubscription.objects.filter(follower_account=account).select_related(
            "follower", "master"
        )
    )
    subs_by_id = {s.id: s for s in subs}
    _promote_filled_pending(account=account, live=live, now=now)
    links = list(
        TradeLink.objects.filter(
            follower_account=account, status__in=[TradeLinkStatus.OPEN, TradeLinkStatus.OPENING]
        )
    )
    read_at = {link.id: link.updated_at for link in links}
    busy = set(
        CopyInstruction.objects.filter(follower_account=account, status__in=_OPEN_WORK).values_list(
            "trade_link_id", flat=True
        )
    )
    repairs_so_far = defaultdict(int)
    for link_id in CopyInstruction.objects.filter(
        follower_account=account, origin="repair"
    ).values_list("trade_link_id", flat=True):
        repairs_so_far[link_id] += 1
    master_open: dict[int, dict[str, dict]] = {}
    rows: list[dict[str, Any]] = []
    closed_links: list[TradeLink] = []
    drift: dict[int, Decimal] = defaultdict(Decimal)
    trouble: set[int] = set()
    linked_positions = {link.follower_position_id for link in links if link.follower_position_id}
    # Links that moved after the snapshot was fetched: it cannot judge them.
    busy |= {link.id for link in links if link.updated_at and link.updated_at >= fetched_at}
    # Masters whose events are still being fanned out: a close of theirs may be on its way.
    unsettled_masters = set(
        MasterEvent.objects.filter(account_id__in={link.master_account_id for link in links})
        .exclude(fanout_state=MasterEventFanoutState.DONE)
        .values_list("account_id", flat=True)
    )
    stopped_out = _stopped_out(account, links, live, busy)
    reopens: list[tuple[CopySubscription, TradeLink, int, dict[str, dict]]] = []
    for link in links:
        if link.status != TradeLinkStatus.OPEN or link.id in busy:
            continue  # an open or a close is under way: judge it when it has landed
        if link.follower_position_id in stopped_out:
            continue  # the venue's margin stop-out: recorded by risk below, never re-opened
        sub = subs_by_id.get(link.subscription_id) or CopySubscription.all_objects.select_related(
            "follower", "master"
        ).get(pk=link.subscription_id)
        if link.master_account_id not in master_open:
            master_open[link.master_account_id] = open_positions_from_events(link.master_account_id)
        master_still_open = link.master_position_id in master_open[link.master_account_id]
        held = live.get(link.follower_position_id)
        n = repairs_so_far[link.id]
        if held is not None and not master_still_open:
            if link.master_account_id in unsettled_masters:
                continue  # the master's close is being copied: no orphan yet
            decision = d.CopyDecision(
                rule_version=REPAIR_RULE_VERSION,
                action=d.CopyAction.CLOSE,
                follower_symbol=link.follower_symbol,
                side=d.Side(link.side),
                volume=held.volume,
                follower_position_ids=(link.follower_position_id,),
            )
            rows.append(
                _repair_row(
                    sub=sub,
                    link=link,
                    action=CopyInstructionAction.CLOSE,
                    reason="REPAIR_CLOSE_ORPHAN",
                    detail=f"master position {link.master_position_id} is closed; "
                    f"follower still holds {held.volume} lots",
                    coid=f"rp{link.id}n{n}",
                    decision=decision,
                    now=now,
                )
            )
            drift[sub.id] += held.volume
            trouble.add(sub.id)
        elif held is None:
            link.status = TradeLinkStatus.CLOSED
            link.reason = "closed at the venue, not by the back office"
            link.closed_at = now
            link.updated_at = now
            closed_links.append(link)
            trouble.add(sub.id)
            if master_still_open:
                drift[sub.id] += link.follower_volume
                if _may_open(sub):
                    reopens.append((sub, link, n, master_open[link.master_account_id]))
        elif held.volume != link.follower_volume:
            drift[sub.id] += abs(held.volume - link.follower_volume)
            trouble.add(sub.id)
    # Positions the back office opened whose link has ended (e.g. a pending copy that filled
    # just as the master cancelled or closed): orphans, closed.
    ours = {
        p.client_order_id: p
        for pid, p in live.items()
        if pid not in linked_positions and (p.client_order_id or "").startswith(OUR_PREFIXES)
    }
    if ours:
        for coid, link_id, link_status, link_updated, sub_id in CopyInstruction.objects.filter(
            follower_account=account, client_order_id__in=list(ours)
        ).values_list(
            "client_order_id",
            "trade_link_id",
            "trade_link__status",
            "trade_link__updated_at",
            "subscription_id",
        ):
            if link_status in (
                TradeLinkStatus.OPEN,
                TradeLinkStatus.OPENING,
                TradeLinkStatus.PENDING,
            ):
                continue
            if link_updated is not None and link_updated >= fetched_at:
                continue  # closed after the snapshot: the position is gone by now
            p = ours[coid]
            sub = subs_by_id.get(sub_id) or CopySubscription.all_objects.get(pk=sub_id)
            decision = d.CopyDecision(
                rule_version=REPAIR_RULE_VERSION,
                action=d.CopyAction.CLOSE,
                follower_symbol=p.symbol,
                side=d.Side(str(p.side)),
                volume=p.volume,
                follower_position_ids=(p.position_id,),
            )
            rows.append(
                _repair_row(
                    sub=sub,
                    link=None,
                    action=CopyInstructionAction.CLOSE,
                    reason="REPAIR_CLOSE_ORPHAN",
                    detail=f"position {p.position_id} was opened by the back office ({coid}) "
                    f"but its link {link_id} has ended",
                    coid=f"rpo{account.id}p{p.position_id}",
                    decision=decision,
                    now=now,
                )
            )
            drift[sub.id] += p.volume
            trouble.add(sub.id)
    # Positions the back office did not open.
    unmanaged = [
        p
        for pid, p in live.items()
        if pid not in linked_positions and not (p.client_order_id or "").startswith(OUR_PREFIXES)
    ]
    follower_profile = subs[0].follower if subs else None
    for p in unmanaged:
        for sub in subs:
            drift[sub.id] += p.volume
            trouble.add(sub.id)
        if follower_profile is not None and not follower_profile.manual_trading_mode and subs:
            decision = d.CopyDecision(
                rule_version=REPAIR_RULE_VERSION,
                action=d.CopyAction.CLOSE,
                follower_symbol=p.symbol,
                side=d.Side(str(p.side)),
                volume=p.volume,
                follower_position_ids=(p.position_id,),
            )
            rows.append(
                _repair_row(
                    sub=subs[0],
                    link=None,
                    action=CopyInstructionAction.CLOSE,
                    reason="REPAIR_CLOSE_UNMANAGED",
                    detail=f"position {p.position_id} ({p.volume} {p.symbol}) was not opened by "
                    "the back office and the follower is copy-only",
                    coid=f"rpu{account.id}p{p.position_id}",
                    decision=decision,
                    now=now,
                )
            )
    # Re-opens pass the pre-trade checks of a normal open (venue quotes fetched here,
    # before the transaction); one that fails them is stored skipped with the reason.
    skipped: list[dict[str, Any]] = []
    for sub, link, n, master_positions in reopens:
        row = _reopen_row(sub=sub, link=link, n=n, master=master_positions, now=now)
        (rows if row["status"] == CopyInstructionStatus.READY else skipped).append(row)
    statuses: dict[int, tuple[str, Decimal]] = {}
    with transaction.atomic():
        # The links judged may have moved since they were read (an order recorded, a close
        # queued meanwhile): locked and read again, a link that changed or has work under
        # way keeps its state and gets no repair; the next run judges it afresh.
        moved = _moved_since_read(
            {r["trade_link_id"] for r in rows if r["trade_link_id"]}
            | {link.id for link in closed_links},
            read_at,
        )
        if moved:
            rows = [r for r in rows if r["trade_link_id"] not in moved]
            skipped = [r for r in skipped if r["trade_link_id"] not in moved]
            closed_links = [link for link in closed_links if link.id not in moved]
        if closed_links:
            update_objects(closed_links, columns=["status", "reason", "closed_at", "updated_at"])
            # A reopen repair needs the link back in `opening` so closes wait for it.
            reopen = {r["trade_link_id"] for r in rows if r["reason"] == "REPAIR_REOPEN"}
            TradeLink.objects.filter(id__in=reopen).update(
                status=TradeLinkStatus.OPENING, follower_position_id="", updated_at=now
            )
        inserted = insert_rows(CopyInstruction, rows, columns=INSTRUCTION_COLUMNS)
        insert_rows(CopyInstruction, skipped, columns=INSTRUCTION_COLUMNS)
        for sub in subs:
            if sub.id not in trouble:
                status = SubscriptionSyncStatus.IN_SYNC
            elif any(r["subscription_id"] == sub.id for r in rows):
                status = SubscriptionSyncStatus.DRIFTING  # repairs are under way
            else:
                status = SubscriptionSyncStatus.OUT_OF_SYNC  # nothing the policy may repair
            statuses[sub.id] = (status, drift.get(sub.id, Decimal(0)))
            CopySubscription.all_objects.filter(pk=sub.pk).update(
                sync_status=status, drift=drift.get(sub.id, Decimal(0)), synced_at=now
            )
    if stopped_out:
        from risk.monitors import stop_outs_record

        stop_outs_record(
            server_id=account.broker_server_id,
            stop_outs=[{"login": account.login, "position_id": p} for p in sorted(stopped_out)],
        )
    return ({account.broker_server_id: inserted} if inserted else {}), statuses


def _reopen_row(
    *, sub: CopySubscription, link: TradeLink, n: int, master: dict[str, dict], now: Any
) -> dict[str, Any]:
    """The REPAIR_REOPEN of a link whose follower position vanished: decided by the copy
    rules from the master's opening event (at its current volume and levels), with the
    inputs and quotes fan-out gathers (`build_inputs`, `prefetch_quotes`), so it passes
    the same pre-trade checks as a normal open (switches, master pause, lots, leverage,
    risk, margin, slippage). It keeps the link's size when the checks allow it (a lots
    limit may cut it) and its levels; a refused one comes back skipped with the rules'
    reason and detail. The market's state is left to the venue's answer, as before."""
    from .fanout import EventRow, build_inputs, prefetch_quotes, split_inputs

    state = master.get(link.master_position_id, {})
    opened = (
        MasterEvent.objects.filter(
            account_id=link.master_account_id,
            master_position_id=link.master_position_id,
            event_type=MasterEventType.POSITION_OPENED,
        )
        .select_related("account__broker_server")
        .order_by("id")
        .first()
    )
    detail = (
        f"follower position {link.follower_position_id} was closed at the venue while "
        f"master position {link.master_position_id} is open"
    )
    inputs_dict: dict[str, Any] = {}
    if opened is None:
        decision = d.CopyDecision(
            rule_version=REPAIR_RULE_VERSION,
            action=d.CopyAction.SKIP,
            reason=d.SkipReason.NOTHING_TO_DO,
            detail="the master position's opening event is not stored: it cannot be checked",
        )
    else:
        event = dataclasses.replace(
            EventRow.from_model(opened),
            volume=state.get("volume") or opened.volume,
            sl=state.get("sl"),
            tp=state.get("tp"),
            existing=None,  # it was copied before: not an existing position to copy
        )
        sub = CopySubscription.all_objects.select_related(
            "master", "follower", "follower_account__broker_server", "master_account"
        ).get(pk=sub.pk)
        quotes = prefetch_quotes(event, subscription_ids=[sub.id])
        ((_, inputs, _),) = build_inputs(event, [sub], quotes=quotes)
        spec = inputs.follower_symbol
        inputs = dataclasses.replace(
            inputs,
            link=None,  # the link being repaired, closed by now
            follower_symbol=dataclasses.replace(spec, trading=True) if spec else None,
        )
        checked = d.decide(inputs)
        shared, own = split_inputs(inputs)
        inputs_dict = {"decision_inputs": {**shared, **own}}
        if checked.action is d.CopyAction.PLACE_PENDING:
            checked = d.CopyDecision(
                rule_version=checked.rule_version,
                action=d.CopyAction.SKIP,
                reason=d.SkipReason.MAX_SLIPPAGE,
                detail=f"a repair re-opens at market only: {checked.detail}",
                checks=checked.checks,
            )
        if checked.skipped:
            decision = dataclasses.replace(checked, rule_version=REPAIR_RULE_VERSION)
        else:
            assert checked.volume is not None
            decision = d.CopyDecision(
                rule_version=REPAIR_RULE_VERSION,
                action=d.CopyAction.OPEN,
                follower_symbol=link.follower_symbol,
                side=d.Side(link.side),
                volume=min(link.follower_volume, checked.volume),
                order_type=d.OrderType.MARKET,
                sl=link.sl,
                tp=link.tp,
                checks=checked.checks,
                market_wait_seconds=checked.market_wait_seconds,
            )
    row = _repair_row(
        sub=sub,
        link=link,
        action=CopyInstructionAction.OPEN,
        reason="REPAIR_REOPEN",
        detail=detail,
        coid=f"rp{link.id}n{n}",
        decision=decision,
        now=now,
        inputs=inputs_dict,
    )
    if decision.skipped:
        assert decision.reason is not None
        row.update(
            status=CopyInstructionStatus.SKIPPED,
            reason=str(decision.reason),
            detail=f"{detail}; not re-opened: {decision.detail}"[:500],
            volume=None,
        )
    return row


def _moved_since_read(link_ids: set[int], read_at: dict[int, Any]) -> set[int]:
    """Of these links, those changed since `read_at` or with an instruction under way,
    read under a row lock (in the caller's transaction)."""
    if not link_ids:
        return set()
    current = dict(
        TradeLink.objects.select_for_update()
        .filter(id__in=link_ids)
        .order_by("id")
        .values_list("id", "updated_at")
    )
    working = set(
        CopyInstruction.objects.filter(
            trade_link_id__in=link_ids, status__in=_OPEN_WORK
        ).values_list("trade_link_id", flat=True)
    )
    return {i for i in link_ids if i in working or current.get(i) != read_at.get(i)}


def _stopped_out(
    account: TradingAccount, links: list[TradeLink], live: dict[str, Position], busy: set
) -> set[str]:
    """Follower positions gone from the venue that its margin stop-out closed (asked of
    the venue's deals only when a linked position has vanished): those copies are marked
    by risk and never re-opened, whichever of the stream and reconciliation sees it first."""
    vanished = [
        link.follower_position_id
        for link in links
        if link.status == TradeLinkStatus.OPEN
        and link.id not in busy
        and link.follower_position_id
        and link.follower_position_id not in live
    ]
    if not vanished:
        return set()
    from risk.monitors import stopped_out_positions

    return stopped_out_positions(account=account, position_ids=vanished)


async def _positions_of(gateway: Any, logins: list[int]) -> dict[int, list[Position] | None]:
    limit = asyncio.Semaphore(20)

    async def one(login: int) -> tuple[int, list[Position] | None]:
        async with limit:
            try:
                return login, await gateway.list_positions(login)
            except GatewayError:
                return login, None

    return dict(await asyncio.gather(*(one(login) for login in logins)))


def followers_reconcile(*, account_ids: list[int] | None = None) -> dict[int, tuple[str, Decimal]]:
    """Reconciles follower accounts (all with live subscriptions when None), server by server;
    queues the repairs. Returns each subscription's (sync status, drift)."""
    from brokers.gateways import sync_gateway_for

    from .fanout import enqueue_execution

    accounts = TradingAccount.objects.filter(
        id__in=CopySubscription.objects.values("follower_account_id")
    ).select_related("broker_server")
    if account_ids is not None:
        accounts = accounts.filter(id__in=account_ids)
    by_server: dict[int, list[TradingAccount]] = defaultdict(list)
    for account in accounts:
        by_server[account.broker_server_id].append(account)
    statuses: dict[int, tuple[str, Decimal]] = {}
    ready: dict[int, list[int]] = defaultdict(list)
    for server_id, server_accounts in by_server.items():
        server = BrokerServer.objects.get(pk=server_id)
        gateway = sync_gateway_for(server)
        fetched_at = timezone.now()  # before asking: whatever changes after is judged later
        positions = gateway.run(_positions_of(gateway.gateway, [a.login for a in server_accounts]))
        for account in server_accounts:
            if positions.get(account.login) is None:
                continue  # the venue did not answer for it: judge it next time
            repairs, sub_statuses = reconcile_account(
                account=account, positions=positions[account.login], fetched_at=fetched_at
            )
            statuses.update(sub_statuses)
            for sid, ids in repairs.items():
                ready[sid].extend(ids)
    if ready:
        enqueue_execution(ready)
    return statuses
