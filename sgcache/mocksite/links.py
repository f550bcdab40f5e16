"""Reverse links: the site keeps both sides of a linked pair of fields in step (``Task.entity`` and
``Shot.tasks``, ``Shot.assets`` and ``Asset.shots``...), logging a back-reference event for the
side that was not written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sgcache.mocksite.accounts import Caller
from sgcache.mocksite.emulator import Emulator
from sgcache.mocksite.events import EventLog
from sgcache.mocksite.ledger import Ledger
from sgcache.schema.model import Schema

#: Type.field -> the field on the linked entity that lists it back (the site keeps both in step).
REVERSE_FIELDS = {
    ("Task", "entity"): "tasks",
    ("Shot", "assets"): "shots", ("Asset", "shots"): "assets",
    ("Version", "playlists"): "versions", ("Playlist", "versions"): "playlists",
    ("Shot", "sg_sequence"): "shots",
    ("Asset", "sequences"): "assets", ("Sequence", "assets"): "sequences",
    ("PublishedFile", "version"): "published_files",
    ("Group", "users"): "groups", ("HumanUser", "groups"): "users",
    ("Project", "users"): "projects", ("HumanUser", "projects"): "users",
    ("Reply", "entity"): "replies",
    ("Shot", "parent_shots"): "shots", ("Shot", "shots"): "parent_shots",
    ("Note", "note_links"): "notes",
    ("Note", "tasks"): "notes", ("Task", "notes"): "tasks",
    ("Asset", "parents"): "assets", ("Asset", "assets"): "parents",
    ("HumanUser", "department"): "users",
}


def reverse_fields(schema: Schema) -> dict[tuple[str, str], str]:
    """REVERSE_FIELDS for this schema, both ways: editing ``Sequence.shots`` sets ``Shot.sg_sequence``."""
    out = {}
    for (type_name, field_name), reverse in REVERSE_FIELDS.items():
        if type_name not in schema or field_name not in schema[type_name].fields:
            continue
        out[(type_name, field_name)] = reverse
        for target in schema[type_name].fields[field_name].entity_types:
            if target in schema and reverse in schema[target].fields:
                out.setdefault((target, reverse), field_name)
    return out


def _as_list(data_type: str, value: Any) -> list:
    """An entity or multi-entity value as a list of links."""
    if data_type == "multi_entity":
        return value or []
    return [value] if value else []


@dataclass(eq=False)
class ReverseLinks:
    """Sets link fields of one site's rows, and their reverse sides."""

    schema: Schema
    emu: Emulator
    ledger: Ledger
    events: EventLog
    #: (type, field) -> its reverse field, both ways (see :func:`reverse_fields`)
    reverse: dict[tuple[str, str], str] = field(init=False)

    def __post_init__(self) -> None:
        self.reverse = reverse_fields(self.schema)

    def has_reverse(self, entity_type: str, name: str) -> bool:
        return (entity_type, name) in self.reverse

    def set(self, entity_type: str, row: dict, name: str, value: Any, caller: Caller | None,
            source_event: int | None) -> tuple[list, list]:
        """Set an entity / multi-entity field and keep reverse fields in step; return (added, removed)."""
        data_type = self.schema[entity_type].fields[name].data_type
        old_links = _as_list(data_type, row.get(name))
        new_links = _as_list(data_type, value)
        removed = [link for link in old_links if link not in new_links]
        added = [link for link in new_links if link not in old_links]
        row[name] = [dict(v) for v in new_links] if data_type == "multi_entity" else \
            (dict(value) if value else None)
        reverse = self.reverse.get((entity_type, name))
        if reverse:
            me = {"type": entity_type, "id": row["id"]}
            for link, remove in [(link, True) for link in removed] + [(link, False) for link in added]:
                self._reverse_edit(link, reverse, me, remove=remove, caller=caller, source=(entity_type, name),
                                   source_event=source_event)
        return added, removed

    def _reverse_edit(self, target: dict, field_name: str, me: dict, *, remove: bool, caller: Caller | None,
                      source: tuple[str, str], source_event: int | None) -> None:
        target_type = target["type"]
        if target_type not in self.schema or field_name not in self.schema[target_type].fields:
            return
        other = self.emu.table(target_type).get(target["id"])
        if other is None:
            return
        self.ledger.touch(target_type, target["id"])
        if self.schema[target_type].fields[field_name].data_type == "multi_entity":
            changed = self._edit_list(other, field_name, me, remove)
        else:
            changed = self._edit_single(target, other, field_name, me, remove, caller, source_event)
        if changed and caller is not None and caller.generate_events and source_event is not None:
            self.events.back_reference(caller, other, field_name, me, remove, source, source_event)

    @staticmethod
    def _edit_list(other: dict, field_name: str, me: dict, remove: bool) -> bool:
        current = other.get(field_name) or []
        if (me in current) != remove:
            return False
        other[field_name] = [v for v in current if v != me] if remove else [*current, dict(me)]
        return True

    def _edit_single(self, target: dict, other: dict, field_name: str, me: dict, remove: bool,
                     caller: Caller | None, source_event: int | None) -> bool:
        current = other.get(field_name)
        if remove:
            if current != me:
                return False
            other[field_name] = None
            return True
        if current == me:
            return False
        if current:
            # The other side pointed elsewhere: that entity loses it from its own list.
            back = self.reverse.get((target["type"], field_name))
            if back:
                self._reverse_edit(current, back, {"type": target["type"], "id": target["id"]}, remove=True,
                                   caller=caller, source=(target["type"], field_name), source_event=source_event)
        other[field_name] = dict(me)
        return True
