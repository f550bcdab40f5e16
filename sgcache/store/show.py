"""Describe what the cache stores, table by table, for people (``sgcache schema show``)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from sgcache.fields import UncachedField
from sgcache.fields.entity import EntityField
from sgcache.store.tables import META_COLUMNS, EntityTable, Tables

_DIALECTS = {"postgresql": postgresql.dialect(), "sqlite": sqlite.dialect()}


def _sql_type(column: sa.Column, dialect: str) -> str:
    return column.type.compile(dialect=_DIALECTS[dialect])


def describe_type(et: EntityTable, dialect: str = "postgresql") -> str:
    """Every column and association table of one entity type, and the fields not stored."""
    t = et.table
    source = et.entity_type.identifier or "nowhere: reads of link names pass through"
    lines = [f"{et.name}: table {t.name} (link names from {source})"]
    width = max(len(c.name) for c in t.columns) + 2
    owner: dict[str, str] = {}
    for name, handler in et.fields.items():
        for column in handler.columns():
            owner[column.name] = name
    for column in t.columns:
        if column.name == "id":
            note = "primary key"
        elif column.name in META_COLUMNS:
            note = "cache metadata"
        else:
            handler = et.fields[owner[column.name]]
            note = handler.field.data_type
            if isinstance(handler, EntityField) and column.name == handler.type_column:
                note += " -> " + ", ".join(handler.field.entity_types or ["any type"])
        lines.append(f"  {column.name:<{width}}{_sql_type(column, dialect):<26}{note}")
    for field_name, assoc in sorted(et.associations.items()):
        handler = et.fields[field_name]
        targets = ", ".join(handler.field.entity_types or ["any type"])
        lines.append(f"  association table {assoc.name} ({', '.join(c.name for c in assoc.columns)}): "
                     f"{field_name} multi_entity -> {targets}")
    uncached = [h for h in et.fields.values() if isinstance(h, UncachedField)]
    for handler in sorted(uncached, key=lambda h: h.name):
        lines.append(f"  not stored: {handler.name} ({handler.field.data_type}: {handler.reason}; "
                     "reads of it pass through)")
    indexes = sorted(ix.name for table in (t, *et.associations.values()) for ix in table.indexes)
    lines.append(f"  indexes: {', '.join(indexes) or 'primary key only'}")
    return "\n".join(lines)


def summarize(tables: Tables) -> str:
    """One line per entity type: table, columns, association tables, fields not stored."""
    rows = [("TYPE", "TABLE", "COLUMNS", "ASSOCIATIONS", "NOT STORED")]
    for et in sorted(tables, key=lambda e: e.name):
        rows.append((et.name, et.table.name, str(len(et.table.columns)), str(len(et.associations)),
                     str(sum(1 for h in et.fields.values() if not h.cached))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    multi = sum(len(et.associations) for et in tables)
    lines.append(f"{len(tables.entities)} entity tables, {multi} association tables")
    return "\n".join(lines)
