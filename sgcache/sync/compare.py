"""Compare the cache with the site, entity by entity and field by field.

Cached values are read the way the site reads them: a link to an entity the cache holds as
retired reads as None, and retired children drop out of multi-entity lists. Link names are not
compared (the cache stores links without them). :func:`compare_rows` compares one batch of
entities; :func:`diff` compares whole types at once (tests), ``sgcache validate``
(:mod:`sgcache.sync.validate`) compares page by page.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from sgcache import wire
from sgcache.fields.entity import EntityField, MultiEntityField
from sgcache.store.reader import read_entities
from sgcache.store.tables import Tables
from sgcache.sync.remote import Remote

#: id -> (the entity as the site returned it, whether it is active there)
SiteRows = Mapping[int, tuple[dict, bool]]

#: ids per IN (...) list: well under SQLite's limit on bound parameters
_CHUNK = 500


@dataclass(frozen=True)
class Difference:
    """One value the site and the cache disagree on. ``field`` is a field name, ``_active``
    (active on one side, retired on the other) or ``(row)`` (``present`` on one side only)."""

    entity_type: str
    entity_id: int
    field: str
    site: Any
    cache: Any

    def __str__(self) -> str:
        # JSON, so that a value reads the same as on the wire and a line can be parsed back.
        return f"{self.entity_type} {self.entity_id} {self.field}: site={_json(self.site)} cache={_json(self.cache)}"


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _wire(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return wire.format_datetime(value)
    if isinstance(value, dict) and "type" in value and "id" in value and set(value) <= {"type", "id", "name"}:
        return {"type": value["type"], "id": value["id"]}
    if isinstance(value, list):
        return [_wire(v) for v in value]
    return value


def _links(value: Any, handler) -> list[dict]:
    if isinstance(handler, MultiEntityField):
        return list(value or [])
    if isinstance(handler, EntityField) and value is not None:
        return [value]
    return []


def retired_targets(conn: sa.Connection, tables: Tables, entity_type: str, fields: Iterable[str],
                    cached: Iterable[dict]) -> dict[str, set[int]]:
    """Of the entities the cached rows link to, those the cache holds as retired, by type."""
    et = tables[entity_type]
    wanted: dict[str, set[int]] = {}
    for row in cached:
        for name in fields:
            for link in _links(row.get(name), et.fields[name]):
                if link["type"] in tables:
                    wanted.setdefault(link["type"], set()).add(link["id"])
    out: dict[str, set[int]] = {}
    for type_name, ids in wanted.items():
        t = tables[type_name].table
        ordered = sorted(ids)
        out[type_name] = set()
        for start in range(0, len(ordered), _CHUNK):
            chunk = ordered[start:start + _CHUNK]
            out[type_name].update(conn.execute(sa.select(t.c.id).where(t.c.id.in_(chunk), t.c._active.is_(False)))
                                  .scalars())
    return out


def _as_site_reads(value: Any, handler, retired: dict[str, set[int]]) -> Any:
    def gone(link: dict) -> bool:
        return link["id"] in retired.get(link["type"], ())

    if isinstance(handler, MultiEntityField):
        return [v for v in value or [] if not gone(v)]
    if isinstance(handler, EntityField) and value is not None and gone(value):
        return None
    return value


def compare_rows(conn: sa.Connection, tables: Tables, entity_type: str, fields: list[str], site: SiteRows,
                 cached: Mapping[int, dict]) -> list[Difference]:
    """Every difference among the entities of either side, by id.

    ``cached`` holds rows as :func:`~sgcache.store.reader.read_entities` returns them with
    ``include_meta``. A retired cached row the site lacks is no difference: reads never see it.
    """
    et = tables[entity_type]
    retired = retired_targets(conn, tables, entity_type, fields, cached.values())
    out: list[Difference] = []
    for entity_id in sorted(set(site) | set(cached)):
        if entity_id not in cached:
            out.append(Difference(entity_type, entity_id, "(row)", "present", "missing"))
            continue
        row = cached[entity_id]
        if entity_id not in site:
            if row["_active"]:
                out.append(Difference(entity_type, entity_id, "(row)", "missing", "present"))
            continue
        entity, active = site[entity_id]
        if row["_active"] != active:
            out.append(Difference(entity_type, entity_id, "_active", active, row["_active"]))
        for name in fields:
            site_value = _wire(entity.get(name))
            cache_value = _as_site_reads(row.get(name), et.fields[name], retired)
            if site_value != cache_value:
                out.append(Difference(entity_type, entity_id, name, site_value, cache_value))
    return out


def diff(engine: sa.Engine, tables: Tables, remote: Remote, types: list[str] | None = None,
         page_size: int = 500) -> list[Difference]:
    """Every difference between the site and the cache for the cached types (or ``types``)."""
    out: list[Difference] = []
    with engine.connect() as conn:
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
            out.extend(compare_rows(conn, tables, et.name, fields, site, cached))
    return out
