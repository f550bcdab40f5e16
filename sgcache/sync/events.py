"""What an EventLogEntry says: its action, entity and field, read with pure functions.

No database and no site here: the watcher's applier (:mod:`sgcache.sync.apply`) decides from
these what one event changes in the cache.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from sgcache.fields.base import FieldHandler
from sgcache.fields.entity import EntityField, MultiEntityField
from sgcache.fields.scalar import DateTimeField
from sgcache.store.tables import EntityTable

LIFECYCLE = {"New", "Change", "Retirement", "Revival"}

#: Types whose changes may change who a caller is or what it may see on the site.
AUTH_TYPES = frozenset({"HumanUser", "ApiUser", "Project", "PermissionRuleSet", "Group"})


def aware(value: Any) -> dt.datetime | None:
    """``value`` as an aware datetime (naive ones are UTC); None for anything else."""
    if not isinstance(value, dt.datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


@dataclass(slots=True)
class Parsed:
    """What an event is about, once read."""

    action: str
    entity_type: str
    entity_id: int | None
    field: str | None


def auth_subject(event: dict) -> str | None:
    """The type an event is about, when it is one of AUTH_TYPES."""
    parts = str(event.get("event_type") or "").split("_")
    if len(parts) >= 3 and parts[0] == "Shotgun":
        type_name = "_".join(parts[1:-1])
        if type_name in AUTH_TYPES:
            return type_name
    return None


def parse(event: dict) -> Parsed | None:
    """The action, entity and field of a Shotgun lifecycle event; None for anything else."""
    parts = (event.get("event_type") or "").split("_")
    if len(parts) < 3 or parts[0] != "Shotgun" or parts[-1] not in LIFECYCLE:
        return None
    action = parts[-1]
    meta = event.get("meta") or {}
    entity = event.get("entity") or {}
    # Connection types have underscores, so the middle of the event type is only a fallback.
    entity_type = "_".join(parts[1:-1])
    if action == "Change" and "actual_attribute_changed" in meta:
        # A back reference: the entry is about the other side (entity), meta about the source.
        if not entity:
            return None
        return Parsed("Change", entity["type"], entity["id"], event.get("attribute_name"))
    if isinstance(meta, dict) and meta.get("entity_type") == entity_type:
        entity_id = meta.get("entity_id")
    else:
        entity_id = None
    if entity_id is None and entity:
        entity_id = entity.get("id")
    return Parsed(action, entity_type, entity_id, event.get("attribute_name") if action == "Change" else None)


def is_retired_back_reference(event: dict) -> bool:
    """A back reference on an entity retired at read time: ``entity`` is null, meta names the source."""
    meta = event.get("meta")
    return bool(isinstance(meta, dict) and "actual_attribute_changed" in meta and not event.get("entity")
                and (event.get("event_type") or "").endswith("_Change"))


def is_schema_event(event: dict) -> bool:
    """A change to the site's schema (a field made, changed or deleted)."""
    return (event.get("event_type") or "").startswith("Shotgun_DisplayColumn_")


def carries_value(parsed: Parsed, meta: dict, handler: FieldHandler) -> bool:
    """Whether a Change event's ``new_value`` can be written as it is, without asking the site:
    not for multi-entity lists, back references, timestamps (the client reshapes them), a
    project move, or an entity link that is not a link."""
    return (parsed.field != "project" and "new_value" in meta and "actual_attribute_changed" not in meta
            and not isinstance(handler, (MultiEntityField, DateTimeField))
            and (not isinstance(handler, EntityField) or meta["new_value"] is None
                 or isinstance(meta["new_value"], dict)))


def stamp(et: EntityTable, event: dict) -> dict:
    """updated_at / updated_by of a write, from its entry: they change without events of their
    own (the incremental scan settles any second of difference)."""
    out = {}
    if et.cached("updated_at") and event.get("created_at") is not None:
        out["updated_at"] = event["created_at"]
    if et.cached("updated_by") and isinstance(event.get("user"), dict):
        out["updated_by"] = event["user"]
    return out


def entry_json(event: dict) -> str:
    """An entry as JSON, to keep (its times as ISO 8601 with their offset)."""
    return json.dumps(event, default=_iso, sort_keys=True)


def _iso(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).isoformat()
    raise TypeError(f"not JSON: {type(value).__name__}")


def entry_from_json(text: str) -> dict:
    """An entry kept by :func:`entry_json`, as shotgun_api3 returns it: ``created_at`` an aware
    datetime in the client's local zone."""
    from shotgun_api3.shotgun import SG_TIMEZONE

    event = json.loads(text)
    created = event.get("created_at")
    if isinstance(created, str):
        event["created_at"] = dt.datetime.fromisoformat(created).astimezone(SG_TIMEZONE.local)
    return event
