"""The one interface the back office uses to talk to any broker.

Everything above this layer (listeners, fan-out, execution, reconciliation,
demo seeding) asks a `Gateway` and gets the normalized types of `types.py`, or a
`GatewayError` with a platform-neutral reason. One module per platform protocol
implements it (`rest_ws.py` for the REST + WebSocket protocol of
spec/paper-venue.md); `brokers.gateways.gateway_for(server)` picks the one a
BrokerServer needs.

All methods are coroutines: listeners call them from their event loop, and
Celery tasks through `brokers.gateways.sync.SyncGateway`, which runs them on a
loop thread of its own so one pooled HTTP session serves many tasks.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Final, Literal, Protocol, runtime_checkable

from .types import (
    AccountMode,
    AccountSnapshot,
    BalanceResult,
    CloseResult,
    Deal,
    OrderRequest,
    OrderResult,
    PendingOrder,
    Position,
    Quote,
    StreamEvent,
    SymbolSpec,
)


class _Unchanged(enum.Enum):
    SENTINEL = "unchanged"

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = _Unchanged.SENTINEL
"""Passed as `sl` or `tp` to `modify_position`: leave that level as it is.

None means the opposite: remove the level.
"""

Unchanged = Literal[_Unchanged.SENTINEL]


class EventStream(Protocol):
    """One stream connection: an async iterator of StreamEvents, and an async context.

    `async with gateway.stream(...) as events:` connects on entry (so every event
    from then on is delivered) and closes on exit; a bare `async for` connects on
    its first step. `last_seq` is the seq to resume from after a disconnect.
    """

    last_seq: int | None

    def __aiter__(self) -> EventStream: ...

    async def __anext__(self) -> StreamEvent: ...

    async def __aenter__(self) -> EventStream: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def connect(self) -> None:
        """Opens the connection now (idempotent)."""
        ...

    async def aclose(self) -> None:
        """Closes the connection."""
        ...


@runtime_checkable
class Gateway(Protocol):
    """What the back office asks of a broker server.

    Guarantees every implementation gives:

    - Answers are normalized (`types.py`): Decimal volumes and prices, aware UTC
      datetimes, string venue ids. Failures raise `GatewayError` whose `reason` is a
      `GatewayReason`; nothing platform-specific escapes.
    - An order or close carries a client order id, and a retry of it (inside the
      gateway or by the caller with the same id) never opens a second position.
    - The gateway holds one pooled HTTP session, reused by every call until
      `close()`; it is bound to the event loop that first used it.
    - `repr()` and error messages never contain credentials.
    """

    platform: str

    async def get_account(self, login: int) -> AccountSnapshot:
        """The account's balance, equity, margin and status now."""
        ...

    async def list_symbols(self) -> list[SymbolSpec]:
        """Every symbol of the server with its lot rules."""
        ...

    async def get_quote(self, symbol: str) -> Quote:
        """The symbol's current bid and ask."""
        ...

    async def list_positions(self, login: int) -> list[Position]:
        """The account's open positions."""
        ...

    async def list_pending_orders(self, login: int) -> list[PendingOrder]:
        """The account's working limit and stop orders."""
        ...

    async def list_deals(self, login: int, since: datetime | None = None) -> list[Deal]:
        """The account's deals at or after `since` (all when None), oldest first."""
        ...

    async def place_order(self, request: OrderRequest) -> OrderResult:
        """Places one order, retrying safely under its client order id.

        A refusal by the broker (margin, volume, stops, market closed, unknown
        symbol or account, conflict...) comes back as an OrderResult with status
        REJECTED and a reason; GatewayError is raised only when the outcome is
        unknown or the broker cannot be used at all (timeout, unavailable, rate
        limited past the bound, unauthorized). Retrying after such an error with the
        same request is safe.
        """
        ...

    async def place_orders(self, requests: Sequence[OrderRequest]) -> list[OrderResult]:
        """Places many orders; one OrderResult per request, in the same order.

        Each order succeeds or is rejected on its own. Raises GatewayError as
        place_order does, for the whole call; retrying the whole call with the same
        requests is then safe.
        """
        ...

    async def lookup_order(
        self, account: int, client_order_id: str, since: datetime | None = None
    ) -> OrderResult | None:
        """Finds what an earlier order with this client order id did, or None.

        Looks at open positions, pending orders and opening deals (at or after
        `since`). The result has `replayed=True`. Use it before re-sending an order
        that may already have reached a broker that does not deduplicate ids.
        """
        ...

    async def close_position(
        self,
        *,
        account: int,
        position_id: str,
        client_order_id: str,
        volume: Decimal | None = None,
    ) -> CloseResult:
        """Closes `volume` lots of a position (all of it when None).

        Raises GatewayError (position_not_found, invalid_volume, market_closed...)
        when the broker refuses; retrying with the same client order id is safe.
        """
        ...

    async def modify_position(
        self,
        *,
        account: int,
        position_id: str,
        sl: Decimal | None | Unchanged = UNCHANGED,
        tp: Decimal | None | Unchanged = UNCHANGED,
    ) -> Position:
        """Sets a position's stop loss and take profit; None removes a level."""
        ...

    async def cancel_order(self, *, account: int, order_id: str) -> None:
        """Cancels a working pending order."""
        ...

    async def create_account(
        self,
        *,
        balance: Decimal,
        currency: str = "USD",
        leverage: int = 100,
        mode: AccountMode = AccountMode.DEMO,
        login: int | None = None,
        name: str = "",
    ) -> AccountSnapshot:
        """Opens an account on the server (demo seeding, tests)."""
        ...

    async def balance_operation(
        self, *, account: int, amount: Decimal, comment: str, client_op_id: str
    ) -> BalanceResult:
        """Credits (positive) or debits (negative) the balance, once per client_op_id."""
        ...

    def stream(
        self,
        *,
        accounts: Sequence[int] | None = None,
        from_seq: int | None = None,
        include_heartbeats: bool = True,
    ) -> EventStream:
        """Events of `accounts` (every account when None), after `from_seq` when given.

        One connection per stream: it ends by raising GatewayError (retryable)
        when the connection is lost, and the caller reconnects with `from_seq` =
        the last seq it stored (or the stream's `last_seq`). A RESET event means events after
        `from_seq` are gone: resynchronise from the REST snapshot, then carry on
        from the RESET's seq. Heartbeats are yielded unless `include_heartbeats` is
        False (a listener uses them to prove it is alive).
        """
        ...

    async def close(self) -> None:
        """Closes the pooled session; the gateway must not be used afterwards."""
        ...
