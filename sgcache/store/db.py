"""Connecting to the cache database: one engine per process, tuned for each backend."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from sgcache.errors import SgcacheError


def safe_url(url: str | sa.URL) -> str:
    """The URL with any password hidden, fit for logs and messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparsable database URL>"


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets the proxy read while the watcher writes; NORMAL is durable enough for a cache.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()
    # Case-insensitive matching lowers text the way Python (and the site) does; SQLite's own
    # lower() knows ASCII only.
    dbapi_conn.create_function("sg_lower", 1, _lower, deterministic=True)


def _lower(value):
    return value.lower() if isinstance(value, str) else value


def create_engine(url: str, **kwargs) -> sa.Engine:
    """An engine for ``url``; a SQLite file's folder is created if missing."""
    try:
        parsed = make_url(url)
    except Exception:
        raise SgcacheError("database.url: not a valid database URL") from None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            try:
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise SgcacheError(f"database.url: cannot create the folder for {database}: "
                                   f"{e.strerror}") from None
        engine = sa.create_engine(parsed, connect_args={"timeout": 30}, **kwargs)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            # SQLAlchemy 2.1 picks psycopg 3 for a bare postgresql://; sgcache ships psycopg2.
            parsed = parsed.set(drivername="postgresql+psycopg2")
        kwargs.setdefault("pool_pre_ping", True)
        if "connect_timeout" not in parsed.query:
            # A database that does not answer must not hang a request (the proxy then passes through).
            kwargs.setdefault("connect_args", {}).setdefault("connect_timeout", 5)
        return sa.create_engine(parsed, **kwargs)
    raise SgcacheError(f"database.url: unsupported database {parsed.get_backend_name()!r} "
                       "(use postgresql:// or sqlite:///)")


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (None for other databases and in-memory ones)."""
    try:
        parsed = make_url(url)
    except Exception:
        return None
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def check_connection(engine: sa.Engine) -> None:
    """Connect once; turn a failure into one line naming the database (password hidden)."""
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.DBAPIError as e:
        reason = str(e.orig).strip().splitlines()[0] if e.orig else type(e).__name__
        raise SgcacheError(f"cannot connect to the database {safe_url(engine.url)}: {reason}") from None


#: A table every migrated cache database has (made by the first migration, with the event cursor).
SET_UP_MARK = "_sgcache_cursor"


def is_set_up(engine: sa.Engine) -> bool:
    """Whether a migration has made sgcache's tables in this database."""
    return SET_UP_MARK in sa.inspect(engine).get_table_names()
