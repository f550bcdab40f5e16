"""What changed between two schemas: new and removed types, new and removed fields, fields whose
data type changed, and types or fields whose other properties changed; one :class:`Change` each."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from sgcache.schema.model import EntityType, Field, Schema

NEW_TYPE = "new_type"
REMOVED_TYPE = "removed_type"
TYPE_PROPERTIES = "type_properties"
NEW_FIELD = "new_field"
REMOVED_FIELD = "removed_field"
DATA_TYPE = "data_type"
FIELD_PROPERTIES = "field_properties"

_WORDS = {NEW_TYPE: "new type", REMOVED_TYPE: "removed type", TYPE_PROPERTIES: "changed type",
          NEW_FIELD: "new field", REMOVED_FIELD: "removed field", DATA_TYPE: "changed data type",
          FIELD_PROPERTIES: "changed field"}


@dataclass(frozen=True)
class Change:
    """One difference; ``detail`` says what it is (a data type, ``text -> number``, the names of
    the properties that changed)."""

    kind: str
    entity_type: str
    field: str | None = None
    detail: str = ""

    @property
    def where(self) -> str:
        return self.entity_type if self.field is None else f"{self.entity_type}.{self.field}"

    def describe(self) -> str:
        """One line for a person: ``new field Shot.sg_notes (text)``."""
        return f"{_WORDS[self.kind]} {self.where}" + (f" ({self.detail})" if self.detail else "")

    def log_fields(self) -> str:
        """One line for the log, key=value: ``change=new_field entity_type=Shot field=sg_notes ...``."""
        parts = [f"change={self.kind}", f"entity_type={self.entity_type}"]
        if self.field is not None:
            parts.append(f"field={self.field}")
        if self.detail:
            parts.append(f"detail={self.detail!r}")
        return " ".join(parts)


def _differing(old: object, new: object, skip: tuple[str, ...]) -> list[str]:
    return [f.name for f in dataclasses.fields(old) if f.name not in skip
            and getattr(old, f.name) != getattr(new, f.name)]


def _field_changes(type_name: str, old: Field | None, new: Field | None) -> list[Change]:
    if old is None and new is not None:
        return [Change(NEW_FIELD, type_name, new.name, new.data_type)]
    if new is None and old is not None:
        return [Change(REMOVED_FIELD, type_name, old.name, old.data_type)]
    assert old is not None and new is not None
    if old.data_type != new.data_type:
        return [Change(DATA_TYPE, type_name, new.name, f"{old.data_type} -> {new.data_type}")]
    differing = _differing(old, new, ("name", "data_type"))
    return [Change(FIELD_PROPERTIES, type_name, new.name, ", ".join(differing))] if differing else []


def _type_changes(old: EntityType | None, new: EntityType | None) -> list[Change]:
    if old is None and new is not None:
        return [Change(NEW_TYPE, new.name, None, f"{len(new.fields)} fields")]
    if new is None and old is not None:
        return [Change(REMOVED_TYPE, old.name, None, f"{len(old.fields)} fields")]
    assert old is not None and new is not None
    differing = _differing(old, new, ("name", "fields"))
    out = [Change(TYPE_PROPERTIES, new.name, None, ", ".join(differing))] if differing else []
    for name in sorted(set(old.fields) | set(new.fields)):
        out += _field_changes(new.name, old.fields.get(name), new.fields.get(name))
    return out


def plan(old: Schema, new: Schema) -> list[Change]:
    """Every difference from ``old`` to ``new``, by type name, then field name (a new or removed
    type is one change, not one per field)."""
    out: list[Change] = []
    for name in sorted(set(old.types) | set(new.types)):
        out += _type_changes(old.types.get(name), new.types.get(name))
    return out


def keep_identifiers(in_use: Schema, wanted: Schema) -> None:
    """Give each type of ``wanted`` that ``in_use`` holds too the identifier it has there, when
    that field is still kept (or it has none): the file's may have been set by hand, and what the
    site says is only a guess (see :func:`sgcache.schema.model.guess_identifier`)."""
    for t in wanted:
        held = in_use.types.get(t.name)
        if held is not None and (held.identifier is None or held.identifier in t.fields):
            t.identifier = held.identifier
