"""Summaries totalled by the database: one row per finest group, added up here.

The common shapes of ``summarize`` (see :mod:`sgcache.query.summarize`) are totalled in SQL:
``record_count``, ``count``, ``minimum`` and ``maximum`` of the type's own fields whose family
says it totals in SQL (text, number, checkbox), and ``sum`` and ``average`` of its whole-number
fields (exact in SQL: no floating-point sum whose result would depend on the order of the rows),
grouped ``exact`` by such fields. The rows of each finest group are counted in SQL and the groups
above them added up here, with the same ordering and empty-group rules as the row-by-row path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from sgcache.query.families import family_of
from sgcache.query.paths import Context, Scope
from sgcache.store.tables import EntityTable


def is_set(value: Any) -> bool:
    """Whether a value counts as set for ``count`` and grouping (not null, not empty)."""
    return value is not None and value != [] and value != ""


SQL_SUMMARIES = {"record_count", "count", "sum", "maximum", "minimum", "average"}


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

    def run(self, conn: sa.Connection, summaries: list[dict], grouping: list[dict]) -> dict:
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
        result: dict[str, Any] = {"summaries": self._summaries(summaries, whole)}
        result["groups"] = self._groups(summaries, grouping, finest, 0) if grouping else []
        return result

    @staticmethod
    def _value(handler: Any, value: Any) -> Any:
        if value is None:
            return None
        return handler.from_db({handler.column: value})

    def _summaries(self, summaries: list[dict], totals: _Totals) -> dict:
        out = {}
        for spec in summaries:
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

    def _groups(self, summaries: list[dict], grouping: list[dict], rows: list[tuple[tuple, _Totals]],
                level: int) -> list[dict]:
        spec = grouping[level]
        merged: dict[Any, tuple[list, _Totals]] = {}
        for keys, totals in rows:
            value = keys[level] if is_set(keys[level]) else None
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
                                     "summaries": self._summaries(summaries, totals)}
            if level + 1 < len(grouping):
                entry["groups"] = self._groups(summaries, grouping, members, level + 1)
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


def sql_totals(ctx: Context, et: EntityTable, scope: Scope, where: list, summaries: list[dict],
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
        if not family_of(handler).in_sql:
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
        if not family_of(handler).in_sql:
            return None
        group_handlers.append(handler)
    t = et.table
    group_cols = [t.c[h.column] for h in group_handlers]
    columns: list[Any] = [*group_cols, sa.func.count()]
    for handler in handlers.values():
        col = t.c[handler.column]
        family = family_of(handler)
        present = sa.case((family.set_in_sql(col), col), else_=sa.null())
        summable = sa.func.sum(present) if isinstance(handler.columns()[0].type, sa.Integer) else sa.null()
        ordered = family.order_in_sql(ctx, present)
        columns += [sa.func.count(present), summable, sa.func.min(ordered), sa.func.max(ordered)]
    select = sa.select(*columns).select_from(scope.from_clause()).where(*where)
    if group_cols:
        select = select.group_by(*group_cols)
    return Aggregate(select, group_handlers, handlers)


