"""Staff groups: Compliance reads everything and changes nothing; Support helps customers."""

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from tests.factories import make_customer, make_staff, make_subscription

pytestmark = pytest.mark.django_db


def test_groups_exist_after_migrate():
    assert set(Group.objects.values_list("name", flat=True)) >= {
        "Operations",
        "Compliance",
        "Support",
    }


def test_compliance_holds_only_view_permissions():
    codenames = Group.objects.get(name="Compliance").permissions.values_list("codename", flat=True)
    assert codenames
    # View only, plus reversing a fee accrual (a posting with a reason, never an edit).
    assert all(c.startswith("view_") or c == "reverse_feeaccrual" for c in codenames)
    assert "reverse_feeaccrual" in codenames
    assert "view_historicalcopysubscription" in codenames
    assert "view_historicalbrokerserver" in codenames


def test_compliance_user_cannot_change_anything(client: Client, staff_password: str):
    sub = make_subscription()
    user = make_staff(group="Compliance")
    client.login(username=user.username, password=staff_password)
    change_url = f"/admin/copytrading/copysubscription/{sub.pk}/change/"
    assert client.get(change_url).status_code == 200  # a read-only view
    response = client.post(change_url, {"risk_multiplier": "5"})
    assert response.status_code == 403
    sub.refresh_from_db()
    assert sub.risk_multiplier == 1
    assert client.get("/admin/copytrading/copysubscription/add/").status_code == 403
    assert client.get(f"/admin/copytrading/copysubscription/{sub.pk}/history/").status_code == 200
    assert user.has_perm("copytrading.view_copysubscription")
    assert not user.has_perm("copytrading.change_copysubscription")
    assert not user.has_perm("copytrading.pause_copysubscription")


def test_support_views_customers_and_subscriptions(client: Client, staff_password: str):
    customer = make_customer()
    sub = make_subscription()
    user = make_staff(group="Support")
    client.login(username=user.username, password=staff_password)
    assert client.get(f"/admin/accounts/customer/{customer.pk}/change/").status_code == 200
    assert client.get("/admin/copytrading/copysubscription/").status_code == 200
    assert client.get(f"/admin/copytrading/copysubscription/{sub.pk}/change/").status_code == 200
    assert client.get("/admin/brokers/brokerserver/").status_code == 403
    assert user.has_perm("copytrading.pause_copysubscription")
    assert not user.has_perm("copytrading.change_copysubscription")


def test_operations_cannot_delete_customers_or_accounts():
    user = make_staff(group="Operations")
    assert user.has_perm("brokers.change_brokerserver")
    assert user.has_perm("copytrading.change_copysubscription")
    assert not user.has_perm("accounts.delete_customer")
    assert not user.has_perm("accounts.delete_tradingaccount")
