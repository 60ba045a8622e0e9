"""The copy decision: one master event and one subscription in, one `CopyDecision` out.

DESIGN.md, "The copy pipeline", step 3. `decide()` is a pure function: no database, no
network, no clock, no randomness, and no dependence on the thread's decimal context
(sizing uses its own). The same `DecisionInputs` always give an equal `CopyDecision`,
so a decision can be reproduced from the inputs stored beside it: every input and
output dataclass has `to_dict()` (JSON-safe; Decimals as strings, enums as their wire
values) and `from_dict()` that rebuild it exactly.

Rule versions. `RULE_VERSION` names the rules `decide()` applies now, and every
decision carries the version that made it. Any change of behaviour (a new check, a
different rounding, another reason code for the same inputs, a change in
`sizing.py` or `symbols.py` that alters an answer) gets a new version and a new entry
in `RULES`; the old entry stays as it was (copy the old helper under a versioned name
before changing it) so `replay(stored_inputs, stored_version)` gives the stored answer
again. Changes that alter no answer (speed, wording of this docstring) keep the
version. New input fields need a default that reproduces the old behaviour, so old
stored inputs still load.

Rules 2 (now) are rules 1 followed by the pre-trade risk checks of `risk.checks` on
opening decisions (`open`, `place_pending`): the subscription's limits (lots per symbol
and in total, leverage, risk per trade, margin, slippage, the master's stop loss) can
skip an open with their reason code, cut its volume, or send it as a limit order at the
master's price; a closed market can make an open wait (`market_closed_policy` wait). Every
check result is in the decision's `checks`. Without limits the answer is rules 1's: see
risk/pretrade.md.

What each master event kind does (after the checks below):

- `position_opened`: `open` at market, sized by the subscription. A synthetic event
  with `existing=True` (a master position already open when the follower subscribed)
  opens only with `copy_existing_positions`.
- `position_modified`: `modify_sltp` on the linked follower position.
- `position_closed`: `remaining_volume` 0 (or absent) is a full close -> `close` of the
  whole linked follower position. `remaining_volume` > 0 is a partial close ->
  `partial_close` of the same share with `copy_partial_close`, else skipped
  (PARTIAL_CLOSE_NOT_COPIED; the full close later closes everything).
- `order_placed` (limit or stop): `place_pending` with `copy_pending_orders`, else skipped.
- `order_cancelled`: `cancel_pending` of the linked follower order.
- `order_filled`: always skipped as NOTHING_TO_DO. The venue also emits
  `position_opened` for the fill, and that event carries the open: it holds the master
  position id that later closes and modifications are linked by. With
  `copy_pending_orders` the follower's own pending copy fills at its own venue; without
  it, the `position_opened` of the fill opens at market like any other open. The
  caller sets `from_order_id` on a `position_opened` that came from a pending order,
  and passes the link of that master order: if a follower copy of the order exists,
  the position event does not open a second one. The paper venue sends
  `position_opened` *before* `order_filled`, so the order cannot be found from the
  fill; it is found by `client_order_id` instead: a position opened by a pending
  order carries that order's `client_order_id`, as the `order_placed` payload does
  (market orders emit no `order_placed`, so their positions match none).

Opening actions (`open`, `place_pending`) are refused, in this order, by: an active
kill switch (KILL_SWITCH), a disabled master profile (MASTER_DISABLED), a disabled
follower profile (FOLLOWER_DISABLED), a disabled subscription
(SUBSCRIPTION_DISABLED), a risk stop (SUBSCRIPTION_STOPPED), a pause
(SUBSCRIPTION_PAUSED), close-only mode (CLOSE_ONLY_MODE); then the symbol filter
(SYMBOL_FILTERED), a symbol the follower's server lacks (SYMBOL_NOT_FOUND), a market
closed there (MARKET_CLOSED), `max_positions` (MAX_POSITIONS_REACHED), and sizing
(NO_FX_RATE, NO_EQUITY, VOLUME_BELOW_MINIMUM).

Closing is never blocked. Closes, partial closes, SL/TP changes and cancels of what
was already copied go through whatever the subscription's status, mode, profiles,
kill switches or symbol filter say: a paused, stopped or close-only follower still
mirrors the master's closes, so it is not left holding orphaned positions. They are
not refused for a closed market either: when the venue answers MARKET_CLOSED to a
close, partial close or cancel, the executor makes the instruction wait for the market
(status `market`, no expiry) and the recovery task sends it again, unchanged, once the
market reopens (copytrading/services/waiting.py).

Where the spec is silent, these rules apply (a mature copier's defaults):

- Reverse direction flips the side and swaps the levels: the master's SL level becomes
  the follower's TP and the master's TP its SL. Pending order types flip too, because
  the level stays where it is relative to the market: a buy limit rests below the
  price, and a sell resting below the price is a sell stop (buy limit <-> sell stop,
  buy stop <-> sell limit). Reversing twice gives back the original.
- `copy_sl` / `copy_tp` name the follower's own levels, taken after the swap: a
  reversed follower with `copy_sl` gets a stop loss (from the master's TP level), not
  a take profit in its place. Not copied: None on open, and left as they are later.
- SL/TP changes compare the master's new levels (mapped as above) with the follower's
  current levels from the link, leg by leg: only copied legs that differ are
  changed, so a missed change heals on the next one. `modify_sltp` carries the full
  target levels (uncopied legs keep the follower's current value; None = no level).
  Nothing copied differs: SLTP_NOT_COPIED if an uncopied level differs, else
  NOTHING_TO_DO.
- Partial closes use the symbol's minimum lot, not the subscription's `min_volume`
  (which bounds opens); see `sizing.partial_close_volume`.
- `max_positions` also bounds placing pending copies (each may become a position);
  a pending copy that later fills at the follower's venue is not re-checked.
- A master position closed while the follower's pending copy still rests: the copy is
  cancelled (`cancel_pending`). A partial close or SL/TP change then is skipped
  (PENDING_NOT_FILLED): the venue cannot change a resting order's volume or levels.
- A master order cancelled after the follower's copy already filled (prices differ
  across brokers): the follower position is closed, since no master position will
  ever close it.
- Proportional sizing across currencies needs `fx_rate` (follower currency units per
  master currency unit); without it: NO_FX_RATE.
- A link whose open failed gets no close, modification or cancel (OPEN_FAILED); a link
  already closed (the follower's own SL, or by hand) gets nothing (ALREADY_CLOSED).
- An open for a master position or order that already has a link is ALREADY_COPIED:
  one follower order per master position, whatever is redelivered.
- A close arriving while the open is still in flight (link status `opening`) is
  decided normally; the executor holds it until the open fills (DESIGN.md step 5).
- The symbol filter applies to opens only: a symbol removed from the list after a
  position was copied still has its close mirrored.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from decimal import Decimal
from enum import Enum, IntEnum, StrEnum
from functools import lru_cache
from types import MappingProxyType, NoneType, UnionType
from typing import Any, Self

from risk.checks import (
    CheckResult,
    Exposure,
    FollowerQuote,
    PretradeLimits,
    run_checks,
    stored_decimal,
)

from .sizing import Sized, VolumeMode, copy_volume, partial_close_volume
from .symbols import Resolution, SymbolsMode, resolve_follower_symbol, symbol_selected

__all__ = [
    "RULES",
    "RULE_VERSION",
    "AccountSnapshot",
    "CopyAction",
    "CopyDecision",
    "CopyMode",
    "DecisionInputs",
    "EventKind",
    "KillSwitches",
    "LinkState",
    "LinkStatus",
    "MasterEvent",
    "OrderType",
    "Side",
    "SkipReason",
    "SubscriptionSettings",
    "SubscriptionStatus",
    "SymbolMapping",
    "SymbolSpec",
    "SymbolsMode",
    "VolumeMode",
    "decide",
    "follower_symbol_needed",
    "replay",
    "reverse_order_type",
    "reverse_side",
    "follower_levels",
]

RULE_VERSION = "2"


# ---------------------------------------------------------------------------
# Enumerations


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"


class EventKind(StrEnum):
    """Master events, normalized from the venue stream types (spec/paper-venue.md)."""

    POSITION_OPENED = "position_opened"
    POSITION_MODIFIED = "position_modified"
    POSITION_CLOSED = "position_closed"
    ORDER_PLACED = "order_placed"
    ORDER_CANCELLED = "order_cancelled"
    ORDER_FILLED = "order_filled"


class SubscriptionStatus(IntEnum):
    """Wire values of the subscription's `status` (copytrading.choices mirrors them)."""

    ACTIVE = 0
    PAUSED = 1
    STOPPED_BY_RISK = 2


class CopyMode(IntEnum):
    """Wire values of the subscription's `copy_mode`."""

    FULL = 0
    CLOSE_ONLY = 1


class LinkStatus(StrEnum):
    """Where the follower side of a master position or order stands.

    OPENING: the open was decided and sent, its fill not known yet. OPEN: the follower
    position exists. PENDING: the follower's pending copy rests at its venue. FAILED:
    the open or placement failed. CLOSED: the follower position or order is gone.
    """

    OPENING = "opening"
    OPEN = "open"
    PENDING = "pending"
    FAILED = "failed"
    CLOSED = "closed"


class CopyAction(StrEnum):
    OPEN = "open"
    CLOSE = "close"
    PARTIAL_CLOSE = "partial_close"
    MODIFY_SLTP = "modify_sltp"
    PLACE_PENDING = "place_pending"
    CANCEL_PENDING = "cancel_pending"
    SKIP = "skip"


class SkipReason(StrEnum):
    """Stable codes of why a decision is a skip; stored, filtered on and shown to support.

    Never rename or reuse a code: old decisions keep theirs.
    """

    # Opening refused by a switch or a state (closes still go through).
    KILL_SWITCH = "KILL_SWITCH"
    MASTER_DISABLED = "MASTER_DISABLED"
    FOLLOWER_DISABLED = "FOLLOWER_DISABLED"
    SUBSCRIPTION_DISABLED = "SUBSCRIPTION_DISABLED"
    SUBSCRIPTION_STOPPED = "SUBSCRIPTION_STOPPED"
    SUBSCRIPTION_PAUSED = "SUBSCRIPTION_PAUSED"
    CLOSE_ONLY_MODE = "CLOSE_ONLY_MODE"
    # Opening refused by a copy setting.
    EXISTING_NOT_COPIED = "EXISTING_NOT_COPIED"
    PENDING_NOT_COPIED = "PENDING_NOT_COPIED"
    SYMBOL_FILTERED = "SYMBOL_FILTERED"
    MAX_POSITIONS_REACHED = "MAX_POSITIONS_REACHED"
    # Opening impossible on the follower's side.
    SYMBOL_NOT_FOUND = "SYMBOL_NOT_FOUND"
    MARKET_CLOSED = "MARKET_CLOSED"
    NO_EQUITY = "NO_EQUITY"
    NO_FX_RATE = "NO_FX_RATE"
    VOLUME_BELOW_MINIMUM = "VOLUME_BELOW_MINIMUM"
    ALREADY_COPIED = "ALREADY_COPIED"
    # Changes of something copied (or not).
    PARTIAL_CLOSE_NOT_COPIED = "PARTIAL_CLOSE_NOT_COPIED"
    SLTP_NOT_COPIED = "SLTP_NOT_COPIED"
    PENDING_NOT_FILLED = "PENDING_NOT_FILLED"
    NO_LINKED_POSITION = "NO_LINKED_POSITION"
    NO_LINKED_ORDER = "NO_LINKED_ORDER"
    OPEN_FAILED = "OPEN_FAILED"
    ALREADY_CLOSED = "ALREADY_CLOSED"
    # Nothing for this follower to do, or an event these rules do not handle.
    NOTHING_TO_DO = "NOTHING_TO_DO"
    UNSUPPORTED_EVENT = "UNSUPPORTED_EVENT"
    # Pre-trade risk checks (rules 2, risk.checks).
    NO_MASTER_SL = "NO_MASTER_SL"
    MAX_SLIPPAGE = "MAX_SLIPPAGE"
    NO_PRICE = "NO_PRICE"
    MAX_LOTS_PER_SYMBOL = "MAX_LOTS_PER_SYMBOL"
    MAX_LOTS_TOTAL = "MAX_LOTS_TOTAL"
    MAX_LEVERAGE = "MAX_LEVERAGE"
    MAX_RISK_PER_TRADE = "MAX_RISK_PER_TRADE"
    INSUFFICIENT_MARGIN = "INSUFFICIENT_MARGIN"
    MARKET_WAIT_EXPIRED = "MARKET_WAIT_EXPIRED"
    MASTER_POSITION_CLOSED = "MASTER_POSITION_CLOSED"


# ---------------------------------------------------------------------------
# JSON-safe codec shared by the dataclasses


class _Codec:
    """to_dict/from_dict for the frozen dataclasses below, driven by their type hints."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict: Decimals as strings, enums as values, tuples as lists."""
        return {name: _encode(getattr(self, name)) for name in _field_names(type(self))}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Rebuilds the object `to_dict` gave; refuses unknown keys, floats and non-numbers.

        Missing keys take the field's default, so inputs stored before a field was added
        (with a default keeping the old behaviour) still load.
        """
        decoders = _decoders(cls)
        unknown = set(data) - decoders.keys()
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown field(s) {sorted(unknown)}")
        return cls(**{name: decoders[name](value) for name, value in data.items()})


def _encode(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, int | str):
        return value
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    if isinstance(value, _Codec | CheckResult | PretradeLimits | Exposure | FollowerQuote):
        return value.to_dict()
    raise TypeError(f"cannot encode {type(value).__name__} (float never carries money)")


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
_DECODERS: dict[type, dict[str, Callable[[Any], Any]]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))  # type: ignore[arg-type]
    return names


def _decoders(cls: type) -> dict[str, Callable[[Any], Any]]:
    decoders = _DECODERS.get(cls)
    if decoders is None:
        hints = typing.get_type_hints(cls)
        decoders = {name: _decoder_for(hints[name]) for name in _field_names(cls)}
        _DECODERS[cls] = decoders
    return decoders


def _decoder_for(hint: Any) -> Callable[[Any], Any]:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (UnionType, typing.Union):
        inner = [a for a in args if a is not NoneType]
        if len(inner) != 1:
            raise TypeError(f"unsupported union {hint}")
        decode_inner = _decoder_for(inner[0])
        return lambda v: None if v is None else decode_inner(v)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            decode_item = _decoder_for(args[0])
            return lambda v: tuple(decode_item(x) for x in _as_list(v))
        decode_items = [_decoder_for(a) for a in args]

        def decode_fixed(v: Any) -> tuple[Any, ...]:
            items = _as_list(v)
            if len(items) != len(decode_items):
                raise ValueError(f"expected {len(decode_items)} items, got {items!r}")
            return tuple(d(x) for d, x in zip(decode_items, items, strict=True))

        return decode_fixed
    if hint is Decimal:
        return _decode_decimal
    if hint is bool:
        return _decode_bool
    if hint is int:
        return _decode_int
    if hint is str:
        return _decode_str
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint
    if isinstance(hint, type) and (
        issubclass(hint, _Codec) or hint in (CheckResult, PretradeLimits, Exposure, FollowerQuote)
    ):
        return hint.from_dict
    raise TypeError(f"unsupported field type {hint}")


def _as_list(value: Any) -> list[Any] | tuple[Any, ...]:
    if not isinstance(value, list | tuple):
        raise ValueError(f"expected a list, got {value!r}")
    return value


def _decode_decimal(value: Any) -> Decimal:
    return stored_decimal(value)


def _decode_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected a boolean, got {value!r}")
    return value


def _decode_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {value!r}")
    return value


def _decode_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


# ---------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True, slots=True)
class MasterEvent(_Codec):
    """A master event as the recorder normalized it.

    `volume`: the position's volume (`position_opened`, `position_modified`), the
    order's (`order_*`). `price`: the open price of a position (informational: the
    follower opens at its own market) or the price of a pending order. `sl`/`tp`: the
    master's levels after the event (None = not set). `closed_volume` and
    `remaining_volume` come with `position_closed`; a missing or zero remaining volume
    is a full close. `from_order_id`: on `position_opened`, the master order whose fill
    opened the position. `existing`: a synthetic `position_opened` for a position
    already open when the follower subscribed.
    """

    kind: EventKind
    symbol: str
    side: Side
    volume: Decimal
    position_id: str | None = None
    order_id: str | None = None
    order_type: OrderType = OrderType.MARKET
    price: Decimal | None = None
    sl: Decimal | None = None
    tp: Decimal | None = None
    closed_volume: Decimal | None = None
    remaining_volume: Decimal | None = None
    from_order_id: str | None = None
    existing: bool = False


@dataclass(frozen=True, slots=True)
class SubscriptionSettings(_Codec):
    """The subscription fields of spec/client-api.md that decide a copy; defaults as the model."""

    subscription_id: int = 0
    enabled: bool = True
    status: SubscriptionStatus = SubscriptionStatus.ACTIVE
    copy_mode: CopyMode = CopyMode.FULL
    volume_mode: VolumeMode = VolumeMode.MULTIPLIER
    risk_multiplier: Decimal = Decimal("1")
    fixed_volume: Decimal = Decimal("0")
    base_equity: Decimal = Decimal("10000")
    copy_sl: bool = True
    copy_tp: bool = True
    copy_partial_close: bool = True
    copy_pending_orders: bool = False
    copy_existing_positions: bool = False
    reverse_direction: bool = False
    max_volume: Decimal = Decimal("0")
    min_volume: Decimal = Decimal("0")
    max_positions: int = 0
    symbols_mode: SymbolsMode = SymbolsMode.ALL
    symbols: str = ""

    @classmethod
    def from_model(cls, sub: Any) -> Self:
        """Reads a CopySubscription (or anything with its attributes) without importing Django."""
        return cls(
            subscription_id=sub.id or 0,
            enabled=bool(sub.enabled),
            status=SubscriptionStatus(sub.status),
            copy_mode=CopyMode(sub.copy_mode),
            volume_mode=VolumeMode(sub.volume_mode),
            risk_multiplier=sub.risk_multiplier,
            fixed_volume=sub.fixed_volume,
            base_equity=sub.base_equity,
            copy_sl=bool(sub.copy_sl),
            copy_tp=bool(sub.copy_tp),
            copy_partial_close=bool(sub.copy_partial_close),
            copy_pending_orders=bool(sub.copy_pending_orders),
            copy_existing_positions=bool(sub.copy_existing_positions),
            reverse_direction=bool(sub.reverse_direction),
            max_volume=sub.max_volume,
            min_volume=sub.min_volume,
            max_positions=sub.max_positions,
            symbols_mode=SymbolsMode(sub.symbols_mode),
            symbols=sub.symbols,
        )


@dataclass(frozen=True, slots=True)
class AccountSnapshot(_Codec):
    """An account as the decision sees it: its equity (None = unknown) and its copy profile.

    `profile_enabled` is the CopyMaster's or CopyFollower's `enabled` flag.
    """

    login: int
    currency: str
    equity: Decimal | None
    profile_enabled: bool = True


@dataclass(frozen=True, slots=True)
class SymbolSpec(_Codec):
    """The follower server's lot rules for one symbol, and whether its market is open."""

    symbol: str
    min_volume: Decimal
    max_volume: Decimal
    volume_step: Decimal
    trading: bool = True

    @classmethod
    def from_model(cls, symbol: Any) -> Self:
        """Reads a brokers Symbol row (or anything with its attributes)."""
        return cls(
            symbol=symbol.name,
            min_volume=symbol.min_volume,
            max_volume=symbol.max_volume,
            volume_step=symbol.volume_step,
            trading=bool(symbol.trading),
        )


@dataclass(frozen=True, slots=True)
class SymbolMapping(_Codec):
    """What symbol resolution needs (see copytrading.symbols): suffixes and explicit maps.

    `account_maps` and `server_maps` are (master symbol, follower symbol) pairs of the
    follower account's and the follower server's SymbolMap rows, rows limited to the
    master's server merged over rows for any server. Passing only the rows for the
    event's symbol keeps stored inputs small.
    """

    master_suffix: str = ""
    follower_suffix: str = ""
    account_maps: tuple[tuple[str, str], ...] = ()
    server_maps: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class LinkState(_Codec):
    """The follower side of the master position (or order) the event is about.

    `follower_volume`: the open volume of the follower position(s) (for OPENING, the
    volume sent; for PENDING, the order's). `follower_sl`/`follower_tp`: the
    follower's current levels.
    """

    status: LinkStatus
    follower_symbol: str
    follower_side: Side
    follower_volume: Decimal
    follower_position_ids: tuple[str, ...] = ()
    follower_order_id: str | None = None
    follower_sl: Decimal | None = None
    follower_tp: Decimal | None = None


@dataclass(frozen=True, slots=True)
class KillSwitches(_Codec):
    """Kill switches that cover this (master, follower) pair; any one on stops opening."""

    platform: bool = False
    master_server: bool = False
    follower_server: bool = False
    master: bool = False

    def active(self) -> tuple[str, ...]:
        return tuple(name for name in _field_names(KillSwitches) if getattr(self, name))


_NO_SWITCHES = KillSwitches()


@dataclass(frozen=True, slots=True)
class DecisionInputs(_Codec):
    """Everything `decide()` reads. Stored beside each decision so it can be replayed.

    `follower_symbol`: the follower server's spec of the symbol `follower_symbol_needed`
    names, None when the server has no such symbol. `link`: the follower side of the
    event's master position (or, for order events and a `position_opened` with
    `from_order_id`, of the master order), None when nothing was copied.
    `open_copied_positions`: open follower positions copied on this subscription.
    `fx_rate`: follower currency units per master currency unit, for proportional
    sizing across currencies.

    Rules 2 add the pre-trade risk inputs (all None by default: no checks, the answer of
    rules 1): `limits` (None: no pre-trade limit set), `exposure` (what the subscription
    holds and the account's margin), `quote` (the follower symbol's current quote). An
    open waiting for its market is decided again with `waited_seconds` (since it was
    first decided) and `master_position_open`.
    """

    event: MasterEvent
    subscription: SubscriptionSettings
    follower: AccountSnapshot
    master: AccountSnapshot
    symbol_map: SymbolMapping
    follower_symbol: SymbolSpec | None
    link: LinkState | None = None
    open_copied_positions: int = 0
    kill_switches: KillSwitches = _NO_SWITCHES
    fx_rate: Decimal | None = None
    limits: PretradeLimits | None = None
    exposure: Exposure | None = None
    quote: FollowerQuote | None = None
    waited_seconds: int | None = None
    master_position_open: bool = True


# ---------------------------------------------------------------------------
# Output


@dataclass(frozen=True, slots=True)
class CopyDecision(_Codec):
    """What to do for one (master event, subscription), or a skip with its reason.

    A skip has `action` SKIP, a `reason` and a `detail` naming the figures; any other
    action has no reason. `follower_symbol`, `side`, `volume` and the ids name the
    follower's trade: for `close` the whole linked position (`volume` is what the link
    holds), for `modify_sltp` the full target levels, for `place_pending` the order's
    type and price. `price` of an `open` is the master's (the follower fills at its own
    market). `rule_version` is the version of the rules that made the decision.
    """

    rule_version: str
    action: CopyAction
    reason: SkipReason | None = None
    detail: str = ""
    follower_symbol: str | None = None
    side: Side | None = None
    volume: Decimal | None = None
    order_type: OrderType | None = None
    price: Decimal | None = None
    sl: Decimal | None = None
    tp: Decimal | None = None
    follower_position_ids: tuple[str, ...] = ()
    follower_order_id: str | None = None
    checks: tuple[CheckResult, ...] = ()
    market_wait_seconds: int = 0

    @property
    def skipped(self) -> bool:
        return self.action is CopyAction.SKIP

    @property
    def waits_for_market(self) -> bool:
        """An open decided while its market is closed, to be sent when it reopens."""
        return any(c.outcome == "wait" for c in self.checks)


# ---------------------------------------------------------------------------
# Direction helpers (rule-independent facts about orders)

_REVERSED_SIDE = {Side.BUY: Side.SELL, Side.SELL: Side.BUY}
# The order's level stays put relative to the market, so the kind of trigger flips.
_REVERSED_TYPE = {
    OrderType.MARKET: OrderType.MARKET,
    OrderType.LIMIT: OrderType.STOP,
    OrderType.STOP: OrderType.LIMIT,
}


def reverse_side(side: Side) -> Side:
    """buy <-> sell."""
    return _REVERSED_SIDE[side]


def reverse_order_type(order_type: OrderType) -> OrderType:
    """limit <-> stop (market stays market) for a reversed pending order at the same price."""
    return _REVERSED_TYPE[order_type]


def follower_levels(
    sl: Decimal | None,
    tp: Decimal | None,
    *,
    reverse: bool,
    copy_sl: bool,
    copy_tp: bool,
) -> tuple[Decimal | None, Decimal | None]:
    """The follower's (sl, tp) on open: swapped when reversed, then None where not copied."""
    if reverse:
        sl, tp = tp, sl
    return (sl if copy_sl else None, tp if copy_tp else None)


def follower_symbol_needed(
    event: MasterEvent, symbol_map: SymbolMapping, link: LinkState | None
) -> str:
    """The follower symbol whose spec `DecisionInputs.follower_symbol` must carry.

    The linked position's symbol when the event is about something already copied (the
    map may have changed since); else the symbol the master's resolves to.
    """
    if link is not None and event.kind in _LINKED_KINDS:
        return link.follower_symbol
    return _resolve(event.symbol, symbol_map).symbol


# One event fans out to many followers of the same servers: the same (symbol, mapping)
# comes back thousands of times. Both arguments are immutable, so caching is safe.
@lru_cache(maxsize=16384)
def _resolve(master_symbol: str, symbol_map: SymbolMapping) -> Resolution:
    return resolve_follower_symbol(
        master_symbol,
        master_suffix=symbol_map.master_suffix,
        follower_suffix=symbol_map.follower_suffix,
        account_maps=symbol_map.account_maps,
        server_maps=symbol_map.server_maps,
    )


_LINKED_KINDS = frozenset(
    {EventKind.POSITION_MODIFIED, EventKind.POSITION_CLOSED, EventKind.ORDER_CANCELLED}
)


# ---------------------------------------------------------------------------
# Rules, version 1. Frozen once released: change behaviour in a new version.

_V1 = "1"


def _skip_v1(reason: SkipReason, detail: str) -> CopyDecision:
    return CopyDecision(rule_version=_V1, action=CopyAction.SKIP, reason=reason, detail=detail)


def _opening_refusal_v1(inputs: DecisionInputs) -> CopyDecision | None:
    """Why no new position or order may open for this pair now, or None."""
    sub = inputs.subscription
    switches = inputs.kill_switches
    if switches.platform or switches.master_server or switches.follower_server or switches.master:
        return _skip_v1(SkipReason.KILL_SWITCH, f"kill switch on: {', '.join(switches.active())}")
    if not inputs.master.profile_enabled:
        return _skip_v1(
            SkipReason.MASTER_DISABLED, f"master profile of {inputs.master.login} is disabled"
        )
    if not inputs.follower.profile_enabled:
        return _skip_v1(
            SkipReason.FOLLOWER_DISABLED,
            f"follower profile of {inputs.follower.login} is disabled",
        )
    if not sub.enabled:
        return _skip_v1(
            SkipReason.SUBSCRIPTION_DISABLED, f"subscription {sub.subscription_id} is disabled"
        )
    if sub.status == SubscriptionStatus.STOPPED_BY_RISK:
        return _skip_v1(
            SkipReason.SUBSCRIPTION_STOPPED,
            f"subscription {sub.subscription_id} is stopped by a risk rule",
        )
    if sub.status == SubscriptionStatus.PAUSED:
        return _skip_v1(
            SkipReason.SUBSCRIPTION_PAUSED, f"subscription {sub.subscription_id} is paused"
        )
    if sub.copy_mode == CopyMode.CLOSE_ONLY:
        return _skip_v1(
            SkipReason.CLOSE_ONLY_MODE,
            f"subscription {sub.subscription_id} is close-only: nothing new opens",
        )
    return None


def _open_v1(inputs: DecisionInputs, *, pending: bool) -> CopyDecision:
    """An opening action (market open or pending placement) after every check."""
    refusal = _opening_refusal_v1(inputs)
    if refusal is not None:
        return refusal
    event = inputs.event
    sub = inputs.subscription
    mapping = inputs.symbol_map
    if sub.symbols_mode != SymbolsMode.ALL and not symbol_selected(
        event.symbol,
        mode=sub.symbols_mode,
        symbols=sub.symbols,
        master_suffix=mapping.master_suffix,
    ):
        listed = "only" if sub.symbols_mode == SymbolsMode.ONLY_LISTED else "all but"
        return _skip_v1(
            SkipReason.SYMBOL_FILTERED,
            f"{event.symbol} is filtered out (copying {listed}: {sub.symbols or 'none'})",
        )
    resolution = _resolve(event.symbol, mapping)
    spec = inputs.follower_symbol
    if spec is None or spec.symbol.casefold() != resolution.symbol.casefold():
        given = "" if spec is None else f" (a spec was given for {spec.symbol})"
        return _skip_v1(
            SkipReason.SYMBOL_NOT_FOUND,
            f"{event.symbol} -> {resolution.symbol} ({resolution.source}): not on the "
            f"follower's server{given}",
        )
    if not spec.trading:
        return _skip_v1(
            SkipReason.MARKET_CLOSED, f"market of {spec.symbol} is closed on the follower's server"
        )
    if sub.max_positions > 0 and inputs.open_copied_positions >= sub.max_positions:
        return _skip_v1(
            SkipReason.MAX_POSITIONS_REACHED,
            f"{inputs.open_copied_positions} copied positions open >= max_positions "
            f"{sub.max_positions}",
        )
    equity_rate = None
    if sub.volume_mode == VolumeMode.PROPORTIONAL and (
        inputs.follower.currency != inputs.master.currency
    ):
        if inputs.fx_rate is None or inputs.fx_rate <= 0:
            return _skip_v1(
                SkipReason.NO_FX_RATE,
                f"no {inputs.master.currency}->{inputs.follower.currency} rate to compare "
                f"equities (rate {inputs.fx_rate})",
            )
        equity_rate = inputs.fx_rate
    sized: Sized = copy_volume(
        mode=sub.volume_mode,
        master_volume=event.volume,
        risk_multiplier=sub.risk_multiplier,
        fixed_volume=sub.fixed_volume,
        base_equity=sub.base_equity,
        follower_equity=inputs.follower.equity,
        master_equity=inputs.master.equity,
        min_volume=sub.min_volume,
        max_volume=sub.max_volume,
        symbol=spec.symbol,
        symbol_min=spec.min_volume,
        symbol_max=spec.max_volume,
        step=spec.volume_step,
        equity_rate=equity_rate,
    )
    if sized.volume is None:
        return _skip_v1(SkipReason(sized.skip.value), sized.detail)
    reverse = sub.reverse_direction
    sl, tp = follower_levels(
        event.sl, event.tp, reverse=reverse, copy_sl=sub.copy_sl, copy_tp=sub.copy_tp
    )
    side = _REVERSED_SIDE[event.side] if reverse else event.side
    if pending:
        order_type = _REVERSED_TYPE[event.order_type] if reverse else event.order_type
        action = CopyAction.PLACE_PENDING
    else:
        order_type = OrderType.MARKET
        action = CopyAction.OPEN
    what = "existing master position" if event.existing else f"master {event.kind}"
    return CopyDecision(
        rule_version=_V1,
        action=action,
        detail=f"{what} {event.symbol} {event.side}{' reversed' if reverse else ''}: "
        f"{sized.detail}",
        follower_symbol=spec.symbol,
        side=side,
        volume=sized.volume,
        order_type=order_type,
        price=event.price,
        sl=sl,
        tp=tp,
    )


def _link_refusal_v1(
    link: LinkState | None, what: str, none_reason: SkipReason
) -> CopyDecision | None:
    """Why an event on something copied has no follower counterpart to act on, or None."""
    if link is None:
        return _skip_v1(none_reason, f"no follower copy of {what}")
    if link.status is LinkStatus.FAILED:
        return _skip_v1(SkipReason.OPEN_FAILED, f"the follower copy of {what} failed to open")
    if link.status is LinkStatus.CLOSED:
        return _skip_v1(SkipReason.ALREADY_CLOSED, f"the follower copy of {what} is already closed")
    return None


def _position_opened_v1(inputs: DecisionInputs) -> CopyDecision:
    event = inputs.event
    link = inputs.link
    if event.from_order_id is not None and link is not None:
        what = f"master order {event.from_order_id}"
        refusal = _link_refusal_v1(link, what, SkipReason.NO_LINKED_ORDER)
        if refusal is not None:
            return refusal
        return _skip_v1(
            SkipReason.NOTHING_TO_DO,
            f"position {event.position_id} came from {what}, whose follower copy fills at "
            f"the follower's venue by itself",
        )
    if link is not None:
        return _skip_v1(
            SkipReason.ALREADY_COPIED,
            f"master position {event.position_id} already has a follower copy ({link.status})",
        )
    if event.existing and not inputs.subscription.copy_existing_positions:
        return _skip_v1(
            SkipReason.EXISTING_NOT_COPIED,
            f"existing master position {event.position_id}: copy_existing_positions is off",
        )
    return _open_v1(inputs, pending=False)


def _order_placed_v1(inputs: DecisionInputs) -> CopyDecision:
    event = inputs.event
    if event.order_type is OrderType.MARKET or event.price is None:
        return _skip_v1(
            SkipReason.UNSUPPORTED_EVENT,
            f"order_placed of type {event.order_type} at price {event.price}: a pending "
            f"order needs limit or stop and a price",
        )
    if not inputs.subscription.copy_pending_orders:
        return _skip_v1(
            SkipReason.PENDING_NOT_COPIED,
            f"{event.order_type} order {event.order_id}: copy_pending_orders is off (its "
            f"fill is copied as a market open)",
        )
    if inputs.link is not None:
        return _skip_v1(
            SkipReason.ALREADY_COPIED,
            f"master order {event.order_id} already has a follower copy ({inputs.link.status})",
        )
    return _open_v1(inputs, pending=True)


def _order_filled_v1(inputs: DecisionInputs) -> CopyDecision:
    event = inputs.event
    if inputs.subscription.copy_pending_orders:
        detail = (
            f"master order {event.order_id} filled: the follower's pending copy fills at its "
            f"own venue"
        )
    else:
        detail = (
            f"master order {event.order_id} filled: the position_opened of the fill carries "
            f"the copy"
        )
    return _skip_v1(SkipReason.NOTHING_TO_DO, detail)


def _order_cancelled_v1(inputs: DecisionInputs) -> CopyDecision:
    event = inputs.event
    link = inputs.link
    what = f"master order {event.order_id}"
    if link is None and not inputs.subscription.copy_pending_orders:
        return _skip_v1(
            SkipReason.PENDING_NOT_COPIED, f"{what} cancelled: copy_pending_orders is off"
        )
    refusal = _link_refusal_v1(link, what, SkipReason.NO_LINKED_ORDER)
    if refusal is not None:
        return refusal
    assert link is not None
    if link.status is LinkStatus.OPEN:
        # Prices differ across brokers: the follower's copy can fill while the master's
        # order never does. No master position will ever close it, so close it now.
        return CopyDecision(
            rule_version=_V1,
            action=CopyAction.CLOSE,
            detail=f"{what} cancelled after the follower's copy filled: closing it",
            follower_symbol=link.follower_symbol,
            side=link.follower_side,
            volume=link.follower_volume,
            follower_position_ids=link.follower_position_ids,
            follower_order_id=link.follower_order_id,
        )
    return CopyDecision(
        rule_version=_V1,
        action=CopyAction.CANCEL_PENDING,
        detail=f"{what} cancelled: cancelling follower order {link.follower_order_id}",
        follower_symbol=link.follower_symbol,
        side=link.follower_side,
        volume=link.follower_volume,
        follower_order_id=link.follower_order_id,
    )


def _position_closed_v1(inputs: DecisionInputs) -> CopyDecision:
    event = inputs.event
    link = inputs.link
    what = f"master position {event.position_id}"
    refusal = _link_refusal_v1(link, what, SkipReason.NO_LINKED_POSITION)
    if refusal is not None:
        return refusal
    assert link is not None
    remaining = event.remaining_volume
    partial = remaining is not None and remaining > 0
    if link.status is LinkStatus.PENDING:
        if partial:
            return _skip_v1(
                SkipReason.PENDING_NOT_FILLED,
                f"{what} partly closed while the follower's copy still rests as order "
                f"{link.follower_order_id}",
            )
        return CopyDecision(
            rule_version=_V1,
            action=CopyAction.CANCEL_PENDING,
            detail=f"{what} closed before the follower's pending copy filled: cancelling it",
            follower_symbol=link.follower_symbol,
            side=link.follower_side,
            volume=link.follower_volume,
            follower_order_id=link.follower_order_id,
        )
    close_all = CopyDecision(
        rule_version=_V1,
        action=CopyAction.CLOSE,
        detail=f"{what} closed: closing {link.follower_volume} lots {link.follower_symbol}",
        follower_symbol=link.follower_symbol,
        side=link.follower_side,
        volume=link.follower_volume,
        follower_position_ids=link.follower_position_ids,
    )
    if not partial:
        return close_all
    assert remaining is not None
    if not inputs.subscription.copy_partial_close:
        return _skip_v1(
            SkipReason.PARTIAL_CLOSE_NOT_COPIED,
            f"{what} closed {event.closed_volume} lots, {remaining} stay open: "
            f"copy_partial_close is off",
        )
    closed = event.closed_volume
    if closed is None or closed <= 0:
        return _skip_v1(
            SkipReason.NOTHING_TO_DO, f"{what} partial close without a closed volume ({closed})"
        )
    spec = inputs.follower_symbol
    if spec is None or spec.symbol.casefold() != link.follower_symbol.casefold():
        return _skip_v1(
            SkipReason.SYMBOL_NOT_FOUND,
            f"no lot rules for {link.follower_symbol} to size a partial close",
        )
    sized = partial_close_volume(
        follower_volume=link.follower_volume,
        closed_volume=closed,
        remaining_volume=remaining,
        symbol=link.follower_symbol,
        symbol_min=spec.min_volume,
        step=spec.volume_step,
    )
    if sized.volume is None:
        return _skip_v1(SkipReason(sized.skip.value), sized.detail)
    return CopyDecision(
        rule_version=_V1,
        action=CopyAction.CLOSE if sized.close_all else CopyAction.PARTIAL_CLOSE,
        detail=f"{what} partly closed: {sized.detail}",
        follower_symbol=link.follower_symbol,
        side=link.follower_side,
        volume=sized.volume,
        follower_position_ids=link.follower_position_ids,
    )


def _position_modified_v1(inputs: DecisionInputs) -> CopyDecision:
    event = inputs.event
    link = inputs.link
    sub = inputs.subscription
    what = f"master position {event.position_id}"
    refusal = _link_refusal_v1(link, what, SkipReason.NO_LINKED_POSITION)
    if refusal is not None:
        return refusal
    assert link is not None
    if link.status is LinkStatus.PENDING:
        return _skip_v1(
            SkipReason.PENDING_NOT_FILLED,
            f"{what} SL/TP changed while the follower's copy still rests as order "
            f"{link.follower_order_id}",
        )
    new_sl, new_tp = (event.tp, event.sl) if sub.reverse_direction else (event.sl, event.tp)
    current_sl, current_tp = link.follower_sl, link.follower_tp
    target_sl = new_sl if sub.copy_sl else current_sl
    target_tp = new_tp if sub.copy_tp else current_tp
    if target_sl == current_sl and target_tp == current_tp:
        uncopied_differs = (not sub.copy_sl and new_sl != current_sl) or (
            not sub.copy_tp and new_tp != current_tp
        )
        levels = f"master SL {event.sl} TP {event.tp}, follower SL {current_sl} TP {current_tp}"
        if uncopied_differs or not (sub.copy_sl or sub.copy_tp):
            copied = [name for name, on in (("SL", sub.copy_sl), ("TP", sub.copy_tp)) if on]
            return _skip_v1(
                SkipReason.SLTP_NOT_COPIED,
                f"{what}: only levels not copied changed (copying "
                f"{' and '.join(copied) or 'neither SL nor TP'}; {levels})",
            )
        return _skip_v1(
            SkipReason.NOTHING_TO_DO, f"{what}: follower levels already match ({levels})"
        )
    return CopyDecision(
        rule_version=_V1,
        action=CopyAction.MODIFY_SLTP,
        detail=f"{what} SL/TP changed: follower SL {current_sl} -> {target_sl}, "
        f"TP {current_tp} -> {target_tp}{' (reversed)' if sub.reverse_direction else ''}",
        follower_symbol=link.follower_symbol,
        side=link.follower_side,
        volume=link.follower_volume,
        sl=target_sl,
        tp=target_tp,
        follower_position_ids=link.follower_position_ids,
    )


_HANDLERS_V1: dict[EventKind, Callable[[DecisionInputs], CopyDecision]] = {
    EventKind.POSITION_OPENED: _position_opened_v1,
    EventKind.POSITION_MODIFIED: _position_modified_v1,
    EventKind.POSITION_CLOSED: _position_closed_v1,
    EventKind.ORDER_PLACED: _order_placed_v1,
    EventKind.ORDER_CANCELLED: _order_cancelled_v1,
    EventKind.ORDER_FILLED: _order_filled_v1,
}


def _decide_v1(inputs: DecisionInputs) -> CopyDecision:
    handler = _HANDLERS_V1.get(inputs.event.kind)
    if handler is None:
        return _skip_v1(
            SkipReason.UNSUPPORTED_EVENT, f"rules {_V1} do not handle {inputs.event.kind}"
        )
    return handler(inputs)


# ---------------------------------------------------------------------------
# Rules, version 2: version 1, then the pre-trade risk checks (risk.checks) on opens.
# Without limits (`inputs.limits` None) the answer is version 1's, under version 2.

_V2 = "2"


def _skip_v2(reason: SkipReason, detail: str, checks: tuple[CheckResult, ...] = ()) -> CopyDecision:
    return CopyDecision(
        rule_version=_V2, action=CopyAction.SKIP, reason=reason, detail=detail, checks=checks
    )


def _as_v2(decision: CopyDecision) -> CopyDecision:
    """Rules 1's fresh decision, relabelled as rules 2's. Set in place: the object was just
    made by rules 1 and nothing else holds it, and dataclasses.replace costs more than the
    rest of deciding for a follower without limits (the fan-out's hot path)."""
    object.__setattr__(decision, "rule_version", _V2)
    return decision


def _decide_v2(inputs: DecisionInputs) -> CopyDecision:
    limits = inputs.limits
    event = inputs.event
    wait_seconds = limits.market_wait_seconds if limits is not None else 0
    if inputs.waited_seconds is not None:
        # An open that waited for its market, decided again.
        if not inputs.master_position_open:
            return _skip_v2(
                SkipReason.MASTER_POSITION_CLOSED,
                f"master position {event.position_id} closed while the follower's market "
                f"was closed",
            )
        if inputs.waited_seconds > wait_seconds:
            check = CheckResult(
                "MARKET_CLOSED",
                "skip",
                (("max", str(wait_seconds)), ("waited_seconds", str(inputs.waited_seconds))),
            )
            return _skip_v2(
                SkipReason.MARKET_WAIT_EXPIRED,
                f"waited {inputs.waited_seconds} s for the market, more than "
                f"market_wait_seconds {wait_seconds}",
                (check,),
            )
    decision = _decide_v1(inputs)
    if limits is None:
        return _as_v2(decision)
    waits = False
    spec = inputs.follower_symbol
    if (
        decision.reason is SkipReason.MARKET_CLOSED
        and limits.market_closed_policy == "wait"
        and event.kind is EventKind.POSITION_OPENED
        and spec is not None
    ):
        # Decided as if the market were open; sent when it opens.
        reopened = dataclasses.replace(spec, trading=True)
        decision = _decide_v1(dataclasses.replace(inputs, follower_symbol=reopened))
        waits = decision.action is CopyAction.OPEN
    decision = _as_v2(decision)
    if decision.action not in (CopyAction.OPEN, CopyAction.PLACE_PENDING):
        return decision
    assert spec is not None
    assert decision.volume is not None
    pending = decision.action is CopyAction.PLACE_PENDING
    outcome = run_checks(
        limits=limits,
        side=str(decision.side),
        volume=decision.volume,
        pending=pending,
        order_price=event.price,
        master_sl=event.sl,
        follower_sl=decision.sl,
        quote=inputs.quote,
        exposure=inputs.exposure or Exposure(),
        equity=inputs.follower.equity,
        min_volume=max(inputs.subscription.min_volume, spec.min_volume),
        step=spec.volume_step,
    )
    lines = "; ".join(c.line() for c in outcome.checks if c.outcome != "pass")
    if outcome.volume is None:
        assert outcome.reason is not None
        return _skip_v2(SkipReason(outcome.reason), outcome.detail, outcome.checks)
    checks = outcome.checks
    detail = decision.detail + (f"; {lines}" if lines else "")
    if outcome.limit_price is not None:
        decision = dataclasses.replace(
            decision,
            action=CopyAction.PLACE_PENDING,
            order_type=OrderType.LIMIT,
            price=outcome.limit_price,
        )
        detail += f"; sent as a limit order at the master's price {outcome.limit_price}"
    market_wait = 0
    if not pending and limits.market_closed_policy == "wait":
        market_wait = wait_seconds
        if waits:
            checks += (
                CheckResult("MARKET_CLOSED", "wait", (("market_wait_seconds", str(market_wait)),)),
            )
            detail += f"; market closed: waits up to {market_wait} s for it to open"
    return dataclasses.replace(
        decision,
        volume=outcome.volume,
        detail=detail,
        checks=checks,
        market_wait_seconds=market_wait,
    )


# ---------------------------------------------------------------------------
# Registry and entry points

RULES: Mapping[str, Callable[[DecisionInputs], CopyDecision]] = MappingProxyType(
    {_V1: _decide_v1, _V2: _decide_v2}
)


def decide(inputs: DecisionInputs, *, rule_version: str = RULE_VERSION) -> CopyDecision:
    """The copy decision for one (master event, subscription) under the given rules.

    Deterministic: equal inputs and version give an equal decision, whose
    `rule_version` is the version used. A skip always carries a reason and a detail.
    """
    try:
        rules = RULES[rule_version]
    except KeyError:
        raise ValueError(f"unknown rule version {rule_version!r}; known: {sorted(RULES)}") from None
    return rules(inputs)


def replay(inputs: Mapping[str, Any], rule_version: str) -> CopyDecision:
    """Decides again from stored inputs (`DecisionInputs.to_dict()`) under stored rules."""
    return decide(DecisionInputs.from_dict(inputs), rule_version=rule_version)
