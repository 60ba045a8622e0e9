"""Masters and followers: create, update, delete, with two customers who try to touch
each other's records by login and by id."""

import pytest

from copytrading.models import CopyFollower, CopyMaster, CopySubscription
from tests.api.support import assert_error, db_state
from tests.factories import make_subscription

pytestmark = pytest.mark.django_db


# Masters ---------------------------------------------------------------------


def test_create_master_on_own_account(alice):
    body = {
        "login": alice.spare_account.login,
        "enabled": 1,
        "strategy_name": "Conservative FX",
        "description": "Low risk major pairs strategy",
        "visibility": "private",
        "allowed_follower_modes": 2,
    }
    response = alice.client.post("/copytrade/master", body, format="json")
    assert response.status_code == 201
    answer = response.json()
    assert answer == {
        **body,
        "id": answer["id"],
        "customer_id": alice.customer.pk,
        "followers_count": 0,
        "fee_schedule": [],
        "created_at": answer["created_at"],
        "updated_at": answer["updated_at"],
    }
    master = CopyMaster.objects.get(pk=answer["id"])
    assert master.account == alice.spare_account
    assert master.history.get().history_user == alice.customer.user


def test_create_master_defaults(alice):
    response = alice.client.post(
        "/copytrade/master/",
        {"login": alice.spare_account.login, "strategy_name": "S"},
        format="json",
    )
    assert response.status_code == 201
    answer = response.json()
    assert (answer["enabled"], answer["visibility"], answer["allowed_follower_modes"]) == (
        1,
        "public",
        3,
    )


def test_customer_id_in_body_is_ignored(alice, bob):
    body = {
        "login": alice.spare_account.login,
        "strategy_name": "S",
        "customer_id": bob.customer.pk,
    }
    response = alice.client.post("/copytrade/master", body, format="json")
    assert response.status_code == 201
    assert response.json()["customer_id"] == alice.customer.pk


@pytest.mark.parametrize("login", ["other", "missing"])
def test_master_on_foreign_or_unknown_login_is_invalid_account(alice, bob, login):
    value = bob.spare_account.login if login == "other" else 999_999_999
    before = db_state()
    response = alice.client.post(
        "/copytrade/master", {"login": value, "strategy_name": "S"}, format="json"
    )
    assert_error(response, 403, "INVALID_ACCOUNT")
    assert db_state() == before


def test_second_master_on_account_already_exists(alice):
    before = db_state()
    response = alice.client.post(
        "/copytrade/master",
        {"login": alice.master_account.login, "strategy_name": "S"},
        format="json",
    )
    assert_error(response, 409, "ALREADY_EXISTS")
    assert db_state() == before


def test_update_master_partially(alice):
    url = f"/copytrade/master/{alice.master.pk}"
    response = alice.client.put(url, {"visibility": "private", "enabled": 0}, format="json")
    assert response.status_code == 200
    answer = response.json()
    assert (answer["visibility"], answer["enabled"], answer["strategy_name"]) == (
        "private",
        0,
        "alice FX",
    )
    master = CopyMaster.objects.get(pk=alice.master.pk)
    assert (master.visibility, master.enabled) == ("private", False)
    assert master.history.first().history_user == alice.customer.user


def test_update_master_accepts_unchanged_login_and_answer_fields(alice):
    url = f"/copytrade/master/{alice.master.pk}/"
    current = alice.client.put(url, {}, format="json").json()
    current["description"] = "round trip"
    response = alice.client.put(url, current, format="json")
    assert response.status_code == 200
    assert response.json()["description"] == "round trip"


def test_update_master_login_is_fixed(alice):
    before = db_state()
    response = alice.client.put(
        f"/copytrade/master/{alice.master.pk}",
        {"login": alice.spare_account.login, "strategy_name": "New"},
        format="json",
    )
    assert_error(response, 400, "VALIDATION_ERROR", "login")
    assert db_state() == before


def test_update_or_delete_another_customers_master_is_permission_denied(alice, bob):
    before = db_state()
    url = f"/copytrade/master/{bob.master.pk}"
    assert_error(alice.client.put(url, {"enabled": 0}, format="json"), 403, "PERMISSION_DENIED")
    assert_error(alice.client.delete(url), 403, "PERMISSION_DENIED")
    assert db_state() == before


@pytest.mark.parametrize("raw_id", ["999999999", "0", "-1", "abc", "99999999999999999999999"])
def test_update_or_delete_missing_master_is_not_found(alice, raw_id):
    url = f"/copytrade/master/{raw_id}"
    assert_error(alice.client.put(url, {"enabled": 0}, format="json"), 404, "NOT_FOUND")
    assert_error(alice.client.delete(url), 404, "NOT_FOUND")


def test_delete_master_is_soft_and_takes_its_subscriptions(alice, bob):
    sub = make_subscription(follower=bob.follower, master=alice.master)
    response = alice.client.delete(f"/copytrade/master/{alice.master.pk}")
    assert response.status_code == 204
    assert not CopyMaster.objects.filter(pk=alice.master.pk).exists()
    assert CopyMaster.all_objects.get(pk=alice.master.pk).deleted_at is not None
    assert CopySubscription.all_objects.get(pk=sub.pk).deleted_at is not None
    assert CopyMaster.history.filter(id=alice.master.pk).first().history_user == alice.customer.user
    # Deleted is gone for the API.
    assert_error(alice.client.delete(f"/copytrade/master/{alice.master.pk}"), 404, "NOT_FOUND")


def test_masters_list_public_enabled_plus_own(alice, bob):
    own_private = alice.client.post(
        "/copytrade/master",
        {"login": alice.spare_account.login, "strategy_name": "P", "visibility": "private"},
        format="json",
    ).json()["id"]
    bob.client.put(f"/copytrade/master/{bob.master.pk}", {"visibility": "private"}, format="json")
    ids = {m["id"] for m in alice.client.get("/copytrade/masters").json()}
    assert ids >= {alice.master.pk, own_private}
    assert bob.master.pk not in ids
    bob.client.put(
        f"/copytrade/master/{bob.master.pk}", {"visibility": "public", "enabled": 0}, format="json"
    )
    assert bob.master.pk not in {m["id"] for m in alice.client.get("/copytrade/masters").json()}
    bob.client.put(f"/copytrade/master/{bob.master.pk}", {"enabled": 1}, format="json")
    listed = {m["id"]: m for m in alice.client.get("/copytrade/masters/").json()}
    assert listed[bob.master.pk]["customer_id"] == bob.customer.pk


def test_followers_count_counts_live_subscriptions(alice, bob):
    sub = make_subscription(follower=bob.follower, master=alice.master)
    make_subscription(follower=alice.follower, master=alice.master)
    counts = {m["id"]: m["followers_count"] for m in alice.client.get("/copytrade/masters").json()}
    assert counts[alice.master.pk] == 2
    bob.client.delete(f"/copytrade/subscription/{sub.pk}")
    counts = {m["id"]: m["followers_count"] for m in alice.client.get("/copytrade/masters").json()}
    assert counts[alice.master.pk] == 1


# Followers -------------------------------------------------------------------


def test_create_follower_on_own_account(alice):
    body = {
        "login": alice.spare_account.login,
        "enabled": 1,
        "manual_trading_mode": 0,
        "max_master_count": 2,
    }
    response = alice.client.post("/copytrade/follower", body, format="json")
    assert response.status_code == 201
    answer = response.json()
    assert {k: answer[k] for k in body} == body
    assert answer["customer_id"] == alice.customer.pk
    follower = CopyFollower.objects.get(pk=answer["id"])
    assert follower.manual_trading_mode is False
    assert follower.history.get().history_user == alice.customer.user


@pytest.mark.parametrize("login", ["other", "missing"])
def test_follower_on_foreign_or_unknown_login_is_invalid_account(alice, bob, login):
    value = bob.spare_account.login if login == "other" else 999_999_999
    before = db_state()
    response = alice.client.post("/copytrade/follower", {"login": value}, format="json")
    assert_error(response, 403, "INVALID_ACCOUNT")
    assert db_state() == before


def test_second_follower_on_account_already_exists(alice):
    response = alice.client.post(
        "/copytrade/follower", {"login": alice.follower_account.login}, format="json"
    )
    assert_error(response, 409, "ALREADY_EXISTS")


def test_update_follower(alice):
    response = alice.client.put(
        f"/copytrade/follower/{alice.follower.pk}",
        {"manual_trading_mode": 0, "max_master_count": 5},
        format="json",
    )
    assert response.status_code == 200
    follower = CopyFollower.objects.get(pk=alice.follower.pk)
    assert (follower.manual_trading_mode, follower.max_master_count) == (False, 5)
    assert follower.history.first().history_user == alice.customer.user


def test_update_follower_login_is_fixed(alice):
    response = alice.client.put(
        f"/copytrade/follower/{alice.follower.pk}",
        {"login": alice.spare_account.login},
        format="json",
    )
    assert_error(response, 400, "VALIDATION_ERROR", "login")


def test_lowering_max_master_count_below_subscriptions_is_limit_reached(alice, bob):
    make_subscription(follower=alice.follower, master=alice.master)
    make_subscription(follower=alice.follower, master=bob.master)
    before = db_state()
    response = alice.client.put(
        f"/copytrade/follower/{alice.follower.pk}", {"max_master_count": 1}, format="json"
    )
    assert_error(response, 409, "LIMIT_REACHED")
    assert db_state() == before


def test_update_or_delete_another_customers_follower_is_permission_denied(alice, bob):
    before = db_state()
    url = f"/copytrade/follower/{bob.follower.pk}"
    assert_error(alice.client.put(url, {"enabled": 0}, format="json"), 403, "PERMISSION_DENIED")
    assert_error(alice.client.delete(url), 403, "PERMISSION_DENIED")
    assert db_state() == before


def test_missing_follower_is_not_found(alice):
    assert_error(alice.client.delete("/copytrade/follower/999999999"), 404, "NOT_FOUND")


def test_delete_follower_is_soft_and_takes_its_subscriptions(alice, bob):
    sub = make_subscription(follower=alice.follower, master=bob.master)
    assert alice.client.delete(f"/copytrade/follower/{alice.follower.pk}/").status_code == 204
    assert CopyFollower.all_objects.get(pk=alice.follower.pk).deleted_at is not None
    assert CopySubscription.all_objects.get(pk=sub.pk).deleted_at is not None
    assert CopySubscription.history.filter(id=sub.pk).first().history_user == alice.customer.user


def test_my_lists_own_profiles_and_subscriptions_touching_them(alice, bob):
    as_follower = make_subscription(follower=alice.follower, master=bob.master)
    as_master = make_subscription(follower=bob.follower, master=alice.master)
    unrelated = make_subscription(follower=bob.follower, master=bob.master)
    response = alice.client.get("/copytrade/my")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"masters", "followers", "subscriptions"}
    assert [m["id"] for m in body["masters"]] == [alice.master.pk]
    assert [f["id"] for f in body["followers"]] == [alice.follower.pk]
    assert {s["id"] for s in body["subscriptions"]} == {as_follower.pk, as_master.pk}
    assert unrelated.pk not in {s["id"] for s in body["subscriptions"]}
