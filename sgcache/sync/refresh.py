"""Read given entities again from the site and write them to the cache: the proxy's write results.

After the site confirms a write, the proxy names the entities it touched; this reads each of
them in full (every cached field, active or retired, as sgcache's own script) and writes them
through the one writer, then does the same for entities on the other side of links the write
changed (the reverse field of a link, the Tasks a template made). Rows are stamped with the
newest event id seen before the read, so the watcher never puts an older value back.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping

import sqlalchemy as sa

from sgcache.config import SiteConfig
from sgcache.store.tables import Tables
from sgcache.store.writer import Writer
from sgcache.sync import links
from sgcache.sync.remote import Remote

log = logging.getLogger(__name__)

Targets = Mapping[str, set[int]]


class Refresher:
    """Re-reads entities from the site into the cache; safe to share between threads."""

    #: Levels of other sides followed after the written entities themselves.
    FOLLOW_LEVELS = 3

    def __init__(self, engine: sa.Engine, tables: Tables, site: SiteConfig, *, page_size: int = 500,
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
        meta = self.tables.state.meta
        with self.engine.connect() as conn:
            raw = conn.execute(sa.select(meta.c.value).where(meta.c.key == "projects")).scalar()
        value = json.loads(raw) if raw else None
        return set(value) if isinstance(value, list) and value else None

    def refresh(self, targets: Targets, as_of: int | None) -> int:
        """Re-read ``targets`` (type -> ids) and the other side of the links they changed, and
        in turn the other sides of those (up to FOLLOW_LEVELS: a link written without an event
        earlier may have left them stale); return how many rows were written. Types the cache
        does not hold are skipped."""
        projects = self._projects()
        done: set[tuple[str, int]] = set()
        written = 0
        level: dict[str, set[int]] = {t: set(ids) for t, ids in targets.items() if t in self.tables and ids}
        for _ in range(1 + self.FOLLOW_LEVELS):
            follow: set[tuple[str, int]] = set()
            for entity_type, ids in sorted(level.items()):
                count, changed = self._refresh_type(entity_type, sorted(ids), as_of, projects)
                written += count
                follow |= changed
                done.update((entity_type, i) for i in ids)
            level = {}
            for entity_type, entity_id in follow - done:
                level.setdefault(entity_type, set()).add(entity_id)
            if not level:
                break
        return written

    def _may_link_back(self, target_type: str, source_type: str) -> bool:
        """Can a cached field of ``target_type`` link to ``source_type`` (a reverse field)? If not,
        linking or unlinking a ``target_type`` entity leaves its cached row as it was."""
        for name in links.link_fields(self.tables, target_type):
            allowed = self.tables[target_type].fields[name].field.entity_types
            if not allowed or source_type in allowed:
                return True
        return False

    def _refresh_type(self, entity_type: str, ids: list[int], as_of: int | None,
                      projects: set[int] | None) -> tuple[int, set[tuple[str, int]]]:
        et = self.tables[entity_type]
        with self.engine.connect() as conn:
            before = links.cached_links(conn, self.tables, entity_type, ids)
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
            written += self._refresh_type(other_type, sorted(other_ids), as_of, projects)[0]
        with self.engine.begin() as conn:
            if outside:
                # Outside the cached projects (or moved out of them): the cache does not hold it.
                self.writer.forget(entity_type, outside, conn=conn)
            for active in (True, False):
                entities = [e for e, a in keep.values() if a is active]
                if entities:
                    written += self.writer.upsert(entity_type, entities, active=active, event_id=as_of, conn=conn)
        changed = {t for t in links.changed_targets(before, [e for e, _ in keep.values()], self.tables, entity_type)
                   if self._may_link_back(t[0], entity_type)}
        log.debug("event=refresh entity_type=%s ids=%d found=%d written=%d", entity_type, len(ids), len(found),
                  written)
        return written, changed
