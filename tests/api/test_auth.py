"""POST /auth/login and /auth/logout; who may call /copytrade/ and how."""

import hashlib
from datetime import timedelta

import pytest
from django.contrib.sessions.models import Session
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.api.tokens import customer_token_issue
from accounts.models import CustomerApiToken
from tests.api.support import assert_error, token_client
from tests.factories import make_customer, make_staff

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery"


def login(client: APIClient, username: str, password: str = PASSWORD):
    return client.post("/auth/login", {"username": username, "password": password}, format="json")


def test_login_answers_token_and_customer_id_and_sets_session_cookie():
    customer = make_customer(username="carol")
    client = APIClient()
    response = login(client, "carol")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"token", "customer_id"}
    assert body["customer_id"] == customer.pk
    assert response.cookies["sessionid"].value
    assert client.get("/copytrade/my").status_code == 200  # by the cookie alone
    bearer = APIClient(HTTP_AUTHORIZATION=f"Bearer {body['token']}")
    assert bearer.get("/copytrade/my").status_code == 200  # by the token alone


def test_login_with_trailing_slash_works_too():
    make_customer(username="dave")
    assert (
        APIClient()
        .post("/auth/login/", {"username": "dave", "password": PASSWORD}, format="json")
        .status_code
        == 200
    )


def test_only_a_hash_of_the_token_is_stored():
    make_customer(username="erin")
    raw = login(APIClient(), "erin").json()["token"]
    token = CustomerApiToken.objects.get()
    assert token.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert not CustomerApiToken.objects.filter(key_hash=raw).exists()


@pytest.mark.parametrize(
    ("username", "password"), [("frank", "wrong-password"), ("nobody-such", PASSWORD)]
)
def test_wrong_credentials_are_invalid_credentials(username, password):
    make_customer(username="frank")
    response = login(APIClient(), username, password)
    assert_error(response, 401, "INVALID_CREDENTIALS")
    assert not CustomerApiToken.objects.exists()


def test_staff_user_cannot_log_in_as_a_customer():
    staff = make_staff()
    response = login(APIClient(), staff.username, "staff-password-123")
    assert_error(response, 401, "INVALID_CREDENTIALS")


def test_suspended_customer_cannot_log_in_and_its_tokens_stop_working():
    customer = make_customer(username="gina")
    client = token_client(customer)
    customer.status = "suspended"
    customer.save()
    assert_error(login(APIClient(), "gina"), 401, "INVALID_CREDENTIALS")
    assert_error(client.get("/copytrade/my"), 401, "INVALID_CUSTOMER_SESSION")


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, ["username", "password"]),
        ({"username": 5, "password": PASSWORD}, ["username"]),
        ({"username": "x", "password": "y", "extra": 1}, ["extra"]),
    ],
)
def test_login_body_is_validated(body, fields):
    response = APIClient().post("/auth/login", body, format="json")
    assert_error(response, 400, "VALIDATION_ERROR", *fields)


@pytest.mark.parametrize(
    "path", ["/copytrade/my", "/copytrade/masters", "/copytrade/trade-links", "/copytrade/rewards"]
)
def test_no_session_is_invalid_customer_session(path):
    response = APIClient().get(path)
    assert_error(response, 401, "INVALID_CUSTOMER_SESSION")
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header", ["Bearer not-a-token", "Bearer", "Bearer a b", "bearer \u00e9t\u00e9"]
)
def test_unknown_or_malformed_token_is_invalid_customer_session(header):
    client = APIClient(HTTP_AUTHORIZATION=header.encode("utf-8").decode("latin-1"))
    assert_error(client.get("/copytrade/my"), 401, "INVALID_CUSTOMER_SESSION")


def test_expired_token_is_invalid_customer_session():
    customer = make_customer()
    raw, token = customer_token_issue(customer=customer)
    client = APIClient(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert client.get("/copytrade/my").status_code == 200
    CustomerApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now())
    assert_error(client.get("/copytrade/my"), 401, "INVALID_CUSTOMER_SESSION")


def test_token_lifetime_is_a_setting(settings):
    settings.API_TOKEN_LIFETIME_SECONDS = 60
    make_customer(username="hugo")
    before = timezone.now()
    login(APIClient(), "hugo")
    token = CustomerApiToken.objects.get()
    assert (
        before + timedelta(seconds=59) < token.expires_at <= timezone.now() + timedelta(seconds=60)
    )


def test_staff_session_is_not_a_customer_session(client, staff_password):
    staff = make_staff(is_superuser=True)
    assert client.login(username=staff.username, password=staff_password)
    assert_error(client.get("/copytrade/my"), 401, "INVALID_CUSTOMER_SESSION")


def test_logout_with_token_ends_token_and_session():
    make_customer(username="iris")
    cookie_client = APIClient()
    raw = login(cookie_client, "iris").json()["token"]
    bearer = APIClient(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert bearer.post("/auth/logout").status_code == 204
    assert_error(bearer.get("/copytrade/my"), 401, "INVALID_CUSTOMER_SESSION")
    assert_error(cookie_client.get("/copytrade/my"), 401, "INVALID_CUSTOMER_SESSION")
    assert CustomerApiToken.objects.get().revoked_at is not None


def test_logout_with_cookie_ends_session_and_token():
    make_customer(username="jack")
    cookie_client = APIClient(enforce_csrf_checks=True)
    raw = login(cookie_client, "jack").json()["token"]
    csrf = cookie_client.cookies["csrftoken"].value
    response = cookie_client.post("/auth/logout", HTTP_X_CSRFTOKEN=csrf)
    assert response.status_code == 204
    assert_error(cookie_client.get("/copytrade/my"), 401, "INVALID_CUSTOMER_SESSION")
    bearer = APIClient(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert_error(bearer.get("/copytrade/my"), 401, "INVALID_CUSTOMER_SESSION")
    assert not Session.objects.filter(
        session_key=CustomerApiToken.objects.get().session_key
    ).exists()


def test_logout_without_session_is_invalid_customer_session():
    assert_error(APIClient().post("/auth/logout"), 401, "INVALID_CUSTOMER_SESSION")


def test_cookie_writes_need_csrf_token_writes_do_not(alice):
    cookie_client = APIClient(enforce_csrf_checks=True)
    login(cookie_client, alice.customer.user.username, "pw-" + "alice" * 3)
    body = {"login": alice.spare_account.login}
    refused = cookie_client.post("/copytrade/follower", body, format="json")
    assert_error(refused, 403, "PERMISSION_DENIED")
    assert "CSRF" in refused.json()["message"]
    csrf = cookie_client.cookies["csrftoken"].value
    accepted = cookie_client.post("/copytrade/follower", body, format="json", HTTP_X_CSRFTOKEN=csrf)
    assert accepted.status_code == 201
    # A bearer token is not sent by browsers on their own: no CSRF token needed.
    bearer = token_client(alice.customer, enforce_csrf_checks=True)
    assert (
        bearer.put(f"/copytrade/follower/{alice.follower.pk}", {}, format="json").status_code == 200
    )


def test_expired_and_revoked_tokens_are_purged(alice):
    from datetime import timedelta

    from django.utils import timezone

    from accounts.api.tokens import customer_token_issue, customer_tokens_purge
    from accounts.models import CustomerApiToken

    _raw, old = customer_token_issue(customer=alice.customer)
    _raw, fresh = customer_token_issue(customer=alice.customer)
    CustomerApiToken.objects.filter(pk=old.pk).update(expires_at=timezone.now() - timedelta(days=2))
    assert customer_tokens_purge() == 1
    assert CustomerApiToken.objects.filter(pk=fresh.pk).exists()
    assert not CustomerApiToken.objects.filter(pk=old.pk).exists()
