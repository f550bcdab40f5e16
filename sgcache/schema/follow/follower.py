"""Making the cache's schema the site's, as ``schema.rules`` selects it.

:class:`Follower` reads the site's schema (``schema_read`` and ``schema_entity_read``, as
sgcache's script), keeps what the rules select, and compares it with the schema in use. When
they differ it holds the schema lock exclusive (every sync process has let go: see
:mod:`sgcache.schema.follow.lock`), migrates the cache to the new schema, records it (see
:mod:`sgcache.schema.follow.record`) and logs each change, one line each. It imports nothing:
new types are not imported yet, and the migration marks new and retyped fields for a backfill,
so reads of them pass through until the scanner's full import of their types
(``full_where_needed``) fills them.

:class:`WatcherFollow` is the watcher's part: it notes the schema events the watcher applies,
and after the poll that saw them follows the site.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from sgcache import __version__
from sgcache.config import Config
from sgcache.errors import ConfigError, SgcacheError
from sgcache.schema.follow import record
from sgcache.schema.follow.held import HeldSchema
from sgcache.schema.follow.lock import SchemaLock
from sgcache.schema.follow.plan import Change, keep_identifiers, plan
from sgcache.schema.model import Schema
from sgcache.schema.rules import filter_schema, load_rules
from sgcache.schema.site import schema_from_site
from sgcache.store.migrate import MigrationReport, migrate
from sgcache.store.tables import Tables
from sgcache.sync.remote import Remote, SiteError, Stopped

log = logging.getLogger(__name__)


class FollowDeferred(SgcacheError):
    """Other sgcache processes kept the schema lock longer than the follower waits: nothing was
    changed; the follower tries again later."""


@dataclass
class FollowResult:
    """What a comparison found and, unless it was a dry run, what was done."""

    #: the schema in use before
    in_use: record.InUse
    #: the site's schema as the rules select it
    wanted: Schema
    changes: list[Change]
    #: the migration made (None: none was made)
    migration: MigrationReport | None = None
    #: the digest of the schema recorded (None: none was recorded)
    digest: str | None = None
    #: types the changes left awaiting the scanner's full import (new types, new or retyped fields)
    to_import: list[str] = field(default_factory=list)


def require_rules(config: Config) -> None:
    """One line naming the setting when following the site is asked for without rules."""
    if record.rules_path(config) is None:
        where = str(config.source) if config.source else "the configuration"
        raise ConfigError(f"{where}: schema.rules is required to follow the site's schema (a rules file as for "
                          "`sgcache schema filter --rules`; see docs/schema.rst)")


class Follower:
    """Compares the site's schema (as the rules select it) with the schema in use, and makes the
    cache follow it."""

    #: Longest wait, in seconds, for every sync process to let go of the schema.
    LOCK_WAIT = 60.0
    RETRY_SECONDS = 0.2

    def __init__(self, engine: sa.Engine, config: Config, remote: Remote, *, stop: threading.Event | None = None,
                 clock: Callable[[], float] = time.monotonic):
        require_rules(config)
        self.engine = engine
        self.config = config
        self.remote = remote
        self.stop = stop
        self.clock = clock

    def site_schema(self) -> Schema:
        """The site's whole schema, asked as sgcache's script (with the sync engine's retries)."""
        fields = self.remote.schema_read()
        entities: Any = self.remote.call("schema_entity_read", lambda: self.remote.sg.schema_entity_read())
        return schema_from_site(fields, entities)

    def wanted(self, in_use: Schema) -> Schema:
        """The site's schema as ``schema.rules`` selects it (the rules are read again each time);
        types already in use keep their identifiers."""
        rules_file = record.rules_path(self.config)
        assert rules_file is not None  # checked when made
        header = (f"Followed from {self.config.site.base_url} through {rules_file.name} by sgcache {__version__} "
                  f"on {dt.datetime.now(dt.UTC):%Y-%m-%d} (schema.follow: follow).")
        wanted = filter_schema(self.site_schema(), load_rules(rules_file), header=header)
        keep_identifiers(in_use, wanted)
        return wanted

    def compare(self) -> FollowResult:
        """What following the site would change now (nothing is changed)."""
        with self.engine.connect() as conn:
            in_use = record.schema_in_use(self.config, conn)
        wanted = self.wanted(in_use.schema)
        return FollowResult(in_use, wanted, plan(in_use.schema, wanted))

    def follow(self, held: HeldSchema | None = None) -> FollowResult:
        """Compare, and when the schemas differ migrate and record the new one. ``held``: this
        process's own hold on the schema, let go for the change and taken again after it."""
        result = self.compare()
        if not result.changes:
            log.debug("event=schema_unchanged types=%d", len(result.wanted))
            return result
        return self._change(result.wanted, held)

    # --- the change, under the lock -------------------------------------------------------------

    def _change(self, wanted: Schema, held: HeldSchema | None) -> FollowResult:
        me = record.who_am_i()
        with self.engine.begin() as conn:
            record.mark_pending(conn, me)  # sync processes let go of the schema when they see it
        if held is not None:
            held.release()
        lock = SchemaLock(self.engine)
        try:
            self._wait_for(lock)
            try:
                # Another follower may have changed it meanwhile: compare with what is in use now.
                with self.engine.connect() as conn:
                    in_use = record.schema_in_use(self.config, conn)
                result = FollowResult(in_use, wanted, plan(in_use.schema, wanted))
                if result.changes:
                    result.migration = migrate(self.engine, Tables(wanted))
                    with self.engine.begin() as conn:
                        result.digest = record.record(conn, wanted)
                    result.to_import = self._to_import(result)
                    self._log(result)
            finally:
                lock.release()
        finally:
            with self.engine.begin() as conn:
                record.clear_pending(conn, me)
            if held is not None:
                held.acquire(self.stop)
        return result

    def _wait_for(self, lock: SchemaLock) -> None:
        deadline = self.clock() + self.LOCK_WAIT
        waited = False
        while not lock.try_acquire(exclusive=True):
            if self.clock() >= deadline:
                raise FollowDeferred(f"other sgcache processes still hold the schema after {self.LOCK_WAIT:.0f} s "
                                     "(an import page or an event under way); nothing was changed")
            if not waited:
                log.info("event=schema_follow_waiting reason='sync processes are letting go of the schema'")
                waited = True
            if self.stop is not None:
                if self.stop.wait(self.RETRY_SECONDS):
                    raise Stopped("schema follow: stopping")
            else:
                time.sleep(self.RETRY_SECONDS)

    @staticmethod
    def _to_import(result: FollowResult) -> list[str]:
        """The types whose new or retyped storage awaits a full import (of those the changes touched)."""
        assert result.migration is not None
        touched = {c.entity_type for c in result.changes if c.kind in ("new_type", "new_field", "data_type")}
        return sorted(touched & {type_name for type_name, _, _ in result.migration.backfill})

    @staticmethod
    def _log(result: FollowResult) -> None:
        for change in result.changes:
            log.info("event=schema_followed %s", change.log_fields())
        assert result.migration is not None
        log.info("event=schema_follow_done changes=%d migration_actions=%d fields_to_fill=%d types_to_import=%s "
                 "digest=%s", len(result.changes), len(result.migration.actions), len(result.migration.backfill),
                 ",".join(result.to_import) or "-", result.digest)


class WatcherFollow:
    """The watcher's part in following the site: :meth:`note` is its ``on_schema_change`` (called
    while an event is applied, inside its transaction: nothing is done there), and
    :meth:`after_poll` follows the site after the poll, then hands the watcher the new tables.
    It also takes up a schema another process recorded (``sgcache schema sync``)."""

    #: Seconds before a follow that failed (site down, lock not had, bad rules) is tried again.
    RETRY_SECONDS = 60.0

    def __init__(self, held: HeldSchema, follower: Follower, *, clock: Callable[[], float] = time.monotonic):
        self.held = held
        self.follower = follower
        self.clock = clock
        # Compared once at the start too: a change seen just before a crash, or while following
        # was off, is not lost.
        self.noted: set[tuple[str, str]] = {("(start)", "")}
        self.retry_at = 0.0

    def note(self, entity_type: str | None, field_name: str | None) -> None:
        self.noted.add((str(entity_type), str(field_name or "")))

    def after_poll(self, watcher: Any) -> None:
        """Between two polls: follow what was noted, or take up a schema recorded elsewhere.
        ``watcher``: anything with ``tables``, ``stop`` and ``use_tables(tables)``."""
        if self.noted and self.clock() >= self.retry_at:
            noted = ",".join(sorted(f"{t}.{f}" if f else t for t, f in self.noted))
            try:
                result = self.follower.follow(self.held)
                self.noted.clear()
                if not result.changes:
                    log.debug("event=schema_follow_nothing_to_do noted=%s", noted)
            except Stopped:
                raise
            except Exception as e:  # the watcher goes on with the schema it has; reads stay safe
                self.retry_at = self.clock() + self.RETRY_SECONDS
                reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
                # Waiting on other processes, or on the site, is ordinary; anything else needs an operator.
                level = logging.WARNING if isinstance(e, (FollowDeferred, SiteError)) else logging.ERROR
                log.log(level, "event=schema_follow_failed noted=%s error=%r retry_in_s=%.0f", noted, reason,
                        self.RETRY_SECONDS)
        elif self.held.stale():
            self.held.release()
            self.held.acquire(watcher.stop)
        if self.held.tables is not None and self.held.tables is not watcher.tables:
            watcher.use_tables(self.held.tables)
