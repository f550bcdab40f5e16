"""The handler for one field: the class registered for its data type, or an uncached one."""

from __future__ import annotations

import logging

from sgcache.fields.base import REGISTRY, FieldHandler
from sgcache.fields.uncached import CalculatedField, UnknownField
from sgcache.schema.model import Field

log = logging.getLogger(__name__)

CALCULATED_PROPERTIES = ("query", "summary_value", "calculated_function")


def is_calculated(field: Field) -> bool:
    """Query, summary and formula fields: the site computes them, the cache cannot."""
    return field.data_type in ("summary", "query", "calculated") or any(
        p in field.properties for p in CALCULATED_PROPERTIES)


_warned: set[tuple[str, str]] = set()


def make_field(type_name: str, field: Field) -> FieldHandler:
    """The handler for one field of one entity type."""
    if is_calculated(field):
        return CalculatedField(type_name, field)
    cls = REGISTRY.get(field.data_type)
    if cls is None:
        key = (type_name, field.name)
        if key not in _warned:
            _warned.add(key)
            log.warning("event=unknown_data_type entity_type=%s field=%s data_type=%s action=uncached",
                        type_name, field.name, field.data_type)
        return UnknownField(type_name, field)
    return cls(type_name, field)
