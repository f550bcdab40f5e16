"""The schema the cache knows: entity types, their fields and each type's identifier field."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sgcache.errors import SchemaError, UnknownEntityType

TYPE_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*$")
# Shotgun field names are lower case; "__" and a leading "_" are reserved for sgcache's columns.
FIELD_NAME = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


@dataclass
class Field:
    """One field of an entity type, as the site describes it."""

    name: str
    data_type: str
    #: For entity and multi_entity fields: the types a link may point to.
    entity_types: list[str] = field(default_factory=list)
    #: For list and status_list fields: the allowed values.
    valid_values: list[str] = field(default_factory=list)
    label: str | None = None
    description: str = ""
    editable: bool = True
    mandatory: bool = False
    unique: bool = False
    default: Any = None
    summary_default: str = "none"
    #: Any other site property (kept so a dump loses nothing the site told us).
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass
class EntityType:
    """One entity type and the fields the cache knows for it."""

    name: str
    fields: dict[str, Field] = field(default_factory=dict)
    #: The field whose value the site returns as ``name`` in links to this type.
    identifier: str | None = None
    label: str | None = None

    def field(self, name: str) -> Field:
        try:
            return self.fields[name]
        except KeyError:
            raise SchemaError(f"{self.name} has no field {name!r} in the cached schema") from None


@dataclass
class Schema:
    """Entity types by name, plus the header comment of the file they came from."""

    types: dict[str, EntityType] = field(default_factory=dict)
    header: str = ""

    def __getitem__(self, name: str) -> EntityType:
        try:
            return self.types[name]
        except KeyError:
            raise UnknownEntityType(name) from None

    def __contains__(self, name: object) -> bool:
        return name in self.types

    def __iter__(self):
        return iter(self.types.values())

    def __len__(self) -> int:
        return len(self.types)

    def validate(self, where: str = "schema") -> None:
        """Check names and cross references; raise one SchemaError naming the first problem."""
        for t in self.types.values():
            if not TYPE_NAME.match(t.name):
                raise SchemaError(f"{where}: {t.name!r} is not a valid entity type name")
            if "id" not in t.fields:
                raise SchemaError(f"{where}: {t.name} has no 'id' field")
            for f in t.fields.values():
                if not FIELD_NAME.match(f.name):
                    raise SchemaError(f"{where}: {t.name}.{f.name}: not a valid field name "
                                      "(lower case letters, digits and single underscores)")
            if t.identifier is not None and t.identifier not in t.fields:
                raise SchemaError(f"{where}: {t.name}: identifier {t.identifier!r} is not one of its fields")


# Where the site's link ``name`` comes from when it is not the first of the usual candidates.
KNOWN_IDENTIFIERS = {
    "ActionMenuItem": "title",
    "ApiUser": "firstname",
    "Department": "name",
    "HumanUser": "name",
    "Icon": "name",
    "Note": "subject",
    "Page": "name",
    "Project": "name",
    "Reply": "content",
    "Status": "name",
    "Task": "content",
}
IDENTIFIER_CANDIDATES = ("code", "name", "content", "title", "subject", "cached_display_name")


def guess_identifier(type_name: str, field_names: set[str]) -> str | None:
    """The identifier field of a type: a known exception, else the first usual candidate it has."""
    known = KNOWN_IDENTIFIERS.get(type_name)
    if known in field_names:
        return known
    return next((c for c in IDENTIFIER_CANDIDATES if c in field_names), None)
