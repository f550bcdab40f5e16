"""Locks of one cache database that vanish with the process holding them.

PostgreSQL: a session advisory lock, shared or exclusive, held on a dedicated connection.
SQLite: a ``flock`` on a file next to the database (``<database>.<name>.lock``). A killed
holder (SIGKILL, a crash) lets go at once either way. Used for leadership
(:mod:`sgcache.sync.leader`) and the schema lock (:mod:`sgcache.schema.follow.lock`).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
from pathlib import Path
from typing import IO

import sqlalchemy as sa

log = logging.getLogger(__name__)


def advisory_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``name``."""
    return int.from_bytes(hashlib.sha1(f"sgcache:{name}".encode()).digest()[:8], "big", signed=True)


class DatabaseLock:
    """``try_acquire(exclusive=...)`` never waits; ``release()`` lets go (so does exiting).

    ``key``: the advisory-lock key on PostgreSQL (default: from ``name``); ``name`` also names
    the lock file on SQLite, which :attr:`file` exposes while held (leadership writes its pid
    there)."""

    def __init__(self, engine: sa.Engine, name: str, *, key: int | None = None):
        self.engine = engine
        self.name = name
        self.key = advisory_key(name) if key is None else key
        self.held: str | None = None  # "shared" or "exclusive"
        self._conn: sa.Connection | None = None
        self.file: IO[str] | None = None

    def try_acquire(self, *, exclusive: bool = True) -> bool:
        if self.held is not None:
            raise RuntimeError(f"the {self.name} lock is already held ({self.held})")
        if self.engine.dialect.name == "postgresql":
            if self._conn is None:
                self._conn = self.engine.connect()
            function = "pg_try_advisory_lock" if exclusive else "pg_try_advisory_lock_shared"
            got = bool(self._conn.execute(sa.text(f"SELECT {function}(:k)"), {"k": self.key}).scalar())
            self._conn.commit()
        else:
            if self.file is None:
                self.file = open(Path(f"{self.engine.url.database}.{self.name}.lock"), "a+")  # noqa: SIM115 (held open)
            try:
                fcntl.flock(self.file.fileno(), (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
                got = True
            except BlockingIOError:
                got = False
        if got:
            self.held = "exclusive" if exclusive else "shared"
        return got

    def release(self) -> None:
        held, self.held = self.held, None
        if self._conn is not None:
            try:
                if held is not None:
                    function = "pg_advisory_unlock" if held == "exclusive" else "pg_advisory_unlock_shared"
                    self._conn.execute(sa.text(f"SELECT {function}(:k)"), {"k": self.key})
                    self._conn.commit()
            except sa.exc.SQLAlchemyError as e:  # the connection is gone, and the lock with it
                log.debug("event=lock_release_failed name=%s error=%r", self.name, str(e)[:200])
            finally:
                self._conn.close()
                self._conn = None
        if self.file is not None:
            fcntl.flock(self.file.fileno(), fcntl.LOCK_UN)
            self.file.close()
            self.file = None
