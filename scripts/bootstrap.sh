#!/usr/bin/env bash
# Creates .venv and installs the pinned requirements when they changed since the last install.
# Prefers Python 3.12+ (Django 6.1); on a 3.11-only machine the requirements fall back to
# Django 5.2 LTS.
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.13 python3.12 \
    "$HOME"/.pyenv/versions/3.12*/bin/python3.12 "$HOME"/.pyenv/versions/3.13*/bin/python3.13 \
    /usr/local/bin/python3.12 /usr/bin/python3.12 python3; do
    [ -n "$candidate" ] || continue
    if "$candidate" -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

stamp=".venv/.requirements.sha"
wanted=$(cat requirements/*.txt | sha256sum | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
  exit 0
fi
if [ ! -x .venv/bin/python ]; then
  python=$(find_python) || { echo "error: no Python 3.11+ found; install python3 (3.12 preferred)." >&2; exit 2; }
  echo "bootstrap: creating .venv with $("$python" --version 2>&1)"
  "$python" -m venv .venv
fi
echo "bootstrap: installing requirements/dev.txt"
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements/dev.txt
echo "$wanted" > "$stamp"
