"""Rate limits per customer and per IP, counted in Redis, answering 429 RATE_LIMITED."""

import pytest
from rest_framework.test import APIClient

from tests.api.support import HIGH_RATES, assert_error, token_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def rates(settings):
    def set_rates(**rates):
        settings.REST_FRAMEWORK = {
            **settings.REST_FRAMEWORK,
            "DEFAULT_THROTTLE_RATES": {**HIGH_RATES, **rates},
        }

    return set_rates


def test_per_customer_limit_across_tokens_and_addresses(alice, bob, rates):
    rates(api_customer="3/min")
    first, second = token_client(alice.customer), token_client(alice.customer)
    for client, address in ((first, "10.0.0.1"), (second, "10.0.0.2"), (first, "10.0.0.3")):
        assert client.get("/copytrade/my", REMOTE_ADDR=address).status_code == 200
    response = second.get("/copytrade/my", REMOTE_ADDR="10.0.0.4")
    assert_error(response, 429, "RATE_LIMITED")
    assert int(response["Retry-After"]) > 0
    # Another customer has its own count.
    assert bob.client.get("/copytrade/my").status_code == 200


def test_per_ip_limit_counts_unauthenticated_requests_too(alice, rates):
    rates(api_ip="2/min")
    stranger = APIClient(HTTP_AUTHORIZATION="Bearer guessed-token", REMOTE_ADDR="10.1.0.1")
    assert_error(stranger.get("/copytrade/my"), 401, "INVALID_CUSTOMER_SESSION")
    assert_error(stranger.get("/copytrade/my"), 401, "INVALID_CUSTOMER_SESSION")
    assert_error(stranger.get("/copytrade/my"), 429, "RATE_LIMITED")
    assert alice.client.get("/copytrade/my", REMOTE_ADDR="10.1.0.2").status_code == 200


def test_forwarded_for_is_not_trusted_without_proxies(alice, rates):
    rates(api_ip="1/min")
    assert alice.client.get("/copytrade/my", REMOTE_ADDR="10.2.0.1").status_code == 200
    response = alice.client.get(
        "/copytrade/my", REMOTE_ADDR="10.2.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9"
    )
    assert_error(response, 429, "RATE_LIMITED")


def test_login_attempts_are_limited_per_ip(rates):
    rates(api_login="2/min")
    client = APIClient(REMOTE_ADDR="10.3.0.1")
    body = {"username": "nobody", "password": "guess"}
    for _ in range(2):
        assert_error(client.post("/auth/login", body, format="json"), 401, "INVALID_CREDENTIALS")
    assert_error(client.post("/auth/login", body, format="json"), 429, "RATE_LIMITED")


def test_throttled_write_changes_nothing(alice, rates):
    rates(api_customer="1/min")
    assert alice.client.get("/copytrade/my").status_code == 200
    response = alice.client.put(
        f"/copytrade/master/{alice.master.pk}", {"strategy_name": "Renamed"}, format="json"
    )
    assert_error(response, 429, "RATE_LIMITED")
    alice.master.refresh_from_db()
    assert alice.master.strategy_name == "alice FX"


def test_a_cache_outage_does_not_lock_customers_out(alice, rates, monkeypatch):
    rates(api_customer="1/min", api_ip="1/min")

    def broken(*args, **kwargs):
        raise ConnectionError("redis down")

    monkeypatch.setattr("django.core.cache.cache.get", broken)
    for _ in range(3):
        assert alice.client.get("/copytrade/my").status_code == 200
