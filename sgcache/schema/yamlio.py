"""Schema files in and out: a human-readable, diffable YAML format, loaded and dumped losslessly.

Layout (one line per field; a field that is nothing but its type is written as ``name: type``)::

    # header comment lines
    Shot:
      label: Shot
      identifier: code
      fields:
        code: {type: text, label: Shot Code, mandatory: true}
        id: {type: number, label: Id, editable: false}
        sg_sequence: {type: entity, label: Sequence, entity_types: [Sequence]}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from sgcache.errors import SchemaError
from sgcache.files import read_text
from sgcache.schema.model import EntityType, Field, Schema

#: libyaml's safe loader when PyYAML was built with it (several times faster on a 77-type schema).
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# Field keys in the order they are written, with the value that is left out as the default.
_FIELD_DEFAULTS: dict[str, Any] = {
    "label": None,
    "entity_types": [],
    "valid_values": [],
    "default": None,
    "summary_default": "none",
    "description": "",
    "editable": True,
    "mandatory": False,
    "unique": False,
    "properties": {},
}
_YAML_TO_ATTR = {"type": "data_type"}
_TYPE_KEYS = ("label", "identifier", "fields")


class _FlowMap(dict):
    """A mapping written on one line."""


class _Dumper(yaml.SafeDumper):
    pass


def _represent_flow(dumper: yaml.SafeDumper, data: _FlowMap):
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=True)


_Dumper.add_representer(_FlowMap, _represent_flow)


def _field_to_yaml(f: Field) -> Any:
    out: dict[str, Any] = {"type": f.data_type}
    for key, default in _FIELD_DEFAULTS.items():
        value = getattr(f, key)
        if value != default:
            out[key] = value
    if len(out) == 1:
        return f.data_type
    return _FlowMap(out)


def dumps(schema: Schema) -> str:
    """The YAML text of a schema, header comment first."""
    body: dict[str, Any] = {}
    for t in schema.types.values():
        entry: dict[str, Any] = {}
        if t.label is not None:
            entry["label"] = t.label
        entry["identifier"] = t.identifier
        entry["fields"] = {name: _field_to_yaml(f) for name, f in sorted(t.fields.items())}
        body[t.name] = entry
    text = yaml.dump(body, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1 << 20,
                     default_flow_style=False)
    header = "".join(f"# {line}".rstrip() + "\n" for line in schema.header.splitlines()) if schema.header else ""
    return header + text


def dump(schema: Schema, path: str | Path) -> None:
    Path(path).write_text(dumps(schema), encoding="utf-8")


def _read_header(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if line.startswith("#"):
            lines.append(line[2:] if line.startswith("# ") else line[1:])
        elif line.strip():
            break
    return "\n".join(lines)


def _field_from_yaml(where: str, name: str, raw: Any) -> Field:
    if isinstance(raw, str):
        return Field(name=name, data_type=raw)
    if not isinstance(raw, dict):
        raise SchemaError(f"{where}: expected a data type or a mapping with 'type'")
    if "type" not in raw or not isinstance(raw["type"], str):
        raise SchemaError(f"{where}: 'type' (the field's data type) is required")
    kwargs: dict[str, Any] = {"name": name, "data_type": raw["type"]}
    for key, value in raw.items():
        if key == "type":
            continue
        if key not in _FIELD_DEFAULTS:
            raise SchemaError(f"{where}: unknown key {key!r} (known: type, {', '.join(_FIELD_DEFAULTS)})")
        expected = type(_FIELD_DEFAULTS[key]) if _FIELD_DEFAULTS[key] is not None else None
        if key == "label" and value is not None and not isinstance(value, str):
            raise SchemaError(f"{where}: label: expected a string")
        if expected is list and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise SchemaError(f"{where}: {key}: expected a list of strings")
        if expected in (bool, str, dict) and not isinstance(value, expected):
            raise SchemaError(f"{where}: {key}: expected a {expected.__name__}")
        kwargs[_YAML_TO_ATTR.get(key, key)] = value
    return Field(**kwargs)


def loads(text: str, where: str = "schema") -> Schema:
    """Parse schema YAML; every problem is one SchemaError naming the file and the key."""
    try:
        data = yaml.load(text, Loader=_SafeLoader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark else ""
        raise SchemaError(f"{where}: not valid YAML{line}: {getattr(e, 'problem', None) or e}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SchemaError(f"{where}: expected a mapping of entity types")
    schema = Schema(header=_read_header(text))
    for type_name, entry in data.items():
        at = f"{where}: {type_name}"
        if not isinstance(type_name, str):
            raise SchemaError(f"{where}: entity type names must be strings, got {type_name!r}")
        if not isinstance(entry, dict):
            raise SchemaError(f"{at}: expected a mapping with 'identifier' and 'fields'")
        unknown = set(entry) - set(_TYPE_KEYS)
        if unknown:
            raise SchemaError(f"{at}: unknown key {sorted(unknown)[0]!r} (known: {', '.join(_TYPE_KEYS)})")
        fields = entry.get("fields") or {}
        if not isinstance(fields, dict):
            raise SchemaError(f"{at}.fields: expected a mapping of field names")
        identifier = entry.get("identifier")
        if identifier is not None and not isinstance(identifier, str):
            raise SchemaError(f"{at}.identifier: expected a field name")
        label = entry.get("label")
        if label is not None and not isinstance(label, str):
            raise SchemaError(f"{at}.label: expected a string")
        t = EntityType(name=type_name, identifier=identifier, label=label)
        for field_name, raw in fields.items():
            t.fields[str(field_name)] = _field_from_yaml(f"{at}.{field_name}", str(field_name), raw)
        schema.types[type_name] = t
    schema.validate(where)
    return schema


def load(path: str | Path) -> Schema:
    path = Path(path)
    return loads(read_text(path, "schema file", SchemaError), where=str(path))
