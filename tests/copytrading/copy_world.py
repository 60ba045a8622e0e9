"""A copy-trading world for end-to-end tests: real venues, real workers, real listener."""

from __future__ import annotations

import itertools
from contextlib import ExitStack
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from brokers.paper.testing import Venue, VenueClient
from brokers.services import broker_server_create, symbols_sync
from config.redis import get_redis
from copytrading.models import CopySubscription, TradeLink
from copytrading.services import follower_create, master_create, subscription_create
from copytrading.services.fanout import clear_reference_cache
from copytrading.services.listening import listeners_supervise
from tests.factories import make_account, make_customer
from tests.processes import celery_worker, wait_for

_ids = itertools.count(1)


@dataclass
class World:
    venues: list[Venue]
    servers: list[Any] = field(default_factory=list)
    stack: ExitStack = field(default_factory=ExitStack)
    workers: list[Any] = field(default_factory=list)

    def api(self, i: int = 0) -> VenueClient:
        v = self.venues[i]
        return VenueClient(v.host, v.port, v.api_key)

    def venue_account(self, i: int = 0, balance: int = 100000) -> int:
        status, account = self.api(i).post(
            "/v1/accounts", {"balance": balance, "currency": "USD", "leverage": 100, "mode": "DEMO"}
        )
        assert status == 201, account
        return account["login"]

    def master(self, i: int = 0, balance: int = 100000):  # type: ignore[no-untyped-def]
        login = self.venue_account(i, balance)
        account = make_account(server=self.servers[i], login=login, customer=make_customer())
        return master_create(account=account, strategy_name=f"Strategy {login}")

    def follower(
        self, master, i: int = 0, balance: int = 10000, **settings: Any
    ) -> CopySubscription:  # type: ignore[no-untyped-def]
        login = self.venue_account(i, balance)
        account = make_account(server=self.servers[i], login=login, customer=make_customer())
        account.equity = Decimal(balance)
        account.save(update_fields=["equity"])
        follower_create(account=account)
        return subscription_create(
            follower_account=account, master_account=master.account, settings=settings
        )

    def start(self, workers: int = 1, concurrency: int = 2) -> None:
        for _ in range(workers):
            self.workers.append(
                self.stack.enter_context(
                    celery_worker(
                        queues="listeners,fanout,execute,default", concurrency=concurrency
                    )
                )
            )
        connect_listener()

    def order(
        self, login: int, i: int = 0, expect: tuple[int, ...] = (201,), **fields: Any
    ) -> dict:
        body = {
            "account": login,
            "symbol": "EURUSD" + self.servers[i].symbol_suffix,
            "side": "buy",
            "type": "market",
            "volume": 1,
            "client_order_id": f"m-{next(_ids)}",
            **fields,
        }
        status, answer = self.api(i).post("/v1/orders", body)
        assert status in expect, answer
        return answer

    def close(self, login: int, position_id: Any, i: int = 0, **fields: Any) -> dict:
        status, answer = self.api(i).post(
            f"/v1/positions/{position_id}/close",
            {"account": login, "client_order_id": f"c-{next(_ids)}", **fields},
        )
        assert status in (200, 201), answer
        return answer

    def positions(self, login: int, i: int = 0) -> list[dict]:
        status, positions = self.api(i).get(f"/v1/accounts/{login}/positions")
        assert status == 200
        return positions

    def wait_links(self, sub: CopySubscription, status: str, n: int = 1, timeout: float = 30):  # type: ignore[no-untyped-def]
        return wait_for(
            lambda: TradeLink.objects.filter(subscription=sub, status=status).count() == n,
            timeout=timeout,
            what=f"{n} {status} link(s) on subscription {sub.id}",
        )


def build_world(venues: list[Venue]) -> World:
    """Broker servers for the venues (symbols synced), Redis clean, caches cleared."""
    get_redis().flushdb()
    clear_reference_cache()
    world = World(venues)
    for i, venue in enumerate(venues):
        assert venue.client().post("/v1/admin/reset")[0] == 200
        server = broker_server_create(
            name=f"paper-{i}",
            platform="Paper",
            base_url=venue.url,
            credentials={"api_key": venue.api_key},
            symbol_suffix=venue.options.get("symbol_suffix", ""),
        )
        symbols_sync(server=server)
        world.servers.append(server)
    return world


def connect_listener(timeout: float = 30) -> None:
    """Starts the listener shards (the supervisor's job) and waits until every one streams."""
    from brokers.models import ListenerShard

    listeners_supervise()
    wait_for(
        lambda: (
            ListenerShard.objects.filter(connected=True).count()
            >= ListenerShard.objects.count()
            > 0
        ),
        timeout=timeout,
        what="listeners connected",
    )
