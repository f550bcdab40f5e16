"""The schema RPCs of the stand-in site: ``schema_read``, ``schema_entity_read``,
``schema_field_read`` and field create / update / delete, with their DisplayColumn events.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from sgcache.mocksite.accounts import Caller
from sgcache.mocksite.emulator import Emulator
from sgcache.mocksite.events import EventLog
from sgcache.mocksite.faults import Fault
from sgcache.mocksite.ledger import Ledger
from sgcache.mocksite.values import require_type
from sgcache.schema.model import Field, Schema
from sgcache.schema.site import field_to_site

#: schema_field_* property -> the Field attribute it sets (the others go to Field.properties)
FIELD_PROPERTIES = {"name": "label", "description": "description", "valid_values": "valid_values",
                    "valid_types": "entity_types", "default_value": "default", "summary_default": "summary_default"}
#: fields no schema_field_delete can remove
UNDELETABLE = ("id", "created_at", "updated_at")


def _snake(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_") or "field"


def _properties(method: str, args: dict) -> dict:
    props = args.get("properties") or []
    if not isinstance(props, list) or not all(isinstance(p, dict) and "property_name" in p for p in props):
        raise Fault(f"API {method}() properties must be [{{property_name, value}}]")
    return {p["property_name"]: p.get("value") for p in props}


def _apply_properties(f: Field, props: dict) -> None:
    for key, value in props.items():
        attribute = FIELD_PROPERTIES.get(key)
        if attribute is None:
            f.properties[key] = value
        elif key == "description":
            f.description = value or ""
        elif key in ("valid_values", "valid_types"):
            setattr(f, attribute, list(value or []))
        else:
            setattr(f, attribute, value)


def _field_name_arg(method: str, args: dict) -> str:
    name = args.get("field_name")
    if not isinstance(name, str):
        raise Fault(f"API {method}() field_name must be a string")
    return name


def _mapping(method: str, args: Any) -> dict:
    if not isinstance(args, dict):
        raise Fault(f"API {method}() expects a mapping of arguments")
    return args


@dataclass(eq=False)
class SchemaEditor:
    """Reads and edits one site's schema: the sgcache :class:`Schema` and the emulator's copy."""

    schema: Schema
    emu: Emulator
    ledger: Ledger
    events: EventLog
    #: (entity type, field) -> the id of its DisplayColumn, for schema events
    display_columns: dict[tuple[str, str], int] = field(default_factory=dict)

    def rpc_schema_read(self, caller: Caller, args: Any) -> dict:
        return copy.deepcopy(self.emu.schema_fields)

    def rpc_schema_entity_read(self, caller: Caller, args: Any) -> dict:
        return copy.deepcopy(self.emu.schema_entities)

    def rpc_schema_field_read(self, caller: Caller, args: Any) -> dict:
        args = _mapping("schema_field_read", args)
        entity_type = require_type(self.schema, "schema_field_read", args)
        name = args.get("field_name")
        if name is not None and not isinstance(name, str):
            raise Fault("API schema_field_read() field_name must be a string")
        fields = self.emu.schema_fields[entity_type]
        if name is None:
            return copy.deepcopy(fields)
        if name not in fields:
            raise Fault(f"API schema_field_read() {entity_type}.{name} doesn't exist")
        return {name: copy.deepcopy(fields[name])}

    def rpc_schema_field_create(self, caller: Caller, args: Any) -> str:
        args = _mapping("schema_field_create", args)
        entity_type = require_type(self.schema, "schema_field_create", args)
        data_type = args.get("data_type")
        from sgcache.fields import REGISTRY
        if not isinstance(data_type, str) or data_type not in REGISTRY:
            raise Fault(f"API schema_field_create() unknown data type {data_type!r}")
        props = _properties("schema_field_create", args)
        label = props.get("name")
        if not isinstance(label, str) or not label.strip():
            raise Fault("API schema_field_create() the field needs a display name")
        name = "sg_" + _snake(label)
        if name in self.schema[entity_type].fields:
            raise Fault(f"API schema_field_create() {entity_type}.{name} already exists")
        f = Field(name=name, data_type=data_type)
        _apply_properties(f, props)
        self.schema[entity_type].fields[name] = f
        default = [] if data_type == "multi_entity" else f.default
        self.emu.add_field(entity_type, name, field_to_site(entity_type, f), default)
        self._changed(caller, "New", entity_type, name, {"data_type": data_type, "human_name": label})
        return name

    def rpc_schema_field_update(self, caller: Caller, args: Any) -> bool:
        args = _mapping("schema_field_update", args)
        entity_type = require_type(self.schema, "schema_field_update", args)
        name = _field_name_arg("schema_field_update", args)
        f = self.schema[entity_type].fields.get(name)
        if f is None:
            raise Fault(f"API schema_field_update() {entity_type}.{name} doesn't exist")
        props = _properties("schema_field_update", args)
        _apply_properties(f, props)
        self.emu.describe_field(entity_type, name, field_to_site(entity_type, f))
        self._changed(caller, "Change", entity_type, name, props)
        return True

    def rpc_schema_field_delete(self, caller: Caller, args: Any) -> bool:
        args = _mapping("schema_field_delete", args)
        entity_type = require_type(self.schema, "schema_field_delete", args)
        name = _field_name_arg("schema_field_delete", args)
        if name not in self.schema[entity_type].fields or name in UNDELETABLE:
            raise Fault(f"API schema_field_delete() {entity_type}.{name} doesn't exist or can't be deleted")
        del self.schema[entity_type].fields[name]
        self.emu.drop_field(entity_type, name)
        self._changed(caller, "Delete", entity_type, name, {})
        return True

    def _changed(self, caller: Caller, action: str, entity_type: str, field_name: str, changes: dict) -> None:
        self.ledger.changed()
        key = (entity_type, field_name)
        if key not in self.display_columns:
            self.display_columns[key] = len(self.display_columns) + 1
        column_id = self.display_columns[key]
        if caller.generate_events:
            self.ledger.transaction(lambda: self.events.display_column(caller, action, entity_type, field_name,
                                                                       changes, column_id))
