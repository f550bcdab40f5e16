"""The one writer: every path that puts entities in the cache (scanner, watcher, write results) calls it.

Entities come in the shape the site's ``find`` returns: ``{"type", "id", field: value, ...}``
with entity links as dicts and multi-entity values as lists of dicts. Only fields present in a
dict are written (a partial dict never blanks other fields); fields the cache does not store,
deep ``a.B.c`` keys and unknown keys are ignored. Each call is one transaction, unless the caller
passes its own connection to share a transaction (the watcher stores its cursor that way).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from sgcache.errors import ConversionError
from sgcache.fields.entity import MultiEntityField
from sgcache.store.tables import EntityTable, Tables

#: rows per statement for IN lists (SQLite allows 32766 bound parameters per statement)
CHUNK = 1000


def _chunks(items: list, size: int = CHUNK) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Writer:
    """Upserts, retires and revives entities in the cache tables."""

    def __init__(self, engine: sa.Engine, tables: Tables):
        self.engine = engine
        self.tables = tables
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    @contextmanager
    def _transaction(self, conn: sa.Connection | None):
        if conn is not None:
            yield conn
        else:
            with self.engine.begin() as own:
                yield own

    # --- upsert ------------------------------------------------------------------------------

    def upsert(self, type_name: str, entities: Iterable[Mapping[str, Any]], *, active: bool | None = None,
               event_id: int | None = None, conn: sa.Connection | None = None) -> int:
        """Insert or update entities; return how many rows were written.

        ``active``: set ``_active`` (True for live rows, False for retired ones); None leaves an
        existing row's state alone and makes new rows active.
        ``event_id``: the event these values come from. A row already written by a newer event
        is left alone, and the row records the id.
        """
        et = self.tables[type_name]
        by_id: dict[int, dict[str, Any]] = {}
        links: dict[str, dict[int, list[dict]]] = {}
        for entity in entities:
            row, entity_links = self._convert(et, entity)
            # The same id twice in one batch: the later values win, field by field.
            by_id.setdefault(row["id"], {}).update(row)
            for field_name, assoc_rows in entity_links.items():
                links.setdefault(field_name, {})[row["id"]] = assoc_rows
        if not by_id:
            return 0
        with self._transaction(conn) as c:
            now = _now()
            for row in by_id.values():
                row["_cache_updated_at"] = now
                if active is not None:
                    row["_active"] = active
                if event_id is not None:
                    row["_last_event_id"] = event_id
            written = self._upsert_rows(c, et, list(by_id.values()), now, guard=event_id is not None)
            for field_name, rows_by_parent in links.items():
                kept = {i: v for i, v in rows_by_parent.items() if i in written}
                if kept:
                    self._replace_links(c, et.associations[field_name], kept)
        return len(written)

    def _convert(self, et: EntityTable, entity: Mapping[str, Any]) -> tuple[dict, dict[str, list[dict]]]:
        entity_id = entity.get("id")
        if isinstance(entity_id, bool) or not isinstance(entity_id, int):
            raise ConversionError(f"{et.name}: every entity needs an integer 'id', got {entity_id!r}")
        if entity.get("type", et.name) != et.name:
            raise ConversionError(f"{et.name} {entity_id}: entity has type {entity.get('type')!r}")
        row: dict[str, Any] = {"id": entity_id}
        links: dict[str, list[dict]] = {}
        for key, value in entity.items():
            if key in ("id", "type"):
                continue
            handler = et.fields.get(key)
            if handler is None or not handler.cached:
                continue
            if isinstance(handler, MultiEntityField):
                links[key] = handler.to_db(value)
            else:
                row.update(handler.to_db(value))
        return row, links

    def _upsert_rows(self, conn: sa.Connection, et: EntityTable, rows: list[dict], now: dt.datetime,
                     guard: bool) -> set[int]:
        """Insert or update rows; return the ids actually written.

        With ``guard``, a row already written by a newer event is left alone: the check is part
        of the statement, so it holds against concurrent writers too.
        """
        # executemany needs one column set per statement: group rows by the keys they carry.
        groups: dict[tuple[str, ...], list[dict]] = {}
        for row in rows:
            groups.setdefault(tuple(sorted(row)), []).append(row)
        t = et.table
        written: set[int] = set()
        for keys, group in groups.items():
            stmt = self._insert(t)
            update = {k: stmt.excluded[k] for k in keys if k != "id"}
            where = None
            if guard:
                where = sa.or_(t.c._last_event_id.is_(None), t.c._last_event_id <= stmt.excluded._last_event_id)
            stmt = stmt.on_conflict_do_update(index_elements=[t.c.id], set_=update, where=where)
            for row in group:
                row["_cache_created_at"] = now  # used by inserts only: not in the update set
            # RETURNING lets SQLAlchemy send many rows per statement ("insertmanyvalues");
            # without it psycopg2 makes one round trip per row. It also tells which rows the
            # guard let through.
            written.update(conn.execute(stmt.returning(t.c.id), group).scalars())
        return written

    def _replace_links(self, conn: sa.Connection, assoc: sa.Table, rows_by_parent: dict[int, list[dict]]) -> None:
        parents = list(rows_by_parent)
        for chunk in _chunks(parents):
            conn.execute(sa.delete(assoc).where(assoc.c.parent_id.in_(chunk)))
        rows = [{"parent_id": parent, **r} for parent, link_rows in rows_by_parent.items() for r in link_rows]
        if rows:
            conn.execute(sa.insert(assoc), rows)

    def forget(self, type_name: str, ids: Iterable[int], *, conn: sa.Connection | None = None) -> int:
        """Remove rows the cache must no longer hold (say, moved out of the cached projects)."""
        et = self.tables[type_name]
        ids = sorted(set(ids))
        removed = 0
        with self._transaction(conn) as c:
            for chunk in _chunks(ids):
                for assoc in et.associations.values():
                    c.execute(sa.delete(assoc).where(assoc.c.parent_id.in_(chunk)))
                removed += c.execute(sa.delete(et.table).where(et.table.c.id.in_(chunk))).rowcount
        return removed

    # --- retire / revive ----------------------------------------------------------------------

    def retire(self, type_name: str, ids: Iterable[int], *, event_id: int | None = None,
               conn: sa.Connection | None = None) -> int:
        """Mark cached rows retired; return how many rows changed (uncached ids are skipped)."""
        return self._set_active(type_name, ids, False, event_id, conn)

    def revive(self, type_name: str, ids: Iterable[int], *, event_id: int | None = None,
               conn: sa.Connection | None = None) -> int:
        """Mark cached rows active again; return how many rows changed."""
        return self._set_active(type_name, ids, True, event_id, conn)

    def _set_active(self, type_name: str, ids: Iterable[int], active: bool, event_id: int | None,
                    conn: sa.Connection | None) -> int:
        et = self.tables[type_name]
        t = et.table
        ids = sorted(set(ids))
        values: dict[str, Any] = {"_active": active, "_cache_updated_at": _now()}
        if event_id is not None:
            values["_last_event_id"] = event_id
        changed = 0
        with self._transaction(conn) as c:
            for chunk in _chunks(ids):
                stmt = sa.update(t).where(t.c.id.in_(chunk)).values(**values)
                if event_id is not None:
                    stmt = stmt.where(sa.or_(t.c._last_event_id.is_(None), t.c._last_event_id <= event_id))
                changed += c.execute(stmt).rowcount
        return changed
