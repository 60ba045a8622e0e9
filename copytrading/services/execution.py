"""Execution: ready copy instructions -> follower orders at the venue -> fills and links.

DESIGN.md steps 4 and 5, in three parts so that no network call happens inside a
transaction (STYLE.md habit 3):

1. Claim (transaction): lock the ready instructions, re-check that opening ones are
   still allowed (the subscription's row is read FOR SHARE, so a pause that committed
   before is seen, and one that commits after waits until the orders are recorded:
   from the moment a pause commits, no new opening order is claimed), record each
   `FollowerOrder` with its client order id as `sent`.
2. Send: one batch call for the opens of a follower server, concurrent calls for
   closes, changes and cancels, all over the gateway's pooled session.
3. Record (transaction): order states, fills, trade links, instruction outcomes; then
   release what waited for an open, and queue the live push.

A retry (transient venue errors, or the sweeper finding an instruction stuck in
flight after a worker died) sends the same client order id again: the venue answers
with the first order instead of opening a second position, and the gateway looks the
order up first on platforms that do not deduplicate. Instructions are never
re-decided once sent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from brokers.gateways.errors import GatewayError, GatewayReason
from brokers.gateways.types import (
    CloseResult,
    OrderRequest,
    OrderResult,
    OrderStatus,
    OrderType,
    Side,
)
from brokers.models import BrokerServer
from config.bulk import insert_rows, insert_rows_returning, update_objects
from config.db import relax_commit

from .. import decision as d
from ..choices import (
    CopyInstructionAction as Action,
)
from ..choices import (
    CopyInstructionStatus as Status,
)
from ..choices import (
    CopySubscriptionStatus,
    FollowerOrderStatus,
    TradeLinkStatus,
)
from ..models import CopyInstruction, Fill, FollowerOrder, FollowerOrderTransition, TradeLink

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 6
OPENING = {Action.OPEN, Action.PLACE_PENDING}


@dataclass
class Claimed:
    instruction: CopyInstruction
    order: FollowerOrder
    decision: d.CopyDecision
    login: int
    claimed_at: Any = None


@dataclass
class Outcome:
    result: OrderResult | CloseResult | Any | None = None
    error: GatewayError | None = None


# -- 1. claim --------------------------------------------------------------------------


def _opening_refusal(rows: dict[int, tuple]) -> dict[int, str]:
    """Subscriptions (id -> reason) that may no longer open, read FOR SHARE."""
    refused = {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT s.id, s.status, s.enabled, s.deleted_at IS NOT NULL, f.enabled, m.enabled "
            "FROM copytrading_copysubscription s "
            "JOIN copytrading_copyfollower f ON f.id = s.follower_id "
            "JOIN copytrading_copymaster m ON m.id = s.master_id "
            "WHERE s.id = ANY(%s) FOR SHARE OF s",
            [list(rows)],
        )
        for sub_id, status, enabled, deleted, follower_on, master_on in cursor.fetchall():
            if deleted:
                refused[sub_id] = "SUBSCRIPTION_DELETED"
            elif status == CopySubscriptionStatus.PAUSED:
                refused[sub_id] = d.SkipReason.SUBSCRIPTION_PAUSED
            elif status == CopySubscriptionStatus.STOPPED_BY_RISK:
                refused[sub_id] = d.SkipReason.SUBSCRIPTION_STOPPED
            elif not enabled:
                refused[sub_id] = d.SkipReason.SUBSCRIPTION_DISABLED
            elif not follower_on:
                refused[sub_id] = d.SkipReason.FOLLOWER_DISABLED
            elif not master_on:
                refused[sub_id] = d.SkipReason.MASTER_DISABLED
    from risk.switches import opening_blocked

    blocked = opening_blocked(subscription_ids=[s for s in rows if s not in refused])
    refused.update(blocked)
    return refused


_ORDER_COLUMNS = (
    "instruction",
    "broker_server",
    "account",
    "client_order_id",
    "action",
    "symbol",
    "side",
    "order_type",
    "requested_volume",
    "filled_volume",
    "price",
    "venue_order_id",
    "venue_position_id",
    "status",
    "reason",
    "message",
    "created_at",
    "sent_at",
)


def _claim(server_id: int, instruction_ids: list[int]) -> list[Claimed]:
    now = timezone.now()
    with transaction.atomic():
        relax_commit()  # a lost claim is re-sent under the same client order id
        instructions = list(
            CopyInstruction.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(id__in=instruction_ids, status=Status.READY)
            .select_related("follower_account", "trade_link")
            # The stored inputs are for audit and replay; sending needs only the decision.
            .defer("inputs")
            .order_by("id")
        )
        if not instructions:
            return []
        opening = {i.subscription_id: i for i in instructions if i.action in OPENING}
        refused = _opening_refusal(opening) if opening else {}
        go, skip = [], []
        for inst in instructions:
            if inst.action in OPENING and inst.subscription_id in refused:
                skip.append(inst)
            else:
                go.append(inst)
        for inst in skip:
            inst.status = Status.SKIPPED
            inst.reason = str(refused[inst.subscription_id])
            inst.detail = "refused at sending time: the subscription changed after the decision"
            inst.completed_at = now
        if skip:
            update_objects(skip, columns=["status", "reason", "detail", "completed_at"])
            skipped_links = [i.trade_link_id for i in skip if i.trade_link_id]
            TradeLink.objects.filter(id__in=skipped_links, status=TradeLinkStatus.OPENING).update(
                status=TradeLinkStatus.SKIPPED, reason="refused at sending time", updated_at=now
            )
            # Closes that waited for these opens will never have a position to close.
            released = _release_waiting(skipped_links)
            if released:
                from .fanout import enqueue_execution

                transaction.on_commit(lambda: enqueue_execution(released))
        decisions = {i.id: d.CopyDecision.from_dict(i.decision) for i in go}
        rows = []
        for inst in go:
            dec = decisions[inst.id]
            rows.append(
                {
                    "instruction_id": inst.id,
                    "broker_server_id": server_id,
                    "account_id": inst.follower_account_id,
                    "client_order_id": inst.client_order_id,
                    "action": inst.action,
                    "symbol": inst.follower_symbol,
                    "side": inst.side,
                    "order_type": str(dec.order_type) if dec.order_type else "",
                    "requested_volume": inst.volume,
                    "filled_volume": Decimal(0),
                    "price": dec.price,
                    "venue_order_id": "",
                    "venue_position_id": "",
                    "status": FollowerOrderStatus.SENT,
                    "reason": "",
                    "message": "",
                    "created_at": now,
                    "sent_at": now,
                }
            )
        created = dict(
            insert_rows_returning(
                FollowerOrder, rows, columns=_ORDER_COLUMNS, returning=("instruction_id", "id")
            )
        )
        new_order_ids = list(created.values())
        insert_rows(
            FollowerOrderTransition,
            [
                {
                    "order_id": oid,
                    "status": FollowerOrderStatus.SENT,
                    "at": now,
                    "venue_ts": None,
                    "detail": {},
                }
                for oid in new_order_ids
            ],
            columns=("order", "status", "at", "venue_ts", "detail"),
            ignore_conflicts=False,
        )
        CopyInstruction.objects.filter(id__in=[i.id for i in go]).update(
            status=Status.IN_FLIGHT, claimed_at=now
        )
        # New orders are built from the rows just inserted; only a retry reads its order back.
        orders = {
            row["instruction_id"]: FollowerOrder(id=created[row["instruction_id"]], **row)
            for row in rows
            if row["instruction_id"] in created
        }
        again = [i.id for i in go if i.id not in orders]
        if again:
            orders.update(
                {
                    o.instruction_id: o
                    for o in FollowerOrder.objects.filter(instruction_id__in=again)
                }
            )
    return [
        Claimed(inst, orders[inst.id], decisions[inst.id], inst.follower_account.login, now)
        for inst in go
    ]


# -- 2. send -----------------------------------------------------------------------------


async def _send_async(gateway: Any, claimed: list[Claimed]) -> dict[int, Outcome]:
    outcomes: dict[int, Outcome] = {}
    opens = [c for c in claimed if c.instruction.action in OPENING]
    others = [c for c in claimed if c.instruction.action not in OPENING]

    async def place() -> None:
        if not opens:
            return
        requests = [
            OrderRequest(
                account=c.login,
                symbol=c.instruction.follower_symbol,
                side=Side(c.instruction.side),
                volume=c.instruction.volume,
                client_order_id=c.instruction.client_order_id,
                type=OrderType(str(c.decision.order_type or "market")),
                price=c.decision.price if c.instruction.action == Action.PLACE_PENDING else None,
                sl=c.decision.sl,
                tp=c.decision.tp,
                comment=f"copy of {c.instruction.master_event_id}",
            )
            for c in opens
        ]
        try:
            results = await gateway.place_orders(requests)
        except GatewayError as exc:
            for c in opens:
                outcomes[c.instruction.id] = Outcome(error=exc)
            return
        for c, result in zip(opens, results, strict=True):
            outcomes[c.instruction.id] = Outcome(result=result)

    async def other(c: Claimed) -> None:
        inst, dec = c.instruction, c.decision
        position_id = (dec.follower_position_ids or (inst.trade_link.follower_position_id,))[0]
        try:
            if inst.action in (Action.CLOSE, Action.PARTIAL_CLOSE):
                result = await gateway.close_position(
                    account=c.login,
                    position_id=position_id,
                    client_order_id=inst.client_order_id,
                    volume=inst.volume if inst.action == Action.PARTIAL_CLOSE else None,
                )
            elif inst.action == Action.MODIFY_SLTP:
                result = await gateway.modify_position(
                    account=c.login, position_id=position_id, sl=dec.sl, tp=dec.tp
                )
            elif inst.action == Action.CANCEL_PENDING:
                order_id = dec.follower_order_id or inst.trade_link.follower_order_id
                result = await gateway.cancel_order(account=c.login, order_id=order_id)
            else:  # pragma: no cover - every action is handled above
                raise ValueError(inst.action)
            outcomes[inst.id] = Outcome(result=result)
        except GatewayError as exc:
            outcomes[inst.id] = Outcome(error=exc)

    await asyncio.gather(place(), *(other(c) for c in others))
    return outcomes


# -- 3. record ----------------------------------------------------------------------------


def _transient(outcome: Outcome) -> bool:
    if outcome.error is not None:
        return outcome.error.retryable
    result = outcome.result
    return (
        isinstance(result, OrderResult)
        and result.status is OrderStatus.REJECTED
        and result.retryable
    )


def _record(claimed: list[Claimed], outcomes: dict[int, Outcome]) -> tuple[list[int], list[int]]:
    """Stores what the venue answered; returns (link ids changed, instruction ids to retry).

    Guards: only instructions still held by this claim are recorded (status in flight and
    the same claim time, locked first). If the sweeper handed a slow batch to another
    executor meanwhile, that executor records it, once; this one records nothing for it,
    so no order gets two fills from two answers to the same client order id.
    """
    with transaction.atomic():
        relax_commit()
        held = set(
            CopyInstruction.objects.select_for_update()
            .filter(
                id__in=[c.instruction.id for c in claimed],
                status=Status.IN_FLIGHT,
                claimed_at=claimed[0].claimed_at if claimed else None,
            )
            .values_list("id", flat=True)
        )
        lost = [c.instruction.id for c in claimed if c.instruction.id not in held]
        if lost:
            logger.warning("instructions %s were taken over by another executor", lost)
        return _record_held([c for c in claimed if c.instruction.id in held], outcomes)


def _record_held(
    claimed: list[Claimed], outcomes: dict[int, Outcome]
) -> tuple[list[int], list[int]]:
    now = timezone.now()
    orders, links, instructions, transitions, fills = [], {}, [], [], []
    retry: list[int] = []
    for c in claimed:
        inst, order, link = c.instruction, c.order, c.instruction.trade_link
        outcome = outcomes.get(
            inst.id, Outcome(error=GatewayError(GatewayReason.UNKNOWN, "no answer"))
        )
        if _transient(outcome) and inst.attempts + 1 < MAX_ATTEMPTS:
            inst.status = Status.READY
            inst.attempts += 1
            instructions.append(inst)
            retry.append(inst.id)
            continue
        inst.attempts += 1
        inst.completed_at = now
        venue_ts = None
        if outcome.error is not None or (
            isinstance(outcome.result, OrderResult)
            and outcome.result.status is OrderStatus.REJECTED
        ):
            reason = (
                outcome.error.reason if outcome.error is not None else outcome.result.reason
            ) or GatewayReason.UNKNOWN
            message = str(outcome.error) if outcome.error is not None else outcome.result.message
            gone = reason in (GatewayReason.POSITION_NOT_FOUND, GatewayReason.ORDER_NOT_FOUND)
            if gone and inst.action in (Action.CLOSE, Action.PARTIAL_CLOSE, Action.CANCEL_PENDING):
                # Already gone at the venue (its own SL/TP, or by hand): nothing left to close.
                order.status = FollowerOrderStatus.REJECTED
                inst.status = Status.DONE
                if link is not None:
                    link.status = TradeLinkStatus.CLOSED
                    link.reason = f"{reason.value} at the venue"
                    link.follower_volume = Decimal(0)
                    link.closed_at = now
                    links[link.id] = link
            else:
                order.status = (
                    FollowerOrderStatus.REJECTED
                    if reason != GatewayReason.UNKNOWN
                    else FollowerOrderStatus.FAILED
                )
                inst.status = Status.FAILED
                if link is not None and inst.action in OPENING:
                    link.status = TradeLinkStatus.FAILED
                    link.reason = reason.value
                    link.follower_volume = Decimal(0)
                    links[link.id] = link
            order.reason = reason.value
            order.message = message[:500]
            inst.reason = reason.value.upper()
            inst.detail = message[:500]
        else:
            result = outcome.result
            inst.status = Status.DONE
            if isinstance(result, OrderResult):
                venue_ts = result.ts
                order.venue_order_id = result.order_id or ""
                order.venue_position_id = result.position_id or ""
                order.filled_volume = result.filled_volume
                order.price = result.price
                order.status = FollowerOrderStatus(result.status.value)
                if result.filled_volume > 0:
                    fills.append(
                        {
                            "order_id": order.id,
                            "volume": result.filled_volume,
                            "price": result.price,
                            "profit": None,
                            "venue_position_id": result.position_id or "",
                            "venue_ts": result.ts or now,
                            "created_at": now,
                        }
                    )
                if link is not None:
                    if result.position_id and result.filled_volume > 0:
                        link.status = TradeLinkStatus.OPEN
                        link.follower_position_id = result.position_id
                        link.follower_volume = result.filled_volume
                        link.open_price = result.price
                        link.opened_at = result.ts or now
                    else:
                        link.status = TradeLinkStatus.PENDING
                        link.follower_order_id = result.order_id or ""
                    links[link.id] = link
            elif isinstance(result, CloseResult):
                venue_ts = result.ts
                order.status = FollowerOrderStatus.FILLED
                order.filled_volume = result.closed_volume
                order.price = result.price
                order.venue_position_id = result.position_id
                fills.append(
                    {
                        "order_id": order.id,
                        "volume": result.closed_volume,
                        "price": result.price,
                        "profit": result.profit,
                        "venue_position_id": result.position_id,
                        "venue_ts": result.ts,
                        "created_at": now,
                    }
                )
                if link is not None:
                    link.follower_volume = result.remaining_volume
                    link.profit = (link.profit or Decimal(0)) + result.profit
                    if result.remaining_volume <= 0:
                        link.status = TradeLinkStatus.CLOSED
                        link.close_price = result.price
                        link.closed_at = result.ts
                    links[link.id] = link
            else:  # modify (a Position) or cancel (None)
                order.status = FollowerOrderStatus.FILLED
                if link is not None:
                    if inst.action == Action.MODIFY_SLTP:
                        link.sl, link.tp = c.decision.sl, c.decision.tp
                    elif inst.action == Action.CANCEL_PENDING:
                        link.status = TradeLinkStatus.CLOSED
                        link.reason = "pending order cancelled"
                        link.closed_at = now
                    links[link.id] = link
        order.venue_ts = venue_ts
        order.completed_at = now
        orders.append(order)
        instructions.append(inst)
        transitions.append(
            {
                "order_id": order.id,
                "status": order.status,
                "at": now,
                "venue_ts": venue_ts,
                "detail": {"reason": order.reason} if order.reason else {},
            }
        )
    with transaction.atomic():
        relax_commit()  # a lost record leaves the order in flight; the sweeper finishes it
        if orders:
            update_objects(
                orders,
                columns=[
                    "status",
                    "reason",
                    "message",
                    "venue_order_id",
                    "venue_position_id",
                    "filled_volume",
                    "price",
                    "venue_ts",
                    "completed_at",
                ],
            )
        if instructions:
            update_objects(
                instructions, columns=["status", "attempts", "reason", "detail", "completed_at"]
            )
        if links:
            for link in links.values():
                link.updated_at = now
            update_objects(
                list(links.values()),
                columns=[
                    "status",
                    "reason",
                    "follower_position_id",
                    "follower_order_id",
                    "follower_volume",
                    "open_price",
                    "close_price",
                    "opened_at",
                    "closed_at",
                    "profit",
                    "sl",
                    "tp",
                    "updated_at",
                ],
            )
        insert_rows(
            FollowerOrderTransition,
            transitions,
            columns=("order", "status", "at", "venue_ts", "detail"),
            ignore_conflicts=False,
        )
        insert_rows(
            Fill,
            fills,
            columns=(
                "order",
                "volume",
                "price",
                "profit",
                "venue_position_id",
                "venue_ts",
                "created_at",
            ),
            ignore_conflicts=False,
        )
        released = _release_waiting(
            [lid for lid, link in links.items() if link.status != TradeLinkStatus.OPENING]
        )
        changed = list(links)
        transaction.on_commit(lambda: _after_commit(released, changed))
    return changed, retry


def _release_waiting(link_ids: list[int]) -> dict[int, list[int]]:
    """Instructions that waited for these links' opens: re-decided with the link as it now
    is (never sent before, so nothing can have happened twice), and made ready or skipped."""
    from .fanout import instruction_inputs, link_state, split_inputs

    if not link_ids:
        return {}
    waiting = list(
        CopyInstruction.objects.select_for_update(of=("self",))
        .filter(trade_link_id__in=link_ids, status=Status.WAITING)
        .select_related("trade_link", "follower_account", "master_event")
        .order_by("id")
    )
    ready: dict[int, list[int]] = defaultdict(list)
    for inst in waiting:
        inputs = dataclasses.replace(instruction_inputs(inst), link=link_state(inst.trade_link))
        decision = d.decide(inputs, rule_version=inst.rule_version)
        inst.inputs = split_inputs(inputs)[1]
        inst.decision = decision.to_dict()
        inst.action = str(decision.action)
        inst.reason = str(decision.reason) if decision.reason else ""
        inst.detail = decision.detail[:500]
        inst.volume = decision.volume
        inst.side = str(decision.side) if decision.side else inst.side
        inst.follower_symbol = decision.follower_symbol or inst.follower_symbol
        inst.status = Status.SKIPPED if decision.skipped else Status.READY
        if not decision.skipped:
            ready[inst.follower_account.broker_server_id].append(inst.id)
    if waiting:
        update_objects(
            waiting,
            columns=[
                "inputs",
                "decision",
                "action",
                "reason",
                "detail",
                "volume",
                "side",
                "follower_symbol",
                "status",
            ],
        )
    return ready


def _after_commit(released: dict[int, list[int]], link_ids: list[int]) -> None:
    from ..tasks import push_positions
    from .fanout import enqueue_execution

    if released:
        enqueue_execution(released)
    if link_ids:
        push_positions.delay(link_ids)


# -- entry points ----------------------------------------------------------------------------


def instructions_execute(*, server_id: int, instruction_ids: list[int]) -> int:
    """Claims, sends and records the given ready instructions of one follower server;
    returns how many were sent. Transient failures are queued again with backoff."""
    from brokers.gateways import sync_gateway_for

    claimed = _claim(server_id, instruction_ids)
    if not claimed:
        return 0
    server = BrokerServer.objects.get(pk=server_id)
    gateway = sync_gateway_for(server)
    try:
        outcomes = gateway.run(_send_async(gateway.gateway, claimed))
    except GatewayError as exc:
        outcomes = {c.instruction.id: Outcome(error=exc) for c in claimed}
    _changed, retry = _record(claimed, outcomes)
    if retry:
        from ..tasks import execute_instructions

        attempts = max(c.instruction.attempts for c in claimed)
        execute_instructions.apply_async((server_id, retry), countdown=min(2**attempts, 30))
    return len(claimed)


STUCK_IN_FLIGHT = timedelta(seconds=30)
LOST_READY = timedelta(seconds=10)
LOST_READY_BACKLOG = timedelta(seconds=120)


def instructions_recover(*, now: Any = None) -> int:
    """The sweeper: instructions left in flight by a worker that died, and ready ones whose
    task was lost, are queued again under the same client order id (never re-decided).
    Returns how many were queued."""
    from .fanout import enqueue_execution

    now = now or timezone.now()
    with transaction.atomic():
        stuck = list(
            CopyInstruction.objects.select_for_update(skip_locked=True)
            .filter(status=Status.IN_FLIGHT, claimed_at__lt=now - STUCK_IN_FLIGHT)
            .values_list("id", flat=True)[:5000]
        )
        CopyInstruction.objects.filter(id__in=stuck).update(status=Status.READY)
    from config.redis import get_redis

    # With a backlog in the execute queue, a ready instruction may just be waiting its turn.
    lost_after = LOST_READY if get_redis().llen("execute") == 0 else LOST_READY_BACKLOG
    lost = list(
        CopyInstruction.objects.filter(status=Status.READY, created_at__lt=now - lost_after)
        .exclude(id__in=stuck)
        .values_list("id", flat=True)[:5000]
    )
    ids = stuck + lost
    if not ids:
        return 0
    ready: dict[int, list[int]] = defaultdict(list)
    for inst_id, server_id in CopyInstruction.objects.filter(id__in=ids).values_list(
        "id", "follower_account__broker_server_id"
    ):
        ready[server_id].append(inst_id)
    enqueue_execution(ready)
    return len(ids)
