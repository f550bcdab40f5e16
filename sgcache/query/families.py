"""What a read does with the fields of each family: filters, sorts, summaries, groupings, values.

Every field class names its family (:attr:`sgcache.fields.base.FieldHandler.family`); the read
compiler asks the family object registered under that name and never branches on families
itself. A data type that filters, sorts and groups like an existing one is a field class with that
family; a type with new query behaviour adds one :class:`Family` subclass here, registered with
:func:`family`. A field whose family is not registered (``none``) is stored and returned, but
filters, sorts and summaries on it pass through.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

import sqlalchemy as sa

from sgcache import wire
from sgcache.fields.base import FieldHandler
from sgcache.query import Uncertain
from sgcache.query import relations as rel
from sgcache.query.dates import CALENDAR_UNITS, SPAN_RELATIONS
from sgcache.query.paths import Context, Final

#: grouping type -> the size of its buckets (number families)
BUCKETS = {"tens": 10, "hundreds": 100, "thousands": 1000, "tensofthousands": 10_000,
           "hundredsofthousands": 100_000, "millions": 1_000_000}
DATE_GROUPINGS = frozenset({"day", "oneday", "fivedays", "week", "month", "quarter", "year"})
#: relations whose values a date_time field reads as wire date-times
DATE_VALUE_RELATIONS = frozenset({"is", "is_not", "less_than", "greater_than", "between", "not_between", "in",
                                  "not_in"})

FAMILIES: dict[str, Family] = {}


def family(cls: type[Family]) -> type[Family]:
    """Class decorator: register one instance under the class's ``name``."""
    FAMILIES[cls.name] = cls()
    return cls


def family_of(handler: FieldHandler) -> Family:
    """The family object of a field (the base :class:`Family`, which offers nothing, if none)."""
    return FAMILIES.get(handler.family, _NONE)


class Family:
    """A family offers nothing by default: every filter, sort, summary and grouping passes through."""

    name: ClassVar[str] = "none"
    #: summary types it takes besides ``record_count`` and ``count``, which every family takes
    summaries: ClassVar[frozenset[str]] = frozenset()
    #: grouping types it takes
    groupings: ClassVar[frozenset[str]] = frozenset()
    #: whether the database totals and groups it (see sgcache.query.aggregate)
    in_sql: ClassVar[bool] = False
    #: whether its values are links (read back with their names, only to live entities)
    link: ClassVar[bool] = False

    # --- filters ------------------------------------------------------------------------------------

    def filter_value(self, relation: str, value: Any) -> Any:
        """One wire value of a filter, as the site reads it (a link keeps only its type and id)."""
        if isinstance(value, dict) and "type" in value and "id" in value:
            return {"type": value["type"], "id": value["id"]}
        return value

    def condition(self, ctx: Context, final: Final, relation: str, value: Any) -> sa.ColumnElement:
        raise Uncertain("unsupported_relation", f"{relation} on {final.handler.field.data_type}")

    # --- sorts --------------------------------------------------------------------------------------

    def sort_keys(self, ctx: Context, final: Final) -> list[sa.ColumnElement]:
        """The expressions that order rows by this field, ascending, in the site's order."""
        raise Uncertain("unsupported_sort", f"{final.handler.name} ({final.handler.field.data_type})")

    # --- summaries ----------------------------------------------------------------------------------

    def set_in_sql(self, col: sa.ColumnElement) -> sa.ColumnElement:
        """When a value counts as set (``count``) in SQL."""
        return col.is_not(None)

    def order_in_sql(self, ctx: Context, col: sa.ColumnElement) -> sa.ColumnElement:
        """The expression ``minimum`` / ``maximum`` compare in SQL."""
        return col

    def group_key(self, ctx: Context, kind: str, value: Any) -> tuple[Any, Any, str]:
        """(sort key, group_value, group_name) of a set wire value under a grouping of type ``kind``."""
        if kind == "firstletter":
            text = value.get("name") if isinstance(value, dict) else value
            letter = (text if isinstance(text, str) else str(text))[:1].upper()
            return letter, letter, letter
        return value, value, str(value)  # exact


_NONE = Family()


def _column(final: Final) -> sa.ColumnElement:
    return final.source.c[final.handler.column]


class _Scalar(Family):
    """A value in one column, sorted by that column."""

    def sort_keys(self, ctx: Context, final: Final) -> list[sa.ColumnElement]:
        return [_column(final)]


@family
class Text(_Scalar):
    name = "text"
    summaries = frozenset({"percentage", "status_percentage", "status_list"})
    groupings = frozenset({"exact", "firstletter"})
    in_sql = True

    def condition(self, ctx: Context, final: Final, relation: str, value: Any) -> sa.ColumnElement:
        return rel.text(ctx, relation, _column(final), value)

    def sort_keys(self, ctx: Context, final: Final) -> list[sa.ColumnElement]:
        col = _column(final)
        return [ctx.bytewise(ctx.lower(col)), ctx.bytewise(col)]

    def set_in_sql(self, col: sa.ColumnElement) -> sa.ColumnElement:
        return sa.and_(col.is_not(None), col != "")

    def order_in_sql(self, ctx: Context, col: sa.ColumnElement) -> sa.ColumnElement:
        return ctx.bytewise(col)  # code point order, as the site


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@family
class Number(_Scalar):
    name = "number"
    summaries = frozenset({"sum", "maximum", "minimum", "average", "percentage"})
    groupings = frozenset({"exact", "firstletter", *BUCKETS})
    in_sql = True

    def condition(self, ctx: Context, final: Final, relation: str, value: Any) -> sa.ColumnElement:
        return rel.ordered(relation, _column(final), value, _is_number)

    def group_key(self, ctx: Context, kind: str, value: Any) -> tuple[Any, Any, str]:
        if kind in BUCKETS:
            size = BUCKETS[kind]
            low = (value // size) * size
            return low, low, f"{low} - {low + size - 1}"
        return super().group_key(ctx, kind, value)


@family
class Checkbox(_Scalar):
    name = "checkbox"
    summaries = frozenset({"checked", "unchecked", "percentage"})
    groupings = frozenset({"exact"})
    in_sql = True

    def condition(self, ctx: Context, final: Final, relation: str, value: Any) -> sa.ColumnElement:
        if relation not in ("is", "is_not"):
            raise Uncertain("unsupported_relation", f"{relation} on checkbox")
        checked = sa.func.coalesce(_column(final), rel.FALSE)
        match = checked.is_(rel.TRUE) if bool(value) else checked.is_(rel.FALSE)
        return match if relation == "is" else sa.not_(match)


class _Dated(_Scalar):
    """Dates and date-times: ordered, relative (in_last ...) and grouped by calendar periods."""

    summaries = frozenset({"earliest", "latest"})
    groupings = frozenset({"exact", *DATE_GROUPINGS})
    dates: ClassVar[bool] = True

    def condition(self, ctx: Context, final: Final, relation: str, value: Any) -> sa.ColumnElement:
        if relation in SPAN_RELATIONS or relation in CALENDAR_UNITS:
            return rel.relative(ctx, relation, _column(final), value, dates=self.dates)
        return self.compare(relation, _column(final), value)

    def compare(self, relation: str, col: sa.ColumnElement, value: Any) -> sa.ColumnElement:
        raise NotImplementedError

    def day(self, ctx: Context, value: Any) -> dt.date:
        raise NotImplementedError

    def group_key(self, ctx: Context, kind: str, value: Any) -> tuple[Any, Any, str]:
        if kind not in DATE_GROUPINGS:
            return super().group_key(ctx, kind, value)
        day = self.day(ctx, value)
        if kind == "month":
            first = day.replace(day=1)
            return first, first.strftime("%Y-%m"), first.strftime("%B %Y")
        if kind == "quarter":
            quarter = (day.month - 1) // 3 + 1
            return (day.year, quarter), f"{day.year} Q{quarter}", f"Q{quarter} {day.year}"
        if kind == "year":
            return day.year, str(day.year), str(day.year)
        if kind == "fivedays":
            day = dt.date.fromordinal(day.toordinal() - day.toordinal() % 5)
        elif kind == "week":  # weeks start on Sunday
            day = day - dt.timedelta(days=(day.weekday() + 1) % 7)
        return day, day.isoformat(), day.isoformat()


@family
class Date(_Dated):
    """Wire ``YYYY-MM-DD`` values, compared as dates."""

    name = "date"

    def compare(self, relation: str, col: sa.ColumnElement, value: Any) -> sa.ColumnElement:
        def one(v: Any) -> dt.date | None:
            if v is None:
                return None
            parsed = wire.parse_date(v) if isinstance(v, str) else None
            if parsed is None:
                raise Uncertain("unsupported_value", f"{relation} {v!r} on a date")
            return parsed

        dates = [one(v) for v in value] if isinstance(value, list) else one(value)
        return rel.ordered(relation, col, dates, lambda v: isinstance(v, dt.date))

    def day(self, ctx: Context, value: Any) -> dt.date:
        return dt.date.fromisoformat(value)


@family
class DateTime(_Dated):
    """Wire ``YYYY-MM-DDTHH:MM:SSZ`` values, compared as moments; days are the site's days."""

    name = "date_time"
    dates = False

    def filter_value(self, relation: str, value: Any) -> Any:
        if relation in DATE_VALUE_RELATIONS:
            if not isinstance(value, str):
                return value
            parsed = wire.parse_datetime(value)
            if parsed is None:
                shape = "is not a YYYY-MM-DDTHH:MM:SSZ date and time" if not wire.is_datetime_text(value) \
                    else "is not a date and time"
                raise Uncertain("unsupported_value", f"{value!r} {shape}")
            return parsed
        return super().filter_value(relation, value)

    def compare(self, relation: str, col: sa.ColumnElement, value: Any) -> sa.ColumnElement:
        return rel.ordered(relation, col, value, lambda v: isinstance(v, dt.datetime))

    def day(self, ctx: Context, value: Any) -> dt.date:
        return wire.parse_datetime(value).astimezone(ctx.tz).date()


class _Link(Family):
    """Links: values read back as ``{type, id, name}`` of live entities only."""

    link = True

    def held(self, handler: FieldHandler, row: Any, listed: list[tuple[str, int]] | None) -> list[tuple[str, int]]:
        """The links a row holds, in order (``listed``: the field's association rows, if it has them)."""
        raise NotImplementedError

    def shape(self, values: list) -> Any:
        """The wire value of the field from its live links' values, in order."""
        raise NotImplementedError


@family
class Entity(_Link):
    name = "entity"
    groupings = frozenset({"exact", "entitytype", "firstletter"})

    def held(self, handler: FieldHandler, row: Any, listed: list[tuple[str, int]] | None) -> list[tuple[str, int]]:
        link_id = row[handler.id_column]
        return [] if link_id is None else [(row[handler.type_column], link_id)]

    def shape(self, values: list) -> Any:
        return values[0] if values else None

    def condition(self, ctx: Context, final: Final, relation: str, value: Any) -> sa.ColumnElement:
        handler, source = final.handler, final.source
        type_col, id_col = source.c[handler.type_column], source.c[handler.id_column]
        targets = ctx.link_types(handler)
        if relation in ("is", "is_not", "in", "not_in"):
            links = [rel.link_value(v, relation) for v in
                     (rel.as_list(value) if relation in ("in", "not_in") else [value])]
            parts = [rel.same_links(ctx, type_col, id_col, [link for link in links if link is not None])]
            if any(link is None for link in links):
                parts.append(sa.not_(ctx.live(type_col, id_col, targets)))
            match = sa.or_(*parts)
            return match if relation in ("is", "in") else sa.not_(match)
        if relation in ("type_is", "type_is_not"):
            rel.need(isinstance(value, str), relation, value)
            match = sa.and_(ctx.live(type_col, id_col, targets), type_col == value)
            return match if relation == "type_is" else sa.not_(match)
        if relation in rel.NAME_RELATIONS:
            return rel.text(ctx, rel.NAME_RELATIONS[relation], ctx.link_name(type_col, id_col, targets), value)
        raise Uncertain("unsupported_relation", f"{relation} on entity")

    def sort_keys(self, ctx: Context, final: Final) -> list[sa.ColumnElement]:
        handler = final.handler
        type_col, id_col = final.source.c[handler.type_column], final.source.c[handler.id_column]
        targets = ctx.link_types(handler)
        live = ctx.live(type_col, id_col, targets)
        name = sa.func.coalesce(ctx.link_name(type_col, id_col, targets), "")
        return [sa.case((live, ctx.bytewise(ctx.lower(name))), else_=sa.null()),
                sa.case((live, ctx.bytewise(type_col)), else_=sa.null()),
                sa.case((live, id_col), else_=sa.null())]

    def group_key(self, ctx: Context, kind: str, value: Any) -> tuple[Any, Any, str]:
        if kind == "exact":
            name = value.get("name")
            return ((name or "").lower(), value["type"], value["id"]), value, name or ""
        if kind == "entitytype":
            return value["type"], value["type"], value["type"]
        return super().group_key(ctx, kind, value)


#: multi-entity relations that hold when their positive form does not
_NEGATED = {"is_not": "is", "not_in": "in", "type_is_not": "type_is", "name_not_contains": "name_contains"}


@family
class MultiEntity(_Link):
    """A list of links: a relation matches when any live linked entity does (its negation: none)."""

    name = "multi_entity"

    def held(self, handler: FieldHandler, row: Any, listed: list[tuple[str, int]] | None) -> list[tuple[str, int]]:
        return listed or []

    def shape(self, values: list) -> Any:
        return values

    def condition(self, ctx: Context, final: Final, relation: str, value: Any) -> sa.ColumnElement:
        if relation in _NEGATED:
            return sa.not_(self.condition(ctx, final, _NEGATED[relation], value))
        handler = final.handler
        assoc = final.et.associations[handler.name].alias()
        targets = ctx.link_types(handler)
        child_type, child_id = assoc.c.child_type, assoc.c.child_id
        children = sa.select(sa.literal(1)).select_from(assoc).where(assoc.c.parent_id == final.source.c.id,
                                                                     ctx.live(child_type, child_id, targets))

        def any_child(*conds) -> sa.ColumnElement:
            return sa.exists(children.where(*conds))

        if relation in ("is", "in"):
            values = [value] if relation == "is" else [v for v in rel.as_list(value) if v is not None]
            links = [rel.link_value(v, relation) for v in values]
            if relation == "is" and links == [None]:
                return sa.not_(any_child())
            return any_child(rel.same_links(ctx, child_type, child_id, links)) if links else rel.FALSE
        if relation == "type_is":
            rel.need(isinstance(value, str), relation, value)
            return any_child(child_type == value)
        if relation in rel.NAME_RELATIONS:
            name = ctx.link_name(child_type, child_id, targets)
            return any_child(rel.text(ctx, rel.NAME_RELATIONS[relation], name, value))
        raise Uncertain("unsupported_relation", f"{relation} on multi_entity")


#: JSON text of the values the site reads as "no value" in a presence filter (as stored by
#: either database: SQLite keeps the JSON text, PostgreSQL's jsonb prints the same)
_EMPTY_JSON = ("[]", '""', "null")


@family
class Presence(Family):
    """Thumbnails (``image``): the site filters them with ``is`` and ``is_not`` against None only
    (has no thumbnail, has one). An empty list or string counts as none. Any other value or
    relation, sorts and groupings pass through (the site refuses such filters with a fault).
    :class:`Tags` adds the tag relations of ``tag_list`` to these two."""

    name = "presence"

    def condition(self, ctx: Context, final: Final, relation: str, value: Any) -> sa.ColumnElement:
        if relation not in ("is", "is_not") or value is not None:
            raise Uncertain("unsupported_relation", f"{relation} {value!r:.40} on {final.handler.field.data_type}")
        col = _column(final)
        empty = sa.or_(col.is_(None), sa.cast(col, sa.Text).in_(_EMPTY_JSON))
        return empty if relation == "is" else sa.not_(empty)


#: tag_list relation -> (the text relation one tag is tested with, whether it holds when no tag passes)
_TAG_RELATIONS = {"is": ("is", False), "is_not": ("is", True),
                  "name_contains": ("contains", False), "name_not_contains": ("contains", True)}


@family
class Tags(Presence):
    """Tag lists (``tag_list``), with the relations of the client's operator table: ``is`` /
    ``is_not`` None (no tags / some tags; an empty list has none), ``is`` / ``is_not`` a tag name
    (the list holds that tag / does not: whole names, case ignored) and ``name_contains`` /
    ``name_not_contains`` (some tag / no tag holds the text, case ignored). A tag is a name, or a
    ``{"name", ...}`` dict read by its name. ``name_id`` (tags by id: the cache keeps names only),
    other values and relations, sorts and groupings pass through."""

    name = "tag_list"

    def condition(self, ctx: Context, final: Final, relation: str, value: Any) -> sa.ColumnElement:
        if relation in ("is", "is_not") and value is None:
            return super().condition(ctx, final, relation, value)
        if relation not in _TAG_RELATIONS:
            raise Uncertain("unsupported_relation", f"{relation} on tag_list")
        rel.need(isinstance(value, str), relation, value)
        text_relation, negated = _TAG_RELATIONS[relation]
        tags, tag_name = _tag_names(ctx, _column(final))
        found = sa.exists(sa.select(sa.literal(1)).select_from(tags)
                          .where(rel.text(ctx, text_relation, tag_name, value)))
        return sa.not_(found) if negated else found


def _tag_names(ctx: Context, col: sa.ColumnElement) -> tuple[sa.FromClause, sa.ColumnElement]:
    """The tags of a JSON list column as rows, and each tag's name (NULL for a tag that has none).
    A value that is not a list (there should be none) has no tags rather than failing the query."""
    if ctx.dialect == "postgresql":
        listed = sa.case((sa.func.jsonb_typeof(col) == "array", col), else_=sa.null())
        tags = sa.func.jsonb_array_elements(listed).table_valued("value").render_derived()
        tag, kind = tags.c.value, sa.func.jsonb_typeof(tags.c.value)
        # #>> with an empty path: the text of a JSON string
        name = sa.case((kind == "string", tag.op("#>>", return_type=sa.Text)(sa.literal_column("'{}'"))),
                       (kind == "object", tag.op("->>", return_type=sa.Text)("name")), else_=sa.null())
        return tags, name
    listed = sa.case((sa.func.json_type(col) == "array", col), else_=sa.null())
    tags = sa.func.json_each(listed).table_valued("value", "type")
    name = sa.case((tags.c.type == "text", tags.c.value),
                   (tags.c.type == "object", sa.func.json_extract(tags.c.value, "$.name")), else_=sa.null())
    return tags, sa.type_coerce(name, sa.Text)
