"""Subscriptions through the API: the spec's ownership rules and error codes, status
changes as pause/resume, and fields fixed after create."""

from decimal import Decimal

import pytest

from copytrading.models import CopySubscription
from copytrading.services import subscription_stop_by_risk
from tests.api.support import assert_error, db_state, make_side
from tests.factories import make_account, make_follower, make_master, make_subscription

pytestmark = pytest.mark.django_db

SPEC_BODY = {
    "enabled": 1,
    "status": 0,
    "copy_mode": 0,
    "volume_mode": 1,
    "risk_multiplier": 1,
    "fixed_volume": 0,
    "copy_sl": 1,
    "copy_tp": 1,
    "copy_partial_close": 1,
    "copy_pending_orders": 0,
    "copy_existing_positions": 0,
    "reverse_direction": 0,
    "max_volume": 0,
    "min_volume": 0,
    "max_positions": 0,
    "symbols_mode": 0,
    "symbols": "",
}


def subscribe(side, **body):
    return side.client.post("/copytrade/subscription", body, format="json")


def test_create_subscription_with_the_spec_payload(alice, bob):
    body = {
        **SPEC_BODY,
        "master_login": bob.master_account.login,
        "follower_login": alice.follower_account.login,
    }
    response = subscribe(alice, **body)
    assert response.status_code == 201, response.json()
    answer = response.json()
    for name, value in body.items():
        expected = f"{Decimal(value):.4f}" if name.endswith(("_volume", "multiplier")) else value
        assert answer[name] == expected, name
    sub = CopySubscription.objects.get(pk=answer["id"])
    assert (sub.follower_account, sub.master_account) == (
        alice.follower_account,
        bob.master_account,
    )
    assert sub.history.get().history_user == alice.customer.user


def test_decimals_as_strings_in_and_out(alice, bob):
    response = subscribe(
        alice,
        master_login=bob.master_account.login,
        follower_login=alice.follower_account.login,
        volume_mode=2,
        fixed_volume="0.25",
        risk_multiplier="1.5",
        max_volume=2.5,
    )
    assert response.status_code == 201, response.json()
    answer = response.json()
    assert (answer["fixed_volume"], answer["risk_multiplier"], answer["max_volume"]) == (
        "0.2500",
        "1.5000",
        "2.5000",
    )


def test_create_paused_subscription(alice, bob):
    response = subscribe(
        alice,
        master_login=bob.master_account.login,
        follower_login=alice.follower_account.login,
        status=1,
    )
    assert response.status_code == 201
    sub = CopySubscription.objects.get(pk=response.json()["id"])
    assert (sub.status, sub.status_reason) == (1, "customer via API")


def test_status_2_on_create_is_validation_error(alice, bob):
    before = db_state()
    response = subscribe(
        alice,
        master_login=bob.master_account.login,
        follower_login=alice.follower_account.login,
        status=2,
    )
    assert_error(response, 400, "VALIDATION_ERROR", "status")
    assert db_state() == before


@pytest.mark.parametrize("whose", ["other", "missing"])
def test_follower_login_not_of_the_customer_is_invalid_account(alice, bob, whose):
    login = bob.follower_account.login if whose == "other" else 999_999_999
    before = db_state()
    response = subscribe(alice, master_login=bob.master_account.login, follower_login=login)
    assert_error(response, 403, "INVALID_ACCOUNT")
    assert db_state() == before


@pytest.mark.parametrize("master", ["no-profile", "no-account"])
def test_master_login_without_master_profile_is_master_not_found(alice, master):
    login = alice.spare_account.login if master == "no-profile" else 999_999_999
    response = subscribe(alice, master_login=login, follower_login=alice.follower_account.login)
    assert_error(response, 404, "MASTER_NOT_FOUND")


def test_follower_login_without_follower_profile_is_follower_not_found(alice, bob):
    response = subscribe(
        alice, master_login=bob.master_account.login, follower_login=alice.spare_account.login
    )
    assert_error(response, 404, "FOLLOWER_NOT_FOUND")


def test_private_master_of_another_customer_is_not_available(alice, bob):
    bob.client.put(f"/copytrade/master/{bob.master.pk}", {"visibility": "private"}, format="json")
    before = db_state()
    response = subscribe(
        alice, master_login=bob.master_account.login, follower_login=alice.follower_account.login
    )
    assert_error(response, 403, "MASTER_NOT_AVAILABLE")
    assert db_state() == before


def test_own_private_master_is_available_own_disabled_is_not(alice):
    url = f"/copytrade/master/{alice.master.pk}"
    alice.client.put(url, {"visibility": "private"}, format="json")
    body = {
        "master_login": alice.master_account.login,
        "follower_login": alice.follower_account.login,
    }
    alice.client.put(url, {"enabled": 0}, format="json")
    assert_error(subscribe(alice, **body), 403, "MASTER_NOT_AVAILABLE")
    alice.client.put(url, {"enabled": 1}, format="json")
    assert subscribe(alice, **body).status_code == 201


def test_master_refusing_the_follower_mode(alice, bob):
    # alice's follower account is DEMO; bob's master takes REAL followers only.
    bob.client.put(
        f"/copytrade/master/{bob.master.pk}", {"allowed_follower_modes": 1}, format="json"
    )
    response = subscribe(
        alice, master_login=bob.master_account.login, follower_login=alice.follower_account.login
    )
    assert_error(response, 403, "FOLLOWER_MODE_NOT_ALLOWED")


def test_second_subscription_to_the_same_master_already_exists(alice, bob):
    body = {
        "master_login": bob.master_account.login,
        "follower_login": alice.follower_account.login,
    }
    assert subscribe(alice, **body).status_code == 201
    before = db_state()
    assert_error(subscribe(alice, **body), 409, "ALREADY_EXISTS")
    assert db_state() == before


def test_max_master_count_is_limit_reached(alice, bob):
    alice.client.put(
        f"/copytrade/follower/{alice.follower.pk}", {"max_master_count": 1}, format="json"
    )
    assert (
        subscribe(
            alice,
            master_login=bob.master_account.login,
            follower_login=alice.follower_account.login,
        ).status_code
        == 201
    )
    response = subscribe(
        alice, master_login=alice.master_account.login, follower_login=alice.follower_account.login
    )
    assert_error(response, 409, "LIMIT_REACHED")


def test_self_follow_is_validation_error(alice):
    make_follower(account=alice.master_account)
    response = subscribe(
        alice, master_login=alice.master_account.login, follower_login=alice.master_account.login
    )
    assert_error(response, 400, "VALIDATION_ERROR", "master_login")


def test_copy_cycle_is_validation_error(alice, bob):
    # bob's master account follows alice's master; alice's master account may not follow bob's.
    make_subscription(follower=make_follower(account=bob.master_account), master=alice.master)
    make_follower(account=alice.master_account)
    response = subscribe(
        alice, master_login=bob.master_account.login, follower_login=alice.master_account.login
    )
    assert_error(response, 400, "VALIDATION_ERROR", "master_login")


def test_same_master_login_on_two_servers_prefers_the_available_one(alice, bob):
    other = make_side(name="carol")
    # carol's private master has bob's master login on another server.
    twin = make_master(
        account=make_account(customer=other.customer, login=bob.master_account.login),
        visibility="private",
    )
    response = subscribe(
        alice, master_login=bob.master_account.login, follower_login=alice.follower_account.login
    )
    assert response.status_code == 201
    assert response.json()["master_id"] == bob.master.pk != twin.pk


# Updates ---------------------------------------------------------------------


@pytest.fixture
def sub(alice, bob):
    return make_subscription(follower=alice.follower, master=bob.master)


def put(side, sub, **body):
    return side.client.put(f"/copytrade/subscription/{sub.pk}", body, format="json")


def test_update_settings_partially(alice, sub):
    response = put(alice, sub, risk_multiplier="2", copy_sl=0, symbols_mode=1, symbols="EURUSD")
    assert response.status_code == 200
    sub.refresh_from_db()
    assert (sub.risk_multiplier, sub.copy_sl, sub.symbols_mode, sub.symbols, sub.copy_tp) == (
        Decimal(2),
        False,
        1,
        "EURUSD",
        True,
    )
    assert sub.history.first().history_user == alice.customer.user


def test_pause_and_resume_by_status(alice, sub):
    response = put(alice, sub, status=1)
    assert response.json()["status"] == 1
    sub.refresh_from_db()
    assert (sub.status, sub.status_reason) == (1, "customer via API")
    latest = sub.history.first()
    assert (latest.history_user, latest.history_change_reason) == (
        alice.customer.user,
        "customer via API",
    )
    assert put(alice, sub, status=0).json()["status"] == 0
    sub.refresh_from_db()
    assert sub.status == 0


def test_status_2_is_validation_error(alice, sub):
    before = db_state()
    assert_error(put(alice, sub, status=2), 400, "VALIDATION_ERROR", "status")
    assert db_state() == before


@pytest.mark.parametrize("status", [0, 1])
def test_customer_cannot_clear_a_risk_stop(alice, sub, status):
    subscription_stop_by_risk(subscription=sub, reason="drawdown limit")
    before = db_state()
    response = put(alice, sub, status=status, risk_multiplier="3")
    assert_error(response, 403, "PERMISSION_DENIED")
    assert db_state() == before
    # Other settings of a stopped subscription can still change.
    assert put(alice, sub, risk_multiplier="3").json()["status"] == 2


def test_logins_are_fixed_after_create(alice, bob, sub):
    before = db_state()
    response = put(
        alice,
        sub,
        master_login=alice.master_account.login,
        follower_login=alice.spare_account.login,
    )
    assert_error(response, 400, "VALIDATION_ERROR", "master_login", "follower_login")
    assert db_state() == before
    same = put(
        alice,
        sub,
        master_login=bob.master_account.login,
        follower_login=alice.follower_account.login,
    )
    assert same.status_code == 200


def test_only_the_follower_owner_may_change_or_delete(bob, sub):
    # bob owns the master, not the follower: the subscription is not his to change.
    before = db_state()
    assert_error(put(bob, sub, enabled=0), 403, "PERMISSION_DENIED")
    assert_error(bob.client.delete(f"/copytrade/subscription/{sub.pk}"), 403, "PERMISSION_DENIED")
    assert db_state() == before


def test_missing_subscription_is_not_found(alice):
    assert_error(
        alice.client.put("/copytrade/subscription/999999999", {}, format="json"), 404, "NOT_FOUND"
    )


def test_delete_is_soft_and_recorded(alice, sub):
    assert alice.client.delete(f"/copytrade/subscription/{sub.pk}/").status_code == 204
    row = CopySubscription.all_objects.get(pk=sub.pk)
    assert row.deleted_at is not None
    assert row.history.first().history_user == alice.customer.user
    assert_error(alice.client.delete(f"/copytrade/subscription/{sub.pk}"), 404, "NOT_FOUND")
    assert_error(put(alice, sub, enabled=0), 404, "NOT_FOUND")


def test_copy_existing_positions_queues_the_copy_after_commit(
    alice, bob, monkeypatch, django_capture_on_commit_callbacks
):
    queued = []
    monkeypatch.setattr(
        "copytrading.tasks.copy_existing_positions.delay", lambda sub_id: queued.append(sub_id)
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = subscribe(
            alice,
            master_login=bob.master_account.login,
            follower_login=alice.follower_account.login,
            copy_existing_positions=1,
        )
    assert response.status_code == 201
    assert queued == [response.json()["id"]]
