"""Start-up failures give one line that names the URL and the fix, not a traceback."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", **env}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_unreachable_database_gives_one_clear_line():
    result = run_manage("migrate", DATABASE_URL="postgres://postgres@127.0.0.1:1/copytrade")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "DATABASE_URL=postgres://postgres@127.0.0.1:1/copytrade" in lines[0]
    assert "Traceback" not in result.stderr


def test_missing_database_says_how_to_create_it():
    result = run_manage(
        "showmigrations", DATABASE_URL="postgres://postgres@127.0.0.1:5432/no_such_db_here"
    )
    assert result.returncode == 2
    assert "no_such_db_here" in result.stderr
    assert "createdb" in result.stderr
    assert "Traceback" not in result.stderr


def test_database_password_is_not_printed():
    result = run_manage("migrate", DATABASE_URL="postgres://postgres:hunter2@127.0.0.1:1/copytrade")
    assert result.returncode == 2
    assert "hunter2" not in result.stderr
    assert ":***@" in result.stderr


def test_unreachable_redis_gives_one_clear_line():
    result = run_manage("checkservices", REDIS_URL="redis://127.0.0.1:1/0")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "REDIS_URL=redis://127.0.0.1:1/0" in lines[0]


def test_services_answer_when_up():
    result = run_manage("checkservices")
    assert result.returncode == 0, result.stderr
    assert "answer" in result.stdout


def test_secret_key_required_outside_debug():
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG")}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "config.settings.production"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "SECRET_KEY is not set" in result.stderr
    assert "Traceback" not in result.stderr
