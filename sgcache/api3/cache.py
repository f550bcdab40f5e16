"""The proxy's view of its cache database: whether it can be used now, and what it may write.

When the database fails, the proxy stops using it (every request passes through to the site),
logs it once, and checks it again every few seconds; the first successful check puts it back
in use. Nothing here ever raises a database error to a caller.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import sqlalchemy as sa

from sgcache.store import state
from sgcache.store.db import safe_url
from sgcache.store.tables import Tables

log = logging.getLogger(__name__)

#: Seconds between two checks of a database that failed.
RECHECK_SECONDS = 5.0


def _reason(error: BaseException) -> str:
    orig = getattr(error, "orig", None)
    text = str(orig if orig is not None else error).strip()
    return (text.splitlines() or [type(error).__name__])[0][:200]


#: PostgreSQL errors that mean the server or the connection went away (besides class 08).
_GONE = {"57P01", "57P02", "57P03"}
#: SQLite errors that mean the database file cannot be used at all.
_SQLITE_GONE = ("unable to open", "disk i/o error", "no such table", "file is not a database", "readonly database")


def connection_lost(error: BaseException) -> bool:
    """Does this database error mean the database is unusable (lost connection, server gone), as
    opposed to one statement failing (a timeout, a query too large or too deep)? Only the first
    kind switches the cache off for everyone."""
    if isinstance(error, (sa.exc.DisconnectionError, sa.exc.InterfaceError)):
        return True
    if getattr(error, "connection_invalidated", False):
        return True
    orig = getattr(error, "orig", None)
    code = getattr(orig, "pgcode", None)
    if code:
        return code.startswith("08") or code in _GONE
    if type(orig).__module__.startswith("sqlite3"):
        return any(text in str(orig).lower() for text in _SQLITE_GONE)
    # psycopg2 gives no code when the connection itself failed.
    return isinstance(error, sa.exc.OperationalError)


class CacheDatabase:
    """The engine and tables, plus a health flag the request path consults."""

    def __init__(self, engine: sa.Engine, tables: Tables, clock=time.monotonic, *,
                 read_engine: sa.Engine | None = None):
        self.engine = engine
        #: where cached reads are answered from (database.read_url, a replica), else ``engine``
        self.read_engine = read_engine if read_engine is not None else engine
        self.tables = tables
        self.clock = clock
        self._lock = threading.Lock()
        self._healthy: bool | None = None  # None: not checked yet
        self._checked_at = 0.0
        self.problem: str | None = None

    def _check(self) -> None:
        try:
            for engine in {id(e): e for e in (self.engine, self.read_engine)}.values():
                with engine.connect() as conn:
                    conn.execute(sa.select(self.tables.state.meta.c.key).limit(1)).all()
        except sa.exc.SQLAlchemyError as e:
            self.failed(e)
        else:
            with self._lock:
                if self._healthy is False:
                    log.warning("event=database_back database=%s answers=cache", safe_url(self.engine.url))
                self._healthy = True
                self.problem = None
                self._checked_at = self.clock()

    def is_usable(self) -> bool:
        """Can the cache be used now? Checks a failed database again at most every few seconds (a
        query, the first time and when due)."""
        with self._lock:
            healthy, due = self._healthy, self.clock() - self._checked_at >= RECHECK_SECONDS
        if healthy is None or (healthy is False and due):
            self._check()
        return bool(self._healthy)

    def failed(self, error: BaseException) -> None:
        """A database call failed: pass everything through until a check succeeds."""
        reason = _reason(error)
        with self._lock:
            if self._healthy is not False:
                log.error("event=database_down database=%s error=%r answers=passthrough", safe_url(self.engine.url),
                          reason)
            self._healthy = False
            self.problem = reason
            self._checked_at = self.clock()

    @property
    def state_name(self) -> str:
        if self._healthy is None:
            return "unchecked"
        return "ok" if self._healthy else "down"

    # --- the site's info, kept so a restarted proxy can answer it while the site is down ---------

    def saved_info(self) -> Any:
        if not self.is_usable():
            return None
        meta = self.tables.state.meta
        try:
            with self.engine.connect() as conn:
                raw = conn.execute(sa.select(meta.c.value).where(meta.c.key == "site_info")).scalar()
        except sa.exc.SQLAlchemyError as e:
            self.failed(e)
            return None
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return None

    def save_info(self, info: Any) -> None:
        if not self.is_usable():
            return
        try:
            with self.engine.begin() as conn:
                state.set_meta(conn, self.tables.state, "site_info", json.dumps(info, sort_keys=True))
        except sa.exc.SQLAlchemyError as e:
            self.failed(e)
