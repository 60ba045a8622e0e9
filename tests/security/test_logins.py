"""Staff two-factor login, brute-force lockout of staff and customer logins, idle staff
sessions (issue 10)."""

import io
import uuid

import pytest
from asgiref.sync import async_to_sync
from axes.models import AccessAttempt
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from accounts.security import StaffOtpWebsocketMiddleware
from tests.api.support import assert_error
from tests.factories import make_customer, make_staff, totp_code

pytestmark = [pytest.mark.django_db, pytest.mark.otp_unverified]

LOGIN = "/admin/login/?next=/admin/"


def enrol(user) -> tuple[TOTPDevice, str]:  # type: ignore[no-untyped-def]
    out = io.StringIO()
    call_command("staff_totp", user.username, "--no-qr", stdout=out)
    return TOTPDevice.objects.get(user=user), out.getvalue()


def admin_login(client: Client, user, password: str, code: str = "", **extra):  # type: ignore[no-untyped-def]
    return client.post(
        LOGIN, {"username": user.username, "password": password, "otp_token": code}, **extra
    )


def test_staff_with_a_password_alone_cannot_reach_the_admin(client, staff_password):
    user = make_staff(is_superuser=True)
    enrol(user)
    # A session logged in without the second factor (as a stolen password would give).
    assert client.login(username=user.username, password=staff_password)
    assert client.get("/admin/").status_code == 302
    assert client.get("/admin/copytrading/copysubscription/").status_code == 302
    assert client.get("/admin/ops/health/").status_code == 302
    assert client.get("/api/docs/").status_code == 302
    # The login form refuses the password without a code, naming what is missing.
    response = admin_login(client, user, staff_password)
    assert response.status_code == 200
    assert "Enter the code of your authenticator app" in response.content.decode()


def wrong_code(device: TOTPDevice) -> str:
    return "000000" if totp_code(device) != "000000" else "111111"


def test_totp_code_logs_staff_in(client, staff_password):
    user = make_staff(is_superuser=True)
    device, printed = enrol(user)
    assert printed.splitlines()[1].startswith("otpauth://totp/")
    response = admin_login(client, user, staff_password, totp_code(device))
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200


def test_a_wrong_code_is_refused(client, staff_password):
    user = make_staff(is_superuser=True)
    device, _ = enrol(user)
    response = admin_login(client, user, staff_password, wrong_code(device))
    assert "Wrong or expired authenticator code" in response.content.decode()
    assert client.get("/admin/").status_code == 302


def test_staff_without_a_device_is_told_how_to_enrol(client, staff_password):
    user = make_staff(is_superuser=True)
    response = admin_login(client, user, staff_password, "123456")
    assert f"manage.py staff_totp {user.username}" in response.content.decode()


def test_staff_totp_draws_a_qr_code_to_scan():
    out = io.StringIO()
    call_command("staff_totp", make_staff().username, stdout=out)
    drawing = out.getvalue().splitlines()[2:]
    assert len(drawing) > 20
    assert all(line.strip() and set(line) <= set(" █▀▄") for line in drawing)


def test_staff_totp_refuses_customers_and_keeps_an_existing_device():
    customer = make_customer()
    with pytest.raises(CommandError, match="not staff"):
        call_command("staff_totp", customer.user.username, "--no-qr", stdout=io.StringIO())
    user = make_staff()
    first, _ = enrol(user)
    with pytest.raises(CommandError, match="--reset"):
        enrol(user)
    call_command("staff_totp", user.username, "--reset", stdout=io.StringIO())
    assert list(TOTPDevice.objects.filter(user=user)) != [first]


def test_admin_login_locks_the_username_after_five_failures(client, staff_password):
    user = make_staff(is_superuser=True)
    device, _ = enrol(user)
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert admin_login(client, user, "wrong-password").status_code == 200
    assert admin_login(client, user, "wrong-password").status_code == 429  # the fifth locks
    # Locked: even the right password and code, from another address, are refused.
    response = admin_login(client, user, staff_password, totp_code(device), REMOTE_ADDR="10.9.9.9")
    assert response.status_code == 429
    assert "Too many failed logins" in response.content.decode()
    assert client.get("/admin/").status_code == 302


def test_wrong_codes_count_towards_the_lockout(client, staff_password):
    user = make_staff(is_superuser=True)
    device, _ = enrol(user)
    for _ in range(settings.AXES_FAILURE_LIMIT):
        admin_login(client, user, staff_password, wrong_code(device))
    assert admin_login(client, user, staff_password, totp_code(device)).status_code == 429
    # The recorded attempts keep no password and no code.
    kept = "".join(AccessAttempt.objects.values_list("post_data", flat=True))
    assert "otp_token=****" in kept
    assert staff_password not in kept
    assert wrong_code(device) not in kept


def test_api_login_locks_username_from_that_address_with_rate_limited(settings):
    settings.API_THROTTLE_KEY_PREFIX = f"api-throttle-test-{uuid.uuid4().hex}"
    customer = make_customer(username=f"locked-{uuid.uuid4().hex[:6]}", password="right-pass-1")
    attacker = APIClient(REMOTE_ADDR="10.7.0.1")
    wrong = {"username": customer.user.username, "password": "guess"}
    right = {"username": customer.user.username, "password": "right-pass-1"}
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert_error(attacker.post("/auth/login", wrong, format="json"), 401, "INVALID_CREDENTIALS")
    # The fifth failure locks: its answer already says so.
    assert_error(attacker.post("/auth/login", wrong, format="json"), 429, "RATE_LIMITED")
    response = attacker.post("/auth/login", right, format="json")
    body = assert_error(response, 429, "RATE_LIMITED")
    assert "Too many failed logins" in body["message"]
    assert int(response["Retry-After"]) == 15 * 60
    # The customer, from its own address, still logs in.
    assert (
        APIClient(REMOTE_ADDR="10.7.0.2").post("/auth/login", right, format="json").status_code
        == 200
    )


def test_staff_session_ends_after_idle_minutes(client):
    user = make_staff(is_superuser=True)
    client.force_login(user)
    from tests.factories import verify_staff_session

    verify_staff_session(client, user)
    assert client.get("/admin/").status_code == 200
    assert client.session.get_expiry_age() == settings.STAFF_SESSION_IDLE_SECONDS == 30 * 60


# Channels' database_sync_to_async closes a connection left inside a transaction (as a
# non-transactional test's is): this test commits for real.
@pytest.mark.django_db(transaction=True)
def test_unverified_staff_are_anonymous_on_websockets():
    seen = {}

    async def inner(scope, receive, send):  # type: ignore[no-untyped-def]
        seen["user"] = scope["user"]

    def connect(user, session):  # type: ignore[no-untyped-def]
        scope = {"type": "websocket", "user": user, "session": session}
        async_to_sync(StaffOtpWebsocketMiddleware(inner))(scope, None, None)
        return seen["user"]

    user = make_staff(is_superuser=True)
    assert not connect(user, {}).is_authenticated
    device = TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    assert connect(user, {"otp_device_id": device.persistent_id}) == user


def test_the_debug_demo_logs_staff_in_with_a_password(client, staff_password, settings):
    settings.STAFF_OTP_REQUIRED = False  # what DEBUG=true gives (make demo)
    user = make_staff(is_superuser=True)
    assert admin_login(client, user, staff_password).status_code == 302
    assert client.get("/admin/").status_code == 200
