"""A full import over several connections to the site at once (``scanner.concurrency``).

Fetched one page after another, an import's time is the sum of the site's round trips: three
or more per type however small, one per 500 entities. :class:`ParallelImport` overlaps them:

1. Before anything is read, the newest event id: every row is stamped with it (see
   :meth:`~sgcache.sync.scanbase.ScanBase._as_of`).
2. Each type is counted (active, retired) and, when large, its highest id asked, over the
   fetcher connections: for the progress bar's total and ETA, and to split a large type into id
   ranges fetched side by side (:func:`~sgcache.sync.listings.id_ranges`).
3. A type's listings start as soon as it is counted, ``concurrency`` requests at a time
   (:class:`~sgcache.sync.listings.Listings`). This thread writes every page as it arrives,
   through the one writer.
   A type's retired entities are listed once its active ones are all written (so an entity
   retired meanwhile ends retired, as in a one-at-a-time import), and a type is finished
   (reconciled, marked complete) as soon as its last page is written, while the other types'
   pages keep coming.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sgcache.store.tables import EntityTable
from sgcache.sync.listings import Call, Listing, Listings, id_ranges
from sgcache.sync.progress import Progress
from sgcache.sync.remote import Remote, Stopped
from sgcache.sync.scanbase import Tally, TypeReport, now

if TYPE_CHECKING:
    from sgcache.sync.fullimport import FullImport

log = logging.getLogger("sgcache.sync.scanner")


@dataclass
class _TypeImport:
    """One type's import under way."""

    et: EntityTable
    filters: list
    active_total: int
    retired_total: int
    highest_id: int
    started: float = field(default_factory=time.monotonic)
    scan_started: dt.datetime = field(default_factory=now)
    pending: int = 0  # listings submitted and not ended
    retired_phase: bool = False
    seen: set[int] = field(default_factory=set)
    active: Tally = field(default_factory=Tally)
    retired: Tally = field(default_factory=Tally)


class ParallelImport:
    """Imports ``targets`` in full for ``scan`` (a FullImport), ``threads`` listings at a time."""

    def __init__(self, scan: FullImport, targets: list[EntityTable], projects: list[int], threads: int):
        self.scan = scan
        self.targets = targets
        self.projects = projects
        self.threads = threads
        self.page_size = scan.config.page_size

    def run(self) -> list[TypeReport]:
        scan = self.scan
        as_of = scan._as_of()  # before any listing reads anything
        progress = Progress(f"full import ({len(self.targets)} types)", None, bar=scan.progress)
        listings = Listings(scan.remote, self.threads, self.page_size)
        types: dict[str, _TypeImport] = {}
        reports: dict[str, TypeReport] = {}
        try:
            # Each type is counted first, over the fetchers' connections; its listings start as
            # soon as its count is in (the counts come in well before the first types' pages).
            for et in self.targets:
                listings.call(Call(et.name, lambda remote, et=et: self._plan(remote, et)))
            for job, item in listings.pages():
                if scan.stop is not None and scan.stop.is_set():
                    raise Stopped(f"full import: stopping after {progress.done} entities")
                if isinstance(job, Call):  # a type counted: list it
                    t = types[job.key] = item
                    progress.grow(t.active_total + t.retired_total)
                    fields = scan.fields_of(t.et)
                    for after, below in id_ranges(t.highest_id, t.active_total, self.page_size, self.threads):
                        listings.submit(Listing(t.et.name, fields, t.filters, after_id=after, below_id=below))
                        t.pending += 1
                    continue
                t = types[job.entity_type]
                if item is None:  # one listing ended
                    t.pending -= 1
                    if t.pending:
                        continue
                    if not t.retired_phase:
                        t.retired_phase = True
                        t.pending = 1
                        # Ahead of other types' active listings: the type is finished (reconciled,
                        # analysed) while their pages still come in, not all types at the end.
                        listings.submit(Listing(t.et.name, scan.fields_of(t.et), t.filters, retired=True), priority=0)
                        continue
                    reports[t.et.name] = self._finish(t, as_of)
                    progress.describe(f"full import ({len(reports)} of {len(self.targets)} types)")
                    continue
                tally = t.retired if job.retired else t.active
                scan.write_page(t.et, item, tally, as_of=as_of, retired=job.retired, projects=self.projects,
                                seen=t.seen)
                progress.advance(len(item))
        finally:
            listings.close()
            progress.close()
        return [reports[et.name] for et in self.targets]

    def _finish(self, t: _TypeImport, as_of: int | None) -> TypeReport:
        newest = max((v for v in (t.active.newest, t.retired.newest) if v is not None), default=None)
        return self.scan.finish_type(t.et, self.projects, as_of=as_of, seen=t.seen,
                                     highest=max(t.active.highest, t.retired.highest), newest=newest,
                                     written=t.active.count + t.retired.count, retired=t.retired.count,
                                     started=t.started, scan_started=t.scan_started)

    def _plan(self, remote: Remote, et: EntityTable) -> _TypeImport:
        """Count a type, active and retired, and find its highest id when it is worth splitting
        (in a fetcher's thread)."""
        filters = self.scan.project_filter(et, self.projects)
        active = remote.count(et.name, filters)
        retired = remote.entity_count(et.name, filters, retired=True)
        highest = remote.highest_id(et.name, filters) if active >= 4 * self.page_size else 0
        return _TypeImport(et, filters, active, retired, highest)
