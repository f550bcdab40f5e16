"""The full import: every entity of a type paged in, then the cache made to match the listing.

A full import pages every entity (active, then retired) by id, writes them in bulk, retires
cached rows the site no longer has (reconcile), records that the type is complete and clears
its fields' backfill marks. A new project set makes the project-scoped types incomplete until
each is imported again. The paging (the next page fetched while one is written) is also what
the incremental scan (:mod:`sgcache.sync.scanner`) reads its changes with.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time

import sqlalchemy as sa

from sgcache.errors import SgcacheError
from sgcache.store import state
from sgcache.store.tables import EntityTable
from sgcache.store.writer import OTHER_SIDES_NONE
from sgcache.sync import cursor as cursors
from sgcache.sync.parallel import ParallelImport
from sgcache.sync.progress import Progress
from sgcache.sync.remote import Stopped
from sgcache.sync.reread import Rereads
from sgcache.sync.scanbase import ScanReport, Tally, TypeReport, now
from sgcache.sync.slimscan import SlimScans

#: The scanner's log: one logger for everything the scanner does, whichever module does it.
log = logging.getLogger("sgcache.sync.scanner")

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


class FullImport(Rereads, SlimScans):
    """Pages listings in, and imports types in full."""

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
        tally = Tally()
        pages = prefetch(self.remote.pages(et.name, fields, filters, retired=retired, page_size=self.config.page_size))
        for page in pages:
            if self.stop is not None and self.stop.is_set():
                progress.close()
                raise Stopped(f"{label}: stopping after {tally.count} entities")
            self.write_page(et, page, tally, as_of=as_of, retired=retired, projects=projects, seen=seen,
                            other_sides=other_sides, revivals=revivals)
            progress.advance(len(page))
        progress.close()
        return tally.count, tally.newest, tally.highest

    def write_page(self, et: EntityTable, page: list[dict], tally: Tally, *, as_of: int | None, retired: bool,
                   projects: list[int], seen: set[int] | None = None, other_sides: str = OTHER_SIDES_NONE,
                   revivals: bool = False) -> None:
        """Write one page of a listing (see _import), counting it in ``tally``."""
        outside = {e["id"] for e in page if self._outside(et, e, projects)}
        inside = [e for e in page if e["id"] not in outside]
        if revivals and not retired:
            tally.count += self._revive_referrers(et, inside, projects, as_of, 0)
        self._write(et, inside, sorted(outside), active=not retired, as_of=as_of, other_sides=other_sides)
        if outside:
            with self.engine.begin() as conn:
                self.write_outside(conn, et.name, [e for e in page if e["id"] in outside], active=not retired,
                                   event_id=as_of)
        tally.count += len(inside)
        tally.add(page, seen)

    # --- full import -----------------------------------------------------------------------------

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
                self.forget_outside_listings(conn)
            self._set_projects(conn, projects)
        report = ScanReport("full")
        threads = self.fetch_threads()
        if threads > 1 and len(targets) > 0:
            # Several listings at once, each over its own connection; one thread writes.
            report.types.extend(ParallelImport(self, targets, projects, threads).run())
        else:
            for et in targets:
                report.types.append(self._full_type(et, projects))
        if not types:
            report.types.extend(self.slim_scan(full=True))
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
        """One type imported in full, one page after another (scanner.concurrency 1)."""
        started = time.monotonic()
        scan_started = now()
        as_of = self._as_of()
        filters = self.project_filter(et, projects)
        total = self.remote.count(et.name, filters)
        seen: set[int] = set()
        active, newest_a, high_a = self._import(et, filters, f"{et.name} (active)", total, as_of, False, projects,
                                                seen)
        retired, newest_r, high_r = self._import(et, filters, f"{et.name} (retired)", None, as_of, True, projects,
                                                 seen)
        newest = max((v for v in (newest_a, newest_r) if v is not None), default=None)
        return self.finish_type(et, projects, as_of=as_of, seen=seen, highest=max(high_a, high_r), newest=newest,
                                written=active + retired, retired=retired, started=started, scan_started=scan_started)

    def finish_type(self, et: EntityTable, projects: list[int], *, as_of: int | None, seen: set[int], highest: int,
                    newest: dt.datetime | None, written: int, retired: int, started: float,
                    scan_started: dt.datetime) -> TypeReport:
        """After every page of a type is written: drop what lies outside the cached projects, read
        again the rows newer events refused, retire what the site no longer lists, and record the
        type as complete (its backfill marks cleared)."""
        self._forget_outside(et, projects)
        written += self._settle_refused(projects)
        missing = self._retire_missing(et, seen, highest, projects, as_of)
        self._analyze(et)
        seconds = time.monotonic() - started
        with self.engine.begin() as conn:
            self._save_type_state(conn, et.name, full_scan_at=scan_started, full_scan_seconds=seconds,
                                  watermark=newest or scan_started, incremental_scans=0, last_scan_at=scan_started,
                                  last_scan_seconds=seconds, needs_rescan=False)
            state.clear_backfill(conn, self.tables.state, et.name)
        log.info("event=full_scan entity_type=%s active=%d retired=%d retired_missing=%d seconds=%.1f rate=%.0f",
                 et.name, written - retired, retired, missing, seconds, written / max(seconds, 1e-9))
        return TypeReport(et.name, written=written, retired_missing=missing, seconds=seconds)

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

