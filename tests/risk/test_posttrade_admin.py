"""Post-trade risk in the staff admin: limits on the subscription and master pages, how close
each limit is to firing, the stops with their inputs, and clearing with a reason by role."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from unittest import mock

import pytest
from django.test import Client

from copytrading.choices import CopySubscriptionStatus
from copytrading.models import CopySubscription
from risk import monitors
from risk.models import MasterLimits, RiskStop, SubscriptionLimits
from tests.factories import make_staff, make_subscription

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _quiet():
    with (
        mock.patch("copytrading.services.fanout.enqueue_execution"),
        mock.patch("risk.monitors._alert"),
        mock.patch("risk.monitors._poll_soon"),
    ):
        yield


def sign_in(client: Client, role: str | None, password: str):
    user = make_staff(group=role) if role else make_staff(is_superuser=True)
    assert client.login(username=user.username, password=password)
    return user


def stopped_subscription():
    sub = make_subscription()
    SubscriptionLimits.objects.create(subscription=sub, max_drawdown_pct=D("5"))
    server_id = sub.follower_account.broker_server_id
    for equity, at in (("10000", T0), ("9680", T0 + timedelta(seconds=1))):
        monitors.accounts_monitor(
            server_id=server_id,
            readings=[
                monitors.AccountReading(
                    login=sub.follower_account.login,
                    balance=D("10000"),
                    equity=D(equity),
                    margin=D(0),
                    at=at,
                )
            ],
            now=at,
        )
    return sub


def test_subscription_page_shows_limits_closeness_and_stops(client, staff_password):
    sub = stopped_subscription()
    sign_in(client, "Support", staff_password)
    page = client.get(f"/admin/copytrading/copysubscription/{sub.pk}/change/").content.decode()
    assert "MAX_DRAWDOWN: 3.2% of 5% (64% used)" in page
    assert "Post-trade (monitors)" in page
    # A breach: the stop is listed with a link to it.
    monitors.accounts_monitor(
        server_id=sub.follower_account.broker_server_id,
        readings=[
            monitors.AccountReading(
                login=sub.follower_account.login,
                balance=D("10000"),
                equity=D("9400"),
                margin=D(0),
                at=T0 + timedelta(seconds=2),
            )
        ],
    )
    stop = RiskStop.objects.get(subscription=sub)
    page = client.get(f"/admin/copytrading/copysubscription/{sub.pk}/change/").content.decode()
    assert f"/admin/risk/riskstop/{stop.pk}/change/" in page
    detail = client.get(f"/admin/risk/riskstop/{stop.pk}/change/").content.decode()
    assert "figure.inputs.high_water_mark" in detail
    assert "10000.0000" in detail
    # Support reads; only Operations clears.
    assert f"/admin/risk/riskstop/{stop.pk}/clear/" not in detail
    assert client.post(f"/admin/risk/riskstop/{stop.pk}/clear/", {"reason": "x"}).status_code in (
        302,
        403,
    )
    stop.refresh_from_db()
    assert stop.cleared_at is None


def test_operations_clear_a_stop_with_a_reason(client, staff_password):
    sub = stopped_subscription()
    monitors.accounts_monitor(
        server_id=sub.follower_account.broker_server_id,
        readings=[
            monitors.AccountReading(
                login=sub.follower_account.login,
                balance=D("10000"),
                equity=D("9000"),
                margin=D(0),
                at=T0 + timedelta(seconds=3),
            )
        ],
    )
    stop = RiskStop.objects.get(subscription=sub)
    user = sign_in(client, "Operations", staff_password)
    url = f"/admin/risk/riskstop/{stop.pk}/clear/"
    assert 'name="reason"' in client.get(url).content.decode()
    client.post(url, {"reason": ""})
    stop.refresh_from_db()
    assert stop.cleared_at is None
    assert client.post(url, {"reason": "limits reviewed with the client"}).status_code == 302
    stop.refresh_from_db()
    assert (stop.cleared_by, stop.clear_reason) == (user, "limits reviewed with the client")
    sub = CopySubscription.objects.get(pk=sub.pk)
    assert sub.status == CopySubscriptionStatus.ACTIVE
    listing = client.get("/admin/risk/riskstop/").content.decode()
    assert "cleared" in listing


def test_operations_edit_limits_inline_with_history(client, staff_password):
    sub = make_subscription()
    user = sign_in(client, "Operations", staff_password)
    url = "/admin/risk/subscriptionlimits/add/"
    page = client.get(url)
    assert page.status_code == 200
    SubscriptionLimits.objects.create(subscription=sub, daily_loss_limit=D("100"))
    limits = SubscriptionLimits.objects.get(subscription=sub)
    change = f"/admin/risk/subscriptionlimits/{limits.pk}/change/"
    form = client.get(change)
    assert form.status_code == 200
    data = {
        f.name: getattr(limits, f.attname)
        for f in SubscriptionLimits._meta.concrete_fields
        if f.editable and f.name not in ("id", "subscription")
    }
    data.update(subscription=sub.pk, daily_loss_limit="250", period_timezone="Mars/Olympus")
    refused = client.post(change, data)
    assert refused.status_code == 200
    assert "is not an IANA time zone" in refused.content.decode()
    data["period_timezone"] = "Europe/London"
    assert client.post(change, data).status_code == 302
    limits.refresh_from_db()
    assert (limits.daily_loss_limit, limits.period_timezone) == (D("250"), "Europe/London")
    assert limits.history.first().history_user == user


def test_master_page_shows_declared_limits(client, staff_password):
    sub = make_subscription()
    MasterLimits.objects.create(master=sub.master, max_lots=D("7"))
    sign_in(client, "Compliance", staff_password)
    page = client.get(f"/admin/copytrading/copymaster/{sub.master_id}/change/")
    assert page.status_code == 200
    assert "7.0000" in page.content.decode()


@pytest.mark.parametrize(
    "path",
    [
        "/admin/risk/riskstop/",
        "/admin/risk/subscriptionlimits/",
        "/admin/risk/masterlimits/",
        "/admin/risk/monitorstate/",
    ],
)
def test_risk_lists_answer_for_support(client, staff_password, path):
    stopped_subscription()
    sign_in(client, "Support", staff_password)
    assert client.get(path).status_code == 200


def test_dashboard_counts_open_stops(client, staff_password):
    sub = stopped_subscription()
    monitors.subscription_breach(
        subscription=sub,
        figure=monitors.rules.Figure("EQUITY_FLOOR", D(1), D(1), "amount", D(100), True, "x"),
        reading=None,
    )
    sign_in(client, "Operations", staff_password)
    page = client.get("/admin/").content.decode()
    card = page[page.index('id="risk-stops-card"') :][:400]
    assert "Open risk stops" in card
    assert '<span class="bo-figure">1</span>' in card
