"""Pre-trade risk in the staff admin: the server switches page (Operations change with a
reason, history kept; others read), how close each pre-trade limit is, the opens the checks
stopped or cut, and every check result on the instruction and lineage pages."""

from decimal import Decimal as D

import pytest

from copytrading.models import CopyInstruction, TradeLink
from risk.models import ServerSwitch, SubscriptionLimits
from tests.factories import make_subscription
from tests.risk.test_posttrade_admin import sign_in

pytestmark = pytest.mark.django_db

CUT = {
    "code": "MAX_LOTS_TOTAL",
    "outcome": "cut",
    "figures": {"open_lots": "1", "max_lots": "2", "volume": "1.5", "cut_to": "1"},
}


RISK = {
    "code": "MAX_RISK_PER_TRADE",
    "outcome": "pass",
    "figures": {"risk_pct": "0.5", "max_risk_pct": "1", "sl_distance": "0.005"},
}


def test_operations_toggle_a_server_switch_with_a_reason(client, staff_password):
    sub = make_subscription()
    server = sub.follower_account.broker_server
    user = sign_in(client, "Operations", staff_password)
    page = client.get("/admin/ops/server-switches/").content.decode()
    assert f"/admin/ops/server-switches/{server.pk}/" in page
    url = f"/admin/ops/server-switches/{server.pk}/"
    client.post(url, {"active": "1", "reason": "  "})
    assert not ServerSwitch.objects.filter(active=True).exists()  # a reason is required
    assert client.post(url, {"active": "1", "reason": "broker maintenance"}).status_code == 302
    switch = ServerSwitch.objects.get(broker_server=server)
    assert (switch.active, switch.changed_by) == (True, user)
    client.post(url, {"active": "0", "reason": "maintenance over"})
    reasons = list(
        switch.history.order_by("history_id").values_list("history_change_reason", flat=True)
    )
    assert reasons == ["switch created (off)", "broker maintenance", "maintenance over"]
    page = client.get("/admin/ops/server-switches/").content.decode()
    assert "maintenance over" in page
    assert "/admin/ops/server-switches/" in client.get("/admin/").content.decode()  # sidebar


def test_support_reads_the_server_switches_but_cannot_change_them(client, staff_password):
    sub = make_subscription()
    server = sub.follower_account.broker_server
    sign_in(client, "Support", staff_password)
    page = client.get("/admin/ops/server-switches/").content.decode()
    assert server.name in page
    assert f"/admin/ops/server-switches/{server.pk}/" not in page
    response = client.post(
        f"/admin/ops/server-switches/{server.pk}/", {"active": "1", "reason": "x"}
    )
    assert response.status_code == 403


def test_limits_pages_show_closeness_stops_and_check_results(client, staff_password):
    sub = make_subscription()
    SubscriptionLimits.objects.create(
        subscription=sub, max_lots_total=D(2), max_lots_per_symbol=D(4), max_risk_per_trade_pct=1
    )
    account = sub.follower_account
    link = TradeLink.objects.create(
        subscription=sub,
        master_account=sub.master_account,
        follower_account=account,
        master_position_id="P1",
        symbol="EURUSD",
        follower_symbol="EURUSD",
        side="buy",
        master_volume=D(1),
        follower_volume=D(1),
        status="open",
    )
    inst = CopyInstruction.objects.create(
        subscription=sub,
        follower_account=account,
        trade_link=link,
        action="open",
        status="done",
        rule_version="2",
        client_order_id="ct1s1",
        volume=D(1),
        decision={"checks": [CUT, RISK]},
    )
    skipped = CopyInstruction.objects.create(
        subscription=sub,
        follower_account=account,
        action="skip",
        status="skipped",
        reason="NO_MASTER_SL",
        rule_version="2",
        client_order_id="ct2s1",
        decision={"checks": [{"code": "NO_MASTER_SL", "outcome": "skip", "figures": {}}]},
    )
    sign_in(client, "Support", staff_password)
    page = client.get(f"/admin/copytrading/copysubscription/{sub.pk}/change/").content.decode()
    assert "MAX_LOTS_TOTAL: 1 of 2 (50% used)" in page
    assert "MAX_LOTS_PER_SYMBOL: 1 of 4 (25% used)" in page
    assert "MAX_RISK_PER_TRADE: 0.5 of 1 (50% used)" in page  # as the last open saw it
    assert f"/admin/copytrading/copyinstruction/{inst.pk}/change/" in page  # the cut
    assert f"/admin/copytrading/copyinstruction/{skipped.pk}/change/" in page  # the skip
    limits = SubscriptionLimits.objects.get(subscription=sub)
    page = client.get(f"/admin/risk/subscriptionlimits/{limits.pk}/change/").content.decode()
    assert "MAX_LOTS_TOTAL: 1 of 2 (50% used)" in page

    sign_in(client, "Compliance", staff_password)
    detail = client.get(f"/admin/copytrading/copyinstruction/{inst.pk}/change/").content.decode()
    assert "cut_to 1, max_lots 2, open_lots 1, volume 1.5" in detail
    lineage = client.get(f"/admin/ops/lineage/link/{link.pk}/").content.decode()
    assert "MAX_LOTS_TOTAL</strong> cut" in lineage
