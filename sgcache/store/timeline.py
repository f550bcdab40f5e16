"""Changes as data: an entity's timeline, and what changed since a moment, from the versions the
cache keeps (sgcache.store.history). Used by ``sgcache history``, ``sgcache changes`` and their
admin routes.

A change is one field of one entity going from one value to another at the site's time of the
change: scalar fields and links compared between consecutive versions of the row, multi-entity
lists between consecutive versions of the list, and retirement and revival as the field
``retired``. Values are in the shape ``find`` returns them, links without names.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from sgcache.fields.entity import EntityField
from sgcache.store import history
from sgcache.store.tables import EntityTable, Tables

#: The pseudo-field a retirement or a revival changes (True: retired).
RETIRED = "retired"
#: Entities ``changes`` reports at most (the newest changes first).
MAX_ENTITIES = 10_000


@dataclass
class Change:
    """One field of one entity changed at ``at`` (by event ``event_id`` when an event made it)."""

    at: dt.datetime
    field: str
    old: Any
    new: Any
    event_id: int | None = None
    #: the entity's ``updated_by`` after the change, when the cache holds it
    by: dict | None = None
    #: field UNKNOWN: until when the entity's values are not known (history.mark_unsure)
    until: dt.datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {"at": self.at, "event_id": self.event_id, "by": self.by, "field": self.field, "old": self.old,
               "new": self.new}
        if self.field == UNKNOWN:
            out["until"] = self.until
        return out


#: The pseudo-field of a span in which the cache does not know the entity's values: the watcher
#: read it for event ``event_id`` only after it had changed again (see sgcache.store.history).
UNKNOWN = "unknown"


def _row_versions(conn: sa.Connection, et: EntityTable, entity_id: int) -> list[dict]:
    """Every version of the row, oldest first; the current one last (``_valid_to`` None)."""
    h = et.history
    rows = [dict(r) for r in conn.execute(sa.select(h).where(h.c.id == entity_id)
                                          .order_by(h.c._valid_to, h.c._version)).mappings()]
    current = conn.execute(sa.select(et.table).where(et.table.c.id == entity_id)).mappings().first()
    if current is not None:
        rows.append({**current, history.VALID_TO: None, history.TO_EVENT: None})
    return rows


def _list_versions(conn: sa.Connection, tables: Tables, et: EntityTable, field: str, entity_id: int
                   ) -> list[tuple[dt.datetime | None, dt.datetime | None, int | None, list[dict]]]:
    """(valid from, valid to, ending event, links) of each version of a multi-entity list, oldest
    first; the gaps between versions (the list was empty) included."""
    assoc = et.associations[field]
    h = tables.state.link_history
    groups: dict[tuple, list[dict]] = {}
    for r in conn.execute(sa.select(h).where(h.c.entity_type == et.name, h.c.field == field,
                                             h.c.parent_id == entity_id)).mappings():
        groups.setdefault((r[history.VALID_FROM], r[history.VALID_TO], r[history.TO_EVENT]), []).append(dict(r))
    for r in conn.execute(sa.select(assoc).where(assoc.c.parent_id == entity_id)).mappings():
        groups.setdefault((r[history.VALID_FROM], None, None), []).append(dict(r))

    def start(key: tuple) -> dt.datetime:
        return key[0] or dt.datetime.min.replace(tzinfo=dt.UTC)

    out: list[tuple[dt.datetime | None, dt.datetime | None, int | None, list[dict]]] = []
    for key in sorted(groups, key=start):
        rows = sorted(groups[key], key=lambda r: r["position"])
        links = [{"type": r["child_type"], "id": r["child_id"]} for r in rows]
        if out and out[-1][1] is not None and out[-1][1] < start(key):
            out.append((out[-1][1], key[0], None, []))  # emptied, then set again
        out.append((key[0], key[1], key[2], links))
    if out and out[-1][1] is not None:
        out.append((out[-1][1], None, None, []))  # emptied for good
    return out


def _value(et: EntityTable, field: str, row: dict) -> Any:
    handler = et.fields[field]
    if isinstance(handler, EntityField):
        link_id = row.get(handler.id_column)
        return None if link_id is None else {"type": row.get(handler.type_column), "id": link_id}
    return handler.from_db(row)


def _fields(et: EntityTable, field: str | None) -> tuple[list[str], list[str]]:
    """(column fields, list fields) of a timeline, every cached one or just ``field``."""
    names = [n for n in et.cached_fields() if n != "id"]
    if field is not None:
        if field != RETIRED and field not in names:
            raise KeyError(field)
        names = [field] if field != RETIRED else []
    columns = [n for n in names if not et.fields[n].association]
    return columns, [n for n in names if et.fields[n].association]


def entity_history(conn: sa.Connection, tables: Tables, type_name: str, entity_id: int,
                   field: str | None = None) -> list[Change]:
    """The changes the cache knows of one entity, oldest first (``field``: that field only, or
    ``retired``)."""
    et = tables[type_name]
    columns, lists = _fields(et, field)
    versions = _row_versions(conn, et, entity_id)
    changes: list[Change] = []
    by_field = "updated_by" if "updated_by" in et.fields and et.cached("updated_by") else None
    for before, after in zip(versions, versions[1:], strict=False):
        at = before[history.VALID_TO]
        who = _value(et, by_field, after) if by_field else None
        for name in columns:
            old, new = _value(et, name, before), _value(et, name, after)
            if old != new:
                changes.append(Change(at, name, old, new, before[history.TO_EVENT], who))
        if (field is None or field == RETIRED) and before["_active"] != after["_active"]:
            changes.append(Change(at, RETIRED, not before["_active"], not after["_active"], before[history.TO_EVENT],
                                  who))
    for name in lists:
        listed = _list_versions(conn, tables, et, name, entity_id)
        for before, after in zip(listed, listed[1:], strict=False):
            if before[3] != after[3]:
                changes.append(Change(after[0], name, before[3], after[3], before[2]))
    unsure = tables.state.history_unsure
    for start, end, event_id in conn.execute(
            sa.select(unsure.c[history.VALID_FROM], unsure.c[history.VALID_TO], unsure.c.event_id)
            .where(unsure.c.entity_type == type_name, unsure.c.entity_id == entity_id)):
        changes.append(Change(start, UNKNOWN, None, None, event_id, until=end))
    changes.sort(key=lambda c: (c.at, c.field))
    return changes


def changed_since(conn: sa.Connection, tables: Tables, since: dt.datetime, types: list[str] | None = None,
                  projects: list[int] | None = None) -> list[dict[str, Any]]:
    """What changed after ``since``: one entry per entity (type, id, the fields changed, when
    last, by whom), newest first, at most MAX_ENTITIES."""
    found: list[dict[str, Any]] = []
    for et in tables:
        if types and et.name not in types:
            continue
        ids = _changed_ids(conn, tables, et, since)
        if projects is not None and ids:
            ids = _in_projects(conn, et, ids, projects)
        for entity_id in sorted(ids):
            # (An unknown span ends at a change of its own, listed as such.)
            changes = [c for c in entity_history(conn, tables, et.name, entity_id)
                       if c.at is not None and c.at > since and c.field != UNKNOWN]
            created = _created_after(conn, et, entity_id, since)
            if not changes and not created:
                continue
            last = max([c.at for c in changes] + ([created] if created else []))
            who = next((c.by for c in reversed(changes) if c.by), None)
            found.append({"type": et.name, "id": entity_id, "created": created is not None,
                          "fields": sorted({c.field for c in changes}), "at": last, "by": who})
    found.sort(key=lambda e: (e["at"], e["type"], e["id"]), reverse=True)
    return found[:MAX_ENTITIES]


def _changed_ids(conn: sa.Connection, tables: Tables, et: EntityTable, since: dt.datetime) -> set[int]:
    ids: set[int] = set()
    t, h, links = et.table, et.history, tables.state.link_history
    ids.update(conn.execute(sa.select(t.c.id).where(t.c[history.VALID_FROM] > since)).scalars())
    ids.update(conn.execute(sa.select(h.c.id).distinct().where(h.c[history.VALID_TO] > since)).scalars())
    ids.update(conn.execute(sa.select(links.c.parent_id).distinct()
                            .where(links.c.entity_type == et.name, links.c[history.VALID_TO] > since)).scalars())
    for assoc in et.associations.values():
        ids.update(conn.execute(sa.select(assoc.c.parent_id).distinct()
                                .where(assoc.c[history.VALID_FROM] > since)).scalars())
    return ids


def _created_after(conn: sa.Connection, et: EntityTable, entity_id: int, since: dt.datetime) -> dt.datetime | None:
    """When the entity first appeared in the cache, if after ``since`` and the site made it then
    (its ``created_at``); else None."""
    if "created_at" not in et.table.c:
        return None
    created = conn.execute(sa.select(et.table.c.created_at).where(et.table.c.id == entity_id)).scalar()
    return created if created is not None and created > since else None


def _in_projects(conn: sa.Connection, et: EntityTable, ids: set[int], projects: list[int]) -> set[int]:
    if et.name == "Project":
        return ids & set(projects)
    handler = et.fields.get("project")
    if not isinstance(handler, EntityField) or not handler.cached:
        return set()
    t = et.table
    kept: set[int] = set()
    listed = sorted(ids)
    for start in range(0, len(listed), 1000):
        kept.update(conn.execute(sa.select(t.c.id).where(t.c.id.in_(listed[start:start + 1000]),
                                                         t.c[handler.id_column].in_(projects))).scalars())
    return kept
