"""The paper venue's trading state, held in memory: accounts, symbols, orders, positions, deals.

Everything here is synchronous and runs on one thread: one call runs to its end
before the next one starts (the server calls it from one event loop and never
awaits inside a call). That is what makes idempotency, the event order and
every "check, then act" in this module safe without locks: nothing can happen
between the check and the act.

The engine is pure: no sockets, no asyncio. The server (``server.py``) turns
HTTP and WebSocket traffic into calls here, and the tests can drive it alone.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import re
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

ZERO = Decimal(0)
CENT = Decimal("0.01")
HALF = Decimal("0.5")
STOP_OUT_LEVEL = Decimal("0.5")
RETAIN_EVENTS = 100_000
MAX_BATCH = 1000
ACCOUNT_UPDATE_INTERVAL_S = 1.0
FIRST_LOGIN = 100001
FIRST_ORDER_ID = 1_000_001
FIRST_DEAL_ID = 50_000_001
# Sanity bounds: past them Decimal maths would lose digits (28 significant).
MAX_PRICE = Decimal(10) ** 9
MAX_MONEY = Decimal(10) ** 12
MAX_LEVERAGE = 10_000
MAX_LOGIN = 2**53
MAX_TEXT = 255
MAX_ID = 128

_DECIMAL_TEXT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)\Z")
# ASCII-only output: a lone surrogate in a client's text ("\ud800") must not make an
# answer or an event impossible to send as UTF-8.
_encode = json.JSONEncoder(separators=(",", ":")).encode

HTTP_STATUS = {
    "UNAUTHORIZED": 401,
    "ACCOUNT_NOT_FOUND": 404,
    "POSITION_NOT_FOUND": 404,
    "ORDER_NOT_FOUND": 404,
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "IDEMPOTENCY_CONFLICT": 409,
    "INVALID_VOLUME": 422,
    "INVALID_STOPS": 422,
    "SYMBOL_NOT_FOUND": 422,
    "INSUFFICIENT_MARGIN": 422,
    "MARKET_CLOSED": 422,
    "ACCOUNT_DISABLED": 422,
    "VALIDATION_ERROR": 422,
    "RATE_LIMITED": 429,
    "UNAVAILABLE": 503,
}


class VenueError(Exception):
    """A refused call: the engine raises it *before* changing anything.

    Every check in this module runs before the first write of its call, so a
    raised VenueError means the state is exactly as it was.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = HTTP_STATUS[code]

    def as_dict(self) -> dict[str, str]:
        return {"error": self.code, "message": self.message}


def money(value: Decimal) -> Decimal:
    """Round an amount of account currency to cents, half up (the one rounding of money)."""
    return value.quantize(CENT, ROUND_HALF_UP)


def round_down_to_step(volume: Decimal, step: Decimal) -> Decimal:
    """Largest multiple of ``step`` not above ``volume``."""
    return (volume / step).to_integral_value(ROUND_DOWN) * step


def _num(value: Decimal) -> float:
    # Decimals leave as JSON numbers; repr of the float is the shortest text that
    # reads back to it, which is the decimal itself for every amount we hold.
    return float(value)


def _opt(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


# --- input parsing ---------------------------------------------------------------------
# Hand-written on purpose: this is the hot path of every order, and a schema library
# would cost more than the order itself.


def _bad(field: str, message: str) -> VenueError:
    return VenueError("VALIDATION_ERROR", f"{field}: {message}")


def _decimal(value: Any, field: str, code: str = "VALIDATION_ERROR") -> Decimal:
    kind = type(value)
    if kind is Decimal:
        result = value
    elif kind is int:
        result = Decimal(value)
    elif kind is float:
        if not math.isfinite(value):
            raise _bad(field, "must be a finite number")
        result = Decimal(repr(value))
    elif kind is str:
        if not _DECIMAL_TEXT.match(value):
            raise _bad(field, f"must be a number or a decimal string, got {value[:40]!r}")
        result = Decimal(value)
    else:
        raise _bad(field, "must be a number or a decimal string")
    if not result.is_finite():
        raise _bad(field, "must be a finite number")
    return result


def _number(value: Any, field: str) -> Decimal:
    """A JSON number (prices are numbers on the wire, never strings)."""
    kind = type(value)
    if kind is not Decimal and kind is not int and kind is not float:
        raise _bad(field, "must be a number")
    return _decimal(value, field)


def _positive_price(value: Any, field: str) -> Decimal:
    price = _number(value, field)
    if price <= 0 or price > MAX_PRICE:
        raise _bad(field, "must be a positive number below 1e9")
    return price


def _on_grid(price: Decimal, symbol: Symbol, field: str) -> Decimal:
    """A price rounded (half up) to the symbol's digits; one that rounds to zero is refused."""
    rounded = price.quantize(symbol.quantum, ROUND_HALF_UP)
    if not rounded:
        raise _bad(field, f"rounds to zero at {symbol.digits} digits")
    return rounded


def _optional_price(body: dict, field: str) -> Decimal | None:
    value = body.get(field)
    if value is None:
        return None
    return _positive_price(value, field)


def _int(value: Any, field: str, low: int = 1, high: int = MAX_LOGIN) -> int:
    if type(value) is not int:
        raise _bad(field, "must be an integer")
    if not low <= value <= high:
        raise _bad(field, f"must be between {low} and {high}")
    return value


def parse_int_param(value: str | None, field: str) -> int:
    """An integer from a URL path or query string."""
    if value is None or value == "":
        raise _bad(field, "is required")
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise _bad(field, f"must be a positive integer, got {value[:40]!r}")
    return int(value)


def _text(body: dict, field: str, *, required: bool, limit: int = MAX_TEXT) -> str | None:
    value = body.get(field)
    if value is None:
        if required:
            raise _bad(field, "is required")
        return None
    if type(value) is not str:
        raise _bad(field, "must be a string")
    if required and not value:
        raise _bad(field, "must not be empty")
    if len(value) > limit:
        raise _bad(field, f"must be at most {limit} characters")
    return value


def _object(body: Any, field: str = "body") -> dict:
    if type(body) is not dict:
        raise _bad(field, "must be a JSON object")
    return body


def _choice(body: dict, field: str, choices: tuple[str, ...], default: str | None = None) -> str:
    value = body.get(field, default)
    if value is None:
        raise _bad(field, "is required")
    if value not in choices or type(value) is not str:
        raise _bad(field, f"must be one of {', '.join(choices)}")
    return value


# --- the built-in instruments -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SymbolTemplate:
    """A built-in instrument: its contract and its starting quote."""

    code: str
    base: str
    quote: str
    margin_currency: str
    contract_size: int
    digits: int
    bid: str
    ask: str
    volatility: float  # standard deviation of one tick's relative move


BUILTIN_SYMBOLS: tuple[SymbolTemplate, ...] = (
    SymbolTemplate("EURUSD", "EUR", "USD", "EUR", 100_000, 5, "1.10000", "1.10010", 0.00003),
    SymbolTemplate("GBPUSD", "GBP", "USD", "GBP", 100_000, 5, "1.27000", "1.27015", 0.00003),
    SymbolTemplate("USDJPY", "USD", "JPY", "USD", 100_000, 3, "150.000", "150.012", 0.00003),
    SymbolTemplate("XAUUSD", "XAU", "USD", "USD", 100, 2, "2000.00", "2000.30", 0.00006),
    SymbolTemplate("US30", "US30", "USD", "USD", 1, 1, "38000.0", "38002.0", 0.00006),
    SymbolTemplate("BTCUSD", "BTC", "USD", "USD", 1, 2, "60000.00", "60010.00", 0.0002),
)
ACCOUNT_CURRENCIES = ("USD", "EUR", "GBP", "JPY")


class Symbol:
    """An instrument as this venue lists it (with its suffix), and its live quote.

    Also indexes what a price change must look at, so a tick touches only the
    accounts, pending orders and stops of its own symbol.
    """

    __slots__ = (
        "name",
        "template",
        "contract_size",
        "digits",
        "quantum",
        "profit_currency",
        "trading",
        "bid",
        "ask",
        "ts",
        "holders",
        "pending",
        "stops",
    )

    def __init__(self, template: SymbolTemplate, suffix: str) -> None:
        self.template = template
        self.name = template.code + suffix
        self.contract_size = Decimal(template.contract_size)
        self.digits = template.digits
        self.quantum = Decimal(1).scaleb(-template.digits)
        self.profit_currency = template.quote
        self.trading = True
        self.bid = Decimal(template.bid)
        self.ask = Decimal(template.ask)
        self.ts = 0.0
        self.holders: dict[int, Account] = {}  # accounts with an open position in it
        self.pending: dict[int, Order] = {}  # working pending orders on it
        self.stops: dict[int, Position] = {}  # open positions with an sl or a tp


class Exposure:
    """One account's open volume in one symbol, summed per side.

    Keeping sums (volume and volume x open price) makes equity and margin
    O(symbols held), not O(positions): a price tick or a margin check never
    walks an account's positions.
    """

    __slots__ = ("symbol", "buy_volume", "buy_cost", "sell_volume", "sell_cost", "count")

    def __init__(self, symbol: Symbol) -> None:
        self.symbol = symbol
        self.buy_volume = ZERO
        self.buy_cost = ZERO
        self.sell_volume = ZERO
        self.sell_cost = ZERO
        self.count = 0


class Account:
    """A trading account and everything it owns. Its idempotency keys live here for life."""

    __slots__ = (
        "login",
        "name",
        "mode",
        "currency",
        "leverage",
        "balance",
        "status",
        "positions",
        "orders",
        "deals",
        "exposures",
        "order_keys",
        "balance_keys",
        "created_with",
        "last_update_at",
        "last_update_state",
    )

    def __init__(
        self, login: int, name: str, mode: str, currency: str, leverage: int, balance: Decimal
    ) -> None:
        self.login = login
        self.name = name
        self.mode = mode
        self.currency = currency
        self.leverage = Decimal(leverage)
        self.balance = balance
        self.status = "connected"
        self.positions: dict[int, Position] = {}
        self.orders: dict[int, Order] = {}
        self.deals: list[Deal] = []
        self.exposures: dict[str, Exposure] = {}
        # client_order_id -> (fingerprint, first answer); closes share the namespace.
        self.order_keys: dict[str, tuple[tuple, dict]] = {}
        self.balance_keys: dict[str, tuple[tuple, dict]] = {}
        self.created_with: tuple = ()
        self.last_update_at = -math.inf
        self.last_update_state: tuple | None = None


class Position:
    __slots__ = (
        "position_id",
        "account",
        "symbol",
        "side",
        "volume",
        "open_price",
        "open_ts",
        "sl",
        "tp",
        "client_order_id",
        "comment",
    )

    def __init__(
        self,
        position_id: int,
        account: Account,
        symbol: Symbol,
        side: str,
        volume: Decimal,
        open_price: Decimal,
        open_ts: float,
        sl: Decimal | None,
        tp: Decimal | None,
        client_order_id: str | None,
        comment: str | None,
    ) -> None:
        self.position_id = position_id
        self.account = account
        self.symbol = symbol
        self.side = side
        self.volume = volume
        self.open_price = open_price
        self.open_ts = open_ts
        self.sl = sl
        self.tp = tp
        self.client_order_id = client_order_id
        self.comment = comment


class Order:
    """A pending (limit or stop) order, from placement until it fills or is cancelled."""

    __slots__ = (
        "order_id",
        "account",
        "symbol",
        "side",
        "type",
        "volume",
        "price",
        "sl",
        "tp",
        "client_order_id",
        "comment",
        "ts",
        "status",
        "position_id",
        "deal_id",
        "fill_price",
        "reason",
    )

    def __init__(
        self,
        order_id: int,
        account: Account,
        symbol: Symbol,
        side: str,
        type_: str,
        volume: Decimal,
        price: Decimal,
        sl: Decimal | None,
        tp: Decimal | None,
        client_order_id: str,
        comment: str | None,
        ts: float,
    ) -> None:
        self.order_id = order_id
        self.account = account
        self.symbol = symbol
        self.side = side
        self.type = type_
        self.volume = volume
        self.price = price
        self.sl = sl
        self.tp = tp
        self.client_order_id = client_order_id
        self.comment = comment
        self.ts = ts
        self.status = "placed"
        self.position_id: int | None = None
        self.deal_id: int | None = None
        self.fill_price: Decimal | None = None
        self.reason: str | None = None


class Deal:
    __slots__ = (
        "deal_id",
        "login",
        "order_id",
        "position_id",
        "client_order_id",
        "symbol",
        "side",
        "entry",
        "volume",
        "price",
        "profit",
        "reason",
        "comment",
        "ts",
    )

    def __init__(
        self,
        deal_id: int,
        login: int,
        order_id: int | None,
        position_id: int | None,
        client_order_id: str | None,
        symbol: str | None,
        side: str | None,
        entry: str,
        volume: Decimal | None,
        price: Decimal | None,
        profit: Decimal,
        reason: str,
        comment: str | None,
        ts: float,
    ) -> None:
        self.deal_id = deal_id
        self.login = login
        self.order_id = order_id
        self.position_id = position_id
        self.client_order_id = client_order_id
        self.symbol = symbol
        self.side = side
        self.entry = entry
        self.volume = volume
        self.price = price
        self.profit = profit
        self.reason = reason
        self.comment = comment
        self.ts = ts

    def as_dict(self) -> dict[str, Any]:
        return {
            "deal_id": self.deal_id,
            "account": self.login,
            "order_id": self.order_id,
            "position_id": self.position_id,
            "client_order_id": self.client_order_id,
            "symbol": self.symbol,
            "side": self.side,
            "entry": self.entry,
            "volume": _opt(self.volume),
            "price": _opt(self.price),
            "profit": _num(self.profit),
            "reason": self.reason,
            "comment": self.comment,
            "ts": self.ts,
        }


# --- configuration, faults ------------------------------------------------------------


@dataclass(slots=True)
class VenueConfig:
    """What the command line decides: the broker this venue plays."""

    platform: str = "MT5"
    symbol_suffix: str = ""
    min_volume: Decimal = Decimal("0.01")
    volume_step: Decimal = Decimal("0.01")
    max_volume: Decimal = Decimal("100")
    seed: int = 1
    retain_events: int = RETAIN_EVENTS

    def __post_init__(self) -> None:
        for name in ("min_volume", "volume_step", "max_volume"):
            value = Decimal(str(getattr(self, name)))
            if not value.is_finite() or value <= 0:
                raise ValueError(f"{name} must be a positive number")
            setattr(self, name, value)
        if self.min_volume % self.volume_step:
            raise ValueError("min_volume must be a multiple of volume_step")
        if self.max_volume < self.min_volume:
            raise ValueError("max_volume must not be below min_volume")
        if self.retain_events < 1:
            raise ValueError("retain_events must be positive")


@dataclass(slots=True)
class Faults:
    reject_rate: float = 0.0
    error_rate: float = 0.0
    latency_ms: int = 0
    partial_fill_rate: float = 0.0
    rate_limit_per_s: int = 0
    seed: int = 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "reject_rate": self.reject_rate,
            "error_rate": self.error_rate,
            "latency_ms": self.latency_ms,
            "partial_fill_rate": self.partial_fill_rate,
            "rate_limit_per_s": self.rate_limit_per_s,
            "drop_streams": False,
            "seed": self.seed,
        }


_FAULT_RATES = ("reject_rate", "error_rate", "partial_fill_rate")
_FAULT_FIELDS = (*_FAULT_RATES, "latency_ms", "rate_limit_per_s", "drop_streams", "seed")

# What a listener gets: (seq, account or None, the event as JSON text).
EventListener = Callable[[int, int | None, str], None]


class Engine:
    """The whole venue state. One instance per venue process.

    Invariants it keeps:
    - a refused call changes nothing (every check runs before the first write);
    - a client_order_id (or client_op_id) accepted once for an account answers the
      same forever, and never acts twice;
    - ``seq`` grows by one per event, and the events of an account are emitted in the
      order their changes happened;
    - an account's exposures always equal the sum of its open positions.
    """

    def __init__(
        self,
        config: VenueConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or VenueConfig()
        self._clock = clock
        self._monotonic = monotonic
        self.listener: EventListener | None = None
        self._reset_state()

    # --- lifecycle -------------------------------------------------------------------

    def _reset_state(self) -> None:
        cfg = self.config
        self.symbols: dict[str, Symbol] = {}
        self._by_code: dict[str, Symbol] = {}
        for template in BUILTIN_SYMBOLS:
            symbol = Symbol(template, cfg.symbol_suffix)
            self.symbols[symbol.name] = symbol
            self._by_code[template.code] = symbol
        self.accounts: dict[int, Account] = {}
        self._foreign: dict[int, Account] = {}  # accounts not in USD: every FX tick moves them
        self._positions: dict[int, Position] = {}
        self._orders: dict[int, Order] = {}
        self._next_login = FIRST_LOGIN
        self._next_order_id = FIRST_ORDER_ID
        self._next_deal_id = FIRST_DEAL_ID
        self.seq = 0
        self._log: deque[tuple[int, int | None, str]] = deque(maxlen=cfg.retain_events)
        self._dirty: dict[int, Account] = {}
        self._last_ts = 0.0
        self.faults = Faults(seed=cfg.seed)
        # A simulation, not cryptography: seeded generators make runs repeat.
        self._fault_rng = random.Random(cfg.seed)  # noqa: S311
        self._price_rng = random.Random(cfg.seed)  # noqa: S311
        self._rate_window = 0
        self._rate_count = 0
        self.counters = {"orders": 0, "fills": 0, "duplicates_absorbed": 0, "conflicts": 0}
        now = self.now_ms()
        for symbol in self.symbols.values():
            symbol.ts = now
        self._refresh_rates()

    def reset(self) -> None:
        """Forget everything: accounts, orders, positions, events (seq restarts at 0), faults."""
        self._reset_state()

    def now_ms(self) -> float:
        """The venue clock: milliseconds since the epoch, never going backwards."""
        now = round(self._clock() * 1000.0, 1)
        if now < self._last_ts:
            now = self._last_ts
        self._last_ts = now
        return now

    # --- events -----------------------------------------------------------------------

    def emit(self, type_: str, login: int | None, data: dict[str, Any]) -> int:
        """Record one event with the next seq and hand it to the listener."""
        self.seq += 1
        seq = self.seq
        text = _encode(
            {"seq": seq, "type": type_, "account": login, "ts": self.now_ms(), "data": data}
        )
        self._log.append((seq, login, text))
        listener = self.listener
        if listener is not None:
            listener(seq, login, text)
        return seq

    def events_since(
        self, from_seq: int, accounts: set[int] | None
    ) -> list[tuple[int, str]] | None:
        """The retained events after ``from_seq`` for ``accounts`` (None: all), oldest first.

        None means the venue can no longer tell what came after ``from_seq`` (the
        events were dropped from the log, or ``from_seq`` is from the future, e.g. an
        earlier run of the venue): the client must resynchronise.
        """
        if from_seq > self.seq:
            return None
        if from_seq == self.seq:
            return []
        log = self._log
        first = log[0][0] if log else self.seq + 1
        if from_seq < first - 1:
            return None
        start = from_seq + 1 - first
        if accounts is None:
            return [(seq, text) for seq, _login, text in _islice(log, start)]
        return [(seq, text) for seq, login, text in _islice(log, start) if login in accounts]

    def _touch(self, account: Account) -> None:
        """Note that an account's figures changed; account_updated goes out at most once a second.

        The first change after a quiet second is sent at once; later ones wait in
        ``_dirty`` until ``flush_account_updates`` sends the latest state.
        """
        login = account.login
        if login in self._dirty:
            return
        if self._monotonic() - account.last_update_at >= ACCOUNT_UPDATE_INTERVAL_S:
            self._send_account_update(account)
        else:
            self._dirty[login] = account

    def _send_account_update(self, account: Account) -> None:
        data = self._account_dict(account)
        state = (data["balance"], data["equity"], data["margin"], data["status"])
        if state == account.last_update_state:
            return
        account.last_update_state = state
        account.last_update_at = self._monotonic()
        self.emit("account_updated", account.login, data)

    def flush_account_updates(self) -> None:
        """Send the held-back account_updated events whose second has passed."""
        if not self._dirty:
            return
        now = self._monotonic()
        due = [
            a for a in self._dirty.values() if now - a.last_update_at >= ACCOUNT_UPDATE_INTERVAL_S
        ]
        for account in due:
            del self._dirty[account.login]
            if self.accounts.get(account.login) is account:
                self._send_account_update(account)

    # --- money maths ------------------------------------------------------------------

    def _refresh_rates(self) -> None:
        """Value of one unit of each currency in USD, at mid prices."""
        eur = self._by_code["EURUSD"]
        gbp = self._by_code["GBPUSD"]
        jpy = self._by_code["USDJPY"]
        self._usd_value = {
            "USD": Decimal(1),
            "EUR": (eur.bid + eur.ask) * HALF,
            "GBP": (gbp.bid + gbp.ask) * HALF,
            "JPY": Decimal(1) / ((jpy.bid + jpy.ask) * HALF),
        }

    def _rate(self, from_ccy: str, to_ccy: str) -> Decimal:
        if from_ccy == to_ccy:
            return Decimal(1)
        values = self._usd_value
        return values[from_ccy] / values[to_ccy]

    def _figures(self, account: Account) -> tuple[Decimal, Decimal]:
        """Unrounded (equity, margin) of an account at current prices."""
        floating = ZERO
        margin = ZERO
        currency = account.currency
        for exposure in account.exposures.values():
            symbol = exposure.symbol
            bid = symbol.bid
            ask = symbol.ask
            size = symbol.contract_size
            profit = (
                bid * exposure.buy_volume
                - exposure.buy_cost
                + exposure.sell_cost
                - ask * exposure.sell_volume
            ) * size
            used = (ask * exposure.buy_volume + bid * exposure.sell_volume) * size
            if symbol.profit_currency != currency:
                rate = self._rate(symbol.profit_currency, currency)
                profit *= rate
                used *= rate
            floating += profit
            margin += used
        return account.balance + floating, margin / account.leverage

    def _position_profit(self, position: Position) -> Decimal:
        symbol = position.symbol
        if position.side == "buy":
            diff = symbol.bid - position.open_price
        else:
            diff = position.open_price - symbol.ask
        profit = diff * position.volume * symbol.contract_size
        currency = position.account.currency
        if symbol.profit_currency != currency:
            profit *= self._rate(symbol.profit_currency, currency)
        return money(profit)

    # --- views --------------------------------------------------------------------------

    def _account_dict(self, account: Account) -> dict[str, Any]:
        equity, margin = self._figures(account)
        equity = money(equity)
        margin = money(margin)
        return {
            "login": account.login,
            "name": account.name,
            "mode": account.mode,
            "platform": self.config.platform,
            "currency": account.currency,
            "leverage": int(account.leverage),
            "balance": _num(account.balance),
            "equity": _num(equity),
            "margin": _num(margin),
            "free_margin": _num(equity - margin),
            "margin_level": _num(money(equity / margin * 100)) if margin else None,
            "status": account.status,
        }

    def _position_dict(self, position: Position) -> dict[str, Any]:
        return {
            "position_id": position.position_id,
            "account": position.account.login,
            "symbol": position.symbol.name,
            "side": position.side,
            "volume": _num(position.volume),
            "open_price": _num(position.open_price),
            "open_ts": position.open_ts,
            "sl": _opt(position.sl),
            "tp": _opt(position.tp),
            "profit": _num(self._position_profit(position)),
            "client_order_id": position.client_order_id,
            "comment": position.comment,
        }

    @staticmethod
    def _order_dict(order: Order) -> dict[str, Any]:
        data = {
            "order_id": order.order_id,
            "account": order.account.login,
            "client_order_id": order.client_order_id,
            "symbol": order.symbol.name,
            "side": order.side,
            "type": order.type,
            "volume": _num(order.volume),
            "price": _num(order.price),
            "sl": _opt(order.sl),
            "tp": _opt(order.tp),
            "comment": order.comment,
            "status": order.status,
            "ts": order.ts,
        }
        if order.status == "filled":
            data["position_id"] = order.position_id
            data["deal_id"] = order.deal_id
            data["fill_price"] = _opt(order.fill_price)
        elif order.status == "cancelled":
            data["reason"] = order.reason
        return data

    @staticmethod
    def _symbol_dict(symbol: Symbol, config: VenueConfig) -> dict[str, Any]:
        return {
            "symbol": symbol.name,
            "contract_size": int(symbol.contract_size),
            "min_volume": _num(config.min_volume),
            "max_volume": _num(config.max_volume),
            "volume_step": _num(config.volume_step),
            "digits": symbol.digits,
            "margin_currency": symbol.template.margin_currency,
            "profit_currency": symbol.profit_currency,
            "trading": symbol.trading,
        }

    @staticmethod
    def _price_dict(symbol: Symbol) -> dict[str, Any]:
        return {
            "symbol": symbol.name,
            "bid": _num(symbol.bid),
            "ask": _num(symbol.ask),
            "ts": symbol.ts,
        }

    def info(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "venue": "paper",
            "version": 1,
            "platform": cfg.platform,
            "symbol_suffix": cfg.symbol_suffix,
            "min_volume": _num(cfg.min_volume),
            "volume_step": _num(cfg.volume_step),
            "max_volume": _num(cfg.max_volume),
            "seq": self.seq,
            "ts": self.now_ms(),
        }

    # --- lookups --------------------------------------------------------------------

    def _account(self, login: int) -> Account:
        account = self.accounts.get(login)
        if account is None:
            raise VenueError("ACCOUNT_NOT_FOUND", f"account: no account {login}")
        return account

    def _symbol(self, name: Any, field: str = "symbol") -> Symbol:
        if type(name) is not str:
            raise _bad(field, "must be a string")
        symbol = self.symbols.get(name)
        if symbol is None:
            raise VenueError("SYMBOL_NOT_FOUND", f"{field}: no symbol {name[:40]!r} on this venue")
        return symbol

    def _check_volume(self, volume: Decimal, field: str = "volume") -> None:
        cfg = self.config
        if volume <= 0:
            raise VenueError("INVALID_VOLUME", f"{field}: must be positive, got {volume}")
        if volume < cfg.min_volume or volume > cfg.max_volume:
            raise VenueError(
                "INVALID_VOLUME",
                f"{field}: {volume} is outside {cfg.min_volume}..{cfg.max_volume}",
            )
        if volume % cfg.volume_step:
            raise VenueError(
                "INVALID_VOLUME", f"{field}: {volume} is not a multiple of {cfg.volume_step}"
            )

    def _parse_volume(self, value: Any, field: str = "volume") -> Decimal:
        if value is None:
            raise _bad(field, "is required")
        volume = _decimal(value, field)
        self._check_volume(volume, field)
        return volume

    # --- accounts ---------------------------------------------------------------------

    def create_account(self, body: Any) -> tuple[bool, dict[str, Any]]:
        """Open an account. A login given twice with the same fields answers the account again."""
        body = _object(body)
        login = body.get("login")
        if login is not None:
            login = _int(login, "login")
        balance = _decimal(body.get("balance"), "balance") if "balance" in body else None
        if balance is None:
            raise _bad("balance", "is required")
        if balance < 0 or balance > MAX_MONEY:
            raise _bad("balance", "must be between 0 and 1e12")
        if balance != money(balance):
            raise _bad("balance", "must have at most 2 decimals")
        currency = _choice(body, "currency", ACCOUNT_CURRENCIES)
        leverage = _int(body.get("leverage"), "leverage", 1, MAX_LEVERAGE)
        mode = _choice(body, "mode", ("DEMO", "REAL"))
        name = _text(body, "name", required=False) or ""
        created_with = (balance, currency, leverage, mode, name)
        if login is not None and login in self.accounts:
            existing = self.accounts[login]
            if existing.created_with != created_with:
                self.counters["conflicts"] += 1
                raise VenueError(
                    "IDEMPOTENCY_CONFLICT", f"login: account {login} exists with other fields"
                )
            self.counters["duplicates_absorbed"] += 1
            return False, self._account_dict(existing)
        if login is None:
            while self._next_login in self.accounts:
                self._next_login += 1
            login = self._next_login
            self._next_login += 1
        account = Account(login, name, mode, currency, leverage, balance)
        account.created_with = created_with
        self.accounts[login] = account
        if currency != "USD":
            self._foreign[login] = account
        self._touch(account)
        return True, self._account_dict(account)

    def get_account(self, login: int) -> dict[str, Any]:
        return self._account_dict(self._account(login))

    def patch_account(self, login: int, body: Any) -> dict[str, Any]:
        """Admin: enable or disable an account (a disabled account can place no order)."""
        body = _object(body)
        account = self._account(login)
        if "status" in body:
            status = _choice(body, "status", ("connected", "disabled"))
            if status != account.status:
                account.status = status
                self._touch(account)
        return self._account_dict(account)

    def balance_operation(self, login: int, body: Any) -> tuple[bool, dict[str, Any]]:
        """Credit or debit the balance, once per client_op_id; records a balance deal."""
        body = _object(body)
        account = self._account(login)
        if "amount" not in body:
            raise _bad("amount", "is required")
        amount = _decimal(body["amount"], "amount")
        comment = _text(body, "comment", required=False)
        key = _text(body, "client_op_id", required=True, limit=MAX_ID)
        fingerprint = (amount, comment)
        known = account.balance_keys.get(key)
        if known is not None:
            return self._replay(known, fingerprint, "client_op_id", key)
        if amount == 0 or abs(amount) > MAX_MONEY:
            raise _bad("amount", "must be non-zero and below 1e12 in size")
        if amount != money(amount):
            raise _bad("amount", "must have at most 2 decimals")
        if amount < 0:
            equity, margin = self._figures(account)
            if money(equity + amount) - money(margin) < 0:
                raise VenueError(
                    "INSUFFICIENT_MARGIN", f"amount: a debit of {-amount} exceeds the free margin"
                )
        account.balance += amount
        ts = self.now_ms()
        deal = self._record_deal(
            account, None, None, key, None, None, "balance", None, None, amount, "client", comment
        )
        answer = {"balance": _num(account.balance), "deal_id": deal.deal_id, "ts": ts}
        account.balance_keys[key] = (fingerprint, answer)
        self._touch(account)
        return True, answer

    def list_positions(self, login: int) -> list[dict[str, Any]]:
        account = self._account(login)
        return [self._position_dict(p) for p in account.positions.values()]

    def list_orders(self, login: int) -> list[dict[str, Any]]:
        account = self._account(login)
        return [self._order_dict(o) for o in account.orders.values()]

    def list_deals(self, login: int, from_ts: float | None = None) -> list[dict[str, Any]]:
        account = self._account(login)
        deals = account.deals
        start = 0 if from_ts is None else bisect_left(deals, from_ts, key=lambda d: d.ts)
        return [deal.as_dict() for deal in deals[start:]]

    # --- symbols and prices ---------------------------------------------------------

    def list_symbols(self) -> list[dict[str, Any]]:
        return [self._symbol_dict(s, self.config) for s in self.symbols.values()]

    def get_price(self, name: str) -> dict[str, Any]:
        return self._price_dict(self._symbol(name))

    def admin_set_price(self, body: Any) -> dict[str, Any]:
        """Set a quote now; everything that depends on it (stops, pending, stop-out) follows."""
        body = _object(body)
        symbol = self._symbol(body.get("symbol"))
        bid = _on_grid(_positive_price(body.get("bid"), "bid"), symbol, "bid")
        ask = _on_grid(_positive_price(body.get("ask"), "ask"), symbol, "ask")
        if ask < bid:
            raise _bad("ask", "must not be below bid")
        self.set_price(symbol, bid, ask)
        return self._price_dict(symbol)

    def admin_set_symbol(self, name: str, body: Any) -> dict[str, Any]:
        """Open or close a market; reopening runs the triggers that waited for it."""
        body = _object(body)
        symbol = self._symbol(name)
        if "trading" in body:
            trading = body["trading"]
            if type(trading) is not bool:
                raise _bad("trading", "must be true or false")
            if trading != symbol.trading:
                symbol.trading = trading
                if trading:
                    self.set_price(symbol, symbol.bid, symbol.ask)
        return self._symbol_dict(symbol, self.config)

    def tick(self) -> None:
        """One step of the random-walk feed: every open market moves a little."""
        rng = self._price_rng
        for symbol in self.symbols.values():
            if not symbol.trading:
                continue
            move = Decimal(repr(1.0 + rng.gauss(0.0, symbol.template.volatility)))
            spread = symbol.ask - symbol.bid
            bid = (symbol.bid * move).quantize(symbol.quantum, ROUND_HALF_UP)
            if bid <= 0:
                bid = symbol.quantum
            self.set_price(symbol, bid, bid + spread)

    def set_price(self, symbol: Symbol, bid: Decimal, ask: Decimal) -> None:
        """Apply a quote: fill pending orders, hit SL/TP, stop out, then move the accounts."""
        symbol.bid = bid
        symbol.ask = ask
        symbol.ts = self.now_ms()
        code = symbol.template.code
        is_rate = code in ("EURUSD", "GBPUSD", "USDJPY")
        if is_rate:
            self._refresh_rates()
        if symbol.trading:
            if symbol.pending:
                self._trigger_pending(symbol)
            if symbol.stops:
                self._trigger_stops(symbol)
        affected: Iterable[Account] = list(symbol.holders.values())
        if is_rate and self._foreign:
            seen = {a.login: a for a in affected}
            for account in self._foreign.values():
                if account.exposures:
                    seen.setdefault(account.login, account)
            affected = seen.values()
        for account in affected:
            self._check_stop_out(account)
            self._touch(account)

    # --- orders -----------------------------------------------------------------------

    def _replay(
        self, known: tuple[tuple, dict], fingerprint: tuple, field: str, key: str
    ) -> tuple[bool, dict[str, Any]]:
        """Answer a repeated idempotency key: the first answer, or a conflict."""
        if known[0] != fingerprint:
            self.counters["conflicts"] += 1
            raise VenueError(
                "IDEMPOTENCY_CONFLICT",
                f"{field}: {key[:64]!r} was already used with a different body",
            )
        self.counters["duplicates_absorbed"] += 1
        return False, known[1]

    def check_rate_limit(self) -> None:
        """Fault injection: refuse order calls past ``rate_limit_per_s`` in a second."""
        limit = self.faults.rate_limit_per_s
        if not limit:
            return
        window = int(self._monotonic())
        if window != self._rate_window:
            self._rate_window = window
            self._rate_count = 0
        self._rate_count += 1
        if self._rate_count > limit:
            raise VenueError("RATE_LIMITED", f"more than {limit} order calls in one second")

    def draw_error(self) -> str | None:
        """Fault injection: None, or whether this order call fails 'before' or 'after' acting."""
        rate = self.faults.error_rate
        if not rate:
            return None
        rng = self._fault_rng
        if rng.random() >= rate:
            return None
        return "before" if rng.random() < 0.5 else "after"

    def place_order(self, body: Any) -> tuple[bool, dict[str, Any]]:
        """Place one order. Returns (created, answer); created is False for a repeat."""
        body = _object(body)
        login = _int(body.get("account"), "account")
        key = _text(body, "client_order_id", required=True, limit=MAX_ID)
        name = body.get("symbol")
        if type(name) is not str:
            raise _bad("symbol", "is required" if name is None else "must be a string")
        side = _choice(body, "side", ("buy", "sell"))
        type_ = _choice(body, "type", ("market", "limit", "stop"))
        if body.get("volume") is None:
            raise _bad("volume", "is required")
        volume = _decimal(body["volume"], "volume")
        price = _optional_price(body, "price")
        if type_ != "market" and price is None:
            raise _bad("price", f"is required for a {type_} order")
        sl = _optional_price(body, "sl")
        tp = _optional_price(body, "tp")
        comment = _text(body, "comment", required=False)

        account = self._account(login)
        fingerprint = ("order", name, side, type_, volume, price, sl, tp, comment)
        known = account.order_keys.get(key)
        if known is not None:
            return self._replay(known, fingerprint, "client_order_id", key)
        if account.status != "connected":
            raise VenueError("ACCOUNT_DISABLED", f"account: {login} is disabled")
        symbol = self._symbol(name)
        if not symbol.trading:
            raise VenueError("MARKET_CLOSED", f"symbol: the {symbol.name} market is closed")
        self._check_volume(volume)
        if sl is not None:
            sl = _on_grid(sl, symbol, "sl")
        if tp is not None:
            tp = _on_grid(tp, symbol, "tp")
        if type_ == "market":
            self._check_stops_at_market(symbol, side, sl, tp)
            answer = self._fill_new(account, symbol, side, volume, sl, tp, key, comment)
        else:
            price = _on_grid(price, symbol, "price")
            self._check_stops_around(side, price, sl, tp, "price")
            if _triggered(symbol, side, type_, price):
                # A limit that is already marketable, or a stop already passed, executes
                # at once at the market price, as a real venue would.
                self._check_stops_at_market(symbol, side, sl, tp)
                answer = self._fill_new(
                    account, symbol, side, volume, sl, tp, key, comment, type_=type_
                )
            else:
                self._maybe_reject()
                answer = self._place_pending(
                    account, symbol, side, type_, volume, price, sl, tp, key, comment
                )
        account.order_keys[key] = (fingerprint, answer)
        self.counters["orders"] += 1
        return True, answer

    def _maybe_reject(self) -> None:
        rate = self.faults.reject_rate
        if rate and self._fault_rng.random() < rate:
            raise VenueError("INSUFFICIENT_MARGIN", "volume: not enough free margin (injected)")

    def _check_margin(self, account: Account, symbol: Symbol, side: str, volume: Decimal) -> None:
        """Refuse an opening that would leave free margin below zero (spread cost included)."""
        equity, margin = self._figures(account)
        size = volume * symbol.contract_size
        price = symbol.ask if side == "buy" else symbol.bid
        added = size * price
        spread_loss = (symbol.ask - symbol.bid) * size
        if symbol.profit_currency != account.currency:
            rate = self._rate(symbol.profit_currency, account.currency)
            added *= rate
            spread_loss *= rate
        free = money(equity - spread_loss) - money(margin + added / account.leverage)
        if free < 0:
            raise VenueError(
                "INSUFFICIENT_MARGIN",
                f"volume: {volume} {symbol.name} needs more margin than the "
                f"{money(equity) - money(margin)} free",
            )

    def _fill_new(
        self,
        account: Account,
        symbol: Symbol,
        side: str,
        volume: Decimal,
        sl: Decimal | None,
        tp: Decimal | None,
        key: str,
        comment: str | None,
        type_: str = "market",
    ) -> dict[str, Any]:
        self._maybe_reject()
        self._check_margin(account, symbol, side, volume)
        filled = volume
        rate = self.faults.partial_fill_rate
        if type_ == "market" and rate and self._fault_rng.random() < rate:
            filled = self._partial_volume(volume)
        order_id = self._new_order_id()
        price = symbol.ask if side == "buy" else symbol.bid
        position, deal = self._open_position(
            account, symbol, side, filled, price, sl, tp, key, comment, order_id
        )
        return {
            "order_id": order_id,
            "client_order_id": key,
            "account": account.login,
            "symbol": symbol.name,
            "side": side,
            "type": type_,
            "status": "filled" if filled == volume else "partially_filled",
            "requested_volume": _num(volume),
            "filled_volume": _num(filled),
            "price": _num(price),
            "position_id": position.position_id,
            "deal_id": deal.deal_id,
            "ts": deal.ts,
        }

    def _partial_volume(self, volume: Decimal) -> Decimal:
        cfg = self.config
        share = Decimal(repr(self._fault_rng.uniform(0.2, 0.8)))
        filled = round_down_to_step(volume * share, cfg.volume_step)
        ceiling = volume - cfg.volume_step
        filled = min(max(filled, cfg.min_volume), ceiling)
        return filled if filled >= cfg.min_volume else volume

    def _place_pending(
        self,
        account: Account,
        symbol: Symbol,
        side: str,
        type_: str,
        volume: Decimal,
        price: Decimal,
        sl: Decimal | None,
        tp: Decimal | None,
        key: str,
        comment: str | None,
    ) -> dict[str, Any]:
        order = Order(
            self._new_order_id(),
            account,
            symbol,
            side,
            type_,
            volume,
            price,
            sl,
            tp,
            key,
            comment,
            self.now_ms(),
        )
        account.orders[order.order_id] = order
        symbol.pending[order.order_id] = order
        self._orders[order.order_id] = order
        self.emit("order_placed", account.login, self._order_dict(order))
        return {
            "order_id": order.order_id,
            "client_order_id": key,
            "account": account.login,
            "symbol": symbol.name,
            "side": side,
            "type": type_,
            "status": "placed",
            "requested_volume": _num(volume),
            "filled_volume": 0.0,
            "price": _num(price),
            "position_id": None,
            "deal_id": None,
            "ts": order.ts,
        }

    def _new_order_id(self) -> int:
        order_id = self._next_order_id
        self._next_order_id += 1
        return order_id

    def _record_deal(
        self,
        account: Account,
        order_id: int | None,
        position_id: int | None,
        key: str | None,
        symbol: Symbol | None,
        side: str | None,
        entry: str,
        volume: Decimal | None,
        price: Decimal | None,
        profit: Decimal,
        reason: str,
        comment: str | None,
    ) -> Deal:
        deal = Deal(
            self._next_deal_id,
            account.login,
            order_id,
            position_id,
            key,
            symbol.name if symbol is not None else None,
            side,
            entry,
            volume,
            price,
            profit,
            reason,
            comment,
            self.now_ms(),
        )
        self._next_deal_id += 1
        account.deals.append(deal)
        if entry != "balance":
            self.counters["fills"] += 1
        return deal

    def _open_position(
        self,
        account: Account,
        symbol: Symbol,
        side: str,
        volume: Decimal,
        price: Decimal,
        sl: Decimal | None,
        tp: Decimal | None,
        key: str | None,
        comment: str | None,
        order_id: int,
    ) -> tuple[Position, Deal]:
        """Open a position (its id is the opening order's id, as on MT5) and emit it."""
        deal = self._record_deal(
            account,
            order_id,
            order_id,
            key,
            symbol,
            side,
            "in",
            volume,
            price,
            ZERO,
            "client",
            comment,
        )
        position = Position(
            order_id, account, symbol, side, volume, price, deal.ts, sl, tp, key, comment
        )
        account.positions[order_id] = position
        self._positions[order_id] = position
        if sl is not None or tp is not None:
            symbol.stops[order_id] = position
        exposure = account.exposures.get(symbol.name)
        if exposure is None:
            exposure = account.exposures[symbol.name] = Exposure(symbol)
            symbol.holders[account.login] = account
        cost = volume * price
        if side == "buy":
            exposure.buy_volume += volume
            exposure.buy_cost += cost
        else:
            exposure.sell_volume += volume
            exposure.sell_cost += cost
        exposure.count += 1
        self.emit("position_opened", account.login, self._position_dict(position))
        self._touch(account)
        return position, deal

    # --- stops ------------------------------------------------------------------------

    @staticmethod
    def _check_stops_around(
        side: str, reference: Decimal, sl: Decimal | None, tp: Decimal | None, what: str
    ) -> None:
        if side == "buy":
            if sl is not None and sl >= reference:
                raise VenueError("INVALID_STOPS", f"sl: {sl} must be below the {what} {reference}")
            if tp is not None and tp <= reference:
                raise VenueError("INVALID_STOPS", f"tp: {tp} must be above the {what} {reference}")
        else:
            if sl is not None and sl <= reference:
                raise VenueError("INVALID_STOPS", f"sl: {sl} must be above the {what} {reference}")
            if tp is not None and tp >= reference:
                raise VenueError("INVALID_STOPS", f"tp: {tp} must be below the {what} {reference}")

    def _check_stops_at_market(
        self, symbol: Symbol, side: str, sl: Decimal | None, tp: Decimal | None
    ) -> None:
        # A buy position is valued (and closed) at the bid, a sell at the ask.
        if sl is None and tp is None:
            return
        if side == "buy":
            self._check_stops_around(side, symbol.bid, sl, tp, "bid")
        else:
            self._check_stops_around(side, symbol.ask, sl, tp, "ask")

    # --- positions ---------------------------------------------------------------------

    def _position(self, account: Account, position_id: int) -> Position:
        position = account.positions.get(position_id)
        if position is None:
            raise VenueError(
                "POSITION_NOT_FOUND",
                f"position_id: no open position {position_id} on account {account.login}",
            )
        return position

    def close_position(self, position_id: int, body: Any) -> tuple[bool, dict[str, Any]]:
        """Close all or part of a position at market, once per client_order_id."""
        body = _object(body)
        login = _int(body.get("account"), "account")
        key = _text(body, "client_order_id", required=True, limit=MAX_ID)
        volume = body.get("volume")
        if volume is not None:
            volume = _decimal(volume, "volume")
        comment = _text(body, "comment", required=False)
        account = self._account(login)
        fingerprint = ("close", position_id, volume, comment)
        known = account.order_keys.get(key)
        if known is not None:
            return self._replay(known, fingerprint, "client_order_id", key)
        if account.status != "connected":
            raise VenueError("ACCOUNT_DISABLED", f"account: {login} is disabled")
        position = self._position(account, position_id)
        symbol = position.symbol
        if not symbol.trading:
            raise VenueError("MARKET_CLOSED", f"symbol: the {symbol.name} market is closed")
        if volume is None:
            volume = position.volume
        else:
            self._check_volume(volume)
            if volume > position.volume:
                raise VenueError(
                    "INVALID_VOLUME",
                    f"volume: {volume} is more than the position's {position.volume}",
                )
            rest = position.volume - volume
            if rest and rest < self.config.min_volume:
                raise VenueError(
                    "INVALID_VOLUME",
                    f"volume: would leave {rest}, below the minimum {self.config.min_volume}",
                )
        answer = self._close(position, volume, "client", key, comment)
        account.order_keys[key] = (fingerprint, answer)
        return True, answer

    def _close(
        self,
        position: Position,
        volume: Decimal,
        reason: str,
        key: str | None,
        comment: str | None,
    ) -> dict[str, Any]:
        """Close ``volume`` of a position at market; the caller has checked everything."""
        account = position.account
        symbol = position.symbol
        if position.side == "buy":
            price = symbol.bid
            diff = price - position.open_price
            out_side = "sell"
        else:
            price = symbol.ask
            diff = position.open_price - price
            out_side = "buy"
        profit = diff * volume * symbol.contract_size
        if symbol.profit_currency != account.currency:
            profit *= self._rate(symbol.profit_currency, account.currency)
        profit = money(profit)
        order_id = self._new_order_id()
        deal = self._record_deal(
            account,
            order_id,
            position.position_id,
            key,
            symbol,
            out_side,
            "out",
            volume,
            price,
            profit,
            reason,
            comment,
        )
        account.balance += profit
        exposure = account.exposures[symbol.name]
        cost = volume * position.open_price
        if position.side == "buy":
            exposure.buy_volume -= volume
            exposure.buy_cost -= cost
        else:
            exposure.sell_volume -= volume
            exposure.sell_cost -= cost
        remaining = position.volume - volume
        position.volume = remaining
        if not remaining:
            exposure.count -= 1
            del account.positions[position.position_id]
            del self._positions[position.position_id]
            symbol.stops.pop(position.position_id, None)
            if not exposure.count:
                del account.exposures[symbol.name]
                del symbol.holders[account.login]
        data = self._position_dict(position)
        data["volume"] = _num(remaining)
        data["profit"] = _num(profit)
        data["closed_volume"] = _num(volume)
        data["remaining_volume"] = _num(remaining)
        data["close_price"] = _num(price)
        data["reason"] = reason
        data["deal_id"] = deal.deal_id
        self.emit("position_closed", account.login, data)
        self._touch(account)
        return {
            "position_id": position.position_id,
            "client_order_id": key,
            "order_id": order_id,
            "deal_id": deal.deal_id,
            "closed_volume": _num(volume),
            "remaining_volume": _num(remaining),
            "price": _num(price),
            "profit": _num(profit),
            "ts": deal.ts,
        }

    def modify_position(self, position_id: int, body: Any) -> dict[str, Any]:
        """Set or clear a position's SL/TP (absent: unchanged, null: cleared)."""
        body = _object(body)
        login = _int(body.get("account"), "account")
        account = self._account(login)
        new_sl = _optional_price(body, "sl")
        new_tp = _optional_price(body, "tp")
        if account.status != "connected":
            raise VenueError("ACCOUNT_DISABLED", f"account: {login} is disabled")
        position = self._position(account, position_id)
        symbol = position.symbol
        if not symbol.trading:
            raise VenueError("MARKET_CLOSED", f"symbol: the {symbol.name} market is closed")
        sl = position.sl
        tp = position.tp
        if "sl" in body:
            sl = None if new_sl is None else _on_grid(new_sl, symbol, "sl")
        if "tp" in body:
            tp = None if new_tp is None else _on_grid(new_tp, symbol, "tp")
        # Only the levels that change must be on the right side of the market now.
        self._check_stops_at_market(
            symbol,
            position.side,
            sl if sl != position.sl else None,
            tp if tp != position.tp else None,
        )
        if sl == position.sl and tp == position.tp:
            return self._position_dict(position)
        position.sl = sl
        position.tp = tp
        if sl is None and tp is None:
            symbol.stops.pop(position_id, None)
        else:
            symbol.stops[position_id] = position
        data = self._position_dict(position)
        self.emit("position_modified", login, data)
        return data

    def cancel_order(self, order_id: int, login: int) -> dict[str, Any]:
        """Cancel a working pending order of this account."""
        account = self._account(login)
        order = account.orders.get(order_id)
        if order is None:
            raise VenueError(
                "ORDER_NOT_FOUND", f"order_id: no working order {order_id} on account {login}"
            )
        if account.status != "connected":
            raise VenueError("ACCOUNT_DISABLED", f"account: {login} is disabled")
        self._end_pending(order, "cancelled", "client")
        return self._order_dict(order)

    def _end_pending(self, order: Order, status: str, reason: str | None) -> None:
        order.status = status
        order.reason = reason
        del order.account.orders[order.order_id]
        del order.symbol.pending[order.order_id]
        del self._orders[order.order_id]
        if status == "cancelled":
            self.emit("order_cancelled", order.account.login, self._order_dict(order))

    # --- triggers ----------------------------------------------------------------------

    def _trigger_pending(self, symbol: Symbol) -> None:
        for order in [
            o for o in symbol.pending.values() if _triggered(symbol, o.side, o.type, o.price)
        ]:
            if order.order_id not in symbol.pending:
                continue
            account = order.account
            if order.type == "limit":
                # A resting limit order trades at its own price: it was in the book
                # when the market came to it.
                price = order.price
            else:
                price = symbol.ask if order.side == "buy" else symbol.bid
            try:
                self._check_margin(account, symbol, order.side, order.volume)
            except VenueError:
                self._end_pending(order, "cancelled", "insufficient_margin")
                continue
            self._end_pending(order, "filled", None)
            position, deal = self._open_position(
                account,
                symbol,
                order.side,
                order.volume,
                price,
                order.sl,
                order.tp,
                order.client_order_id,
                order.comment,
                order.order_id,
            )
            order.position_id = position.position_id
            order.deal_id = deal.deal_id
            order.fill_price = price
            self.emit("order_filled", account.login, self._order_dict(order))

    def _trigger_stops(self, symbol: Symbol) -> None:
        bid = symbol.bid
        ask = symbol.ask
        hits: list[tuple[Position, str]] = []
        for position in symbol.stops.values():
            sl = position.sl
            tp = position.tp
            if position.side == "buy":
                if sl is not None and bid <= sl:
                    hits.append((position, "sl"))
                elif tp is not None and bid >= tp:
                    hits.append((position, "tp"))
            else:
                if sl is not None and ask >= sl:
                    hits.append((position, "sl"))
                elif tp is not None and ask <= tp:
                    hits.append((position, "tp"))
        for position, reason in hits:
            self._close(position, position.volume, reason, None, None)

    def _check_stop_out(self, account: Account) -> None:
        """Close the worst positions, one by one, while equity is below half the margin."""
        if not account.positions:
            return
        equity, margin = self._figures(account)
        if not margin or equity >= margin * STOP_OUT_LEVEL:
            return
        candidates = sorted(
            (p for p in account.positions.values() if p.symbol.trading),
            key=self._position_profit,
        )
        for position in candidates:
            self._close(position, position.volume, "stop_out", None, None)
            equity, margin = self._figures(account)
            if not margin or equity >= margin * STOP_OUT_LEVEL:
                break

    # --- admin --------------------------------------------------------------------------

    def set_faults(self, body: Any) -> tuple[dict[str, Any], bool]:
        """Change the injected faults (absent fields keep their value). Returns (faults, drop)."""
        body = _object(body)
        for field in body:
            if field not in _FAULT_FIELDS:
                raise _bad(field, "is not a fault setting")
        updates: dict[str, Any] = {}
        for field in _FAULT_RATES:
            if field in body:
                value = body[field]
                if type(value) not in (int, float, Decimal) or not 0 <= value <= 1:
                    raise _bad(field, "must be a number between 0 and 1")
                updates[field] = float(value)
        if "latency_ms" in body:
            updates["latency_ms"] = _int(body["latency_ms"], "latency_ms", 0, 60_000)
        if "rate_limit_per_s" in body:
            updates["rate_limit_per_s"] = _int(body["rate_limit_per_s"], "rate_limit_per_s", 0)
        if "seed" in body:
            updates["seed"] = _int(body["seed"], "seed", -(2**63), 2**63)
        drop = body.get("drop_streams", False)
        if type(drop) is not bool:
            raise _bad("drop_streams", "must be true or false")
        for field, value in updates.items():
            setattr(self.faults, field, value)
        if "seed" in updates:
            self._fault_rng = random.Random(updates["seed"])  # noqa: S311
        return self.faults.as_dict(), drop

    def stats(self) -> dict[str, int]:
        return {**self.counters, "events": self.seq}

    def parse_batch(self, body: Any) -> list[Any]:
        body = _object(body)
        orders = body.get("orders")
        if type(orders) is not list:
            raise _bad("orders", "must be a list of orders")
        if len(orders) > MAX_BATCH:
            raise _bad("orders", f"at most {MAX_BATCH} orders per batch, got {len(orders)}")
        return orders


def _triggered(symbol: Symbol, side: str, type_: str, price: Decimal) -> bool:
    """Whether a pending order's trigger condition holds at the current quote."""
    if side == "buy":
        return symbol.ask <= price if type_ == "limit" else symbol.ask >= price
    return symbol.bid >= price if type_ == "limit" else symbol.bid <= price


def _islice(log: deque, start: int) -> Iterable:
    """Items of ``log`` from index ``start`` on, walking from the nearer end."""
    length = len(log)
    if start <= 0:
        return log
    if start >= length:
        return ()
    if length - start < start:
        tail = list(itertools.islice(reversed(log), length - start))
        tail.reverse()
        return tail
    return itertools.islice(log, start, None)


def decode_json(raw: bytes) -> Any:
    """Parse a request body; numbers with a fraction become Decimals, NaN/Infinity are refused."""
    try:
        return json.loads(raw, parse_float=Decimal, parse_constant=_refuse_constant)
    except (ValueError, RecursionError, UnicodeDecodeError, InvalidOperation) as exc:
        raise _bad("body", f"is not valid JSON ({str(exc)[:80]})") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


encode_json = _encode
