"""Filters compiled to SQL conditions, one set of relations per field family.

The semantics are the site's, relation by relation:

* text matching ignores case (both sides lowered; order by code point);
* a NULL value matches ``is None``, the negations ``is_not`` / ``not_in`` / ``not_contains`` and
  nothing else (``not_between`` and the relative date relations never match NULL);
* a link to a retired entity reads as NULL; multi-entity values hold live entities only;
* a deep path through a multi-entity field matches when any linked entity matches (for the
  negated relations: when all of them do);
* an empty ``or`` group matches everything at the top level and nothing when nested.

Every condition built here is two-valued (never SQL NULL), so NOT and NOT EXISTS are exact.
Values are bound parameters; field names come from the schema via :mod:`sgcache.query.paths`.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import sqlalchemy as sa

from sgcache.fields.base import FieldType
from sgcache.query import Uncertain
from sgcache.query.dates import CALENDAR_UNITS, SPAN_RELATIONS, calendar_span, span
from sgcache.query.paths import Context, Final, MultiHop, Scope

RELATIONS = frozenset({
    "is", "is_not", "less_than", "greater_than", "contains", "not_contains", "starts_with", "ends_with",
    "between", "not_between", "in", "not_in", "in_last", "not_in_last", "in_next", "not_in_next",
    "in_calendar_day", "in_calendar_week", "in_calendar_month", "in_calendar_year", "type_is", "type_is_not",
    "name_contains", "name_not_contains", "name_is", "name_starts_with", "name_ends_with",
})
LIST_RELATIONS = frozenset({"in", "not_in"})
PAIR_RELATIONS = frozenset({"between", "not_between", "in_last", "not_in_last", "in_next", "not_in_next"})
DATE_VALUE_RELATIONS = frozenset({"is", "is_not", "less_than", "greater_than", "between", "not_between", "in",
                                  "not_in"})
#: Through a multi-entity hop these hold when every linked entity matches (the rest: any one).
NEGATED = frozenset({"is_not", "not_in", "not_contains", "name_not_contains", "type_is_not"})

_WIRE_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

TRUE, FALSE = sa.true(), sa.false()


def _not(expr: sa.ColumnElement) -> sa.ColumnElement:
    return sa.not_(expr)


# --- value checks ------------------------------------------------------------------------------


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _need(ok: bool, relation: str, value: Any) -> None:
    if not ok:
        raise Uncertain("unsupported_value", f"{relation} {value!r}"[:120])


def _pair(relation: str, value: Any) -> tuple[Any, Any]:
    _need(isinstance(value, list) and len(value) == 2, relation, value)
    return value[0], value[1]


def _wire_datetime(value: Any) -> Any:
    """A filter value of a date_time field: the site parses wire strings into moments."""
    if isinstance(value, str):
        if not _WIRE_DATETIME.match(value):
            raise Uncertain("unsupported_value", f"{value!r} is not a YYYY-MM-DDTHH:MM:SSZ date and time")
        try:
            return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
        except ValueError:
            raise Uncertain("unsupported_value", f"{value!r} is not a date and time") from None
    return value


# --- one family at a time ----------------------------------------------------------------------


def _ordered(relation: str, col: sa.ColumnElement, value: Any, check) -> sa.ColumnElement:
    """is / is_not / in / not_in / less_than / greater_than / between / not_between on values that
    compare as they are (``check`` says which values are fit)."""
    if relation in ("is", "is_not"):
        _need(value is None or check(value), relation, value)
        match = col.is_(None) if value is None else sa.and_(col.is_not(None), col == value)
        return match if relation == "is" else _not(match)
    if relation in ("in", "not_in"):
        values = value if isinstance(value, list) else [value]
        _need(all(v is None or check(v) for v in values), relation, value)
        present = [v for v in values if v is not None]
        parts = [col.is_(None)] if len(present) < len(values) else []
        if present:
            parts.append(sa.and_(col.is_not(None), col.in_(present)))
        match = sa.or_(*parts) if parts else FALSE
        return match if relation == "in" else _not(match)
    if relation in ("less_than", "greater_than"):
        _need(value is None or check(value), relation, value)
        if value is None:
            return FALSE
        return sa.and_(col.is_not(None), col < value if relation == "less_than" else col > value)
    if relation in ("between", "not_between"):
        low, high = _pair(relation, value)
        _need(all(v is None or check(v) for v in (low, high)), relation, value)
        if low is None or high is None:
            return FALSE
        inside = sa.and_(col >= low, col <= high)
        return sa.and_(col.is_not(None), inside if relation == "between" else _not(inside))
    raise Uncertain("unsupported_relation", relation)


def text_condition(ctx: Context, relation: str, col: sa.ColumnElement, value: Any) -> sa.ColumnElement:
    lowered = ctx.bytewise(ctx.lower(col))

    def low(v):
        return v.lower() if isinstance(v, str) else v

    if relation in ("contains", "not_contains", "starts_with", "ends_with"):
        _need(isinstance(value, str), relation, value)
        escaped = value.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = {"contains": f"%{escaped}%", "not_contains": f"%{escaped}%", "starts_with": f"{escaped}%",
                   "ends_with": f"%{escaped}"}[relation]
        match = sa.and_(col.is_not(None), lowered.like(pattern, escape="\\"))
        return _not(match) if relation == "not_contains" else match
    if relation in ("is", "is_not", "less_than", "greater_than"):
        _need(value is None or isinstance(value, str), relation, value)
        return _ordered(relation, lowered if value is not None else col, low(value), lambda v: True)
    if relation in ("in", "not_in"):
        values = value if isinstance(value, list) else [value]
        _need(all(v is None or isinstance(v, str) for v in values), relation, value)
        present = [low(v) for v in values if v is not None]
        parts = [col.is_(None)] if len(present) < len(values) else []
        if present:
            parts.append(sa.and_(col.is_not(None), lowered.in_(present)))
        match = sa.or_(*parts) if parts else FALSE
        return match if relation == "in" else _not(match)
    if relation in ("between", "not_between"):
        pair = _pair(relation, value)
        _need(all(v is None or isinstance(v, str) for v in pair), relation, value)
        return _ordered(relation, lowered, [low(v) for v in pair], lambda v: True)
    raise Uncertain("unsupported_relation", f"{relation} on text")


def _relative(ctx: Context, relation: str, col: sa.ColumnElement, value: Any, *, dates: bool) -> sa.ColumnElement:
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
    return sa.and_(col.is_not(None), _not(inside) if relation.startswith("not_") else inside)


def scalar_condition(ctx: Context, handler: FieldType, relation: str, col: sa.ColumnElement,
                     value: Any) -> sa.ColumnElement:
    family = handler.family
    if family == "text":
        return text_condition(ctx, relation, col, value)
    if family == "number":
        return _ordered(relation, col, value, _number)
    if family == "checkbox":
        if relation not in ("is", "is_not"):
            raise Uncertain("unsupported_relation", f"{relation} on checkbox")
        checked = sa.func.coalesce(col, FALSE)
        match = checked.is_(TRUE) if bool(value) else checked.is_(FALSE)
        return match if relation == "is" else _not(match)
    if family == "date":
        if relation in SPAN_RELATIONS or relation in CALENDAR_UNITS:
            return _relative(ctx, relation, col, value, dates=True)
        return _ordered(relation, col, _as_dates(relation, value), lambda v: isinstance(v, dt.date))
    if family == "date_time":
        if relation in SPAN_RELATIONS or relation in CALENDAR_UNITS:
            return _relative(ctx, relation, col, value, dates=False)
        return _ordered(relation, col, value, lambda v: isinstance(v, dt.datetime))
    raise Uncertain("unsupported_relation", f"{relation} on {handler.field.data_type}")


def _as_dates(relation: str, value: Any) -> Any:
    """Date values are YYYY-MM-DD text on the wire; compared as text, which orders like dates."""
    def one(v):
        if v is None:
            return None
        if not (isinstance(v, str) and _DATE.match(v)):
            raise Uncertain("unsupported_value", f"{relation} {v!r} on a date")
        try:
            return dt.date.fromisoformat(v)
        except ValueError:
            raise Uncertain("unsupported_value", f"{relation} {v!r} on a date") from None
    if isinstance(value, list):
        return [one(v) for v in value]
    return one(value)


# --- links ----------------------------------------------------------------------------------------


def _link_value(value: Any, relation: str) -> tuple[str, int] | None:
    if value is None:
        return None
    _need(isinstance(value, dict) and isinstance(value.get("type"), str) and isinstance(value.get("id"), int)
          and not isinstance(value.get("id"), bool), relation, value)
    return value["type"], value["id"]


#: Values of one ``in`` condition answered from the cache at most (more pass through).
MAX_IN_VALUES = 5_000


def _same_link(ctx: Context, type_col, id_col, link: tuple[str, int]) -> sa.ColumnElement:
    return _same_links(ctx, type_col, id_col, [link])


def _same_links(ctx: Context, type_col, id_col, links: list[tuple[str, int]]) -> sa.ColumnElement:
    """The link (type_col, id_col) is one of ``links``, to a live entity: one ``id IN (...)`` and
    one EXISTS per linked type, however many links."""
    if len(links) > MAX_IN_VALUES:
        raise Uncertain("unsupported_value", f"more than {MAX_IN_VALUES} links in one condition")
    by_type: dict[str, list[int]] = {}
    for type_name, entity_id in links:
        by_type.setdefault(type_name, []).append(entity_id)
    parts = []
    for type_name, ids in sorted(by_type.items()):
        target = ctx.alias(ctx.entity_table(type_name))
        same_id = id_col == ids[0] if len(ids) == 1 else id_col.in_(sorted(set(ids)))
        parts.append(sa.and_(type_col.is_not(None), id_col.is_not(None), type_col == type_name, same_id,
                             sa.exists().where(target.c.id == id_col, target.c._active.is_(True))))
    return sa.or_(*parts) if parts else FALSE


_NAME_RELATIONS = {"name_is": "is", "name_contains": "contains", "name_not_contains": "not_contains",
                   "name_starts_with": "starts_with", "name_ends_with": "ends_with"}


def entity_condition(ctx: Context, final: Final, relation: str, value: Any) -> sa.ColumnElement:
    handler, source = final.handler, final.source
    type_col, id_col = source.c[handler.type_column], source.c[handler.id_column]
    targets = ctx.link_types(handler)
    live = ctx.live(type_col, id_col, targets)
    if relation in ("is", "is_not"):
        link = _link_value(value, relation)
        match = _not(live) if link is None else _same_link(ctx, type_col, id_col, link)
        return match if relation == "is" else _not(match)
    if relation in ("in", "not_in"):
        values = value if isinstance(value, list) else [value]
        links = [_link_value(v, relation) for v in values]
        parts = [_same_links(ctx, type_col, id_col, [link for link in links if link is not None])]
        if any(link is None for link in links):
            parts.append(_not(live))
        match = sa.or_(*parts)
        return match if relation == "in" else _not(match)
    if relation in ("type_is", "type_is_not"):
        _need(isinstance(value, str), relation, value)
        match = sa.and_(live, type_col == value)
        return match if relation == "type_is" else _not(match)
    if relation in _NAME_RELATIONS:
        return text_condition(ctx, _NAME_RELATIONS[relation], ctx.link_name(type_col, id_col, targets), value)
    raise Uncertain("unsupported_relation", f"{relation} on entity")


def multi_condition(ctx: Context, final: Final, relation: str, value: Any) -> sa.ColumnElement:
    handler = final.handler
    assoc = final.et.associations[handler.name].alias()
    targets = ctx.link_types(handler)
    child_type, child_id = assoc.c.child_type, assoc.c.child_id
    children = sa.select(sa.literal(1)).select_from(assoc).where(assoc.c.parent_id == final.source.c.id,
                                                                 ctx.live(child_type, child_id, targets))

    def any_child(*conds) -> sa.ColumnElement:
        return sa.exists(children.where(*conds))

    negated = {"is_not": "is", "not_in": "in", "type_is_not": "type_is", "name_not_contains": "name_contains"}
    if relation in negated:
        return _not(multi_condition(ctx, final, negated[relation], value))
    if relation == "is":
        link = _link_value(value, relation)
        if link is None:
            return _not(any_child())
        return any_child(_same_link(ctx, child_type, child_id, link))
    if relation == "in":
        values = value if isinstance(value, list) else [value]
        links = [_link_value(v, relation) for v in values if v is not None]
        return any_child(_same_links(ctx, child_type, child_id, links)) if links else FALSE
    if relation == "type_is":
        _need(isinstance(value, str), relation, value)
        return any_child(child_type == value)
    if relation in _NAME_RELATIONS:
        name = ctx.link_name(child_type, child_id, targets)
        return any_child(text_condition(ctx, _NAME_RELATIONS[relation], name, value))
    raise Uncertain("unsupported_relation", f"{relation} on multi_entity")


# --- conditions and groups --------------------------------------------------------------------------


def condition(scope: Scope, path: str, relation: str, value: Any, *, inside_multi: bool = False) -> sa.ColumnElement:
    found = scope.walk(path)
    if isinstance(found, MultiHop):
        if inside_multi:
            raise Uncertain("unsupported_path", f"{path}: two multi-entity hops")
        inner_scope = Scope(scope.ctx, found.target, scope.ctx.alias(found.target))
        inner = condition(inner_scope, found.rest, relation, value, inside_multi=True)
        assoc = found.et.associations[found.handler.name].alias()
        target = inner_scope.base
        linked = (sa.select(sa.literal(1))
                  .select_from(assoc.join(inner_scope.from_clause(),
                                          sa.and_(target.c.id == assoc.c.child_id,
                                                  assoc.c.child_type == found.target.name,
                                                  target.c._active.is_(True))))
                  .where(assoc.c.parent_id == found.source.c.id))
        if relation in NEGATED:
            return _not(sa.exists(linked.where(_not(inner))))
        return sa.exists(linked.where(inner))
    family = found.handler.family
    if inside_multi and family == "multi_entity":
        raise Uncertain("unsupported_path", f"{path}: a multi-entity field through a multi-entity hop")
    if family == "entity":
        return entity_condition(scope.ctx, found, relation, value)
    if family == "multi_entity":
        return multi_condition(scope.ctx, found, relation, value)
    if family == "none" or not hasattr(found.handler, "column"):
        raise Uncertain("unsupported_relation", f"{relation} on {found.handler.field.data_type}")
    return scalar_condition(scope.ctx, found.handler, relation, found.source.c[found.handler.column], value)


def _values(scope: Scope, path: str, relation: str, values: list) -> Any:
    """The wire values of one condition, shaped as the site reads them for ``relation``."""
    family = scope.ctx.final_handler(scope.et, path).family
    out = []
    for v in values:
        if family == "date_time" and relation in DATE_VALUE_RELATIONS:
            v = _wire_datetime(v)
        elif isinstance(v, dict) and "type" in v and "id" in v:
            v = {"type": v["type"], "id": v["id"]}
        out.append(v)
    if relation in LIST_RELATIONS or relation in PAIR_RELATIONS:
        return out[0] if len(out) == 1 and isinstance(out[0], list) else out
    if len(out) != 1:
        raise Uncertain("malformed", f"the {relation} relation takes one value, got {len(out)}")
    return out[0]


#: Filter groups nested deeper than this pass through: no pipeline needs them, and each level
#: costs stack in the compiler and the database.
MAX_DEPTH = 32


def group(scope: Scope, filters: Any, *, top: bool = True, depth: int = 0) -> sa.ColumnElement:
    """A filter group ``{logical_operator, conditions}`` as one condition."""
    if filters is None and top:
        return TRUE
    if depth > MAX_DEPTH:
        raise Uncertain("unsupported_filter", f"filter groups nested more than {MAX_DEPTH} levels")
    if not isinstance(filters, dict) or not isinstance(filters.get("conditions"), list):
        raise Uncertain("malformed", "filters must be {logical_operator, conditions}")
    operator = filters.get("logical_operator", "and")
    if operator not in ("and", "or"):
        raise Uncertain("malformed", f"logical_operator {operator!r}")
    parts = []
    for cond in filters["conditions"]:
        if isinstance(cond, dict) and "conditions" in cond:
            parts.append(group(scope, cond, top=False, depth=depth + 1))
            continue
        if not isinstance(cond, dict) or not isinstance(cond.get("path"), str) \
                or not isinstance(cond.get("relation"), str) or not isinstance(cond.get("values"), list):
            raise Uncertain("malformed", "a condition must be {path, relation, values}")
        relation = cond["relation"]
        if relation not in RELATIONS:
            raise Uncertain("unsupported_relation", relation)
        value = _values(scope, cond["path"], relation, cond["values"])
        parts.append(condition(scope, cond["path"], relation, value))
    if not parts:
        return TRUE if operator == "and" or top else FALSE
    return sa.and_(*parts) if operator == "and" else sa.or_(*parts)
