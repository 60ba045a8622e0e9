#!/usr/bin/env bash
# The whole check: install, services, lint, Django checks, then the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/services.sh
export DJANGO_SETTINGS_MODULE=config.settings.test
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== django checks"
.venv/bin/python manage.py check --fail-level WARNING
.venv/bin/python manage.py makemigrations --check --dry-run >/dev/null || {
  echo "error: models changed without a migration; run: .venv/bin/python manage.py makemigrations" >&2
  exit 1
}
echo "== pytest"
.venv/bin/python -m pytest "$@"
