"""Fixtures for the paper venue tests: one real venue process, reset before every test.

The venue runs with the price feed off (``ticks_ms=0``): prices move only when
a test sets them, so every trigger is deliberate.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from brokers.paper.testing import StreamRecorder, Venue, running_venue

API_KEY = "test-venue-key"
_ids = itertools.count(1)


class Paper:
    """A test's handle on the shared venue: REST client plus shortcuts for common steps."""

    def __init__(self, venue: Venue) -> None:
        self.venue = venue
        self.api = venue.client()
        self._streams: list[StreamRecorder] = []

    def account(self, balance: float | str = 10000, **fields: Any) -> int:
        body = {"balance": balance, "currency": "USD", "leverage": 100, "mode": "DEMO", **fields}
        status, account = self.api.post("/v1/accounts", body)
        assert status == 201, account
        return account["login"]

    def order(self, login: int, expect: int | None = 201, **fields: Any) -> dict[str, Any]:
        body = {
            "account": login,
            "symbol": "EURUSD",
            "side": "buy",
            "type": "market",
            "volume": 0.1,
            "client_order_id": f"t-{next(_ids)}",
            **fields,
        }
        status, answer = self.api.post("/v1/orders", body)
        if expect is not None:
            assert status == expect, answer
        return answer

    def price(self, symbol: str, bid: float, ask: float) -> None:
        status, answer = self.api.post(
            "/v1/admin/prices", {"symbol": symbol, "bid": bid, "ask": ask}
        )
        assert status == 200, answer

    def get(self, path: str) -> Any:
        status, answer = self.api.get(path)
        assert status == 200, answer
        return answer

    def positions(self, login: int) -> list[dict[str, Any]]:
        return self.get(f"/v1/accounts/{login}/positions")

    def stats(self) -> dict[str, int]:
        return self.get("/v1/admin/stats")

    def stream(self, **query: Any) -> StreamRecorder:
        query.setdefault("token", self.venue.api_key)
        recorder = StreamRecorder(self.venue.stream_url(**query))
        self._streams.append(recorder)
        return recorder

    def close(self) -> None:
        for recorder in self._streams:
            recorder.close()
        self.api.close()


@pytest.fixture(scope="session")
def paper_factory() -> type[Paper]:
    """``paper_factory(venue)``: a handle on a venue a test started itself."""
    return Paper


@pytest.fixture(scope="session")
def venue() -> Iterator[Venue]:
    with running_venue(api_key=API_KEY, seed=7) as started:
        yield started
        # Whatever the tests sent, the venue never hit an internal error.
        log = started.log_text()
        assert "Traceback" not in log, log[-3000:]
        assert " ERROR " not in log, log[-3000:]


@pytest.fixture
def paper(venue: Venue) -> Iterator[Paper]:
    handle = Paper(venue)
    status, _ = handle.api.post("/v1/admin/reset", {})
    assert status == 200
    try:
        yield handle
    finally:
        handle.close()
