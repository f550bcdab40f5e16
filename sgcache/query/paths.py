"""What a read may touch, checked against the schema, and the SQL for fields, links and deep paths.

A path is a field name (``code``) or hops through links (``sg_sequence.Sequence.code``,
``entity.Shot.sg_sequence.Sequence.project.Project.name``). A hop through an entity field is a
LEFT OUTER JOIN to the linked type's table that only matches a live (not retired) entity, so a
null or retired hop gives nulls, as on the site. A hop through a multi-entity field cannot be a
join (it fans out) and is left to the caller (an EXISTS in filters).

Every name is looked up in :class:`~sgcache.store.tables.Tables` before it reaches SQL, and
every type and field is checked against what the cache holds completely (imported types,
fields without backfill marks); anything else raises :class:`~sgcache.query.Uncertain`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from sgcache.fields.base import FieldHandler
from sgcache.fields.entity import EntityField, MultiEntityField
from sgcache.query import Uncertain
from sgcache.store.readstate import ReadState
from sgcache.store.slim import SlimType
from sgcache.store.tables import EntityTable, Tables
from sgcache.wire import format_datetime

#: what a link may point into: a cached type's table, or the slim records of a type left out
Target = EntityTable | SlimType

#: the field classes whose values are links (hops of deep paths)
_LINKS = (EntityField, MultiEntityField)


@dataclass(frozen=True)
class Visibility:
    """What one caller may see, as the site showed it when asked as that caller.

    Rows of a type with a ``project`` link are visible when their project is None or one of
    ``projects``; ``Project`` rows when their id is; rows of other types when their type is.
    """

    projects: frozenset[int]
    #: visible type -> its fields the caller cannot see (None: unknown, the site showed no row)
    types: dict[str, frozenset[str] | None]

    def row_filter(self, et: EntityTable, table: sa.FromClause | None = None) -> sa.ColumnElement | None:
        """The condition on ``et``'s rows (in ``table``, an alias of it) that keeps the visible ones."""
        t = table if table is not None else et.table
        ids = sorted(self.projects)
        if et.name == "Project":
            return t.c.id.in_(ids)
        handler = et.fields.get("project")
        if handler is None or not handler.cached:
            return None
        type_col, id_col = t.c[handler.type_column], t.c[handler.id_column]
        return sa.or_(id_col.is_(None), sa.and_(type_col == "Project", id_col.in_(ids)))

    def sees(self, type_name: str, project_id: int | None) -> bool:
        """Is an entity of this type, in this project (None: none, or the type has no project), visible?"""
        if type_name not in self.types:
            return False
        return project_id is None or project_id in self.projects


class Context:
    """One read's view of the cache: tables, what is complete, the dialect, the site's clock, and
    what the caller may see (``visibility``; None: everything)."""

    def __init__(self, tables: Tables, state: ReadState, dialect: str, *, tz: ZoneInfo,
                 now: dt.datetime | None = None, visibility: Visibility | None = None,
                 as_of: dt.datetime | None = None, unsure: Mapping[str, dt.datetime] | None = None):
        self.tables = tables
        self.state = state
        self.dialect = dialect
        self.tz = tz
        #: a read of the past: every table is read as it was then (sgcache.store.history), and
        #: relative dates count from then
        self.as_of = as_of
        #: a read of the past: type -> until when the cache does not know some of its entities
        #: at ``as_of`` (sgcache.store.history.unsure_at)
        self.unsure = unsure or {}
        self._now_given = as_of or now
        self._now: dt.datetime | None = None
        #: whether the read counted from now (relative dates): its plan holds this moment
        self.used_now = False
        self.visibility = visibility
        self._alias_count = 0
        self._past: dict[str, EntityTable] = {}

    @property
    def now(self) -> dt.datetime:
        """The site's now (or the as-of moment) in its time zone, the same for the whole read."""
        self.used_now = True
        if self._now is None:
            self._now = (self._now_given or dt.datetime.now(dt.UTC)).astimezone(self.tz)
        return self._now

    # --- checks ------------------------------------------------------------------------------------

    def entity_table(self, type_name: str) -> EntityTable:
        """A type the read may query: cached completely (and visible to the caller)."""
        et = self.cached_table(type_name)
        if self.visibility is not None and type_name not in self.visibility.types:
            raise Uncertain("restricted_type", f"{type_name} is not visible to the caller")
        return et

    def cached_table(self, type_name: str) -> EntityTable:
        """A type cached completely, whether or not the caller may see it (links into it read as None)."""
        if type_name not in self.tables:
            raise Uncertain("uncached_type", type_name)
        if type_name in self.state.rebuilding:
            raise Uncertain("type_rebuilding", type_name)
        if type_name not in self.state.ready:
            raise Uncertain("type_not_imported", type_name)
        if type_name in self.state.suspect:
            raise Uncertain("dead_letter", f"{type_name}: an event about it failed to apply; reads pass through "
                            "until its next full import")
        if self.as_of is not None:
            return self._as_it_was(self.tables[type_name])
        return self.tables[type_name]

    def _as_it_was(self, et: EntityTable) -> EntityTable:
        """``et`` with its tables as they were at ``as_of`` (same names and columns)."""
        past = self._past.get(et.name)
        if past is None:
            self._history_covers(et.name, "id")
            until = self.unsure.get(et.name)
            if until is not None:
                raise Uncertain("history_not_exact", f"{et.name}: the cache read some of its entities after they "
                                f"had changed again, so their values at this moment are not known; ask for "
                                f"{format_datetime(until)} or later")
            # The views read the moment when the statements run (history.reading_as_of).
            past = self._past[et.name] = self.tables.past(et)
        return past

    def _history_covers(self, type_name: str, field_name: str) -> None:
        """The cache's history of the field reaches back to ``as_of``, else the read is refused
        with the earliest time it could answer."""
        start = self.state.history_from.get((type_name, field_name))
        if start is None:
            raise Uncertain("history_not_started", f"{type_name}.{field_name}: its history begins once it is "
                            "imported in full")
        pruned = self.state.history_pruned
        if pruned is not None and pruned > self.as_of:
            raise Uncertain("history_pruned", f"versions that ended before {format_datetime(pruned)} are no "
                            "longer kept (history.keep); ask for that time or later")
        if start > self.as_of:
            what = type_name if field_name == "id" else f"{type_name}.{field_name}"
            raise Uncertain("history_before_start", f"{what}: the cache's history of it begins at "
                            f"{format_datetime(start)}; ask for that time or later")

    def handler(self, et: EntityTable, name: str, *, shown: bool = True) -> FieldHandler:
        """The handler of a field the read may use (``shown`` False: only to name links, which
        :meth:`check_named` checks when a link to the type is found)."""
        handler = et.fields.get(name)
        if handler is None:
            raise Uncertain("uncached_field", f"{et.name}.{name}")
        if shown and self.visibility is not None and et.name in self.visibility.types and name != "id":
            hidden = self.visibility.types[et.name]
            if hidden is None:
                raise Uncertain("restricted_fields_unknown", f"{et.name}: the site showed the caller no row to "
                                "learn its fields from")
            if name in hidden:
                raise Uncertain("restricted_field", f"{et.name}.{name} is hidden from the caller")
        if not handler.cached:
            raise Uncertain("uncached_field", f"{et.name}.{name} ({handler.field.data_type})")
        if name in self.state.backfill.get(et.name, ()):
            raise Uncertain("field_backfill", f"{et.name}.{name}")
        if name in self.state.mismatched.get(et.name, ()):
            raise Uncertain("schema_mismatch", f"{et.name}.{name} is stored differently in the database "
                            "(run sgcache schema migrate with this schema file and version)")
        if self.as_of is not None:
            self._history_covers(et.name, name)
        return handler

    def link_types(self, handler: FieldHandler) -> list[Target]:
        """What a link field may point into: every type cached and imported, or held as slim records."""
        types = handler.field.entity_types
        if not types:
            raise Uncertain("unsupported_path", f"{handler.type_name}.{handler.name} lists no entity types")
        return [self.link_target(t) for t in types]

    def link_target(self, type_name: str) -> Target:
        """Where links to ``type_name`` are looked up: its table, or its slim records when the schema
        leaves the type out (only for callers who see everything: what a restricted caller may see
        of a type the cache does not hold is not known)."""
        if type_name not in self.tables and type_name in self.state.slim:
            if self.as_of is not None:
                raise Uncertain("history_not_kept", f"a link to {type_name}: the cache keeps no history of the "
                                "types it holds as slim records")
            if self.visibility is not None:
                raise Uncertain("restricted_link", f"a link to {type_name} (not cached) for a caller who sees only "
                                "some projects")
            return self.state.slim[type_name]
        return self.cached_table(type_name)

    def identifier(self, et: Target) -> sa.ColumnElement | None:
        """The column holding the ``name`` of links to this type (None: links have no name, or they
        are named from slim records)."""
        if isinstance(et, SlimType):
            return None
        ident = et.entity_type.identifier
        if ident is None:
            return None
        handler = self.handler(et, ident, shown=False)
        if handler.family != "text":
            raise Uncertain("unsupported_path", f"{et.name}.{ident} ({handler.field.data_type}) names its links")
        return et.table.c[handler.column]

    def check_named(self, et: Target) -> None:
        """Links into ``et`` were found: may the caller be shown their names?"""
        if isinstance(et, SlimType):
            return  # only callers who see everything get links to slim types (link_target)
        ident = et.entity_type.identifier
        if ident is not None:
            self.handler(et, ident)

    def final_handler(self, et: EntityTable, path: str, *, through_multi: bool = True) -> FieldHandler:
        """The handler of the field at the end of ``path``, every hop checked on the way."""
        parts = path.split(".")
        while len(parts) >= 3:
            hop = self.handler(et, parts[0])
            if not isinstance(hop, _LINKS) or (hop.association and not through_multi):
                raise Uncertain("unsupported_path", f"{path}: through {et.name}.{parts[0]}")
            et = self.entity_table(parts[1])
            parts = parts[2:]
        return self.handler(et, ".".join(parts))

    # --- SQL helpers --------------------------------------------------------------------------------

    def lower(self, expr: sa.ColumnElement) -> sa.ColumnElement:
        if self.dialect == "sqlite":
            return sa.func.sg_lower(expr, type_=sa.Text)
        return sa.func.lower(expr, type_=sa.Text)

    def bytewise(self, expr: sa.ColumnElement) -> sa.ColumnElement:
        """Text compared and sorted by code point, as the site does (not by the locale's rules)."""
        if self.dialect == "postgresql":
            return expr.collate("C")
        return expr

    def alias(self, et: EntityTable) -> sa.Alias:
        return _alias(et.table, f"j{self._next_alias()}")

    def slim_alias(self) -> sa.Alias:
        """An alias of the slim records' table (see sgcache.store.slim)."""
        return _alias(self.tables.state.slim, f"s{self._next_alias()}")

    def _next_alias(self) -> int:
        self._alias_count += 1
        if self._alias_count > MAX_ALIASES:
            # Aliases are made once per process (see _alias): a request may not grow that for ever.
            raise Uncertain("unsupported_filter", f"more than {MAX_ALIASES} joins and subqueries")
        return self._alias_count

    def scoped_out(self, et: EntityTable) -> SlimType | None:
        """With only some projects cached: where the entities of a project-scoped type outside
        them are named from (None: the type's table holds every entity). The table is the
        authority for every id it holds; the slim records for the others."""
        if self.state.projects is None or "project" not in et.fields:
            return None
        if self.as_of is not None:
            raise Uncertain("history_not_kept", f"links to {et.name} outside the cached projects: the cache "
                            "keeps no history of them")
        outside = self.state.outside.get(et.name)
        if outside is None:
            raise Uncertain("project_subset", f"links to {et.name} outside the cached projects are not listed yet")
        return outside

    def _slim_live(self, type_name: str, id_col: sa.ColumnElement) -> sa.ColumnElement:
        slim = self.slim_alias()
        return sa.exists().where(slim.c.entity_type == type_name, slim.c.id == id_col,
                                 slim.c.active.is_(True)).correlate_except(slim)

    def exists_live(self, t: Target, id_col: sa.ColumnElement) -> sa.ColumnElement:
        """True when an entity of ``t`` with this id is live (the link's type is checked apart)."""
        if isinstance(t, SlimType):
            return self._slim_live(t.name, id_col)
        target = self.alias(t)  # an alias: the target may be the very table the link is on
        inside = sa.exists().where(target.c.id == id_col, target.c._active.is_(True))
        if self.scoped_out(t) is None:
            return inside
        held = self.alias(t)
        return sa.or_(inside, sa.and_(sa.not_(self._held(held, id_col)), self._slim_live(t.name, id_col)))

    @staticmethod
    def _held(held: sa.Alias, id_col: sa.ColumnElement) -> sa.ColumnElement:
        """The table holds this id, live or retired. Correlated to whatever query ``id_col`` comes
        from, however deep this sits (inside a name's subquery, say)."""
        return sa.exists().where(held.c.id == id_col).correlate_except(held)

    def live(self, type_col: sa.ColumnElement, id_col: sa.ColumnElement,
             targets: list[Target]) -> sa.ColumnElement:
        """True when the link (type_col, id_col) points to a live entity; never NULL."""
        return sa.or_(*[sa.and_(type_col.is_not(None), type_col == t.name, self.exists_live(t, id_col))
                        for t in targets])

    def link_name(self, type_col: sa.ColumnElement, id_col: sa.ColumnElement,
                  targets: list[Target]) -> sa.ColumnElement:
        """The ``name`` of the link: the live target's identifier, else NULL."""
        whens = []
        for t in targets:
            if self.visibility is not None:
                self.check_named(t)
            if isinstance(t, SlimType):
                if t.identifier is None:
                    continue
                slim = self.slim_alias()
                whens.append((type_col == t.name, sa.select(slim.c.name).where(
                    slim.c.entity_type == t.name, slim.c.id == id_col, slim.c.active.is_(True)).scalar_subquery()))
                continue
            ident = self.identifier(t)
            if ident is None:
                continue
            target = self.alias(t)
            name = sa.select(target.c[ident.name]).where(target.c.id == id_col,
                                                         target.c._active.is_(True)).scalar_subquery()
            if self.scoped_out(t) is not None:
                held, slim = self.alias(t), self.slim_alias()
                name = sa.func.coalesce(name, sa.select(slim.c.name).where(
                    slim.c.entity_type == t.name, slim.c.id == id_col, slim.c.active.is_(True),
                    sa.not_(self._held(held, id_col))).correlate_except(slim).scalar_subquery())
            whens.append((type_col == t.name, name))
        if not whens:
            return sa.null()
        return sa.case(*whens, else_=sa.null())




#: Table aliases one read may use at most (more pass through): the process keeps at most this
#: many per table.
MAX_ALIASES = 500

_ALIASES: dict[tuple[int, str], sa.Alias] = {}


def _alias(table: sa.FromClause, name: str) -> sa.Alias:
    """The alias ``name`` of ``table``, made once: an alias is immutable and may appear in any
    number of statements, and making one builds a proxy for every column (wide tables are slow)."""
    key = (id(table), name)
    alias = _ALIASES.get(key)
    if alias is None or alias.element is not table:
        alias = _ALIASES[key] = table.alias(name)
    return alias


@dataclass
class Final:
    """A path that ends in a field reachable by joins: the field's handler and the table holding it."""

    et: EntityTable
    source: sa.FromClause
    handler: FieldHandler


@dataclass
class MultiHop:
    """A path that goes through a multi-entity field: the rest is evaluated per linked entity."""

    et: EntityTable
    source: sa.FromClause
    handler: MultiEntityField
    target: EntityTable
    rest: str


class Scope:
    """The FROM clause of one (sub)query: a base table plus LEFT OUTER JOINs for entity hops."""

    def __init__(self, ctx: Context, et: EntityTable, base: sa.FromClause | None = None):
        self.ctx = ctx
        self.et = et
        self.base = base if base is not None else et.table
        self._joins: dict[tuple, tuple[sa.FromClause, sa.ColumnElement]] = {}

    def from_clause(self) -> sa.FromClause:
        out = self.base
        for target, onclause in self._joins.values():
            out = out.outerjoin(target, onclause)
        return out

    def join(self, source: sa.FromClause, handler: EntityField, target: EntityTable, key: tuple) -> sa.FromClause:
        if key not in self._joins:
            alias = self.ctx.alias(target)
            onclause = sa.and_(alias.c.id == source.c[handler.id_column],
                               source.c[handler.type_column] == target.name, alias.c._active.is_(True))
            self._joins[key] = (alias, onclause)
        return self._joins[key][0]

    def joined(self, field_name: str, target_name: str) -> sa.FromClause | None:
        """The live ``target_name`` this scope's own link ``field_name`` points to, when a filter
        or sort joined it (None: not joined)."""
        found = self._joins.get((field_name, target_name))
        return found[0] if found is not None else None

    def walk(self, path: str) -> Final | MultiHop:
        """Follow ``path`` from this scope's table, joining through entity hops."""
        et, source = self.et, self.base
        parts = path.split(".")
        key: tuple = ()
        if self.ctx.visibility is not None and len(parts) >= 3:
            # Which hops a restricted caller may follow is not known: a deep filter or sort passes through.
            raise Uncertain("restricted_path", f"{path}: a deep path for a caller who sees only some projects")
        while len(parts) >= 3:
            name, target_name = parts[0], parts[1]
            handler = self.ctx.handler(et, name)
            target = self.ctx.entity_table(target_name)
            if self.ctx.state.projects is not None and "project" in target.fields:
                # The linked entity may lie outside the cached projects, where its fields are not held.
                raise Uncertain("project_subset", f"{path}: a deep filter or sort through {target_name} with only "
                                "some projects cached")
            if isinstance(handler, MultiEntityField):
                if target_name not in handler.field.entity_types:
                    raise Uncertain("unsupported_path", f"{path}: {et.name}.{name} does not link {target_name}")
                return MultiHop(et, source, handler, target, ".".join(parts[2:]))
            if not isinstance(handler, EntityField):
                raise Uncertain("unsupported_path", f"{path}: {et.name}.{name} is not a link")
            if target_name not in handler.field.entity_types:
                raise Uncertain("unsupported_path", f"{path}: {et.name}.{name} does not link {target_name}")
            key = (*key, name, target_name)
            source = self.join(source, handler, target, key)
            et, parts = target, parts[2:]
        if len(parts) != 1:
            raise Uncertain("unsupported_path", path)
        handler = self.ctx.handler(et, parts[0])
        if self.ctx.visibility is not None and isinstance(handler, _LINKS) \
                and not (parts[0] == "project" and source is self.base):
            # A link to an entity the caller cannot see reads as no link on the site; only the
            # project link is known to point at visible rows (the row filter keeps no other).
            raise Uncertain("restricted_link", f"{path}: a link filter or sort for a caller who sees only some "
                            "projects")
        return Final(et, source, handler)
