"""Each staff role on every admin page and every staff action: Operations runs things,
Compliance reads everything (history included) and changes nothing, Support reads
customers, accounts, followers and subscriptions and may pause and resume them."""

import pytest
from django.contrib import admin
from django.contrib.auth.models import AnonymousUser

from copytrading.models import CopyMaster, CopySubscription
from risk.models import KillSwitch

pytestmark = pytest.mark.django_db

ROLES = ("Operations", "Compliance", "Support")
# Models nobody adds from the admin (evidence, health rows, one-row switch, tokens).
NO_ADD = {
    "masterevent",
    "tradelink",
    "copyinstruction",
    "followerorder",
    "followerordertransition",
    "fill",
    "staffremedy",
    "listenershard",
    "killswitch",
    "serverswitch",
    "customerapitoken",
    "subscriptionfeestate",  # made by billing for each subscription; Operations move its version
}


def _perm(user, app, action, model):
    return user.has_perm(f"{app}.{action}_{model}")


@pytest.mark.parametrize("role", ROLES)
def test_every_model_page_follows_the_role(client, login, trade, role):
    user = login(role)
    for model, model_admin in admin.site._registry.items():
        app, name = model._meta.app_label, model._meta.model_name
        base = f"/admin/{app}/{name}/"
        sees = _perm(user, app, "view", name) or _perm(user, app, "change", name)
        assert client.get(base).status_code == (200 if sees else 403), (role, base)
        may_add = _perm(user, app, "add", name) and name not in NO_ADD
        assert client.get(base + "add/").status_code == (200 if may_add else 403), (role, base)
        obj = model_admin.get_queryset(type("R", (), {"user": user})()).first()
        if obj is None:
            continue
        for page in ("change/", "history/"):
            url = f"{base}{obj.pk}/{page}"
            assert client.get(url).status_code == (200 if sees else 403), (role, url)


STAFF_PAGES = {
    # page: roles that may open it
    "/admin/": set(ROLES),
    "/admin/ops/positions/": set(ROLES),
    "/admin/ops/positions/data/": set(ROLES),
    "/admin/ops/positions/prices/?links=": set(ROLES),
    "/admin/ops/health/": {"Operations", "Compliance"},
    "/admin/ops/drift/": {"Operations", "Compliance"},
    "/admin/ops/kill-switch/": {"Operations", "Compliance"},
    "/admin/ops/server-switches/": set(ROLES),  # Support reads why openings stopped
    "/admin/ops/history/": set(ROLES),  # Support: the history of its own models only
}


@pytest.mark.parametrize("role", ROLES)
def test_staff_pages_follow_the_role(client, login, trade, role):
    login(role)
    pages = {
        **STAFF_PAGES,
        f"/admin/ops/positions/master/{trade.sub.master_id}/": set(ROLES),
        f"/admin/ops/positions/follower/{trade.sub.follower_id}/": set(ROLES),
        f"/admin/ops/lineage/order/{trade.order.pk}/": {"Operations", "Compliance"},
        f"/admin/ops/lineage/link/{trade.link.pk}/": {"Operations", "Compliance"},
    }
    for page, allowed in pages.items():
        status = client.get(page).status_code
        assert status == (200 if role in allowed else 403), (role, page, status)


def test_anonymous_and_non_staff_are_sent_to_login(client, trade):
    for page in [*STAFF_PAGES, f"/admin/copytrading/copysubscription/{trade.sub.pk}/pause/"]:
        response = client.get(page)
        assert response.status_code == 302, page
        assert "/admin/login/" in response["Location"]
    assert AnonymousUser().is_staff is False


def _actions(trade):
    sub, link = trade.sub, trade.link
    return {
        # (method, url, data): roles allowed
        ("post", f"/admin/copytrading/copysubscription/{sub.pk}/pause/"): {
            "Operations",
            "Support",
        },
        ("post", f"/admin/copytrading/copysubscription/{sub.pk}/resume/"): {
            "Operations",
            "Support",
        },
        ("post", f"/admin/copytrading/copyfollower/{sub.follower_id}/pause/"): {
            "Operations",
            "Support",
        },
        ("post", f"/admin/copytrading/copyfollower/{sub.follower_id}/resume/"): {
            "Operations",
            "Support",
        },
        ("post", f"/admin/copytrading/copymaster/{sub.master_id}/pause/"): {"Operations"},
        ("post", f"/admin/copytrading/copymaster/{sub.master_id}/resume/"): {"Operations"},
        ("post", f"/admin/copytrading/copysubscription/{sub.pk}/force-close/"): {"Operations"},
        ("post", f"/admin/copytrading/tradelink/{link.pk}/force-close/"): {"Operations"},
        ("post", f"/admin/ops/drift/{sub.follower_account_id}/"): {"Operations"},
        ("post", "/admin/ops/kill-switch/"): {"Operations"},
        ("post", f"/admin/ops/server-switches/{sub.follower_account.broker_server_id}/"): {
            "Operations"
        },
    }


@pytest.mark.parametrize("role", ROLES)
def test_every_staff_action_follows_the_role(
    client, login, trade, role, django_capture_on_commit_callbacks, monkeypatch
):
    # Remedies queue execution after commit: keep Celery out of a permission test.
    monkeypatch.setattr("copytrading.services.fanout.enqueue_execution", lambda *a, **k: None)
    login(role)
    for (_, url), allowed in _actions(trade).items():
        if "/ops/" not in url:  # the /ops/ pages show read-only to readers (pages test)
            get = client.get(url)
            assert get.status_code == (200 if role in allowed else 403), (role, url)
        data = {
            "reason": f"{role} test",
            "remedy": "dismiss",
            "position_key": "f:zz",
            "active": "1",
        }
        with django_capture_on_commit_callbacks(execute=False):
            response = client.post(url, data)
        assert response.status_code == (302 if role in allowed else 403), (role, url)


@pytest.mark.parametrize(
    ("role", "changes"), [("Operations", True), ("Support", True), ("Compliance", False)]
)
def test_bulk_pause_follows_the_role(client, login, trade, role, changes):
    login(role)
    url = "/admin/copytrading/copysubscription/"
    client.post(
        url,
        {
            "action": "pause_selected",
            "_selected_action": [trade.sub.pk],
            "apply": "1",
            "reason": "bulk",
        },
    )
    status = CopySubscription.objects.get(pk=trade.sub.pk).status
    assert (status == 1) is changes


@pytest.mark.parametrize(("role", "changes"), [("Operations", True), ("Support", False)])
def test_bulk_master_pause_is_operations_only(client, login, trade, role, changes):
    login(role)
    client.post(
        "/admin/copytrading/copymaster/",
        {
            "action": "pause_selected",
            "_selected_action": [trade.sub.master_id],
            "apply": "1",
            "reason": "x",
        },
    )
    assert CopyMaster.objects.get(pk=trade.sub.master_id).paused is changes


def test_compliance_cannot_turn_the_kill_switch(client, login):
    login("Compliance")
    assert client.post("/admin/ops/kill-switch/", {"active": "1", "reason": "x"}).status_code == 403
    assert not KillSwitch.objects.filter(active=True).exists()


def test_support_history_lists_only_its_models(client, login):
    login("Support")
    body = client.get("/admin/ops/history/").content.decode()
    assert "copytrading.copysubscription" in body
    assert "brokers.brokerserver" not in body


SCHEDULE_FORM = {
    "period": "monthly",
    "performance_pct": "20",
    "management_pct": "0",
    "subscription_amount": "0",
    "volume_per_lot": "0",
    "volume_per_million": "0",
    "broker_share_pct": "30",
    "ib_share_pct": "0",
    "note": "",
}


def test_billing_operations_set_schedules_compliance_reverses_support_reads(client, login, trade):
    from billing.models import FeeSchedule
    from billing.services import fee_cap_set

    add = "/admin/billing/feeschedule/add/"
    form = {**SCHEDULE_FORM, "master": trade.sub.master_id}
    ops = login("Operations")
    assert client.post(add, form).status_code == 302
    schedule = FeeSchedule.objects.get(master=trade.sub.master)
    assert (schedule.version, schedule.created_by) == (1, ops)
    assert schedule.history.first().history_user == ops
    # A schedule above the broker's cap is refused, saying which figure and which cap.
    fee_cap_set(kind="performance", max_pct=25, max_amount=None, actor=None)
    refused = client.post(add, {**form, "performance_pct": "30"})
    assert "exceeds the broker&#x27;s cap on the performance fee (25" in refused.content.decode()
    assert client.post(add, {**form, "performance_pct": "25"}).status_code == 302
    assert FeeSchedule.objects.filter(master=trade.sub.master).count() == 2  # v2, v1 kept
    compliance = login("Compliance")
    assert client.post(add, form).status_code == 403
    assert compliance.has_perm("billing.reverse_feeaccrual")
    assert not compliance.has_perm("billing.change_feeschedule")
    support = login("Support")
    assert client.get("/admin/billing/feeaccrual/").status_code == 200
    assert client.get("/admin/billing/feeschedule/").status_code == 200
    assert client.post(add, form).status_code == 403
    assert not support.has_perm("billing.reverse_feeaccrual")
    assert not ops.has_perm("billing.reverse_feeaccrual")
