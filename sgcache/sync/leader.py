"""One leader per database: two watchers (or two periodic scanners) never apply at once.

PostgreSQL: a session advisory lock, held on a dedicated connection. SQLite: an exclusive
``flock`` on a file next to the database. Both vanish with the process that holds them, so a
standby waiting for the lock takes over when the leader dies.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import threading
from pathlib import Path

import sqlalchemy as sa

log = logging.getLogger(__name__)


def _key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``name``."""
    return int.from_bytes(hashlib.sha1(f"sgcache:{name}".encode()).digest()[:8], "big", signed=True)


class Leadership:
    """``acquire()`` blocks until this process leads; ``release()`` (or exiting) lets another lead."""

    def __init__(self, engine: sa.Engine, name: str, *, retry_seconds: float = 1.0):
        self.engine = engine
        self.name = name
        self.retry_seconds = retry_seconds
        self._conn: sa.Connection | None = None
        self._file = None

    def try_acquire(self) -> bool:
        if self.engine.dialect.name == "postgresql":
            if self._conn is None:
                self._conn = self.engine.connect()
            got = self._conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": _key(self.name)}).scalar()
            self._conn.commit()
            return bool(got)
        path = Path(f"{self.engine.url.database}.{self.name}.lock")
        if self._file is None:
            self._file = open(path, "a+")  # noqa: SIM115 (held open while leading)
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        self._file.seek(0)
        self._file.truncate()
        self._file.write(f"{os.getpid()}\n")
        self._file.flush()
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
        if self._conn is not None:
            try:
                self._conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _key(self.name)})
                self._conn.commit()
            finally:
                self._conn.close()
                self._conn = None
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None
