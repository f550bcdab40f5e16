"""The one writer: every path that puts entities in the cache (scanner, watcher, write results) calls it.

Entities come in the shape the site's ``find`` returns: ``{"type", "id", field: value, ...}``
with entity links as dicts and multi-entity values as lists of dicts. Only fields present in a
dict are written (a partial dict never blanks other fields); fields the cache does not store,
deep ``a.B.c`` keys and unknown keys are ignored. Each call is one transaction, unless the caller
passes its own connection to share a transaction (the watcher stores its cursor that way).

The other side of links: when a write changes a row's links, the entities linked or unlinked
changed on the site too (their reverse field, ``Shot.tasks`` for ``Task.entity``) with no
``updated_at`` of their own, and often with no event. Every write compares the links it replaces
with the new ones and queues those entities in ``_sgcache_other_sides``, in its own transaction,
so no path that writes can forget them; ``sgcache.sync.refresh`` reads them again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from sgcache.errors import ConversionError
from sgcache.fields.entity import EntityField, MultiEntityField
from sgcache.store import bulk, history
from sgcache.store.tables import EntityTable, Tables

#: rows per statement for IN lists (SQLite allows 32766 bound parameters per statement)
CHUNK = 1000
#: Upsert statements a writer keeps (one per table and column set seen; the set is small in practice).
UPSERTS_KEPT = 2000
#: Looks and writes of one batch before it is given up, when other writers keep inserting (and
#: removing) its new rows between each look and write.
RACE_ROUNDS = 5
#: The bound parameter of an upsert's ``unless_written_since`` (no column has this name).
SINCE = "sgcache_written_since"


def chunks(items: list, size: int = CHUNK) -> Iterator[list]:
    """``items`` in slices of ``size`` (for IN lists and executemany batches)."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


Link = tuple[str, int]

#: Link fields the site pairs with no reverse field: a change of them changes nothing on the
#: other side, so the entity they point at need not be read again.
NO_REVERSE = frozenset({"created_by", "updated_by"})

#: What a write queues for reading again (the ``other_sides`` argument of ``Writer.upsert``):
#: nothing (a full import rewrites every side anyway; an event's own change comes with the site's
#: back-reference events), the entities whose links to existing rows changed, or those and every
#: entity a new row links to (met without an event: its links are news to the other sides too).
OTHER_SIDES_NONE, OTHER_SIDES_CHANGED, OTHER_SIDES_ALL = "none", "changed", "all"


#: Columns that say how the cache holds a row, not what the site holds: a write that changes
#: only these makes no new version.
_BOOKKEEPING = frozenset({"_cache_created_at", "_cache_updated_at", "_last_event_id", history.VALID_FROM})


def _differs(held: Mapping[str, Any], row: Mapping[str, Any]) -> bool:
    """Whether writing ``row`` (some columns) changes what the held row says of the entity."""
    return any(key not in _BOOKKEEPING and held.get(key) != value for key, value in row.items())


def link_fields(et: EntityTable) -> list[str]:
    """The cached entity and multi-entity fields of a type."""
    return sorted(name for name, h in et.fields.items()
                  if isinstance(h, (EntityField, MultiEntityField)) and h.cached)


def reverse_link_fields(et: EntityTable) -> list[str]:
    """The link fields whose changes may change a field of the entities they point at."""
    return [f for f in link_fields(et) if f not in NO_REVERSE]


class Writer:
    """Upserts, retires and revives entities in the cache tables."""

    def __init__(self, engine: sa.Engine, tables: Tables):
        self.engine = engine
        self.tables = tables
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        self._link_back: dict[tuple[str, str], bool] = {}  # (target type, source type): may link back
        self._follow_fields: dict[str, list[str]] = {}  # type: link fields whose changes are queued
        self._pointing: dict[str, list[tuple[EntityTable, str]]] = {}  # type: link fields that may point at it
        self._by_storage: dict[str, tuple[EntityTable, dict, dict]] = {}  # type: (its table, column, association fields)
        # (table, columns, guard, since): the upsert statement
        self._upserts: dict[tuple[sa.Table, tuple[str, ...], bool | None, bool], Any] = {}
        self._row_reads: dict[tuple[sa.Table, tuple[str, ...]], sa.Select] = {}  # (table, columns): statement
        self._list_reads: dict[tuple[sa.Table, tuple[str, ...]], Any] = {}  # (table, list fields): statement
        #: when a dict: (type, id) -> the ``_cache_updated_at`` of each entity row written (the
        #: watcher's, to know its own writes; see sgcache.sync.answers.Prefetched)
        self.stamps: dict[tuple[str, int], dt.datetime] | None = None

    @contextmanager
    def _transaction(self, conn: sa.Connection | None):
        if conn is not None:
            yield conn
        else:
            with self.engine.begin() as own:
                yield own

    # --- upsert ------------------------------------------------------------------------------

    def upsert(self, type_name: str, entities: Iterable[Mapping[str, Any]], *, active: bool | None = None,
               event_id: int | None = None, conn: sa.Connection | None = None,
               other_sides: str = OTHER_SIDES_CHANGED, queued: set[Link] | None = None,
               unless_written_since: dt.datetime | None = None, written_ids: set[int] | None = None,
               changed_at: dt.datetime | None = None) -> int:
        """Insert or update entities; return how many rows were written.

        ``active``: set ``_active`` (True for live rows, False for retired ones); None leaves an
        existing row's state alone and makes new rows active.
        ``event_id``: the event these values come from. A row already written by a newer event
        is left alone, and the row records the id.
        ``other_sides``: which linked entities to queue for reading again (OTHER_SIDES_*);
        ``queued`` collects them.
        ``unless_written_since``: leave alone a row written after this time (by a read that may
        be newer than the one these values come from); ``written_ids`` collects the ids written.
        ``changed_at``: the site's time of the event that prompted the write, for rows whose
        ``updated_at`` is not news (a revival, a reverse link); without it, now. The values a
        row held before are kept as a version that ended then (see sgcache.store.history).
        """
        et = self.tables[type_name]
        by_id: dict[int, dict[str, Any]] = {}
        links: dict[str, dict[int, list[dict]]] = {}
        for entity in entities:
            row, entity_links = self._convert(et, entity)
            # The same id twice in one batch: the later values win, field by field.
            same = by_id.get(row["id"])
            if same is None:
                by_id[row["id"]] = row  # a row of its own (made by _convert): no copy needed
            else:
                same.update(row)
            for field_name, assoc_rows in entity_links.items():
                links.setdefault(field_name, {})[row["id"]] = assoc_rows
        if not by_id:
            return 0
        if other_sides not in (OTHER_SIDES_NONE, OTHER_SIDES_CHANGED, OTHER_SIDES_ALL):
            raise ValueError(f"other_sides must be one of none, changed, all: got {other_sides!r}")
        with self._transaction(conn) as c:
            now = _now()
            fields = [] if other_sides == OTHER_SIDES_NONE else self._following(et)
            before = self._stored_links(c, et, list(by_id), fields) if fields else {}
            for row in by_id.values():
                row["_cache_updated_at"] = now
                if active is not None:
                    row["_active"] = active
                if event_id is not None:
                    row["_last_event_id"] = event_id
            starts: dict[int, dt.datetime] = {}
            held: set[int] = set()
            inserted: set[int] = set()
            written = self._upsert_rows(c, et, list(by_id.values()), now, guard=event_id is not None,
                                        since=unless_written_since, changed_at=changed_at, event_id=event_id,
                                        starts=starts, held=held, inserted=inserted)
            if written_ids is not None:
                written_ids.update(written)
            if self.stamps is not None:
                self.stamps.update(((type_name, i), now) for i in written)
            kept_lists = {name: kept for name, rows_by_parent in links.items()
                          if (kept := {i: v for i, v in rows_by_parent.items() if i in written})}
            lists_held = self._read_lists(c, et, list(kept_lists), [i for i in written if i in held])
            for field_name, kept in kept_lists.items():
                self._replace_links(c, et, field_name, kept, starts, event_id, held, lists_held[field_name],
                                    inserted)
            if fields and written:
                targets = self._other_sides(c, et, fields, written, before, by_id, links,
                                            new_rows=other_sides == OTHER_SIDES_ALL)
                self._queue_other_sides(c, targets, now)
                if queued is not None:
                    queued.update(targets)
        return len(written)

    # --- the other side of links ----------------------------------------------------------------

    def _other_sides(self, conn: sa.Connection, et: EntityTable, fields: list[str], written: set[int],
                     before: dict[int, dict[str, set[Link]]], by_id: dict[int, dict],
                     links: dict[str, dict[int, list[dict]]], *, new_rows: bool) -> dict[Link, str]:
        """The entities whose links to the ``written`` rows changed (-> why), rows that were new
        counted only with ``new_rows``."""
        targets: dict[Link, str] = {}
        lists_changed: dict[int, str] = {}
        for entity_id in sorted(written):
            if entity_id not in before and not new_rows:
                continue
            old = before.get(entity_id, {})
            for name in fields:
                new = self._new_links(et, name, by_id[entity_id], links, entity_id)
                if new is None:
                    continue  # not part of this write
                changed = new ^ old.get(name, set())
                for target in changed:
                    if self._may_link_back(target[0], et.name) and target != (et.name, entity_id):
                        targets.setdefault(target, f"{et.name} {entity_id}.{name}")
                if changed and entity_id in before and isinstance(et.fields[name], MultiEntityField):
                    lists_changed.setdefault(entity_id, name)
        if lists_changed:
            # A list set on the site drops the retired entities it held too, which no read of
            # the list shows: the retired rows that link here may have lost that link.
            for target, entity_id in self._retired_referrers(conn, et, sorted(lists_changed)).items():
                targets.setdefault(target, f"{et.name} {entity_id}.{lists_changed[entity_id]} (retired)")
        return targets

    def _following(self, et: EntityTable) -> list[str]:
        """The link fields of ``et`` whose targets may hold a reverse field (queued when changed)."""
        known = self._follow_fields.get(et.name)
        if known is None:
            known = self._follow_fields[et.name] = [
                name for name in reverse_link_fields(et)
                if any(self._may_link_back(t, et.name)
                       for t in (et.fields[name].field.entity_types or list(self.tables.entities)))]
        return known

    def _may_link_back(self, target_type: str, source_type: str) -> bool:
        """Can a cached field of ``target_type`` link to ``source_type`` (hold a reverse field)? If
        not, linking or unlinking a ``target_type`` entity leaves its cached row as it was."""
        key = (target_type, source_type)
        known = self._link_back.get(key)
        if known is None:
            known = False
            if target_type in self.tables:
                target = self.tables[target_type]
                for name in link_fields(target):
                    allowed = target.fields[name].field.entity_types
                    if not allowed or source_type in allowed:
                        known = True
                        break
            self._link_back[key] = known
        return known

    def _stored_links(self, conn: sa.Connection, et: EntityTable, ids: list[int],
                      fields: list[str]) -> dict[int, dict[str, set[Link]]]:
        """What the cache holds now for ``fields`` of the rows ``ids`` (rows it holds only), as
        stored: links to retired entities included, which reads hide."""
        t = et.table
        out: dict[int, dict[str, set[Link]]] = {}
        single = [f for f in fields if isinstance(et.fields[f], EntityField)]
        multi = [f for f in fields if isinstance(et.fields[f], MultiEntityField)]
        columns = tuple(c for name in single for c in (et.fields[name].type_column, et.fields[name].id_column))
        rows_stmt = self._row_read(t, ("id", *columns))
        for chunk in chunks(ids):
            for row in conn.execute(rows_stmt, {"ids": chunk}).mappings():
                links = out.setdefault(row["id"], {})
                for name in single:
                    h = et.fields[name]
                    links[name] = {(row[h.type_column], row[h.id_column])} if row[h.id_column] is not None else set()
        for name, lists in self._read_lists(conn, et, multi, [i for i in ids if i in out]).items():
            for parent, rows in lists.items():
                out[parent].setdefault(name, set()).update((r["child_type"], r["child_id"]) for r in rows)
        return out

    def _read_lists(self, conn: sa.Connection, et: EntityTable, fields: list[str],
                    parents: list[int]) -> dict[str, dict[int, list[dict]]]:
        """The rows the association tables of ``fields`` hold for ``parents``: field -> parent ->
        rows (every column), with one statement for all the fields (a type has several lists,
        and the watcher reads them for every event). Not locked: a writer of a list locks its
        parent's row first (see :meth:`_upsert_rows` and :meth:`forget`)."""
        out: dict[str, dict[int, list[dict]]] = {name: {} for name in fields}
        if not fields or not parents:
            return out
        key = (et.table, tuple(fields))
        stmt = self._list_reads.get(key)
        if stmt is None:
            columns = [c.name for c in et.associations[fields[0]].columns]
            if any([c.name for c in et.associations[f].columns] != columns for f in fields):
                raise ValueError(f"{et.name}: association tables of {fields} differ in columns")
            ids = sa.bindparam("ids", expanding=True)
            stmt = self._list_reads[key] = sa.union_all(*[
                sa.select(sa.literal(i).label("sgcache_list"), *[et.associations[f].c[c] for c in columns])
                .where(et.associations[f].c.parent_id.in_(ids)) for i, f in enumerate(fields)])
        for chunk in chunks(sorted(set(parents))):
            for row in conn.execute(stmt, {"ids": chunk}).mappings():
                found = dict(row)
                name = fields[found.pop("sgcache_list")]
                out[name].setdefault(found["parent_id"], []).append(found)
        return out

    def _row_read(self, table: sa.Table, columns: tuple[str, ...]) -> sa.Select:
        """``SELECT columns FROM table WHERE id IN :ids``, made once per table and column set."""
        stmt = self._row_reads.get((table, columns))
        if stmt is None:
            stmt = self._row_reads[(table, columns)] = (
                sa.select(*[table.c[c] for c in columns]).where(table.c.id.in_(sa.bindparam("ids", expanding=True))))
        return stmt

    def _retired_referrers(self, conn: sa.Connection, et: EntityTable, ids: list[int]) -> dict[Link, int]:
        """Cached retired rows whose reversible links point at the rows ``ids`` of ``et``: the
        retired row -> the id it links to."""
        out: dict[Link, int] = {}
        for other, name in self._pointing_at(et.name):
            handler = other.fields[name]
            t = other.table
            for chunk in chunks(ids):
                if isinstance(handler, MultiEntityField):
                    assoc = other.associations[name]
                    stmt = (sa.select(assoc.c.parent_id, assoc.c.child_id)
                            .join(t, t.c.id == assoc.c.parent_id)
                            .where(assoc.c.child_type == et.name).where(assoc.c.child_id.in_(chunk)))
                else:
                    stmt = (sa.select(t.c.id, t.c[handler.id_column])
                            .where(t.c[handler.type_column] == et.name).where(t.c[handler.id_column].in_(chunk)))
                for referrer, target in conn.execute(stmt.where(t.c._active.is_(False))):
                    out.setdefault((other.name, referrer), target)
        return out

    def _pointing_at(self, type_name: str) -> list[tuple[EntityTable, str]]:
        """(type, field) of every reversible link field of a cached type that may point at ``type_name``."""
        known = self._pointing.get(type_name)
        if known is None:
            known = self._pointing[type_name] = [
                (other, name) for other in self.tables for name in reverse_link_fields(other)
                if not other.fields[name].field.entity_types or type_name in other.fields[name].field.entity_types]
        return known

    @staticmethod
    def _new_links(et: EntityTable, name: str, row: dict, links: dict[str, dict[int, list[dict]]],
                   entity_id: int) -> set[Link] | None:
        handler = et.fields[name]
        if isinstance(handler, MultiEntityField):
            rows = links.get(name, {}).get(entity_id)
            return None if rows is None else {(r["child_type"], r["child_id"]) for r in rows}
        if handler.id_column not in row:
            return None
        return {(row[handler.type_column], row[handler.id_column])} if row[handler.id_column] is not None else set()

    def _queue_other_sides(self, conn: sa.Connection, targets: Mapping[Link, str], now: dt.datetime) -> None:
        """Queue cached-type entities for reading again (a later queueing moves ``queued_at``)."""
        rows = [{"entity_type": t, "entity_id": i, "queued_at": now, "because": because[:200]}
                for (t, i), because in sorted(targets.items()) if t in self.tables]
        if not rows:
            return
        table = self.tables.state.other_sides
        stmt = self._insert(table)
        stmt = stmt.on_conflict_do_update(index_elements=[table.c.entity_type, table.c.entity_id],
                                          set_={"queued_at": stmt.excluded.queued_at, "because": stmt.excluded.because})
        for chunk in chunks(rows):
            conn.execute(stmt, chunk)

    def _convert(self, et: EntityTable, entity: Mapping[str, Any]) -> tuple[dict, dict[str, list[dict]]]:
        entity_id = entity.get("id")
        if isinstance(entity_id, bool) or not isinstance(entity_id, int):
            raise ConversionError(f"{et.name}: every entity needs an integer 'id', got {entity_id!r}")
        if entity.get("type", et.name) != et.name:
            raise ConversionError(f"{et.name} {entity_id}: entity has type {entity.get('type')!r}")
        row: dict[str, Any] = {"id": entity_id}
        links: dict[str, list[dict]] = {}
        columns, associations = self._handlers(et)
        # Most values of a page are text, numbers, plain links and wire dates: they are stored
        # here with what put() would store, without its calls; anything else goes through put(),
        # which converts it or gives the error.
        for key, value in entity.items():
            found = columns.get(key)
            if found is not None:
                handler, as_is, parse, link = found
                kind = type(value)
                if kind is as_is:
                    row[handler.column] = value
                    continue
                if kind is str and parse is not None:
                    parsed = parse(value)
                    if parsed is not None:
                        row[handler.column] = parsed
                        continue
                elif kind is dict and link is not None:
                    link_type, link_id = value.get("type"), value.get("id")
                    if type(link_type) is str and type(link_id) is int:
                        row[link[0]], row[link[1]] = link_type, link_id
                        continue
                handler.put(row, value)
            elif key in associations:
                links[key] = associations[key].to_rows(value)
        return row, links

    def _handlers(self, et: EntityTable) -> tuple[dict[str, tuple[Any, type | None, Any, Any]], dict[str, Any]]:
        """(column fields, association fields) of a type's cached fields, by name (id excluded);
        each column field with its shortcuts for :meth:`_convert` (``stored_as_is``,
        ``parse_text``, ``link_columns``)."""
        found = self._by_storage.get(et.name)
        if found is None or found[0] is not et:
            cached = {name: h for name, h in et.fields.items() if h.cached and name not in ("id", "type")}
            found = (et, {n: (h, h.stored_as_is, h.parse_text, h.link_columns)
                        for n, h in cached.items() if not h.association},
                     {n: h for n, h in cached.items() if h.association})
            self._by_storage[et.name] = found
        return found[1], found[2]

    def _upsert_rows(self, conn: sa.Connection, et: EntityTable, rows: list[dict], now: dt.datetime,
                     guard: bool, since: dt.datetime | None = None, changed_at: dt.datetime | None = None,
                     event_id: int | None = None, starts: dict[int, dt.datetime] | None = None,
                     held: set[int] | None = None, inserted: set[int] | None = None) -> set[int]:
        """Insert or update rows; return the ids actually written.

        With ``guard``, a row already written by a newer event is left alone; with ``since``, a
        row written after that time. The checks are part of the statement, so they hold against
        concurrent writers too. A row whose values change keeps its old version in history;
        ``starts`` collects when each row's change happened (for its lists), ``held`` the ids
        the table held before, ``inserted`` the ids of new rows no other writer held when this
        one wrote them (copied in: see sgcache.store.bulk).

        A new row that another writer inserts between this writer's look and its write is
        looked at again and written as a held row: the other writer's values become a version
        like any other, never overwritten unseen.
        """
        written: set[int] = set()
        pending = rows
        for _ in range(RACE_ROUNDS):
            pending = self._write_rows(conn, et, pending, now, guard, since, changed_at, event_id, starts, held,
                                       inserted, written)
            if not pending:
                return written
        ids = ", ".join(str(r["id"]) for r in pending[:10])
        raise RuntimeError(f"{et.name}: other writers inserted and removed rows {ids} {RACE_ROUNDS} times "
                           "while this write was made; it is given up")

    def _write_rows(self, conn: sa.Connection, et: EntityTable, rows: list[dict], now: dt.datetime, guard: bool,
                    since: dt.datetime | None, changed_at: dt.datetime | None, event_id: int | None,
                    starts: dict[int, dt.datetime] | None, held: set[int] | None, inserted: set[int] | None,
                    written: set[int]) -> list[dict]:
        """One look and one write of :meth:`_upsert_rows` (``written`` collects the ids written).
        Returns the new rows another writer inserted since the look: they are not written."""
        t = et.table
        for row in rows:  # what an earlier round added, not the batch's values
            row.pop(SINCE, None)
            row.pop("_cache_created_at", None)
        before = {r["id"]: r for r in history.snapshot(conn, t, "id", [row["id"] for row in rows])}
        if held is not None:
            held.update(before)
        changed: dict[int, dict] = {}
        for row in rows:
            prev = before.get(row["id"])
            at = self._change_time(row, prev, changed_at, now)
            if starts is not None:
                starts[row["id"]] = at
            if prev is None:
                row[history.VALID_FROM] = at
            elif _differs(prev, row):
                row[history.VALID_FROM] = history.start_after(prev[history.VALID_FROM], at)
                changed[row["id"]] = prev
            else:
                row[history.VALID_FROM] = prev[history.VALID_FROM]
        # executemany needs one column set per statement: group rows by the keys they carry.
        groups: dict[tuple[str, ...], list[dict]] = {}
        for row in rows:
            groups.setdefault(tuple(sorted(row)), []).append(row)

        def where(excluded: Any, bound: bool = False) -> Any:
            """The guards; ``bound``: ``since`` as a parameter each row carries (see SINCE)."""
            checks = []
            if guard:
                checks.append(sa.or_(t.c._last_event_id.is_(None), t.c._last_event_id <= excluded._last_event_id))
            if since is not None:
                checks.append(t.c._cache_updated_at <= (sa.bindparam(SINCE, type_=t.c._cache_updated_at.type)
                                                        if bound else since))
            return sa.and_(*checks) if checks else None

        lost: list[dict] = []
        for keys, group in groups.items():
            for row in group:
                row["_cache_created_at"] = now  # used by inserts only: not in the update set
            columns = [*keys, "_cache_created_at"]
            new = [row for row in group if row["id"] not in before]
            if new:
                # Nothing to guard: no version of these rows was there to compare with.
                if bulk.usable(conn, len(new)) and bulk.copy_insert(conn, t, columns, new):
                    added = {row["id"] for row in new}
                    if inserted is not None:
                        inserted |= added
                else:
                    added = set(conn.execute(self._statement(t, keys, None, False, where), new).scalars())
                written |= added
                lost += [row for row in new if row["id"] not in added]
            old = [row for row in group if row["id"] in before] if new else group
            if not old:
                continue
            if bulk.usable(conn, len(old)):
                written |= bulk.copy_upsert(conn, t, columns, old, update=[k for k in keys if k != "id"],
                                            where=where)
                continue
            if since is not None:
                for row in old:
                    row[SINCE] = since
            written.update(conn.execute(self._statement(t, keys, guard, since is not None, where), old).scalars())
        if changed:
            new_from = {row["id"]: row[history.VALID_FROM] for row in rows}
            history.keep(conn, et.history, [history.ended(prev, new_from[i], event_id)
                                            for i, prev in sorted(changed.items()) if i in written])
        return lost

    def _statement(self, t: sa.Table, keys: tuple[str, ...], guard: bool | None, since: bool,
                   where: Callable[..., Any]) -> Any:
        """The upsert of rows with the columns ``keys`` (``guard`` None: the insert of new rows,
        skipping any another writer inserted), ``RETURNING`` the ids written. Made once per
        column set and guard: building the statement (its ``excluded`` columns, its cache key)
        cost the watcher more than running it."""
        shape = (t, keys, guard, since)
        stmt = self._upserts.get(shape)
        if stmt is None:
            stmt = self._insert(t)
            if guard is None:
                stmt = stmt.on_conflict_do_nothing(index_elements=[t.c.id])
            else:
                stmt = stmt.on_conflict_do_update(index_elements=[t.c.id],
                                                  set_={k: stmt.excluded[k] for k in keys if k != "id"},
                                                  where=where(stmt.excluded, bound=True))
            # RETURNING lets SQLAlchemy send many rows per statement ("insertmanyvalues"); without
            # it psycopg2 makes one round trip per row. It also tells which rows were written.
            stmt = stmt.returning(t.c.id)
            if len(self._upserts) >= UPSERTS_KEPT:
                self._upserts.clear()
            self._upserts[shape] = stmt
        return stmt

    @staticmethod
    def _change_time(row: Mapping[str, Any], prev: Mapping[str, Any] | None, changed_at: dt.datetime | None,
                     now: dt.datetime) -> dt.datetime:
        """The site's time of a row's change: the entity's ``updated_at`` when it is later than
        the version held (the site says it changed then), else the time of the event that
        prompted the write, else now (a change the cache learns of late, such as a reverse link,
        happened at some moment up to now)."""
        updated = row.get("updated_at")
        if isinstance(updated, dt.datetime) and updated.tzinfo is not None:
            held = prev.get(history.VALID_FROM) if prev is not None else None
            if held is None or updated > held:
                return updated
        return changed_at or now

    def _replace_links(self, conn: sa.Connection, et: EntityTable, field_name: str,
                       rows_by_parent: dict[int, list[dict]], starts: Mapping[int, dt.datetime],
                       event_id: int | None, existing: set[int], held: Mapping[int, list[dict]],
                       inserted: set[int] = frozenset()) -> None:
        """Set the lists of a multi-entity field; a list that changes keeps its old rows in history.
        ``existing``: the parents the table held before this write (a new row has no list yet);
        ``held``: the rows their lists hold (see :meth:`_read_lists`); ``inserted``: parents
        this transaction inserted, whose lists no one can have written (nothing to delete)."""
        assoc = et.associations[field_name]
        changed: dict[int, list[dict]] = {}
        ended: list[dict] = []
        emptied = self._emptied_at(conn, et, field_name, [p for p, rows in rows_by_parent.items()
                                                           if p in existing and rows and not held.get(p)])
        for parent, link_rows in rows_by_parent.items():
            old = held.get(parent)
            if old:
                old = sorted(old, key=lambda r: r["position"])
                if [(r["position"], r["child_type"], r["child_id"]) for r in old] == \
                        [(r["position"], r["child_type"], r["child_id"]) for r in link_rows]:
                    continue  # the same list: nothing to write, no version
            elif not link_rows:
                continue  # empty, as it was
            else:
                old = []  # a list held empty (every new row's): nothing to compare or end
            # When the list held now began: its rows say, or, for an empty list, when it was emptied.
            previous = max((r[history.VALID_FROM] for r in old if r[history.VALID_FROM] is not None),
                           default=emptied.get(parent))
            at = history.start_after(previous, starts.get(parent) or _now())
            ended += [history.ended(r, at, event_id) for r in old]
            changed[parent] = [{"parent_id": parent, **r, history.VALID_FROM: at} for r in link_rows]
        if not changed:
            return
        history.keep(conn, self.tables.state.link_history, ended, entity_type=et.name, field=field_name)
        fresh = [p for p in changed if p in inserted]
        self._delete_lists(conn, [assoc], [p for p in changed if p not in inserted])
        rows = [r for link_rows in changed.values() for r in link_rows]
        if not rows:
            return
        if not fresh:
            self._insert_links(conn, assoc, rows)
            return
        try:
            with conn.begin_nested():
                self._insert_links(conn, assoc, rows)
        except bulk.KEY_ERRORS:
            # Rows of a new parent's list were there already (left by something that removed
            # the parent alone): they go, as for any other parent.
            self._delete_lists(conn, [assoc], fresh)
            self._insert_links(conn, assoc, rows)

    @staticmethod
    def _delete_lists(conn: sa.Connection, assocs: Iterable[sa.Table], parents: list[int]) -> None:
        """Delete the rows of these parents' lists in the association tables ``assocs``."""
        for assoc in assocs:
            for chunk in chunks(parents):
                conn.execute(sa.delete(assoc).where(assoc.c.parent_id.in_(chunk)))

    @staticmethod
    def _insert_links(conn: sa.Connection, assoc: sa.Table, rows: list[dict]) -> None:
        if bulk.usable(conn, len(rows)) and len({tuple(r) for r in rows}) == 1:
            bulk.copy_into(conn, assoc, rows)
        else:
            conn.execute(sa.insert(assoc), rows)

    def _emptied_at(self, conn: sa.Connection, et: EntityTable, field_name: str,
                    parents: list[int]) -> dict[int, dt.datetime]:
        """When each of these parents' lists (empty now) was emptied: the end of its last kept rows."""
        links = self.tables.state.link_history
        found: dict[int, dt.datetime] = {}
        for chunk in chunks(sorted(parents)):
            found.update(conn.execute(
                sa.select(links.c.parent_id, sa.func.max(links.c[history.VALID_TO]))
                .where(links.c.entity_type == et.name, links.c.field == field_name, links.c.parent_id.in_(chunk))
                .group_by(links.c.parent_id)).all())
        return found

    def forget(self, type_name: str, ids: Iterable[int], *, conn: sa.Connection | None = None) -> int:
        """Remove rows the cache must no longer hold (say, moved out of the cached projects); the
        entities they linked to are queued for reading again (their reverse fields may differ)."""
        et = self.tables[type_name]
        ids = sorted(set(ids))
        removed = 0
        with self._transaction(conn) as c:
            fields = self._following(et)
            if fields and ids:
                targets = {target: f"{et.name} {entity_id}.{name} (no longer held)"
                           for entity_id, held in self._stored_links(c, et, ids, fields).items()
                           for name, linked in held.items() for target in linked
                           if self._may_link_back(target[0], et.name)}
                self._queue_other_sides(c, targets, _now())
            # What the cache no longer holds ends now (the site still has it; reads of the past
            # before now see it).
            now = _now()
            history.keep(c, et.history, [history.ended(r, now, None) for r in history.snapshot(c, et.table, "id", ids)])
            for field_name, assoc in et.associations.items():
                history.keep(c, self.tables.state.link_history,
                             [history.ended(r, now, None) for r in history.snapshot(c, assoc, "parent_id", ids)],
                             entity_type=et.name, field=field_name)
            self._delete_lists(c, et.associations.values(), ids)
            for chunk in chunks(ids):
                removed += c.execute(sa.delete(et.table).where(et.table.c.id.in_(chunk))).rowcount
        return removed

    # --- retire / revive ----------------------------------------------------------------------

    def retire(self, type_name: str, ids: Iterable[int], *, event_id: int | None = None,
               conn: sa.Connection | None = None, changed_at: dt.datetime | None = None) -> int:
        """Mark cached rows retired; return how many rows changed (uncached ids are skipped).
        ``changed_at``: the site's time of the retirement (else now)."""
        return self._set_active(type_name, ids, False, event_id, conn, changed_at)

    def revive(self, type_name: str, ids: Iterable[int], *, event_id: int | None = None,
               conn: sa.Connection | None = None, changed_at: dt.datetime | None = None) -> int:
        """Mark cached rows active again; return how many rows changed."""
        return self._set_active(type_name, ids, True, event_id, conn, changed_at)

    def _set_active(self, type_name: str, ids: Iterable[int], active: bool, event_id: int | None,
                    conn: sa.Connection | None, changed_at: dt.datetime | None) -> int:
        et = self.tables[type_name]
        t = et.table
        ids = sorted(set(ids))
        now = _now()
        at = changed_at or now
        values: dict[str, Any] = {"_active": active, "_cache_updated_at": now}
        if event_id is not None:
            values["_last_event_id"] = event_id
        changed = 0
        with self._transaction(conn) as c:
            rows = history.snapshot(c, t, "id", ids)
            if event_id is not None:
                rows = [r for r in rows if r["_last_event_id"] is None or r["_last_event_id"] <= event_id]
            flipped = [r for r in rows if r["_active"] != active]
            for chunk in chunks([r["id"] for r in rows]):
                changed += c.execute(sa.update(t).where(t.c.id.in_(chunk)).values(**values)).rowcount
            if self.stamps is not None:
                self.stamps.update(((type_name, r["id"]), now) for r in rows)
            if flipped:
                # Each flipped row starts a new version (never before the one it ends).
                starts = [{"b_id": r["id"], "b_from": history.start_after(r[history.VALID_FROM], at)} for r in flipped]
                c.execute(sa.update(t).where(t.c.id == sa.bindparam("b_id"))
                          .values({history.VALID_FROM: sa.bindparam("b_from")}), starts)
                history.keep(c, et.history, [history.ended(r, s["b_from"], event_id)
                                             for r, s in zip(flipped, starts, strict=True)])
        return changed
