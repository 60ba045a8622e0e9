"""Fixtures for the gateway tests: one real paper venue, reset before every test.

The gateway is async and pytest-asyncio is not a dependency, so each test runs
its scenario with `asyncio.run` through the `run` fixture; the gateway is made
inside that loop (aiohttp sessions belong to one loop).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from brokers.gateways.rest_ws import RestWsGateway
from brokers.paper.testing import Venue, VenueClient, running_venue
from tests.brokers.gateways.gateway_helpers import FAST_RETRY

VENUE_KEY = "gateway-test-key"


class VenueAdmin:
    """The venue's admin API (faults, prices, markets, accounts), for arranging a test."""

    def __init__(self, venue: Venue) -> None:
        self.venue = venue
        self.api: VenueClient = venue.client()

    def _ok(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = self.api.request(method, path, body)
        assert status == 200, (method, path, status, answer)
        return answer

    def reset(self) -> None:
        self._ok("POST", "/v1/admin/reset", {})

    def faults(self, **faults: Any) -> dict[str, Any]:
        return self._ok("POST", "/v1/admin/faults", faults)

    def price(self, symbol: str, bid: float, ask: float) -> None:
        self._ok("POST", "/v1/admin/prices", {"symbol": symbol, "bid": bid, "ask": ask})

    def market(self, symbol: str, *, trading: bool) -> None:
        self._ok("POST", f"/v1/admin/symbols/{symbol}", {"trading": trading})

    def account_status(self, login: int, status: str) -> None:
        self._ok("PATCH", f"/v1/accounts/{login}", {"status": status})

    def stats(self) -> dict[str, int]:
        return self._ok("GET", "/v1/admin/stats")

    def seq(self) -> int:
        return int(self._ok("GET", "/v1/info")["seq"])

    def positions(self, login: int) -> list[dict[str, Any]]:
        return self._ok("GET", f"/v1/accounts/{login}/positions")

    def close(self) -> None:
        self.api.close()


@pytest.fixture(scope="session")
def paper_venue() -> Iterator[Venue]:
    with running_venue(api_key=VENUE_KEY, ticks_ms=0, seed=7) as venue:
        yield venue


@pytest.fixture
def venue(paper_venue: Venue) -> Venue:
    """The shared venue, with state and faults cleared before the test."""
    admin = VenueAdmin(paper_venue)
    admin.reset()
    admin.close()
    return paper_venue


@pytest.fixture
def admin(venue: Venue) -> Iterator[VenueAdmin]:
    handle = VenueAdmin(venue)
    yield handle
    handle.close()


Scenario = Callable[[RestWsGateway], Awaitable[Any]]


@pytest.fixture
def run(venue: Venue) -> Callable[..., Any]:
    """`run(scenario, **gateway_options)`: runs `async def scenario(gw)` on a fresh loop."""

    def runner(scenario: Scenario, **options: Any) -> Any:
        options.setdefault("dedupes_client_order_ids", True)
        options.setdefault("retry", FAST_RETRY)
        options.setdefault("platform", "Paper")

        async def main() -> Any:
            async with RestWsGateway(venue.url, venue.api_key, **options) as gw:
                return await scenario(gw)

        return asyncio.run(main())

    return runner
