"""One leader per database: two watchers (or two periodic scanners) never apply at once.

An exclusive :class:`~sgcache.store.locks.DatabaseLock` per role: it vanishes with the process
that holds it, so a standby waiting for the lock takes over when the leader dies.
"""

from __future__ import annotations

import logging
import os
import threading

import sqlalchemy as sa

from sgcache.store.locks import DatabaseLock

log = logging.getLogger(__name__)


class Leadership:
    """``acquire()`` blocks until this process leads; ``release()`` (or exiting) lets another lead."""

    def __init__(self, engine: sa.Engine, name: str, *, retry_seconds: float = 1.0):
        self.engine = engine
        self.name = name
        self.retry_seconds = retry_seconds
        self._lock = DatabaseLock(engine, name)

    def try_acquire(self) -> bool:
        if self._lock.held is not None:
            return True
        if not self._lock.try_acquire(exclusive=True):
            return False
        if self._lock.file is not None:  # SQLite: the lock file says who leads
            self._lock.file.seek(0)
            self._lock.file.truncate()
            self._lock.file.write(f"{os.getpid()}\n")
            self._lock.file.flush()
        return True

    def acquire(self, stop: threading.Event | None = None) -> bool:
        """Wait (as a hot standby) until leading; False if ``stop`` was set first."""
        announced = False
        while True:
            if self.try_acquire():
                log.info("event=leader name=%s pid=%d", self.name, os.getpid())
                return True
            if not announced:
                log.info("event=standby name=%s reason='another process leads'", self.name)
                announced = True
            if stop is not None:
                if stop.wait(self.retry_seconds):
                    return False
            else:
                threading.Event().wait(self.retry_seconds)

    def release(self) -> None:
        self._lock.release()
