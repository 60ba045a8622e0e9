"""config.bulk: the hot path's inserts and updates write exactly what they are given, whether
a column varies per row (an array) or not (one scalar), whatever its type or NULLs."""

from decimal import Decimal

import pytest
from django.utils import timezone

from config.bulk import (
    insert_rows,
    insert_rows_returning,
    insert_sql,
    run_together,
    update_rows,
    update_sql,
)
from copytrading.models import MasterEvent
from tests.factories import make_master

pytestmark = pytest.mark.django_db

COLUMNS = (
    "broker_server",
    "account",
    "venue_event_id",
    "venue_seq",
    "event_type",
    "synthetic",
    "symbol",
    "volume",
    "price",
    "venue_ts",
    "received_at",
    "stored_at",
    "raw",
    # No database defaults: every column the insert names is given.
    "master_position_id",
    "master_order_id",
    "client_order_id",
    "side",
    "order_type",
    "close_reason",
    "fanout_state",
)


@pytest.fixture
def account():
    return make_master().account


def rows(account, n, **overrides):
    now = timezone.now()
    return [
        {
            "broker_server_id": account.broker_server_id,
            "account_id": account.id,
            "venue_event_id": f"b{i}",
            "venue_seq": i,
            "event_type": "position_opened",
            "synthetic": i % 2 == 0,
            "symbol": "EURUSD",
            "volume": Decimal("0.10") * (i + 1),
            "price": None if i == 1 else Decimal("1.10010"),
            "venue_ts": now,
            "received_at": now,
            "stored_at": now,
            "raw": {"seq": i, "data": {"side": "buy"}},
            "master_position_id": str(700 + i),
            "master_order_id": "",
            "client_order_id": "",
            "side": "buy",
            "order_type": "",
            "close_reason": "",
            "fanout_state": "pending",
            **overrides,
        }
        for i in range(n)
    ]


def test_varying_and_constant_columns_round_trip(account):
    given = rows(account, 3)
    ids = insert_rows(MasterEvent, given, columns=COLUMNS)
    stored = list(MasterEvent.objects.filter(id__in=ids).order_by("id"))
    assert [e.venue_event_id for e in stored] == ["b0", "b1", "b2"]
    assert [e.synthetic for e in stored] == [True, False, True]
    assert [e.volume for e in stored] == [Decimal("0.1"), Decimal("0.2"), Decimal("0.3")]
    assert [e.price for e in stored] == [Decimal("1.1001"), None, Decimal("1.1001")]
    assert {e.venue_ts for e in stored} == {given[0]["venue_ts"]}
    assert [e.raw for e in stored] == [r["raw"] for r in given]


def test_one_row_and_all_null_columns(account):
    (row,) = rows(account, 1, price=None, venue_seq=None, raw={})
    (event_id,) = insert_rows(MasterEvent, [row], columns=COLUMNS)
    stored = MasterEvent.objects.get(id=event_id)
    assert (stored.price, stored.venue_seq, stored.raw) == (None, None, {})


def test_conflicting_rows_are_skipped_and_not_returned(account):
    first = insert_rows(MasterEvent, rows(account, 2), columns=COLUMNS)
    again = insert_rows_returning(
        MasterEvent, rows(account, 3), columns=COLUMNS, returning=("venue_event_id",)
    )
    assert len(first) == 2
    assert again == [("b2",)]


def test_update_rows_writes_only_rows_matching_the_condition(account):
    ids = insert_rows(MasterEvent, rows(account, 3), columns=COLUMNS)
    events = list(MasterEvent.objects.filter(id__in=ids).order_by("id"))
    for e in events:
        e.symbol = f"S{e.venue_seq}"
        e.price = None
    updated = update_rows(
        MasterEvent,
        events,
        columns=["symbol", "price"],
        where="t.venue_seq <> %b",
        where_params=[1],
        returning=("venue_seq",),
    )
    assert sorted(updated) == [(0,), (2,)]
    stored = {e.venue_seq: (e.symbol, e.price) for e in MasterEvent.objects.filter(id__in=ids)}
    assert stored == {0: ("S0", None), 1: ("EURUSD", None), 2: ("S2", None)}


def test_run_together_applies_every_statement(account):
    ids = insert_rows(MasterEvent, rows(account, 2), columns=COLUMNS)
    first, second = MasterEvent.objects.filter(id__in=ids).order_by("id")
    first.decision_context = {"a": 1}
    second.fanout_state = "done"
    run_together(
        [
            update_sql(MasterEvent, [first], columns=["decision_context"]),
            update_sql(MasterEvent, [second], columns=["fanout_state"]),
            insert_sql(MasterEvent, rows(account, 3)[2:], columns=COLUMNS, returning=()),
        ]
    )
    stored = list(MasterEvent.objects.order_by("id"))
    assert [(e.venue_event_id, e.fanout_state, e.decision_context) for e in stored] == [
        ("b0", "pending", {"a": 1}),
        ("b1", "done", None),
        ("b2", "pending", None),
    ]


@pytest.mark.django_db(transaction=True)
def test_a_connection_terminated_under_a_hot_path_cursor_is_dropped_before_the_next_task():
    """pg_terminate_backend (a database restart, a failover) under the raw cursor: the error
    is Django's, and close_old_connections (run before every task) replaces the dead
    connection instead of handing it to every later task of the worker."""
    import psycopg
    from django.db import OperationalError, close_old_connections, connection

    from config.bulk import cursor

    with cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        (pid,) = cur.fetchone()
    dsn = psycopg.conninfo.make_conninfo(connection.connection.info.dsn, dbname="postgres")
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    with pytest.raises(OperationalError), cursor() as cur:
        cur.execute("SELECT 1")
    close_old_connections()  # what task_prerun does before the next task
    with cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        assert cur.fetchone()[0] != pid
