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

Which summaries and groupings a field takes, and its group keys, are its family's (see
:mod:`sgcache.query.families`). The common shapes are totalled by the database instead
(:mod:`sgcache.query.aggregate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from sgcache.query import Uncertain
from sgcache.query.aggregate import Aggregate, is_set, sql_totals
from sgcache.query.families import BUCKETS, DATE_GROUPINGS, Family, family_of
from sgcache.query.filters import group
from sgcache.query.paths import Context, Scope
from sgcache.query.read import (
    FieldPlans,
    Values,
    archived_filter,
    plan_fields,
    visible_rows,
    within_cached_projects,
)
from sgcache.store.tables import EntityTable

#: every summary type; record_count and count take any field, the others what its family offers
SUMMARY_TYPES = frozenset({"record_count", "count", "sum", "maximum", "minimum", "average", "earliest", "latest",
                           "checked", "unchecked", "percentage", "status_percentage", "status_list"})
#: every grouping type (which fields each takes: their family's ``groupings``)
GROUPING_TYPES = frozenset({"exact", "entitytype", "firstletter", *BUCKETS, *DATE_GROUPINGS})
#: matching rows read, and held, at a time by a summarize not totalled in SQL
BATCH_ROWS = 5000


def _percent(part: int, whole: int) -> int:
    return round(100 * part / whole) if whole else 0


def _family(ctx: Context, et: EntityTable, path: str) -> Family:
    return family_of(ctx.final_handler(et, path, through_multi=False))


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
        if is_set(value):
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
        if is_set(value):
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
        if is_set(value) and (self.best is None or (value > self.best if self.highest else value < self.best)):
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
        if is_set(value):
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
            key, value, name = plan._key(row, spec)
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
            return self.aggregate.run(conn, self.summaries, self.grouping)
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

    def _key(self, row: dict, spec: dict) -> tuple[Any, Any, str]:
        """(sort key, group_value, group_name) of a row under one grouping."""
        value = self._value(row, spec["field"])
        if not is_set(value):
            return None, None, ""
        return spec["_family"].group_key(self.ctx, spec.get("type", "exact"), value)


def compile_summarize(ctx: Context, args: Any) -> SummarizePlan:
    if not isinstance(args, dict) or not isinstance(args.get("type"), str):
        raise Uncertain("malformed", "summarize needs {type, summaries, ...}")
    et = ctx.entity_table(args["type"])
    within_cached_projects(ctx, et, args.get("filters"))
    summaries, grouping = args.get("summaries"), args.get("grouping") or []
    if not isinstance(summaries, list) or not summaries or not isinstance(grouping, list):
        raise Uncertain("malformed", "summaries must be a non-empty list, grouping a list")
    wanted: list[str] = []
    for spec in summaries:
        if not isinstance(spec, dict) or not isinstance(spec.get("field"), str) \
                or spec.get("type") not in SUMMARY_TYPES:
            raise Uncertain("unsupported_summary", repr(spec)[:80])
        if spec["type"] != "record_count":
            family = _family(ctx, et, spec["field"])
            if spec["type"] != "count" and spec["type"] not in family.summaries:
                raise Uncertain("unsupported_summary", f"{spec['type']} of {spec['field']} ({family.name})")
            wanted.append(spec["field"])
    specs = []
    for spec in grouping:
        if not isinstance(spec, dict) or not isinstance(spec.get("field"), str) \
                or spec.get("type", "exact") not in GROUPING_TYPES \
                or spec.get("direction", "asc") not in ("asc", "desc"):
            raise Uncertain("unsupported_grouping", repr(spec)[:80])
        family = _family(ctx, et, spec["field"])
        if spec.get("type", "exact") not in family.groupings:
            raise Uncertain("unsupported_grouping", f"{spec.get('type', 'exact')} on {spec['field']} ({family.name})")
        specs.append({**spec, "_family": family})
        wanted.append(spec["field"])
    if ctx.visibility is not None:
        for name in wanted:
            if "." in name or (name != "project" and _family(ctx, et, name).link):
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
                         sql_totals(ctx, et, scope, where, summaries, specs))
