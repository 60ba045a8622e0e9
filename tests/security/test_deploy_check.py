"""`manage.py check --deploy` is clean with the production settings (HSTS, secure cookies,
HTTPS redirect, real secrets), and the check notices when one of them is taken away."""

import secrets
import subprocess

import pytest
from cryptography.fernet import Fernet

from tests.accounts.test_settings_failures import run_manage


def deploy_check(**env: str) -> subprocess.CompletedProcess:
    return run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_SETTINGS_MODULE="config.settings.production",
        SECRET_KEY=secrets.token_urlsafe(50),
        CREDENTIALS_KEYS=Fernet.generate_key().decode(),
        ALLOWED_HOSTS="backoffice.example.com",
        **env,
    )


def test_production_settings_pass_the_deploy_check():
    result = deploy_check()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    ("env", "warning"),
    [
        ({"SECURE_HSTS_SECONDS": "0"}, "security.W004"),
        ({"SECURE_SSL_REDIRECT": "false"}, "security.W008"),
    ],
)
def test_deploy_check_fails_without_hsts_or_https_redirect(env, warning):
    result = deploy_check(**env)
    assert result.returncode != 0
    assert warning in result.stdout + result.stderr


def test_production_forces_the_second_factor_and_secure_cookies():
    result = run_manage(
        "shell",
        "-c",
        "from django.conf import settings as s; print(s.DEBUG, s.STAFF_OTP_REQUIRED, "
        "s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.STAFF_SESSION_IDLE_SECONDS)",
        DJANGO_SETTINGS_MODULE="config.settings.production",
        SECRET_KEY=secrets.token_urlsafe(50),
        CREDENTIALS_KEYS=Fernet.generate_key().decode(),
        DEBUG="true",
        STAFF_OTP_REQUIRED="false",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].split() == ["False", "True", "True", "True", "1800"]
