"""``summarize`` answered from the cache: the matching rows come from SQL, the totals are counted here.

The filters compile exactly as for ``read``; the values of the summarized and grouped fields are
fetched in batches, and the summaries and groups are computed with the site's rules:

* ``record_count`` counts rows; ``count`` counts rows whose value is set (not null, not empty);
* ``sum``, ``maximum``, ``minimum``, ``average`` take set numbers (the sum of none is 0, the others
  null); ``earliest`` / ``latest`` take dates and date-times;
* ``checked`` / ``unchecked`` count checkboxes that are / are not true; ``percentage`` and
  ``status_percentage`` give the rounded share of rows equal to ``value`` (true by default);
  ``status_list`` counts each status;
* groups (``exact``, ``tens`` ... ``millions``, ``day``, ``oneday``, ``fivedays``, ``week`` from
  Sunday, ``month``, ``quarter``, ``year``, ``entitytype``, ``firstletter``) are ordered by value,
  reversed for ``direction: desc``, with the empty group last.

Anything outside these rules raises :class:`~sgcache.query.Uncertain` (the site decides).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from sgcache.query import Uncertain
from sgcache.query.filters import group
from sgcache.query.paths import Context, Scope
from sgcache.query.read import FieldPlans, Values, _archived_filter, plan_fields
from sgcache.store.tables import EntityTable

SUMMARY_FAMILIES = {
    "record_count": None, "count": None,
    "sum": {"number"}, "maximum": {"number"}, "minimum": {"number"}, "average": {"number"},
    "earliest": {"date", "date_time"}, "latest": {"date", "date_time"},
    "checked": {"checkbox"}, "unchecked": {"checkbox"},
    "percentage": {"text", "number", "checkbox"}, "status_percentage": {"text"}, "status_list": {"text"},
}
GROUP_FAMILIES = {
    "exact": {"text", "number", "checkbox", "date", "date_time", "entity"},
    "tens": {"number"}, "hundreds": {"number"}, "thousands": {"number"}, "tensofthousands": {"number"},
    "hundredsofthousands": {"number"}, "millions": {"number"},
    "day": {"date", "date_time"}, "oneday": {"date", "date_time"}, "fivedays": {"date", "date_time"},
    "week": {"date", "date_time"}, "month": {"date", "date_time"}, "quarter": {"date", "date_time"},
    "year": {"date", "date_time"},
    "entitytype": {"entity"}, "firstletter": {"text", "entity", "number"},
}
BUCKETS = {"tens": 10, "hundreds": 100, "thousands": 1000, "tensofthousands": 10_000,
           "hundredsofthousands": 100_000, "millions": 1_000_000}
CHUNK = 5000


def _is_set(value: Any) -> bool:
    return value is not None and value != [] and value != ""


def _percent(part: int, whole: int) -> int:
    return round(100 * part / whole) if whole else 0


def _family(ctx: Context, et: EntityTable, path: str) -> str:
    return ctx.final_handler(et, path, through_multi=False).family


@dataclass
class SummarizePlan:
    ctx: Context
    et: EntityTable
    select_ids: sa.Select
    fields: FieldPlans
    summaries: list[dict]
    grouping: list[dict]

    def run(self, conn: sa.Connection) -> dict:
        # One query reads the matching rows' own columns; links and lists follow per chunk.
        found = conn.execute(self.select_ids).mappings().all()
        values = Values(self.ctx, conn)
        rows: list[dict] = []
        for start in range(0, len(found), CHUNK):
            chunk = {r["id"]: r for r in found[start:start + CHUNK]}
            fetched = values.fetch(self.fields, list(chunk), chunk)
            rows.extend({"id": i, **fetched[i]} for i in chunk)
        result: dict[str, Any] = {"summaries": self._summaries(rows)}
        result["groups"] = self._groups(rows, self.grouping) if self.grouping else []
        return result

    def _value(self, row: dict, path: str) -> Any:
        return row["id"] if path == "id" else row.get(path)

    def _summaries(self, rows: list[dict]) -> dict:
        return {spec["field"]: self._summary(rows, spec) for spec in self.summaries}

    def _summary(self, rows: list[dict], spec: dict) -> Any:
        kind, path = spec["type"], spec["field"]
        if kind == "record_count":
            return len(rows)
        values = [self._value(r, path) for r in rows]
        present = [v for v in values if _is_set(v)]
        if kind == "count":
            return len(present)
        if kind == "sum":
            return sum(present)
        if kind in ("maximum", "minimum", "average"):
            if not present:
                return None
            if kind == "maximum":
                return max(present)
            if kind == "minimum":
                return min(present)
            return sum(present) / len(present)
        if kind in ("earliest", "latest"):
            # Wire dates and date-times order as text exactly as they do in time.
            return (min(present) if kind == "earliest" else max(present)) if present else None
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

    def _key(self, row: dict, spec: dict, family: str) -> tuple[Any, Any, str]:
        """(sort key, group_value, group_name) of a row under one grouping."""
        kind = spec.get("type", "exact")
        value = self._value(row, spec["field"])
        if not _is_set(value):
            return None, None, ""
        if kind == "exact":
            if family == "entity":
                name = value.get("name")
                return ((name or "").lower(), value["type"], value["id"]), value, name or ""
            return value, value, str(value)
        if kind in BUCKETS:
            size = BUCKETS[kind]
            low = (value // size) * size
            return low, low, f"{low} - {low + size - 1}"
        if kind in ("day", "oneday", "fivedays", "week", "month", "quarter", "year"):
            if family == "date_time":
                moment = dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
                day = moment.astimezone(self.ctx.tz).date()
            else:
                day = dt.date.fromisoformat(value)
            if kind in ("day", "oneday"):
                start = day
            elif kind == "fivedays":
                start = dt.date.fromordinal(day.toordinal() - day.toordinal() % 5)
            elif kind == "week":
                start = day - dt.timedelta(days=(day.weekday() + 1) % 7)
            elif kind == "month":
                first = day.replace(day=1)
                return first, first.strftime("%Y-%m"), first.strftime("%B %Y")
            elif kind == "quarter":
                quarter = (day.month - 1) // 3 + 1
                return (day.year, quarter), f"{day.year} Q{quarter}", f"Q{quarter} {day.year}"
            else:
                return day.year, str(day.year), str(day.year)
            return start, start.isoformat(), start.isoformat()
        if kind == "entitytype":
            return value["type"], value["type"], value["type"]
        # firstletter
        text = value.get("name") if isinstance(value, dict) else value
        letter = (text if isinstance(text, str) else str(text))[:1].upper()
        return letter, letter, letter

    def _groups(self, rows: list[dict], grouping: list[dict]) -> list[dict]:
        spec = grouping[0]
        family = spec["_family"]
        buckets: dict[str, tuple[Any, Any, str, list]] = {}
        for row in rows:
            key, value, name = self._key(row, spec, family)
            marker = repr(key)
            if marker not in buckets:
                buckets[marker] = (key, value, name, [])
            buckets[marker][3].append(row)
        present = sorted((b for b in buckets.values() if b[0] is not None), key=lambda b: b[0],
                         reverse=spec.get("direction", "asc") == "desc")
        empty = [b for b in buckets.values() if b[0] is None]
        out = []
        for _, value, name, members in present + empty:
            entry: dict[str, Any] = {"group_name": name, "group_value": value, "summaries": self._summaries(members)}
            if len(grouping) > 1:
                entry["groups"] = self._groups(members, grouping[1:])
            out.append(entry)
        return out


def compile_summarize(ctx: Context, args: Any) -> SummarizePlan:
    if not isinstance(args, dict) or not isinstance(args.get("type"), str):
        raise Uncertain("malformed", "summarize needs {type, summaries, ...}")
    if ctx.state.projects is not None:
        raise Uncertain("project_subset", "only some projects are cached")
    et = ctx.entity_table(args["type"])
    summaries, grouping = args.get("summaries"), args.get("grouping") or []
    if not isinstance(summaries, list) or not summaries or not isinstance(grouping, list):
        raise Uncertain("malformed", "summaries must be a non-empty list, grouping a list")
    wanted: list[str] = []
    for spec in summaries:
        if not isinstance(spec, dict) or not isinstance(spec.get("field"), str) \
                or spec.get("type") not in SUMMARY_FAMILIES:
            raise Uncertain("unsupported_summary", repr(spec)[:80])
        families = SUMMARY_FAMILIES[spec["type"]]
        if spec["type"] != "record_count":
            family = _family(ctx, et, spec["field"])
            if families is not None and family not in families:
                raise Uncertain("unsupported_summary", f"{spec['type']} of {spec['field']} ({family})")
            if family == "multi_entity" and spec["type"] != "count":
                raise Uncertain("unsupported_summary", f"{spec['type']} of {spec['field']}")
            wanted.append(spec["field"])
    specs = []
    for spec in grouping:
        if not isinstance(spec, dict) or not isinstance(spec.get("field"), str) \
                or spec.get("type", "exact") not in GROUP_FAMILIES \
                or spec.get("direction", "asc") not in ("asc", "desc"):
            raise Uncertain("unsupported_grouping", repr(spec)[:80])
        family = _family(ctx, et, spec["field"])
        if family not in GROUP_FAMILIES[spec.get("type", "exact")]:
            raise Uncertain("unsupported_grouping", f"{spec.get('type', 'exact')} on {spec['field']} ({family})")
        specs.append({**spec, "_family": family})
        wanted.append(spec["field"])
    fields = plan_fields(ctx, et, [w for w in dict.fromkeys(wanted) if w != "id"])
    scope = Scope(ctx, et)
    where = [group(scope, args.get("filters")), et.table.c._active.is_(True)]
    if args.get("include_archived_projects", True) is False:
        hidden = _archived_filter(ctx, et)
        if hidden is not None:
            where.append(hidden)
    columns = [et.table.c[c] for c in Values.columns(fields)]
    select_ids = sa.select(*columns).select_from(scope.from_clause()).where(*where).order_by(et.table.c.id)
    return SummarizePlan(ctx, et, select_ids, fields, summaries, specs)
