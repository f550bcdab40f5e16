"""What every scan shares: the cached project set's rule, each type's scan state, and writes
stamped as of the watcher's cursor.

With a project set, project-scoped types hold only the rows of those projects: an entity the
site shows outside them (moved out, or with no project) is dropped from the cache, as the
watcher does, never imported. Types without a ``project`` field are cached whole.

Rows are written "as of" the watcher's cursor when the scan began, so a value the watcher
applied from a newer event is not overwritten by an older page; the rows so refused are noted
for reading again (:mod:`sgcache.sync.reread`).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass, field

import sqlalchemy as sa

from sgcache import wire
from sgcache.config import ScannerConfig
from sgcache.store import state
from sgcache.store.tables import EntityTable, Tables
from sgcache.store.writer import CHUNK, OTHER_SIDES_CHANGED, Writer
from sgcache.sync import cursor as cursors
from sgcache.sync.refresh import Refresher
from sgcache.sync.remote import Remote

#: The scanner's log: one logger for everything the scanner does, whichever module does it.
log = logging.getLogger("sgcache.sync.scanner")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def aware(value) -> dt.datetime | None:
    """A site's or a row's time as an aware datetime (naive ones and the site's strings are UTC)."""
    if value is None:
        return None
    if isinstance(value, str):
        parsed = wire.parse_datetime(value)
        if parsed is None:
            raise ValueError(f"{value!r} is not a YYYY-MM-DDTHH:MM:SSZ date and time")
        return parsed
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


@dataclass
class Tally:
    """What the pages of one listing held: entities written, newest ``updated_at``, highest id."""

    count: int = 0
    newest: dt.datetime | None = None
    highest: int = 0

    def add(self, page: list[dict], seen: set[int] | None = None) -> None:
        """Note a page's ids (in ``seen`` too, when given) and update times."""
        if page:
            self.highest = max(self.highest, max(e["id"] for e in page))
        for entity in page:
            if seen is not None:
                seen.add(entity["id"])
            updated = aware(entity.get("updated_at"))
            if updated is not None and (self.newest is None or updated > self.newest):
                self.newest = updated


@dataclass
class TypeReport:
    entity_type: str
    written: int = 0
    retired_missing: int = 0
    seconds: float = 0.0
    skipped: str | None = None


@dataclass
class ScanReport:
    kind: str
    types: list[TypeReport] = field(default_factory=list)
    other_sides: int = 0  # queued entities taken by the drain that ended the scan

    @property
    def written(self) -> int:
        return sum(t.written for t in self.types)


class ScanBase:
    """The state and the writes of a scan; :class:`~sgcache.sync.scanner.Scanner` builds on it."""

    def __init__(self, engine: sa.Engine, tables: Tables, remote: Remote, config: ScannerConfig, *,
                 progress: bool | None = None, stop: threading.Event | None = None):
        self.engine = engine
        # Set (SIGTERM, Ctrl-C): Stopped between two pages; an unfinished import stays unfinished
        # (its type is not marked complete) and is done again at the next start.
        self.stop = stop
        if stop is not None:
            remote.stop = stop  # and between two tries of the site
        self.tables = tables
        self.remote = remote
        self.config = config
        self.writer = Writer(engine, tables)
        self.refresher = Refresher(engine, tables, None, remote=remote, page_size=config.page_size)
        self.progress = progress
        # type -> ids whose write a newer event stamp refused (see _write, _settle_refused)
        self._refused: dict[str, set[int]] = {}

    # --- helpers -------------------------------------------------------------------------------

    def cached_types(self, names: list[str] | None = None) -> list[EntityTable]:
        wanted = names or self.config.types or [et.name for et in self.tables]
        out = []
        for name in wanted:
            et = self.tables[name]  # UnknownEntityType for a type not in the schema file
            out.append(et)
        return out

    def fetch_threads(self) -> int:
        """Connections to the site a full import uses at once (scanner.concurrency): one when the
        requests are rate limited (validate's --rate) or the Remote is a client handed in."""
        if self.remote.rate_limit is not None or self.remote.given_client:
            return 1
        return max(1, self.config.concurrency)

    @staticmethod
    def fields_of(et: EntityTable) -> list[str]:
        return et.cached_fields()

    @staticmethod
    def _scoped(et: EntityTable, projects: list[int]) -> bool:
        """Does the project set limit this type's rows? (Types without a project field: never.)"""
        return bool(projects) and "project" in et.fields

    def project_filter(self, et: EntityTable, projects: list[int]) -> list:
        """Limit a project-scoped type to the cached projects; other types are imported whole."""
        if not self._scoped(et, projects):
            return []
        return [["project", "in", [{"type": "Project", "id": p} for p in projects]]]

    def _outside(self, et: EntityTable, entity: dict, projects: list[int]) -> bool:
        """Is this entity, as the site returned it, outside the cached projects? One with no
        project is outside every project set (the site's ``project in`` filter leaves it out)."""
        if not self._scoped(et, projects):
            return False
        project = entity.get("project")
        return not (isinstance(project, dict) and project.get("id") in projects)

    def _held(self, et: EntityTable, ids: list[int], *, active: bool | None = None) -> set[int]:
        """Of ``ids``, those the cache holds (only active or only retired rows, if asked)."""
        t = et.table
        out: set[int] = set()
        with self.engine.connect() as conn:
            for start in range(0, len(ids), CHUNK):
                stmt = sa.select(t.c.id).where(t.c.id.in_(ids[start:start + CHUNK]))
                if active is not None:
                    stmt = stmt.where(t.c._active.is_(active))
                out.update(conn.execute(stmt).scalars())
        return out

    def _type_state(self, conn: sa.Connection, type_name: str) -> dict | None:
        t = self.tables.state.types
        row = conn.execute(sa.select(t).where(t.c.entity_type == type_name)).mappings().first()
        return dict(row) if row else None

    def _save_type_state(self, conn: sa.Connection, type_name: str, **values) -> None:
        t = self.tables.state.types
        if self._type_state(conn, type_name) is None:
            conn.execute(sa.insert(t).values(entity_type=type_name, **values))
        else:
            conn.execute(sa.update(t).where(t.c.entity_type == type_name).values(**values))

    def _as_of(self) -> int | None:
        """The event stamp of the rows this scan writes: the newest event the site has logged
        before the scan reads anything. What the scan reads is at least as new as every such
        event, applied or not yet: the watcher must not write one over it later (an event
        still in flight then finds a newer row and reads the entity from the site instead).
        None while no watcher has started (no event will be applied over the rows)."""
        with self.engine.connect() as conn:
            cursor = cursors.load(conn, self.tables.state)
        if cursor is None:
            return None
        return max(cursor.max_applied_id, self.remote.newest_event_id())

    def recorded_projects(self) -> list[int] | None:
        """The cached project set ([] for all projects), or None before any import."""
        with self.engine.connect() as conn:
            return state.read_projects(conn, self.tables.state)

    def _write(self, et: EntityTable, entities: list[dict], outside: list[int], *, active: bool,
               as_of: int | None, other_sides: str = OTHER_SIDES_CHANGED) -> int:
        """Upsert ``entities`` and drop the rows of ``outside`` (ids of entities outside the cached
        projects), in one transaction; return the rows upserted. ``other_sides``: see Writer.upsert
        (a dropped row's links are queued whatever it says).

        A row the watcher wrote from an event newer than ``as_of`` is kept: it knows better than
        this older read, as the upsert's guard does for values."""
        if not entities and not outside:
            return 0
        written = 0
        t = et.table
        with self.engine.begin() as conn:
            if outside:
                stmt = sa.select(t.c.id).where(t.c.id.in_(outside))
                if as_of is not None:
                    stmt = stmt.where(sa.or_(t.c._last_event_id.is_(None), t.c._last_event_id <= as_of))
                dropped = list(conn.execute(stmt).scalars())
                if dropped:
                    self.writer.forget(et.name, dropped, conn=conn)
                    log.info("event=dropped_outside_projects entity_type=%s count=%d ids=%s", et.name,
                             len(dropped), dropped[:20])
            if entities:
                written = self.writer.upsert(et.name, entities, active=active, event_id=as_of, conn=conn,
                                             other_sides=other_sides)
                if as_of is not None and written < len(entities):
                    refused = conn.execute(sa.select(t.c.id).where(t.c.id.in_([e["id"] for e in entities]))
                                           .where(t.c._last_event_id > as_of)).scalars()
                    self._refused.setdefault(et.name, set()).update(refused)
        return written

    def drain_other_sides(self) -> int:
        """Read again the entities queued because writes changed links to them (any process's
        writes: this scan's, the watcher's, the proxy's); return how many were taken."""
        taken = drained = self.refresher.drain()
        while drained == self.refresher.DRAIN_LIMIT and taken < 10 * self.refresher.DRAIN_LIMIT:
            drained = self.refresher.drain()  # more were queued than one call takes
            taken += drained
        return taken  # what is queued still (faster than read, or refused) waits for the next pass
