"""Slim records: type, id, name, retired flag and project of every entity of the types the schema
file leaves out, so a link to any type is answered with its name and liveness from the cache.

Two tables hold them (made by ``sgcache schema migrate`` with the other state tables):
``_sgcache_slim`` (one row per entity) and ``_sgcache_slim_types`` (one row per type: the field
that names its links, whether it has a project, and when its listing last completed; reads trust
a type only once a full listing of it has completed). Every write is stamped with the event it
came from, and a stamp never goes backwards: a listing read before an event cannot undo it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from sgcache import wire
from sgcache.fields.types import UTCDateTime

#: the data types a slim record's name may come from (the others name no links from the cache)
NAME_TYPES = frozenset({"text", "entity_type", "list", "status_list", "uuid", "url_template", "color", "footage"})


@dataclass(frozen=True)
class SlimType:
    """A type held as slim records: the field naming its links (None: links have no name)."""

    name: str
    identifier: str | None
    has_project: bool
    #: whether the type has ``updated_at`` (scans find its changes; else it is listed again)
    has_updated_at: bool = True


def define(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    records = sa.Table(
        "_sgcache_slim", metadata,
        sa.Column("entity_type", sa.Text, primary_key=True),
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("name", sa.Text),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("project_id", sa.BigInteger),
        sa.Column("last_event_id", sa.BigInteger),
        sa.Column("updated_at", UTCDateTime),
        sa.Column("cached_at", UTCDateTime, nullable=False),
    )
    types = sa.Table(
        "_sgcache_slim_types", metadata,
        sa.Column("entity_type", sa.Text, primary_key=True),
        sa.Column("identifier", sa.Text),
        sa.Column("has_project", sa.Boolean, nullable=False),
        sa.Column("has_updated_at", sa.Boolean, nullable=False),
        # a full listing completed (reads trust only such types)
        sa.Column("full_scan_at", UTCDateTime),
        # the newest updated_at a scan has seen
        sa.Column("watermark", UTCDateTime),
        sa.Column("last_scan_at", UTCDateTime),
        # why the type cannot be listed (the site refused it), if it cannot
        sa.Column("error", sa.Text),
    )
    return records, types


def ready_types(conn: sa.Connection, types: sa.Table) -> dict[str, SlimType]:
    """The types whose full listing completed, by name."""
    rows = conn.execute(sa.select(types.c.entity_type, types.c.identifier, types.c.has_project,
                                  types.c.has_updated_at).where(types.c.full_scan_at.is_not(None)))
    return {r[0]: SlimType(r[0], r[1], bool(r[2]), bool(r[3])) for r in rows}


def record(entity: dict, slim: SlimType, *, active: bool) -> dict:
    """The slim record of an entity as the site's ``find`` returns it."""
    return {"entity_type": slim.name, "id": entity["id"],
            "name": name_of(entity.get(slim.identifier)) if slim.identifier else None,
            "active": active,
            "project_id": project_of(entity.get("project")) if slim.has_project else None}


def name_of(value: Any) -> str | None:
    """A name as the site's wire carries it (shotgun_api3 turns text shaped like a UTC time into
    a datetime; that shape is the only one it converts, so it is turned back exactly)."""
    if isinstance(value, dt.datetime):
        return wire.format_datetime(value)
    return value if isinstance(value, str) else None


def project_of(value: Any) -> int | None:
    return value.get("id") if isinstance(value, dict) and value.get("type") == "Project" else None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def chunks(items: list, size: int = 500) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def upsert(conn: sa.Connection, records: sa.Table, rows: Iterable[dict], *, event_id: int | None,
           fields: tuple[str, ...] = ("name", "active", "project_id")) -> int:
    """Insert or update slim records (only ``fields`` of existing ones); a row stamped with a later
    event is left alone. Return how many rows were written."""
    rows = list(rows)
    if not rows:
        return 0
    now = _now()
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    written = 0
    for chunk in chunks(rows):
        values = [{"name": None, "active": True, "project_id": None, **r, "last_event_id": event_id,
                   "cached_at": now} for r in chunk]
        stmt = insert(records).values(values)
        newer = records.c.last_event_id
        guard = sa.true() if event_id is None else sa.or_(newer.is_(None), newer <= event_id)
        stmt = stmt.on_conflict_do_update(
            index_elements=[records.c.entity_type, records.c.id],
            set_={**{f: stmt.excluded[f] for f in fields},
                  "last_event_id": sa.func.coalesce(stmt.excluded.last_event_id, records.c.last_event_id),
                  "cached_at": stmt.excluded.cached_at},
            where=guard)
        written += conn.execute(stmt).rowcount or 0
    return written


def set_active(conn: sa.Connection, records: sa.Table, type_name: str, ids: list[int], active: bool, *,
               event_id: int | None) -> int:
    """Retire or revive held records (not stamped by a later event); return how many changed."""
    newer = records.c.last_event_id
    stmt = (sa.update(records).where(records.c.entity_type == type_name, records.c.id.in_(ids))
            .values(active=active, last_event_id=sa.func.coalesce(sa.literal(event_id, sa.BigInteger), newer),
                    cached_at=_now()))
    if event_id is not None:
        stmt = stmt.where(sa.or_(newer.is_(None), newer <= event_id))
    return conn.execute(stmt).rowcount or 0


def retire_missing(conn: sa.Connection, records: sa.Table, type_name: str, seen: set[int], *,
                   as_of: int | None) -> int:
    """Retire the held records a full listing did not show (deleted for good, or never existed)."""
    held = set(conn.execute(sa.select(records.c.id).where(records.c.entity_type == type_name,
                                                          records.c.active.is_(True))).scalars())
    missing = sorted(held - seen)
    count = 0
    for chunk in chunks(missing):
        count += set_active(conn, records, type_name, chunk, False, event_id=as_of)
    return count


def save_type(conn: sa.Connection, types: sa.Table, type_name: str, **values) -> None:
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(types).values(entity_type=type_name, **values)
    conn.execute(stmt.on_conflict_do_update(index_elements=[types.c.entity_type],
                                            set_={k: stmt.excluded[k] for k in values}))


def update_type(conn: sa.Connection, types: sa.Table, type_name: str, **values) -> None:
    conn.execute(sa.update(types).where(types.c.entity_type == type_name).values(**values))
