"""Fast bulk inserts for the hot paths (listener, fan-out).

One `INSERT ... SELECT FROM unnest(arrays)` with server-side parameter binding costs
about a tenth of Django's bulk_create for the same rows, which renders and quotes
every value in Python. JSON columns travel as one JSON array (an array of jsonb
would be escaped element by element). Runs on Django's connection, inside the
caller's transaction.
"""

import json
from collections.abc import Sequence
from functools import cache
from typing import Any

from django.db import connection, models


@cache
def _plan(model: type[models.Model], columns: tuple[str, ...], conflict: str) -> tuple[str, tuple]:
    fields = [model._meta.get_field(c) for c in columns]
    plain = [f for f in fields if not isinstance(f, models.JSONField)]
    jsons = [f for f in fields if isinstance(f, models.JSONField)]
    names = [f.column for f in plain]
    types = [f.db_type(connection) for f in plain]
    select = [f"u.{n}" for n in names]
    arrays = ", ".join(f"%s::{t}[]" for t in types)
    sources = [f"unnest({arrays}) WITH ORDINALITY AS u({', '.join(names)}, n)"]
    for i in range(len(jsons)):
        alias = f"j{i}"
        select.append(f"{alias}.v")
        sources.append(
            f"JOIN jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS {alias}(v, n) USING (n)"
        )
    all_columns = names + [f.column for f in jsons]
    sql = (
        f"INSERT INTO {model._meta.db_table} ({', '.join(all_columns)}) "  # noqa: S608 - model metadata, not input
        f"SELECT {', '.join(select)} FROM {' '.join(sources)} {conflict} RETURNING id"
    )
    return sql, (tuple(f.attname for f in plain), tuple(f.attname for f in jsons))


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
    if not rows:
        return []
    conflict = "ON CONFLICT DO NOTHING" if ignore_conflicts else ""
    sql, (plain, jsons) = _plan(model, tuple(columns), conflict)
    params: list[Any] = [[row[c] for row in rows] for c in plain]
    params += [json.dumps([row[c] for row in rows], default=str) for c in jsons]
    connection.ensure_connection()
    # A plain psycopg cursor binds parameters on the server (Django's binds client-side).
    with connection.connection.cursor() as cursor:
        cursor.execute(sql, params)
        return sorted(r[0] for r in cursor.fetchall())
