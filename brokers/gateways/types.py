"""Normalized, platform-neutral shapes of what a broker tells the back office.

Every gateway answers in these types, whatever its platform sends. They are
frozen (a value read from a broker is a fact, not a thing to edit), use
`Decimal` for every volume, price and amount (DESIGN.md: float never touches
money or volume), aware UTC datetimes for times, and strings for venue ids
(platforms disagree on whether a ticket is a number or a string).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from .errors import RETRYABLE_REASONS, GatewayReason


class Side(StrEnum):
    """Direction of an order, position or deal."""

    BUY = "buy"
    SELL = "sell"


class OrderType(StrEnum):
    """How an order executes: at once (market) or resting until a price (limit, stop)."""

    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"


class OrderStatus(StrEnum):
    """Outcome of placing one order."""

    FILLED = "filled"
    PARTIALLY_FILLED = "partially_filled"
    PLACED = "placed"
    REJECTED = "rejected"


class DealEntry(StrEnum):
    """Whether a deal opened a position, closed (part of) one, or moved the balance."""

    IN = "in"
    OUT = "out"
    BALANCE = "balance"


class CloseReason(StrEnum):
    """Why a position (or part of it) closed."""

    CLIENT = "client"
    SL = "sl"
    TP = "tp"
    STOP_OUT = "stop_out"
    UNKNOWN = "unknown"


class AccountMode(StrEnum):
    """Demo or real money."""

    DEMO = "DEMO"
    REAL = "REAL"


class StreamEventType(StrEnum):
    """Kinds of stream event. RESET means: events were lost, resynchronise from REST."""

    POSITION_OPENED = "position_opened"
    POSITION_MODIFIED = "position_modified"
    POSITION_CLOSED = "position_closed"
    ORDER_PLACED = "order_placed"
    ORDER_CANCELLED = "order_cancelled"
    ORDER_FILLED = "order_filled"
    ACCOUNT_UPDATED = "account_updated"
    HEARTBEAT = "heartbeat"
    RESET = "reset"
    # A type this code does not know yet; kept (with its raw payload) rather than dropped.
    UNKNOWN = "unknown"


# ---------------------------------------------------------------------------
# Conversions shared by every gateway

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_decimal(value: object) -> Decimal:
    """Converts a JSON scalar to Decimal without binary-float artefacts.

    A float goes through `str()` (its shortest repr, which is the literal the
    broker sent), never `Decimal(float)`, so 1.1 becomes Decimal("1.1") and not
    1.100000000000000088817841970012523. Booleans, None and non-finite values are
    refused with ValueError: a volume or price that is not a number is a broker bug
    to surface, not a zero to trade on.
    """
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not a decimal number: {value!r}")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        result = Decimal(str(value))
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation as exc:
            raise ValueError(f"not a decimal number: {value!r}") from exc
    else:
        raise ValueError(f"not a decimal number: {value!r}")
    if not result.is_finite():
        raise ValueError(f"not a finite decimal number: {value!r}")
    return result


def to_optional_decimal(value: object) -> Decimal | None:
    """Like to_decimal, but None (an unset SL or TP) stays None."""
    return None if value is None else to_decimal(value)


def ms_to_datetime(value: object) -> datetime:
    """Converts venue milliseconds since the epoch (int, float or string) to aware UTC.

    Exact down to the microsecond, the finest a datetime holds (rounded half-even).
    """
    micros = (to_decimal(value) * 1000).to_integral_value()
    return _EPOCH + timedelta(microseconds=int(micros))


def datetime_to_ms(value: datetime) -> Decimal:
    """Converts an aware datetime to venue milliseconds since the epoch, exactly."""
    if value.tzinfo is None:
        raise ValueError("naive datetime: pass an aware datetime (timezone.now())")
    delta = value - _EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return Decimal(micros) / 1000


def to_id(value: object) -> str:
    """A venue identifier as a string (tickets are numbers on some platforms)."""
    if value is None or isinstance(value, bool):
        raise ValueError(f"not an identifier: {value!r}")
    return str(value)


def to_optional_id(value: object) -> str | None:
    """Like to_id, but None and "" stay None."""
    if value is None or value == "":
        return None
    return to_id(value)


# ---------------------------------------------------------------------------
# Account, symbols, prices


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """An account's state as the broker reported it at one moment."""

    login: int
    currency: str
    leverage: int
    balance: Decimal
    equity: Decimal
    margin: Decimal
    free_margin: Decimal
    status: str
    mode: str = ""
    name: str = ""

    @property
    def enabled(self) -> bool:
        """True while the account can trade (the venue's "connected")."""
        return self.status == "connected"


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """A symbol's lot rules as the broker states them."""

    symbol: str
    contract_size: Decimal
    min_volume: Decimal
    max_volume: Decimal
    volume_step: Decimal
    digits: int
    margin_currency: str
    trading: bool


@dataclass(frozen=True, slots=True)
class Quote:
    """The current bid and ask of one symbol."""

    symbol: str
    bid: Decimal
    ask: Decimal
    ts: datetime


# ---------------------------------------------------------------------------
# Positions, orders, deals


@dataclass(frozen=True, slots=True)
class Position:
    """An open position (hedging: one per opening fill)."""

    position_id: str
    account: int
    symbol: str
    side: Side
    volume: Decimal
    open_price: Decimal
    open_ts: datetime
    sl: Decimal | None = None
    tp: Decimal | None = None
    profit: Decimal = Decimal(0)
    client_order_id: str | None = None
    comment: str = ""


@dataclass(frozen=True, slots=True)
class PendingOrder:
    """A working limit or stop order."""

    order_id: str
    account: int
    symbol: str
    side: Side
    type: OrderType
    volume: Decimal
    price: Decimal | None
    sl: Decimal | None = None
    tp: Decimal | None = None
    client_order_id: str | None = None
    comment: str = ""
    ts: datetime | None = None


@dataclass(frozen=True, slots=True)
class Deal:
    """One executed fill (opening or closing) or balance operation."""

    deal_id: str
    account: int
    entry: DealEntry
    volume: Decimal
    price: Decimal
    profit: Decimal
    ts: datetime
    symbol: str = ""
    side: Side | None = None
    order_id: str | None = None
    position_id: str | None = None
    client_order_id: str | None = None
    reason: CloseReason = CloseReason.CLIENT
    comment: str = ""


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """An order the back office wants placed.

    `client_order_id` is mandatory: it is the idempotency key that makes a retry
    after a timeout safe (one follower order per client order id, whatever happens).
    """

    account: int
    symbol: str
    side: Side
    volume: Decimal
    client_order_id: str
    type: OrderType = OrderType.MARKET
    price: Decimal | None = None
    sl: Decimal | None = None
    tp: Decimal | None = None
    comment: str = ""

    def __post_init__(self) -> None:
        # Catch float and missing keys at construction, far from the broker call.
        for name in ("volume", "price", "sl", "tp"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Decimal):
                raise TypeError(f"OrderRequest.{name} must be a Decimal, got {type(value)}")
        if not self.client_order_id:
            raise ValueError("OrderRequest.client_order_id is required")


@dataclass(frozen=True, slots=True)
class OrderResult:
    """What became of one OrderRequest.

    Guarantees: `status` is REJECTED exactly when `reason` is set; `replayed` is
    True when this answer is the broker's record of an earlier identical request
    (an idempotent replay, or the order found by lookup before a retry) rather than
    a fresh execution; `ts` is the broker's clock, None only for rejections that
    carried none.
    """

    client_order_id: str
    status: OrderStatus
    order_id: str | None = None
    position_id: str | None = None
    requested_volume: Decimal | None = None
    filled_volume: Decimal = Decimal(0)
    price: Decimal | None = None
    ts: datetime | None = None
    reason: GatewayReason | None = None
    message: str = ""
    replayed: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def ok(self) -> bool:
        """True when the broker accepted the order (filled, partly filled or placed)."""
        return self.status is not OrderStatus.REJECTED

    @property
    def retryable(self) -> bool:
        """True when a rejection is transient and the same request may succeed later."""
        return self.reason in RETRYABLE_REASONS


@dataclass(frozen=True, slots=True)
class CloseResult:
    """What closing (all or part of) a position did."""

    position_id: str
    client_order_id: str
    closed_volume: Decimal
    remaining_volume: Decimal
    price: Decimal
    profit: Decimal
    ts: datetime
    replayed: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)


@dataclass(frozen=True, slots=True)
class BalanceResult:
    """The outcome of a balance operation (credit or debit)."""

    balance: Decimal
    deal_id: str
    ts: datetime
    replayed: bool = False


# ---------------------------------------------------------------------------
# Stream


@dataclass(frozen=True, slots=True)
class ClosedPosition:
    """A close (full or partial) as a stream event reports it.

    `remaining_volume` > 0 means the position stays open with that volume.
    """

    position: Position
    closed_volume: Decimal
    remaining_volume: Decimal
    close_price: Decimal
    profit: Decimal
    reason: CloseReason

    @property
    def partial(self) -> bool:
        """True when part of the position stays open."""
        return self.remaining_volume > 0


@dataclass(frozen=True, slots=True)
class OrderFill:
    """A pending order that filled and what it opened."""

    order_id: str
    account: int
    symbol: str
    side: Side
    volume: Decimal
    price: Decimal | None
    position_id: str | None = None
    client_order_id: str | None = None


@dataclass(frozen=True, slots=True)
class AccountUpdate:
    """Balance, equity and margin of an account after a change."""

    account: int
    balance: Decimal | None = None
    equity: Decimal | None = None
    margin: Decimal | None = None
    free_margin: Decimal | None = None


EventData = Position | ClosedPosition | PendingOrder | OrderFill | AccountUpdate | None


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One event of a broker stream, normalized; the broker's message is kept in `raw`.

    Guarantees: `seq` is the venue's sequence number (for HEARTBEAT the last seq
    sent, for RESET the venue's current seq: resume from it after resynchronising);
    `data` is the normalized payload for the event types that carry one and None
    otherwise; `raw` is the message exactly as decoded from JSON (plain JSON types,
    safe to store in a JSONField).
    """

    seq: int
    type: StreamEventType
    account: int | None
    ts: datetime | None
    data: EventData = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def is_control(self) -> bool:
        """True for events that describe the stream itself (heartbeat, reset), not trading."""
        return self.type in (StreamEventType.HEARTBEAT, StreamEventType.RESET)
