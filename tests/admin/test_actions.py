"""Staff actions take effect at once and are recorded with who, when and why."""

import pytest

from copytrading.choices import CopySubscriptionStatus
from copytrading.models import CopyMaster, CopySubscription
from risk.models import KillSwitch
from tests.factories import make_subscription

pytestmark = pytest.mark.django_db


def test_pause_button_asks_for_a_reason_then_pauses_with_history(client, login, trade):
    user = login("Support")
    url = f"/admin/copytrading/copysubscription/{trade.sub.pk}/pause/"
    form = client.get(url).content.decode()
    assert 'name="reason"' in form
    # No reason, no pause.
    client.post(url, {"reason": ""})
    assert CopySubscription.objects.get(pk=trade.sub.pk).status == CopySubscriptionStatus.ACTIVE
    response = client.post(url, {"reason": "customer called: stop copying"})
    assert response.status_code == 302
    sub = CopySubscription.objects.get(pk=trade.sub.pk)
    assert sub.status == CopySubscriptionStatus.PAUSED
    last = sub.history.order_by("-history_id").first()
    assert last.history_user == user
    assert last.history_change_reason == "customer called: stop copying"
    history_page = client.get(f"/admin/copytrading/copysubscription/{sub.pk}/history/")
    assert "customer called: stop copying" in history_page.content.decode()


def test_resume_after_pause(client, login, trade):
    login("Support")
    base = f"/admin/copytrading/copysubscription/{trade.sub.pk}"
    client.post(f"{base}/pause/", {"reason": "a"})
    client.post(f"{base}/resume/", {"reason": "b"})
    assert CopySubscription.objects.get(pk=trade.sub.pk).status == CopySubscriptionStatus.ACTIVE


def test_row_buttons_are_on_the_changelist_for_support(client, login, trade):
    login("Support")
    body = client.get("/admin/copytrading/copysubscription/").content.decode()
    assert f"/admin/copytrading/copysubscription/{trade.sub.pk}/pause/" in body
    assert f"/admin/copytrading/copysubscription/{trade.sub.pk}/resume/" in body
    change = client.get(f"/admin/copytrading/copysubscription/{trade.sub.pk}/change/")
    assert f"/admin/copytrading/copysubscription/{trade.sub.pk}/pause/" in change.content.decode()


def test_no_pause_buttons_for_compliance(client, login, trade):
    login("Compliance")
    body = client.get("/admin/copytrading/copysubscription/").content.decode()
    assert f"/copysubscription/{trade.sub.pk}/pause/" not in body


def test_follower_pause_pauses_every_subscription(client, login):
    first = make_subscription()
    login("Support")
    client.post(
        f"/admin/copytrading/copyfollower/{first.follower_id}/pause/", {"reason": "fraud check"}
    )
    sub = CopySubscription.objects.get(pk=first.pk)
    assert sub.status == CopySubscriptionStatus.PAUSED
    assert sub.status_reason == "fraud check"


def test_master_pause_by_operations(client, login, trade):
    user = login("Operations")
    client.post(f"/admin/copytrading/copymaster/{trade.sub.master_id}/pause/", {"reason": "audit"})
    master = CopyMaster.objects.get(pk=trade.sub.master_id)
    assert master.paused
    assert master.history.order_by("-history_id").first().history_user == user


def test_bulk_pause_asks_once_then_pauses_all(client, login):
    subs = [make_subscription() for _ in range(3)]
    login("Support")
    ids = [s.pk for s in subs]
    page = client.post(
        "/admin/copytrading/copysubscription/",
        {"action": "pause_selected", "_selected_action": ids},
    )
    assert page.status_code == 200
    assert 'name="reason"' in page.content.decode()
    assert not CopySubscription.objects.filter(pk__in=ids, status=1).exists()
    client.post(
        "/admin/copytrading/copysubscription/",
        {"action": "pause_selected", "_selected_action": ids, "apply": "1", "reason": "incident"},
    )
    assert CopySubscription.objects.filter(pk__in=ids, status=1).count() == 3


def test_kill_switch_toggle_and_banner_on_every_page(client, login):
    user = login("Operations")
    assert "kill-switch-banner" not in client.get("/admin/").content.decode()
    response = client.post("/admin/ops/kill-switch/", {"active": "1", "reason": "venue outage"})
    assert response.status_code == 302
    switch = KillSwitch.objects.get(pk=1)
    assert switch.active
    assert switch.changed_by == user
    for page in ("/admin/", "/admin/copytrading/copysubscription/", "/admin/ops/health/"):
        body = client.get(page).content.decode()
        assert "kill-switch-banner" in body, page
        assert "venue outage" in body
    client.post("/admin/ops/kill-switch/", {"active": "0", "reason": "venue back"})
    assert "kill-switch-banner" not in client.get("/admin/").content.decode()
    reasons = list(
        KillSwitch.history.order_by("history_id").values_list("history_change_reason", flat=True)
    )
    assert reasons[-2:] == ["venue outage", "venue back"]


def test_kill_switch_needs_a_reason(client, login):
    login("Operations")
    client.post("/admin/ops/kill-switch/", {"active": "1", "reason": "  "})
    assert not KillSwitch.objects.filter(active=True).exists()


def test_subscription_page_shows_why_trades_were_skipped(client, login, trade):
    trade.instruction.status = "skipped"
    trade.instruction.reason = "SYMBOL_FILTERED"
    trade.instruction.save()
    login("Support")
    body = client.get(
        f"/admin/copytrading/copysubscription/{trade.sub.pk}/change/"
    ).content.decode()
    assert "SYMBOL_FILTERED" in body
