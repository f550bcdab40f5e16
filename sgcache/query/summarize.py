"""``summarize`` answered from the cache: the matching rows come from SQL, the totals are counted here.

The filters compile exactly as for ``read``; the values of the summarized and grouped fields are
read ``BATCH_ROWS`` at a time and folded into running totals, one per summary per group, so that
memory grows with the number of groups, never with the number of rows. The totals follow the
site's rules:

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

The common shapes are totalled by the database instead (:class:`Aggregate`): ``record_count``,
``count``, ``minimum`` and ``maximum`` of the type's own text, number and checkbox fields, and
``sum`` and ``average`` of its whole-number fields (exact in SQL: no floating-point sum whose
result would depend on the order of the rows), grouped ``exact`` by such fields. The rows of
each finest group are counted in SQL and the groups above them added up here, with the same
ordering and empty-group rules.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from sgcache.query import Uncertain
from sgcache.query.filters import group
from sgcache.query.paths import Context, Scope
from sgcache.query.read import FieldPlans, Values, archived_filter, plan_fields, visible_rows
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
#: matching rows read, and held, at a time by a summarize not totalled in SQL
BATCH_ROWS = 5000


def _is_set(value: Any) -> bool:
    return value is not None and value != [] and value != ""


def _percent(part: int, whole: int) -> int:
    return round(100 * part / whole) if whole else 0


def _family(ctx: Context, et: EntityTable, path: str) -> str:
    return ctx.final_handler(et, path, through_multi=False).family


class _Rows:
    """``record_count``: the rows."""

    def __init__(self, spec: dict):
        self.rows = 0

    def add(self, value: Any) -> None:
        self.rows += 1

    def result(self) -> int:
        return self.rows


class _Count:
    """``count``: the rows whose value is set."""

    def __init__(self, spec: dict):
        self.present = 0

    def add(self, value: Any) -> None:
        if _is_set(value):
            self.present += 1

    def result(self) -> int:
        return self.present


class _Sum:
    """``sum`` of the set values; ``average`` divides it by their number. Added one by one in row
    (id) order, as ``sum()`` of Python 3.11 adds a list of them (and the stand-in site does): the
    same float result, bit for bit. (Python 3.12's ``sum()`` compensates float rounding errors.)"""

    def __init__(self, spec: dict):
        self.average = spec["type"] == "average"
        self.total: Any = 0
        self.present = 0

    def add(self, value: Any) -> None:
        if _is_set(value):
            self.total = self.total + value
            self.present += 1

    def result(self) -> Any:
        if not self.average:
            return self.total
        return self.total / self.present if self.present else None


class _Extreme:
    """``maximum`` / ``latest`` and ``minimum`` / ``earliest`` of the set values (wire dates and
    date-times order as text exactly as they do in time). Of equal values the first is kept, as
    ``max()`` / ``min()`` keep it."""

    def __init__(self, spec: dict):
        self.highest = spec["type"] in ("maximum", "latest")
        self.best: Any = None

    def add(self, value: Any) -> None:
        if _is_set(value) and (self.best is None or (value > self.best if self.highest else value < self.best)):
            self.best = value

    def result(self) -> Any:
        return self.best


class _Share:
    """``checked`` / ``unchecked``: rows whose checkbox is / is not true; ``percentage`` and
    ``status_percentage``: the rounded share of rows equal to ``value``."""

    def __init__(self, spec: dict):
        self.kind = spec["type"]
        self.checkbox = self.kind in ("checked", "unchecked")
        self.target = spec.get("value", True) if self.kind == "percentage" else spec.get("value")
        self.matching = 0
        self.rows = 0

    def add(self, value: Any) -> None:
        self.rows += 1
        if (value is True) if self.checkbox else (value == self.target):
            self.matching += 1

    def result(self) -> int:
        if self.kind == "checked":
            return self.matching
        if self.kind == "unchecked":
            return self.rows - self.matching
        return _percent(self.matching, self.rows)


class _StatusList:
    """``status_list``: rows per set value, in the order the values first appear."""

    def __init__(self, spec: dict):
        self.counts: dict[Any, int] = {}

    def add(self, value: Any) -> None:
        if _is_set(value):
            self.counts[value] = self.counts.get(value, 0) + 1

    def result(self) -> dict:
        return self.counts


#: summary type -> its running total (``add`` one row's value, then ``result``)
TALLIES = {"record_count": _Rows, "count": _Count, "sum": _Sum, "average": _Sum,
           "maximum": _Extreme, "minimum": _Extreme, "earliest": _Extreme, "latest": _Extreme,
           "checked": _Share, "unchecked": _Share, "percentage": _Share, "status_percentage": _Share,
           "status_list": _StatusList}


class _Group:
    """The rows of one group folded in so far: a running total per summary and, when a grouping
    level remains below it, its subgroups in the order they first appear. Its size depends on the
    number of groups (and of statuses for ``status_list``), never on the number of rows."""

    def __init__(self, plan: SummarizePlan, depth: int, key: Any = None, value: Any = None, name: str = ""):
        self.plan = plan
        self.depth = depth  # grouping levels above this group (0: all the matching rows)
        self.key, self.value, self.name = key, value, name
        self.tallies = [(spec["field"], TALLIES[spec["type"]](spec)) for spec in plan.summaries]
        self.subgroups: dict[str, _Group] = {}

    def add(self, row: dict) -> None:
        plan = self.plan
        for field, tally in self.tallies:
            tally.add(plan._value(row, field))
        if self.depth < len(plan.grouping):
            spec = plan.grouping[self.depth]
            key, value, name = plan._key(row, spec, spec["_family"])
            marker = repr(key)
            sub = self.subgroups.get(marker)
            if sub is None:
                sub = self.subgroups[marker] = _Group(plan, self.depth + 1, key, value, name)
            sub.add(row)

    def summaries(self) -> dict:
        # The answer is keyed by field: of a field summarized twice, the last summary stays.
        return {field: tally.result() for field, tally in self.tallies}

    def groups(self) -> list[dict]:
        """The subgroups by value (reversed for ``direction: desc``), the empty group last."""
        spec = self.plan.grouping[self.depth]
        present = sorted((g for g in self.subgroups.values() if g.key is not None), key=lambda g: g.key,
                         reverse=spec.get("direction", "asc") == "desc")
        empty = [g for g in self.subgroups.values() if g.key is None]
        out = []
        for sub in present + empty:
            entry: dict[str, Any] = {"group_name": sub.name, "group_value": sub.value, "summaries": sub.summaries()}
            if sub.depth < len(self.plan.grouping):
                entry["groups"] = sub.groups()
            out.append(entry)
        return out


@dataclass
class SummarizePlan:
    ctx: Context
    et: EntityTable
    select_ids: sa.Select
    fields: FieldPlans
    summaries: list[dict]
    grouping: list[dict]
    aggregate: Aggregate | None = None

    def run(self, conn: sa.Connection) -> dict:
        if self.aggregate is not None:
            return self.aggregate.run(conn, self)
        whole = _Group(self, 0)
        values = Values(self.ctx, conn)
        # One query reads the matching rows' own columns, BATCH_ROWS at a time (a server-side
        # cursor on PostgreSQL; SQLite steps through its result anyway); each batch's links and
        # lists follow, then its rows are folded into the running totals and dropped.
        with conn.execute(self.select_ids, execution_options={"stream_results": True}) as found:
            for batch in found.yield_per(BATCH_ROWS).mappings().partitions():
                columns = {r["id"]: r for r in batch}
                fetched = values.fetch(self.fields, list(columns), columns)
                for i in columns:
                    whole.add({"id": i, **fetched[i]})
        return {"summaries": whole.summaries(), "groups": whole.groups() if self.grouping else []}

    def _value(self, row: dict, path: str) -> Any:
        return row["id"] if path == "id" else row.get(path)

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


SQL_SUMMARIES = {"record_count", "count", "sum", "maximum", "minimum", "average"}
SQL_FAMILIES = {"text", "number", "checkbox"}


@dataclass
class _Totals:
    """What one group's rows add up to: rows, and per summarized field the set values' count,
    sum, minimum and maximum."""

    rows: int = 0
    fields: dict[str, list[Any]] | None = None  # field -> [count, sum, min, max]

    def add(self, other: _Totals) -> None:
        self.rows += other.rows
        for name, (n, total, low, high) in (other.fields or {}).items():
            mine = self.fields.setdefault(name, [0, None, None, None])
            mine[0] += n
            mine[1] = total if mine[1] is None else (mine[1] if total is None else mine[1] + total)
            mine[2] = low if mine[2] is None else (mine[2] if low is None else min(mine[2], low))
            mine[3] = high if mine[3] is None else (mine[3] if high is None else max(mine[3], high))


@dataclass
class Aggregate:
    """A summarize totalled in SQL: one row per finest group (see the module docstring)."""

    select: sa.Select
    group_handlers: list[Any]
    field_handlers: dict[str, Any]

    def run(self, conn: sa.Connection, plan: SummarizePlan) -> dict:
        finest: list[tuple[tuple, _Totals]] = []
        for row in conn.execute(self.select):
            keys = tuple(self._value(h, row[i]) for i, h in enumerate(self.group_handlers))
            totals = _Totals(rows=row[len(keys)], fields={})
            at = len(keys) + 1
            for name, handler in self.field_handlers.items():
                n, total, low, high = row[at:at + 4]
                at += 4
                totals.fields[name] = [n or 0, _whole(total), self._value(handler, low), self._value(handler, high)]
            finest.append((keys, totals))
        whole = _Totals(fields={})
        for _, totals in finest:
            whole.add(totals)
        result: dict[str, Any] = {"summaries": self._summaries(plan, whole)}
        result["groups"] = self._groups(plan, finest, 0) if plan.grouping else []
        return result

    @staticmethod
    def _value(handler: Any, value: Any) -> Any:
        if value is None:
            return None
        return handler.from_db({handler.column: value})

    def _summaries(self, plan: SummarizePlan, totals: _Totals) -> dict:
        out = {}
        for spec in plan.summaries:
            kind, name = spec["type"], spec["field"]
            if kind == "record_count":
                out[name] = totals.rows
                continue
            n, total, low, high = totals.fields.get(name, [0, None, None, None])
            if kind == "count":
                out[name] = n
            elif kind == "sum":
                out[name] = total or 0
            elif kind == "average":
                out[name] = total / n if n else None
            elif kind == "minimum":
                out[name] = low
            else:
                out[name] = high
        return out

    def _groups(self, plan: SummarizePlan, rows: list[tuple[tuple, _Totals]], level: int) -> list[dict]:
        spec = plan.grouping[level]
        merged: dict[Any, tuple[list, _Totals]] = {}
        for keys, totals in rows:
            value = keys[level] if _is_set(keys[level]) else None
            members, sum_ = merged.setdefault(repr(value), ([], _Totals(fields={})))
            members.append((keys, totals))
            sum_.add(totals)
        present = sorted((k for k in merged if k != "None"), key=lambda k: merged[k][0][0][0][level],
                         reverse=spec.get("direction", "asc") == "desc")
        out = []
        for marker in present + (["None"] if "None" in merged else []):
            members, totals = merged[marker]
            value = members[0][0][level] if marker != "None" else None
            entry: dict[str, Any] = {"group_name": "" if value is None else str(value), "group_value": value,
                                     "summaries": self._summaries(plan, totals)}
            if level + 1 < len(plan.grouping):
                entry["groups"] = self._groups(plan, members, level + 1)
            out.append(entry)
        return out


class _IdField:
    """The entity's id, summarized as the whole number it is (``count`` of ``id`` is common)."""

    family = "number"
    column = "id"

    @staticmethod
    def from_db(row: Any) -> int:
        return row["id"]

    @staticmethod
    def columns() -> list[sa.Column]:
        return [sa.Column("id", sa.Integer)]


def _whole(value: Any) -> Any:
    """A database sum of whole numbers as a Python int (PostgreSQL gives bigint sums as Decimal)."""
    if value is None or isinstance(value, int):
        return value
    return int(value)


def _aggregate(ctx: Context, et: EntityTable, scope: Scope, where: list, summaries: list[dict],
               grouping: list[dict]) -> Aggregate | None:
    """The SQL totalling of this summarize, or None when only the row-by-row path is exact."""
    if any(spec["type"] not in SQL_SUMMARIES for spec in summaries):
        return None
    handlers: dict[str, Any] = {}
    for spec in summaries:
        if spec["type"] == "record_count":
            continue
        name = spec["field"]
        if "." in name:
            return None
        handler = _IdField() if name == "id" else ctx.handler(et, name)
        if handler.family not in SQL_FAMILIES:
            return None
        if spec["type"] in ("sum", "average") and not isinstance(handler.columns()[0].type, sa.Integer):
            return None
        handlers[name] = handler
    group_handlers = []
    for spec in grouping:
        name = spec["field"]
        if spec.get("type", "exact") != "exact" or "." in name or name == "id":
            return None
        handler = ctx.handler(et, name)
        if handler.family not in SQL_FAMILIES:
            return None
        group_handlers.append(handler)
    t = et.table
    group_cols = [t.c[h.column] for h in group_handlers]
    columns: list[Any] = [*group_cols, sa.func.count()]
    for handler in handlers.values():
        col = t.c[handler.column]
        is_set = col.is_not(None)
        if handler.family == "text":
            is_set = sa.and_(is_set, col != "")
        present = sa.case((is_set, col), else_=sa.null())
        summable = sa.func.sum(present) if isinstance(handler.columns()[0].type, sa.Integer) else sa.null()
        ordered = ctx.bytewise(present) if handler.family == "text" else present  # code point order, as the site
        columns += [sa.func.count(present), summable, sa.func.min(ordered), sa.func.max(ordered)]
    select = sa.select(*columns).select_from(scope.from_clause()).where(*where)
    if group_cols:
        select = select.group_by(*group_cols)
    return Aggregate(select, group_handlers, handlers)


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
    if ctx.visibility is not None:
        for name in wanted:
            if "." in name or (name != "project" and _family(ctx, et, name) in ("entity", "multi_entity")):
                # Links the caller cannot see count as none on the site; only project links are
                # known to point at visible rows.
                raise Uncertain("restricted_link", f"{name}: a link summary or grouping for a caller who sees "
                                "only some projects")
    fields = plan_fields(ctx, et, [w for w in dict.fromkeys(wanted) if w != "id"])
    scope = Scope(ctx, et)
    where = [group(scope, args.get("filters")), et.table.c._active.is_(True), *visible_rows(ctx, et)]
    if args.get("include_archived_projects", True) is False:
        hidden = archived_filter(ctx, et)
        if hidden is not None:
            where.append(hidden)
    columns = [et.table.c[c] for c in Values.columns(fields)]
    select_ids = sa.select(*columns).select_from(scope.from_clause()).where(*where).order_by(et.table.c.id)
    return SummarizePlan(ctx, et, select_ids, fields, summaries, specs,
                         _aggregate(ctx, et, scope, where, summaries, specs))
