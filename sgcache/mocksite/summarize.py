"""``summarize`` for the stand-in site (mockgun has none): summaries and nested groupings.

Semantics, from the client's documentation of summarize():
- record_count counts rows; count counts rows whose field is set (not None, not empty);
- sum, maximum, minimum, average over the set values (sum of nothing is 0, the others None);
- earliest, latest: the first and last date / date_time;
- checked, unchecked: rows with the checkbox true / not true;
- percentage: the share (0-100, rounded) of rows whose field is true, or equals ``value``;
- status_percentage: the share of rows whose status equals ``value``;
- status_list: {status: number of rows};
- groupings (:mod:`sgcache.mocksite.grouping`): exact, tens ... millions, day, oneday, fivedays,
  week (starting Sunday), month, quarter, year, entitytype, firstletter; groups ordered by value
  (None last), ``direction`` desc reverses them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sgcache.mocksite.emulator import Emulator, FilterError
from sgcache.mocksite.grouping import Grouper

SUMMARY_TYPES = {"record_count", "count", "sum", "maximum", "minimum", "average", "earliest", "latest",
                 "percentage", "status_percentage", "status_list", "checked", "unchecked"}
NUMBER_TYPES = ("number", "float", "duration", "percent", "timecode", "currency")


def _set(value: Any) -> bool:
    return value is not None and value != [] and value != ""


def _percent(part: int, whole: int) -> int:
    return round(100 * part / whole) if whole else 0


def _numbers(kind: str, present: list) -> Any:
    if kind == "sum":
        return sum(present)
    if not present:
        return None
    return {"maximum": max, "minimum": min}.get(kind, lambda v: sum(v) / len(v))(present)


class Summarizer:
    """Summaries of rows of one emulator; ``to_wire`` turns stored values into wire values."""

    def __init__(self, emu: Emulator, to_wire: Callable[[str, str, Any], Any]):
        self.emu = emu
        self.to_wire = to_wire

    def summary_value(self, entity_type: str, rows: list[dict], spec: dict) -> Any:
        if not isinstance(spec, dict) or not isinstance(spec.get("field"), str) \
                or spec.get("type") not in SUMMARY_TYPES:
            raise FilterError(f"summaries must be [{{field, type}}] with a type among "
                              f"{', '.join(sorted(SUMMARY_TYPES))}")
        kind, path = spec["type"], spec["field"]
        if kind == "record_count":
            return len(rows)
        data_type = self.emu.field_type(entity_type, path)
        values = [self.emu.field_value(entity_type, row, path) for row in rows]
        present = [v for v in values if _set(v)]
        if kind == "count":
            return len(present)
        if kind in ("sum", "maximum", "minimum", "average"):
            if data_type not in NUMBER_TYPES:
                raise FilterError(f"{kind} needs a number field, {path} is {data_type}")
            return _numbers(kind, present)
        if kind in ("earliest", "latest"):
            if data_type not in ("date", "date_time"):
                raise FilterError(f"{kind} needs a date field, {path} is {data_type}")
            if not present:
                return None
            return self.to_wire(entity_type, path, min(present) if kind == "earliest" else max(present))
        if kind in ("checked", "unchecked"):
            checked = sum(1 for v in values if v is True)
            return checked if kind == "checked" else len(values) - checked
        if kind == "percentage":
            target = spec.get("value", True)
            return _percent(sum(1 for v in values if v == target), len(values))
        if kind == "status_percentage":
            return _percent(sum(1 for v in values if v == spec.get("value")), len(values))
        counts: dict[str, int] = {}
        for v in present:
            counts[v] = counts.get(v, 0) + 1
        return counts

    def _summaries(self, entity_type: str, rows: list[dict], specs: list) -> dict:
        return {spec["field"] if isinstance(spec, dict) else "?": self.summary_value(entity_type, rows, spec)
                for spec in specs}

    def _groups(self, entity_type: str, rows: list[dict], specs: list, groupings: list) -> list[dict]:
        spec = groupings[0]
        if not isinstance(spec, dict) or not isinstance(spec.get("field"), str):
            raise FilterError("grouping must be [{field, type, direction}]")
        path, kind = spec["field"], spec.get("type", "exact")
        grouper = Grouper(self.emu.link_name, self.to_wire, self.emu.tz)
        buckets: dict[Any, tuple[Any, Any, str, list]] = {}
        for row in rows:
            data_type = self.emu.field_type(entity_type, path)
            value = self.emu.field_value(entity_type, row, path)
            key, group_value, name = grouper.group(entity_type, path, data_type, kind, value)
            marker = repr(key)
            if marker not in buckets:
                buckets[marker] = (key, group_value, name, [])
            buckets[marker][3].append(row)
        present = sorted((b for b in buckets.values() if b[0] is not None), key=lambda b: b[0],
                         reverse=spec.get("direction", "asc") == "desc")
        empty = [b for b in buckets.values() if b[0] is None]
        out = []
        for _, value, name, members in present + empty:
            group = {"group_name": name, "group_value": value,
                     "summaries": self._summaries(entity_type, members, specs)}
            if len(groupings) > 1:
                group["groups"] = self._groups(entity_type, members, specs, groupings[1:])
            out.append(group)
        return out

    def summarize(self, entity_type: str, rows: list[dict], specs: list, grouping: Any) -> dict:
        if not isinstance(specs, list) or not specs:
            raise FilterError("summaries must be a non-empty list of {field, type}")
        result: dict[str, Any] = {"summaries": self._summaries(entity_type, rows, specs)}
        if grouping:
            if not isinstance(grouping, list):
                raise FilterError("grouping must be a list")
            result["groups"] = self._groups(entity_type, rows, specs, grouping)
        else:
            result["groups"] = []
        return result
