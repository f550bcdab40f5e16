"""The schema lock of one cache database: held shared by every sync process while it writes with
a schema, taken exclusive by a follower to migrate to a new one.

A full import clears the backfill marks of its type when it ends; one still running with the old
schema's tables would clear the mark of a field the migration just made, and that field would
then be answered, empty, from the cache. So no import (and no event) runs across a followed
migration: the follower waits until every sync process has let go.

A :class:`~sgcache.store.locks.DatabaseLock`: it vanishes with the process that holds it.
"""

from __future__ import annotations

import sqlalchemy as sa

from sgcache.store.locks import DatabaseLock

#: advisory-lock key of the schema lock (sgcache.store.migrate's MIGRATION_LOCK is the one before)
SCHEMA_LOCK = 0x5C_CAC4E_0002


class SchemaLock(DatabaseLock):
    """``try_acquire(exclusive=...)`` never waits; ``release()`` lets go (also done by exiting)."""

    def __init__(self, engine: sa.Engine):
        super().__init__(engine, "schema", key=SCHEMA_LOCK)
