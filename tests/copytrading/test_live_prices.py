"""Live prices over the WebSocket: a page watching links gets their price and P&L pushed,
only for links its user may see (real venue quotes, real uvicorn and channel layer)."""

import uuid
from decimal import Decimal

import pytest
from django.test import override_settings

from brokers.paper.testing import running_venue
from brokers.services import broker_server_create, symbols_sync
from tests.asgi import asgi_server, prefixed_channel_layers, websocket
from tests.copytrading.test_live_positions import live_staff, make_link, session_for, subscription
from tests.factories import make_account, make_customer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

CHANNELS_PREFIX = f"asgi-prices-{uuid.uuid4().hex[:8]}"


@pytest.fixture(autouse=True)
def own_channel_layer():
    with override_settings(CHANNEL_LAYERS=prefixed_channel_layers(CHANNELS_PREFIX)):
        yield


@pytest.fixture(scope="module")
def venue():
    with running_venue(ticks_ms=0) as v:
        yield v


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker):
    with asgi_server(channels_prefix=CHANNELS_PREFIX) as s:
        yield s


def is_prices(frame):
    return frame["type"] == "prices"


def test_watched_links_get_prices_pushed_within_scope(server, venue):
    broker = broker_server_create(
        name="px", platform="Paper", base_url=venue.url, credentials={"api_key": venue.api_key}
    )
    symbols_sync(server=broker)
    alice = make_customer()
    mine = make_link(
        subscription(
            follower_account=make_account(server=broker, customer=alice),
            master_account=make_account(server=broker),
        ),
        open_price=Decimal("1.09000"),
    )
    theirs = make_link(
        subscription(
            follower_account=make_account(server=broker), master_account=make_account(server=broker)
        )
    )
    status, _ = venue.client().post(
        "/v1/admin/prices", {"symbol": "EURUSD", "bid": 1.10000, "ask": 1.10010}
    )
    assert status == 200
    with websocket(server, "/ws/positions/", session=session_for(alice.user)) as ws:
        ws.wait_frame(lambda f: f["type"] == "snapshot")
        ws.send_json({"type": "watch_prices", "links": [mine.id, theirs.id]})
        frame = ws.wait_frame(is_prices)
        # The other customer's link is not priced for alice.
        assert list(frame["prices"]) == [str(mine.id)]
        price = frame["prices"][str(mine.id)]
        # Buy 0.5 lot from 1.09 closing at the bid 1.10: 0.01 x 0.5 x 100000 = 500.00.
        assert Decimal(price["price"]) == Decimal("1.10000")
        assert price["pnl"] == "500.00"
    with websocket(server, "/ws/positions/", session=session_for(live_staff())) as ws:
        ws.wait_frame(lambda f: f["type"] == "snapshot")
        ws.send_json({"type": "watch_prices", "links": [mine.id, theirs.id]})
        frame = ws.wait_frame(lambda f: is_prices(f) and len(f["prices"]) == 2)
        assert set(frame["prices"]) == {str(mine.id), str(theirs.id)}
