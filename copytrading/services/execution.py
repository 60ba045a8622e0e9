"""Execution: ready copy instructions -> follower orders at the venue -> fills and links.

DESIGN.md steps 4 and 5, in three parts so that no network call happens inside a
transaction (STYLE.md habit 3):

1. Claim (transaction): lock the ready instructions, re-check that opening ones are
   still allowed (the subscription's row is read FOR SHARE, so a pause that committed
   before is seen, and one that commits after waits until the orders are recorded:
   from the moment a pause commits, no new opening order is claimed), record each
   `FollowerOrder` with its client order id as `sent`. The fan-out task claims the
   first orders of a small fan-out in its own transaction instead (fanout._fanout_event,
   under the same FOR SHARE read) and hands them to `claimed_execute`.
2. Send: one batch call for the opens of a follower server, concurrent calls for
   closes, changes and cancels, all over the gateway's pooled session.
3. Record (transaction): order states, fills, trade links, instruction outcomes; then
   release what waited for an open, and queue the live push.

A retry (transient venue errors, or the sweeper finding an instruction stuck in
flight after a worker died) sends the same client order id again: the venue answers
with the first order instead of opening a second position, and the gateway looks the
order up first on platforms that do not deduplicate. Instructions are never
re-decided once sent.

The hot path reads and writes with raw SQL on plain rows (config.bulk): a Django queryset
costs 0.5-1 ms of Python per statement here, and a model instance per row more than the
claim itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
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
from config.bulk import cursor, insert_sql, run_together, update_objects, update_rows, update_sql
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
# Refused with MARKET_CLOSED, these wait for the market whatever the subscription's policy
# (no expiry): a follower must not keep what its master closed.
WAITS_FOR_MARKET = {Action.CLOSE, Action.PARTIAL_CLOSE, Action.CANCEL_PENDING}


@dataclass(slots=True)
class LinkRow:
    """The trade link of a claimed instruction, as recording reads and writes it: every
    column recording writes is loaded (update_rows writes each one back)."""

    id: int
    status: str
    reason: str
    follower_position_id: str
    follower_order_id: str
    follower_volume: Decimal
    open_price: Decimal | None
    close_price: Decimal | None
    opened_at: datetime | None
    closed_at: datetime | None
    profit: Decimal
    sl: Decimal | None
    tp: Decimal | None
    updated_at: datetime | None = None


@dataclass(slots=True)
class InstructionRow:
    """A claimed instruction: what sending needs and what recording writes back."""

    id: int
    subscription_id: int
    master_event_id: int | None
    trade_link_id: int | None
    action: str
    status: str
    reason: str
    detail: str
    client_order_id: str
    follower_symbol: str
    side: str
    volume: Decimal | None
    attempts: int
    completed_at: datetime | None
    trade_link: LinkRow | None = None


@dataclass(slots=True)
class OrderRow:
    """A follower order, as recording writes it (every written column loaded)."""

    id: int
    status: str
    reason: str
    message: str
    venue_order_id: str
    venue_position_id: str
    filled_volume: Decimal
    price: Decimal | None
    venue_ts: datetime | None
    completed_at: datetime | None


_LINK_WRITTEN = tuple(f.name for f in dataclasses.fields(LinkRow))
_ORDER_WRITTEN = tuple(f.name for f in dataclasses.fields(OrderRow) if f.name != "id")
_INSTRUCTION_WRITTEN = ("status", "attempts", "reason", "detail", "completed_at")


@dataclass(slots=True)
class Claimed:
    instruction: InstructionRow
    order: OrderRow
    decision: d.CopyDecision
    login: int
    claimed_at: Any = None


@dataclass
class Outcome:
    result: OrderResult | CloseResult | Any | None = None
    error: GatewayError | None = None


# -- 1. claim --------------------------------------------------------------------------

_OPEN_WORK_READY = Status.READY.value
_IN_FLIGHT = Status.IN_FLIGHT.value

# Raw SQL on the hot path: a Django queryset costs 0.5-1 ms of Python per statement here,
# the PostgreSQL round trip 20 us. The claim is one UPDATE: the ready rows are locked in
# id order (SKIP LOCKED: another executor holding one keeps it), marked in flight, and
# returned with what sending needs (the follower's login, the link, the decision's order
# fields), so nothing is read twice.
_CLAIM_SQL = f"""
UPDATE copytrading_copyinstruction AS i SET status = '{_IN_FLIGHT}', claimed_at = %b
FROM (
    SELECT id, follower_account_id, trade_link_id FROM copytrading_copyinstruction
    WHERE id = ANY(%b) AND status = '{_OPEN_WORK_READY}' ORDER BY id FOR UPDATE SKIP LOCKED
) AS c
JOIN accounts_tradingaccount AS a ON a.id = c.follower_account_id
LEFT JOIN copytrading_tradelink AS l ON l.id = c.trade_link_id
WHERE i.id = c.id
RETURNING i.id, i.subscription_id, i.master_event_id, i.trade_link_id, i.action, i.status,
    i.reason, i.detail, i.client_order_id, i.follower_symbol, i.side, i.volume, i.attempts,
    i.completed_at, a.login, i.decision->>'rule_version', i.decision->>'order_type',
    (i.decision->>'price')::numeric, (i.decision->>'sl')::numeric,
    (i.decision->>'tp')::numeric,
    ARRAY(SELECT jsonb_array_elements_text(i.decision->'follower_position_ids')),
    i.decision->>'follower_order_id', COALESCE((i.decision->>'market_wait_seconds')::int, 0),
    {", ".join("l." + c for c in _LINK_WRITTEN)}
"""  # noqa: S608 - constants, not input

# The orders of the claimed instructions and their first transition (`sent`), in one
# statement, built from the instruction rows. ON CONFLICT: a retried instruction keeps
# the order it already has (one order per instruction, one client order id).
_ORDERS_SQL = f"""
WITH o AS (
    INSERT INTO copytrading_followerorder (instruction_id, broker_server_id, account_id,
        client_order_id, action, symbol, side, order_type, requested_volume, filled_volume,
        price, venue_order_id, venue_position_id, status, reason, message, created_at,
        sent_at)
    SELECT i.id, %b, i.follower_account_id, i.client_order_id, i.action, i.follower_symbol,
        i.side, COALESCE(i.decision->>'order_type', ''), i.volume, 0,
        (i.decision->>'price')::numeric, '', '', '{FollowerOrderStatus.SENT.value}', '', '',
        %b, %b
    FROM copytrading_copyinstruction AS i WHERE i.id = ANY(%b)
    ON CONFLICT DO NOTHING
    RETURNING id, instruction_id, price
), t AS (
    INSERT INTO copytrading_followerordertransition (order_id, status, at, venue_ts, detail)
    SELECT id, '{FollowerOrderStatus.SENT.value}', %b, NULL, '{{}}'::jsonb FROM o
)
SELECT instruction_id, id, price FROM o
"""  # noqa: S608 - constants, not input

_ORDER_FIELDS = ", ".join(f.name for f in dataclasses.fields(OrderRow))
_ORDER_SQL = f"SELECT instruction_id, {_ORDER_FIELDS} FROM copytrading_followerorder WHERE instruction_id = ANY(%b)"  # noqa: S608, E501 - constants, not input

# Whether the subscriptions may still open, read FOR SHARE in the claim's transaction (a
# pause that committed before is seen; one that commits after waits for this commit), with
# the platform kill switch (FOR SHARE too) and the master's staff pause: risk.switches'
# opening_blocked in the same statement.
# The switches of the follower's and the master's broker servers are read FOR SHARE too.
_REFUSAL_SQL = """
SELECT s.id, s.status, s.enabled, s.deleted_at IS NOT NULL, f.enabled, m.enabled, m.paused,
    (SELECT k.active FROM risk_killswitch AS k WHERE k.id = 1 FOR SHARE),
    EXISTS (SELECT 1 FROM risk_serverswitch AS w
        WHERE w.active AND w.broker_server_id IN (fa.broker_server_id, ma.broker_server_id)
        FOR SHARE)
FROM copytrading_copysubscription AS s
JOIN copytrading_copyfollower AS f ON f.id = s.follower_id
JOIN copytrading_copymaster AS m ON m.id = s.master_id
JOIN accounts_tradingaccount AS fa ON fa.id = s.follower_account_id
JOIN accounts_tradingaccount AS ma ON ma.id = s.master_account_id
WHERE s.id = ANY(%b) FOR SHARE OF s
"""


def _opening_refusal(subscription_ids: list[int]) -> dict[int, str]:
    """Subscriptions (id -> reason) that may no longer open, read FOR SHARE."""
    refused: dict[int, str] = {}
    paused_masters: list[int] = []
    kill_switch = False
    with cursor() as cur:
        cur.execute(_REFUSAL_SQL, [subscription_ids])
        rows = cur.fetchall()
    for sub_id, status, enabled, deleted, follower_on, master_on, paused, killed, server in rows:
        kill_switch = bool(killed)
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
        elif paused:
            paused_masters.append(sub_id)
        elif server:
            refused[sub_id] = d.SkipReason.KILL_SWITCH
    if kill_switch:
        refused.update(
            dict.fromkeys([s for s in subscription_ids if s not in refused], "KILL_SWITCH")
        )
    else:
        refused.update(dict.fromkeys(paused_masters, "MASTER_PAUSED"))
    return refused


def _refuse(skip: list[InstructionRow], refused: dict[int, str], now: Any) -> None:
    """Skips claimed openings whose subscription may no longer open (rare: a change that
    committed after the decision), with the links they opened and what waited for them."""
    for inst in skip:
        inst.status = Status.SKIPPED
        inst.reason = str(refused[inst.subscription_id])
        inst.detail = "refused at sending time: the subscription changed after the decision"
        inst.completed_at = now
    update_rows(CopyInstruction, skip, columns=["status", "reason", "detail", "completed_at"])
    with cursor() as cur:
        cur.execute(
            "UPDATE copytrading_copyinstruction SET claimed_at = NULL WHERE id = ANY(%b)",
            [[i.id for i in skip]],
        )
    skipped_links = [i.trade_link_id for i in skip if i.trade_link_id]
    TradeLink.objects.filter(id__in=skipped_links, status=TradeLinkStatus.OPENING).update(
        status=TradeLinkStatus.SKIPPED, reason="refused at sending time", updated_at=now
    )
    # Closes that waited for these opens will never have a position to close.
    released = _release_waiting(skipped_links)
    if released:
        from .fanout import enqueue_execution

        transaction.on_commit(lambda: enqueue_execution(released))


def _claimed_rows(rows: list[tuple]) -> list[tuple[InstructionRow, d.CopyDecision, int]]:
    claimed = []
    for row in sorted(rows):
        inst = InstructionRow(*row[:14])
        (login, rule_version, order_type, price, sl, tp, position_ids, order_id, market_wait) = row[
            14:23
        ]
        if row[23] is not None:
            inst.trade_link = LinkRow(*row[23:])
        # What sending and recording read of the stored decision, taken from its JSON in
        # SQL (a full CopyDecision.from_dict per instruction costs more than the claim).
        decision = d.CopyDecision(
            rule_version=rule_version,
            action=d.CopyAction(inst.action),
            follower_symbol=inst.follower_symbol or None,
            side=d.Side(inst.side) if inst.side else None,
            volume=inst.volume,
            order_type=d.OrderType(order_type) if order_type else None,
            price=price,
            sl=sl,
            tp=tp,
            follower_position_ids=tuple(position_ids or ()),
            follower_order_id=order_id,
            market_wait_seconds=market_wait,
        )
        claimed.append((inst, decision, login))
    return claimed


def _claim(server_id: int, instruction_ids: list[int]) -> list[Claimed]:
    now = timezone.now()
    with transaction.atomic():
        relax_commit()  # a lost claim is re-sent under the same client order id
        with cursor() as cur:
            cur.execute(_CLAIM_SQL, [now, instruction_ids])
            rows = cur.fetchall()
        if not rows:
            return []
        claimed = _claimed_rows(rows)
        opening = sorted({i.subscription_id for i, _d, _l in claimed if i.action in OPENING})
        refused = _opening_refusal(opening) if opening else {}
        if refused:
            skip = [
                i for i, _d, _l in claimed if i.action in OPENING and i.subscription_id in refused
            ]
            _refuse(skip, refused, now)
            claimed = [c for c in claimed if c[0].status != Status.SKIPPED]
        return _orders_for(server_id, claimed, now)


def _orders_for(
    server_id: int, claimed: list[tuple[InstructionRow, d.CopyDecision, int]], now: Any
) -> list[Claimed]:
    """Records the follower order (`sent`) of each claimed instruction, in the caller's
    transaction; a retried instruction gets back the order it already has."""
    if not claimed:
        return []
    ids = [inst.id for inst, _d, _l in claimed]
    with cursor() as cur:
        cur.execute(_ORDERS_SQL, [server_id, now, now, ids, now])
        created = {
            inst_id: OrderRow(
                order_id, FollowerOrderStatus.SENT, "", "", "", "", Decimal(0), price, None, None
            )
            for inst_id, order_id, price in cur.fetchall()
        }
        again = [i for i in ids if i not in created]
        if again:
            cur.execute(_ORDER_SQL, [again])
            created.update({row[0]: OrderRow(*row[1:]) for row in cur.fetchall()})
    return [
        Claimed(inst, created[inst.id], decision, login, now) for inst, decision, login in claimed
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


_HELD_SQL = f"""
SELECT id FROM copytrading_copyinstruction
WHERE id = ANY(%b) AND status = '{_IN_FLIGHT}' AND claimed_at = %b ORDER BY id FOR UPDATE
"""  # noqa: S608 - constants, not input


def _record(claimed: list[Claimed], outcomes: dict[int, Outcome]) -> tuple[list[int], list[int]]:
    """Stores what the venue answered; returns (link ids changed, instruction ids to retry).

    Guards: only instructions still held by this claim are recorded (status in flight and
    the same claim time, locked first, in id order). If the sweeper handed a slow batch to
    another executor meanwhile, that executor records it, once; this one records nothing
    for it, so no order gets two fills from two answers to the same client order id.
    """
    if not claimed:
        return [], []
    with transaction.atomic():
        relax_commit()  # a lost record leaves the order in flight; the sweeper finishes it
        with cursor() as cur:
            cur.execute(_HELD_SQL, [[c.instruction.id for c in claimed], claimed[0].claimed_at])
            held = {row[0] for row in cur.fetchall()}
        lost = [c.instruction.id for c in claimed if c.instruction.id not in held]
        if lost:
            logger.warning("instructions %s were taken over by another executor", lost)
        return _record_held([c for c in claimed if c.instruction.id in held], outcomes)


def _record_held(
    claimed: list[Claimed], outcomes: dict[int, Outcome]
) -> tuple[list[int], list[int]]:
    """Writes the outcomes of held instructions, in the caller's transaction."""
    now = timezone.now()
    orders, links, instructions, transitions, fills = [], {}, [], [], []
    retry: list[int] = []
    for c in claimed:
        inst, order, link = c.instruction, c.order, c.instruction.trade_link
        outcome = outcomes.get(inst.id)
        if outcome is None:
            outcome = Outcome(error=GatewayError(GatewayReason.UNKNOWN, "no answer"))
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
            if reason == GatewayReason.MARKET_CLOSED and (
                inst.action in WAITS_FOR_MARKET
                or (inst.action == Action.OPEN and c.decision.market_wait_seconds > 0)
            ):
                # An open under market_closed_policy wait (its link stays opening, closes
                # wait behind it), or a close, partial close or cancel (always: closes must
                # go through; the link stays as it is) waits for the market and is sent
                # again when it opens (services.waiting). The order keeps its client id.
                order.status = FollowerOrderStatus.REJECTED
                inst.status = Status.MARKET
                inst.completed_at = None
            elif gone and inst.action in (
                Action.CLOSE,
                Action.PARTIAL_CLOSE,
                Action.CANCEL_PENDING,
            ):
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
    for link in links.values():
        link.updated_at = now
    # One statement for every write (each a CTE): no dependency between them, and a round
    # trip per table would cost more than the writes themselves.
    writes = []
    if orders:
        writes.append(update_sql(FollowerOrder, orders, columns=_ORDER_WRITTEN))
    if instructions:
        writes.append(update_sql(CopyInstruction, instructions, columns=_INSTRUCTION_WRITTEN))
    if links:
        writes.append(update_sql(TradeLink, list(links.values()), columns=_LINK_WRITTEN[1:]))
    if transitions:
        writes.append(insert_sql(FollowerOrderTransition, transitions, columns=_TRANSITION_COLUMNS))
    if fills:
        writes.append(insert_sql(Fill, fills, columns=_FILL_COLUMNS))
    run_together(writes)
    # After the links' update, in its own statement: a close decided against an opening link
    # and committed meanwhile is seen here (its fan-out read the link FOR SHARE).
    released = _release_waiting(
        [lid for lid, link in links.items() if link.status != TradeLinkStatus.OPENING]
    )
    changed = list(links)
    transaction.on_commit(lambda: _after_commit(released, changed))
    return changed, retry


_TRANSITION_COLUMNS = ("order", "status", "at", "venue_ts", "detail")
_FILL_COLUMNS = (
    "order",
    "volume",
    "price",
    "profit",
    "venue_position_id",
    "venue_ts",
    "created_at",
)
_WAITING_SQL = f"""
SELECT id FROM copytrading_copyinstruction
WHERE trade_link_id = ANY(%b) AND status = '{Status.WAITING.value}' ORDER BY id FOR UPDATE
"""  # noqa: S608 - constants, not input


def _release_waiting(link_ids: list[int]) -> dict[int, list[int]]:
    """Instructions that waited for these links' opens: re-decided with the link as it now
    is (never sent before, so nothing can have happened twice), and made ready or skipped."""
    from .fanout import instruction_inputs, link_state, split_inputs

    if not link_ids:
        return {}
    # Usually nothing waits: one raw statement finds (and locks) what does.
    with cursor() as cur:
        cur.execute(_WAITING_SQL, [link_ids])
        waiting_ids = [row[0] for row in cur.fetchall()]
    if not waiting_ids:
        return {}
    waiting = list(
        CopyInstruction.objects.filter(id__in=waiting_ids)
        .select_related("trade_link", "follower_account", "master_event")
        .order_by("id")
    )
    ready: dict[int, list[int]] = defaultdict(list)
    for inst in waiting:
        inputs = dataclasses.replace(instruction_inputs(inst), link=link_state(inst.trade_link))
        decision = d.decide(inputs, rule_version=inst.rule_version)
        apply_redecision(inst, decision, own_inputs=split_inputs(inputs)[1])
        inst.status = Status.SKIPPED if decision.skipped else Status.READY
        if not decision.skipped:
            ready[inst.follower_account.broker_server_id].append(inst.id)
    if waiting:
        update_objects(waiting, columns=[*REDECIDED_COLUMNS, "status"])
    return ready


REDECIDED_COLUMNS = (
    "inputs",
    "decision",
    "action",
    "reason",
    "detail",
    "volume",
    "side",
    "follower_symbol",
)


def apply_redecision(
    inst: CopyInstruction, decision: d.CopyDecision, *, own_inputs: dict[str, Any]
) -> None:
    """Sets what an instruction decided again (never sent before) now says; the caller sets
    the status and saves REDECIDED_COLUMNS."""
    inst.inputs = own_inputs
    inst.decision = decision.to_dict()
    inst.action = str(decision.action)
    inst.reason = str(decision.reason) if decision.reason else ""
    inst.detail = decision.detail[:500]
    inst.volume = decision.volume
    inst.side = str(decision.side) if decision.side else inst.side
    inst.follower_symbol = decision.follower_symbol or inst.follower_symbol


def _after_commit(released: dict[int, list[int]], link_ids: list[int]) -> None:
    from .fanout import enqueue_execution
    from .live import positions_push_soon

    if released:
        enqueue_execution(released)
    positions_push_soon(link_ids=link_ids)  # coalesced: one push task for many batches


# -- entry points ----------------------------------------------------------------------------

_SERVER_SECONDS = 10.0
_servers: dict[int, tuple[float, BrokerServer]] = {}


def _server(server_id: int) -> BrokerServer:
    """The broker server, cached briefly per process like the symbol specs (a query per
    batch otherwise); an edit of its address or credentials applies within seconds."""
    now = time.monotonic()
    hit = _servers.get(server_id)
    if hit is None or now - hit[0] > _SERVER_SECONDS:
        hit = _servers[server_id] = (now, BrokerServer.objects.get(pk=server_id))
    return hit[1]


def instructions_execute(*, server_id: int, instruction_ids: list[int]) -> int:
    """Claims, sends and records the given ready instructions of one follower server;
    returns how many were sent. Transient failures are queued again with backoff."""
    claimed = _claim(server_id, instruction_ids)
    if not claimed:
        return 0
    return claimed_execute(server_id=server_id, claimed=claimed)


def claimed_execute(*, server_id: int, claimed: list[Claimed]) -> int:
    """Sends and records instructions claimed (committed in flight) by the caller; returns
    how many were sent. Transient failures are queued again with backoff."""
    from brokers.gateways import sync_gateway_for

    if not claimed:
        return 0
    gateway = sync_gateway_for(_server(server_id))
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
