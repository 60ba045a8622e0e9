#!/usr/bin/env bash
# The whole check: install, services, lint, Django checks, then the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/services.sh
# The browser tests (tests/admin/test_browser.py) drive Debian's chromium; install it when it
# is missing and we may (root, apt). Playwright's own browser download is never used.
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "== installing chromium for the browser tests"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends chromium >/dev/null \
    || echo "warning: chromium could not be installed; the browser tests will fail" >&2
fi
export DJANGO_SETTINGS_MODULE=config.settings.test
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== money never passes through float"
.venv/bin/python scripts/check_floats.py
echo "== django checks"
.venv/bin/python manage.py check --fail-level WARNING
.venv/bin/python manage.py makemigrations --check --dry-run >/dev/null || {
  echo "error: models changed without a migration; run: .venv/bin/python manage.py makemigrations" >&2
  exit 1
}
echo "== pytest"
.venv/bin/python -m pytest "$@"
