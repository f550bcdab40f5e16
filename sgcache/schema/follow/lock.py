"""The schema lock of one cache database: held shared by every sync process while it writes with
a schema, taken exclusive by a follower to migrate to a new one.

A full import clears the backfill marks of its type when it ends; one still running with the old
schema's tables would clear the mark of a field the migration just made, and that field would
then be answered, empty, from the cache. So no import (and no event) runs across a followed
migration: the follower waits until every sync process has let go.

PostgreSQL: a session advisory lock, shared or exclusive, on a dedicated connection. SQLite: a
``flock`` on a file next to the database. Both vanish with the process that holds them.
"""

from __future__ import annotations

import fcntl
import logging
from pathlib import Path
from typing import IO

import sqlalchemy as sa

log = logging.getLogger(__name__)

#: advisory-lock key of the schema lock (sgcache.store.migrate's MIGRATION_LOCK is the one before)
SCHEMA_LOCK = 0x5C_CAC4E_0002


class SchemaLock:
    """``try_acquire(exclusive=...)`` never waits; ``release()`` lets go (also done by exiting)."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine
        self.held: str | None = None  # "shared" or "exclusive"
        self._conn: sa.Connection | None = None
        self._file: IO[str] | None = None

    def try_acquire(self, *, exclusive: bool) -> bool:
        if self.held is not None:
            raise RuntimeError(f"the schema lock is already held ({self.held})")
        mode = "exclusive" if exclusive else "shared"
        if self.engine.dialect.name == "postgresql":
            if self._conn is None:
                self._conn = self.engine.connect()
            function = "pg_try_advisory_lock" if exclusive else "pg_try_advisory_lock_shared"
            got = bool(self._conn.execute(sa.text(f"SELECT {function}(:k)"), {"k": SCHEMA_LOCK}).scalar())
            self._conn.commit()
        else:
            if self._file is None:
                self._file = open(Path(f"{self.engine.url.database}.schema.lock"), "a+")  # noqa: SIM115 (held open)
            try:
                fcntl.flock(self._file.fileno(), (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
                got = True
            except BlockingIOError:
                got = False
        if got:
            self.held = mode
        return got

    def release(self) -> None:
        held, self.held = self.held, None
        if self._conn is not None:
            try:
                if held is not None:
                    function = "pg_advisory_unlock" if held == "exclusive" else "pg_advisory_unlock_shared"
                    self._conn.execute(sa.text(f"SELECT {function}(:k)"), {"k": SCHEMA_LOCK})
                    self._conn.commit()
            except sa.exc.SQLAlchemyError as e:  # the connection is gone, and the lock with it
                log.debug("event=schema_lock_release_failed error=%r", str(e)[:200])
            finally:
                self._conn.close()
                self._conn = None
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None
