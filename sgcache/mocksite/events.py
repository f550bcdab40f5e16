"""EventLogEntry rows, shaped as a hosted site writes them (see docs/mocksite.rst, "Event log").

Each method appends one entry (ids in write order) through the site's undo log, so a failed
batch leaves no events behind. A site whose schema has no EventLogEntry type logs nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sgcache.mocksite.accounts import Caller
from sgcache.mocksite.emulator import Emulator
from sgcache.mocksite.ledger import Ledger
from sgcache.schema.model import Schema

EVENT_TYPE = "EventLogEntry"
_VERBS = {"New": "created", "Change": "changed", "Delete": "deleted"}


class EventLog:
    """Writes the event log of one site: its schema, rows (``emu``), transactions (``ledger``)
    and how stored values look on the wire (``to_wire``)."""

    def __init__(self, schema: Schema, emu: Emulator, ledger: Ledger, to_wire: Callable[[str, str, Any], Any]):
        self.schema = schema
        self.emu = emu
        self.ledger = ledger
        self.to_wire = to_wire

    def _enabled(self) -> bool:
        return EVENT_TYPE in self.schema

    def reserve(self) -> int | None:
        """Take the next event id now (its entry is filled in later by another function)."""
        if not self._enabled():
            return None
        entry_id = self.emu.next_id(EVENT_TYPE)
        self.ledger.touch(EVENT_TYPE, entry_id)
        row = {"type": EVENT_TYPE, "id": entry_id, "__retired": False}
        self.emu.insert_row(EVENT_TYPE, row)
        return entry_id

    def _write(self, caller: Caller, *, event_type: str, entity: dict | None, attribute_name: str | None,
               meta: dict, project: dict | None, description: str, entry_id: int | None = None) -> int | None:
        if not self._enabled():
            return None
        if entry_id is None:
            entry_id = self.reserve()
        fields = self.schema[EVENT_TYPE].fields
        values: dict[str, Any] = {
            "event_type": event_type,
            "attribute_name": attribute_name,
            "meta": meta,
            "entity": {"type": entity["type"], "id": entity["id"]} if entity else None,
            "project": {"type": "Project", "id": project["id"]} if project else None,
            "user": dict(caller.user),
            "session_uuid": caller.session_uuid,
            "created_at": self.ledger.now(),
            "description": description,
            "cached_display_name": description,
        }
        if caller.actual is not None:
            meta["sudo_actual_user"] = {**caller.actual, "name": self.emu.link_name(caller.actual)}
        row = self.emu.table(EVENT_TYPE)[entry_id]
        for name, value in values.items():
            if name in fields:
                row[name] = value
        return entry_id

    def _who(self, caller: Caller) -> str:
        kind = "Script" if caller.user["type"] == "ApiUser" else "User"
        return f"{kind} {self.emu.link_name(caller.user)}"

    def _display(self, entity_type: str, row: dict) -> str:
        name = self.emu.link_name({"type": entity_type, "id": row["id"]})
        return f"{entity_type} {name if name is not None else '#' + str(row['id'])}"

    def _project(self, entity_type: str, row: dict) -> dict | None:
        if entity_type == "Project":
            return {"type": "Project", "id": row["id"]}
        project = row.get("project")
        return project if isinstance(project, dict) and project.get("type") == "Project" else None

    def new_entity(self, caller: Caller, entity_type: str, row: dict) -> int | None:
        return self._write(caller, event_type=f"Shotgun_{entity_type}_New", entity=row, attribute_name=None,
                           meta={"type": "new_entity", "entity_type": entity_type, "entity_id": row["id"]},
                           project=self._project(entity_type, row),
                           description=f"{self._who(caller)} created new {self._display(entity_type, row)}")

    def attribute_change(self, caller: Caller, entity_type: str, row: dict, field_name: str, old: Any,
                         new: Any, *, in_create: bool = False, event_id: int | None = None,
                         added: list | None = None, removed: list | None = None,
                         extra: dict | None = None) -> int | None:
        data_type = self.schema[entity_type].fields[field_name].data_type
        meta: dict[str, Any] = {"type": "attribute_change", "attribute_name": field_name, "entity_type": entity_type,
                                "entity_id": row["id"], "field_data_type": data_type}
        if data_type == "multi_entity":
            meta["added"] = [self.to_wire(entity_type, field_name, v) for v in (added or [])]
            meta["removed"] = [self.to_wire(entity_type, field_name, v) for v in (removed or [])]
        else:
            meta["old_value"] = self.to_wire(entity_type, field_name, old)
            meta["new_value"] = self.to_wire(entity_type, field_name, new)
        if in_create:
            meta["in_create"] = True
        if extra:
            meta.update(extra)
        label = self.schema[entity_type].fields[field_name].label or field_name
        return self._write(caller, event_type=f"Shotgun_{entity_type}_Change", entity=row, attribute_name=field_name,
                           meta=meta, project=self._project(entity_type, row), entry_id=event_id,
                           description=f"{self._who(caller)} changed \"{label}\" on {self._display(entity_type, row)}")

    def back_reference(self, caller: Caller, other: dict, field_name: str, me: dict, removed: bool,
                       source: tuple[str, str], source_event: int) -> int | None:
        """The reverse side of a link changed: the entry is about ``other``; meta describes ``me``."""
        source_type, source_field = source
        link = self.to_wire(me["type"], source_field, me)
        meta = {"type": "attribute_change", "attribute_name": field_name, "entity_type": me["type"],
                "entity_id": me["id"], "field_data_type": self.schema[source_type].fields[source_field].data_type,
                "actual_attribute_changed": f"{source_type}.{source_field}",
                "original_event_log_entry_id": source_event,
                "added": [] if removed else [link], "removed": [link] if removed else []}
        other_type = other["type"]
        return self._write(caller, event_type=f"Shotgun_{other_type}_Change", entity=other, attribute_name=field_name,
                           meta=meta, project=self._project(other_type, other),
                           description=f"{self._who(caller)} changed \"{field_name}\" on "
                                       f"{self._display(other_type, other)} (via {source_type}.{source_field})")

    def _retirement_meta(self, entity_type: str, row: dict) -> dict:
        return {"class_name": entity_type, "display_name": self.emu.link_name({"type": entity_type, "id": row["id"]}),
                "entity_id": row["id"], "entity_type": entity_type, "id": row["id"]}

    def retirement(self, caller: Caller, entity_type: str, row: dict) -> int | None:
        meta = {"type": "entity_retirement", **self._retirement_meta(entity_type, row),
                "retirement_date": self.ledger.now().astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")}
        # The entry names the entity, but the site returns entity null while it is retired.
        return self._write(caller, event_type=f"Shotgun_{entity_type}_Retirement", entity=row, attribute_name=None,
                           meta=meta, project=self._project(entity_type, row),
                           description=f"{self._who(caller)} retired {self._display(entity_type, row)}")

    def revival(self, caller: Caller, entity_type: str, row: dict) -> int | None:
        return self._write(caller, event_type=f"Shotgun_{entity_type}_Revival", entity=row, attribute_name=None,
                           meta=self._retirement_meta(entity_type, row), project=self._project(entity_type, row),
                           description=f"{self._who(caller)} revived {self._display(entity_type, row)}")

    def display_column(self, caller: Caller, action: str, entity_type: str, field_name: str,
                       changes: dict, column_id: int) -> int | None:
        """Schema change: ``Shotgun_DisplayColumn_New|Change|Delete``. The stand-in has no DisplayColumn
        entities, so the owning type and field travel in meta (``entity_type_owner``, ``field_name``)."""
        meta = {"type": {"New": "new_entity", "Change": "attribute_change", "Delete": "entity_retirement"}[action],
                "entity_type": "DisplayColumn", "entity_id": column_id,
                "entity_type_owner": entity_type, "field_name": field_name,
                "attributes": sorted(changes)}
        return self._write(caller, event_type=f"Shotgun_DisplayColumn_{action}", entity=None,
                           attribute_name=None, meta=meta, project=None,
                           description=f"{self._who(caller)} {_VERBS[action]} field {entity_type}.{field_name}")

