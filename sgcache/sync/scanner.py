"""Scans: a full import of each cached type, and incremental ``updated_at`` scans after it.

An incremental scan fetches what changed since the type's watermark (minus an overlap), active
and retired rows separately; every N of them also reconciles (lists every id the site has and
retires the cached rows it lacks). ``run_forever`` keeps doing so, importing in full first the
types that need it.

:class:`Scanner` is the whole scanner; its parts are layered, each building on the one before:
:mod:`sgcache.sync.scanbase` (the project set's rule, type state, stamped writes),
:mod:`sgcache.sync.reread` (entities read again by id, revivals), :mod:`sgcache.sync.slimscan`
(slim records of the types the schema leaves out), :mod:`sgcache.sync.fullimport` (paging
listings in, the full import) and this module (the incremental scan).
"""

from __future__ import annotations

import datetime as dt
import logging
import time

from sgcache.store import history
from sgcache.store.tables import EntityTable
from sgcache.store.writer import OTHER_SIDES_ALL
from sgcache.sync.fullimport import FullImport, prefetch
from sgcache.sync.remote import Stopped
from sgcache.sync.scanbase import ScanReport, TypeReport, now

log = logging.getLogger(__name__)

#: Names this module has always offered, now defined where their job is.
__all__ = ["ScanReport", "Scanner", "TypeReport", "prefetch"]


class Scanner(FullImport):
    """Full imports and incremental scans of the cached types and of the slim records of the
    others (see the module)."""

    # --- incremental -----------------------------------------------------------------------------

    def incremental(self, types: list[str] | None = None) -> ScanReport:
        report = ScanReport("incremental")
        projects = self.recorded_projects() or []
        for et in self.cached_types(types):
            report.types.append(self._incremental_type(et, projects))
        if not types:
            report.types.extend(self.slim_scan())
        report.other_sides = self.drain_other_sides()
        return report

    def _incremental_type(self, et: EntityTable, projects: list[int]) -> TypeReport:
        with self.engine.connect() as conn:
            previous = self._type_state(conn, et.name)
        if not previous or previous["full_scan_at"] is None:
            log.warning("event=scan_skipped entity_type=%s reason=never_fully_imported "
                        "hint='run sgcache scan --full'", et.name)
            return TypeReport(et.name, skipped="never fully imported")
        started = time.monotonic()
        scan_started = now()
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

    #: Seconds ended versions are kept (history.keep; 0: for ever); set by whoever runs the scans.
    history_keep: float = 0.0

    def prune_history(self) -> int:
        """Remove the versions that ended more than ``history_keep`` seconds ago (see
        sgcache.store.history.prune)."""
        if not self.history_keep:
            return 0
        horizon = now() - dt.timedelta(seconds=self.history_keep)
        removed = history.prune(self.engine, self.tables, horizon)
        if removed:
            log.info("event=history_pruned versions=%d before=%s", removed, horizon.isoformat())
        return removed

    def run_forever(self, interval: float, stop, types: list[str] | None = None) -> None:
        """Incremental scans every ``interval`` seconds until ``stop`` (an Event) is set."""
        while not stop.is_set():
            started = time.monotonic()
            try:
                # Types flagged since the last round (a schema change upstream, a migration's
                # backfill marks) are imported in full first; the rest incrementally.
                self.full_where_needed(types)
                self.incremental(types)
                self.prune_history()
            except Stopped:
                return
            except Exception:
                log.exception("event=scan_failed action='retry at the next interval'")
            stop.wait(max(0.0, interval - (time.monotonic() - started)))
