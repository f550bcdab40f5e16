"""``sgcache rebuild``: import some entity types again from nothing, while the proxy keeps serving.

The order matters, and is what makes it safe:

1. the types are marked *rebuilding* (``_sgcache_meta`` key ``rebuilding``). From then on every
   read that touches them (their table, a link into them, a deep path through them) passes
   through to the site; proxies notice within :data:`GRACE` seconds;
2. after :data:`GRACE`, their rows are deleted and imported again in full (the watcher keeps
   applying events meanwhile: the writer's event guard keeps the newer of the two);
3. one transaction removes the mark: every type is readable again at the same instant.

A rebuild that stops half-way leaves the mark: reads keep passing through (slower, never wrong)
until ``sgcache rebuild`` runs again. Only one rebuild runs at a time per database.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time

import sqlalchemy as sa

from sgcache.errors import SgcacheError
from sgcache.store import state
from sgcache.store.tables import Tables
from sgcache.sync.leader import Leadership
from sgcache.sync.scanner import Scanner, ScanReport

log = logging.getLogger(__name__)

#: Seconds between marking the types and touching their rows: proxies re-read the read state at
#: least this often (Service.STATE_TTL is 0.5 s), so none still answers from the old rows.
GRACE = 2.0

META_KEY = "rebuilding"


def rebuilding(conn: sa.Connection, tables: Tables) -> dict | None:
    """The running (or interrupted) rebuild: {"types": [...], "started_at": ISO time}, else None."""
    st = tables.state
    raw = conn.execute(sa.select(st.meta.c.value).where(st.meta.c.key == META_KEY)).scalar()
    if not raw:
        return None
    value = json.loads(raw)
    return value if isinstance(value, dict) and value.get("types") else None


class Rebuilder:
    def __init__(self, engine: sa.Engine, tables: Tables, scanner: Scanner, *, grace: float = GRACE):
        self.engine = engine
        self.tables = tables
        self.scanner = scanner
        self.grace = grace

    def _mark(self, types: list[str]) -> None:
        with self.engine.begin() as conn:
            state.set_meta(conn, self.tables.state, META_KEY, json.dumps(
                {"types": types, "started_at": dt.datetime.now(dt.UTC).isoformat()}))

    def _unmark(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.delete(self.tables.state.meta).where(self.tables.state.meta.c.key == META_KEY))

    def _delete_rows(self, types: list[str]) -> int:
        deleted = 0
        with self.engine.begin() as conn:
            for name in types:
                et = self.tables[name]
                for assoc in et.associations.values():
                    conn.execute(sa.delete(assoc))
                deleted += conn.execute(sa.delete(et.table)).rowcount or 0
                # The history of a type imported again begins again when the import completes:
                # what was kept no longer lines up with the rows that will be read.
                conn.execute(sa.delete(et.history))
                links = self.tables.state.link_history
                conn.execute(sa.delete(links).where(links.c.entity_type == name))
                fields = self.tables.state.fields
                conn.execute(sa.update(fields).where(fields.c.entity_type == name).values(history_from=None))
        return deleted

    def rebuild(self, types: list[str], stop: threading.Event | None = None) -> ScanReport:
        unknown = [t for t in types if t not in self.tables]
        if unknown:
            raise SgcacheError(f"not a cached entity type: {', '.join(unknown)} (see sgcache schema show)")
        if not types:
            raise SgcacheError("name the entity types to rebuild")
        leader = Leadership(self.engine, "rebuild")
        if not leader.try_acquire():
            raise SgcacheError("another sgcache rebuild is running on this database; wait for it to finish")
        try:
            with self.engine.connect() as conn:
                interrupted = rebuilding(conn, self.tables)
            # An interrupted rebuild's types stay marked until they are rebuilt too.
            marked = sorted(set(types) | set(interrupted["types"] if interrupted else []))
            self._mark(marked)
            log.info("event=rebuild_started types=%s grace_s=%.1f", ",".join(marked), self.grace)
            if stop is not None and stop.wait(self.grace):
                raise SgcacheError("rebuild interrupted before it changed anything; its types still pass "
                                   "through until `sgcache rebuild` runs again")
            if stop is None:
                time.sleep(self.grace)
            deleted = self._delete_rows(marked)
            log.info("event=rebuild_rows_deleted types=%s rows=%d", ",".join(marked), deleted)
            report = self.scanner.full(marked)
            self._unmark()
            log.info("event=rebuild_done types=%s entities=%d", ",".join(marked), report.written)
            return report
        finally:
            leader.release()
