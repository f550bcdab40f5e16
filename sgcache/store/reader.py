"""Read cached rows back in wire shape, by id: for validation, tooling and tests.

This is not the query compiler (no filters, no link names, no deep fields); it returns what
the writer stored, field by field, with the cache metadata under ``_``-prefixed keys.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from sgcache.store.tables import META_COLUMNS, Tables


def read_entities(conn: sa.Connection, tables: Tables, type_name: str, ids: Iterable[int] | None = None,
                  fields: Iterable[str] | None = None, include_meta: bool = False) -> list[dict[str, Any]]:
    """Cached entities of one type (all, or those with ``ids``), ordered by id."""
    et = tables[type_name]
    t = et.table
    wanted = [f for f in (fields if fields is not None else et.fields) if et.cached(f) and f != "id"]
    stmt = sa.select(t).order_by(t.c.id)
    if ids is not None:
        stmt = stmt.where(t.c.id.in_(list(ids)))
    rows = conn.execute(stmt).mappings().all()
    found = [r["id"] for r in rows]
    links: dict[str, dict[int, list]] = {}
    for name in wanted:
        handler = et.fields[name]
        if handler.association:
            assoc = et.associations[name]
            per_parent: dict[int, list] = {i: [] for i in found}
            if found:
                for r in conn.execute(sa.select(assoc).where(assoc.c.parent_id.in_(found))).mappings():
                    per_parent[r["parent_id"]].append(r)
            links[name] = per_parent
    out = []
    for r in rows:
        entity: dict[str, Any] = {"type": type_name, "id": r["id"]}
        for name in wanted:
            handler = et.fields[name]
            if handler.association:
                entity[name] = handler.from_rows(links[name][r["id"]])
            else:
                entity[name] = handler.from_db(r)
        if include_meta:
            for column in META_COLUMNS:
                entity[column] = r[column]
        out.append(entity)
    return out
