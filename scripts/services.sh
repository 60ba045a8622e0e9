#!/usr/bin/env bash
# Makes sure PostgreSQL and Redis answer on their default ports (starting them if they are
# installed here but stopped) and that the database in DATABASE_URL exists.
set -uo pipefail
cd "$(dirname "$0")/.."

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 >/dev/null 2>&1 || \
  .venv/bin/python -c 'import socket; socket.create_connection(("127.0.0.1", 5432), 1)' >/dev/null 2>&1; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }

if ! pg_up && [ -z "${DATABASE_URL:-}" ]; then
  echo "services: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  for _ in $(seq 1 60); do pg_up && break; sleep 0.5; done
fi
if ! redis_up && [ -z "${REDIS_URL:-}" ]; then
  echo "services: starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no || true
  for _ in $(seq 1 60); do redis_up && break; sleep 0.5; done
fi
# Create the database named in DATABASE_URL (default: copytrade) when it is missing.
.venv/bin/python - <<'PY'
import os, sys
from urllib.parse import urlsplit
import psycopg
url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/copytrade")
parts = urlsplit(url)
name = parts.path.lstrip("/") or "copytrade"
admin = parts._replace(path="/postgres").geturl().replace("postgres://", "postgresql://", 1)
try:
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
            print(f"services: created database {name}")
except psycopg.OperationalError as exc:
    sys.exit(f"error: PostgreSQL unreachable at {parts.hostname}:{parts.port or 5432} ({str(exc).strip().splitlines()[0]}); start it or set DATABASE_URL.")
PY
.venv/bin/python manage.py checkservices >/dev/null
