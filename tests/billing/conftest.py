"""A billing desk for tests: a real paper venue, a broker server for it, accounts, masters
with fee schedules, followers, copied positions (venue positions with their trade links),
and a controlled clock.

The clock: billing reads times from the venue's deals. `ShiftedVenue` wraps the real
venue and moves each deal's time by the clock offset in force when the deal was made
(`Clock.advance`), so a test can live through several months in a second.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from accounts.models import TradingAccount
from billing import services
from billing.models import FeeAccrual, LedgerLeg
from billing.venue import GatewayVenue
from brokers.gateways.types import Deal
from brokers.paper.testing import Venue, VenueClient, running_venue
from brokers.services import broker_server_create, symbols_sync
from copytrading.choices import TradeLinkStatus
from copytrading.models import CopyMaster, CopySubscription, TradeLink
from copytrading.services import follower_create, master_create, subscription_create
from tests.factories import make_account, make_customer

_ids = itertools.count(1)


@dataclass
class Clock:
    """Offsets of the venue's time: a deal made after `advance(d)` is seen `d` later."""

    segments: list[tuple[datetime, timedelta]] = field(default_factory=list)

    def advance(self, delta: timedelta) -> None:
        total = (self.segments[-1][1] if self.segments else timedelta(0)) + delta
        time.sleep(0.002)  # deals made before this call keep the previous offset
        self.segments.append((datetime.now(UTC), total))

    def offset_at(self, real: datetime) -> timedelta:
        offset = timedelta(0)
        for start, value in self.segments:
            if real >= start:
                offset = value
        return offset

    def now(self) -> datetime:
        now = datetime.now(UTC)
        return now + self.offset_at(now)


class ShiftedVenue(GatewayVenue):
    """The real venue (through the gateway), its deal times moved by the clock."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def deals(self, account: TradingAccount, since: datetime | None) -> list[Deal]:
        shifted = [
            replace(d, ts=d.ts + self.clock.offset_at(d.ts)) for d in super().deals(account, None)
        ]
        return [d for d in shifted if since is None or d.ts >= since]


@pytest.fixture(scope="session")
def venue() -> Iterator[Venue]:
    with running_venue(ticks_ms=0) as started:
        yield started


class Desk:
    def __init__(self, venue: Venue) -> None:
        self.api = VenueClient(venue.host, venue.port, venue.api_key)
        assert self.api.post("/v1/admin/reset")[0] == 200
        self.server = broker_server_create(
            name=f"billing-{next(_ids)}",
            platform="Paper",
            base_url=venue.url,
            credentials={"api_key": venue.api_key},
        )
        symbols_sync(server=self.server)
        self.clock = Clock()
        self.venue = ShiftedVenue(self.clock)

    # -- accounts and profiles -----------------------------------------------------------

    def account(self, balance: int | str = 10000) -> TradingAccount:
        status, body = self.api.post(
            "/v1/accounts", {"balance": balance, "currency": "USD", "leverage": 100, "mode": "DEMO"}
        )
        assert status == 201, body
        account = make_account(server=self.server, login=body["login"], customer=make_customer())
        account.equity = account.balance = Decimal(str(balance))
        account.save(update_fields=["equity", "balance"])
        return account

    def master(self, **fees: Any) -> CopyMaster:
        master = master_create(account=self.account(100000), strategy_name=f"Strategy {next(_ids)}")
        values = {
            "period": "monthly",
            **{
                k: Decimal(str(v)) if k != "period" and k != "ib_account" else v
                for k, v in fees.items()
            },
        }
        services.fee_schedule_create(master=master, values=values, actor=None)
        return master

    def follower(self, master: CopyMaster, balance: int | str = 10000) -> CopySubscription:
        account = self.account(balance)
        follower_create(account=account)
        return subscription_create(follower_account=account, master_account=master.account)

    # -- trading ---------------------------------------------------------------------------

    def price(self, bid: str, ask: str, symbol: str = "EURUSD") -> None:
        status, body = self.api.post(
            "/v1/admin/prices", {"symbol": symbol, "bid": float(bid), "ask": float(ask)}
        )
        assert status == 200, body

    def open(self, sub: CopySubscription, volume: str = "1", side: str = "buy") -> str:
        """A copied position: opened on the follower's venue account, linked to the master."""
        status, body = self.api.post(
            "/v1/orders",
            {
                "account": sub.follower_account.login,
                "symbol": "EURUSD",
                "side": side,
                "type": "market",
                "volume": volume,
                "client_order_id": f"t-{next(_ids)}",
            },
        )
        assert status == 201, body
        position_id = str(body["position_id"])
        TradeLink.objects.create(
            subscription=sub,
            master_account=sub.master_account,
            follower_account=sub.follower_account,
            master_position_id=f"m-{position_id}",
            follower_position_id=position_id,
            symbol="EURUSD",
            follower_symbol="EURUSD",
            side=side,
            master_volume=Decimal(volume),
            follower_volume=Decimal(volume),
            status=TradeLinkStatus.OPEN,
        )
        return position_id

    def close(self, sub: CopySubscription, position_id: str, volume: str | None = None) -> Decimal:
        body: dict[str, Any] = {
            "account": sub.follower_account.login,
            "client_order_id": f"c-{next(_ids)}",
        }
        if volume is not None:
            body["volume"] = volume
        status, answer = self.api.post(f"/v1/positions/{position_id}/close", body)
        assert status in (200, 201), answer
        return Decimal(str(answer["profit"]))

    def balance_op(self, account: TradingAccount, amount: str) -> None:
        status, body = self.api.post(
            f"/v1/accounts/{account.login}/balance",
            {"amount": amount, "comment": "cash", "client_op_id": f"cash-{next(_ids)}"},
        )
        assert status == 201, body

    def balance(self, account: TradingAccount) -> Decimal:
        status, body = self.api.get(f"/v1/accounts/{account.login}")
        assert status == 200, body
        return Decimal(str(body["balance"]))

    # -- billing -----------------------------------------------------------------------------

    def run(self, as_of: datetime) -> dict[str, Any]:
        return services.billing_run(as_of=as_of, venue=self.venue)

    def accruals(self, sub: CopySubscription, kind: str) -> list[FeeAccrual]:
        return list(FeeAccrual.objects.filter(subscription=sub, kind=kind).order_by("period_start"))


@pytest.fixture
def desk(venue: Venue, db: Any) -> Desk:
    return Desk(venue)


def month_end(at: datetime) -> datetime:
    """The first instant of the month after `at` (UTC)."""
    first = at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (first + timedelta(days=32)).replace(day=1)


def ledger_sums_per_transaction() -> set[Decimal]:
    """The distinct sums of legs per (transaction, currency): {0} when all balance."""
    from django.db.models import Sum

    return {
        row["s"]
        for row in LedgerLeg.objects.values("transaction", "currency").annotate(s=Sum("amount"))
    } or {Decimal(0)}
