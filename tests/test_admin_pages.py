"""Every model is in the admin, and its list and search pages answer."""

import pytest
from django.apps import apps
from django.contrib import admin
from django.test import Client

from tests.factories import make_staff, make_subscription

pytestmark = pytest.mark.django_db

PROJECT_APPS = ("accounts", "brokers", "copytrading", "risk", "billing")


def project_models():
    return [
        m
        for m in apps.get_models()
        if m._meta.app_label in PROJECT_APPS and not m.__name__.startswith("Historical")
    ]


def test_every_project_model_is_registered():
    missing = [m.__name__ for m in project_models() if not admin.site.is_registered(m)]
    assert missing == []


def test_changelists_search_and_change_pages_answer(client: Client, staff_password: str):
    sub = make_subscription()
    user = make_staff(is_superuser=True)
    client.login(username=user.username, password=staff_password)
    for model in project_models():
        opts = model._meta
        base = f"/admin/{opts.app_label}/{opts.model_name}/"
        assert client.get(base).status_code == 200, base
        assert client.get(base, {"q": str(sub.follower_account.login)}).status_code == 200, base
        assert client.get(base + "add/").status_code in (200, 403), base
    response = client.get("/admin/copytrading/copysubscription/", {"q": sub.master.strategy_name})
    assert str(sub.follower_account.login) in response.content.decode()


def test_admin_adds_subscription_through_service_rules(client: Client, staff_password: str):
    sub = make_subscription()
    user = make_staff(is_superuser=True)
    client.login(username=user.username, password=staff_password)
    response = client.post(
        "/admin/copytrading/copysubscription/add/",
        {
            "follower": sub.follower_id,
            "master": sub.master_id,
            "enabled": "on",
            "copy_mode": 0,
            "volume_mode": 0,
            "risk_multiplier": "1",
            "fixed_volume": "0",
            "base_equity": "10000",
            "max_volume": "0",
            "min_volume": "0",
            "max_positions": 0,
            "symbols_mode": 0,
            "symbols": "",
        },
    )
    assert response.status_code == 200
    assert "ALREADY_EXISTS" in response.content.decode()
