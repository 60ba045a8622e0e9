"""Calling an async Gateway from sync code (Celery tasks, management commands).

`SyncGateway` owns one event loop running in a daemon thread, and the gateway
it wraps lives on that loop. Every call is submitted to the loop and waited for,
so the gateway's pooled HTTP session (and its keep-alive connections) serves
every call made through the wrapper, from any thread, for as long as the wrapper
lives. A Celery worker process keeps one per broker server
(`brokers.gateways.sync_gateway_for`) instead of opening a connection per task.

Do not call it from async code: it would block that event loop for the whole
broker round trip (it raises RuntimeError instead). Async code uses the
gateway directly.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from .base import UNCHANGED, Gateway, Unchanged
from .errors import GatewayError, GatewayReason
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
    SymbolSpec,
)

T = TypeVar("T")


class SyncGateway:
    """A blocking face for an async Gateway, on a private event loop thread.

    Guarantees: the wrapped gateway only ever runs on the wrapper's own loop, so
    its one pooled session is reused by every call; calls from many threads are
    safe (they interleave on the loop like concurrent tasks); a call that exceeds
    `call_timeout` is cancelled and raises GatewayError(timeout) with
    `outcome_unknown=True`; `close()` closes the gateway's session and stops the
    thread. The methods mirror Gateway's, minus `stream` (listeners are async).
    """

    def __init__(self, gateway: Gateway, *, call_timeout: float = 120.0) -> None:
        self.gateway = gateway
        self.call_timeout = call_timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"gateway-loop-{id(self):x}", daemon=True
        )
        self._thread.start()
        self._closed = False
        self._close_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SyncGateway({self.gateway!r})"

    def __enter__(self) -> SyncGateway:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """True once close() has run."""
        return self._closed

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Runs a coroutine on the gateway's loop and returns its result (or raises)."""
        if self._closed:
            coro.close()
            raise RuntimeError(f"{self!r} is closed")
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("SyncGateway called from its own loop thread (would deadlock)")
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            coro.close()
            raise RuntimeError("SyncGateway called from async code; await the gateway instead")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout if timeout is not None else self.call_timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise GatewayError(
                GatewayReason.TIMEOUT,
                f"broker call took longer than {self.call_timeout}s",
                outcome_unknown=True,
            ) from None

    def close(self) -> None:
        """Closes the gateway's session and stops the loop thread; idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        if self._thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(self.gateway.close(), self._loop).result(10)
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(10)
        if not self._loop.is_running():
            self._loop.close()

    # -- the Gateway methods, blocking ----------------------------------------

    def get_account(self, login: int) -> AccountSnapshot:
        """See Gateway.get_account."""
        return self.run(self.gateway.get_account(login))

    def list_symbols(self) -> list[SymbolSpec]:
        """See Gateway.list_symbols."""
        return self.run(self.gateway.list_symbols())

    def get_quote(self, symbol: str) -> Quote:
        """See Gateway.get_quote."""
        return self.run(self.gateway.get_quote(symbol))

    def list_positions(self, login: int) -> list[Position]:
        """See Gateway.list_positions."""
        return self.run(self.gateway.list_positions(login))

    def list_pending_orders(self, login: int) -> list[PendingOrder]:
        """See Gateway.list_pending_orders."""
        return self.run(self.gateway.list_pending_orders(login))

    def list_deals(self, login: int, since: datetime | None = None) -> list[Deal]:
        """See Gateway.list_deals."""
        return self.run(self.gateway.list_deals(login, since))

    def place_order(self, request: OrderRequest) -> OrderResult:
        """See Gateway.place_order."""
        return self.run(self.gateway.place_order(request))

    def place_orders(self, requests: Sequence[OrderRequest]) -> list[OrderResult]:
        """See Gateway.place_orders."""
        return self.run(self.gateway.place_orders(requests))

    def lookup_order(
        self, account: int, client_order_id: str, since: datetime | None = None
    ) -> OrderResult | None:
        """See Gateway.lookup_order."""
        return self.run(self.gateway.lookup_order(account, client_order_id, since))

    def close_position(
        self,
        *,
        account: int,
        position_id: str,
        client_order_id: str,
        volume: Decimal | None = None,
    ) -> CloseResult:
        """See Gateway.close_position."""
        return self.run(
            self.gateway.close_position(
                account=account,
                position_id=position_id,
                client_order_id=client_order_id,
                volume=volume,
            )
        )

    def modify_position(
        self,
        *,
        account: int,
        position_id: str,
        sl: Decimal | None | Unchanged = UNCHANGED,
        tp: Decimal | None | Unchanged = UNCHANGED,
    ) -> Position:
        """See Gateway.modify_position."""
        return self.run(
            self.gateway.modify_position(account=account, position_id=position_id, sl=sl, tp=tp)
        )

    def cancel_order(self, *, account: int, order_id: str) -> None:
        """See Gateway.cancel_order."""
        self.run(self.gateway.cancel_order(account=account, order_id=order_id))

    def create_account(
        self,
        *,
        balance: Decimal,
        currency: str = "USD",
        leverage: int = 100,
        mode: AccountMode = AccountMode.DEMO,
        login: int | None = None,
        name: str = "",
    ) -> AccountSnapshot:
        """See Gateway.create_account."""
        return self.run(
            self.gateway.create_account(
                balance=balance,
                currency=currency,
                leverage=leverage,
                mode=mode,
                login=login,
                name=name,
            )
        )

    def balance_operation(
        self, *, account: int, amount: Decimal, comment: str, client_op_id: str
    ) -> BalanceResult:
        """See Gateway.balance_operation."""
        return self.run(
            self.gateway.balance_operation(
                account=account, amount=amount, comment=comment, client_op_id=client_op_id
            )
        )
