"""Filter groups compiled to SQL conditions; each condition is its field family's (see
:mod:`sgcache.query.families`).

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

from typing import Any

import sqlalchemy as sa

from sgcache.query import Uncertain
from sgcache.query.families import family_of
from sgcache.query.paths import MultiHop, Scope

#: every filter relation of the site, in the order of the API's documentation (which of them a
#: field answers from the cache is its family's)
RELATIONS = (
    "is", "is_not", "less_than", "greater_than", "contains", "not_contains", "starts_with", "ends_with",
    "between", "not_between", "in", "not_in", "in_last", "not_in_last", "in_next", "not_in_next",
    "in_calendar_day", "in_calendar_week", "in_calendar_month", "in_calendar_year", "type_is", "type_is_not",
    "name_contains", "name_not_contains", "name_is", "name_starts_with", "name_ends_with",
)
_KNOWN = frozenset(RELATIONS)
LIST_RELATIONS = frozenset({"in", "not_in"})
PAIR_RELATIONS = frozenset({"between", "not_between", "in_last", "not_in_last", "in_next", "not_in_next"})
#: Through a multi-entity hop these hold when every linked entity matches (the rest: any one).
NEGATED = frozenset({"is_not", "not_in", "not_contains", "name_not_contains", "type_is_not"})

TRUE, FALSE = sa.true(), sa.false()


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
            return sa.not_(sa.exists(linked.where(sa.not_(inner))))
        return sa.exists(linked.where(inner))
    if inside_multi and found.handler.association:
        raise Uncertain("unsupported_path", f"{path}: a multi-entity field through a multi-entity hop")
    return family_of(found.handler).condition(scope.ctx, found, relation, value)


def _values(scope: Scope, path: str, relation: str, values: list) -> Any:
    """The wire values of one condition, shaped as the site reads them for ``relation``."""
    family = family_of(scope.ctx.final_handler(scope.et, path))
    out = [family.filter_value(relation, v) for v in values]
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
        if relation not in _KNOWN:
            raise Uncertain("unsupported_relation", relation)
        value = _values(scope, cond["path"], relation, cond["values"])
        parts.append(condition(scope, cond["path"], relation, value))
    if not parts:
        return TRUE if operator == "and" or top else FALSE
    return sa.and_(*parts) if operator == "and" else sa.or_(*parts)


def within_projects(filters: Any, projects: frozenset[int]) -> bool:
    """Whether a filter group provably keeps a read to ``projects``: a ``project`` ``is`` / ``in``
    condition naming only those projects, at the top level of an ``and`` group. (Anything
    subtler, such as ``project.Project.id``, or the condition inside an ``or``, is not trusted.)"""
    if not isinstance(filters, dict) or filters.get("logical_operator", "and") != "and" \
            or not isinstance(filters.get("conditions"), list):
        return False
    for cond in filters["conditions"]:
        if not isinstance(cond, dict) or cond.get("path") != "project" or cond.get("relation") not in ("is", "in"):
            continue
        values = cond.get("values")
        if not isinstance(values, list):
            continue
        if cond["relation"] == "in" and len(values) == 1 and isinstance(values[0], list):
            values = values[0]
        if values and all(isinstance(v, dict) and v.get("type") == "Project" and type(v.get("id")) is int
                          and v["id"] in projects for v in values):
            return True
    return False
