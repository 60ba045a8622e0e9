"""Fan-out: from a stored master event to one copy instruction per subscription.

DESIGN.md step 3. For each event, every live subscription of the master gets one
`CopyInstruction` decided by the pure `copytrading.decision.decide` from stored inputs.

Guards:
- Once per (event, subscription): the instruction's unique constraint, inserted with
  ON CONFLICT DO NOTHING; a redelivered or re-run fan-out changes nothing.
- In order per master: events of one master account are fanned out under that
  account's advisory lock, and a task given event N handles every event of the account
  still pending, in id order (the earlier ones first, the later ones too: a backlog is
  cleared by one task). So a close is never decided before the open it closes, whatever
  order the tasks run in.
- One transaction per master account and batch: the instructions, the new trade
  links and the event's `done` state commit together, or none of them does.
- The fan-out task claims the orders of an event's last chunk (all of a small fan-out)
  in that chunk's transaction (see `_fanout_one`): its subscriptions are read FOR SHARE
  there, so a pause or kill switch that commits before is seen by the decision, and one
  that commits after waits for the claim, as the executor's own claim does.

The hot path reads and writes with raw SQL on plain rows: a Django queryset costs
0.5-1 ms of Python per statement here, and a model instance per subscription, link and
account costs more than deciding.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from django.db import transaction
from django.utils import timezone

from brokers.models import Symbol, SymbolMap
from config.bulk import cursor, insert_rows_returning
from config.db import relax_commit
from risk.checks import Exposure, FollowerQuote, PretradeLimits, currency_rates

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
_OPENING_KINDS = {MasterEventType.POSITION_OPENED, MasterEventType.ORDER_PLACED}
_LINKED_KINDS = {
    MasterEventType.POSITION_MODIFIED,
    MasterEventType.POSITION_CLOSED,
    MasterEventType.ORDER_CANCELLED,
}


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


def _account_maps(source_server_id: int) -> dict[int, dict[str, str]]:
    """Account-level maps for masters on `source_server_id`, of every account that has any
    (few do), cached like the server-wide ones: specific rows over general ones."""

    def load() -> dict[int, dict[str, str]]:
        maps: dict[int, dict[str, dict[str, str]]] = defaultdict(lambda: {"g": {}, "s": {}})
        rows = SymbolMap.objects.filter(account__isnull=False).values_list(
            "account_id", "source_server_id", "master_symbol", "follower_symbol"
        )
        for account_id, source, master, follower in rows:
            if source is None:
                maps[account_id]["g"][master.upper()] = follower
            elif source == source_server_id:
                maps[account_id]["s"][master.upper()] = follower
        return {a: {**m["g"], **m["s"]} for a, m in maps.items()}

    return _cached(("account_maps", source_server_id), load)


def _mapping(
    master_suffix: str, follower_server_id: int, follower_suffix: str, source_server_id: int
) -> d.SymbolMapping:
    """The symbol mapping of a follower without account maps: one object per server, so
    its (large) hash and JSON form are computed once, not per follower."""

    def load() -> d.SymbolMapping:
        return d.SymbolMapping(
            master_suffix=master_suffix,
            follower_suffix=follower_suffix,
            server_maps=tuple(sorted(_server_maps(follower_server_id, source_server_id).items())),
        )

    return _cached(
        ("mapping", master_suffix, follower_server_id, follower_suffix, source_server_id), load
    )


# -- rows: what fan-out reads, without model instances --------------------------------


@dataclass(slots=True)
class EventRow:
    """A master event with its master account, as fan-out reads it."""

    id: int
    account_id: int
    event_type: str
    synthetic: bool
    master_position_id: str
    master_order_id: str
    client_order_id: str
    symbol: str
    side: str
    order_type: str
    volume: Decimal | None
    remaining_volume: Decimal | None
    price: Decimal | None
    sl: Decimal | None
    tp: Decimal | None
    existing: Any
    decision_context: dict[str, Any] | None
    pending_origin: str | None
    master_login: int
    master_currency: str
    master_equity: Decimal | None
    master_server_id: int
    master_suffix: str

    @classmethod
    def from_model(cls, event: MasterEvent) -> EventRow:
        account = event.account
        return cls(
            id=event.id,
            account_id=event.account_id,
            event_type=event.event_type,
            synthetic=event.synthetic,
            master_position_id=event.master_position_id,
            master_order_id=event.master_order_id,
            client_order_id=event.client_order_id,
            symbol=event.symbol,
            side=event.side,
            order_type=event.order_type,
            volume=event.volume,
            remaining_volume=event.remaining_volume,
            price=event.price,
            sl=event.sl,
            tp=event.tp,
            existing=event.raw.get("existing") if event.synthetic else None,
            decision_context=event.decision_context,
            pending_origin=_pending_origin(event),
            master_login=account.login,
            master_currency=account.currency,
            master_equity=account.equity,
            master_server_id=account.broker_server_id,
            master_suffix=account.broker_server.symbol_suffix,
        )


_EVENTS_SQL = f"""
SELECT e.id, e.account_id, e.event_type, e.synthetic, e.master_position_id, e.master_order_id,
    e.client_order_id, e.symbol, e.side, e.order_type, e.volume, e.remaining_volume, e.price,
    e.sl, e.tp, CASE WHEN e.synthetic THEN e.raw->'existing' END, e.decision_context,
    CASE WHEN e.event_type = '{MasterEventType.POSITION_OPENED.value}' AND e.client_order_id <> ''
    THEN (
        SELECT p.master_order_id FROM copytrading_masterevent AS p
        WHERE p.account_id = e.account_id AND p.client_order_id = e.client_order_id
            AND p.event_type = '{MasterEventType.ORDER_PLACED.value}'
        ORDER BY p.id LIMIT 1
    ) END,
    a.login, a.currency, a.equity, a.broker_server_id, b.symbol_suffix
FROM copytrading_masterevent AS e
JOIN accounts_tradingaccount AS a ON a.id = e.account_id
JOIN brokers_brokerserver AS b ON b.id = a.broker_server_id
WHERE e.account_id = %b AND e.id <= %b AND e.fanout_state <> '{MasterEventFanoutState.DONE.value}'
ORDER BY e.id
"""  # noqa: S608 - constants, not input


def _json(value: Any) -> Any:
    # Django loads jsonb as text on its connections (it parses JSON fields itself).
    return json.loads(value) if isinstance(value, str) else value


def _pending_events(account_id: int, last_id: int) -> list[EventRow]:
    with cursor() as cur:
        cur.execute(_EVENTS_SQL, [account_id, last_id])
        rows = cur.fetchall()
    events = []
    for row in rows:
        event = EventRow(*row)
        event.existing = _json(event.existing)
        event.decision_context = _json(event.decision_context)
        event.pending_origin = event.pending_origin or None
        events.append(event)
    return events


@dataclass(slots=True)
class SubRow:
    """A live subscription with what deciding needs of its follower, as fan-out reads it.

    The settings carry the model's field names, so `SubscriptionSettings.from_model`
    reads a row as it reads a model instance."""

    id: int
    enabled: bool
    status: int
    copy_mode: int
    volume_mode: int
    risk_multiplier: Decimal
    fixed_volume: Decimal
    base_equity: Decimal
    copy_sl: bool
    copy_tp: bool
    copy_partial_close: bool
    copy_pending_orders: bool
    copy_existing_positions: bool
    reverse_direction: bool
    max_volume: Decimal
    min_volume: Decimal
    max_positions: int
    symbols_mode: int
    symbols: str
    follower_account_id: int
    follower_enabled: bool
    master_enabled: bool
    master_paused: bool
    login: int
    currency: str
    equity: Decimal | None
    server_id: int
    suffix: str
    kill_switch: bool
    margin: Decimal | None
    leverage: int
    server_switch: bool
    master_server_switch: bool
    limits: PretradeLimits | None = None

    @classmethod
    def from_model(cls, sub: CopySubscription) -> SubRow:
        account = sub.follower_account
        from risk.models import SubscriptionLimits
        from risk.switches import kill_switch_active, server_switches_active

        switched = server_switches_active(
            server_ids=[account.broker_server_id, sub.master_account.broker_server_id]
        )
        return cls(
            **{f: getattr(sub, f) for f in _SETTING_FIELDS},
            follower_account_id=sub.follower_account_id,
            follower_enabled=sub.follower.enabled,
            master_enabled=sub.master.enabled,
            master_paused=sub.master.paused,
            login=account.login,
            currency=account.currency,
            equity=account.equity,
            server_id=account.broker_server_id,
            suffix=account.broker_server.symbol_suffix,
            kill_switch=kill_switch_active(),
            margin=account.margin,
            leverage=account.leverage,
            server_switch=account.broker_server_id in switched,
            master_server_switch=sub.master_account.broker_server_id in switched,
            limits=PretradeLimits.from_model(
                SubscriptionLimits.objects.filter(subscription_id=sub.id).first()
            ),
        )

    @classmethod
    def from_sql(cls, row: tuple) -> SubRow:
        """A row of _SUBSCRIPTIONS_SQL: the subscription's columns, then its limits' (NULL
        without a limits row)."""
        sub = cls(*row[:_LIMIT_COLUMN])
        if row[_LIMIT_COLUMN] is not None:
            sub.limits = PretradeLimits.from_model(
                _LimitsRow(*row[_LIMIT_COLUMN:])  # type: ignore[arg-type]
            )
        return sub


@dataclass(slots=True)
class _LimitsRow:
    max_lots_per_symbol: Decimal
    max_lots_total: Decimal
    max_leverage: Decimal
    max_risk_per_trade_pct: Decimal
    require_master_sl: bool
    margin_policy: str
    max_slippage: Decimal
    slippage_policy: str
    market_closed_policy: str
    market_wait_seconds: int


_SETTING_FIELDS = tuple(f.name for f in dataclasses.fields(SubRow))[:19]
_LIMIT_COLUMN = len(dataclasses.fields(SubRow)) - 1
_LIMIT_FIELDS = tuple(f.name for f in dataclasses.fields(_LimitsRow))

# The switches (platform, and per broker server of the follower and of the master) are
# read FOR SHARE with the subscriptions: one that commits before is seen by the decision,
# one that commits after waits for the claim (the executor's claim reads them again). The
# limits are joined only where a pre-trade limit is set (PretradeLimits.any_set): no
# columns to decode for the many subscriptions without.
_SUBSCRIPTIONS_SQL = f"""
SELECT {", ".join("s." + f for f in _SETTING_FIELDS)},
    s.follower_account_id, f.enabled, m.enabled, m.paused, a.login, a.currency, a.equity,
    a.broker_server_id, b.symbol_suffix,
    COALESCE((SELECT k.active FROM risk_killswitch AS k WHERE k.id = 1 FOR SHARE), false),
    a.margin, a.leverage,
    COALESCE((SELECT w.active FROM risk_serverswitch AS w
        WHERE w.broker_server_id = a.broker_server_id FOR SHARE), false),
    COALESCE((SELECT w.active FROM risk_serverswitch AS w
        WHERE w.broker_server_id = ma.broker_server_id FOR SHARE), false),
    {", ".join("l." + f for f in _LIMIT_FIELDS)}
FROM copytrading_copysubscription AS s
JOIN copytrading_copyfollower AS f ON f.id = s.follower_id
JOIN copytrading_copymaster AS m ON m.id = s.master_id
JOIN accounts_tradingaccount AS a ON a.id = s.follower_account_id
JOIN accounts_tradingaccount AS ma ON ma.id = s.master_account_id
JOIN brokers_brokerserver AS b ON b.id = a.broker_server_id
LEFT JOIN risk_subscriptionlimits AS l ON l.subscription_id = s.id AND (
    l.max_lots_per_symbol > 0 OR l.max_lots_total > 0 OR l.max_leverage > 0
    OR l.max_risk_per_trade_pct > 0 OR l.require_master_sl OR l.margin_policy <> 'off'
    OR l.max_slippage > 0 OR l.market_closed_policy <> 'skip')
WHERE {{where}} AND s.deleted_at IS NULL
ORDER BY s.id
"""  # noqa: S608 - constants, not input


def _subscriptions(account_id: int, *, lock: bool) -> list[SubRow]:
    """The master's live subscriptions, in id order; with `lock`, read FOR SHARE (a pause
    of any of them then waits until this transaction commits)."""
    sql = _SUBSCRIPTIONS_SQL.format(where="s.master_account_id = %b")
    with cursor() as cur:
        cur.execute(sql + (" FOR SHARE OF s" if lock else ""), [account_id])
        return [SubRow.from_sql(row) for row in cur.fetchall()]


def _subscriptions_by_id(ids: list[int], *, lock: bool) -> list[SubRow]:
    """These subscriptions, read again (a deleted one is left out), as `_subscriptions`."""
    sql = _SUBSCRIPTIONS_SQL.format(where="s.id = ANY(%b)")
    with cursor() as cur:
        cur.execute(sql + (" FOR SHARE OF s" if lock else ""), [ids])
        return [SubRow.from_sql(row) for row in cur.fetchall()]


@dataclass(slots=True)
class LinkRecord:
    """A trade link as fan-out reads it (and the executor writes it back, so every column
    it writes is here: see execution.LinkRow)."""

    id: int
    subscription_id: int
    master_position_id: str
    master_order_id: str
    follower_symbol: str
    side: str
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
    updated_at: datetime | None


_LINK_FIELDS = tuple(f.name for f in dataclasses.fields(LinkRecord))
_LINKS_SQL = (
    f"SELECT {', '.join(_LINK_FIELDS)} FROM copytrading_tradelink "  # noqa: S608 - constants
    "WHERE subscription_id = ANY(%b) AND {key} = %b"
)


def _links_where(sub_ids: list[int], key: str, value: str, *, lock: bool) -> list[LinkRecord]:
    sql = _LINKS_SQL.format(key=key) + (" FOR SHARE" if lock else "")
    with cursor() as cur:
        cur.execute(sql, [sub_ids, value])
        return [LinkRecord(*row) for row in cur.fetchall()]


# -- building decision inputs -------------------------------------------------------


def _pending_origin(event: MasterEvent) -> str | None:
    """The master order whose fill opened this position, found by client order id."""
    coid = event.client_order_id
    if not coid or event.event_type != MasterEventType.POSITION_OPENED:
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


def decision_event(event: MasterEvent | EventRow) -> d.MasterEvent:
    """The stored event as the decision function reads it."""
    if not isinstance(event, EventRow):
        event = EventRow.from_model(event)
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
        from_order_id=event.pending_origin if kind is d.EventKind.POSITION_OPENED else None,
        existing=bool(event.synthetic and event.existing),
    )


def link_state(link: TradeLink | LinkRecord | None) -> d.LinkState | None:
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


def _links_for(event: d.MasterEvent, sub_ids: list[int], *, lock: bool) -> dict[int, LinkRecord]:
    if event.kind in (
        d.EventKind.ORDER_PLACED,
        d.EventKind.ORDER_CANCELLED,
        d.EventKind.ORDER_FILLED,
    ):
        key, value = "master_order_id", event.order_id or ""
    elif event.kind is d.EventKind.POSITION_OPENED and event.from_order_id:
        key, value = "master_order_id", event.from_order_id
    else:
        key, value = "master_position_id", event.position_id or ""
    if not value:
        return {}
    found = {link.subscription_id: link for link in _links_where(sub_ids, key, value, lock=lock)}
    if event.kind is d.EventKind.POSITION_OPENED and event.from_order_id:
        # A position from a master pending order: the follower side is the order's link,
        # unless the position itself was already linked (a redelivery).
        by_position = _links_where(
            sub_ids, "master_position_id", event.position_id or "", lock=lock
        )
        found.update({link.subscription_id: link for link in by_position})
    return found


def _open_counts(sub_ids: list[int]) -> dict[int, int]:
    with cursor() as cur:
        cur.execute(
            "SELECT subscription_id, count(*) FROM copytrading_tradelink "
            "WHERE subscription_id = ANY(%b) AND status = ANY(%b) GROUP BY subscription_id",
            [sub_ids, [TradeLinkStatus.OPENING.value, TradeLinkStatus.OPEN.value]],
        )
        return dict(cur.fetchall())


_LINK_LOTS_SQL = """
SELECT l.subscription_id, upper(l.follower_symbol), sum(l.follower_volume),
    sum(l.follower_volume * p.price), count(*) - count(p.price)
FROM copytrading_tradelink AS l
CROSS JOIN LATERAL (SELECT COALESCE(l.open_price, (
    SELECT (i.decision->>'price')::numeric FROM copytrading_copyinstruction AS i
    WHERE i.trade_link_id = l.id AND i.action IN ('open', 'place_pending') LIMIT 1)) AS price
) AS p
WHERE l.subscription_id = ANY(%b) AND l.status = ANY(%b) AND NOT l.id = ANY(%b)
GROUP BY 1, 2
"""  # noqa: S608 - constants, not input
_HELD_STATUSES = [
    TradeLinkStatus.OPENING.value,
    TradeLinkStatus.OPEN.value,
    TradeLinkStatus.PENDING.value,
]


def _held_lots(
    sub_ids: list[int], exclude: list[int]
) -> dict[int, dict[str, tuple[Decimal, Decimal, int]]]:
    """{subscription: {follower symbol: (open lots, sum of lots x open price, links without
    a price)}} over the open copies (opening, open, pending) of these subscriptions. A copy
    still opening is valued at the price its instruction was decided at."""
    held: dict[int, dict[str, tuple[Decimal, Decimal, int]]] = defaultdict(dict)
    with cursor() as cur:
        cur.execute(_LINK_LOTS_SQL, [sub_ids, _HELD_STATUSES, exclude])
        for sub_id, symbol, lots, cost, unpriced in cur.fetchall():
            held[sub_id][symbol] = (lots, cost or Decimal(0), unpriced)
    return held


def _symbol_values(server_id: int) -> dict[str, tuple[Decimal, str]]:
    """{SYMBOL: (contract size, margin currency)} of a server, cached like the specs."""

    def load() -> dict[str, tuple[Decimal, str]]:
        return {
            name.upper(): (contract, margin)
            for name, contract, margin in Symbol.objects.filter(
                broker_server_id=server_id
            ).values_list("name", "contract_size", "margin_currency")
        }

    return _cached(("symbol_values", server_id), load)


def _exposure(
    row: SubRow,
    held: dict[str, tuple[Decimal, Decimal, int]],
    symbol: str,
) -> Exposure:
    """What the subscription holds (lots on `symbol`, in total, notional at open prices in
    the account currency), with the account's margin figures."""
    values = _symbol_values(row.server_id)
    total = Decimal(0)
    notional: Decimal | None = Decimal(0)
    for name, (lots, cost, unpriced) in held.items():
        total += lots
        contract, margin_currency = values.get(name, (None, ""))
        quote_rate, base_rate = currency_rates(name, row.suffix, margin_currency, row.currency)
        if notional is None or contract is None:
            notional = None
        elif quote_rate is not None and not unpriced:
            notional += contract * cost * quote_rate
        elif base_rate is not None:
            notional += contract * lots * base_rate
        else:
            notional = None
    return Exposure(
        symbol_lots=held.get(symbol.upper(), (Decimal(0),))[0],
        total_lots=total,
        open_notional=notional,
        margin=row.margin,
        leverage=row.leverage,
    )


def _quote(row: SubRow, symbol: str, quotes: dict[tuple[int, str], Any]) -> FollowerQuote | None:
    """The follower symbol's quote and currency rates for this account; None when the
    server has no such symbol."""
    value = _symbol_values(row.server_id).get(symbol.upper())
    if value is None:
        return None
    contract, margin_currency = value
    quote_rate, base_rate = currency_rates(symbol, row.suffix, margin_currency, row.currency)
    bid_ask = quotes.get((row.server_id, symbol.upper()))
    return _follower_quote(
        contract,
        bid_ask[0] if bid_ask else None,
        bid_ask[1] if bid_ask else None,
        quote_rate,
        base_rate,
    )


@lru_cache(maxsize=4096)
def _follower_quote(
    contract: Decimal,
    bid: Decimal | None,
    ask: Decimal | None,
    quote_rate: Decimal | None,
    base_rate: Decimal | None,
) -> FollowerQuote:
    # One object per distinct quote: its JSON form is then cached by value (_codec_dict).
    return FollowerQuote(
        contract_size=contract, bid=bid, ask=ask, quote_rate=quote_rate, base_rate=base_rate
    )


def _follower_mapping(
    event: EventRow, own_maps: dict[str, str] | None, server_id: int, suffix: str
) -> d.SymbolMapping:
    """The symbol mapping of one follower account: the server's (one shared object), or
    with the account's own maps over it."""
    if not own_maps:
        return _mapping(event.master_suffix, server_id, suffix, event.master_server_id)
    return d.SymbolMapping(
        master_suffix=event.master_suffix,
        follower_suffix=suffix,
        account_maps=tuple(sorted(own_maps.items())),
        server_maps=tuple(sorted(_server_maps(server_id, event.master_server_id).items())),
    )


def _needs_exposure(limits: PretradeLimits | None) -> bool:
    return limits is not None and bool(
        limits.max_lots_per_symbol or limits.max_lots_total or limits.max_leverage
    )


def build_inputs(
    event: MasterEvent | EventRow,
    subscriptions: list[CopySubscription] | list[SubRow],
    *,
    existing: bool = False,
    lock_links: bool = False,
    quotes: dict[tuple[int, str], Any] | None = None,
) -> list[tuple[Any, d.DecisionInputs, LinkRecord | None]]:
    """The decision inputs of every (event, subscription), read in a fixed number of queries.

    Takes model instances (remedies, copying existing positions) or rows (fan-out); with
    `lock_links`, the links are read FOR SHARE (see `_fanout_event`). `quotes`: {(follower
    server id, SYMBOL): (bid, ask)} fetched before the transaction (`prefetch_quotes`); the
    pre-trade checks that need a price answer NO_PRICE without one."""
    if not isinstance(event, EventRow):
        event = EventRow.from_model(event)
    rows = [s if isinstance(s, SubRow) else SubRow.from_model(s) for s in subscriptions]
    devent = decision_event(event)
    if existing:
        devent = dataclasses.replace(devent, existing=True)
    master = d.AccountSnapshot(
        login=event.master_login,
        currency=event.master_currency,
        equity=event.master_equity or None,
        profile_enabled=rows[0].master_enabled if rows else True,
    )
    sub_ids = [s.id for s in rows]
    links = _links_for(devent, sub_ids, lock=lock_links)
    # Only a subscription with max_positions reads its open copies.
    counted = [s.id for s in rows if s.max_positions > 0]
    open_counts = _open_counts(counted) if counted else {}
    opening = event.event_type in _OPENING_KINDS
    # Only a subscription with a lots or leverage limit reads its open lots.
    exposed = [s.id for s in rows if opening and _needs_exposure(s.limits)]
    # The event's own link (an open waiting for its market, decided again) is not held yet.
    held = _held_lots(exposed, [link.id for link in links.values()]) if exposed else {}
    account_maps = _account_maps(event.master_server_id)
    switch_sets = {
        on: d.KillSwitches(
            platform=rows[0].kill_switch if rows else False,
            master=rows[0].master_paused if rows else False,
            master_server=rows[0].master_server_switch if rows else False,
            follower_server=on,
        )
        for on in (False, True)
    }
    symbols_needed: dict[tuple[str, d.SymbolMapping], str] = {}
    result = []
    for sub, row in zip(subscriptions, rows, strict=True):
        mapping = _follower_mapping(
            event, account_maps.get(row.follower_account_id), row.server_id, row.suffix
        )
        link = links.get(row.id)
        state = link_state(link)
        if state is None:
            # Without a link the symbol depends only on the event and the mapping.
            needed = symbols_needed.get((devent.symbol, mapping))
            if needed is None:
                needed = symbols_needed[(devent.symbol, mapping)] = d.follower_symbol_needed(
                    devent, mapping, None
                )
        else:
            needed = d.follower_symbol_needed(devent, mapping, state)
        limits = row.limits if opening else None
        inputs = d.DecisionInputs(
            event=devent,
            subscription=_settings(row),
            follower=d.AccountSnapshot(
                login=row.login,
                currency=row.currency,
                equity=row.equity or None,
                profile_enabled=row.follower_enabled,
            ),
            master=master,
            symbol_map=mapping,
            follower_symbol=_symbol_index(row.server_id).get(needed.upper()),
            link=state,
            open_copied_positions=open_counts.get(row.id, 0),
            fx_rate=Decimal(1) if row.currency == event.master_currency else None,
            kill_switches=switch_sets[row.server_switch],
            limits=limits,
            exposure=_exposure(row, held.get(row.id, {}), needed) if limits is not None else None,
            quote=(
                _quote(row, needed, quotes or {})
                if limits is not None and limits.needs_quote()
                else None
            ),
        )
        result.append((sub, inputs, link))
    return result


_QUOTE_NEEDS_SQL = """
SELECT DISTINCT s.follower_account_id, a.broker_server_id, b.symbol_suffix
FROM copytrading_copysubscription AS s
JOIN risk_subscriptionlimits AS l ON l.subscription_id = s.id
JOIN accounts_tradingaccount AS a ON a.id = s.follower_account_id
JOIN brokers_brokerserver AS b ON b.id = a.broker_server_id
WHERE s.master_account_id = %b AND s.deleted_at IS NULL
    AND (l.max_slippage > 0 OR l.max_leverage > 0 OR l.max_risk_per_trade_pct > 0
         OR l.margin_policy <> 'off')
"""


def prefetch_quotes(
    event: EventRow, *, subscription_ids: list[int] | None = None
) -> dict[tuple[int, str], tuple[Decimal, Decimal]]:
    """{(follower server id, SYMBOL): (bid, ask)} the pre-trade checks of this opening
    event will read: one venue call per server and symbol (cached for a second in Redis,
    copytrading.prices), made before any transaction opens. Empty when no subscription of
    the master (of `subscription_ids`, when given: a repair, a remedy) has a limit that
    reads a price (one query)."""
    from .execution import _server

    if event.event_type not in _OPENING_KINDS:
        return {}
    sql, params = _QUOTE_NEEDS_SQL, [event.account_id]
    if subscription_ids is not None:
        sql, params = sql + "    AND s.id = ANY(%b)\n", [*params, subscription_ids]
    with cursor() as cur:
        cur.execute(sql, params)
        needs = cur.fetchall()
    if not needs:
        return {}
    from ..prices import quotes as venue_quotes

    devent = decision_event(event)
    account_maps = _account_maps(event.master_server_id)
    wanted: dict[int, set[str]] = defaultdict(set)
    for account_id, server_id, suffix in needs:
        mapping = _follower_mapping(event, account_maps.get(account_id), server_id, suffix)
        wanted[server_id].add(d.follower_symbol_needed(devent, mapping, None))
    found: dict[tuple[int, str], tuple[Decimal, Decimal]] = {}
    for server_id, symbols in wanted.items():
        for symbol, quote in venue_quotes(_server(server_id), symbols).items():
            found[(server_id, symbol.upper())] = (Decimal(quote["bid"]), Decimal(quote["ask"]))
    return found


def _settings(row: SubRow) -> d.SubscriptionSettings:
    return d.SubscriptionSettings.from_model(row)


# -- fan-out ------------------------------------------------------------------------


def _instruction_status(decision: d.CopyDecision, link: LinkRecord | None) -> str:
    if decision.skipped:
        return CopyInstructionStatus.SKIPPED
    if decision.waits_for_market:
        return CopyInstructionStatus.MARKET  # sent when the market opens (services.waiting)
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
_CLAIMED_COLUMNS = (*INSTRUCTION_COLUMNS, "claimed_at")


SHARED_INPUTS = ("event", "master", "kill_switches")


def _shared_inputs(inputs: d.DecisionInputs) -> dict[str, Any]:
    # The follower server's switch differs per follower: an instruction whose follower
    # server is switched off stores its own switches (see _own_inputs).
    switches = inputs.kill_switches
    if switches.follower_server:
        switches = dataclasses.replace(switches, follower_server=False)
    return {
        "event": inputs.event.to_dict(),
        "master": inputs.master.to_dict(),
        "kill_switches": _codec_dict(switches),
    }


def _own_inputs(inputs: d.DecisionInputs) -> dict[str, Any]:
    own = {
        "subscription": _settings_dict(inputs.subscription),
        "follower": inputs.follower.to_dict(),
        "symbol_map": _codec_dict(inputs.symbol_map),
        "follower_symbol": _codec_dict(inputs.follower_symbol) if inputs.follower_symbol else None,
        "link": inputs.link.to_dict() if inputs.link else None,
        "open_copied_positions": inputs.open_copied_positions,
        "fx_rate": str(inputs.fx_rate) if inputs.fx_rate is not None else None,
    }
    # Rules 2's inputs, only where set (their defaults reproduce rules 1's answer).
    if inputs.kill_switches.follower_server:
        own["kill_switches"] = _codec_dict(inputs.kill_switches)
    if inputs.limits is not None:
        own["limits"] = _codec_dict(inputs.limits)
    if inputs.exposure is not None:
        own["exposure"] = inputs.exposure.to_dict()
    if inputs.quote is not None:
        own["quote"] = _codec_dict(inputs.quote)
    if inputs.waited_seconds is not None:
        own["waited_seconds"] = inputs.waited_seconds
        own["master_position_open"] = inputs.master_position_open
    return own


def split_inputs(inputs: d.DecisionInputs) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the parts every subscription of the event shares, this subscription's parts)."""
    return _shared_inputs(inputs), _own_inputs(inputs)


def instruction_inputs(instruction: CopyInstruction) -> d.DecisionInputs:
    """The full decision inputs of an instruction: its own, merged with its event's shared ones."""
    shared = instruction.master_event.decision_context if instruction.master_event_id else {}
    return d.DecisionInputs.from_dict({**(shared or {}), **instruction.inputs})


# Symbol maps, specs, settings and decisions repeat across thousands of followers of one
# event; they are frozen, so their JSON form can be cached by value.
@lru_cache(maxsize=4096)
def _codec_dict(value: Any) -> dict[str, Any]:
    return value.to_dict()


@lru_cache(maxsize=65536)
def _settings_dict(value: d.SubscriptionSettings) -> dict[str, Any]:
    return value.to_dict()


@lru_cache(maxsize=4096)
def _decision_dict(value: d.CopyDecision) -> dict[str, Any]:
    return value.to_dict()


def fanout_subscription_event(
    event: MasterEvent,
    subscription: CopySubscription,
    *,
    existing: bool,
    quotes: dict[tuple[int, str], Any] | None = None,
) -> dict[int, list[int]]:
    """One event for one subscription only (copying existing positions on subscribe);
    `quotes` as `prefetch_quotes` gives them, read before the caller's transaction."""
    ready, _claimed = _fanout_event(
        EventRow.from_model(event),
        [SubRow.from_model(subscription)],
        existing=existing,
        quotes=quotes,
    )
    return ready


def _fanout_event(
    event: EventRow,
    subscriptions: list[SubRow],
    *,
    existing: bool = False,
    claim: int = 0,
    lock_links: bool = False,
    quotes: dict[tuple[int, str], Any] | None = None,
) -> tuple[dict[int, list[int]], tuple[int, list[Any]] | None]:
    """Decides and stores one event's instructions for `subscriptions`, in the caller's
    transaction; returns (ready ids by follower server, claimed).

    With `claim` > 0, up to that many ready instructions of the first follower server are
    stored already claimed (in flight, with their orders): (server id, execution.Claimed
    list), for the caller to send once this transaction commits. The caller read the
    subscriptions FOR SHARE in this transaction, so the decision's own refusal (pause,
    stop, disabled, kill switch, master paused) is the claim's re-check.

    With `lock_links`, links are read FOR SHARE: a close decided as waiting for an open in
    flight commits before that open's fill is recorded, whose release of waiting closes
    then sees it (else the close could commit just after and wait forever).
    """
    if not subscriptions:
        return {}, None
    now = timezone.now()
    decided = []
    new_links = []
    for sub, inputs, link in build_inputs(
        event, subscriptions, existing=existing, lock_links=lock_links, quotes=quotes
    ):
        decision = d.decide(inputs)
        decided.append((sub, inputs, link, decision))
        if decision.action in (d.CopyAction.OPEN, d.CopyAction.PLACE_PENDING) and link is None:
            # A limit order sent for a slippage limit belongs to the master position.
            is_order = event.event_type == MasterEventType.ORDER_PLACED
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
            with cursor() as cur:
                cur.execute(
                    "UPDATE copytrading_tradelink SET master_position_id = %b, updated_at = %b "
                    "WHERE id = ANY(%b) AND master_position_id = ''",
                    [event.master_position_id, now, order_links],
                )
    link_ids = _insert_links(new_links)
    shared = _shared_inputs(decided[0][1])
    # A late copy of an existing position decides on an event marked `existing`, unlike
    # the event's shared inputs; and a chunk decided under other shared inputs than the
    # event's stored ones (the kill switch flipped between two chunks): such instructions
    # keep their own full copy, so each decision replays from what is stored.
    own_copy = existing or (event.decision_context is not None and event.decision_context != shared)
    if event.decision_context is None and not existing:
        event.decision_context = shared
    servers = {s.id: s.server_id for s in subscriptions}
    claimable: set[int] = set()
    if claim:
        first_server = None
        for sub, _inputs, link, decision in decided:
            if _instruction_status(decision, link) == CopyInstructionStatus.READY:
                if first_server is None:
                    first_server = sub.server_id
                if sub.server_id == first_server and len(claimable) < claim:
                    claimable.add(sub.id)
    rows = []
    for sub, inputs, link, decision in decided:
        own = _own_inputs(inputs)
        status = _instruction_status(decision, link)
        rows.append(
            {
                "origin": "event",
                "master_event_id": event.id,
                "subscription_id": sub.id,
                "follower_account_id": sub.follower_account_id,
                "trade_link_id": link.id if link is not None else link_ids.get(sub.id),
                "action": str(decision.action),
                "status": CopyInstructionStatus.IN_FLIGHT if sub.id in claimable else status,
                "reason": str(decision.reason) if decision.reason else "",
                "detail": decision.detail[:500],
                "rule_version": decision.rule_version,
                "client_order_id": client_order_id_for(event_id=event.id, subscription_id=sub.id),
                "follower_symbol": decision.follower_symbol or "",
                "side": str(decision.side) if decision.side else "",
                "volume": decision.volume,
                "attempts": 0,
                "created_at": now,
                "claimed_at": now if sub.id in claimable else None,
                "inputs": {**shared, **own} if own_copy else own,
                "decision": _decision_dict(decision),
            }
        )
    inserted = insert_rows_returning(
        CopyInstruction,
        rows,
        columns=_CLAIMED_COLUMNS,
        returning=("id", "subscription_id", "status"),
    )
    ready: dict[int, list[int]] = defaultdict(list)
    claimed_ids: dict[int, int] = {}
    for inst_id, sub_id, status in sorted(inserted):
        if status == CopyInstructionStatus.READY:
            ready[servers[sub_id]].append(inst_id)
        elif status == CopyInstructionStatus.IN_FLIGHT:
            claimed_ids[sub_id] = inst_id
    claimed = _claim_inline(decided, rows, claimed_ids, new_links, link_ids, now)
    return ready, claimed


def _insert_links(new_links: list[dict[str, Any]]) -> dict[int, int]:
    """Inserts the new links; returns {subscription id: link id}, a link that was there
    already (a re-run) included."""
    if not new_links:
        return {}
    link_ids = dict(
        insert_rows_returning(
            TradeLink, new_links, columns=_LINK_COLUMNS, returning=("subscription_id", "id")
        )
    )
    missing = [r["subscription_id"] for r in new_links if r["subscription_id"] not in link_ids]
    if missing:
        key = "master_order_id" if new_links[0]["master_order_id"] else "master_position_id"
        link_ids.update(
            TradeLink.objects.filter(
                subscription_id__in=missing, **{key: new_links[0][key]}
            ).values_list("subscription_id", "id")
        )
    return link_ids


def _claim_inline(
    decided: list[tuple[SubRow, d.DecisionInputs, LinkRecord | None, d.CopyDecision]],
    rows: list[dict[str, Any]],
    claimed_ids: dict[int, int],
    new_links: list[dict[str, Any]],
    link_ids: dict[int, int],
    now: datetime,
) -> tuple[int, list[Any]] | None:
    """The orders of the instructions stored in flight, as execution.Claimed (built from
    what is in memory: nothing is read back)."""
    from .execution import InstructionRow, LinkRow, _orders_for

    if not claimed_ids:
        return None
    fresh = {r["subscription_id"]: r for r in new_links}
    batch = []
    server_id = 0
    for (sub, _inputs, link, decision), row in zip(decided, rows, strict=True):
        inst_id = claimed_ids.get(sub.id)
        if inst_id is None:
            continue
        server_id = sub.server_id
        if link is not None:
            link_row = LinkRow(*(getattr(link, f) for f in _LINK_ROW_FIELDS))
        elif sub.id in fresh:
            new = fresh[sub.id]
            link_row = LinkRow(
                id=link_ids[sub.id],
                **{f: new[f] for f in _LINK_ROW_FIELDS if f in new},
                opened_at=None,
                closed_at=None,
            )
        else:
            link_row = None
        inst = InstructionRow(
            id=inst_id,
            subscription_id=sub.id,
            master_event_id=row["master_event_id"],
            trade_link_id=row["trade_link_id"],
            action=row["action"],
            status=row["status"],
            reason=row["reason"],
            detail=row["detail"],
            client_order_id=row["client_order_id"],
            follower_symbol=row["follower_symbol"],
            side=row["side"],
            volume=row["volume"],
            attempts=0,
            completed_at=None,
            trade_link=link_row,
        )
        batch.append((inst, decision, sub.login))
    return server_id, _orders_for(server_id, batch, now)


_LINK_ROW_FIELDS = (
    "id",
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
)


EXECUTE_CHUNK = 500


def enqueue_execution(
    ready: dict[int, list[int]], *, chunk: int = EXECUTE_CHUNK, keep_first: bool = False
) -> tuple[int, list[int]] | None:
    """Queues execution of ready instructions, one task per follower server and chunk.

    With `keep_first`, the first chunk is not queued but returned, for the caller to
    execute at once.
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
    with cursor() as cur:
        cur.execute(
            "SELECT account_id, max(id) FROM copytrading_masterevent "
            "WHERE id = ANY(%b) AND fanout_state <> %b GROUP BY account_id",
            [list(event_ids), MasterEventFanoutState.DONE.value],
        )
        return dict(cur.fetchall())


def fanout_events(*, event_ids: Iterable[int]) -> int:
    """Fans out the given events (and every other pending event of the same masters), in
    order per master; returns how many events this call handled."""
    handled = 0
    targets = _targets(event_ids)
    for account_id in sorted(targets):
        handled += _fanout_account(account_id)
    return handled


def fanout_and_execute(*, event_ids: Iterable[int]) -> int:
    """The fan-out task's work: fan out, then send the first chunk of orders from here
    (claimed in the fan-out's own transaction: no second queue hop, no second claim)."""
    from .execution import claimed_execute

    handled = 0
    targets = _targets(event_ids)
    for account_id in sorted(targets):
        kept: list[tuple[int, list[Any]]] = []
        handled += _fanout_account(account_id, kept=kept)
        # Sent after the account's lock is released: the next event of this master need
        # not wait for the venue. Its closes wait for these opens (link `opening`).
        for server_id, claimed in kept:
            claimed_execute(server_id=server_id, claimed=claimed)
    return handled


FANOUT_CHUNK = 500
# A fan-out task that finds more pending events of a master than this sends none itself.
INLINE_MAX_EVENTS = 4
_ANY_LATER = 2**62  # no event id is this large: every pending event of the master


def _fanout_account(account_id: int, *, kept: list[tuple[int, list[Any]]] | None = None) -> int:
    """Fans out every pending event of one master account, in order: the task's own and
    any stored since (committed), so that a task that finds a backlog clears it at once
    rather than one event per queued task (the tasks queued for the later events then find
    them done and return).

    A session advisory lock on the account keeps one fan-out per master at a time across
    its transactions. Each event's subscriptions are decided in chunks, each committed and
    its orders queued at once, so the first followers' orders are on their way while the
    rest are still being decided. A crash between chunks leaves the event pending; the
    re-run inserts nothing twice (unique per event and subscription) and finishes it.
    With `kept`, the orders of the event's last chunk are claimed in its transaction and
    appended to `kept` for the caller to send (see `_fanout_one`), unless more than
    INLINE_MAX_EVENTS are pending: a backlog's orders all go to the execute queue.
    """
    with cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%b, %b)", [_FANOUT_LOCK_SPACE, account_id])
    try:
        events = _pending_events(account_id, _ANY_LATER)
        batch = None
        if len(events) > INLINE_MAX_EVENTS:
            # A backlog (the fan-out queue fell behind): decide every event here but leave
            # all the sending to the execute workers, in parallel, instead of holding each
            # event's claimed orders in flight until this one process has decided the rest;
            # and in tasks of up to EXECUTE_CHUNK orders, not one small task per event.
            kept, batch = None, _Batch()
        for event in events:
            _fanout_one(event, kept, batch)
        if batch is not None:
            transaction.on_commit(batch.flush)  # after the chunks' own callbacks, in order
        return len(events)
    finally:
        with cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%b, %b)", [_FANOUT_LOCK_SPACE, account_id])


_DONE_SQL = (
    "UPDATE copytrading_masterevent SET fanout_state = %b, fanout_started_at = %b, "
    "fanout_done_at = %b, decision_context = %t::jsonb WHERE id = %b"
)


def _mark_done(event: EventRow) -> None:
    now = timezone.now()
    context = json.dumps(event.decision_context) if event.decision_context is not None else None
    with cursor() as cur:
        cur.execute(_DONE_SQL, [MasterEventFanoutState.DONE.value, now, now, context, event.id])


def _store_context(event: EventRow) -> None:
    if event.decision_context is None:
        return
    with cursor() as cur:
        cur.execute(
            "UPDATE copytrading_masterevent SET decision_context = %t::jsonb WHERE id = %b",
            [json.dumps(event.decision_context), event.id],
        )


def _fanout_one(
    event: EventRow, kept: list[tuple[int, list[Any]]] | None, batch: _Batch | None = None
) -> None:
    """One event, in chunks of FANOUT_CHUNK subscriptions, each in its own transaction; the
    event's `done` state commits with the last one.

    Every chunk but the last goes to the execute workers as soon as it commits; with `kept`
    (the fan-out task), the last chunk's orders are claimed in its transaction and sent from
    this task: a small fan-out costs no second queue hop, and a large one decides its last
    chunk while the workers already send the first ones.

    A chunk whose openings are claimed here reads its subscriptions FOR SHARE in its own
    transaction: a pause that committed before is seen by the decision, one that commits
    after waits for the claim, as with the executor's claim.
    """
    opening = event.event_type in _OPENING_KINDS
    inline = kept is not None
    # The prices the pre-trade checks read: from the venues, before any transaction.
    quotes = prefetch_quotes(event)
    with transaction.atomic():
        relax_commit()  # replayable: see config.db.relax_commit
        subscriptions = _subscriptions(event.account_id, lock=inline and opening)
        chunks = [
            subscriptions[i : i + FANOUT_CHUNK] for i in range(0, len(subscriptions), FANOUT_CHUNK)
        ] or [[]]
        _fanout_chunk(
            event, chunks[0], n=0, last=len(chunks) == 1, kept=kept, quotes=quotes, batch=batch
        )
    for n in range(1, len(chunks)):
        last = n == len(chunks) - 1
        with transaction.atomic():
            relax_commit()
            chunk = chunks[n]
            if last and inline:
                chunk = _subscriptions_by_id([s.id for s in chunk], lock=opening)
            _fanout_chunk(event, chunk, n=n, last=last, kept=kept, quotes=quotes, batch=batch)


def _fanout_chunk(
    event: EventRow,
    subscriptions: list[SubRow],
    *,
    n: int,
    last: bool,
    kept: list[tuple[int, list[Any]]] | None,
    quotes: dict[tuple[int, str], Any],
    batch: _Batch | None = None,
) -> None:
    ready, claimed = _fanout_event(
        event,
        subscriptions,
        claim=EXECUTE_CHUNK if last and kept is not None else 0,
        lock_links=event.event_type in _LINKED_KINDS,
        quotes=quotes,
    )
    if last:
        _mark_done(event)
    elif n == 0:
        _store_context(event)  # the shared inputs commit with the first instructions
    _after_commit(ready, claimed, kept, batch)


class _Batch:
    """Ready instructions of several events, queued together in execute tasks of
    EXECUTE_CHUNK (a backlog of small events would otherwise make a task per event), the
    rest when the fan-out ends. Added after each commit; whatever a crash leaves unqueued,
    the recovery sweeper queues."""

    def __init__(self) -> None:
        self.ready: dict[int, list[int]] = defaultdict(list)

    def add(self, ready: dict[int, list[int]]) -> None:
        full: dict[int, list[int]] = {}
        for server_id, ids in ready.items():
            waiting = self.ready[server_id]
            waiting.extend(ids)
            cut = len(waiting) - len(waiting) % EXECUTE_CHUNK
            if cut:
                full[server_id] = waiting[:cut]
                del waiting[:cut]
        if full:
            enqueue_execution(full)

    def flush(self) -> None:
        rest = {server_id: ids for server_id, ids in self.ready.items() if ids}
        if rest:
            enqueue_execution(rest)
        self.ready.clear()


def _after_commit(
    ready: dict[int, list[int]],
    claimed: tuple[int, list[Any]] | None,
    kept: list[tuple[int, list[Any]]] | None,
    batch: _Batch | None = None,
) -> None:
    if not ready and not claimed:
        return

    def queue() -> None:
        if ready and batch is not None:
            batch.add(ready)
        elif ready:
            enqueue_execution(ready)
        if claimed is not None and kept is not None:
            kept.append(claimed)

    transaction.on_commit(queue)
