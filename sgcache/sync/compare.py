"""Compare the cache with the site, entity by entity and field by field.

Cached values are read the way the site reads them: a link to an entity the cache holds as
retired reads as None, and retired children drop out of multi-entity lists. Link names are not
compared (the cache stores links without them). Used by tests; ``sgcache validate`` will grow
from it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from sgcache.fields.entity import EntityField, MultiEntityField
from sgcache.store.reader import read_entities
from sgcache.store.tables import Tables
from sgcache.sync.remote import Remote


@dataclass(frozen=True)
class Difference:
    entity_type: str
    entity_id: int
    field: str
    site: Any
    cache: Any

    def __str__(self) -> str:
        return f"{self.entity_type} {self.entity_id} {self.field}: site={self.site!r} cache={self.cache!r}"


def _wire(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, dict) and "type" in value and "id" in value and set(value) <= {"type", "id", "name"}:
        return {"type": value["type"], "id": value["id"]}
    if isinstance(value, list):
        return [_wire(v) for v in value]
    return value


def _retired_ids(conn: sa.Connection, tables: Tables) -> dict[str, set[int]]:
    out = {}
    for et in tables:
        t = et.table
        out[et.name] = set(conn.execute(sa.select(t.c.id).where(t.c._active.is_(False))).scalars())
    return out


def _as_site_reads(value: Any, handler, retired: dict[str, set[int]]) -> Any:
    def gone(link: dict) -> bool:
        return link["id"] in retired.get(link["type"], ())

    if isinstance(handler, MultiEntityField):
        return [v for v in value or [] if not gone(v)]
    if isinstance(handler, EntityField) and value is not None and gone(value):
        return None
    return value


def diff(engine: sa.Engine, tables: Tables, remote: Remote, types: list[str] | None = None,
         page_size: int = 500) -> list[Difference]:
    """Every difference between the site and the cache for the cached types (or ``types``)."""
    out: list[Difference] = []
    with engine.connect() as conn:
        retired = _retired_ids(conn, tables)
        for et in tables:
            if types and et.name not in types:
                continue
            fields = [name for name in et.cached_fields() if name != "id"]
            site: dict[int, tuple[dict, bool]] = {}
            for is_retired in (False, True):
                for page in remote.pages(et.name, fields, [], retired=is_retired, page_size=page_size):
                    for entity in page:
                        site[entity["id"]] = (entity, not is_retired)
            cached = {e["id"]: e for e in read_entities(conn, tables, et.name, fields=fields, include_meta=True)}
            for entity_id in sorted(set(site) | set(cached)):
                if entity_id not in cached:
                    out.append(Difference(et.name, entity_id, "(row)", "present", "missing"))
                    continue
                if entity_id not in site:
                    if cached[entity_id]["_active"]:
                        out.append(Difference(et.name, entity_id, "(row)", "missing", "present"))
                    continue
                entity, active = site[entity_id]
                if cached[entity_id]["_active"] != active:
                    out.append(Difference(et.name, entity_id, "_active", active, cached[entity_id]["_active"]))
                for name in fields:
                    site_value = _wire(entity.get(name))
                    cache_value = _as_site_reads(cached[entity_id].get(name), et.fields[name], retired)
                    if site_value != cache_value:
                        out.append(Difference(et.name, entity_id, name, site_value, cache_value))
    return out
