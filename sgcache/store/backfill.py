"""Reading and writing the oldest versions the cache keeps, for a back-fill from the event log
(``sgcache history import``; what may be proven is decided in :mod:`sgcache.sync.backfill`).

The oldest version of an entity is where the back-fill starts: the row as the first full import
read it (dated by its ``updated_at``), or as the cache held it when history began. A back-fill
dates it earlier and keeps the versions before it, so the history of the type can begin earlier.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa

from sgcache.fields.types import UTCDateTime
from sgcache.store import bulk, history
from sgcache.store.tables import EntityTable, Tables

#: a list as it was: its links in order
Links = list[tuple[str, int]]


@dataclass
class Oldest:
    """Where the oldest version of one entity is, and when it began and ended."""

    valid_from: dt.datetime | None
    #: when a later version replaced it (None: it is the current row)
    valid_to: dt.datetime | None
    #: its row in the history table (None: the current row)
    version: int | None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None


@dataclass
class OldList:
    """The list a multi-entity field held in an entity's oldest version, and until when."""

    links: Links
    #: when the next list began (None: it is still the list)
    until: dt.datetime | None


@dataclass
class Plan:
    """What a back-fill writes for one type."""

    #: id -> the new start of its oldest version (None: from before the history begins)
    row_starts: dict[int, dt.datetime | None] = field(default_factory=dict)
    #: earlier versions of rows, ready for the history table
    row_versions: list[dict[str, Any]] = field(default_factory=list)
    #: (field, parent id) -> the new start of its oldest list
    list_starts: dict[tuple[str, int], dt.datetime | None] = field(default_factory=dict)
    #: earlier lists: (field, parent id, links, valid from, valid to, ended by event)
    list_versions: list[tuple[str, int, Links, dt.datetime | None, dt.datetime, int | None]] = \
        field(default_factory=list)
    #: field (or "id" for the type) -> from when its history is now proven
    history_from: dict[str, dt.datetime] = field(default_factory=dict)


def _earlier(a: dt.datetime | None, b: dt.datetime | None) -> bool:
    """Whether a version starting at ``a`` is older than one starting at ``b`` (None: oldest)."""
    return b is not None and (a is None or a < b)


def id_ranges(conn: sa.Connection, et: EntityTable, size: int) -> Iterator[tuple[int | None, int | None, int]]:
    """A type's ids in ranges of ``size`` of its rows: ``(after, upto, rows in it)``, from
    ``(None, x, size)`` to ``(y, None, the rest)``, each beginning where the last ended, so that
    every id falls in one of them, held or not (the versions of an entity the cache no longer
    holds fall between its rows)."""
    t = et.table
    after: int | None = None
    while True:
        above = [t.c.id > after] if after is not None else []
        upto = conn.execute(sa.select(t.c.id).where(*above).order_by(t.c.id).offset(size - 1).limit(1)).scalar()
        if upto is None:
            yield after, None, conn.execute(sa.select(sa.func.count()).select_from(t).where(*above)).scalar_one()
            return
        yield after, upto, size
        after = upto


def oldest_versions(conn: sa.Connection, et: EntityTable, begins: dt.datetime, *, after: int | None = None,
                    upto: int | None = None) -> dict[int, Oldest]:
    """The oldest version of each entity whose history began by ``begins`` (entities made later
    have all their versions already); only ids above ``after`` and up to ``upto`` when given."""
    t, h = et.table, et.history

    def within(ids: sa.ColumnElement) -> list[sa.ColumnElement]:
        return [c for c in ((ids > after) if after is not None else None, (ids <= upto) if upto is not None else None)
                if c is not None]

    extra = [c for c in ("created_at", "updated_at") if c in t.c]
    found: dict[int, Oldest] = {}
    query = sa.select(t.c.id, t.c[history.VALID_FROM], *[t.c[c] for c in extra]).where(*within(t.c.id))
    for row in conn.execute(query).mappings():
        found[row["id"]] = Oldest(row[history.VALID_FROM], None, None, row.get("created_at"), row.get("updated_at"))
    query = sa.select(h.c.id, h.c[history.VERSION], h.c[history.VALID_FROM], h.c[history.VALID_TO],
                      *[h.c[c] for c in extra]).where(*within(h.c.id))
    for row in conn.execute(query).mappings():
        held = found.get(row["id"])
        start = row[history.VALID_FROM]
        if held is None or _earlier(start, held.valid_from) or (held.version is None and start == held.valid_from):
            found[row["id"]] = Oldest(start, row[history.VALID_TO], row[history.VERSION], row.get("created_at"),
                                      row.get("updated_at"))
    return {i: o for i, o in found.items() if o.valid_from is None or o.valid_from <= begins}


def oldest_rows(conn: sa.Connection, et: EntityTable, oldest: Mapping[int, Oldest],
                ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """The full oldest versions of ``ids`` (every column of the table)."""
    t, h = et.table, et.history
    current = [i for i in ids if oldest[i].version is None]
    kept = {oldest[i].version: i for i in ids if oldest[i].version is not None}
    rows: dict[int, dict[str, Any]] = {}
    for chunk in _chunks(current):
        for row in conn.execute(sa.select(t).where(t.c.id.in_(chunk))).mappings():
            rows[row["id"]] = dict(row)
    for chunk in _chunks(sorted(kept)):
        query = sa.select(*[h.c[c.name] for c in t.columns]).where(h.c[history.VERSION].in_(chunk))
        for row in conn.execute(query).mappings():
            rows[row["id"]] = dict(row)
    return rows


def oldest_lists(conn: sa.Connection, tables: Tables, et: EntityTable, field_name: str,
                 oldest: Mapping[int, Oldest], ids: Iterable[int]) -> dict[int, OldList]:
    """The list ``field_name`` held in each oldest version of ``ids``: the rows valid when it began."""
    assoc, links = et.associations[field_name], tables.state.link_history
    out: dict[int, OldList] = {}
    for chunk in _chunks(sorted(ids)):
        rows: dict[int, list[tuple[Any, ...]]] = {}
        for r in conn.execute(sa.select(assoc.c.parent_id, assoc.c.position, assoc.c.child_type, assoc.c.child_id,
                                        assoc.c[history.VALID_FROM]).where(assoc.c.parent_id.in_(chunk))):
            rows.setdefault(r[0], []).append((*r[1:], None))
        for r in conn.execute(sa.select(links.c.parent_id, links.c.position, links.c.child_type, links.c.child_id,
                                        links.c[history.VALID_FROM], links.c[history.VALID_TO])
                              .where(links.c.entity_type == et.name, links.c.field == field_name,
                                     links.c.parent_id.in_(chunk))):
            rows.setdefault(r[0], []).append(tuple(r[1:]))
        for parent in chunk:
            start = oldest[parent].valid_from
            held, until = [], None
            for position, child_type, child_id, begins, ends in rows.get(parent, []):
                valid = (begins is None or (start is not None and begins <= start)) and \
                    (ends is None or start is None or ends > start)
                if valid:
                    held.append((position, child_type, child_id))
                    if ends is not None and (until is None or ends < until):
                        until = ends
                elif begins is not None and (start is None or begins > start) and (until is None or begins < until):
                    until = begins
            out[parent] = OldList([(ct, ci) for _, ct, ci in sorted(held)], until)
    return out


def _per_row(conn: sa.Connection, kinds: dict[str, Any], rows: list[dict],
             statement: Callable[[Any], sa.Update]) -> None:
    """Run ``statement(p)`` for each of ``rows``, where ``p.<column>`` is that row's value. On
    PostgreSQL, with many rows, as one statement joining a temporary table of them (each
    statement is a round trip there, and a back-fill sets the start of every row of every type:
    row by row, a scale-5 studio's took 200,000 of them); elsewhere as one executemany."""
    if not rows:
        return
    columns = [sa.Column(name, kind) for name, kind in kinds.items()]
    if bulk.usable(conn, len(rows)):
        params = bulk.temp_table(conn, columns, rows)
        conn.execute(statement(params.c))
        params.drop(conn)
        return
    conn.execute(statement(SimpleNamespace(**{c.name: sa.bindparam(c.name, type_=c.type) for c in columns})), rows)


def write(conn: sa.Connection, tables: Tables, et: EntityTable, oldest: Mapping[int, Oldest], plan: Plan) -> None:
    """Date the oldest versions anew, keep the earlier ones, and start the history earlier."""
    t, h = et.table, et.history
    kinds = {"b_key": sa.BigInteger, "b_from": UTCDateTime}
    current = [{"b_key": i, "b_from": s} for i, s in plan.row_starts.items() if oldest[i].version is None]
    kept = [{"b_key": oldest[i].version, "b_from": s} for i, s in plan.row_starts.items()
            if oldest[i].version is not None]
    _per_row(conn, kinds, current, lambda p: sa.update(t).where(t.c.id == p.b_key)
             .values({history.VALID_FROM: p.b_from}))
    _per_row(conn, kinds, kept, lambda p: sa.update(h).where(h.c[history.VERSION] == p.b_key)
             .values({history.VALID_FROM: p.b_from}))
    history.keep(conn, h, plan.row_versions)
    links = tables.state.link_history
    by_field: dict[str, list[dict[str, Any]]] = {}
    for (field_name, parent), begins in plan.list_starts.items():
        by_field.setdefault(field_name, []).append({"b_key": parent, "b_was": oldest[parent].valid_from,
                                                    "b_from": begins})
    for field_name, changes in by_field.items():
        assoc = et.associations[field_name]

        def lists(p: Any, assoc: sa.Table = assoc) -> sa.Update:
            # The oldest list's rows: those valid when the oldest version began (see oldest_lists).
            began = sa.or_(assoc.c[history.VALID_FROM].is_(None), assoc.c[history.VALID_FROM] <= p.b_was)
            return sa.update(assoc).where(assoc.c.parent_id == p.b_key, began).values({history.VALID_FROM: p.b_from})

        def linked(p: Any, field_name: str = field_name) -> sa.Update:
            began = sa.and_(sa.or_(links.c[history.VALID_FROM].is_(None), links.c[history.VALID_FROM] <= p.b_was),
                            sa.or_(p.b_was.is_(None), links.c[history.VALID_TO] > p.b_was))
            return (sa.update(links).where(links.c.entity_type == et.name, links.c.field == field_name,
                                           links.c.parent_id == p.b_key, began)
                    .values({history.VALID_FROM: p.b_from}))

        list_kinds = {"b_key": sa.BigInteger, "b_was": UTCDateTime, "b_from": UTCDateTime}
        _per_row(conn, list_kinds, changes, lists)
        _per_row(conn, list_kinds, changes, linked)
    rows = [{"entity_type": et.name, "field": f, "parent_id": p, "position": n, "child_type": ct, "child_id": ci,
             history.VALID_FROM: start, history.VALID_TO: end, history.TO_EVENT: event}
            for f, p, kept_links, start, end, event in plan.list_versions for n, (ct, ci) in enumerate(kept_links)]
    if rows:
        conn.execute(sa.insert(links), rows)
    start_history(conn, tables, et, plan.history_from)


def start_history(conn: sa.Connection, tables: Tables, et: EntityTable,
                  history_from: Mapping[str, dt.datetime]) -> None:
    """Move the start of each field's history (``"id"``: the type's) back to the time given."""
    fields = tables.state.fields
    for name, start in history_from.items():
        conn.execute(sa.update(fields).where(fields.c.entity_type == et.name, fields.c.field_name == name,
                                             fields.c.history_from > start).values(history_from=start))


def _chunks(ids: list[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), history.CHUNK):
        yield ids[start:start + history.CHUNK]
