#!/usr/bin/env bash
# One command for the whole system with demo data: two paper venues (two brokers), the ASGI
# server, a Celery worker and beat, in the foreground. Ctrl-C stops them all.
set -euo pipefail
cd "$(dirname "$0")/.."
# The paper venues keep their state in memory, so the demo starts from a fresh database
# each run (copytrade_demo), in step with them. DATABASE_URL overrides it.
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/copytrade_demo}"
bash scripts/bootstrap.sh
if [ "${DEMO_KEEP_DB:-0}" != "1" ]; then
  .venv/bin/python - <<'PY'
import os
from urllib.parse import urlsplit
import psycopg
parts = urlsplit(os.environ["DATABASE_URL"])
name = parts.path.lstrip("/")
admin = parts._replace(path="/postgres").geturl().replace("postgres://", "postgresql://", 1)
try:
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
except psycopg.OperationalError:
    pass  # services.sh below starts PostgreSQL and says what is wrong
PY
fi
bash scripts/services.sh

export DJANGO_SETTINGS_MODULE="${DJANGO_SETTINGS_MODULE:-config.settings.local}"
HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8000}"
VENUE_PORT="${VENUE_PORT:-8700}"
VENUE2_PORT="${VENUE2_PORT:-8701}"
PY=.venv/bin/python

$PY manage.py migrate --no-input -v 0
mkdir -p var/log

pids=()
stopping=
stop_all() {
  trap - INT TERM EXIT
  stopping=1
  echo
  echo "demo: stopping..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  # A Celery worker's warm shutdown waits for its running tasks, and a listener's task streams
  # until its session ends (minutes): after a grace period its pool processes are stopped too,
  # and whatever is still up after that is killed.
  for step in term kill; do
    for _ in $(seq 1 20); do
      alive=0
      for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
      [ "$alive" = 0 ] && break
      sleep 0.5
    done
    [ "$alive" = 0 ] && break
    for pid in "${pids[@]}"; do
      if [ "$step" = term ]; then
        pkill -TERM -P "$pid" 2>/dev/null || true
      else
        pkill -KILL -P "$pid" 2>/dev/null || true
        kill -KILL "$pid" 2>/dev/null || true
      fi
    done
  done
  wait 2>/dev/null || true
  echo "demo: stopped."
}
trap stop_all INT TERM EXIT

start() {  # name, command...
  local name=$1; shift
  "$@" > "var/log/$name.log" 2>&1 &
  pids+=($!)
  echo "demo: started $name (pid $!, log var/log/$name.log)"
}

start venue-a $PY manage.py runvenue --port "$VENUE_PORT" --platform MT5 --ticks-ms 250 --seed 1
start venue-b $PY manage.py runvenue --port "$VENUE2_PORT" --platform MT4 --symbol-suffix m \
  --min-volume 0.1 --volume-step 0.1 --ticks-ms 250 --seed 2
$PY scripts/wait_http.py "http://127.0.0.1:$VENUE_PORT/v1/symbols" "http://127.0.0.1:$VENUE2_PORT/v1/symbols"

$PY manage.py seed_demo --masters 3 --followers 30 \
  --venue "http://127.0.0.1:$VENUE_PORT" --second-venue "http://127.0.0.1:$VENUE2_PORT" \
  > var/demo-accounts.json
echo "demo: demo customers and accounts in var/demo-accounts.json"

# Listeners hold their task for minutes at a time: they get a worker of their own, so
# fan-out and execution never wait behind them.
start celery-listeners .venv/bin/celery -A config worker -Q listeners -n listeners@%h \
  --concurrency 2 --loglevel INFO
start celery-worker .venv/bin/celery -A config worker -Q default,fanout,execute -n worker@%h \
  --concurrency 2 --loglevel INFO
start celery-beat .venv/bin/celery -A config beat --loglevel INFO \
  --schedule var/celerybeat-schedule
# Django under ASGI runs each request's sync code on a thread of its own: a connection kept
# per thread (CONN_MAX_AGE) piles up to PostgreSQL's max_connections under load.
start asgi env CONN_MAX_AGE=0 .venv/bin/uvicorn config.asgi:application --host "$HOST" --port "$PORT" \
  --no-access-log
$PY scripts/wait_http.py "http://$HOST:$PORT/healthz"
# The demo masters trade every few seconds, so copies can be watched in the admin
# (Copy trading > Trade links) and on the venues.
start demo-trader $PY manage.py demo_trader --interval "${DEMO_TRADE_INTERVAL:-3}"

$PY manage.py ensure_admin --url "http://$HOST:$PORT/admin/"
echo "demo: running; Ctrl-C stops everything."
wait -n "${pids[@]}" || true
[ -n "$stopping" ] || echo "demo: a process exited; see var/log/ for why."
