"""A sync process's hold on the schema it writes with (``schema.follow: follow``).

The watcher and the scanners load the schema in use under the schema lock, held shared (see
:mod:`sgcache.schema.follow.lock`), and keep it while they write. Between two pieces of work
they ask :meth:`HeldSchema.stale`: when a follower waits to change the schema, or another
process recorded a new one, they let go (:meth:`release`), wait for the change to be made, and
load the new schema (:meth:`acquire`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import sqlalchemy as sa

from sgcache.config import Config
from sgcache.schema.follow import record
from sgcache.schema.follow.lock import SchemaLock
from sgcache.store.tables import Tables
from sgcache.sync.remote import Stopped

log = logging.getLogger(__name__)


class HeldSchema:
    """The schema one sync process writes with, and its hold on it."""

    #: Seconds between two looks at the database (``stale``), and between two tries of the lock.
    CHECK_SECONDS = 1.0
    RETRY_SECONDS = 0.2

    def __init__(self, engine: sa.Engine, config: Config, *, name: str = "sync",
                 clock: Callable[[], float] = time.monotonic):
        self.engine = engine
        self.config = config
        self.name = name  # which process, for the log
        self.clock = clock
        self.lock = SchemaLock(engine)
        self.tables: Tables | None = None
        self.digest: str | None = None
        self._checked_at: float | None = None
        self._stale = False

    @property
    def holding(self) -> bool:
        return self.lock.held is not None

    def acquire(self, stop: threading.Event | None = None) -> Tables:
        """Wait until no follower is waiting, take the lock shared, and load the schema in use
        (the followed one if recorded, else the file). Raises Stopped if ``stop`` is set first."""
        waited = False
        while True:
            with self.engine.connect() as conn:
                waiting = record.pending(conn)
            if waiting is None and self.lock.try_acquire(exclusive=False):
                break
            if not waited:
                log.info("event=schema_wait process=%s reason=%s", self.name,
                         "schema_change_pending" if waiting else "schema_lock_busy")
                waited = True
            if stop is not None and stop.wait(self.RETRY_SECONDS):
                raise Stopped(f"{self.name}: stopping while waiting for a schema change")
            if stop is None:
                time.sleep(self.RETRY_SECONDS)
        try:
            with self.engine.connect() as conn:
                in_use = record.schema_in_use(self.config, conn)
            tables = Tables(in_use.schema)
        except BaseException:
            self.lock.release()
            raise
        news = self.tables is None or in_use.digest != self.digest
        self.tables, self.digest = tables, in_use.digest
        self._checked_at, self._stale = self.clock(), False
        log.log(logging.INFO if news else logging.DEBUG,
                "event=schema_loaded process=%s source=%r digest=%s types=%d", self.name, in_use.source,
                in_use.digest or "-", len(tables.entities))
        return tables

    def release(self) -> None:
        self.lock.release()

    def stale(self) -> bool:
        """Should this process let go of its schema: a follower is waiting, or another schema was
        recorded since it was loaded? Looks at the database at most every CHECK_SECONDS."""
        if not self.holding:
            return True
        now = self.clock()
        if self._stale or (self._checked_at is not None and now - self._checked_at < self.CHECK_SECONDS):
            return self._stale
        self._checked_at = now
        with self.engine.connect() as conn:
            waiting = record.pending(conn)
            digest = record.recorded_digest(conn) if record.follows(self.config) else None
        if waiting is not None or digest != self.digest:
            log.info("event=schema_let_go process=%s reason=%s", self.name,
                     "schema_change_pending" if waiting else "new_schema_recorded")
            self._stale = True
        return self._stale
