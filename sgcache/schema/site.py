"""Convert between the site's ``schema_read`` / ``schema_entity_read`` answers and a :class:`Schema`."""

from __future__ import annotations

from typing import Any

from sgcache.errors import SchemaError
from sgcache.schema.model import EntityType, Field, Schema, guess_identifier

# Site property name -> Field attribute.
_PROPERTY_ATTRS = {
    "default_value": "default",
    "summary_default": "summary_default",
    "valid_types": "entity_types",
    "valid_values": "valid_values",
}
_PROPERTY_DEFAULTS = {"default_value": None, "summary_default": "none"}


def _value(leaf: Any) -> Any:
    """A schema leaf is ``{"value": v, "editable": b}``; accept a bare value too."""
    if isinstance(leaf, dict) and "value" in leaf:
        return leaf["value"]
    return leaf


def field_from_site(name: str, info: dict) -> Field:
    data_type = _value(info.get("data_type"))
    if not isinstance(data_type, str):
        raise SchemaError(f"field {name!r} has no data_type in the site's schema")
    f = Field(
        name=name,
        data_type=data_type,
        label=_value(info.get("name")),
        description=_value(info.get("description")) or "",
        editable=bool(_value(info.get("editable", True))),
        mandatory=bool(_value(info.get("mandatory", False))),
        unique=bool(_value(info.get("unique", False))),
    )
    for prop, leaf in (info.get("properties") or {}).items():
        value = _value(leaf)
        attr = _PROPERTY_ATTRS.get(prop)
        if attr in ("entity_types", "valid_values"):
            setattr(f, attr, list(value or []))
        elif attr:
            setattr(f, attr, value)
        else:
            f.properties[prop] = value
    return f


def schema_from_site(fields_by_type: dict[str, dict], entities: dict[str, dict] | None = None,
                     header: str = "") -> Schema:
    """Build a Schema from ``schema_read()`` output and, for labels, ``schema_entity_read()``."""
    entities = entities or {}
    schema = Schema(header=header)
    for type_name in sorted(fields_by_type):
        fields = fields_by_type[type_name]
        t = EntityType(name=type_name, label=_value((entities.get(type_name) or {}).get("name")))
        for field_name in sorted(fields):
            try:
                t.fields[field_name] = field_from_site(field_name, fields[field_name])
            except SchemaError as e:
                raise SchemaError(f"{type_name}: {e}") from None
        t.identifier = guess_identifier(type_name, set(t.fields))
        schema.types[type_name] = t
    schema.validate("site schema")
    return schema


def _leaf(value: Any, editable: bool = False) -> dict:
    return {"editable": editable, "value": value}


def field_to_site(type_name: str, f: Field) -> dict:
    """The ``schema_field_read`` shape of one field."""
    props = {
        "default_value": _leaf(f.default),
        "summary_default": _leaf(f.summary_default, True),
    }
    if f.entity_types or f.data_type in ("entity", "multi_entity"):
        props["valid_types"] = _leaf(list(f.entity_types), True)
    if f.valid_values or f.data_type in ("list", "status_list"):
        props["valid_values"] = _leaf(list(f.valid_values), True)
    for key, value in f.properties.items():
        props[key] = _leaf(value, True)
    return {
        "data_type": _leaf(f.data_type),
        "description": _leaf(f.description, True),
        "editable": _leaf(f.editable),
        "entity_type": _leaf(type_name),
        "mandatory": _leaf(f.mandatory),
        "name": _leaf(f.label if f.label is not None else f.name, True),
        "properties": props,
        "unique": _leaf(f.unique),
    }


def schema_to_site(schema: Schema) -> tuple[dict[str, dict], dict[str, dict]]:
    """The (``schema_read``, ``schema_entity_read``) answers a site with this schema gives."""
    fields = {t.name: {f.name: field_to_site(t.name, f) for f in t.fields.values()} for t in schema}
    entities = {t.name: {"name": _leaf(t.label if t.label is not None else t.name)} for t in schema}
    return fields, entities
