"""``read`` (find / find_one) answered from the cache: compile, run, and shape entities as the site does.

:func:`compile_read` checks the whole request first and raises
:class:`~sgcache.query.Uncertain` for anything the cache cannot answer exactly; only then does
:meth:`ReadPlan.run` touch the database: one query selects the page's ids (filters, sorts,
paging), then a few batched queries fetch the return fields (links with their names,
multi-entity lists in order, deep fields hop by hop).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from sgcache.fields.base import FieldHandler
from sgcache.fields.entity import EntityField, MultiEntityField
from sgcache.query import Uncertain
from sgcache.query.families import family_of
from sgcache.query.filters import group, within_projects
from sgcache.query.paths import Context, MultiHop, Scope
from sgcache.store import prepared
from sgcache.store.slim import SlimType
from sgcache.store.tables import EntityTable

PAGE_SIZE = 500
#: The execution options of a kept plan's queries once it is asked again (ReadPlan.prepare).
_PREPARED = {prepared.OPTION: True}
#: Distinct return fields one read answered from the cache may ask for (more pass through).
MAX_RETURN_FIELDS = 1_000


# --- return fields ------------------------------------------------------------------------------


@dataclass
class FieldPlan:
    """How to produce one return field of one type: directly, or through a hop."""

    name: str
    handler: FieldHandler | None = None  # a field of this type
    hop: FieldHandler | None = None  # or the link field to follow
    target: EntityTable | None = None
    rest: FieldPlans | None = None


@dataclass
class FieldPlans:
    et: EntityTable
    fields: list[FieldPlan] = field(default_factory=list)


def plan_fields(ctx: Context, et: EntityTable, names: Iterable[str], *, through_multi: bool = False,
                nested: bool = False) -> FieldPlans:
    plans = FieldPlans(et)
    for name in names:
        if name in ("type", "id"):
            if nested:  # the end of a deep path: the linked entity's own id or type
                plans.fields.append(FieldPlan(name))
            continue
        parts = name.split(".", 2)
        if len(parts) < 3:
            handler = ctx.handler(et, name)
            if isinstance(handler, (EntityField, MultiEntityField)):
                if through_multi and isinstance(handler, MultiEntityField):
                    raise Uncertain("unsupported_path", f"{name}: a list inside a multi-entity hop")
                for target in ctx.link_types(handler):
                    ctx.identifier(target)
            plans.fields.append(FieldPlan(name, handler=handler))
            continue
        hop_name, target_name, rest = parts
        hop = ctx.handler(et, hop_name)
        if not isinstance(hop, (EntityField, MultiEntityField)):
            raise Uncertain("unsupported_path", f"{name}: {et.name}.{hop_name} is not a link")
        if target_name not in hop.field.entity_types:
            raise Uncertain("unsupported_path", f"{name}: {et.name}.{hop_name} does not link {target_name}")
        multi = isinstance(hop, MultiEntityField)
        if multi and through_multi:
            raise Uncertain("unsupported_path", f"{name}: two multi-entity hops")
        target = ctx.entity_table(target_name)
        plans.fields.append(FieldPlan(name, hop=hop, target=target,
                                      rest=plan_fields(ctx, target, [rest], through_multi=through_multi or multi,
                                                       nested=True)))
    return plans


#: (table, named, dialect, of the past) -> the names query of a caller who sees everything (see
#: _names_statement)
_NAMES: dict[tuple[str, bool, str, bool], sa.Select] = {}


def _names_statement(ctx: Context, et: EntityTable, named: bool, ids: list[int]) -> tuple[sa.Select, dict]:
    """The names query for links into ``et``, built once per table: its ids go in one bound
    array on PostgreSQL (the same SQL text whatever their number, so SQLAlchemy compiles it
    once), in an expanding IN list on SQLite."""
    ident = ctx.identifier(et) if named else None  # checks the identifier field each time
    key = (et.table.name, ident is not None, ctx.dialect, ctx.as_of is not None)
    stmt = _NAMES.get(key)
    if stmt is None or stmt.selected_columns[0].table is not et.table:  # a new schema's tables
        t = et.table
        if ctx.dialect == "postgresql":
            where = t.c.id == sa.any_(sa.bindparam("ids", type_=postgresql.ARRAY(sa.Integer)))
        else:
            where = t.c.id.in_(sa.bindparam("ids", expanding=True))
        stmt = _NAMES[key] = sa.select(t.c.id, t.c._active, ident if ident is not None else sa.null(),
                                       sa.true()).where(where)
    return stmt, {"ids": ids}


class Values:
    """Fetches return-field values for many entities at once, and link names, in few queries
    (each run with ``options``: a repeated read's ask to be prepared, see ReadPlan.prepare)."""

    def __init__(self, ctx: Context, conn: sa.Connection, options: dict | None = None):
        self.ctx = ctx
        self.conn = conn
        self.options = options or {}

    def names(self, links: set[tuple[str, int]], named: set[str]) -> dict[tuple[str, int], tuple[bool, Any]]:
        """(live, name) of each link target (names only for ``named`` types); a missing target is
        not live."""
        by_type: dict[str, list[int]] = {}
        for type_name, entity_id in links:
            by_type.setdefault(type_name, []).append(entity_id)
        out: dict[tuple[str, int], tuple[bool, Any]] = {}
        visibility = self.ctx.visibility
        for type_name, ids in by_type.items():
            ids.sort()  # the same links, the same SQL text (a prepared statement is found by its text)
            if type_name not in self.ctx.tables:
                out.update(self._slim_names(self.ctx.link_target(type_name), ids))
                continue
            if visibility is not None and type_name not in visibility.types:
                continue  # the caller cannot see the type: its links read as None
            et = self.ctx.entity_table(type_name)
            if visibility is not None and type_name in named:
                self.ctx.check_named(et)  # raises Uncertain: the name may be hidden from the caller
            if visibility is None:
                stmt, params = _names_statement(self.ctx, et, type_name in named, ids)
            else:
                ident = self.ctx.identifier(et) if type_name in named else None
                cols = [et.table.c.id, et.table.c._active, ident if ident is not None else sa.null()]
                seen = visibility.row_filter(et)
                # A link to a row the caller cannot see reads as no link, as on the site.
                cols.append(seen if seen is not None else sa.true())
                stmt, params = sa.select(*cols).where(et.table.c.id.in_(ids)), {}
            for row in self.conn.execute(stmt, params, execution_options=self.options):
                out[(type_name, row[0])] = (bool(row[1]) and bool(row[3]), row[2])
            outside = self.ctx.scoped_out(et)
            unheld = [i for i in ids if (type_name, i) not in out]
            if outside is not None and unheld:
                out.update(self._slim_names(outside, unheld))
        return out

    def _slim_names(self, slim: SlimType, ids: list[int]) -> dict[tuple[str, int], tuple[bool, Any]]:
        """(live, name) of links to a type held as slim records."""
        t = self.ctx.tables.state.slim
        rows = self.conn.execute(sa.select(t.c.id, t.c.active, t.c.name)
                                 .where(t.c.entity_type == slim.name, t.c.id.in_(ids)),
                                 execution_options=self.options)
        return {(slim.name, r[0]): (bool(r[1]), r[2] if slim.identifier else None) for r in rows}

    @staticmethod
    def columns(plans: FieldPlans) -> list[str]:
        """The columns of ``plans.et``'s table the return fields are made from (id first)."""
        columns = {"id"}
        for fp in plans.fields:
            handler = fp.handler or fp.hop
            if handler is not None:
                columns.update(handler.column_names)
        return ["id", *sorted(columns - {"id"})]

    def fetch(self, plans: FieldPlans, ids: list[int], rows: dict[int, Any] | None = None,
              known: dict[tuple[str, int], tuple[bool, Any]] | None = None) -> dict[int, dict[str, Any]]:
        """{id: {return field: wire value}} for ``ids`` of ``plans.et`` (``rows``: their columns,
        when the caller has them already; ``known``: (live, name) of links already read)."""
        et = plans.et
        out: dict[int, dict[str, Any]] = {i: {} for i in ids}
        if not ids or not plans.fields:
            return out
        if rows is None:
            rows = {r["id"]: r for r in self.conn.execute(
                sa.select(*[et.table.c[c] for c in self.columns(plans)]).where(et.table.c.id.in_(ids)),
                execution_options=self.options).mappings()}
            if len(rows) < len(ids):
                # A live linked entity the table lacks lies outside the cached projects (its slim
                # record said it was live): its fields are not held.
                raise Uncertain("project_subset", f"a link to {et.name} outside the cached projects")
        held = _Held(self._lists(plans, ids), rows)
        names = self._link_names(plans, held, known or {})
        for fp in plans.fields:
            if fp.hop is not None:
                self._fill_hop(out, fp, held, names)
            elif fp.handler is not None:
                self._fill_field(out, fp, held, names)
            else:  # the end of a deep path: the entity's own id or type
                for i in rows:
                    out[i][fp.name] = i if fp.name == "id" else et.name
        return out

    def _lists(self, plans: FieldPlans, ids: list[int]) -> dict[str, dict[int, list[tuple[str, int]]]]:
        """The links each association (multi-entity) field of the return fields holds, per id, in order."""
        lists: dict[str, dict[int, list[tuple[str, int]]]] = {}
        for fp in plans.fields:
            handler = fp.handler or fp.hop
            if handler is None or not handler.association or handler.name in lists:
                continue
            assoc = plans.et.associations[handler.name]
            per_parent: dict[int, list[tuple[str, int]]] = {i: [] for i in ids}
            for r in self.conn.execute(sa.select(assoc.c.parent_id, assoc.c.child_type, assoc.c.child_id)
                                       .where(assoc.c.parent_id.in_(ids))
                                       .order_by(assoc.c.parent_id, assoc.c.position),
                                       execution_options=self.options):
                per_parent[r[0]].append((r[1], r[2]))
            lists[handler.name] = per_parent
        return lists

    def _link_names(self, plans: FieldPlans, held: _Held,
                    known: dict[tuple[str, int], tuple[bool, Any]]) -> dict[tuple[str, int], tuple[bool, Any]]:
        """(live, name) of every link the return fields hold: names for link fields returned as
        they are, liveness only for the links a hop follows (into its target type); the links
        in ``known`` are not asked again."""
        links: set[tuple[str, int]] = set()
        named: set[str] = set()
        for fp in plans.fields:
            handler = fp.handler or fp.hop
            family = family_of(handler) if handler is not None else None
            if family is None or not family.link:
                continue
            if fp.hop is None:
                named.update(handler.field.entity_types)
            if family.name == "entity":  # one link in two columns: read them straight
                type_col, id_col = handler.type_column, handler.id_column
                links.update((row[type_col], row[id_col]) for row in held.rows.values()
                             if row[id_col] is not None and (fp.hop is None or row[type_col] == fp.target.name))
                continue
            for i in held.rows:
                links.update(link for link in held.links(handler, i) if fp.hop is None or link[0] == fp.target.name)
        links.difference_update(known)
        return {**self.names(links, named), **known} if links else known

    def _fill_field(self, out: dict, fp: FieldPlan, held: _Held, names: dict) -> None:
        handler = fp.handler
        family = family_of(handler)
        name = fp.name
        if handler.read_as_is:
            column = handler.column
            for i, row in held.rows.items():
                out[i][name] = row[column]
            return
        if family.name == "entity":  # a link, or None when it is empty or its target is not live
            type_col, id_col = handler.type_column, handler.id_column
            for i, row in held.rows.items():
                link_id = row[id_col]
                found = None if link_id is None else names.get((row[type_col], link_id))
                out[i][name] = ({"type": row[type_col], "id": link_id, "name": found[1]}
                                if found is not None and found[0] else None)
            return
        for i, row in held.rows.items():
            if family.link:
                out[i][fp.name] = family.shape([{"type": t, "id": c, "name": names[(t, c)][1]}
                                                for t, c in held.live(handler, i, names)])
            else:
                out[i][fp.name] = handler.from_db(row)

    def _fill_hop(self, out: dict, fp: FieldPlan, held: _Held, names: dict) -> None:
        """A deep field: the live linked entities of the hop's target type, then their values."""
        followed = {i: [c for t, c in held.live(fp.hop, i, names) if t == fp.target.name] for i in held.rows}
        inner = self.fetch(fp.rest, sorted({t for targets in followed.values() for t in targets}))
        (rest_plan,) = fp.rest.fields
        shape = family_of(fp.hop).shape
        for i, targets in followed.items():
            out[i][fp.name] = shape([inner[t].get(rest_plan.name) for t in targets])


@dataclass
class _Held:
    """The rows of one fetch and the lists of their association fields: which links each holds."""

    lists: dict[str, dict[int, list[tuple[str, int]]]]
    rows: dict[int, Any]
    #: (field, row id) -> its links, read once (names need them first, then the values)
    _seen: dict[tuple[str, int], list[tuple[str, int]]] = field(default_factory=dict)

    def links(self, handler: FieldHandler, i: int) -> list[tuple[str, int]]:
        """The links row ``i``'s link field holds, in order, live or not."""
        key = (handler.name, i)
        found = self._seen.get(key)
        if found is None:
            listed = self.lists[handler.name][i] if handler.association else None
            found = self._seen[key] = family_of(handler).held(handler, self.rows[i], listed)
        return found

    def live(self, handler: FieldHandler, i: int, names: dict) -> list[tuple[str, int]]:
        """The links row ``i``'s link field holds to live entities the caller may see, in order."""
        return [link for link in self.links(handler, i) if names.get(link, (False, None))[0]]


# --- the query -------------------------------------------------------------------------------------


def _sort_columns(ctx: Context, scope: Scope, spec: Any) -> list[sa.ColumnElement]:
    if not isinstance(spec, dict) or not isinstance(spec.get("field_name"), str):
        raise Uncertain("malformed", "sorts must be [{field_name, direction}]")
    direction = spec.get("direction", "asc")
    if direction not in ("asc", "desc"):
        raise Uncertain("malformed", f"sort direction {direction!r}")
    found = scope.walk(spec["field_name"])
    if isinstance(found, MultiHop):
        raise Uncertain("unsupported_sort", f"{spec['field_name']} goes through a multi-entity field")
    keys = family_of(found.handler).sort_keys(ctx, found)
    if direction == "asc":
        return [k.asc().nulls_last() for k in keys]
    return [k.desc().nulls_first() for k in keys]


def within_cached_projects(ctx: Context, et: EntityTable, filters: Any) -> None:
    """With only some projects cached, a read is answered when its rows all lie in them: its type
    has no project (cached whole), or its filters keep it to cached projects (see
    :func:`~sgcache.query.filters.within_projects`). Links out of them are named from slim
    records, and hops out of them pass through (see docs/reads.rst)."""
    projects = ctx.state.projects
    if projects is None:
        return
    if ctx.visibility is not None:
        raise Uncertain("project_subset", "only some projects are cached, and the caller sees only some")
    if "project" in et.fields and not within_projects(filters, projects):
        raise Uncertain("project_subset", "only some projects are cached and the filters do not keep the read "
                        "to them")


def archived_filter(ctx: Context, et: EntityTable) -> sa.ColumnElement | None:
    """include_archived_projects: false hides archived projects and what belongs to them."""
    project = ctx.entity_table("Project")
    archived = ctx.handler(project, "archived")
    archived_ids = sa.select(project.table.c.id).where(project.table.c[archived.column].is_(True))
    if et.name == "Project":
        return et.table.c.id.not_in(archived_ids)
    if "project" not in et.fields:
        return None
    handler = ctx.handler(et, "project")
    if not isinstance(handler, EntityField):
        raise Uncertain("unsupported_path", f"{et.name}.project is not a link")
    t = et.table
    return sa.not_(sa.and_(t.c[handler.type_column].is_not(None), t.c[handler.type_column] == "Project",
                           t.c[handler.id_column].in_(archived_ids)))


def joined_names(ctx: Context, scope: Scope, fields: FieldPlans) -> tuple[list[tuple[str, str, str]], list]:
    """The returned links whose live target a filter or sort joined already (``entity`` when the
    filters follow ``entity.Shot...``): the page query reads that target's id and name from the
    join, and the names query asks only for the other links. What the join finds is what the
    names query would: the same table, a live row, its identifier. Only for callers who see
    everything, in the present (the names query is otherwise the one that knows the rules)."""
    if ctx.visibility is not None or ctx.as_of is not None:
        return [], []
    joined, extra = [], []
    for fp in fields.fields:
        if fp.hop is not None or not isinstance(fp.handler, EntityField):
            continue
        for target_name in fp.handler.field.entity_types:
            alias = scope.joined(fp.name, target_name)
            if alias is None:
                continue
            n = len(joined)
            ident = ctx.identifier(ctx.entity_table(target_name))
            name = alias.c[ident.name] if ident is not None else sa.null()
            extra += [alias.c.id.label(f"_joined_{n}_id"), name.label(f"_joined_{n}_name")]
            joined.append((target_name, f"_joined_{n}_id", f"_joined_{n}_name"))
    return joined, extra


def visible_rows(ctx: Context, et: EntityTable) -> list[sa.ColumnElement]:
    """The conditions that keep only the rows the caller may see (none when it sees everything)."""
    if ctx.visibility is None:
        return []
    seen = ctx.visibility.row_filter(et)
    return [] if seen is None else [seen]


@dataclass
class ReadPlan:
    ctx: Context
    et: EntityTable
    select_ids: sa.Select
    count: sa.Select | None
    fields: FieldPlans
    offset: int
    per_page: int
    paging: str  # "has_next_page" | "entity_count" | "none"
    page: int
    #: (type, id label, name label) of the page query's extra columns: the live target of a
    #: returned link that a filter or sort joined already, named there (see joined_names)
    joined: list[tuple[str, str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Made once: a plan kept for identical requests (sgcache.api3.plans) runs the same
        # statement object, whose cache key SQLAlchemy then computes only once.
        self._page = self.select_ids.offset(self.offset).limit(self.per_page + 1)
        self._options: dict = {}

    def prepare(self) -> None:
        """Have the queries sent as prepared statements (sgcache.store.prepared): for a plan kept
        for identical requests and asked again, whose SQL texts, values included, repeat while
        the rows they read stay the same."""
        self._options = _PREPARED

    def run(self, conn: sa.Connection) -> dict:
        # One query finds the page and reads its rows; links and lists follow in a few more.
        found = conn.execute(self._page, execution_options=self._options).mappings().all()
        more = len(found) > self.per_page
        rows = {r["id"]: r for r in found[:self.per_page]}
        ids = list(rows)
        known = {(type_name, r[id_label]): (True, r[name_label]) for type_name, id_label, name_label in self.joined
                 for r in rows.values() if r[id_label] is not None}
        values = Values(self.ctx, conn, self._options).fetch(self.fields, ids, rows, known)
        name = self.et.name
        entities = [{"type": name, "id": i, **values[i]} for i in ids]
        result: dict[str, Any] = {"entities": entities}
        if self.paging == "has_next_page":
            result["paging_info"] = {"has_next_page": more}
        elif self.paging == "entity_count":
            total = conn.execute(self.count, execution_options=self._options).scalar_one()
            result["paging_info"] = {"entity_count": total, "current_page": self.page,
                                     "page_count": (total + self.per_page - 1) // self.per_page}
        return result


def compile_read(ctx: Context, args: Any) -> ReadPlan:
    """The plan for a ``read`` request, or :class:`Uncertain` if the cache cannot answer it exactly."""
    if not isinstance(args, dict) or not isinstance(args.get("type"), str):
        raise Uncertain("malformed", "read needs {type, ...}")
    if args.get("additional_filter_presets"):
        raise Uncertain("filter_presets")
    et = ctx.entity_table(args["type"])
    return_fields = args.get("return_fields") or ["id"]
    if not isinstance(return_fields, list) or not all(isinstance(f, str) for f in return_fields):
        raise Uncertain("malformed", "return_fields must be a list of field names")
    # A field asked for twice is one key of each entity: fetched once.
    return_fields = list(dict.fromkeys(return_fields))
    if len(return_fields) > MAX_RETURN_FIELDS:
        raise Uncertain("unsupported_value", f"more than {MAX_RETURN_FIELDS} return fields")
    return_only = args.get("return_only", "active")
    if return_only not in ("active", "retired"):
        raise Uncertain("malformed", f"return_only {return_only!r}")
    paging = args.get("paging") or {}
    if not isinstance(paging, dict):
        raise Uncertain("malformed", "paging must be a mapping")
    per_page, page = paging.get("entities_per_page", PAGE_SIZE), paging.get("current_page", 1)
    if isinstance(per_page, bool) or not isinstance(per_page, int) or not 1 <= per_page <= PAGE_SIZE:
        raise Uncertain("malformed", f"entities_per_page {per_page!r}")
    if isinstance(page, bool) or not isinstance(page, int) or page < 1:
        raise Uncertain("malformed", f"current_page {page!r}")
    sorts = args.get("sorts") or []
    if not isinstance(sorts, list):
        raise Uncertain("malformed", "sorts must be a list")
    within_cached_projects(ctx, et, args.get("filters"))

    fields = plan_fields(ctx, et, return_fields)
    scope = Scope(ctx, et)
    where = [group(scope, args.get("filters")), et.table.c._active.is_(return_only == "active")]
    where += visible_rows(ctx, et)
    if args.get("include_archived_projects", True) is False:
        hidden = archived_filter(ctx, et)
        if hidden is not None:
            where.append(hidden)
    order = [col for spec in sorts for col in _sort_columns(ctx, scope, spec)]
    order.append(et.table.c.id.asc())
    columns = [et.table.c[c] for c in Values.columns(fields)]
    joined, extra = joined_names(ctx, scope, fields)
    select_ids = sa.select(*columns, *extra).select_from(scope.from_clause()).where(*where).order_by(*order)
    mode = "none"
    count = None
    if args.get("return_paging_info_without_counts"):
        mode = "has_next_page"
    elif args.get("return_paging_info"):
        mode = "entity_count"
        count = sa.select(sa.func.count()).select_from(scope.from_clause()).where(*where)
    return ReadPlan(ctx, et, select_ids, count, fields, (page - 1) * per_page, per_page, mode, page, joined)
