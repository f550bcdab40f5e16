"""Listings of the site fetched over several connections at once, their pages handed to one writer.

A full import is mostly waiting: one round trip to the site for each page. :class:`Listings`
runs up to ``threads`` listings at once, each in a thread with a connection of its own
(shotgun_api3's client holds one connection), and hands their pages, in the order they arrive,
to the one thread that writes them. A bounded queue keeps the fetchers a few pages ahead of the
writer at most, so memory stays flat whatever the size of the site.

A listing may be one id range of a large type (:func:`id_ranges`), so that one type is fetched
over several connections too. Pages of one listing arrive in id order; pages of different
listings interleave.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sgcache.sync.remote import Remote

#: Seconds between two looks at the cancel flag while a fetcher waits for room in the queue.
_PUT_WAIT = 0.2


@dataclass(frozen=True)
class Listing:
    """One listing: the entities of ``entity_type`` matching ``filters`` (active, or retired),
    with ids above ``after_id`` and, when ``below_id`` is set, below it."""

    entity_type: str
    fields: list[str] = field(hash=False)
    filters: list = field(hash=False)
    retired: bool = False
    after_id: int = 0
    below_id: int | None = None

    def all_filters(self) -> list:
        return [*self.filters, *([["id", "less_than", self.below_id]] if self.below_id is not None else [])]


def id_ranges(highest: int, total: int, page_size: int, most: int) -> list[tuple[int, int | None]]:
    """Split ids 1..``highest`` (``total`` entities) into at most ``most`` ranges of at least two
    pages each, as (after_id, below_id); the last is open above (entities created meanwhile)."""
    parts = max(1, min(most, total // (2 * page_size)))
    if parts == 1 or highest < parts:
        return [(0, None)]
    step = highest // parts
    bounds = [i * step for i in range(parts)]
    return [(lo, bounds[i + 1] + 1 if i + 1 < parts else None) for i, lo in enumerate(bounds)]


@dataclass(frozen=True)
class Call:
    """Some other request to run over a fetcher's connection (:meth:`Listings.call`): ``fn(remote)``,
    its result handed to the writer's thread with the pages. ``key``: what the caller knows it by."""

    key: Any
    fn: Callable[[Remote], Any] = field(hash=False, compare=False)


class Listings:
    """Fetch listings ``threads`` at a time; iterate :meth:`pages` in the writer's thread.

    ``remote``: the Remote of the calling thread; each fetcher thread makes its own from its
    site settings, sharing its throttle (a site that asks one connection to wait makes all wait).
    Listings and calls may be submitted while the pages are iterated (a type's retired entities
    once its active ones are in, say); each has a priority, lower first, then first come first
    served. Leaving the iteration early (an error, a stop) cancels the rest."""

    def __init__(self, remote: Remote, threads: int, page_size: int, *, ahead: int | None = None,
                 make_remote: Callable[[], Remote] | None = None):
        self.remote = remote
        self.page_size = page_size
        self._make_remote = make_remote or remote.sibling
        self._jobs: queue.PriorityQueue = queue.PriorityQueue()
        self._order = itertools.count()
        self._queue: queue.Queue = queue.Queue(maxsize=ahead or 2 * threads)
        self._cancel = threading.Event()
        self._outstanding = 0
        self._threads = [threading.Thread(target=self._work, name=f"import-fetch-{i}", daemon=True)
                         for i in range(threads)]
        for thread in self._threads:
            thread.start()

    def submit(self, listing: Listing, priority: int = 1) -> None:
        self._outstanding += 1
        self._jobs.put((priority, next(self._order), listing))

    def call(self, call: Call, priority: int = 0) -> None:
        """Run ``call.fn(remote)`` in a fetcher thread; :meth:`pages` yields (call, its result)."""
        self._outstanding += 1
        self._jobs.put((priority, next(self._order), call))

    def pages(self) -> Iterator[tuple[Listing | Call, Any]]:
        """(listing, page) as pages arrive, (listing, None) when a listing has ended, and (call,
        result) when a call has; until every listing and call submitted (before or during the
        iteration) has ended. A fetcher's error is raised here."""
        try:
            while self._outstanding:
                job, item = self._queue.get()
                if isinstance(item, BaseException):
                    raise item
                if item is None or isinstance(job, Call):
                    self._outstanding -= 1
                yield job, item
        finally:
            self.close()

    def close(self) -> None:
        """Cancel what is left and wait for the fetchers to end."""
        self._cancel.set()
        for _ in self._threads:
            self._jobs.put((-1, -1, None))  # wakes an idle fetcher: it ends
        while any(t.is_alive() for t in self._threads):
            try:  # unblock fetchers waiting for room
                self._queue.get(timeout=_PUT_WAIT)
            except queue.Empty:
                pass
        for thread in self._threads:
            thread.join()

    # --- in the fetcher threads --------------------------------------------------------------------

    def _work(self) -> None:
        remote: Remote | None = None
        while not self._cancel.is_set():
            _, _, job = self._jobs.get()
            if job is None or self._cancel.is_set():
                return
            try:
                remote = remote or self._make_remote()
                if isinstance(job, Call):
                    self._put((job, job.fn(remote)))
                    continue
                for page in remote.pages(job.entity_type, job.fields, job.all_filters(), retired=job.retired,
                                         page_size=self.page_size, after_id=job.after_id):
                    if not self._put((job, page)):
                        return
                self._put((job, None))
            except BaseException as e:  # handed to the writer's thread (Stopped too)
                self._put((job, e))
                return

    def _put(self, item: tuple) -> bool:
        while not self._cancel.is_set():
            try:
                self._queue.put(item, timeout=_PUT_WAIT)
                return True
            except queue.Full:
                continue
        return False
