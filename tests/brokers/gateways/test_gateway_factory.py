"""Choosing and building gateways for BrokerServer rows, and the sync face Celery uses."""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured

from brokers.gateways import (
    GatewayError,
    GatewayReason,
    SyncGateway,
    close_sync_gateways,
    gateway_for,
    sync_gateway_for,
)
from brokers.gateways.rest_ws import RestWsGateway
from brokers.gateways.types import OrderRequest, OrderStatus, Side
from brokers.services import broker_server_set_credentials
from tests.brokers.gateways.gateway_helpers import FAST_RETRY
from tests.factories import make_server

pytestmark = [pytest.mark.django_db, pytest.mark.e2e]


@pytest.fixture(autouse=True)
def _fresh_sync_gateways():
    close_sync_gateways()
    yield
    close_sync_gateways()


def order(login: int, cid: str) -> OrderRequest:
    return OrderRequest(
        account=login, symbol="EURUSD", side=Side.BUY, volume=Decimal("0.01"), client_order_id=cid
    )


def test_a_paper_server_gets_a_deduplicating_rest_gateway_with_its_decrypted_key(venue, caplog):
    server = make_server(base_url=venue.url, credentials={"api_key": venue.api_key})
    caplog.set_level(logging.DEBUG)

    async def main():
        async with gateway_for(server) as gw:
            return gw, await gw.list_symbols()

    gw, symbols = asyncio.run(main())
    assert isinstance(gw, RestWsGateway)
    assert gw.dedupes_client_order_ids is True
    assert (gw.platform, gw.name, gw.base_url) == ("Paper", server.name, venue.url)
    assert symbols
    assert venue.api_key not in repr(gw)
    assert venue.api_key not in caplog.text


def test_a_paper_server_without_credentials_uses_the_paper_venue_key(venue, settings):
    settings.PAPER_VENUE_KEY = venue.api_key
    server = make_server(base_url=venue.url)

    async def main():
        async with gateway_for(server) as gw:
            return await gw.list_symbols()

    assert asyncio.run(main())


def test_other_platforms_look_up_before_retrying_and_need_a_key():
    mt5 = make_server(platform="MT5", credentials={"api_key": "k"})
    assert gateway_for(mt5).dedupes_client_order_ids is False
    keyless = make_server(platform="MT5")
    with pytest.raises(GatewayError) as caught:
        gateway_for(keyless)
    assert caught.value.reason is GatewayReason.UNAUTHORIZED


def test_a_kind_without_an_implementation_is_a_configuration_error():
    server = make_server(credentials={"api_key": "k"})
    server.gateway_kind = "fix44"
    with pytest.raises(ImproperlyConfigured, match="fix44"):
        gateway_for(server)


def test_options_reach_the_gateway():
    server = make_server(credentials={"api_key": "k"})
    gw = gateway_for(server, retry=FAST_RETRY, dedupes_client_order_ids=False, batch_size=10)
    assert (gw.retry, gw.dedupes_client_order_ids, gw.batch_size) == (FAST_RETRY, False, 10)


def test_sync_gateway_is_reused_per_server_with_one_pooled_session(venue):
    server = make_server(base_url=venue.url, credentials={"api_key": venue.api_key})
    first = sync_gateway_for(server)
    login = first.create_account(balance=Decimal(100_000)).login
    first.place_order(order(login, "sync-1"))
    session = first.gateway._session
    again = sync_gateway_for(server)
    again.place_order(order(login, "sync-2"))
    assert again is first
    assert again.gateway._session is session  # one pooled session across "tasks"
    assert {p.client_order_id for p in again.list_positions(login)} == {"sync-1", "sync-2"}


def test_rotated_credentials_get_a_new_sync_gateway_and_the_old_one_is_closed(venue):
    server = make_server(base_url=venue.url, credentials={"api_key": "old-key"})
    old = sync_gateway_for(server)
    broker_server_set_credentials(
        server=server, credentials={"api_key": venue.api_key}, actor=None, reason="rotate"
    )
    new = sync_gateway_for(server)
    assert new is not old
    assert old.closed
    assert new.list_symbols()


def test_sync_gateway_serves_many_threads_at_once(venue):
    server = make_server(base_url=venue.url, credentials={"api_key": venue.api_key})
    gateway = sync_gateway_for(server)
    login = gateway.create_account(balance=Decimal(1_000_000)).login
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda i: gateway.place_order(order(login, f"t-{i}")), range(64)))
    assert all(r.status is OrderStatus.FILLED for r in results)
    assert len(gateway.list_positions(login)) == 64


def test_sync_gateway_refuses_to_block_an_event_loop(venue):
    gateway = SyncGateway(RestWsGateway(venue.url, venue.api_key, dedupes_client_order_ids=True))
    try:

        async def inside_a_loop():
            with pytest.raises(RuntimeError, match="async code"):
                gateway.list_symbols()

        asyncio.run(inside_a_loop())
        assert gateway.list_symbols()  # fine from plain sync code
    finally:
        gateway.close()
    with pytest.raises(RuntimeError, match="closed"):
        gateway.list_symbols()


def test_sync_gateway_gives_up_after_its_call_timeout(venue):
    started = threading.Event()

    class Stuck(RestWsGateway):
        async def list_symbols(self):  # type: ignore[override]
            started.set()
            await asyncio.Event().wait()

    gateway = SyncGateway(
        Stuck(venue.url, venue.api_key, dedupes_client_order_ids=True), call_timeout=0.2
    )
    try:
        with pytest.raises(GatewayError) as caught:
            gateway.list_symbols()
        assert started.is_set()
        assert caught.value.reason is GatewayReason.TIMEOUT
        assert caught.value.outcome_unknown is True
    finally:
        gateway.close()
