"""Copy health figures from stored rows, the history page, and pinned query counts."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from copytrading import dashboards
from copytrading.models import CopyInstruction, CopySubscription
from copytrading.services import subscription_pause, subscription_update
from tests.admin.support import copied_trade
from tests.factories import make_staff, make_subscription

pytestmark = pytest.mark.django_db


def test_latency_and_slippage_per_trade_and_in_aggregate():
    sub = make_subscription()
    copied_trade(sub, latency_ms=20, master_price="1.10000", follower_price="1.10003")
    copied_trade(sub, latency_ms=40, master_price="1.10000", follower_price="1.09999")
    copied_trade(sub, latency_ms=60, side="sell", master_price="1.10000", follower_price="1.09990")
    health = dashboards.copy_health(window="1h")
    assert health.copied == 3
    assert health.latency_p50_ms == pytest.approx(40.0)
    assert health.latency_p99_ms == pytest.approx(59.6)
    slippage = sorted(t.slippage for t in health.trades)
    # A buy filled higher and a sell filled lower are worse (positive); a better buy negative.
    assert slippage == [Decimal("-0.00001"), Decimal("0.00003"), Decimal("0.00010")]
    assert health.slippage_avg == Decimal("0.00004000")
    assert health.fill_rate == 1.0
    assert sum(health.volume_series) == 3


def test_windows_skips_rejections_errors_and_drift():
    sub = make_subscription()
    old = copied_trade(sub, at=timezone.now() - timedelta(hours=3))
    skipped = copied_trade(sub)
    CopyInstruction.objects.filter(pk=skipped.instruction.pk).update(
        status="skipped", reason="SYMBOL_FILTERED"
    )
    rejected = copied_trade(sub)
    rejected.order.status, rejected.order.reason = "rejected", "no_money"
    rejected.order.save()
    CopyInstruction.objects.filter(pk=rejected.instruction.pk).update(status="failed")
    CopySubscription.objects.filter(pk=sub.pk).update(sync_status="drifting", drift=Decimal("0.5"))
    hour = dashboards.copy_health(window="1h")
    day = dashboards.copy_health(window="24h")
    assert hour.skips_by_reason == [("SYMBOL_FILTERED", 1)]
    assert hour.rejections_by_reason == [("no_money", 1)]
    assert hour.error_rate == pytest.approx(1 / 2)
    assert hour.copied == 1
    assert day.copied == 2
    assert old.order.pk in {t.order_id for t in day.trades}
    assert [s.pk for s in hour.drifting] == [sub.pk]


def test_sparkline_is_numbers_only():
    svg = dashboards.sparkline_svg([1.0, None, 3.0])
    assert svg.startswith("<svg")
    assert "polyline" in svg
    assert "<script" not in svg
    assert "no data" in dashboards.sparkline_svg([None, None])


def test_health_page_shows_figures(client, login):
    copied_trade(latency_ms=25)
    login("Compliance")
    body = client.get("/admin/ops/health/").content.decode()
    assert 'id="latency-p50"' in body
    assert "25.0 ms" in body
    assert "<svg" in body


def test_history_filters_by_user_model_and_date_and_exports_csv(client, login):
    sub = make_subscription()
    alice = make_staff(group="Operations")
    subscription_update(subscription=sub, settings={"risk_multiplier": "2"}, actor=alice)
    subscription_pause(subscription=sub, reason="=cmd|' /C calc'!A0", actor=alice)
    login("Compliance")
    page = client.get(
        "/admin/ops/history/", {"user": alice.pk, "model": "copytrading.copysubscription"}
    ).content.decode()
    assert "risk_multiplier" in page
    assert alice.username in page
    assert "subscription created" not in page  # made by the system, not alice
    tomorrow = (timezone.now() + timedelta(days=1)).date().isoformat()
    empty = client.get("/admin/ops/history/", {"since": tomorrow}).content.decode()
    assert "No changes match." in empty
    csv = client.get("/admin/ops/history/", {"user": alice.pk, "format": "csv"})
    text = b"".join(csv.streaming_content).decode()
    assert csv["Content-Type"] == "text/csv"
    assert "risk_multiplier,1.0000,2" in text
    assert "'=cmd" in text  # a formula-looking reason is exported as text


def _queries(client, url):
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


@pytest.mark.parametrize(
    "url",
    [
        "/admin/copytrading/copysubscription/",
        "/admin/copytrading/copymaster/",
        "/admin/copytrading/copyfollower/",
        "/admin/copytrading/tradelink/",
        "/admin/copytrading/followerorder/",
        "/admin/copytrading/copyinstruction/",
        "/admin/accounts/tradingaccount/",
        "/admin/ops/positions/",
        "/admin/ops/health/",
        "/admin/ops/history/",
    ],
)
def test_busy_pages_cost_the_same_queries_for_more_rows(client, login, url):
    login()
    copied_trade()
    few = _queries(client, url)
    for _ in range(4):
        copied_trade()
    assert _queries(client, url) == few, url


def test_lineage_page_shows_each_step(client, login, trade):
    login("Compliance")
    body = client.get(f"/admin/ops/lineage/order/{trade.order.pk}/").content.decode()
    for step in (
        "step-event",
        "step-instruction",
        "step-order",
        "step-fills",
        "step-link",
        "step-fees",
    ):
        assert f'id="{step}"' in body
    assert trade.event.venue_event_id in body
    assert "position_opened" in body  # the raw payload
    assert trade.order.client_order_id in body
    assert "No fees yet." in body
    link_page = client.get(f"/admin/ops/lineage/link/{trade.link.pk}/").content.decode()
    assert trade.order.client_order_id in link_page


def test_zero_slippage_is_shown_as_zero_not_missing(client, login):
    copied_trade(master_price="1.10000", follower_price="1.10000")
    health = dashboards.copy_health()
    assert health.slippage_avg == Decimal(0)
    login("Operations")
    assert "0.00000000 / 0.00000000" in client.get("/admin/ops/health/").content.decode()
