"""Values between the wire and the stand-in's rows: checking and converting what a caller sends,
and turning stored values back into what the site answers (datetimes as strings, named links).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from typing import Any

from sgcache.mocksite.emulator import Emulator
from sgcache.mocksite.faults import Fault
from sgcache.mocksite.thumbnails import Thumbnails
from sgcache.schema.model import Field, Schema

WIRE_DATETIME = "%Y-%m-%dT%H:%M:%SZ"

#: data type -> the Python types a value of it may have (bool only where it is listed).
PLAIN_KINDS: dict[str, tuple[type, ...]] = {
    "number": (int,), "duration": (int,), "percent": (int,), "timecode": (int,),
    "float": (int, float), "currency": (int, float), "checkbox": (bool,),
    "url": (dict,), "serializable": (dict, list), "tag_list": (list,), "image": (str,),
}
#: data types the site computes: a write can't set them.
COMPUTED = {"password", "pivot_column", "summary", "query", "calculated"}


def wire_datetime(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime(WIRE_DATETIME)


def parse_wire_datetime(value: str) -> dt.datetime:
    return dt.datetime.strptime(value, WIRE_DATETIME).replace(tzinfo=dt.UTC)


def require_type(schema: Schema, method: str, args: Any, key: str = "type") -> str:
    """The entity type an RPC's arguments name; a Fault when the site has no such type."""
    entity_type = args.get(key) if isinstance(args, dict) else None
    if not isinstance(entity_type, str) or entity_type not in schema:
        raise Fault(f"API {method}() entity type {entity_type!r} doesn't exist")
    return entity_type


class _Check:
    """One wire value being checked for one field (for the messages of its faults)."""

    def __init__(self, method: str, entity_type: str, field_name: str, f: Field, value: Any):
        self.method, self.entity_type, self.field_name, self.field, self.value = \
            method, entity_type, field_name, f, value

    @property
    def where(self) -> str:
        return f"API {self.method}() {self.entity_type}.{self.field_name}"

    def bad(self, expected: str) -> Fault:
        return Fault(f"{self.where} ({self.field.data_type}) expects {expected}, "
                     f"got {json.dumps(self.value, default=str)[:80]}")


class Values:
    """Converts values for one site: its schema, and its emulator for the links' targets."""

    def __init__(self, schema: Schema, emu: Emulator, thumbnails: Thumbnails | None = None):
        self.schema = schema
        self.emu = emu
        #: signs thumbnail URLs as they are read (see sgcache.mocksite.thumbnails)
        self.thumbnails = thumbnails

    def to_row_value(self, method: str, entity_type: str, field_name: str, value: Any) -> Any:
        """A wire value -> how the emulator stores it; Fault for a value of the wrong shape."""
        if field_name not in self.schema[entity_type].fields:
            raise Fault(f"API {method}() {entity_type}.{field_name} doesn't exist")
        f = self.schema[entity_type].fields[field_name]
        if value is None:
            return [] if f.data_type == "multi_entity" else None
        check = _Check(method, entity_type, field_name, f, value)
        if f.data_type == "entity":
            return self._link(check, value)
        if f.data_type == "multi_entity":
            if not isinstance(value, list):
                raise check.bad("a list of entity links")
            out: list[dict] = []
            for v in value:
                item = self._link(check, v)
                if item not in out:
                    out.append(item)
            return out
        if f.data_type in ("date_time", "date"):
            return _temporal(check, value)
        if f.data_type in PLAIN_KINDS:
            return _plain(check, value)
        if f.data_type in COMPUTED:
            raise Fault(f"{check.where} can't be set ({f.data_type})")
        return _text(check, value)

    def _link(self, check: _Check, v: Any) -> dict:
        if not isinstance(v, dict) or not isinstance(v.get("type"), str) or isinstance(v.get("id"), bool) \
                or not isinstance(v.get("id"), int):
            raise check.bad("an entity link {type, id}")
        valid = check.field.entity_types
        if valid and v["type"] not in valid:
            raise Fault(f"{check.where} can't link to {v['type']} (valid types: {', '.join(valid)})")
        if self.emu.has_table(v["type"]) and self.emu.row(v["type"], v["id"]) is None:
            raise Fault(f"API {check.method}() {v['type']} with id {v['id']} doesn't exist")
        return {"type": v["type"], "id": v["id"]}

    def to_wire(self, entity_type: str, field_name: str, value: Any) -> Any:
        """A stored value -> the wire: datetimes as strings, links with their names."""
        if isinstance(value, dt.datetime):
            return wire_datetime(value)
        if isinstance(value, str) and self.thumbnails is not None:
            f = self.schema[entity_type].fields.get(field_name) if entity_type in self.schema else None
            if f is not None and f.data_type == "image":
                return self.thumbnails.wire(value)
        if isinstance(value, list):
            return [self.to_wire(entity_type, field_name, v) for v in value]
        if isinstance(value, dict) and isinstance(value.get("type"), str) and "id" in value and \
                self.emu.has_table(value["type"]) and set(value) <= {"type", "id", "name"}:
            return {"type": value["type"], "id": value["id"], "name": self.emu.link_name(value)}
        return value


def _temporal(check: _Check, value: Any) -> Any:
    """date_time: a datetime from the wire string; date: the YYYY-MM-DD string itself."""
    if check.field.data_type == "date_time":
        if isinstance(value, str):
            try:
                return parse_wire_datetime(value)
            except ValueError:
                pass
        raise check.bad("a YYYY-MM-DDTHH:MM:SSZ string")
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            dt.date.fromisoformat(value)
            return value
        except ValueError:
            pass
    raise check.bad("a YYYY-MM-DD string")


def _plain(check: _Check, value: Any) -> Any:
    data_type = check.field.data_type
    kinds = PLAIN_KINDS[data_type]
    if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
        raise check.bad(" or ".join(k.__name__ for k in kinds))
    if data_type in ("float", "currency"):
        return float(value)
    return copy.deepcopy(value)


def _text(check: _Check, value: Any) -> str:
    if not isinstance(value, str):
        raise check.bad("a string")
    f = check.field
    if f.data_type in ("list", "status_list") and f.valid_values and value not in f.valid_values:
        raise Fault(f"{check.where}: {value!r} is not a valid value (valid values: {', '.join(f.valid_values)})")
    return value
