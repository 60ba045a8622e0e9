"""A tamper-evident hash chain over the compliance rows, kept by PostgreSQL itself.

What is chained: every history row (django-simple-history's tables), the admin's log of
staff changes (django_admin_log) and staff remedies (copytrading_staffremedy): `chained_tables`.

How: each of those tables has a deferred constraint trigger that runs when the inserting
transaction commits. It re-reads the committed row as JSON (`to_jsonb`, keys in
PostgreSQL's canonical order, times in UTC), and appends an AuditChainEntry:

    row_hash = sha256(row JSON)
    hash     = sha256(prev_hash | seq | table | pk | row_hash)      (prev of #1: 64 zeros)

under a transaction-level advisory lock, so entries are numbered without gaps in commit
order. The lock is taken at commit time only, for the few statements of the append, so
writers of history wait for each other for well under a millisecond.

`verify_chain` walks the chain and reports the first problems: a chained row edited or
deleted, an entry edited, removed or reordered, and rows of chained tables with no entry
(inserted with the trigger disabled, or whose entries were cut from the tail). What no
chain can show on its own is the tail cut together with its rows: keep the head that
verify_audit prints somewhere else (a ticket, a log shipped off the machine) and pass it
back with --expect-head.

Rows already present when a table is first chained are adopted in primary-key order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction

GENESIS = "0" * 64
# The advisory lock key of the chain's tail ("audt").
LOCK_KEY = 0x61756474
TRIGGER = "audit_chain"
ENTRY_TABLE = "audit_auditchainentry"

# The append, shared by the trigger and the adoption of existing rows. (Literal SQL:
# 1635083380 is LOCK_KEY, audit_auditchainentry is ENTRY_TABLE, 64 zeros is GENESIS.)
FUNCTIONS_SQL = """
CREATE OR REPLACE FUNCTION audit_chain_push(tbl text, pk text, row_json text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  last_seq bigint;
  last_hash text;
  row_digest text;
  next_seq bigint;
BEGIN
  PERFORM pg_advisory_xact_lock(1635083380);
  SELECT seq, hash INTO last_seq, last_hash
    FROM audit_auditchainentry ORDER BY seq DESC LIMIT 1;
  next_seq := coalesce(last_seq, 0) + 1;
  last_hash := coalesce(last_hash, repeat('0', 64));
  row_digest := encode(sha256(convert_to(row_json, 'UTF8')), 'hex');
  INSERT INTO audit_auditchainentry
    (seq, table_name, row_pk, row_hash, prev_hash, hash, recorded_at)
  VALUES (next_seq, tbl, pk, row_digest, last_hash,
          encode(sha256(convert_to(
            last_hash || '|' || next_seq || '|' || tbl || '|' || pk || '|' || row_digest,
            'UTF8')), 'hex'),
          now());
END $$;

CREATE OR REPLACE FUNCTION audit_chain_append() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  row_json text;
BEGIN
  -- JSON of timestamps follows the session's time zone: always UTC in the chain.
  PERFORM set_config('timezone', 'UTC', true);
  -- The row as it committed (a later statement of the same transaction may have changed
  -- it), found by its primary key (TG_ARGV[0]); a row deleted before the commit is not
  -- chained.
  EXECUTE format('SELECT to_jsonb(t)::text FROM %I.%I t WHERE t.%I = ($1).%I',
                 TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_ARGV[0], TG_ARGV[0])
    INTO row_json USING NEW;
  IF row_json IS NOT NULL THEN
    PERFORM audit_chain_push(TG_TABLE_NAME, to_jsonb(NEW) ->> TG_ARGV[0], row_json);
  END IF;
  RETURN NULL;
END $$;
"""

DROP_FUNCTIONS_SQL = """
DROP FUNCTION IF EXISTS audit_chain_append();
DROP FUNCTION IF EXISTS audit_chain_push(text, text, text);
"""


def chained_tables() -> dict[str, str]:
    """Table -> primary key column of every table the chain covers."""
    from django.contrib.admin.models import LogEntry
    from simple_history.models import registered_models

    from copytrading.models import StaffRemedy

    tables = {}
    for model in registered_models.values():
        history = model.history.model  # type: ignore[attr-defined]
        tables[history._meta.db_table] = history._meta.pk.column
    for model in (LogEntry, StaffRemedy):
        tables[model._meta.db_table] = model._meta.pk.column
    return dict(sorted(tables.items()))


def _triggered_tables(cursor: Any) -> set[str]:
    cursor.execute(
        "SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "WHERE t.tgname = %s AND NOT t.tgisinternal",
        [TRIGGER],
    )
    return {row[0] for row in cursor.fetchall()}


def install_triggers() -> list[str]:
    """Adds the chain's trigger to every chained table that lacks it, adopting the rows it
    already holds; returns those tables. Cheap when there is nothing to do (one query)."""
    tables = chained_tables()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL timezone = 'UTC'")
        missing = [t for t in tables if t not in _triggered_tables(cursor)]
        for table in missing:
            pk = tables[table]
            quoted, quoted_pk = connection.ops.quote_name(table), connection.ops.quote_name(pk)
            # The primary key column's name (model metadata) is the trigger's argument.
            cursor.execute(
                f"CREATE CONSTRAINT TRIGGER {TRIGGER} AFTER INSERT ON {quoted} "
                "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
                f"EXECUTE FUNCTION audit_chain_append('{pk}')"
            )
            cursor.execute(
                f"SELECT audit_chain_push(%s, t.{quoted_pk}::text, to_jsonb(t)::text) "  # noqa: S608 - names from model metadata
                f"FROM {quoted} t WHERE NOT EXISTS (SELECT 1 FROM {ENTRY_TABLE} e "
                f"WHERE e.table_name = %s AND e.row_pk = t.{quoted_pk}::text) "
                f"ORDER BY t.{quoted_pk}",
                [table, table],
            )
    return missing


def install_after_migrate(sender: Any, **kwargs: Any) -> None:
    """post_migrate: chain the tables of models added since the last migrate."""
    using = kwargs.get("using", "default")
    if using != connection.alias:
        return
    install_triggers()


# -- verification --------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    seq: int | None
    message: str


@dataclass(frozen=True)
class Verdict:
    entries: int
    tables: int
    head_seq: int
    head_hash: str
    problems: list[Problem]


def link_hash(prev_hash: str, seq: int, table: str, pk: str, row_hash: str) -> str:
    text = f"{prev_hash}|{seq}|{table}|{pk}|{row_hash}"
    return hashlib.sha256(text.encode()).hexdigest()


def _entries(tables: dict[str, str]) -> Iterator[tuple]:
    """Every entry in chain order with the current hash of its row (None: the row is gone),
    then the rows with no entry (seq None). PostgreSQL joins the rows with the entries and
    the result is streamed (a server-side cursor), so memory stays flat however long the
    chain grows."""
    current = " UNION ALL ".join(
        f"SELECT %s AS tbl, t.{connection.ops.quote_name(pk)}::text AS pk, "  # noqa: S608 - model metadata
        "encode(sha256(convert_to(to_jsonb(t)::text, 'UTF8')), 'hex') AS h "
        f"FROM {connection.ops.quote_name(table)} t"
        for table, pk in tables.items()
    )
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL timezone = 'UTC'")
    with connection.chunked_cursor() as cursor:
        cursor.execute(
            f"WITH cur AS ({current}) "  # noqa: S608 - table names from model metadata
            "SELECT e.seq, coalesce(e.table_name, cur.tbl), coalesce(e.row_pk, cur.pk), "
            "e.row_hash, e.prev_hash, e.hash, cur.h "
            f"FROM {ENTRY_TABLE} e FULL OUTER JOIN cur "
            "ON cur.tbl = e.table_name AND cur.pk = e.row_pk "
            "ORDER BY e.seq NULLS LAST, 2, length(coalesce(e.row_pk, cur.pk)), 3",
            list(tables),
        )
        yield from cursor


def verify_chain(*, limit: int = 20) -> Verdict:
    """Walks the chain; returns what it found (at most `limit` problems)."""
    tables = chained_tables()
    problems: list[Problem] = []
    unchained: dict[str, list[str]] = {}
    expected_seq, prev, entries = 1, GENESIS, 0
    with transaction.atomic():
        for seq, table, pk, row_hash, prev_hash, hash_, now_hash in _entries(tables):
            if seq is None:
                unchained.setdefault(table, []).append(pk)
                continue
            entries += 1
            if seq != expected_seq:
                problems.append(
                    Problem(seq, f"entries #{expected_seq}..#{seq - 1} are missing (deleted)")
                )
            if prev_hash != prev:
                problems.append(
                    Problem(seq, f"entry #{seq} does not follow the entry before it (chain cut)")
                )
            if link_hash(prev_hash, seq, table, pk, row_hash) != hash_:
                problems.append(Problem(seq, f"entry #{seq} ({table} pk {pk}) was edited"))
            if now_hash is None:
                problems.append(Problem(seq, f"row {table} pk {pk} (entry #{seq}) was deleted"))
            elif now_hash != row_hash:
                problems.append(Problem(seq, f"row {table} pk {pk} (entry #{seq}) was edited"))
            expected_seq, prev = seq + 1, hash_
    for table, pks in unchained.items():
        first = ", ".join(pks[:5]) + (" ..." if len(pks) > 5 else "")
        problems.append(
            Problem(
                None,
                f"{len(pks)} row(s) of {table} are not in the chain (pk {first}): "
                "inserted with the trigger disabled, or their entries were cut",
            )
        )
    return Verdict(
        entries=entries,
        tables=len(tables),
        head_seq=expected_seq - 1,
        head_hash=prev,
        problems=problems[:limit],
    )
