"""Scans: a full import of each cached type, and incremental ``updated_at`` scans after it.

A full import pages every entity (active, then retired) by id, writes them in bulk, retires
cached rows the site no longer has (reconcile), records that the type is complete and clears
its fields' backfill marks. An incremental scan fetches what changed since the type's watermark
(minus an overlap), active and retired rows separately; every N of them also reconciles.

With a project set, project-scoped types hold only the rows of those projects: an entity the
site shows outside them (moved out, or with no project) is dropped from the cache, as the
watcher does, never imported. Types without a ``project`` field are cached whole.

Rows are written "as of" the watcher's cursor when the scan began, so a value the watcher
applied from a newer event is not overwritten by an older page.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
from dataclasses import dataclass, field

import sqlalchemy as sa

from sgcache.config import ScannerConfig
from sgcache.errors import SgcacheError
from sgcache.store import state
from sgcache.store.tables import EntityTable, Tables
from sgcache.store.writer import CHUNK, OTHER_SIDES_ALL, OTHER_SIDES_CHANGED, OTHER_SIDES_NONE, Writer
from sgcache.sync import cursor as cursors
from sgcache.sync import links
from sgcache.sync.progress import Progress
from sgcache.sync.refresh import Refresher
from sgcache.sync.remote import Remote, Stopped

log = logging.getLogger(__name__)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(value) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


_DONE = object()


def prefetch(pages, depth: int = 2):
    """Iterate ``pages`` while the next ones are already being fetched in a thread, so the site's
    round trip and the database write overlap. Errors surface in the caller's thread."""
    q: queue.Queue = queue.Queue(maxsize=depth)

    def produce():
        try:
            for page in pages:
                q.put(page)
            q.put(_DONE)
        except BaseException as e:  # handed to the consumer
            q.put(e)

    thread = threading.Thread(target=produce, name="scan-prefetch", daemon=True)
    thread.start()
    while True:
        item = q.get()
        if item is _DONE:
            break
        if isinstance(item, BaseException):
            raise item
        yield item
    thread.join()


@dataclass
class TypeReport:
    entity_type: str
    written: int = 0
    retired_missing: int = 0
    seconds: float = 0.0
    skipped: str | None = None


@dataclass
class ScanReport:
    kind: str
    types: list[TypeReport] = field(default_factory=list)
    other_sides: int = 0  # queued entities taken by the drain that ended the scan

    @property
    def written(self) -> int:
        return sum(t.written for t in self.types)


class Scanner:
    def __init__(self, engine: sa.Engine, tables: Tables, remote: Remote, config: ScannerConfig, *,
                 progress: bool | None = None, stop: threading.Event | None = None):
        self.engine = engine
        # Set (SIGTERM, Ctrl-C): Stopped between two pages; an unfinished import stays unfinished
        # (its type is not marked complete) and is done again at the next start.
        self.stop = stop
        if stop is not None:
            remote.stop = stop  # and between two tries of the site
        self.tables = tables
        self.remote = remote
        self.config = config
        self.writer = Writer(engine, tables)
        self.refresher = Refresher(engine, tables, None, remote=remote, page_size=config.page_size)
        self.progress = progress
        # type -> ids whose write a newer event stamp refused (see _write, _settle_refused)
        self._refused: dict[str, set[int]] = {}

    # --- helpers -------------------------------------------------------------------------------

    def cached_types(self, names: list[str] | None = None) -> list[EntityTable]:
        wanted = names or self.config.types or [et.name for et in self.tables]
        out = []
        for name in wanted:
            et = self.tables[name]  # UnknownEntityType for a type not in the schema file
            out.append(et)
        return out

    @staticmethod
    def fields_of(et: EntityTable) -> list[str]:
        return et.cached_fields()

    @staticmethod
    def _scoped(et: EntityTable, projects: list[int]) -> bool:
        """Does the project set limit this type's rows? (Types without a project field: never.)"""
        return bool(projects) and "project" in et.fields

    def project_filter(self, et: EntityTable, projects: list[int]) -> list:
        """Limit a project-scoped type to the cached projects; other types are imported whole."""
        if not self._scoped(et, projects):
            return []
        return [["project", "in", [{"type": "Project", "id": p} for p in projects]]]

    def _outside(self, et: EntityTable, entity: dict, projects: list[int]) -> bool:
        """Is this entity, as the site returned it, outside the cached projects? One with no
        project is outside every project set (the site's ``project in`` filter leaves it out)."""
        if not self._scoped(et, projects):
            return False
        project = entity.get("project")
        return not (isinstance(project, dict) and project.get("id") in projects)

    def _held(self, et: EntityTable, ids: list[int], *, active: bool | None = None) -> set[int]:
        """Of ``ids``, those the cache holds (only active or only retired rows, if asked)."""
        t = et.table
        out: set[int] = set()
        with self.engine.connect() as conn:
            for start in range(0, len(ids), CHUNK):
                stmt = sa.select(t.c.id).where(t.c.id.in_(ids[start:start + CHUNK]))
                if active is not None:
                    stmt = stmt.where(t.c._active.is_(active))
                out.update(conn.execute(stmt).scalars())
        return out

    def _type_state(self, conn: sa.Connection, type_name: str) -> dict | None:
        t = self.tables.state.types
        row = conn.execute(sa.select(t).where(t.c.entity_type == type_name)).mappings().first()
        return dict(row) if row else None

    def _save_type_state(self, conn: sa.Connection, type_name: str, **values) -> None:
        t = self.tables.state.types
        if self._type_state(conn, type_name) is None:
            conn.execute(sa.insert(t).values(entity_type=type_name, **values))
        else:
            conn.execute(sa.update(t).where(t.c.entity_type == type_name).values(**values))

    def _as_of(self) -> int | None:
        """The event stamp of the rows this scan writes: the newest event the site has logged
        before the scan reads anything. What the scan reads is at least as new as every such
        event, applied or not yet: the watcher must not write one over it later (an event
        still in flight then finds a newer row and reads the entity from the site instead).
        None while no watcher has started (no event will be applied over the rows)."""
        with self.engine.connect() as conn:
            cursor = cursors.load(conn, self.tables.state)
        if cursor is None:
            return None
        return max(cursor.max_applied_id, self.remote.newest_event_id())

    def _import(self, et: EntityTable, filters: list, label: str, total: int | None, as_of: int | None,
                retired: bool, projects: list[int], seen: set[int] | None = None,
                other_sides: str = OTHER_SIDES_NONE, revivals: bool = False) -> tuple[int, dt.datetime | None, int]:
        """Page entities in and write them; return (count, newest updated_at, highest id).

        Entities outside the cached ``projects`` are dropped from the cache instead of written.
        ``other_sides``: which entities whose links to these rows changed the writer queues for
        reading again (Writer.upsert). With ``revivals``, rows the cache holds as retired that the
        site lists as active have the rows linking to them read again first (_revive_referrers)."""
        fields = self.fields_of(et)
        progress = Progress(label, total, bar=self.progress)
        count, newest, highest = 0, None, 0
        pages = prefetch(self.remote.pages(et.name, fields, filters, retired=retired, page_size=self.config.page_size))
        for page in pages:
            if self.stop is not None and self.stop.is_set():
                progress.close()
                raise Stopped(f"{label}: stopping after {count} entities")
            outside = {e["id"] for e in page if self._outside(et, e, projects)}
            inside = [e for e in page if e["id"] not in outside]
            if revivals and not retired:
                count += self._revive_referrers(et, inside, projects, as_of, 0)
            self._write(et, inside, sorted(outside), active=not retired, as_of=as_of, other_sides=other_sides)
            count += len(inside)
            highest = max(highest, page[-1]["id"])
            for entity in page:
                if seen is not None:
                    seen.add(entity["id"])
                updated = _aware(entity.get("updated_at"))
                if updated is not None and (newest is None or updated > newest):
                    newest = updated
            progress.advance(len(page))
        progress.close()
        return count, newest, highest

    def _write(self, et: EntityTable, entities: list[dict], outside: list[int], *, active: bool,
               as_of: int | None, other_sides: str = OTHER_SIDES_CHANGED) -> int:
        """Upsert ``entities`` and drop the rows of ``outside`` (ids of entities outside the cached
        projects), in one transaction; return the rows upserted. ``other_sides``: see Writer.upsert
        (a dropped row's links are queued whatever it says).

        A row the watcher wrote from an event newer than ``as_of`` is kept: it knows better than
        this older read, as the upsert's guard does for values."""
        if not entities and not outside:
            return 0
        written = 0
        t = et.table
        with self.engine.begin() as conn:
            if outside:
                stmt = sa.select(t.c.id).where(t.c.id.in_(outside))
                if as_of is not None:
                    stmt = stmt.where(sa.or_(t.c._last_event_id.is_(None), t.c._last_event_id <= as_of))
                dropped = list(conn.execute(stmt).scalars())
                if dropped:
                    self.writer.forget(et.name, dropped, conn=conn)
                    log.info("event=dropped_outside_projects entity_type=%s count=%d ids=%s", et.name,
                             len(dropped), dropped[:20])
            if entities:
                written = self.writer.upsert(et.name, entities, active=active, event_id=as_of, conn=conn,
                                             other_sides=other_sides)
                if as_of is not None and written < len(entities):
                    refused = conn.execute(sa.select(t.c.id).where(t.c.id.in_([e["id"] for e in entities]))
                                           .where(t.c._last_event_id > as_of)).scalars()
                    self._refused.setdefault(et.name, set()).update(refused)
        return written

    def _settle_refused(self, projects: list[int]) -> int:
        """Read again the rows whose write a newer event's stamp refused; return the rows written.

        The watcher applied an event logged after this scan began, but maybe with values it asked
        the site for before this scan read (or a direct value older than an eventless write the
        scan saw): neither side knows which is newer. A read made now is newer than both, and is
        stamped with the newest event now logged, which the refusing stamp cannot exceed."""
        refused, self._refused = self._refused, {}
        written = 0
        for entity_type, ids in sorted(refused.items()):
            log.info("event=scan_reread_refused entity_type=%s count=%d", entity_type, len(ids))
            written += self._read_again(entity_type, sorted(ids), projects, self._as_of())[0]
        self._refused = {}  # refused again (the watcher wrote once more meanwhile): its next scan
        return written

    def _read_again(self, entity_type: str, ids: list[int], projects: list[int],
                    as_of: int | None, depth: int = 0) -> tuple[int, set[int]]:
        """Read entities by id from the site (active or retired) and write them, dropping those
        outside the cached projects; return (rows written, ids the site has). A row held as
        retired and read active was revived without an event: the rows linking to it are read
        again first (see _revive_referrers)."""
        et = self.tables[entity_type]
        written, found = 0, set()
        size = self.config.page_size
        for start in range(0, len(ids), size):
            chunk = ids[start:start + size]
            for retired in (False, True):
                for page in self.remote.pages(entity_type, self.fields_of(et), [["id", "in", chunk]],
                                              retired=retired, page_size=size):
                    page = [e for e in page if e["id"] not in found]  # listed twice (a race): the first wins
                    found.update(e["id"] for e in page)
                    outside = sorted(e["id"] for e in page if self._outside(et, e, projects))
                    inside = [e for e in page if e["id"] not in outside]
                    if not retired and depth < 2:
                        written += self._revive_referrers(et, inside, projects, as_of, depth)
                    written += self._write(et, inside, outside, active=not retired, as_of=as_of)
        return written, found

    def _revive_referrers(self, et: EntityTable, entities: list[dict], projects: list[int], as_of: int | None,
                          depth: int) -> int:
        """Of ``entities`` (read active), those the cache holds as retired were revived without an
        event: read again the rows linking to them (read while they were retired, with no link to
        them), before they are written themselves; return the rows written."""
        back = self._held(et, [e["id"] for e in entities], active=False)
        if not back:
            return 0
        referrers: dict[str, set[int]] = {}
        for entity_id in sorted(back):
            found = links.referrers_on_site(self.remote, self.tables, (et.name, entity_id))
            log.info("event=scan_found_revival entity_type=%s id=%s referrers=%d", et.name, entity_id, len(found))
            for other_type, other_id in found:
                if (other_type, other_id) != (et.name, entity_id):
                    referrers.setdefault(other_type, set()).add(other_id)
        written = 0
        for other_type, ids in sorted(referrers.items()):
            held = sorted(self._held(self.tables[other_type], sorted(ids)))
            if held:
                written += self._read_again(other_type, held, projects, as_of, depth + 1)[0]
        return written

    # --- full import -----------------------------------------------------------------------------

    def recorded_projects(self) -> list[int] | None:
        """The cached project set ([] for all projects), or None before any import."""
        with self.engine.connect() as conn:
            return state.read_projects(conn, self.tables.state)

    def full(self, types: list[str] | None = None, projects: list[int] | None = None) -> ScanReport:
        """Import ``types`` (default: all cached) in full. ``projects`` changes the cached project
        set; without it the recorded set is kept (or scanner.projects, on a first import)."""
        recorded = self.recorded_projects()
        if projects is None:
            projects = recorded if recorded is not None else list(self.config.projects)
        projects = sorted(set(projects))
        targets = self.cached_types(types)
        if recorded is not None and projects != recorded and types:
            raise SgcacheError("changing the project set needs a full import of every type "
                               "(run sgcache scan --full --projects ... without --types)")
        # The watcher replays from the newest event as of now: nothing that happens during the
        # import is lost.
        with self.engine.begin() as conn:
            cursors.ensure(conn, self.tables.state, self.remote.newest_event_id, self.remote.event_ids_after)
            if recorded is not None and projects != recorded:
                self._forget_full_imports(conn, [et for et in targets if "project" in et.fields])
            self._set_projects(conn, projects)
        report = ScanReport("full")
        for et in targets:
            report.types.append(self._full_type(et, projects))
        report.other_sides = self.drain_other_sides()
        return report

    def full_where_needed(self, types: list[str] | None = None, projects: list[int] | None = None) -> ScanReport:
        """A full import of the types never fully imported, marked for a rescan, or holding fields
        a migration marked for a backfill (their reads pass through until it is done)."""
        with self.engine.connect() as conn:
            marks = state.backfill_marks(conn, self.tables.state)
            needed = [et.name for et in self.cached_types(types)
                      if (s := self._type_state(conn, et.name)) is None or s["full_scan_at"] is None
                      or s["needs_rescan"] or et.name in marks]
        if not needed:
            return ScanReport("full")
        log.info("event=full_import_needed types=%s", ",".join(needed))
        return self.full(needed, projects)

    def _set_projects(self, conn: sa.Connection, projects: list[int]) -> None:
        state.write_projects(conn, self.tables.state, projects)

    def _forget_full_imports(self, conn: sa.Connection, types: list[EntityTable]) -> None:
        """A new project set: until each project-scoped type is imported again, it holds the old
        set's rows, so it is not complete (its reads pass through, and an interrupted import is
        finished by full_where_needed)."""
        t = self.tables.state.types
        names = [et.name for et in types]
        conn.execute(sa.update(t).where(t.c.entity_type.in_(names)).values(full_scan_at=None))
        log.info("event=project_set_changed types_to_import_again=%s", ",".join(names))

    def _full_type(self, et: EntityTable, projects: list[int]) -> TypeReport:
        started = time.monotonic()
        scan_started = _now()
        as_of = self._as_of()
        filters = self.project_filter(et, projects)
        total = self.remote.count(et.name, filters)
        seen: set[int] = set()
        active, newest_a, high_a = self._import(et, filters, f"{et.name} (active)", total, as_of, False, projects,
                                                seen)
        retired, newest_r, high_r = self._import(et, filters, f"{et.name} (retired)", None, as_of, True, projects,
                                                 seen)
        newest = max((v for v in (newest_a, newest_r) if v is not None), default=None)
        self._forget_outside(et, projects)
        active += self._settle_refused(projects)
        missing = self._retire_missing(et, seen, max(high_a, high_r), projects, as_of)
        self._analyze(et)
        seconds = time.monotonic() - started
        with self.engine.begin() as conn:
            self._save_type_state(conn, et.name, full_scan_at=scan_started, full_scan_seconds=seconds,
                                  watermark=newest or scan_started, incremental_scans=0, last_scan_at=scan_started,
                                  last_scan_seconds=seconds, needs_rescan=False)
            state.clear_backfill(conn, self.tables.state, et.name)
        log.info("event=full_scan entity_type=%s active=%d retired=%d retired_missing=%d seconds=%.1f rate=%.0f",
                 et.name, active, retired, missing, seconds, (active + retired) / max(seconds, 1e-9))
        return TypeReport(et.name, written=active + retired, retired_missing=missing, seconds=seconds)

    def _analyze(self, et: EntityTable) -> None:
        """Fresh planner statistics for a table just filled: without them PostgreSQL can pick
        nested loops that make a deep-link read tens of times slower until autovacuum runs."""
        names = [et.table.name, *(assoc.name for assoc in et.associations.values())]
        preparer = self.engine.dialect.identifier_preparer
        with self.engine.begin() as conn:
            for name in names:
                conn.execute(sa.text(f"ANALYZE {preparer.quote(name)}"))

    def _forget_outside(self, et: EntityTable, projects: list[int]) -> int:
        """Drop cached rows of projects not in the set (or of no project): the rows of the projects
        a full import with a new project set left out."""
        if not self._scoped(et, projects):
            return 0
        t = et.table
        column = t.c[et.fields["project"].id_column]
        with self.engine.begin() as conn:
            ids = list(conn.execute(sa.select(t.c.id).where(sa.or_(column.is_(None), column.not_in(projects))))
                       .scalars())
            if ids:
                self.writer.forget(et.name, ids, conn=conn)
        if ids:
            log.info("event=dropped_outside_projects entity_type=%s count=%d ids=%s", et.name, len(ids), ids[:20])
        return len(ids)

    def _retire_missing(self, et: EntityTable, seen: set[int], highest: int, projects: list[int],
                        as_of: int | None) -> int:
        """Retire cached rows the site no longer has (deleted without a retirement event); return
        how many.

        Only ids up to the highest one the site listed: newer rows may have arrived since. A row
        missing from the listing of the cached projects may only have moved out of them: the
        missing rows are read again by id first (those moved out are dropped), and only those the
        site lacks are retired."""
        t = et.table
        stmt = sa.select(t.c.id).where(t.c.id <= highest).where(t.c._active.is_(True))
        if self._scoped(et, projects):
            handler = et.fields["project"]
            stmt = stmt.where(t.c[handler.id_column].in_(projects))
        with self.engine.connect() as conn:
            cached = set(conn.execute(stmt).scalars())
        missing = sorted(cached - seen)
        if not missing:
            return 0
        _, found = self._read_again(et.name, missing, projects, as_of)
        gone = [i for i in missing if i not in found]
        if gone:
            log.warning("event=retire_missing entity_type=%s count=%d ids=%s read_again=%d", et.name, len(gone),
                        gone[:20], len(found))
            self.writer.retire(et.name, gone)
        return len(gone)

    # --- incremental -----------------------------------------------------------------------------

    def incremental(self, types: list[str] | None = None) -> ScanReport:
        report = ScanReport("incremental")
        projects = self.recorded_projects() or []
        for et in self.cached_types(types):
            report.types.append(self._incremental_type(et, projects))
        report.other_sides = self.drain_other_sides()
        return report

    def drain_other_sides(self) -> int:
        """Read again the entities queued because writes changed links to them (any process's
        writes: this scan's, the watcher's, the proxy's); return how many were taken."""
        taken = drained = self.refresher.drain()
        while drained == self.refresher.DRAIN_LIMIT and taken < 10 * self.refresher.DRAIN_LIMIT:
            drained = self.refresher.drain()  # more were queued than one call takes
            taken += drained
        return taken  # what is queued still (faster than read, or refused) waits for the next pass

    def _incremental_type(self, et: EntityTable, projects: list[int]) -> TypeReport:
        with self.engine.connect() as conn:
            previous = self._type_state(conn, et.name)
        if not previous or previous["full_scan_at"] is None:
            log.warning("event=scan_skipped entity_type=%s reason=never_fully_imported "
                        "hint='run sgcache scan --full'", et.name)
            return TypeReport(et.name, skipped="never fully imported")
        started = time.monotonic()
        scan_started = _now()
        as_of = self._as_of()
        watermark = previous["watermark"] or previous["full_scan_at"]
        since = watermark - dt.timedelta(seconds=self.config.overlap)
        # Changed rows of every project: one moved out of the cached projects is changed too, and
        # is dropped (_import); the others' links may change cached rows' reverse fields.
        filters = [["updated_at", "greater_than", since]]
        if "updated_at" not in et.fields:
            filters = self.project_filter(et, projects)  # no updated_at: every scan reads it all
        # Writes that set links changed the other side's reverse fields without moving its
        # updated_at: the writer queues those entities (a new row's links are news to them too),
        # and incremental() reads them after the types (Refresher.drain).
        active, newest_a, _ = self._import(et, filters, f"{et.name} (changed)", None, as_of, False, projects,
                                           other_sides=OTHER_SIDES_ALL, revivals=True)
        retired, newest_r, _ = self._import(et, filters, f"{et.name} (changed, retired)", None, as_of, True,
                                            projects, other_sides=OTHER_SIDES_ALL)
        active += self._settle_refused(projects)
        newest = max((v for v in (newest_a, newest_r, watermark) if v is not None), default=watermark)
        count = (previous["incremental_scans"] or 0) + 1
        missing = 0
        if count % self.config.reconcile_every == 0:
            missing = self.reconcile(et, projects, as_of)
        seconds = time.monotonic() - started
        with self.engine.begin() as conn:
            self._save_type_state(conn, et.name, watermark=newest, incremental_scans=count,
                                  last_scan_at=scan_started, last_scan_seconds=seconds)
        if active or retired or missing:
            log.info("event=incremental_scan entity_type=%s read=%d retired=%d retired_missing=%d seconds=%.2f",
                     et.name, active, retired, missing, seconds)
        return TypeReport(et.name, written=active + retired, retired_missing=missing, seconds=seconds)

    def reconcile(self, et: EntityTable, projects: list[int], as_of: int | None = None) -> int:
        """List every id the site has (cheaply: ids only) and retire cached rows it lacks."""
        filters = self.project_filter(et, projects)
        seen: set[int] = set()
        highest = 0
        for retired in (False, True):
            for page in self.remote.pages(et.name, ["id"], filters, retired=retired,
                                          page_size=self.config.page_size):
                seen.update(e["id"] for e in page)
                highest = max(highest, page[-1]["id"])
        return self._retire_missing(et, seen, highest, projects, as_of)

    # --- forever ---------------------------------------------------------------------------------

    def run_forever(self, interval: float, stop, types: list[str] | None = None) -> None:
        """Incremental scans every ``interval`` seconds until ``stop`` (an Event) is set."""
        while not stop.is_set():
            started = time.monotonic()
            try:
                # Types flagged since the last round (a schema change upstream, a migration's
                # backfill marks) are imported in full first; the rest incrementally.
                self.full_where_needed(types)
                self.incremental(types)
            except Stopped:
                return
            except Exception:
                log.exception("event=scan_failed; retrying at the next interval")
            stop.wait(max(0.0, interval - (time.monotonic() - started)))
