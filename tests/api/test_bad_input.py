"""Bad input on every write: the spec's VALIDATION_ERROR naming each bad field, and no
change at all in the database (rows and history)."""

import json

import pytest

from tests.api.support import assert_error, db_state

pytestmark = pytest.mark.django_db


def _writes(alice, bob):
    """(method, url, a valid body) of every write endpoint, for alice."""
    sub_body = {
        "master_login": bob.master_account.login,
        "follower_login": alice.follower_account.login,
    }
    return {
        "master-create": (
            "post",
            "/copytrade/master",
            {"login": alice.spare_account.login, "strategy_name": "S"},
        ),
        "master-update": ("put", f"/copytrade/master/{alice.master.pk}", {}),
        "follower-create": ("post", "/copytrade/follower", {"login": alice.spare_account.login}),
        "follower-update": ("put", f"/copytrade/follower/{alice.follower.pk}", {}),
        "subscription-create": ("post", "/copytrade/subscription", sub_body),
    }


WRITES = [
    "master-create",
    "master-update",
    "follower-create",
    "follower-update",
    "subscription-create",
]


def send(client, method, url, raw, content_type="application/json"):
    return getattr(client, method)(url, raw, content_type=content_type)


@pytest.mark.parametrize("write", WRITES)
@pytest.mark.parametrize(
    "raw",
    [
        "{bad json",
        "[1, 2]",
        '"a string"',
        "42",
        "null",
        '{"enabled": NaN}',
        '{"enabled": Infinity}',
        "[" * 50_000 + "]" * 50_000,
        "\xff\xfe",
    ],
    ids=["malformed", "array", "string", "number", "null", "nan", "infinity", "deep", "not-utf8"],
)
def test_body_that_is_not_a_json_object(alice, bob, write, raw):
    method, url, _ = _writes(alice, bob)[write]
    before = db_state()
    response = send(alice.client, method, url, raw.encode("latin-1"))
    assert_error(response, 400, "VALIDATION_ERROR", "body")
    assert db_state() == before


@pytest.mark.parametrize("write", WRITES)
def test_huge_body_is_refused_unread(alice, bob, write, settings):
    method, url, body = _writes(alice, bob)[write]
    before = db_state()
    huge = json.dumps({**body, "description": "x" * (settings.API_MAX_BODY_BYTES + 1)})
    assert_error(send(alice.client, method, url, huge), 400, "VALIDATION_ERROR", "body")
    assert db_state() == before


@pytest.mark.parametrize("write", WRITES)
def test_body_that_is_not_json_at_all(alice, bob, write):
    method, url, _ = _writes(alice, bob)[write]
    before = db_state()
    response = send(
        alice.client, method, url, "login=1", content_type="application/x-www-form-urlencoded"
    )
    assert_error(response, 400, "VALIDATION_ERROR", "body")
    response = send(alice.client, method, url, "{}", content_type="text/plain")
    assert_error(response, 400, "VALIDATION_ERROR", "body")
    assert db_state() == before


@pytest.mark.parametrize("write", WRITES)
def test_unknown_fields_are_named(alice, bob, write):
    method, url, body = _writes(alice, bob)[write]
    before = db_state()
    response = getattr(alice.client, method)(
        url, {**body, "colour": "red", "is_staff": 1}, format="json"
    )
    assert_error(response, 400, "VALIDATION_ERROR", "colour", "is_staff")
    assert db_state() == before


MASTER_BAD = [
    ("login", "100001"),
    ("login", 1.5),
    ("login", True),
    ("login", -5),
    ("login", 2**64),
    ("login", None),
    ("enabled", 2),
    ("enabled", True),
    ("enabled", "1"),
    ("strategy_name", ""),
    ("strategy_name", "   "),
    ("strategy_name", 123),
    ("strategy_name", "x" * 101),
    ("strategy_name", "nul\x00byte"),
    ("description", "x" * 2001),
    ("visibility", "secret"),
    ("visibility", 1),
    ("allowed_follower_modes", 0),
    ("allowed_follower_modes", 4),
    ("allowed_follower_modes", "3"),
]


@pytest.mark.parametrize(("field", "value"), MASTER_BAD)
@pytest.mark.parametrize("write", ["master-create", "master-update"])
def test_bad_master_fields(alice, bob, write, field, value):
    method, url, body = _writes(alice, bob)[write]
    before = db_state()
    response = getattr(alice.client, method)(url, {**body, field: value}, format="json")
    assert_error(response, 400, "VALIDATION_ERROR", field)
    assert db_state() == before


FOLLOWER_BAD = [
    ("login", "x"),
    ("enabled", -1),
    ("manual_trading_mode", 2),
    ("manual_trading_mode", False),
    ("max_master_count", 0),
    ("max_master_count", -1),
    ("max_master_count", 1.0),
    ("max_master_count", 10**9),
    ("max_master_count", "2"),
]


@pytest.mark.parametrize(("field", "value"), FOLLOWER_BAD)
@pytest.mark.parametrize("write", ["follower-create", "follower-update"])
def test_bad_follower_fields(alice, bob, write, field, value):
    method, url, body = _writes(alice, bob)[write]
    before = db_state()
    response = getattr(alice.client, method)(url, {**body, field: value}, format="json")
    assert_error(response, 400, "VALIDATION_ERROR", field)
    assert db_state() == before


SUBSCRIPTION_BAD = [
    ("master_login", "abc"),
    ("follower_login", 0),
    ("status", 2),
    ("status", 3),
    ("status", "0"),
    ("copy_mode", 2),
    ("volume_mode", 4),
    ("volume_mode", -1),
    ("symbols_mode", 3),
    ("risk_multiplier", 0),
    ("risk_multiplier", -1),
    ("risk_multiplier", "-1"),
    ("risk_multiplier", 101),
    ("risk_multiplier", "1e3"),
    ("risk_multiplier", "abc"),
    ("risk_multiplier", "NaN"),
    ("risk_multiplier", "Infinity"),
    ("risk_multiplier", 1e-9),
    ("risk_multiplier", "0.00001"),
    ("risk_multiplier", True),
    ("risk_multiplier", None),
    ("risk_multiplier", [1]),
    ("fixed_volume", -0.01),
    ("fixed_volume", 1e300),
    ("fixed_volume", "1" * 40),
    ("max_volume", 1001),
    ("min_volume", -1),
    ("base_equity", 0),
    ("max_positions", -1),
    ("max_positions", 10**12),
    ("max_positions", 1.5),
    ("copy_sl", 2),
    ("copy_tp", "yes"),
    ("copy_partial_close", None),
    ("copy_pending_orders", 1.0),
    ("copy_existing_positions", -1),
    ("reverse_direction", True),
    ("enabled", {"a": 1}),
    ("symbols", 5),
    ("symbols", "EUR USD; DROP TABLE"),
    ("symbols", "x" * 2001),
]


@pytest.mark.parametrize(("field", "value"), SUBSCRIPTION_BAD)
@pytest.mark.parametrize("write", ["subscription-create", "subscription-update"])
def test_bad_subscription_fields(alice, bob, write, field, value):
    from tests.factories import make_subscription

    if write == "subscription-update":
        sub = make_subscription(follower=alice.follower, master=bob.master)
        method, url, body = "put", f"/copytrade/subscription/{sub.pk}", {}
    else:
        method, url, body = _writes(alice, bob)[write]
    before = db_state()
    response = getattr(alice.client, method)(url, {**body, field: value}, format="json")
    assert_error(response, 400, "VALIDATION_ERROR", field)
    assert db_state() == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"min_volume": 2, "max_volume": 1}, "max_volume"),
        ({"volume_mode": 2, "fixed_volume": 0}, "fixed_volume"),
        ({"symbols_mode": 1, "symbols": ""}, "symbols"),
    ],
)
def test_inconsistent_subscription_settings(alice, bob, body, field):
    before = db_state()
    response = alice.client.post(
        "/copytrade/subscription",
        {
            "master_login": bob.master_account.login,
            "follower_login": alice.follower_account.login,
            **body,
        },
        format="json",
    )
    assert_error(response, 400, "VALIDATION_ERROR", field)
    assert db_state() == before


def test_all_bad_fields_are_named_at_once(alice, bob):
    response = alice.client.post(
        "/copytrade/subscription",
        {"master_login": "x", "risk_multiplier": -1, "copy_sl": 7, "bogus": 1},
        format="json",
    )
    body = assert_error(
        response,
        400,
        "VALIDATION_ERROR",
        "master_login",
        "follower_login",
        "risk_multiplier",
        "copy_sl",
        "bogus",
    )
    assert "risk_multiplier" in body["message"]


def test_missing_required_fields_are_named(alice):
    response = alice.client.post("/copytrade/master", {}, format="json")
    assert_error(response, 400, "VALIDATION_ERROR", "login", "strategy_name")
    empty = alice.client.post("/copytrade/subscription", content_type="application/json")
    assert_error(empty, 400, "VALIDATION_ERROR", "master_login", "follower_login")


@pytest.mark.parametrize(
    "query",
    ["limit=abc", "limit=-1", "limit=0", "offset=-1", "offset=x", "offset=99999999999999999999"],
)
@pytest.mark.parametrize(
    "path", ["/copytrade/masters", "/copytrade/my", "/copytrade/trade-links", "/copytrade/rewards"]
)
def test_bad_paging_is_validation_error(alice, path, query):
    name = query.split("=")[0]
    assert_error(alice.client.get(f"{path}?{query}"), 400, "VALIDATION_ERROR", name)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=opening", "status"),
        ("status=OPEN", "status"),
        ("master_login=abc", "master_login"),
        ("follower_login=-3", "follower_login"),
        ("follower_login=99999999999999999999", "follower_login"),
    ],
)
def test_bad_trade_link_filters(alice, query, field):
    assert_error(
        alice.client.get(f"/copytrade/trade-links?{query}"), 400, "VALIDATION_ERROR", field
    )


def test_unknown_paths_and_methods_answer_in_the_error_shape(alice):
    assert_error(alice.client.get("/copytrade/unknown"), 404, "NOT_FOUND")
    assert_error(alice.client.patch("/copytrade/master/1/extra"), 404, "NOT_FOUND")
    assert_error(alice.client.post("/auth/register", {}, format="json"), 404, "NOT_FOUND")
    assert_error(alice.client.get("/copytrade/master"), 405, "METHOD_NOT_ALLOWED")
    response = alice.client.patch(f"/copytrade/master/{alice.master.pk}", {}, format="json")
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert "PUT" in response["Allow"]


def test_answers_are_json_whatever_accept_says(alice):
    response = alice.client.get("/copytrade/masters?limit=x", HTTP_ACCEPT="text/html")
    assert response["Content-Type"] == "application/json"
    assert_error(response, 400, "VALIDATION_ERROR", "limit")
