"""What billing reads from and does on the venues, behind one small interface.

Billing needs four things of a follower's (or master's) broker: its deals (realized P&L of
copied positions, opening fills for the volume fee, balance deals for deposits and
withdrawals), its open positions (floating P&L), its account (free margin before a
debit) and balance operations. `GatewayVenue` asks each account's broker server through
the process's pooled SyncGateway.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Protocol

from accounts.models import TradingAccount
from brokers.gateways.types import AccountSnapshot, BalanceResult, Deal, Position


class Venue(Protocol):
    def deals(self, account: TradingAccount, since: datetime | None) -> list[Deal]: ...

    def positions(self, account: TradingAccount) -> list[Position]: ...

    def snapshot(self, account: TradingAccount) -> AccountSnapshot: ...

    def balance_operation(
        self, account: TradingAccount, *, amount: Decimal, comment: str, client_op_id: str
    ) -> BalanceResult: ...


class GatewayVenue:
    """The Venue of each account's broker server (brokers.gateways.sync_gateway_for)."""

    def _gateway(self, account: TradingAccount):  # type: ignore[no-untyped-def]
        from brokers.gateways import sync_gateway_for

        return sync_gateway_for(account.broker_server)

    def deals(self, account: TradingAccount, since: datetime | None) -> list[Deal]:
        return self._gateway(account).list_deals(account.login, since)

    def positions(self, account: TradingAccount) -> list[Position]:
        return self._gateway(account).list_positions(account.login)

    def snapshot(self, account: TradingAccount) -> AccountSnapshot:
        return self._gateway(account).get_account(account.login)

    def balance_operation(
        self, account: TradingAccount, *, amount: Decimal, comment: str, client_op_id: str
    ) -> BalanceResult:
        return self._gateway(account).balance_operation(
            account=account.login, amount=amount, comment=comment, client_op_id=client_op_id
        )
