"""The adapter over shotgun_api3's mockgun: the ONLY place that knows mockgun's internals.

mockgun keeps its rows in the private ``_db`` (type -> id -> row dict), its schema in
``_schema`` / ``_schema_entity``, builds rows with ``_get_new_row``, rewrites filters with
``_rearrange_filters`` and evaluates them through private hooks (``_row_matches_filter``,
``_row_matches_filters``, ``_get_field_from_row``, ``_get_field_type``, ``_compare``). All of
that is named here and nowhere else: the rest of the stand-in (the :class:`Emulator`
corrections, the site, its events and views) uses the public methods of :class:`MockgunStore`.
A shotgun_api3 release that changes mockgun breaks this module, and only this module.

Besides mockgun's tables, the store keeps each type's ids in order (``_ids``, for paging by id)
and the highest id each type ever had (ids never go back, even after a failed batch).
"""

from __future__ import annotations

import bisect
import contextlib
import copy
from collections.abc import Iterator
from typing import Any

from shotgun_api3.lib import mockgun

Tables = dict[str, dict[int, dict]]


class MockgunStore(mockgun.Shotgun):
    """mockgun's storage, behind public names; subclasses implement the public counterparts of
    its filter hooks: :meth:`filter_matches`, :meth:`group_matches`, :meth:`field_value`,
    :meth:`field_type` and :meth:`compare`."""

    def __init__(self, schema_fields: dict, schema_entities: dict):
        # mockgun.Shotgun.__init__ reads pickled schema files and creates an event; do its job here.
        self._schema = schema_fields
        self._schema_entity = schema_entities
        self._db: Tables = {entity_type: {} for entity_type in self._schema}
        self._ids: dict[str, list[int]] = {entity_type: [] for entity_type in self._schema}
        self.high_water: dict[str, int] = {}

    # --- schema ----------------------------------------------------------------------------------

    @property
    def schema_fields(self) -> dict:
        """``schema_read``-shaped: type -> field -> the site's description of the field."""
        return self._schema

    @property
    def schema_entities(self) -> dict:
        """``schema_entity_read``-shaped: type -> the site's description of the type."""
        return self._schema_entity

    def describe_field(self, entity_type: str, name: str, description: dict) -> None:
        """Set the site's description of a field."""
        self._schema[entity_type][name] = description

    def add_field(self, entity_type: str, name: str, description: dict, default: Any) -> None:
        """A new field: described, and set to (a copy of) ``default`` in every row."""
        self.describe_field(entity_type, name, description)
        for row in self._db[entity_type].values():
            row[name] = copy.deepcopy(default)

    def drop_field(self, entity_type: str, name: str) -> None:
        del self._schema[entity_type][name]
        for row in self._db[entity_type].values():
            row.pop(name, None)

    # --- rows -------------------------------------------------------------------------------------

    @property
    def tables(self) -> Tables:
        """Every row: type -> id -> row (the live dicts, retired rows included)."""
        return self._db

    def table(self, entity_type: str) -> dict[int, dict]:
        return self._db[entity_type]

    def has_table(self, entity_type: str) -> bool:
        return entity_type in self._db

    def row(self, entity_type: str, entity_id: Any) -> dict | None:
        """The row, or None (also for a type the store does not hold)."""
        return self._db.get(entity_type, {}).get(entity_id)

    def ids(self, entity_type: str) -> list[int]:
        """The type's ids, ascending."""
        return self._ids[entity_type]

    def blank_row(self, entity_type: str) -> dict:
        """A row holding each field's default (mockgun's own defaults)."""
        return self._get_new_row(entity_type)

    def insert_row(self, entity_type: str, row: dict) -> None:
        self._db[entity_type][row["id"]] = row
        # Like a database sequence, ids never go back, even when a failed batch removes rows.
        self.high_water[entity_type] = max(self.high_water.get(entity_type, 0), row["id"])
        ids = self._ids[entity_type]
        if not ids or row["id"] > ids[-1]:
            ids.append(row["id"])
        else:
            bisect.insort(ids, row["id"])

    def remove_row(self, entity_type: str, entity_id: int) -> None:
        self._db[entity_type].pop(entity_id, None)
        ids = self._ids[entity_type]
        if entity_id in ids:
            ids.remove(entity_id)

    def put_row(self, entity_type: str, entity_id: int, row: dict) -> None:
        """Put a row back as it was (its id is already listed)."""
        self._db[entity_type][entity_id] = row

    def next_id(self, entity_type: str) -> int:
        ids = self._ids[entity_type]
        return max(ids[-1] if ids else 0, self.high_water.get(entity_type, 0)) + 1

    @contextlib.contextmanager
    def showing(self, tables: Tables, ids: dict[str, list[int]]) -> Iterator[None]:
        """Let reads see only ``tables`` / ``ids`` (a caller's view) for the duration."""
        saved = self._db, self._ids
        self._db, self._ids = tables, ids
        try:
            yield
        finally:
            self._db, self._ids = saved

    # --- state -------------------------------------------------------------------------------------

    def dump(self) -> dict:
        """What a state file keeps of the store (the live objects: pickle them at once)."""
        return {"db": self._db, "ids": self._ids, "schema_fields": self._schema,
                "schema_entities": self._schema_entity, "high_water": self.high_water}

    def load(self, state: dict) -> None:
        """Take over a state written by :meth:`dump`."""
        self._db = state["db"]
        self._ids = state["ids"]
        self._schema = state["schema_fields"]
        self._schema_entity = state["schema_entities"]
        self.high_water = state["high_water"]

    # --- filters ------------------------------------------------------------------------------------

    def rearrange(self, filters: list) -> list:
        """mockgun's normal form: every filter ``[path, relation, value]``, a nested group
        ``[None, "all"|"any", filters]``."""
        return self._rearrange_filters(filters)

    def nested_matches(self, entity_type: str, row: dict, sg_filter: list, retired_only: bool) -> bool:
        """A nested group ``[None, "all"|"any", filters]``, as mockgun evaluates it (it checks
        the operator, then calls back :meth:`group_matches`)."""
        return super()._row_matches_filter(entity_type, row, sg_filter, retired_only)

    # mockgun's private hooks, each routed to its public counterpart.

    def _row_matches_filter(self, entity_type, row, sg_filter, retired_only):
        return self.filter_matches(entity_type, row, sg_filter, retired_only)

    def _row_matches_filters(self, entity_type, row, filters, filter_operator, retired_only):
        return self.group_matches(entity_type, row, filters, filter_operator, retired_only)

    def _get_field_from_row(self, entity_type, row, field):
        return self.field_value(entity_type, row, field)

    def _get_field_type(self, entity_type, field):
        return self.field_type(entity_type, field)

    def _compare(self, field_type, lval, operator, rval):
        return self.compare(field_type, lval, operator, rval)

    # --- what subclasses provide ----------------------------------------------------------------

    def filter_matches(self, entity_type: str, row: dict, sg_filter: list, retired_only: bool) -> bool:
        raise NotImplementedError

    def group_matches(self, entity_type: str, row: dict, filters: list, operator: str | None,
                      retired_only: bool) -> bool:
        raise NotImplementedError

    def field_value(self, entity_type: str, row: dict, field: str) -> Any:
        raise NotImplementedError

    def field_type(self, entity_type: str, field: str) -> str:
        raise NotImplementedError

    def compare(self, field_type: str, lval: Any, operator: str, rval: Any) -> bool:
        raise NotImplementedError
