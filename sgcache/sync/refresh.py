"""Read given entities again from the site and write them to the cache: the proxy's write
results, and the other sides of links.

After the site confirms a write, the proxy names the entities it touched; this reads each of
them in full (every cached field, active or retired, as sgcache's own script) and writes them
through the one writer. A write that changes a row's links queues the entities on the other
side (their reverse field changed with no event: ``_sgcache_other_sides``, see the writer);
``refresh`` reads those at once for a few levels, so the caller's next reads see them, and
``drain`` (run by the watcher after each poll and by every scan) reads whatever is still queued,
whoever queued it. Rows are stamped with the newest event id seen before the read, so the watcher
never puts an older value back.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Mapping

import sqlalchemy as sa

from sgcache.config import SiteConfig
from sgcache.store import slim, state
from sgcache.store.tables import Tables
from sgcache.store.writer import OTHER_SIDES_ALL, Writer, chunks
from sgcache.sync import links
from sgcache.sync.remote import Remote

log = logging.getLogger(__name__)

Targets = Mapping[str, set[int]]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Refresher:
    """Re-reads entities from the site into the cache; safe to share between threads."""

    #: Levels of other sides followed after the written entities themselves.
    FOLLOW_LEVELS = 3

    def __init__(self, engine: sa.Engine, tables: Tables, site: SiteConfig | None, *, page_size: int = 500,
                 remote: Remote | None = None):
        self.engine = engine
        self.tables = tables
        self.site = site
        self.page_size = page_size
        self.writer = Writer(engine, tables)
        self._shared_remote = remote
        self._local = threading.local()

    @property
    def remote(self) -> Remote:
        # A shotgun_api3 client holds one connection: one per thread.
        if self._shared_remote is not None:
            return self._shared_remote
        remote = getattr(self._local, "remote", None)
        if remote is None:
            remote = self._local.remote = Remote(self.site, attempts=2, backoff=0.2)
        return remote

    def newest_event_id(self) -> int:
        return self.remote.newest_event_id()

    def _projects(self) -> set[int] | None:
        """The cached project set, or None when every project is cached."""
        with self.engine.connect() as conn:
            projects = state.read_projects(conn, self.tables.state)
        return set(projects) if projects else None

    def refresh(self, targets: Targets, as_of: int | None, follow_levels: int | None = None) -> int:
        """Re-read ``targets`` (type -> ids), then the other sides of the links those reads changed
        (queued by the writer), in turn up to ``follow_levels`` levels (FOLLOW_LEVELS by default):
        the caller's next reads see them. What is still queued after that is left to ``drain``.
        Return how many rows were written. Types the cache does not hold are skipped."""
        levels = self.FOLLOW_LEVELS if follow_levels is None else follow_levels
        projects = self._projects()
        written = 0
        level: dict[str, set[int]] = {t: set(ids) for t, ids in targets.items() if t in self.tables and ids}
        for _ in range(1 + levels):
            queued: set[tuple[str, int]] = set()
            for entity_type, ids in sorted(level.items()):
                written += self._refresh_type(entity_type, sorted(ids), as_of, projects, queued)
            level = {}
            for entity_type, entity_id in queued:
                level.setdefault(entity_type, set()).add(entity_id)
            if not level:
                break
        return written

    #: Most queued entities one call of ``drain`` reads, and how many it takes per round.
    DRAIN_LIMIT = 2000
    DRAIN_PAGE = 200

    def drain(self, limit: int | None = None) -> int:
        """Read again the entities queued because a write changed a link to them, oldest first,
        until the queue is empty or ``limit`` (DRAIN_LIMIT) were taken; return how many were taken.

        Only rows the cache holds are read (one it does not hold is new, read whole by its own
        event or scan, or outside the cached projects). Reads that find the queued rows' own
        links changed queue further entities, and the loop takes those in turn."""
        limit = self.DRAIN_LIMIT if limit is None else limit
        table = self.tables.state.other_sides
        columns = (table.c.queued_at, table.c.entity_type, table.c.entity_id)
        taken = 0
        last = None  # each entry once per call: one left queued (its write refused) waits for the next call
        projects = self._projects()
        forget = (sa.delete(table).where(table.c.entity_type == sa.bindparam("t"))
                  .where(table.c.entity_id == sa.bindparam("i")).where(table.c.queued_at <= sa.bindparam("q")))
        while taken < limit:
            with self.engine.connect() as conn:
                stmt = sa.select(table.c.entity_type, table.c.entity_id, table.c.queued_at)
                if last is not None:
                    after = (sa.literal(value, type_=c.type) for value, c in zip(last, columns, strict=True))
                    stmt = stmt.where(sa.tuple_(*columns) > sa.tuple_(*after))
                batch = conn.execute(stmt.order_by(*columns).limit(min(self.DRAIN_PAGE, limit - taken))).all()
                wanted: dict[str, set[int]] = {}
                for entity_type, entity_id, _ in batch:
                    if entity_type in self.tables:
                        wanted.setdefault(entity_type, set()).add(entity_id)
                held = {entity_type: set(conn.execute(sa.select(self.tables[entity_type].table.c.id).where(
                            self.tables[entity_type].table.c.id.in_(sorted(ids)))).scalars())
                        for entity_type, ids in wanted.items()}
            if not batch:
                break
            for entity_type, ids in sorted(held.items()):
                if ids:
                    # Not stamped with an event id (the stamp says which event's values a row
                    # holds): a row written by anyone since the read began is left for the next.
                    self._refresh_type(entity_type, sorted(ids), None, projects, set())
            # Not held (or of a type no longer cached): nothing to read. Held ones were removed by
            # their writes; an entry queued again meanwhile has a later time and stays.
            unheld = [{"t": t, "i": i, "q": q} for t, i, q in batch if i not in held.get(t, ())]
            if unheld:
                with self.engine.begin() as conn:
                    conn.execute(forget, unheld)
            taken += len(batch)
            last = (batch[-1].queued_at, batch[-1].entity_type, batch[-1].entity_id)
            log.info("event=other_sides_read queued=%d held=%d", len(batch), sum(len(v) for v in held.values()))
        return taken

    def _refresh_type(self, entity_type: str, ids: list[int], as_of: int | None,
                      projects: set[int] | None, queued: set[tuple[str, int]]) -> int:
        """Read ``ids`` of one type and write them; return the rows written. The entities whose
        links to them changed are queued (and added to ``queued``); queue entries of ``ids``
        older than this read are removed with the write.

        ``as_of``: the newest event id logged before the read; the rows are stamped with it and a
        row a newer event wrote is left alone. Without it, a row written by anyone after the read
        began is left alone (and stays queued)."""
        et = self.tables[entity_type]
        started = _now()
        with self.engine.connect() as conn:
            held_retired = set(conn.execute(sa.select(et.table.c.id).where(et.table.c.id.in_(ids))
                                            .where(et.table.c._active.is_(False))).scalars())
        found: dict[int, tuple[dict, bool]] = {}
        for retired in (False, True):
            missing = [i for i in ids if i not in found]
            for start in range(0, len(missing), self.page_size):
                chunk = missing[start:start + self.page_size]
                for page in self.remote.pages(entity_type, et.cached_fields(), [["id", "in", chunk]],
                                              retired=retired, page_size=self.page_size):
                    found.update((e["id"], (e, not retired)) for e in page)
        outside = []
        if projects is not None and "project" in et.fields:
            outside = [i for i, (e, _) in found.items()
                       if not (isinstance(e.get("project"), dict) and e["project"].get("id") in projects)]
        keep = {i: v for i, v in found.items() if i not in outside}
        written = 0
        # Held as retired, active on the site: revived without an event. Rows read while it was
        # retired saw their links to it as None; read them again (as the watcher's Revival does),
        # before the revived rows are written: a process killed in between finds them retired
        # again next time, and does it all again.
        referrers: dict[str, set[int]] = {}
        for revived in sorted(i for i, (_, active) in keep.items() if active and i in held_retired):
            for other_type, other_id in links.referrers_on_site(self.remote, self.tables, (entity_type, revived)):
                if other_type != entity_type or other_id not in keep:
                    referrers.setdefault(other_type, set()).add(other_id)
        for other_type, other_ids in sorted(referrers.items()):
            written += self._refresh_type(other_type, sorted(other_ids), as_of, projects, queued)
        since = None if as_of is not None else started
        written_ids: set[int] = set()
        self._name_new_links(et, [e for e, _ in found.values()], as_of)
        with self.engine.begin() as conn:
            if outside:
                # Outside the cached projects (or moved out of them): the cache does not hold it,
                # but keeps its slim record, which names links to it.
                self.writer.forget(entity_type, outside, conn=conn)
                ident = et.entity_type.identifier
                slim.upsert(conn, self.tables.state.slim,
                            [slim.record(found[i][0], slim.SlimType(entity_type, ident, True), active=found[i][1])
                             for i in outside], event_id=as_of)
            for active in (True, False):
                entities = [e for e, a in keep.values() if a is active]
                if entities:
                    written += self.writer.upsert(entity_type, entities, active=active, event_id=as_of, conn=conn,
                                                  other_sides=OTHER_SIDES_ALL, queued=queued,
                                                  unless_written_since=since, written_ids=written_ids)
            # Read after they were queued: off the queue, unless a newer write refused this one
            # (a newer event's change may not have been a whole read: a later drain reads it).
            done = [i for i in ids if i not in keep or i in written_ids]
            table = self.tables.state.other_sides
            for chunk in chunks(done):
                conn.execute(sa.delete(table).where(table.c.entity_type == entity_type)
                             .where(table.c.entity_id.in_(chunk)).where(table.c.queued_at <= started))
        log.debug("event=refresh entity_type=%s ids=%d found=%d written=%d", entity_type, len(ids), len(found),
                  written)
        return written

    def _name_new_links(self, et, entities: list[dict], as_of: int | None) -> None:
        """Links read back to entities of types held as slim records that the records do not know
        yet (made a moment ago, their event not applied): their records are read now, so that
        the caller's next read names the link instead of dropping it."""
        wanted: dict[str, set[int]] = {}
        for name in et.cached_fields():
            handler = et.fields[name]
            if handler.family not in ("entity", "multi_entity"):
                continue
            for entity in entities:
                value = entity.get(name)
                for link in value if isinstance(value, list) else [value]:
                    if isinstance(link, dict) and isinstance(link.get("type"), str) and type(link.get("id")) is int \
                            and link["type"] not in self.tables:
                        wanted.setdefault(link["type"], set()).add(link["id"])
        if not wanted:
            return
        st = self.tables.state
        with self.engine.connect() as conn:
            listed = {name: t for name, t in slim.ready_types(conn, st.slim_types).items() if name in wanted}
            missing = {}
            for name, t in listed.items():
                ids = sorted(wanted[name])
                known = set(conn.execute(sa.select(st.slim.c.id).where(st.slim.c.entity_type == name,
                                                                       st.slim.c.id.in_(ids))).scalars())
                if set(ids) - known:
                    missing[name] = (t, sorted(set(ids) - known))
        for name, (t, ids) in sorted(missing.items()):
            fields = sorted({"id", *([t.identifier] if t.identifier else []), *(["project"] if t.has_project else [])})
            records = []
            for retired in (False, True):
                for page in self.remote.pages(name, fields, [["id", "in", ids]], retired=retired,
                                              page_size=self.page_size):
                    records += [slim.record(e, t, active=not retired) for e in page]
            with self.engine.begin() as conn:
                slim.upsert(conn, st.slim, records, event_id=as_of)
