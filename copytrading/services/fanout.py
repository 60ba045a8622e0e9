"""Fan-out: from a stored master event to one copy instruction per subscription.

DESIGN.md step 3. For each event, every live subscription of the master gets one
`CopyInstruction` decided by the pure `copytrading.decision.decide` from stored inputs.

Guards:
- Once per (event, subscription): the instruction's unique constraint, inserted with
  ON CONFLICT DO NOTHING; a redelivered or re-run fan-out changes nothing.
- In order per master: events of one master account are fanned out under that
  account's advisory lock, and a task given event N first handles every earlier event
  of the account that is still pending. So a close is never decided before the open
  it closes, whatever order the tasks run in.
- One transaction per master account and batch: the instructions, the new trade
  links and the event's `done` state commit together, or none of them does.
"""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal
from functools import lru_cache
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, Max
from django.utils import timezone

from accounts.models import TradingAccount
from brokers.models import Symbol, SymbolMap
from config.bulk import insert_rows, update_objects
from config.db import relax_commit

from .. import decision as d
from ..choices import (
    CopyInstructionAction,
    CopyInstructionStatus,
    MasterEventFanoutState,
    MasterEventType,
    TradeLinkStatus,
)
from ..models import CopyInstruction, CopySubscription, MasterEvent, TradeLink

_FANOUT_LOCK_SPACE = 0x5C0B  # first key of the two-key advisory lock: "fan-out of account"
_CACHE_SECONDS = 10.0
OPENING_ACTIONS = {CopyInstructionAction.OPEN, CopyInstructionAction.PLACE_PENDING}


def client_order_id_for(*, event_id: int, subscription_id: int) -> str:
    """The venue idempotency key of the order for (event, subscription): derived, never random."""
    return f"ct{event_id}s{subscription_id}"


# -- reference data, cached briefly per process (symbol specs and maps change rarely;
# a staff override takes effect within _CACHE_SECONDS) --------------------------------

_cache: dict[Any, tuple[float, Any]] = {}


def _cached(key: Any, load: Any) -> Any:
    now = time.monotonic()
    hit = _cache.get(key)
    if hit is not None and now - hit[0] < _CACHE_SECONDS:
        return hit[1]
    value = load()
    _cache[key] = (now, value)
    return value


def clear_reference_cache() -> None:
    """Forgets cached symbol specs and maps (tests, and after a symbol sync)."""
    _cache.clear()


def _symbol_index(server_id: int) -> dict[str, d.SymbolSpec]:
    def load() -> dict[str, d.SymbolSpec]:
        return {
            s.name.upper(): d.SymbolSpec.from_model(s)
            for s in Symbol.objects.filter(broker_server_id=server_id)
        }

    return _cached(("symbols", server_id), load)


def _server_maps(server_id: int, source_server_id: int) -> dict[str, str]:
    """Server-wide maps for masters on `source_server_id`: specific rows over general ones."""

    def load() -> dict[str, str]:
        rows = SymbolMap.objects.filter(
            broker_server_id=server_id, account__isnull=True
        ).values_list("source_server_id", "master_symbol", "follower_symbol")
        general = {m.upper(): f for s, m, f in rows if s is None}
        specific = {m.upper(): f for s, m, f in rows if s == source_server_id}
        return {**general, **specific}

    return _cached(("maps", server_id, source_server_id), load)


def _account_maps(account_ids: list[int], source_server_id: int) -> dict[int, dict[str, str]]:
    maps: dict[int, dict[str, dict[str, str]]] = defaultdict(lambda: {"g": {}, "s": {}})
    rows = SymbolMap.objects.filter(account_id__in=account_ids).values_list(
        "account_id", "source_server_id", "master_symbol", "follower_symbol"
    )
    for account_id, source, master, follower in rows:
        if source is None:
            maps[account_id]["g"][master.upper()] = follower
        elif source == source_server_id:
            maps[account_id]["s"][master.upper()] = follower
    return {a: {**m["g"], **m["s"]} for a, m in maps.items()}


# -- building decision inputs -------------------------------------------------------


def _decimal_or_none(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value)


def _pending_origin(event: MasterEvent) -> str | None:
    """The master order whose fill opened this position, found by client order id."""
    coid = event.client_order_id
    if not coid:
        return None
    placed = (
        MasterEvent.objects.filter(
            account_id=event.account_id,
            client_order_id=coid,
            event_type=MasterEventType.ORDER_PLACED,
        )
        .values_list("master_order_id", flat=True)
        .first()
    )
    return placed or None


def decision_event(event: MasterEvent) -> d.MasterEvent:
    """The stored event as the decision function reads it."""
    kind = d.EventKind(event.event_type)
    closing = kind is d.EventKind.POSITION_CLOSED
    return d.MasterEvent(
        kind=kind,
        symbol=event.symbol,
        side=d.Side(event.side or "buy"),
        volume=event.volume or Decimal(0),
        position_id=event.master_position_id or None,
        order_id=event.master_order_id or None,
        order_type=d.OrderType(event.order_type or "market"),
        price=event.price,
        sl=event.sl,
        tp=event.tp,
        closed_volume=event.volume if closing else None,
        remaining_volume=event.remaining_volume if closing else None,
        from_order_id=_pending_origin(event) if kind is d.EventKind.POSITION_OPENED else None,
        existing=bool(event.synthetic and event.raw.get("existing")),
    )


def link_state(link: TradeLink | None) -> d.LinkState | None:
    """The follower side of a link as the decision function reads it."""
    if link is None:
        return None
    return d.LinkState(
        status=d.LinkStatus(link.status if link.status != TradeLinkStatus.SKIPPED else "failed"),
        follower_symbol=link.follower_symbol,
        follower_side=d.Side(link.side),
        follower_volume=link.follower_volume,
        follower_position_ids=(link.follower_position_id,) if link.follower_position_id else (),
        follower_order_id=link.follower_order_id or None,
        follower_sl=link.sl,
        follower_tp=link.tp,
    )


def _links_for(event: d.MasterEvent, sub_ids: list[int]) -> dict[int, TradeLink]:
    if event.kind in (
        d.EventKind.ORDER_PLACED,
        d.EventKind.ORDER_CANCELLED,
        d.EventKind.ORDER_FILLED,
    ):
        key = {"master_order_id": event.order_id or ""}
    elif event.kind is d.EventKind.POSITION_OPENED and event.from_order_id:
        key = {"master_order_id": event.from_order_id}
    else:
        key = {"master_position_id": event.position_id or ""}
    if not next(iter(key.values())):
        return {}
    links = TradeLink.objects.filter(subscription_id__in=sub_ids, **key)
    found = {link.subscription_id: link for link in links}
    if event.kind is d.EventKind.POSITION_OPENED and event.from_order_id:
        # A position from a master pending order: the follower side is the order's link,
        # unless the position itself was already linked (a redelivery).
        by_position = TradeLink.objects.filter(
            subscription_id__in=sub_ids, master_position_id=event.position_id or ""
        )
        found.update({link.subscription_id: link for link in by_position})
    return found


def build_inputs(
    event: MasterEvent, subscriptions: list[CopySubscription], *, existing: bool = False
) -> list[tuple[CopySubscription, d.DecisionInputs, TradeLink | None]]:
    """The decision inputs of every (event, subscription), read in a fixed number of queries."""
    master_account: TradingAccount = event.account
    master_server = master_account.broker_server
    devent = decision_event(event)
    if existing:
        devent = dataclasses.replace(devent, existing=True)
    master_profile_enabled = (
        all(s.master.enabled for s in subscriptions[:1]) if subscriptions else True
    )
    master = d.AccountSnapshot(
        login=master_account.login,
        currency=master_account.currency,
        equity=master_account.equity or None,
        profile_enabled=master_profile_enabled,
    )
    sub_ids = [s.id for s in subscriptions]
    links = _links_for(devent, sub_ids)
    open_counts = dict(
        TradeLink.objects.filter(
            subscription_id__in=sub_ids,
            status__in=[TradeLinkStatus.OPENING, TradeLinkStatus.OPEN],
        )
        .values("subscription_id")
        .annotate(n=Count("id"))
        .values_list("subscription_id", "n")
    )
    account_maps = _account_maps([s.follower_account_id for s in subscriptions], master_server.id)
    switches = _switches(subscriptions[0].master.paused if subscriptions else False)
    result = []
    for sub in subscriptions:
        follower_account = sub.follower_account
        follower_server = follower_account.broker_server
        server_maps = _server_maps(follower_server.id, master_server.id)
        own_maps = account_maps.get(follower_account.id, {})
        mapping = d.SymbolMapping(
            master_suffix=master_server.symbol_suffix,
            follower_suffix=follower_server.symbol_suffix,
            account_maps=tuple(sorted(own_maps.items())),
            server_maps=tuple(sorted(server_maps.items())),
        )
        link = links.get(sub.id)
        state = link_state(link)
        needed = d.follower_symbol_needed(devent, mapping, state)
        spec = _symbol_index(follower_server.id).get(needed.upper())
        inputs = d.DecisionInputs(
            event=devent,
            subscription=d.SubscriptionSettings.from_model(sub),
            follower=d.AccountSnapshot(
                login=follower_account.login,
                currency=follower_account.currency,
                equity=follower_account.equity or None,
                profile_enabled=sub.follower.enabled,
            ),
            master=master,
            symbol_map=mapping,
            follower_symbol=spec,
            link=state,
            open_copied_positions=open_counts.get(sub.id, 0),
            fx_rate=Decimal(1) if follower_account.currency == master_account.currency else None,
            kill_switches=switches,
        )
        result.append((sub, inputs, link))
    return result


def _switches(master_paused: bool) -> d.KillSwitches:
    from risk.switches import kill_switch_active

    return d.KillSwitches(platform=kill_switch_active(), master=master_paused)


# -- fan-out ------------------------------------------------------------------------


def _instruction_status(decision: d.CopyDecision, link: TradeLink | None) -> str:
    if decision.skipped:
        return CopyInstructionStatus.SKIPPED
    if (
        decision.action not in (d.CopyAction.OPEN, d.CopyAction.PLACE_PENDING)
        and link is not None
        and link.status == TradeLinkStatus.OPENING
    ):
        return CopyInstructionStatus.WAITING  # never overtakes the open in flight
    return CopyInstructionStatus.READY


_LINK_COLUMNS = (
    "subscription",
    "master_account",
    "follower_account",
    "master_position_id",
    "master_order_id",
    "follower_position_id",
    "follower_order_id",
    "symbol",
    "follower_symbol",
    "side",
    "master_volume",
    "follower_volume",
    "open_price",
    "close_price",
    "sl",
    "tp",
    "status",
    "reason",
    "profit",
    "created_at",
    "updated_at",
)
INSTRUCTION_COLUMNS = (
    "origin",
    "master_event",
    "subscription",
    "follower_account",
    "trade_link",
    "action",
    "status",
    "reason",
    "detail",
    "rule_version",
    "client_order_id",
    "follower_symbol",
    "side",
    "volume",
    "attempts",
    "created_at",
    "inputs",
    "decision",
)


SHARED_INPUTS = ("event", "master", "kill_switches")


def split_inputs(inputs: d.DecisionInputs) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the parts every subscription of the event shares, this subscription's parts)."""
    shared = {
        "event": inputs.event.to_dict(),
        "master": inputs.master.to_dict(),
        "kill_switches": inputs.kill_switches.to_dict(),
    }
    return shared, {
        "subscription": _settings_dict(inputs.subscription),
        "follower": inputs.follower.to_dict(),
        "symbol_map": _codec_dict(inputs.symbol_map),
        "follower_symbol": _codec_dict(inputs.follower_symbol) if inputs.follower_symbol else None,
        "link": inputs.link.to_dict() if inputs.link else None,
        "open_copied_positions": inputs.open_copied_positions,
        "fx_rate": str(inputs.fx_rate) if inputs.fx_rate is not None else None,
    }


def instruction_inputs(instruction: CopyInstruction) -> d.DecisionInputs:
    """The full decision inputs of an instruction: its own, merged with its event's shared ones."""
    shared = instruction.master_event.decision_context if instruction.master_event_id else {}
    return d.DecisionInputs.from_dict({**(shared or {}), **instruction.inputs})


# Symbol maps, specs and settings repeat across thousands of followers of one event; they
# are frozen, so their JSON form can be cached by value.
@lru_cache(maxsize=4096)
def _codec_dict(value: Any) -> dict[str, Any]:
    return value.to_dict()


@lru_cache(maxsize=65536)
def _settings_dict(value: d.SubscriptionSettings) -> dict[str, Any]:
    return value.to_dict()


def fanout_subscription_event(
    event: MasterEvent, subscription: CopySubscription, *, existing: bool
) -> dict[int, list[int]]:
    """One event for one subscription only (copying existing positions on subscribe)."""
    return _fanout_event(event, subscriptions=[subscription], existing=existing)


def _fanout_event(
    event: MasterEvent,
    *,
    subscriptions: list[CopySubscription] | None = None,
    existing: bool = False,
) -> dict[int, list[int]]:
    """Decides and stores one event's instructions; returns ready ids by follower server."""
    if subscriptions is None:
        subscriptions = list(
            CopySubscription.objects.filter(master_account_id=event.account_id)
            .select_related("master", "follower", "follower_account__broker_server")
            .order_by("id")
        )
    if not subscriptions:
        return {}
    now = timezone.now()
    decided = []
    new_links = []
    for sub, inputs, link in build_inputs(event, subscriptions, existing=existing):
        decision = d.decide(inputs)
        decided.append((sub, inputs, link, decision))
        if decision.action in (d.CopyAction.OPEN, d.CopyAction.PLACE_PENDING) and link is None:
            is_order = decision.action is d.CopyAction.PLACE_PENDING
            new_links.append(
                {
                    "subscription_id": sub.id,
                    "master_account_id": event.account_id,
                    "follower_account_id": sub.follower_account_id,
                    "master_position_id": "" if is_order else event.master_position_id,
                    "master_order_id": event.master_order_id if is_order else "",
                    "follower_position_id": "",
                    "follower_order_id": "",
                    "symbol": event.symbol,
                    "follower_symbol": decision.follower_symbol or "",
                    "side": str(decision.side),
                    "master_volume": event.volume or Decimal(0),
                    "follower_volume": decision.volume or Decimal(0),
                    "open_price": None,
                    "close_price": None,
                    "sl": decision.sl,
                    "tp": decision.tp,
                    "status": TradeLinkStatus.OPENING,
                    "reason": "",
                    "profit": Decimal(0),
                    "created_at": now,
                    "updated_at": now,
                }
            )
    if event.event_type == MasterEventType.POSITION_OPENED and event.master_position_id:
        # The master's pending order filled: the links of its copies now belong to the
        # position too, so the position's later closes and changes find them.
        order_links = [
            link.id
            for _sub, _inputs, link, _decision in decided
            if link is not None and link.master_order_id and not link.master_position_id
        ]
        if order_links:
            TradeLink.objects.filter(id__in=order_links, master_position_id="").update(
                master_position_id=event.master_position_id, updated_at=now
            )
    link_ids: dict[int, int] = {}
    if new_links:
        insert_rows(TradeLink, new_links, columns=_LINK_COLUMNS)
        key = "master_order_id" if new_links[0]["master_order_id"] else "master_position_id"
        link_ids = dict(
            TradeLink.objects.filter(
                subscription_id__in=[r["subscription_id"] for r in new_links],
                **{key: new_links[0][key]},
            ).values_list("subscription_id", "id")
        )
    rows = []
    shared: dict[str, Any] | None = None
    for sub, inputs, link, decision in decided:
        shared, own = split_inputs(inputs) if shared is None else (shared, split_inputs(inputs)[1])
        status = _instruction_status(decision, link)
        link_id = link.id if link is not None else link_ids.get(sub.id)
        rows.append(
            {
                "origin": "event",
                "master_event_id": event.id,
                "subscription_id": sub.id,
                "follower_account_id": sub.follower_account_id,
                "trade_link_id": link_id,
                "action": str(decision.action),
                "status": status,
                "reason": str(decision.reason) if decision.reason else "",
                "detail": decision.detail[:500],
                "rule_version": decision.rule_version,
                "client_order_id": client_order_id_for(event_id=event.id, subscription_id=sub.id),
                "follower_symbol": decision.follower_symbol or "",
                "side": str(decision.side) if decision.side else "",
                "volume": decision.volume,
                "attempts": 0,
                "created_at": now,
                # A late copy of an existing position decides on an event marked `existing`,
                # unlike the event's shared inputs: it keeps its own full copy.
                "inputs": {**shared, **own} if existing else own,
                "decision": decision.to_dict(),
            }
        )
    inserted = insert_rows(CopyInstruction, rows, columns=INSTRUCTION_COLUMNS)
    if shared is not None:
        event.decision_context = shared
    ready: dict[int, list[int]] = defaultdict(list)
    if inserted:
        for inst_id, server_id in CopyInstruction.objects.filter(
            id__in=inserted, status=CopyInstructionStatus.READY
        ).values_list("id", "follower_account__broker_server_id"):
            ready[server_id].append(inst_id)
    return ready


EXECUTE_CHUNK = 500


def enqueue_execution(
    ready: dict[int, list[int]], *, chunk: int = EXECUTE_CHUNK, keep_first: bool = False
) -> tuple[int, list[int]] | None:
    """Queues execution of ready instructions, one task per follower server and chunk.

    With `keep_first`, the first chunk is not queued but returned, for the caller to
    execute at once: a small fan-out then costs no second queue hop, and a large one
    runs its first chunk here while other workers take the rest.
    """
    from ..tasks import execute_instructions

    kept = None
    for server_id, ids in ready.items():
        for start in range(0, len(ids), chunk):
            part = ids[start : start + chunk]
            if keep_first and kept is None:
                kept = (server_id, part)
                continue
            execute_instructions.delay(server_id, part)
    return kept


def _targets(event_ids: Iterable[int]) -> dict[int, int]:
    """{master account id: its newest not-done event among `event_ids`}."""
    return dict(
        MasterEvent.objects.filter(id__in=list(event_ids))
        .exclude(fanout_state=MasterEventFanoutState.DONE)
        .values_list("account_id")
        .annotate(last=Max("id"))
        .values_list("account_id", "last")
    )


def fanout_events(*, event_ids: Iterable[int]) -> int:
    """Fans out the given events (and any earlier pending event of the same masters), in
    order per master; returns how many events this call handled."""
    handled = 0
    targets = _targets(event_ids)
    for account_id, last_id in sorted(targets.items()):
        handled += _fanout_account(account_id, last_id)
    return handled


def fanout_and_execute(*, event_ids: Iterable[int]) -> int:
    """The fan-out task's work: fan out, then send the first chunk of orders from here."""
    from .execution import instructions_execute

    handled = 0
    targets = _targets(event_ids)
    for account_id, last_id in sorted(targets.items()):
        kept: list[tuple[int, list[int]]] = []
        handled += _fanout_account(account_id, last_id, kept=kept)
        for server_id, ids in kept:
            instructions_execute(server_id=server_id, instruction_ids=ids)
    return handled


FANOUT_CHUNK = 1000


def _fanout_account(
    account_id: int, last_id: int, *, kept: list[tuple[int, list[int]]] | None = None
) -> int:
    """Fans out the pending events of one master account up to `last_id`, in order.

    A session advisory lock on the account keeps one fan-out per master at a time across
    its transactions. Each event's subscriptions are decided in chunks, each committed and
    its orders queued at once, so the first followers' orders are on their way while the
    rest are still being decided. A crash between chunks leaves the event pending; the
    re-run inserts nothing twice (unique per event and subscription) and finishes it.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s, %s)", [_FANOUT_LOCK_SPACE, account_id])
    try:
        events = list(
            MasterEvent.objects.filter(account_id=account_id, id__lte=last_id)
            .exclude(fanout_state=MasterEventFanoutState.DONE)
            .select_related("account__broker_server")
            .order_by("id")
        )
        for event in events:
            subscriptions = list(
                CopySubscription.objects.filter(master_account_id=event.account_id)
                .select_related("master", "follower", "follower_account__broker_server")
                .order_by("id")
            )
            chunks = [
                subscriptions[i : i + FANOUT_CHUNK]
                for i in range(0, len(subscriptions), FANOUT_CHUNK)
            ] or [[]]
            for chunk in chunks:
                # A small fan-out sends its orders from this task (no second queue hop);
                # a large one hands every chunk to the execute workers at once.
                inline = kept if len(chunks) == 1 else None
                _fanout_chunk(event, chunk, inline=inline)
            with transaction.atomic():
                relax_commit()
                event.fanout_state = MasterEventFanoutState.DONE
                event.fanout_started_at = event.fanout_done_at = timezone.now()
                update_objects(
                    [event],
                    columns=[
                        "fanout_state",
                        "fanout_started_at",
                        "fanout_done_at",
                        "decision_context",
                    ],
                )
        return len(events)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_FANOUT_LOCK_SPACE, account_id])


def _fanout_chunk(
    event: MasterEvent,
    subscriptions: list[CopySubscription],
    *,
    inline: list[tuple[int, list[int]]] | None,
) -> None:
    if not subscriptions:
        return
    with transaction.atomic():
        relax_commit()  # replayable: see config.db.relax_commit
        ready = _fanout_event(event, subscriptions=subscriptions)
        if ready:

            def after_commit() -> None:
                first = enqueue_execution(ready, keep_first=inline is not None)
                if first is not None and inline is not None:
                    inline.append(first)

            transaction.on_commit(after_commit)
