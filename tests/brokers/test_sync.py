"""Symbol and account sync through the gateway, against a real paper venue."""

from decimal import Decimal

import pytest

from accounts.models import TradingAccount
from brokers.models import Symbol
from brokers.paper.testing import running_venue
from brokers.services import accounts_sync, broker_server_create, symbols_sync
from tests.factories import make_account, make_follower

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def venue():
    with running_venue(ticks_ms=0, symbol_suffix=".r", min_volume="0.1", volume_step="0.1") as v:
        yield v


@pytest.fixture
def server(venue):
    assert venue.client().post("/v1/admin/reset")[0] == 200
    return broker_server_create(
        name="sync", platform="Paper", base_url=venue.url, credentials={"api_key": venue.api_key}
    )


def test_symbols_synced_with_lot_rules_and_history(server, venue):
    counts = symbols_sync(server=server)
    assert counts["created"] == counts["listed"] == 6
    eurusd = Symbol.objects.get(broker_server=server, name="EURUSD.r")
    assert (eurusd.min_volume, eurusd.volume_step) == (Decimal("0.1"), Decimal("0.1"))
    assert eurusd.contract_size == Decimal("100000")
    assert symbols_sync(server=server) == {"created": 0, "updated": 0, "retired": 0, "listed": 6}
    # The broker closes a market: the next sync records it, in history.
    status, _ = venue.client().post("/v1/admin/symbols/XAUUSD.r", {"trading": False})
    assert status == 200
    assert symbols_sync(server=server)["updated"] == 1
    gold = Symbol.objects.get(broker_server=server, name="XAUUSD.r")
    assert gold.trading is False
    assert gold.history.first().history_change_reason == "symbol sync"


def test_accounts_in_use_refreshed_from_the_venue(server, venue):
    api = venue.client()
    status, account = api.post(
        "/v1/accounts", {"balance": 2500, "currency": "USD", "leverage": 100, "mode": "DEMO"}
    )
    assert status == 201
    in_use = make_account(server=server, login=account["login"])
    make_follower(account=in_use)
    idle = make_account(server=server, login=account["login"] + 1000)
    assert accounts_sync(server=server) == 1
    in_use.refresh_from_db()
    assert in_use.balance == Decimal("2500")
    assert in_use.equity == Decimal("2500")
    assert in_use.snapshot_at is not None
    assert TradingAccount.objects.get(pk=idle.pk).snapshot_at is None
