"""Statements (page, CSV, PDF) a customer can check by hand, the fee lineage page, the
trade lineage's fee step, and the reverse action by role."""

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from billing.choices import FeeAccrualStatus
from billing.models import FeeAccrual
from tests.billing.conftest import month_end
from tests.factories import make_staff

pytestmark = pytest.mark.django_db

ROLES = ("Operations", "Compliance", "Support")


@pytest.fixture
def settled(desk):
    """A month with a +300 copied trade at 20 %, closed and settled on the venue."""
    master = desk.master(performance_pct=20, broker_share_pct=25)
    sub = desk.follower(master)
    pos = desk.open(sub)
    desk.price("1.10310", "1.10320")
    desk.close(sub, pos)
    start_balance = desk.balance(sub.follower_account), desk.balance(master.account)
    desk.run(month_end(datetime.now(UTC)) + timedelta(minutes=1))
    return desk, master, sub, start_balance


def _sign_in(client, staff_password, role):
    user = make_staff(group=role)
    assert client.login(username=user.username, password=staff_password)
    return user


def _csv(client, party, login):
    month = datetime.now(UTC).strftime("%Y-%m")
    response = client.get(
        "/admin/ops/billing/statements/",
        {"party": party, "login": login, "month": month, "format": "csv"},
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv"
    return list(csv.reader(io.StringIO(response.content.decode())))


def test_statements_add_up_to_what_the_venue_moved(client, staff_password, settled):
    desk, master, sub, (follower_before, master_before) = settled
    _sign_in(client, staff_password, "Support")
    rows = _csv(client, "follower", sub.follower_account.login)
    (fee,) = [r for r in rows if r[0] == "fee"]
    assert fee[2:3] + fee[5:8] == ["performance", "300.0000", "0.20000000", "60.0000"]
    totals = {r[2]: D(r[7]) for r in rows if r[0] == "total"}
    assert totals["fees"] == D("60")
    assert totals["moved"] == desk.balance(sub.follower_account) - follower_before == D("-60")
    master_rows = _csv(client, "master", master.account.login)
    (earned,) = [r for r in master_rows if r[0] == "fee"]
    assert D(earned[8]) == D("45.00")  # 75 % of 60
    master_totals = {r[2]: D(r[7]) for r in master_rows if r[0] == "total"}
    assert master_totals["moved"] == desk.balance(master.account) - master_before == D("45")
    month = datetime.now(UTC).strftime("%Y-%m")
    page = client.get(
        "/admin/ops/billing/statements/",
        {"party": "follower", "login": sub.follower_account.login, "month": month},
    )
    assert page.status_code == 200
    assert "300.00 above the mark" in page.content.decode()
    pdf = client.get(
        "/admin/ops/billing/statements/",
        {"party": "follower", "login": sub.follower_account.login, "month": month, "format": "pdf"},
    )
    assert pdf.status_code == 200
    assert pdf.content.startswith(b"%PDF")


def test_a_bad_statement_query_says_what_to_fix(client, staff_password, settled):
    _sign_in(client, staff_password, "Operations")
    page = client.get(
        "/admin/ops/billing/statements/", {"party": "follower", "login": 1, "month": "12/2026"}
    )
    body = page.content.decode()
    assert "Write the month as YYYY-MM" in body
    assert "No trading account has login 1" in body
    page = client.get("/admin/ops/billing/statements/", {"party": "master", "login": 1})
    assert "Give a month (YYYY-MM), or both a start and an end day." in page.content.decode()


def test_a_statement_for_any_period_in_days(client, staff_password, settled):
    desk, master, sub, (follower_before, _) = settled
    _sign_in(client, staff_password, "Compliance")
    today = datetime.now(UTC).date()
    query = {
        "party": "follower",
        "login": sub.follower_account.login,
        "start": str(today),
        "end": str(today + timedelta(days=1)),
        "format": "csv",
    }
    response = client.get("/admin/ops/billing/statements/", query)
    assert response["Content-Disposition"].endswith(
        f'{today:%Y%m%d}-{today + timedelta(days=1):%Y%m%d}.csv"'
    )
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    totals = {r[2]: D(r[7]) for r in rows if r[0] == "total"}
    assert totals["moved"] == desk.balance(sub.follower_account) - follower_before


@pytest.mark.parametrize("role", ROLES)
def test_fee_pages_follow_the_role(client, staff_password, settled, role):
    desk, master, sub, _ = settled
    fee = FeeAccrual.objects.get(subscription=sub, kind="performance")
    _sign_in(client, staff_password, role)
    page = client.get(f"/admin/ops/lineage/fee/{fee.pk}/")
    assert page.status_code == 200
    body = page.content.decode()
    assert "fee-" in body
    assert f"v{fee.schedule_version}" in body
    assert client.get("/admin/ops/billing/statements/").status_code == 200
    # Only Compliance may reverse (a settled fee is then refused with the reason why).
    reverse = client.get(f"/admin/billing/feeaccrual/{fee.pk}/reverse/")
    assert reverse.status_code == (200 if role == "Compliance" else 403)


def test_the_trade_lineage_shows_the_fees_of_its_subscription(client, staff_password, settled):
    desk, master, sub, _ = settled
    link = sub.trade_links.get()
    _sign_in(client, staff_password, "Compliance")
    body = client.get(f"/admin/ops/lineage/link/{link.pk}/").content.decode()
    assert "No fees yet." not in body
    fee = FeeAccrual.objects.get(subscription=sub, kind="performance")
    assert f"/admin/ops/lineage/fee/{fee.pk}/" in body


def test_compliance_reverses_an_unsettled_accrual_with_a_reason(client, staff_password, desk):
    master = desk.master(subscription_amount=12)
    sub = desk.follower(master)
    desk.run(datetime.now(UTC))
    fee = FeeAccrual.objects.get(subscription=sub)
    _sign_in(client, staff_password, "Compliance")
    url = f"/admin/billing/feeaccrual/{fee.pk}/reverse/"
    client.post(url, {"reason": "waived by the broker"})
    fee.refresh_from_db()
    assert fee.status == FeeAccrualStatus.REVERSED
    assert fee.reversal.reason == "waived by the broker"


def test_billing_lists_do_not_grow_queries_with_rows(client, staff_password, desk):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    pages = [
        "/admin/billing/feeaccrual/",
        "/admin/billing/settlement/",
        "/admin/billing/balanceop/",
        "/admin/billing/ledgerleg/",
        "/admin/billing/feeschedule/",
        "/admin/billing/subscriptionfeestate/",
    ]
    master = desk.master(subscription_amount=5, broker_share_pct=10)

    def grow(n):
        for _ in range(n):
            desk.follower(master)
        desk.run(datetime.now(UTC))
        desk.run(month_end(datetime.now(UTC)))

    def queries():
        counts = {}
        for page in pages:
            with CaptureQueriesContext(connection) as captured:
                assert client.get(page).status_code == 200, page
            counts[page] = len(captured)
        return counts

    _sign_in(client, staff_password, "Operations")
    grow(1)
    small = queries()
    grow(4)
    assert queries() == small
