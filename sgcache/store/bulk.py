"""Bulk loads on PostgreSQL: rows sent with COPY instead of INSERT statements.

A page of a full import is hundreds of rows. Sent as INSERT ... VALUES, PostgreSQL parses and
plans the values as SQL text, and the driver builds that text row by row. COPY streams the rows
in PostgreSQL's text format, which it reads far faster. So :class:`~sgcache.store.writer.Writer`
loads large batches on PostgreSQL this way:

- association rows go straight into their table (:func:`copy_into`): the writer has deleted
  the rows they replace in the same transaction, so there is nothing to conflict with;
- entity rows the table does not hold yet (every row of a first import) are copied straight in
  (:func:`copy_insert`), inside a savepoint: should another writer insert one of them between
  the writer's look and the copy, the copy is undone alone and the writer looks again;
- the others go into a temporary table, then into the entity table with one
  ``INSERT ... SELECT ... ON CONFLICT DO UPDATE ... WHERE`` carrying the same guard as the
  row-by-row statement (a row written by a newer event is left alone), ``RETURNING`` the ids
  written.

Values are turned into what the driver would have sent by each column type's own bind processor
(JSON serialised, times made UTC...), then written in COPY's text format.
"""

from __future__ import annotations

import datetime as dt
import decimal
import io
import itertools
import math
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

import psycopg2
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from sgcache.fields.types import UTCDateTime

#: Rows below which the INSERT statement is kept (COPY's set-up costs more than it saves).
MIN_ROWS = 50

#: COPY's text format: a backslash starts an escape; tab, newline and carriage return separate.
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NULL = "\\N"
_names = itertools.count(1)


#: What a copy or an insert raises when a row breaks a key (COPY's error comes from the driver).
KEY_ERRORS = (sa.exc.IntegrityError, psycopg2.IntegrityError)


def _escaped(text: str) -> str:
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        return text.translate(_ESCAPES)
    return text  # the usual case, checked far faster than translate() copies


def _text(value: Any) -> str:
    """One value, as the driver would send it, in COPY's text format."""
    kind = type(value)
    if kind is str:
        return _escaped(value)
    if value is None:
        return _NULL
    if kind is int:
        return str(value)
    if kind is bool:
        return "t" if value else "f"
    if kind is float:
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, int):  # an int subclass
        return str(int(value))
    return _escaped(str(value))


def _utc_text(value: dt.datetime | None) -> str:
    """A timestamptz value (what UTCDateTime's bind processor makes, without its call)."""
    if value is None:
        return _NULL
    return (value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)).isoformat()


def _utc_encoder() -> Callable[[Any], str]:
    """_utc_text for one column of one batch, remembering the last value: a batch's bookkeeping
    times (written at, valid from) are one object for every row, formatted once."""
    last: list[Any] = [None, _NULL]

    def encode(value: dt.datetime | None) -> str:
        if value is not last[0]:
            last[0], last[1] = value, _utc_text(value)
        return last[1]

    return encode


def _encoders(conn: sa.Connection, table: sa.Table, columns: Sequence[str]) -> list[Callable[[Any], str]]:
    """Per column: the value to COPY text, through the column type's bind processor if it has one."""
    out = []
    for name in columns:
        column_type = table.c[name].type
        if isinstance(column_type, UTCDateTime):
            out.append(_utc_encoder())  # an aware time is written with its offset: PostgreSQL keeps the instant
            continue
        process = column_type._cached_bind_processor(conn.dialect)
        out.append(_text if process is None else (lambda v, p=process: _text(p(v))))
    return out


def _column(values: Sequence, encode: Callable[[Any], str]) -> list[str]:
    """One column's values in COPY's text format. The usual columns of a page, all whole numbers
    or all text with nothing to escape, are converted by C loops instead of a call per value."""
    if encode is _text:
        kinds = set(map(type, values))
        nulls = type(None) in kinds
        kinds.discard(type(None))
        if kinds == {int}:
            return [_NULL if v is None else str(v) for v in values] if nulls else list(map(str, values))
        if kinds == {str}:
            text = "".join([v for v in values if v is not None]) if nulls else "".join(values)
            if "\\" not in text and "\t" not in text and "\n" not in text and "\r" not in text:
                return [_NULL if v is None else v for v in values] if nulls else values
    return list(map(encode, values))


def _columns(rows: Sequence[dict], columns: Sequence[str]) -> list[Sequence]:
    """The rows' values, column by column (None where a row lacks the column). Rows that all
    have every column (those of a writer's batch do) are turned by C loops."""
    if len(columns) > 1 and rows:
        try:
            return list(zip(*map(itemgetter(*columns), rows), strict=True))
        except KeyError:
            pass
    return [[row.get(name) for row in rows] for name in columns]


def _buffer(conn: sa.Connection, table: sa.Table, columns: Sequence[str], rows: Sequence[dict]) -> io.StringIO:
    # Column by column: one encoder mapped over a column's values costs less than a call per
    # value chosen row by row.
    encoded = [_column(values, encode)
               for values, encode in zip(_columns(rows, columns), _encoders(conn, table, columns), strict=True)]
    lines = list(map("\t".join, zip(*encoded, strict=True)))
    lines.append("")
    return io.StringIO("\n".join(lines))


def _quoted(conn: sa.Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


def _copy(conn: sa.Connection, target: str, columns: Sequence[str], data: io.StringIO) -> None:
    cols = ", ".join(_quoted(conn, c) for c in columns)
    cursor = conn.connection.cursor()  # the same DBAPI connection: the same transaction
    try:
        cursor.copy_expert(f"COPY {target} ({cols}) FROM STDIN", data)
    finally:
        cursor.close()


def usable(conn: sa.Connection, rows: int) -> bool:
    """Is a COPY worth it (PostgreSQL, through psycopg2, enough rows)?"""
    return rows >= MIN_ROWS and conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg2"


def copy_into(conn: sa.Connection, table: sa.Table, rows: list[dict]) -> None:
    """Append ``rows`` (each with every column of the first) to ``table``."""
    if not rows:
        return
    columns = list(rows[0])
    _copy(conn, _quoted(conn, table.name), columns, _buffer(conn, table, columns, rows))


def copy_insert(conn: sa.Connection, table: sa.Table, columns: Sequence[str], rows: list[dict]) -> bool:
    """Copy ``rows`` (with the ``columns``; rows the table did not hold when the caller looked)
    straight into ``table``, inside a savepoint. False, with nothing written, when one of them
    breaks the key: another writer inserted it since the caller's look."""
    try:
        with conn.begin_nested():
            _copy(conn, _quoted(conn, table.name), columns, _buffer(conn, table, columns, rows))
    except psycopg2.IntegrityError:
        return False
    return True


def copy_upsert(conn: sa.Connection, table: sa.Table, columns: Sequence[str], rows: list[dict], *,
                update: Sequence[str], where: Callable[[Any], Any] | None) -> set[int]:
    """Insert ``rows`` (with the ``columns``, keyed by ``id``, one row an id at most), or set
    the ``update`` columns of the rows they meet where ``where(excluded)`` allows (``excluded``:
    the incoming row's columns, as in ON CONFLICT). Returns the ids written."""
    if not rows:
        return set()
    name = f"_sgcache_load_{next(_names)}"
    conn.execute(sa.text(f"CREATE TEMP TABLE {_quoted(conn, name)} (LIKE {_quoted(conn, table.name)} "
                         "INCLUDING DEFAULTS) ON COMMIT DROP"))
    _copy(conn, _quoted(conn, name), columns, _buffer(conn, table, columns, rows))
    load = sa.table(name, *[sa.column(c) for c in columns])
    stmt = postgresql.insert(table).from_select(list(columns), sa.select(*[load.c[c] for c in columns]))
    stmt = stmt.on_conflict_do_update(index_elements=[table.c.id], set_={k: stmt.excluded[k] for k in update},
                                      where=where(stmt.excluded) if where is not None else None)
    written = set(conn.execute(stmt.returning(table.c.id)).scalars())
    conn.execute(sa.text(f"DROP TABLE {_quoted(conn, name)}"))  # at once: a long transaction loads many
    return written


def temp_table(conn: sa.Connection, columns: Sequence[sa.Column], rows: list[dict]) -> sa.Table:
    """A temporary table of ``columns`` (dropped at commit, or by the caller when done) holding
    ``rows``, copied in: the parameters of a statement that would otherwise run once per row,
    for one set-based statement to join."""
    table = sa.Table(f"_sgcache_params_{next(_names)}", sa.MetaData(), *columns, prefixes=["TEMPORARY"],
                     postgresql_on_commit="DROP")
    table.create(conn)
    names = [c.name for c in columns]
    _copy(conn, _quoted(conn, table.name), names, _buffer(conn, table, names, rows))
    return table
