"""``summarize`` for the stand-in site (mockgun has none): summaries and nested groupings.

Semantics, from the client's documentation of summarize():
- record_count counts rows; count counts rows whose field is set (not None, not empty);
- sum, maximum, minimum, average over the set values (sum of nothing is 0, the others None);
- earliest, latest: the first and last date / date_time;
- checked, unchecked: rows with the checkbox true / not true;
- percentage: the share (0-100, rounded) of rows whose field is true, or equals ``value``;
- status_percentage: the share of rows whose status equals ``value``;
- status_list: {status: number of rows};
- groupings: exact, tens ... millions, day, oneday, fivedays, week (starting Sunday), month,
  quarter, year, entitytype, firstletter; groups ordered by value (None last), ``direction`` desc
  reverses them.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from sgcache.mocksite.emulator import FilterError

if TYPE_CHECKING:
    from sgcache.mocksite.site import MockSite

SUMMARY_TYPES = {"record_count", "count", "sum", "maximum", "minimum", "average", "earliest", "latest",
                 "percentage", "status_percentage", "status_list", "checked", "unchecked"}
BUCKETS = {"tens": 10, "hundreds": 100, "thousands": 1000, "tensofthousands": 10_000,
           "hundredsofthousands": 100_000, "millions": 1_000_000}
DATE_GROUPS = {"day", "oneday", "fivedays", "week", "month", "quarter", "year"}


def _set(value: Any) -> bool:
    return value is not None and value != [] and value != ""


def _percent(part: int, whole: int) -> int:
    return round(100 * part / whole) if whole else 0


def summary_value(site: MockSite, entity_type: str, rows: list[dict], spec: dict) -> Any:
    if not isinstance(spec, dict) or not isinstance(spec.get("field"), str) or spec.get("type") not in SUMMARY_TYPES:
        raise FilterError(f"summaries must be [{{field, type}}] with a type among {', '.join(sorted(SUMMARY_TYPES))}")
    kind, path = spec["type"], spec["field"]
    if kind == "record_count":
        return len(rows)
    data_type = site.emu.field_type(entity_type, path)
    values = [site.emu._get_field_from_row(entity_type, row, path) for row in rows]
    present = [v for v in values if _set(v)]
    if kind == "count":
        return len(present)
    if kind in ("sum", "maximum", "minimum", "average"):
        if data_type not in ("number", "float", "duration", "percent", "timecode", "currency"):
            raise FilterError(f"{kind} needs a number field, {path} is {data_type}")
        if kind == "sum":
            return sum(present)
        if not present:
            return None
        return {"maximum": max, "minimum": min}.get(kind, lambda v: sum(v) / len(v))(present)
    if kind in ("earliest", "latest"):
        if data_type not in ("date", "date_time"):
            raise FilterError(f"{kind} needs a date field, {path} is {data_type}")
        if not present:
            return None
        value = min(present) if kind == "earliest" else max(present)
        return site.to_wire(entity_type, path, value)
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


def _summaries(site: MockSite, entity_type: str, rows: list[dict], specs: list) -> dict:
    return {spec["field"] if isinstance(spec, dict) else "?": summary_value(site, entity_type, rows, spec)
            for spec in specs}


def _group_key(site: MockSite, entity_type: str, row: dict, spec: dict) -> tuple[Any, Any, str]:
    """(sort key, group_value, group_name) of one row under one grouping."""
    path, kind = spec["field"], spec.get("type", "exact")
    data_type = site.emu.field_type(entity_type, path)
    value = site.emu._get_field_from_row(entity_type, row, path)
    if value is None or value == [] or value == "":
        return None, None, ""
    if kind == "exact":
        if data_type == "entity":
            name = site.emu.link_name(value)
            return ((name or "").lower(), value["type"], value["id"]), site.to_wire(entity_type, path, value), \
                name or ""
        if data_type == "multi_entity":
            raise FilterError(f"can't group by the multi-entity field {path}")
        wire = site.to_wire(entity_type, path, value)
        return value, wire, str(wire)
    if kind in BUCKETS:
        size = BUCKETS[kind]
        low = (value // size) * size
        return low, low, f"{low} - {low + size - 1}"
    if kind in DATE_GROUPS:
        if isinstance(value, dt.datetime):
            day = value.astimezone(site.emu.tz).date()
        else:
            day = dt.date.fromisoformat(value)
        if kind in ("day", "oneday"):
            start = day
        elif kind == "fivedays":
            start = dt.date.fromordinal(day.toordinal() - day.toordinal() % 5)
        elif kind == "week":
            start = day - dt.timedelta(days=(day.weekday() + 1) % 7)
        elif kind == "month":
            start = day.replace(day=1)
            return start, start.strftime("%Y-%m"), start.strftime("%B %Y")
        elif kind == "quarter":
            quarter = (day.month - 1) // 3 + 1
            return (day.year, quarter), f"{day.year} Q{quarter}", f"Q{quarter} {day.year}"
        else:
            return day.year, str(day.year), str(day.year)
        return start, start.isoformat(), start.isoformat()
    if kind == "entitytype":
        if not isinstance(value, dict):
            raise FilterError(f"entitytype grouping needs an entity field, {path} is {data_type}")
        return value["type"], value["type"], value["type"]
    if kind == "firstletter":
        text = value if isinstance(value, str) else str(site.emu.link_name(value) if isinstance(value, dict) else value)
        letter = text[:1].upper()
        return letter, letter, letter
    raise FilterError(f"unknown grouping type {kind!r}")


def _groups(site: MockSite, entity_type: str, rows: list[dict], specs: list, groupings: list) -> list[dict]:
    spec = groupings[0]
    if not isinstance(spec, dict) or not isinstance(spec.get("field"), str):
        raise FilterError("grouping must be [{field, type, direction}]")
    buckets: dict[Any, tuple[Any, Any, str, list]] = {}
    for row in rows:
        key, value, name = _group_key(site, entity_type, row, spec)
        marker = repr(key)
        if marker not in buckets:
            buckets[marker] = (key, value, name, [])
        buckets[marker][3].append(row)
    present = sorted((b for b in buckets.values() if b[0] is not None), key=lambda b: b[0],
                     reverse=spec.get("direction", "asc") == "desc")
    empty = [b for b in buckets.values() if b[0] is None]
    out = []
    for _, value, name, members in present + empty:
        group = {"group_name": name, "group_value": value,
                 "summaries": _summaries(site, entity_type, members, specs)}
        if len(groupings) > 1:
            group["groups"] = _groups(site, entity_type, members, specs, groupings[1:])
        out.append(group)
    return out


def summarize(site: MockSite, entity_type: str, rows: list[dict], specs: list, grouping: Any) -> dict:
    if not isinstance(specs, list) or not specs:
        raise FilterError("summaries must be a non-empty list of {field, type}")
    result: dict[str, Any] = {"summaries": _summaries(site, entity_type, rows, specs)}
    if grouping:
        if not isinstance(grouping, list):
            raise FilterError("grouping must be a list")
        result["groups"] = _groups(site, entity_type, rows, specs, grouping)
    else:
        result["groups"] = []
    return result
