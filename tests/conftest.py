import pytest


@pytest.fixture
def staff_password() -> str:
    return "staff-password-123"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "otp_unverified: the test client's staff logins get no verified OTP device"
    )


@pytest.fixture(autouse=True)
def staff_logins_verified(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """The test client's `login` / `force_login` of a staff user also passes the two-factor
    step, as the admin login form does: the user gets a confirmed TOTP device and the
    session is verified by it. Tests of the two-factor login itself use `otp_unverified`."""
    if request.node.get_closest_marker("otp_unverified"):
        return
    from django.test import Client

    original = Client._login

    def _login(self, user, backend=None):  # type: ignore[no-untyped-def]
        original(self, user, backend)
        if user.is_staff:
            from tests.factories import verify_staff_session

            verify_staff_session(self, user)

    monkeypatch.setattr(Client, "_login", _login)
