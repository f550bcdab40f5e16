"""Where the followed schema lives, and which schema a process uses.

The schema file (``schema.path``) is the operator's: it may be read-only or under version
control, so a followed schema is never written there. It is kept in the cache database instead,
in ``_sgcache_meta``: its YAML under :data:`SCHEMA_KEY` and a digest of that text under
:data:`DIGEST_KEY`, written in one transaction. The digest is short, so a process can check
cheaply and often whether the schema changed. With ``schema.follow: follow`` a process uses the
recorded schema when there is one, else the file; with ``manual`` always the file.

:data:`PENDING_KEY` says that a follower is waiting to change the schema: sync processes let go
of theirs (see :mod:`sgcache.schema.follow.held`) so that it can.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from sgcache.config import Config
from sgcache.errors import SchemaError
from sgcache.schema import dumps, load, loads
from sgcache.schema.model import Schema
from sgcache.store import state

SCHEMA_KEY = "followed_schema"
DIGEST_KEY = "followed_schema_digest"
PENDING_KEY = "schema_change_pending"
#: Seconds after which a pending mark is ignored (its follower died, or gave up without clearing it).
PENDING_EXPIRY = 120.0

log = logging.getLogger(__name__)

#: What the recorded YAML is called in messages.
WHERE = "the followed schema in the cache database"


@functools.cache
def state_tables() -> state.StateTables:
    """The bookkeeping tables' definitions, for callers that have no Tables yet."""
    return state.define(sa.MetaData())


def follows(config: Config) -> bool:
    return config.schema.follow == "follow"


def rules_path(config: Config) -> Path | None:
    """``schema.rules``, or None when it is empty. (An empty value arrives as the current folder,
    or the settings file's folder, which no rules file can be.)"""
    rules = config.schema.rules
    if rules is None or rules == Path(".") or (config.source is not None and rules == config.source.resolve().parent):
        return None
    if rules.is_dir():
        raise SchemaError(f"schema.rules: {rules} is a folder; name a rules file (see docs/schema.rst)")
    return rules


def digest_of(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _has_meta(conn: sa.Connection) -> bool:
    return sa.inspect(conn).has_table(state_tables().meta.name)


def _meta(conn: sa.Connection, key: str) -> str | None:
    meta = state_tables().meta
    return conn.execute(sa.select(meta.c.value).where(meta.c.key == key)).scalar()


def record(conn: sa.Connection, schema: Schema) -> str:
    """Record ``schema`` as the followed one; return its digest."""
    text = dumps(schema)
    digest = digest_of(text)
    state.set_meta(conn, state_tables(), SCHEMA_KEY, text)
    state.set_meta(conn, state_tables(), DIGEST_KEY, digest)
    return digest


def recorded_digest(conn: sa.Connection) -> str | None:
    """The digest of the recorded schema (one short read), or None when none is recorded."""
    return _meta(conn, DIGEST_KEY) if _has_meta(conn) else None


def recorded_schema(conn: sa.Connection) -> tuple[Schema, str] | None:
    """(the recorded schema, its digest), or None when none is recorded."""
    if not _has_meta(conn):
        return None
    text = _meta(conn, SCHEMA_KEY)
    if text is None:
        return None
    return loads(text, where=WHERE), digest_of(text)


def forget(conn: sa.Connection) -> bool:
    """Drop the recorded schema (the file is in use again); True if there was one."""
    meta = state_tables().meta
    if not _has_meta(conn):
        return False
    deleted = conn.execute(sa.delete(meta).where(meta.c.key.in_([SCHEMA_KEY, DIGEST_KEY]))).rowcount
    return bool(deleted)


# --- a follower waiting to change the schema -------------------------------------------------------


def who_am_i() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def mark_pending(conn: sa.Connection, by: str) -> None:
    state_tables().meta.create(conn, checkfirst=True)  # a database never migrated yet
    state.set_meta(conn, state_tables(), PENDING_KEY,
                   json.dumps({"by": by, "at": dt.datetime.now(dt.UTC).isoformat()}))


def clear_pending(conn: sa.Connection, by: str) -> None:
    """Remove the pending mark if it is still ``by``'s (another follower may have set its own)."""
    if pending(conn, expired_too=True) == by:
        meta = state_tables().meta
        conn.execute(sa.delete(meta).where(meta.c.key == PENDING_KEY))


def pending(conn: sa.Connection, *, expired_too: bool = False) -> str | None:
    """Who is waiting to change the schema (``host:pid``), or None."""
    raw = _meta(conn, PENDING_KEY) if _has_meta(conn) else None
    try:
        value = json.loads(raw) if raw else None
        at = dt.datetime.fromisoformat(value["at"]) if value else None
    except (ValueError, KeyError, TypeError):
        return None
    if at is None or (not expired_too and (dt.datetime.now(dt.UTC) - at).total_seconds() > PENDING_EXPIRY):
        return None
    return str(value.get("by"))


# --- the schema in use -----------------------------------------------------------------------------


@dataclass(frozen=True)
class InUse:
    """The schema a process uses, with its digest (None for the file) and where it came from."""

    schema: Schema
    digest: str | None
    source: str


def from_file(config: Config) -> InUse:
    return InUse(load(config.schema.path), None, str(config.schema.path))


def schema_in_use(config: Config, conn: sa.Connection) -> InUse:
    """The recorded schema when the cache follows the site and one is recorded, else the file."""
    if follows(config):
        found = recorded_schema(conn)
        if found is not None:
            return InUse(found[0], found[1], WHERE)
    return from_file(config)


def schema_at_start(config: Config, engine: sa.Engine) -> InUse:
    """:func:`schema_in_use` for a process starting up: the file while the database cannot say
    which schema is in use (a process that follows the site takes the recorded one up later)."""
    if not follows(config):
        return from_file(config)
    try:
        with engine.connect() as conn:
            return schema_in_use(config, conn)
    except sa.exc.SQLAlchemyError as e:
        log.warning("event=schema_from_file reason='the cache database cannot say which schema is in use' "
                    "error=%r", str(getattr(e, "orig", e)).strip()[:200])
        return from_file(config)
