"""Wire filters (nested ``{logical_operator, conditions}`` groups) -> mockgun's list filters,
each condition checked once, without a row, so a bad filter is a Fault even on an empty table.
"""

from __future__ import annotations

import json
from typing import Any

from sgcache.mocksite.emulator import Emulator, FilterError
from sgcache.mocksite.faults import Fault
from sgcache.mocksite.values import parse_wire_datetime

RELATIONS = {
    "is", "is_not", "less_than", "greater_than", "contains", "not_contains", "starts_with", "ends_with",
    "between", "not_between", "in", "not_in", "in_last", "not_in_last", "in_next", "not_in_next",
    "in_calendar_day", "in_calendar_week", "in_calendar_month", "in_calendar_year", "type_is", "type_is_not",
    "name_contains", "name_not_contains", "name_is", "name_starts_with", "name_ends_with",
    "name_id",  # tag_list only, in the client's operator table
}
# Relations whose values are one list (the others take one value, or two for between).
LIST_RELATIONS = {"in", "not_in"}
PAIR_RELATIONS = {"between", "not_between", "in_last", "not_in_last", "in_next", "not_in_next"}
# Relations whose values are dates (relative ones take [count, unit] or an offset instead).
DATE_VALUE_RELATIONS = {"is", "is_not", "less_than", "greater_than", "between", "not_between", "in", "not_in"}


class FilterTranslator:
    """Translates and checks the filters of reads and summaries on one emulator."""

    def __init__(self, emu: Emulator):
        self.emu = emu

    def _filter_value(self, entity_type: str, path: str, relation: str, value: Any) -> Any:
        try:
            data_type = self.emu.field_type(entity_type, path)
        except FilterError as e:
            raise Fault(f"API read() {e}") from None
        if data_type == "date_time" and isinstance(value, str) and relation in DATE_VALUE_RELATIONS:
            try:
                return parse_wire_datetime(value)
            except ValueError:
                raise Fault(f"API read() {path}: {value!r} is not a YYYY-MM-DDTHH:MM:SSZ date and time") from None
        if isinstance(value, dict) and "type" in value and "id" in value:
            return {"type": value["type"], "id": value["id"]}
        return value

    def translate(self, entity_type: str, group: Any) -> tuple[list, str]:
        """Wire filters -> (mockgun list filters, logical operator)."""
        if group is None:
            return [], "all"
        if not isinstance(group, dict) or "conditions" not in group:
            raise Fault("API read() filters must be {logical_operator, conditions}")
        operator = group.get("logical_operator", "and")
        if operator not in ("and", "or"):
            raise Fault(f"API read() unknown logical_operator {operator!r} (use 'and' or 'or')")
        conditions = group["conditions"]
        if not isinstance(conditions, list):
            raise Fault("API read() conditions must be a list")
        out: list = []
        for cond in conditions:
            if isinstance(cond, dict) and "conditions" in cond:
                sub, sub_op = self.translate(entity_type, cond)
                out.append({"filter_operator": "all" if sub_op == "all" else "any", "filters": sub})
            else:
                out.append(self._condition(entity_type, cond))
        return out, "all" if operator == "and" else "any"

    def _condition(self, entity_type: str, cond: Any) -> list:
        if not isinstance(cond, dict) or not isinstance(cond.get("path"), str) \
                or not isinstance(cond.get("relation"), str) or not isinstance(cond.get("values"), list):
            raise Fault(f"API read() malformed condition {json.dumps(cond, default=str)[:120]}")
        path, relation, values = cond["path"], cond["relation"], cond["values"]
        if relation not in RELATIONS:
            raise Fault(f"API read() unknown relation {relation!r} in condition on {path}")
        values = [self._filter_value(entity_type, path, relation, v) for v in values]
        if relation in LIST_RELATIONS or relation in PAIR_RELATIONS:
            value: Any = values[0] if len(values) == 1 and isinstance(values[0], list) else values
        else:
            if len(values) != 1:
                raise Fault(f"API read() the {relation} relation on {path} takes one value, got {len(values)}")
            value = values[0]
        # Check the condition once, without a row: a bad filter is a Fault even on an empty table.
        try:
            self.emu.compare(self.emu.field_type(entity_type, path), None, relation, value)
        except FilterError as e:
            raise Fault(f"API read() {path}: {e}") from None
        return [path, relation, value]
