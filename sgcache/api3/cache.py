"""The proxy's view of its cache database: whether it can be used now, and what it may write.

When the database fails, the proxy stops using it (every request passes through to the site),
logs it once, and checks it again every few seconds; the first successful check puts it back
in use. Nothing here ever raises a database error to a caller.

Following the site's schema (``schema.follow: follow``), the tables are those of the schema in
use, which may change while the proxy runs: each request keeps the tables it started with
(:meth:`CacheDatabase.pin_tables`), and a new schema recorded in the database is taken up
between requests (see :meth:`CacheDatabase.follow_schema`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from sgcache.config import Config
from sgcache.errors import SgcacheError
from sgcache.store import state
from sgcache.store.db import safe_url
from sgcache.store.prepared import Prepared
from sgcache.store.tables import Tables

log = logging.getLogger(__name__)

#: Seconds between two checks of a database that failed.
RECHECK_SECONDS = 5.0
#: Seconds between two looks at the digest of the schema recorded in the database (following the site).
SCHEMA_CHECK_SECONDS = 5.0


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
                 read_engine: sa.Engine | None = None, prepared_statements: int = 0):
        self.engine = engine
        #: where cached reads are answered from (database.read_url, a replica), else ``engine``
        self.read_engine = read_engine if read_engine is not None else engine
        #: repeated reads sent as prepared statements (PostgreSQL; None: not used)
        self.prepared = (Prepared(self.read_engine, prepared_statements)
                         if prepared_statements > 0 and self.read_engine.dialect.name == "postgresql" else None)
        self._tables = tables
        self.clock = clock
        self._lock = threading.Lock()
        self._healthy: bool | None = None  # None: not checked yet
        self._checked_at = 0.0
        self.problem: str | None = None
        # Following the site's schema (follow_schema): the settings, the digest of the schema in
        # use (None: the file's), and a schema seen but not yet taken up (tables, digest, when).
        self._pinned = threading.local()
        self._follow: Config | None = None
        self._digest: str | None = None
        self._settle = 0.0
        self._on_change: Callable[[], None] | None = None
        self._waiting: tuple[Tables, str | None, float] | None = None
        self._next_look = 0.0
        self._looking = False

    @property
    def tables(self) -> Tables:
        """The tables the request at hand started with (see pin_tables), else those in use now."""
        pinned = getattr(self._pinned, "tables", None)
        return pinned if pinned is not None else self._tables

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

    # --- the schema in use, when the cache follows the site's --------------------------------------

    @property
    def follows_schema(self) -> bool:
        return self._follow is not None

    def follow_schema(self, config: Config, digest: str | None, *, settle: float,
                      on_change: Callable[[], None] | None = None) -> None:
        """Take up each new schema recorded in the database (``schema.follow: follow``).

        ``digest``: that of the schema the tables were made from (None: the file's). The digest
        is read at most every SCHEMA_CHECK_SECONDS (from the read database: the one whose data
        the reads see); a new schema is taken up ``settle`` seconds after it was seen, so that
        no request pairs the new tables with a read state loaded before the migration (whose
        backfill marks would not cover the new fields). ``on_change`` runs after each change."""
        self._follow = config
        self._digest = digest
        self._settle = settle
        self._on_change = on_change

    def pin_tables(self) -> None:
        """At the start of a request: take up a new schema if one is due, then keep the tables in
        use now for the whole request, whatever changes meanwhile."""
        if self._follow is not None:
            self._take_up_schema()
        self._pinned.tables = self._tables

    def unpin_tables(self, _error: BaseException | None = None) -> None:
        """At the end of a request (a Flask teardown function)."""
        self._pinned.tables = None

    def _take_up_schema(self) -> None:
        """One thread at a time (the others go on with the tables in use, never waiting): swap in
        the schema seen earlier once it is due, and look for a newer one when a look is due."""
        now = self.clock()
        with self._lock:
            swap = self._waiting is not None and now >= self._waiting[2]
            look = now >= self._next_look
            if self._looking or not (swap or look):
                return
            self._looking = True
            if look:
                self._next_look = now + SCHEMA_CHECK_SECONDS
        try:
            if swap:
                self._swap()
            if look:
                self._look()
        finally:
            with self._lock:
                self._looking = False

    def _look(self) -> None:
        from sgcache.schema.follow import record

        known = self._waiting[1] if self._waiting is not None else self._digest
        try:
            with self.read_engine.connect() as conn:
                if record.recorded_digest(conn) == known:
                    return
                in_use = record.schema_in_use(self._follow, conn)
            tables = Tables(in_use.schema)
        except sa.exc.SQLAlchemyError as e:  # is_usable() deals with a database that is down
            log.debug("event=schema_look_failed error=%r", _reason(e))
            return
        except Exception as e:  # a recorded schema (or file) that cannot be read: keep the one in use
            reason = str(e) if isinstance(e, SgcacheError) else f"{type(e).__name__}: {e}"
            log.error("event=schema_not_taken_up error=%r", reason[:300])
            return
        self._waiting = (tables, in_use.digest, self.clock() + self._settle)
        log.info("event=schema_seen digest=%s source=%r takes_effect_in_s=%.1f", in_use.digest or "-",
                 in_use.source, self._settle)

    def _swap(self) -> None:
        assert self._waiting is not None
        tables, digest, _ = self._waiting
        self._tables, self._digest, self._waiting = tables, digest, None  # one assignment: atomic for readers
        log.info("event=schema_taken_up digest=%s types=%d", digest or "-", len(tables.entities))
        if self._on_change is not None:
            self._on_change()


class TablesInUse:
    """The cache's tables for a part of the proxy built once that must follow the schema in use
    (the read-back's refresher, the policy): each use finds the tables of the request at hand,
    else those in use now (see CacheDatabase.tables)."""

    def __init__(self, cache: CacheDatabase):
        self._cache = cache

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cache.tables, name)

    def __getitem__(self, type_name: str) -> Any:
        return self._cache.tables[type_name]

    def __contains__(self, type_name: object) -> bool:
        return type_name in self._cache.tables

    def __iter__(self):
        return iter(self._cache.tables)
