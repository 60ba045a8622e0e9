"""Every staff page answers for a superuser and shows what it is for."""

from decimal import Decimal

import pytest

from tests.admin.support import copied_trade

pytestmark = pytest.mark.django_db


def test_staff_pages_answer(client, login, trade):
    login()
    pages = [
        "/admin/",
        "/admin/ops/positions/",
        f"/admin/ops/positions/master/{trade.sub.master_id}/",
        f"/admin/ops/positions/follower/{trade.sub.follower_id}/",
        "/admin/ops/positions/data/",
        "/admin/ops/health/",
        "/admin/ops/health/?window=24h",
        "/admin/ops/drift/",
        "/admin/ops/kill-switch/",
        f"/admin/ops/lineage/order/{trade.order.pk}/",
        f"/admin/ops/lineage/link/{trade.link.pk}/",
        "/admin/ops/history/",
        f"/admin/copytrading/copysubscription/{trade.sub.pk}/change/",
        f"/admin/copytrading/copysubscription/{trade.sub.pk}/pause/",
        f"/admin/copytrading/copysubscription/{trade.sub.pk}/force-close/",
        f"/admin/copytrading/tradelink/{trade.link.pk}/force-close/",
        f"/admin/copytrading/copyfollower/{trade.sub.follower_id}/pause/",
        f"/admin/copytrading/copymaster/{trade.sub.master_id}/pause/",
    ]
    for page in pages:
        response = client.get(page)
        assert response.status_code == 200, (page, response.content[:2000])


def test_live_data_is_scoped_to_the_page(client, login, trade):
    other = copied_trade()
    login("Support")
    data = client.get("/admin/ops/positions/data/", {"follower": trade.sub.follower_id}).json()
    assert [link["id"] for link in data["links"]] == [trade.link.pk]
    assert data["subscription_ids"] == [trade.sub.pk]
    everything = client.get("/admin/ops/positions/data/").json()
    assert {link["id"] for link in everything["links"]} == {trade.link.pk, other.link.pk}


def test_prices_and_pnl_in_decimal(client, login, trade, monkeypatch):
    from copytrading import prices as prices_module

    monkeypatch.setattr(
        prices_module,
        "quotes",
        lambda server, symbols: {"EURUSD": {"bid": "1.10102", "ask": "1.10104", "ts": "t"}},
    )
    login("Support")
    prices = client.get("/admin/ops/positions/prices/", {"links": str(trade.link.pk)}).json()
    # A 0.5-lot buy opened at 1.10002, closing at the bid 1.10102: 0.001 x 0.5 x 100000.
    assert prices["prices"][str(trade.link.pk)] == {"price": "1.10102", "pnl": "50.00", "ts": "t"}


def test_position_pnl_of_a_sell_closes_at_the_ask():
    from copytrading.prices import position_pnl

    price, pnl = position_pnl(
        side="sell",
        volume=Decimal("2"),
        open_price=Decimal("1.2000"),
        bid=Decimal("1.1990"),
        ask=Decimal("1.1992"),
        contract=Decimal("100000"),
    )
    assert (price, pnl) == (Decimal("1.1992"), Decimal("160.00"))


def test_follower_list_counts_paused_subscriptions(client, login, trade):
    login("Support")
    client.post(f"/admin/copytrading/copysubscription/{trade.sub.pk}/pause/", {"reason": "x"})
    body = client.get("/admin/copytrading/copyfollower/").content.decode()
    assert 'class="field-paused_subscriptions' in body


def test_admin_system_checks_need_no_database():
    # `migrate` runs the checks before auth_permission exists on a fresh database.
    from django.core import checks
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        errors = checks.run_checks(tags=[checks.Tags.admin])
    assert errors == []
    assert ctx.captured_queries == []
