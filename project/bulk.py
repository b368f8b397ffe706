"""Many rows in one INSERT on PostgreSQL: each column as one array parameter, unnested, bound
server-side in binary. Django's bulk_create builds a model instance per row and, with its client-side
cursor, quotes every value into the SQL text in Python; for the writers that insert hundreds of rows
every few seconds for an otherwise idle process (the usage ledger, the session timeline) that was the
larger part of the process's CPU (issue 14). The arrays go in binary (``%b``): in text, psycopg runs a
quoting regular expression over every element, and escapes every JSON document, four times the CPU.
Other databases use bulk_create."""
from __future__ import annotations

from collections.abc import Sequence

from django.db import connection


def rows_insert_postgresql(*, model, fields: Sequence[str], rows: Sequence[tuple], conflict: str | None = None,
                           returning: Sequence[str] = (), then: str | None = None,
                           chunk: int = 10_000) -> list[tuple]:
    """Insert ``rows`` (tuples in the order of ``fields``, model field names; a foreign key as its
    field name, given the related row's primary key). ``conflict``: a unique field whose existing
    values are skipped (ON CONFLICT DO NOTHING). Returns the ``returning`` columns of the rows inserted;
    or, with ``then``, the rows of that query over them (a SELECT from ``inserted``), so a caller that
    only needs their sums does not load every row back into Python."""
    import psycopg

    assert connection.vendor == "postgresql"
    assert then is None or returning, "then selects from the returned columns"
    meta = model._meta
    quote = connection.ops.quote_name
    columns = [meta.get_field(name) for name in fields]
    values = [_one_type(list(column)) for column in zip(*rows, strict=True)]
    sql = (f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(field.column) for field in columns)}) "
           f"SELECT * FROM unnest({', '.join(f'%b::{field.db_type(connection)}[]' for field in columns)})")
    if conflict:
        sql += f" ON CONFLICT ({quote(meta.get_field(conflict).column)}) DO NOTHING"
    if returning:
        sql += f" RETURNING {', '.join(quote(meta.get_field(name).column) for name in returning)}"
    if then:
        sql = f"WITH inserted AS ({sql}) {then}"
    connection.ensure_connection()
    out: list[tuple] = []
    with psycopg.Cursor(connection.connection) as cursor:
        for start in range(0, len(rows), chunk):
            cursor.execute(sql, [column[start:start + chunk] for column in values])
            if returning:
                out.extend(cursor.fetchall())
    return out


def _one_type(column: list) -> list:
    """An array parameter holds values of one Python type: a column that mixes them (a UUID and the
    same UUID as text) is sent as text, which the column's cast reads back."""
    if len({type(value) for value in column if value is not None}) <= 1:
        return column
    return [None if value is None else str(value) for value in column]


def default_database_vendor() -> str:
    """The default database's vendor ("postgresql", "sqlite") from its settings. Reading
    ``connection.vendor`` on the event loop would build a DatabaseWrapper for each asyncio context
    (Django's connections are asgiref Locals): 3 KiB and a few hundred microseconds per session."""
    from django.conf import settings

    engine = settings.DATABASES["default"]["ENGINE"]
    return "sqlite" if engine.endswith("sqlite3") else engine.rsplit(".", 1)[-1]
