"""Back-fill from the event log: the versions from before the cache was installed, rebuilt from
the old values the site's event-log entries carry (``sgcache history import --since``).

Each type's history begins when the cache first imported it in full; its oldest versions are the
rows as that import read them. Going back from there through the log, newest entry first, each
change is undone on a copy of the entity: a field set back to the entry's ``old_value``, a
retirement or revival undone, a creation ending the entity's past. Every step that changes a copy
is kept as an earlier version, dated by the entry's time.

Only what the log proves is kept as known. A field's history begins earlier only as far back as
every entry about it can be undone exactly; the first entry that cannot (see :class:`Undo`) sets
the field's start, and reads of the past touching the field before it are refused as before:

- ``updated_at`` and ``updated_by`` change with every write and no entry records them;
- a change to a timestamp (the client reshapes the log's values), and thumbnails (their
  addresses are made when read, and expire);
- the order of a multi-entity list: an entry gives only the links added and removed, so an
  earlier list is known only when it held at most one link (or the site appended the link, for
  a back-reference);
- an entry whose new value is not what the copy holds (a write the log does not show);
- a link to an entity retired since (and not revived): the site reads such links as empty, so
  the cache's rows never held them, and what linked to it before is not known;
- an entity whose ``updated_at`` or ``created_at`` falls in the span with no entry at that
  moment: a script whose ApiUser does not generate events wrote it, so nothing about the type
  is proven before that moment.

The log never shows the writes of scripts that generate no events: unless told to trust the log
(``--trust-log``), the back-fill refuses to run while the site has such scripts.
"""

from __future__ import annotations

import bisect
import datetime as dt
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from sgcache.errors import ConversionError, SgcacheError
from sgcache.fields.entity import EntityField, MultiEntityField
from sgcache.fields.scalar import DateTimeField
from sgcache.store import backfill as store
from sgcache.store import history
from sgcache.store.state import history_starts
from sgcache.store.tables import EntityTable, Tables
from sgcache.store.writer import Writer
from sgcache.sync.events import Parsed, aware, parse
from sgcache.sync.remote import Remote
from sgcache.wire import format_datetime

log = logging.getLogger(__name__)

#: Fields every write changes and no entry records.
NOT_LOGGED = frozenset({"updated_at", "updated_by"})
#: Data types whose logged values are not what a read returns: a change to one proves nothing
#: before it (a field of such a type no entry changed kept its value).
INEXACT_TYPES = frozenset({"image", "date_time"})
#: Data types a read answers with what the site makes at read time (thumbnail URLs that expire):
#: never proven.
UNPROVEN_TYPES = frozenset({"image"})
#: How far an entity's updated_at may be from the entry of the write that set it.
SAME_MOMENT = history.SAME_MOMENT
#: Entries read per request.
PAGE = 500
#: The pseudo-field of a type's existence (its entities made, retired and revived).
EXISTENCE = "id"


#: What :class:`Undo` reads of an entry's ``meta``: the rest (the field's data type, the entity's
#: name, ...) is not kept, since a long span holds every entry in memory at once.
META_KEYS = ("in_create", "old_value", "new_value", "actual_attribute_changed", "added", "removed")


@dataclass(slots=True)
class Entry:
    """One lifecycle entry of the log, read."""

    id: int
    at: dt.datetime
    parsed: Parsed
    meta: dict


@dataclass
class TypeReport:
    """What a back-fill did for one type."""

    entity_type: str
    began: dt.datetime
    entries: int = 0
    entities: int = 0
    versions: int = 0
    #: field -> from when its history is proven now (fields not listed did not move)
    proven_from: dict[str, dt.datetime] = field(default_factory=dict)
    #: field -> the latest moment before which the log proves nothing about it
    unproven: dict[str, dt.datetime] = field(default_factory=dict)
    #: the fields whose history still begins at ``began`` (the log does not record them)
    unmoved: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"entity_type": self.entity_type, "began": self.began, "entries": self.entries,
                "entities": self.entities, "versions": self.versions, "proven_from": self.proven_from,
                "unproven": self.unproven, "unmoved": self.unmoved}


def quiet_scripts(remote: Remote) -> list[str] | None:
    """The scripts (active or retired) whose writes make no entries; None if the site does not say."""
    import shotgun_api3

    names: list[str] = []
    try:
        for retired in (False, True):
            found = remote.call("read ApiUser", lambda retired=retired: remote.sg.find(
                "ApiUser", [["generate_event_log_entries", "is", False]], ["firstname"], retired_only=retired))
            names += [str(s.get("firstname") or s["id"]) for s in found]
    except shotgun_api3.Fault:
        return None
    return sorted(names)


def read_entries(remote: Remote, tables: Tables, since: dt.datetime, before: dt.datetime,
                 progress: Callable[[int], None] = lambda n: None) -> dict[tuple[str, int], list[Entry]]:
    """The lifecycle entries of cached types made from ``since`` up to ``before``, by entity,
    newest first."""
    out: dict[tuple[str, int], list[Entry]] = {}
    below: int | None = None
    filters: list = [["created_at", "greater_than", since - dt.timedelta(seconds=1)],
                     ["created_at", "less_than", before]]
    while True:
        page_filters = filters + ([["id", "less_than", below]] if below is not None else [])
        page = remote.call("read EventLogEntry", lambda f=page_filters: remote.sg.find(
            "EventLogEntry", f, Remote.EVENT_FIELDS, order=[{"field_name": "id", "direction": "desc"}], limit=PAGE))
        for event in page:
            at = aware(event.get("created_at"))
            parsed = parse(event)
            if at is None or at < since or at >= before or parsed is None or parsed.entity_id is None:
                continue
            if parsed.entity_type not in tables:
                continue
            raw = event.get("meta") if isinstance(event.get("meta"), dict) else {}
            meta = {k: raw[k] for k in META_KEYS if k in raw}
            out.setdefault((parsed.entity_type, parsed.entity_id), []).append(Entry(event["id"], at, parsed, meta))
        progress(len(page))
        if len(page) < PAGE:
            return out
        below = page[-1]["id"]


class Undo:
    """Undoes one type's entries on copies of its oldest versions, and plans what to write."""

    def __init__(self, writer: Writer, et: EntityTable, since: dt.datetime, began: dt.datetime):
        self.writer = writer
        self.et = et
        self.since = since
        self.began = began
        self.plan = store.Plan()
        self.unproven: dict[str, dt.datetime] = {}
        self.lists = sorted(n for n, h in et.fields.items() if h.cached and isinstance(h, MultiEntityField))

    def doubt(self, name: str, at: dt.datetime) -> None:
        """Nothing about ``name`` is proven before ``at``."""
        held = self.unproven.get(name)
        if held is None or at > held:
            self.unproven[name] = at

    def _columns(self, name: str, value: Any) -> dict[str, Any]:
        row, _ = self.writer._convert(self.et, {"type": self.et.name, "id": 0, name: value})
        row.pop("id", None)
        return row

    def untouched(self, entity_id: int, oldest: store.Oldest) -> None:
        """An entity no entry of the span names: it was as its oldest version says all along."""
        self._silent(oldest, [])
        self.plan.row_starts[entity_id] = None
        for name in self.lists:
            self.plan.list_starts[(name, entity_id)] = None

    def _silent(self, oldest: store.Oldest, moments: list[dt.datetime]) -> None:
        """A write no entry shows: the type's history before it is not proven."""
        updated, created = aware(oldest.updated_at), aware(oldest.created_at)
        if updated is not None and self.since <= updated < self.began and \
                not any(abs(m - updated) <= SAME_MOMENT for m in moments):
            self.doubt("*", updated)
        if created is not None and self.since <= created < self.began and \
                not any(abs(m - created) <= SAME_MOMENT for m in moments):
            self.doubt(EXISTENCE, created)

    def entity(self, entity_id: int, entries: list[Entry], oldest: store.Oldest, row: dict[str, Any],
               lists: dict[str, store.OldList]) -> None:
        """Undo ``entries`` (newest first) on a copy of the entity's oldest version."""
        state = dict(row)
        start = oldest.valid_from
        held = {name: list(lists[name].links) for name in self.lists}
        row_bounds: list[tuple[dt.datetime, int, dict[str, Any]]] = []
        list_bounds: dict[str, list[tuple[dt.datetime, int, store.Links]]] = {name: [] for name in self.lists}
        created: dt.datetime | None = None
        moments: list[dt.datetime] = []
        for at, group in _by_moment(entries):
            moments.append(at)
            row_changed, lists_changed = False, set()
            for entry in group:
                p = entry.parsed
                after_start = start is not None and at > start
                if p.action == "New":
                    created = at
                elif p.action in ("Retirement", "Revival"):
                    if oldest.valid_to is not None and at >= oldest.valid_to:
                        continue
                    retired_after = p.action == "Retirement"
                    if bool(state.get("_active")) == (not retired_after):
                        state["_active"] = retired_after  # as it was before: active before a retirement
                        row_changed = True
                    elif not after_start:
                        self.doubt(EXISTENCE, at)
                elif p.action == "Change" and not entry.meta.get("in_create"):  # a creation's values: see New
                    handler = self.et.fields.get(p.field or "")
                    if handler is None or not handler.cached or p.field in NOT_LOGGED:
                        continue
                    if isinstance(handler, MultiEntityField):
                        if self._undo_list(p.field, entry, held[p.field], lists[p.field], after_start):
                            lists_changed.add(p.field)
                    elif self._undo_field(p.field, handler, entry, state, oldest, after_start):
                        row_changed = True
            if created is not None:
                break  # before its creation the entity was not there
            first = min(e.id for e in group)
            if row_changed:
                row_bounds.append((at, first, dict(state)))
            for name in lists_changed:
                list_bounds[name].append((at, first, list(held[name])))
        self._silent(oldest, moments)
        self._keep(entity_id, row_bounds, list_bounds, created)

    def _undo_field(self, name: str, handler: Any, entry: Entry, state: dict[str, Any], oldest: store.Oldest,
                    after_start: bool) -> bool:
        if oldest.valid_to is not None and entry.at >= oldest.valid_to:
            return False  # after the oldest version ended: a later version holds it
        meta = entry.meta
        exact = (handler.field.data_type not in INEXACT_TYPES
                 and not isinstance(handler, DateTimeField) and "old_value" in meta and "new_value" in meta
                 and "actual_attribute_changed" not in meta
                 and (not isinstance(handler, EntityField)
                      or all(v is None or isinstance(v, dict) for v in (meta["old_value"], meta["new_value"]))))
        try:
            new = self._columns(name, meta["new_value"]) if exact else None
            old = self._columns(name, meta["old_value"]) if exact else None
        except ConversionError:
            new = old = None
        if new is None or old is None:
            if not after_start:
                self.doubt(name, entry.at)
            return False
        if any(state.get(c) != v for c, v in new.items()):
            if not after_start:  # a write the log does not show came between
                self.doubt(name, entry.at)
            return False
        state.update(old)
        return True

    def _undo_list(self, name: str, entry: Entry, links: store.Links, oldest: store.OldList, after_start: bool) -> bool:
        if oldest.until is not None and entry.at >= oldest.until:
            return False
        meta = entry.meta

        def read(key: str) -> store.Links | None:
            value = meta.get(key)
            if not isinstance(value, list) or not all(isinstance(v, dict) and "type" in v and "id" in v for v in value):
                return None
            return [(v["type"], v["id"]) for v in value]

        added, removed = read("added"), read("removed")
        if added is None or removed is None or (not added and not removed) or \
                not all(a in links for a in added) or any(r in links for r in removed):
            if not after_start:
                self.doubt(name, entry.at)
            return False
        remaining = [x for x in links if x not in added]
        if "actual_attribute_changed" in meta:
            # The site appends a back-reference's link, or takes it out of its place.
            exact = links[len(links) - len(added):] == added and (not removed or not remaining)
        else:
            exact = len(remaining) + len(removed) <= 1  # the order of two or more is not in the entry
        if not exact:
            self.doubt(name, entry.at)
        links[:] = remaining + removed
        return True

    def _keep(self, entity_id: int, row_bounds: list, list_bounds: dict[str, list],
              created: dt.datetime | None) -> None:
        # Bounds come newest first; versions are kept oldest first, as the writer keeps them.
        plan = self.plan
        plan.row_starts[entity_id] = row_bounds[0][0] if row_bounds else created
        for n in reversed(range(len(row_bounds))):
            at, event_id, state = row_bounds[n]
            begins = row_bounds[n + 1][0] if n + 1 < len(row_bounds) else created
            plan.row_versions.append({**state, history.VALID_FROM: begins, history.VALID_TO: at,
                                      history.TO_EVENT: event_id})
        for name, bounds in list_bounds.items():
            plan.list_starts[(name, entity_id)] = bounds[0][0] if bounds else created
            for n in reversed(range(len(bounds))):
                at, event_id, links = bounds[n]
                begins = bounds[n + 1][0] if n + 1 < len(bounds) else created
                plan.list_versions.append((name, entity_id, links, begins, at, event_id))

    def starts(self, held: dict[str, dt.datetime | None]) -> dict[str, dt.datetime]:
        """From when each field's history is proven now: fields whose history began with the
        type's, and whose changes the log records."""
        everything = self.unproven.get("*")
        out: dict[str, dt.datetime] = {}
        for name, began in held.items():
            if began != self.began:
                continue  # added later: its history starts where it did
            handler = self.et.fields.get(name)
            if name != EXISTENCE and (handler is None or not handler.cached or name in NOT_LOGGED
                                      or handler.field.data_type in UNPROVEN_TYPES):
                continue
            start = max(d for d in (self.since, everything, self.unproven.get(name)) if d is not None)
            if start < self.began:
                out[name] = start
        return out


def _by_moment(entries: list[Entry]) -> Iterable[tuple[dt.datetime, list[Entry]]]:
    """Entries grouped by their time, newest first (each group newest entry first)."""
    ordered = sorted(entries, key=lambda e: (e.at, e.id), reverse=True)
    group: list[Entry] = []
    for entry in ordered:
        if group and entry.at != group[0].at:
            yield group[0].at, group
            group = []
        group.append(entry)
    if group:
        yield group[0].at, group


def retired_since(entries: dict[tuple[str, int], list[Entry]]) -> dict[str, dt.datetime]:
    """Type -> the latest retirement in the span of one of its entities that no later entry
    revived: links to them were read as empty by the import."""
    out: dict[str, dt.datetime] = {}
    for (type_name, _), found in entries.items():
        last = max((e for e in found if e.parsed.action in ("Retirement", "Revival")), key=lambda e: (e.at, e.id),
                   default=None)
        if last is not None and last.parsed.action == "Retirement" and \
                (type_name not in out or last.at > out[type_name]):
            out[type_name] = last.at
    return out


#: Entities a back-fill holds in memory at once (their oldest versions, rows, lists and the
#: versions rebuilt before them): a type of a million is done a range of ids at a time ...
ENTITIES_AT_ONCE = 1_000
#: ... and entries: a range whose entities the log names more often is cut smaller (each entry
#: can make a version, and an often-changed entity has many).
ENTRIES_AT_ONCE = 5_000


def backfill_type(engine: sa.Engine, tables: Tables, et: EntityTable, since: dt.datetime, began: dt.datetime,
                  entries: dict[int, list[Entry]], retired: dict[str, dt.datetime] | None = None,
                  rebuilt: Callable[[int], None] = lambda n: None) -> TypeReport:
    """Rebuild one type's versions between ``since`` and ``began`` (its history's start), in one
    transaction that holds off other writers of the type, :data:`ENTITIES_AT_ONCE` entities at a
    time (``rebuilt`` is told of the rows of each range done). ``retired``: see :func:`retired_since`."""
    report = TypeReport(et.name, began, entries=sum(len(e) for e in entries.values()))
    undo = Undo(Writer(engine, tables), et, since, began)
    for name, handler in et.fields.items():
        if handler.cached and isinstance(handler, (EntityField, MultiEntityField)):
            targets = handler.field.entity_types or list(retired or {})
            for target in targets:
                if target in (retired or {}) and retired[target] < began:
                    undo.doubt(name, retired[target])
    named = sorted(entries)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            names = [et.table.name, et.history.name, *[a.name for a in et.associations.values()], history.LINKS]
            conn.execute(sa.text("LOCK TABLE " + ", ".join(f'"{n}"' for n in names) + " IN EXCLUSIVE MODE"))
        for rows_after, rows_upto, rows in store.id_ranges(conn, et, ENTITIES_AT_ONCE):
            for after, upto, ids in _by_entries(rows_after, rows_upto, named, entries):
                report.entities += _backfill_range(conn, tables, et, undo, began, after, upto,
                                                   {i: entries[i] for i in ids})
                report.versions += len(undo.plan.row_versions) + len(undo.plan.list_versions)
                undo.plan = store.Plan()  # written: the next range's
            rebuilt(rows)
        held = {f: at for (t, f), at in history_starts(conn, tables.state).items() if t == et.name}
        history_from = undo.starts(held)
        store.start_history(conn, tables, et, history_from)
    report.proven_from = dict(history_from)
    report.unproven = dict(undo.unproven)
    report.unmoved = sorted(f for f, at in held.items() if at == began and f not in report.proven_from)
    return report


def _by_entries(after: int | None, upto: int | None, named: list[int],
                entries: dict[int, list[Entry]]) -> Iterator[tuple[int | None, int | None, list[int]]]:
    """The range ``(after, upto]`` cut where the entries about its entities (``named``: their
    ids, sorted) reach :data:`ENTRIES_AT_ONCE`, the pieces beginning where the last ended: each
    with the ids in it that the entries name."""
    lo = 0 if after is None else bisect.bisect_right(named, after)
    hi = len(named) if upto is None else bisect.bisect_right(named, upto)
    piece: list[int] = []
    held = 0
    for entity_id in named[lo:hi]:
        piece.append(entity_id)
        held += len(entries[entity_id])
        if held >= ENTRIES_AT_ONCE and entity_id != upto:
            yield after, entity_id, piece
            after, piece, held = entity_id, [], 0
    yield after, upto, piece


def _backfill_range(conn: sa.Connection, tables: Tables, et: EntityTable, undo: Undo, began: dt.datetime,
                    after: int | None, upto: int | None, entries: dict[int, list[Entry]]) -> int:
    """Undo the entries of the entities with ids above ``after`` and up to ``upto`` (all of the
    span's entries about them: ``entries``) and write what that rebuilt; returns how many entities
    the entries touched."""
    oldest = store.oldest_versions(conn, et, began, after=after, upto=upto)
    touched = sorted(i for i in entries if i in oldest)
    for entity_id, found in entries.items():
        if entity_id not in oldest and min(e.at for e in found) < began:
            # Named in the log but never held (or made after the history began): what it was is not known.
            undo.doubt(EXISTENCE, max(e.at for e in found))
    rows = store.oldest_rows(conn, et, oldest, touched) if touched else {}
    lists = {name: store.oldest_lists(conn, tables, et, name, oldest, touched) for name in undo.lists}
    for entity_id in touched:
        undo.entity(entity_id, entries[entity_id], oldest[entity_id], rows[entity_id],
                    {name: lists[name][entity_id] for name in undo.lists})
    for entity_id, found in oldest.items():
        if entity_id not in entries:
            undo.untouched(entity_id, found)
    store.write(conn, tables, et, oldest, undo.plan)
    return len(touched)


def backfill(engine: sa.Engine, tables: Tables, remote: Remote, since: dt.datetime, *,
             types: list[str] | None = None, trust_log: bool = False,
             progress: Callable[[int], None] = lambda n: None,
             rebuilding: Callable[[str, int], Callable[[int], None]] | None = None) -> list[TypeReport]:
    """Back-fill the history of every cached type (or ``types``) to ``since``. ``progress`` is
    told of the log's entries as they are read; ``rebuilding(type, rows)``, called as each type's
    rebuild starts with the rows it holds, returns what is told of the rows as they are done."""
    with engine.connect() as conn:
        starts = history_starts(conn, tables.state)
    chosen = types or [et.name for et in tables]
    unknown = [t for t in chosen if t not in tables]
    if unknown:
        raise SgcacheError(f"not cached: {', '.join(unknown)}")
    began = {t: starts.get((t, EXISTENCE)) for t in chosen}
    todo = {t: at for t, at in began.items() if at is not None and at > since}
    if not todo:
        raise SgcacheError("nothing to back-fill: the history of every type chosen already begins at "
                           f"{format_datetime(since)} or earlier, or has not begun (import the types first)")
    if not trust_log:
        quiet = quiet_scripts(remote)
        if quiet is None:
            raise SgcacheError("the site does not say which scripts generate no events (ApiUser."
                               "generate_event_log_entries); pass --trust-log if none writes to the cached types")
        if quiet:
            raise SgcacheError(f"the site has scripts whose writes make no events ({', '.join(quiet)}): the log "
                               "cannot show what they changed; pass --trust-log if they wrote nothing to the "
                               "cached types since the time asked for")
    entries = read_entries(remote, tables, since, max(todo.values()), progress)
    retired = retired_since(entries)
    reports = []
    for type_name, type_began in sorted(todo.items()):
        mine = {i: [e for e in found if e.at < type_began] for (t, i), found in entries.items() if t == type_name}
        rebuilt = rebuilding(type_name, _rows(engine, tables[type_name])) if rebuilding else lambda n: None
        report = backfill_type(engine, tables, tables[type_name], since, type_began,
                               {i: e for i, e in mine.items() if e}, retired, rebuilt)
        log.info("event=history_backfilled type=%s entries=%d entities=%d versions=%d", type_name, report.entries,
                 report.entities, report.versions)
        reports.append(report)
    return reports


def _rows(engine: sa.Engine, et: EntityTable) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(et.table)).scalar_one()
