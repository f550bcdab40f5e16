"""The SQL of filter relations, shared by the field families of :mod:`sgcache.query.families`.

Each builder takes a column (or a link's two columns) and a value already checked for shape and
gives one two-valued condition: never SQL NULL, so that NOT and NOT EXISTS stay exact. A value
the cache cannot compare exactly raises :class:`~sgcache.query.Uncertain`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from sgcache.query import Uncertain
from sgcache.query.dates import CALENDAR_UNITS, calendar_span, span
from sgcache.query.paths import Context

TRUE, FALSE = sa.true(), sa.false()

#: Values of one ``in`` condition answered from the cache at most (more pass through).
MAX_IN_VALUES = 5_000


def need(ok: bool, relation: str, value: Any) -> None:
    """The value fits the relation, or the site decides."""
    if not ok:
        raise Uncertain("unsupported_value", f"{relation} {value!r}"[:120])


def pair(relation: str, value: Any) -> tuple[Any, Any]:
    need(isinstance(value, list) and len(value) == 2, relation, value)
    return value[0], value[1]


def as_list(value: Any) -> list:
    """The values of an ``in`` / ``not_in`` condition (one value alone counts as a list of one)."""
    return value if isinstance(value, list) else [value]


def is_or_in(relation: str, col: sa.ColumnElement, value: Any, check: Callable[[Any], bool],
             compared: sa.ColumnElement | None = None, convert: Callable[[Any], Any] = lambda v: v) -> sa.ColumnElement:
    """``is`` / ``is_not`` / ``in`` / ``not_in``: None matches a NULL ``col``; other values are
    ``convert``-ed and compared with ``compared`` (``col`` itself unless given)."""
    values = as_list(value) if relation in ("in", "not_in") else [value]
    need(all(v is None or check(v) for v in values), relation, value)
    compared = col if compared is None else compared
    present = [convert(v) for v in values if v is not None]
    parts = [col.is_(None)] if len(present) < len(values) else []
    if present:
        same = compared == present[0] if relation in ("is", "is_not") else compared.in_(present)
        parts.append(sa.and_(col.is_not(None), same))
    match = sa.or_(*parts) if parts else FALSE
    return match if relation in ("is", "in") else sa.not_(match)


def ordered(relation: str, col: sa.ColumnElement, value: Any, check: Callable[[Any], bool]) -> sa.ColumnElement:
    """is / is_not / in / not_in / less_than / greater_than / between / not_between on values that
    compare as they are (``check`` says which values are fit)."""
    if relation in ("is", "is_not", "in", "not_in"):
        return is_or_in(relation, col, value, check)
    if relation in ("less_than", "greater_than"):
        need(value is None or check(value), relation, value)
        if value is None:
            return FALSE
        return sa.and_(col.is_not(None), col < value if relation == "less_than" else col > value)
    if relation in ("between", "not_between"):
        low, high = pair(relation, value)
        need(all(v is None or check(v) for v in (low, high)), relation, value)
        if low is None or high is None:
            return FALSE
        inside = sa.and_(col >= low, col <= high)
        return sa.and_(col.is_not(None), inside if relation == "between" else sa.not_(inside))
    raise Uncertain("unsupported_relation", relation)


_PATTERNS = {"contains": "%{}%", "not_contains": "%{}%", "starts_with": "{}%", "ends_with": "%{}"}


def text(ctx: Context, relation: str, col: sa.ColumnElement, value: Any) -> sa.ColumnElement:
    """Text relations, ignoring case and ordered by code point. Both sides are lowered by the
    database's ``lower`` (never one in Python and one in SQL: PostgreSQL and Python fold some letters
    differently, and a text must always match itself)."""
    lowered = ctx.bytewise(ctx.lower(col))

    def is_text(v: Any) -> bool:
        return isinstance(v, str)

    def low(v: str) -> sa.ColumnElement:
        return ctx.lower(sa.literal(v, sa.Text))

    if relation in _PATTERNS:
        need(is_text(value), relation, value)
        escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        match = sa.and_(col.is_not(None), lowered.like(low(_PATTERNS[relation].format(escaped)), escape="\\"))
        return sa.not_(match) if relation == "not_contains" else match
    if relation in ("is", "is_not", "in", "not_in"):
        return is_or_in(relation, col, value, is_text, lowered, low)
    if relation in ("less_than", "greater_than"):
        need(value is None or is_text(value), relation, value)
        return ordered(relation, lowered if value is not None else col, None if value is None else low(value),
                       lambda v: True)
    if relation in ("between", "not_between"):
        need(all(v is None or is_text(v) for v in pair(relation, value)), relation, value)
        return ordered(relation, lowered, [low(v) if is_text(v) else v for v in value], lambda v: True)
    raise Uncertain("unsupported_relation", f"{relation} on text")


def relative(ctx: Context, relation: str, col: sa.ColumnElement, value: Any, *, dates: bool) -> sa.ColumnElement:
    """in_last / in_next (and their negations) and the in_calendar_* relations, from the site's now."""
    if relation in CALENDAR_UNITS:
        start, end = calendar_span(ctx.now, relation, value)
        if dates:
            inside = sa.and_(col >= start.date(), col < end.date())
        else:
            inside = sa.and_(col >= start.astimezone(dt.UTC), col < end.astimezone(dt.UTC))
    else:
        start, end = span(ctx.now, relation, value)
        if dates:  # whole days: today is both in the last and in the next N days
            inside = sa.and_(col >= start.date(), col <= end.date())
        else:
            inside = sa.and_(col >= start.astimezone(dt.UTC), col <= end.astimezone(dt.UTC))
    # NULL matches neither the relation nor its negation.
    return sa.and_(col.is_not(None), sa.not_(inside) if relation.startswith("not_") else inside)


# --- links ----------------------------------------------------------------------------------------


def link_value(value: Any, relation: str) -> tuple[str, int] | None:
    """A filter's link value as (type, id); None for None."""
    if value is None:
        return None
    need(isinstance(value, dict) and isinstance(value.get("type"), str) and isinstance(value.get("id"), int)
         and not isinstance(value.get("id"), bool), relation, value)
    return value["type"], value["id"]


def same_links(ctx: Context, type_col, id_col, links: list[tuple[str, int]]) -> sa.ColumnElement:
    """The link (type_col, id_col) is one of ``links``, to a live entity: one ``id IN (...)`` and
    one EXISTS per linked type, however many links."""
    if len(links) > MAX_IN_VALUES:
        raise Uncertain("unsupported_value", f"more than {MAX_IN_VALUES} links in one condition")
    by_type: dict[str, list[int]] = {}
    for type_name, entity_id in links:
        by_type.setdefault(type_name, []).append(entity_id)
    parts = []
    for type_name, ids in sorted(by_type.items()):
        target = ctx.entity_table(type_name) if type_name in ctx.tables else ctx.link_target(type_name)
        if len(ids) == 1:
            # One id: whether that entity is live does not depend on the row, so the check names
            # the id itself and the database makes it once (an InitPlan on PostgreSQL) instead of
            # planning it as a semi-join with every row (docs/benchmarks.rst).
            same_id, live = id_col == ids[0], ctx.exists_live(target, sa.literal(ids[0], sa.Integer()))
        else:
            same_id, live = id_col.in_(sorted(set(ids))), ctx.exists_live(target, id_col)
        parts.append(sa.and_(type_col.is_not(None), id_col.is_not(None), type_col == type_name, same_id, live))
    return sa.or_(*parts) if parts else FALSE


#: name_* relations on links -> the text relation they apply to the link's name
NAME_RELATIONS = {"name_is": "is", "name_contains": "contains", "name_not_contains": "not_contains",
                  "name_starts_with": "starts_with", "name_ends_with": "ends_with"}
