"""Fast bulk inserts and updates for the hot paths (listener, fan-out, execution).

One `INSERT ... SELECT FROM unnest(arrays)` costs a fraction of Django's bulk_create for
the same rows, which renders and quotes every value in Python. Three details keep the
per-row cost low:

- Parameters are bound on the server (a plain psycopg cursor; Django's cursors bind on
  the client, which quotes every array element into the SQL text in Python), and the
  statement is prepared by psycopg after a few runs, so PostgreSQL plans it once.
- Arrays travel in binary where psycopg's binary dumper is the fast one (integers, text,
  booleans, timestamps: 3-8x faster than text for 1,000 elements) and as text for
  numeric (Decimal's binary dumper is the slower one).
- A column with the same value in every row (a timestamp, a status, a server id) is sent
  once as a scalar, not as an array of copies.

JSON columns travel as one JSON array (an array of jsonb would be escaped element by
element). Everything runs on Django's connection, inside the caller's transaction.
"""

import json
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from django.db import connection, models

from config.history import refuse_history_bypass

# Column types whose psycopg binary dumper beats the text one; anything else goes as text.
_BINARY_PREFIXES = ("bigint", "integer", "smallint", "boolean", "varchar", "text", "timestamp")


# Statements run this many times on a connection are prepared (planned once): planning
# the fan-out's joins costs ten times their execution. Django turns psycopg's preparing
# off (its cursors bind on the client, which never prepares), so this applies to the
# server-binding cursors below only. None turns it off (a transaction-pooling PgBouncer
# older than 1.21 cannot keep prepared statements): settings.HOT_PATH_PREPARE_THRESHOLD.
_UNSET = object()


def _prepare_threshold() -> int | None:
    from django.conf import settings

    return getattr(settings, "HOT_PATH_PREPARE_THRESHOLD", 5)


class _Cursor(psycopg.Cursor):
    """A psycopg cursor whose errors go through Django's wrapper, as its own cursors' do.

    So they arrive as django.db errors, and a connection that broke under it (a database
    restart, pg_terminate_backend) is marked: Django's close_old_connections (before each
    Celery task, each listener step) then drops it instead of handing the dead connection
    to every later task of the process."""

    def execute(self, *args: Any, **kwargs: Any) -> "_Cursor":
        with connection.wrap_database_errors:
            return super().execute(*args, **kwargs)


def cursor() -> psycopg.Cursor:
    """A server-binding psycopg cursor on Django's connection, in its current transaction."""
    connection.ensure_connection()
    conn = connection.connection
    if getattr(conn, "_hot_path_prepare", _UNSET) is _UNSET:
        conn.prepare_threshold = _prepare_threshold()
        conn._hot_path_prepare = True
    return _Cursor(conn)


def _placeholder(db_type: str) -> str:
    return "%b" if db_type.startswith(_BINARY_PREFIXES) else "%t"


def _same(values: list[Any]) -> bool:
    """True when every value is equal to the first (sent once, as a scalar)."""
    first = values[0]
    try:
        return len(set(values)) == 1
    except TypeError:  # unhashable (a JSON value)
        return all(v == first for v in values)


class _Columns:
    """The values of each column, split into per-row arrays and scalars."""

    __slots__ = ("arrays", "consts", "json_arrays", "json_consts", "key")

    def __init__(
        self,
        fields: Sequence[models.Field],
        getters: Sequence[Callable[[Any], Any]],
        rows: Sequence[Any],
    ) -> None:
        self.arrays: list[tuple[models.Field, list[Any]]] = []
        self.consts: list[tuple[models.Field, Any]] = []
        self.json_arrays: list[tuple[models.Field, list[Any]]] = []
        self.json_consts: list[tuple[models.Field, Any]] = []
        mask = []
        for field, get in zip(fields, getters, strict=True):
            values = [get(row) for row in rows]
            is_json = isinstance(field, models.JSONField)
            const = _same(values)
            mask.append(const)
            if is_json:
                (self.json_consts if const else self.json_arrays).append(
                    (field, values[0] if const else values)
                )
            else:
                (self.consts if const else self.arrays).append(
                    (field, values[0] if const else values)
                )
        self.key = tuple(mask)


def _db_type(field: models.Field) -> str:
    db_type = _DB_TYPES.get(field)
    if db_type is None:
        db_type = _DB_TYPES[field] = field.db_type(connection)
    return db_type


_DB_TYPES: dict[models.Field, str] = {}


def _source(cols: _Columns, count: int) -> tuple[str, list[Any]]:
    """FROM clause (alias u, with ordinality n) over the per-row arrays, and its params."""
    names = [f.column for f, _v in cols.arrays]
    params: list[Any] = []
    typed = []
    for f, values in cols.arrays:
        db_type = _db_type(f)
        typed.append(f"{_placeholder(db_type)}::{db_type}[]")
        params.append(values)
    if typed:
        sql = f"unnest({', '.join(typed)}) WITH ORDINALITY AS u({', '.join(names)}, n)"
    else:
        sql = "generate_series(1, %b::integer) AS u(n)"
        params.append(count)
    for i, (_f, values) in enumerate(cols.json_arrays):
        sql += f" JOIN jsonb_array_elements(%t::jsonb) WITH ORDINALITY AS j{i}(v, n) USING (n)"
        params.append(json.dumps(values, default=str))
    return sql, params


def _scalar(field: models.Field, value: Any, *, is_json: bool) -> tuple[str, Any]:
    if is_json:
        return "%t::jsonb", json.dumps(value, default=str)
    db_type = _db_type(field)
    return f"{_placeholder(db_type)}::{db_type}", value


def insert_rows(
    model: type[models.Model],
    rows: Sequence[dict[str, Any]],
    *,
    columns: Sequence[str],
    ignore_conflicts: bool = True,
) -> list[int]:
    """Inserts `rows` (dicts keyed by field name; every row has every column) and returns
    the ids of the rows inserted, in order. With `ignore_conflicts`, rows that hit a
    unique constraint are skipped and their ids are not returned."""
    return sorted(
        r[0]
        for r in insert_rows_returning(
            model, rows, columns=columns, ignore_conflicts=ignore_conflicts
        )
    )


def insert_sql(
    model: type[models.Model],
    rows: Sequence[dict[str, Any]],
    *,
    columns: Sequence[str],
    ignore_conflicts: bool = True,
    returning: Sequence[str] = ("id",),
) -> tuple[str, list[Any]]:
    """The INSERT statement of insert_rows_returning and its params, for a caller that
    runs it inside a larger statement (a CTE). Refuses a model that keeps history."""
    refuse_history_bypass(model, columns, "insert")
    fields = [model._meta.get_field(c) for c in columns]
    getters = [_item(f.attname) for f in fields]
    cols = _Columns(fields, getters, rows)
    source, source_params = _source(cols, len(rows))
    select, params, names = [], [], []
    for f, value in cols.consts:
        placeholder, param = _scalar(f, value, is_json=False)
        select.append(placeholder)
        params.append(param)
        names.append(f.column)
    for f, _values in cols.arrays:
        select.append(f"u.{f.column}")
        names.append(f.column)
    for f, value in cols.json_consts:
        placeholder, param = _scalar(f, value, is_json=True)
        select.append(placeholder)
        params.append(param)
        names.append(f.column)
    for i, (f, _values) in enumerate(cols.json_arrays):
        select.append(f"j{i}.v")
        names.append(f.column)
    conflict = " ON CONFLICT DO NOTHING" if ignore_conflicts else ""
    back = f" RETURNING {', '.join(returning)}" if returning else ""
    sql = (
        f"INSERT INTO {model._meta.db_table} ({', '.join(names)}) "  # noqa: S608 - model metadata, not input
        f"SELECT {', '.join(select)} FROM {source}{conflict}{back}"
    )
    return sql, params + source_params


def insert_rows_returning(
    model: type[models.Model],
    rows: Sequence[dict[str, Any]],
    *,
    columns: Sequence[str],
    ignore_conflicts: bool = True,
    returning: Sequence[str] = ("id",),
) -> list[tuple]:
    """Like insert_rows, but returns the `returning` columns of each inserted row."""
    if not rows:
        return []
    sql, params = insert_sql(
        model, rows, columns=columns, ignore_conflicts=ignore_conflicts, returning=returning
    )
    with cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def _item(name: str) -> Callable[[dict[str, Any]], Any]:
    return lambda row: row[name]


def _attr(name: str) -> Callable[[Any], Any]:
    return lambda obj: getattr(obj, name)


def update_sql(
    model: type[models.Model],
    rows: Sequence[Any],
    *,
    columns: Sequence[str],
    get: Callable[[str], Callable[[Any], Any]] | None = None,
    where: str = "",
    returning: Sequence[str] = (),
) -> tuple[str, list[Any]]:
    """The UPDATE ... FROM unnest(...) of `rows` (`get(attname)` reads a value of a row),
    with an optional extra condition on the target row `t`, and its params. Refuses
    columns that a model's history keeps (only untracked readings may be written here)."""
    refuse_history_bypass(model, columns, "update")
    get = get or _attr
    fields = [model._meta.get_field(c) for c in columns]
    pk = model._meta.pk
    cols = _Columns(fields, [get(f.attname) for f in fields], rows)
    # The primary keys always travel as an array: they are what the rows are joined on.
    cols.arrays.insert(0, (pk, [get(pk.attname)(r) for r in rows]))
    source, source_params = _source(cols, len(rows))
    sets, params = [], []
    for f, value in cols.consts:
        placeholder, param = _scalar(f, value, is_json=False)
        sets.append(f"{f.column} = {placeholder}")
        params.append(param)
    for f, value in cols.json_consts:
        placeholder, param = _scalar(f, value, is_json=True)
        sets.append(f"{f.column} = {placeholder}")
        params.append(param)
    select = [f"u.{f.column}" for f, _v in cols.arrays]
    for f, _v in cols.arrays[1:]:
        sets.append(f"{f.column} = s.{f.column}")
    for i, (f, _v) in enumerate(cols.json_arrays):
        select.append(f"j{i}.v AS __json{i}")
        sets.append(f"{f.column} = s.__json{i}")
    back = f" RETURNING {', '.join('t.' + r for r in returning)}" if returning else ""
    sql = (
        f"UPDATE {model._meta.db_table} AS t SET {', '.join(sets)} "  # noqa: S608 - model metadata
        f"FROM (SELECT {', '.join(select)} FROM {source}) AS s "
        f"WHERE t.{pk.column} = s.{pk.column}{' AND ' + where if where else ''}{back}"
    )
    return sql, params + source_params


def run_together(statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
    """Runs data-modifying statements (from insert_sql / update_sql, without RETURNING) as
    one statement, each a CTE: one round trip. They must not depend on each other's
    effects (all see the same snapshot) nor touch the same row twice."""
    if not statements:
        return
    *first, (last_sql, last_params) = statements
    sql = ""
    params: list[Any] = []
    if first:
        sql = "WITH " + ", ".join(f"w{i} AS ({s})" for i, (s, _p) in enumerate(first)) + " "
        for _s, p in first:
            params.extend(p)
    with cursor() as cur:
        cur.execute(sql + last_sql, [*params, *last_params])


def update_objects(objs: Sequence[models.Model], *, columns: Sequence[str]) -> int:
    """Writes `columns` of each object back in one UPDATE ... FROM unnest(...); returns the
    number of rows updated. The fast twin of bulk_update, which builds a CASE per value.
    Every written column must be loaded on every object (a deferred one would be read
    with a query per object, or written back stale)."""
    if not objs:
        return 0
    sql, params = update_sql(type(objs[0]), objs, columns=columns, get=_attr)
    with cursor() as cur:
        cur.execute(sql, params)
        return cur.rowcount


def update_rows(
    model: type[models.Model],
    rows: Sequence[Any],
    *,
    columns: Sequence[str],
    where: str = "",
    where_params: Sequence[Any] = (),
    returning: Sequence[str] = (),
) -> list[tuple]:
    """Like update_objects for plain rows (any objects with the fields' attnames as
    attributes, `id` included), with an extra condition on the target row `t` and the
    `returning` columns of the rows updated."""
    if not rows:
        return []
    sql, params = update_sql(
        model, rows, columns=columns, get=_attr, where=where, returning=returning
    )
    with cursor() as cur:
        cur.execute(sql, [*params, *where_params])
        return cur.fetchall() if returning else []
