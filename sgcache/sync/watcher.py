"""The event-log watcher: applies every relevant EventLogEntry to the cache, never losing one.

Each event is applied in one transaction together with the cursor move and a row in the
applied-events ledger, so after a crash at any point the watcher resumes with nothing lost and
nothing applied twice. Missing ids (late commits) are kept as gaps and awaited for
``watcher.gap_timeout`` seconds. A failing event is retried with backoff and then recorded in
the dead-letter table; the site being unreachable only pauses the watcher.

This module is the poll loop with its cursor, gaps and lag samples; what one event changes is
:mod:`sgcache.sync.apply` (reading it: :mod:`sgcache.sync.events`), the dead letters
:mod:`sgcache.sync.deadletter`.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time

import sqlalchemy as sa

from sgcache.config import WatcherConfig
from sgcache.store import samples, state
from sgcache.store.tables import Tables
from sgcache.store.writer import Writer
from sgcache.sync import cursor as cursors
from sgcache.sync.answers import MAX_SITE_ROUNDS, NeedSite, Prefetched, SiteAnswers, in_rounds
from sgcache.sync.deadletter import DATABASE_TROUBLE, DeadLetters, dead_letters
from sgcache.sync.events import AUTH_TYPES, LIFECYCLE, Parsed, aware, entry_json, parse
from sgcache.sync.refresh import Refresher
from sgcache.sync.remote import Remote, SiteError, Stopped, wait

log = logging.getLogger(__name__)

#: Names this module has always offered, now defined where their job is.
__all__ = ["AUTH_TYPES", "DATABASE_TROUBLE", "LIFECYCLE", "MAX_SITE_ROUNDS", "NeedSite", "Parsed", "SiteAnswers",
           "Watcher", "dead_letters", "parse"]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Watcher(DeadLetters):
    """Polls the site's event log and applies what is new, in id order, moving its cursor."""

    def __init__(self, engine: sa.Engine, tables: Tables, remote: Remote, config: WatcherConfig, *,
                 on_schema_change=None, schema_follow=None):
        # schema_follow (schema.follow: follow, see sgcache.schema.follow): notes the schema events
        # and, after the poll that saw them, changes the schema and hands over the new tables.
        if schema_follow is not None and on_schema_change is None:
            on_schema_change = schema_follow.note
        super().__init__(engine, tables, remote, config, on_schema_change=on_schema_change)
        self.schema_follow = schema_follow
        # Reads the other sides of links the events' writes queued, after each poll.
        self.refresher = Refresher(engine, tables, None, remote=remote)
        self.applied = 0  # events applied by this process (tests and status)
        self.stop: threading.Event | None = None  # set by run(): pauses between tries end at once
        self._sampled_at: float | None = None  # monotonic time of the last lag sample
        self._watched_at: dt.datetime | None = None  # when history_until was last recorded
        #: keep each applied entry's JSON in the ledger, for event plugins (triggers.paths)
        self.keep_events = False
        #: the site's webhook posts to the proxy (site.webhook_secret): deliveries wake the watcher
        self.webhooks = False
        #: the site's answers about the entities of the batch being applied (see Prefetched)
        self.prefetched: Prefetched | None = None

    def use_tables(self, tables: Tables) -> None:
        """Go on with another schema's tables (a followed schema change), between two polls."""
        self.tables = tables
        self.writer = Writer(self.engine, tables)
        self.refresher = Refresher(self.engine, tables, None, remote=self.remote)

    # --- one event, with its cursor ------------------------------------------------------------------

    def _commit(self, event: dict | None, cursor: cursors.Cursor, dead: str | None = None,
                attempts: int = 0) -> str:
        """Apply ``event`` (if any) and save ``cursor``, in one transaction (made again, after
        asking the site with no transaction open, for as long as the event needs the site)."""
        prefetched = self.prefetched if dead is None else None
        outcome = in_rounds(self.engine, self.remote,
                            lambda conn, site: self._commit_in(conn, site, event, cursor, dead, attempts),
                            prefetched=prefetched)
        if prefetched is not None:
            prefetched.note_written(self.writer.stamps)
        return outcome

    def _commit_in(self, conn: sa.Connection, site: SiteAnswers, event: dict | None, cursor: cursors.Cursor,
                   dead: str | None, attempts: int) -> str:
        st = self.tables.state
        outcome = "cursor"
        self.writer.stamps = {} if self.prefetched is not None else None  # this round's, see Prefetched
        if event is not None:
            if conn.execute(sa.select(st.applied.c.event_id).where(st.applied.c.event_id == event["id"])).first():
                outcome = "already applied"
            elif dead is None:
                outcome = self.apply(conn, event, site)
                if site.pending:
                    raise NeedSite  # roll back: ask the site with no transaction open
            else:
                self._dead_letter(conn, event, dead, attempts)
                outcome = "dead letter"
            if outcome != "already applied":
                # With event plugins (sgcache.triggers), the entry itself, for their callbacks.
                kept = entry_json(event) if self.keep_events else None
                conn.execute(sa.insert(st.applied).values(event_id=event["id"], applied_at=_now(), event=kept))
        cursors.save(conn, st, cursor)
        return outcome

    def _handle(self, event: dict, cursor: cursors.Cursor) -> None:
        """Apply one event with retries; a site outage propagates (nothing is skipped)."""
        delay = 0.2
        for attempt in range(1, self.config.max_attempts + 1):
            try:
                outcome = self._commit(event, cursor)
                self.applied += outcome not in ("already applied",)
                log.debug("event=applied id=%s type=%s outcome=%s", event["id"], event.get("event_type"), outcome)
                return
            except (SiteError, *DATABASE_TROUBLE):
                raise  # nothing is wrong with the event: wait for the site or the database, skip nothing
            except Exception as e:
                error = f"{type(e).__name__}: {e}"
                if attempt == self.config.max_attempts:
                    log.error("event=dead_letter id=%s type=%s attempts=%d error=%r", event["id"],
                              event.get("event_type"), attempt, error)
                    self._commit(event, cursor, dead=error, attempts=attempt)
                    return
                log.warning("event=apply_retry id=%s attempt=%d error=%r", event["id"], attempt, error)
                # Asked to stop meanwhile (Stopped): the event is neither applied nor a dead
                # letter; the next start tries it again from the first attempt.
                wait(self.stop, delay, f"event {event['id']}")
                delay = min(delay * 2, 5.0)

    def start(self) -> cursors.Cursor:
        with self.engine.begin() as conn:
            return cursors.ensure(conn, self.tables.state, self.remote.newest_event_id, self.remote.event_ids_after)

    def poll_once(self) -> int:
        """Read and apply what is new (and any late ids that arrived); return events read."""
        with self.engine.connect() as conn:
            cursor = cursors.load(conn, self.tables.state)
        if cursor is None:
            cursor = self.start()
        # Late ids first: they are older than anything new.
        if cursor.gaps:
            for event in self.remote.events_by_id(sorted(cursor.gaps)):
                if event["id"] not in cursor.gaps:
                    continue
                following = cursor.copy()
                del following.gaps[event["id"]]
                self._handle(event, following)
                cursor = following
        asked = _now()
        events = self.remote.events_after(cursor.max_applied_id, self.config.batch_size)
        now = _now()
        # What the events will read from the site, asked in one find per type.
        self.prefetched = self.prefetch([e for e in events if not cursor.is_done(e["id"])])
        try:
            for event in events:
                if cursor.is_done(event["id"]):
                    continue
                following = cursor.copy()
                for missing in range(cursor.max_applied_id + 1, event["id"]):
                    following.gaps.setdefault(missing, now)
                following.max_applied_id = max(cursor.max_applied_id, event["id"])
                self._handle(event, following)
                cursor = following
        finally:
            self.prefetched = None
            self.writer.stamps = None
        self._expire_gaps(cursor)
        if len(events) < self.config.batch_size and not cursor.gaps:
            self._watched_until(asked)
        self._sample_lag(cursor, events)
        self.retry_dead_letters()
        self.refresher.drain()
        if self.schema_follow is not None:
            self.schema_follow.after_poll(self)
        return len(events)

    #: Seconds a change may take to show in the site's event log once made (commit lag): reads
    #: of the past are answered up to that much before the watcher's last complete poll.
    COMMIT_LAG = 2.0

    def _watched_until(self, asked: dt.datetime) -> None:
        """Every change up to ``asked`` (less COMMIT_LAG) is applied: record it, at most once a second."""
        if self._watched_at is not None and (asked - self._watched_at).total_seconds() < 1.0:
            return
        self._watched_at = asked
        until = asked - dt.timedelta(seconds=self.COMMIT_LAG)
        with self.engine.begin() as conn:
            state.set_meta(conn, self.tables.state, state.HISTORY_UNTIL, until.isoformat())

    #: Seconds between two event-lag samples (for status, metrics and the status page's chart).
    SAMPLE_SECONDS = 10.0

    def _sample_lag(self, cursor: cursors.Cursor, events: list[dict]) -> None:
        """Save how far behind the site the cache is, at most every SAMPLE_SECONDS."""
        now = time.monotonic()
        if self._sampled_at is not None and now - self._sampled_at < self.SAMPLE_SECONDS:
            return
        self._sampled_at = now
        last = events[-1] if events else None
        if last is not None and len(events) >= self.config.batch_size:
            # A full batch: more is waiting. Its oldest is about as old as the last one applied.
            newest = max(self.remote.newest_event_id(), cursor.max_applied_id)
            created = aware(last.get("created_at"))
            lag_seconds = max(0.0, (_now() - created).total_seconds()) if created else 0.0
        else:
            newest = max(cursor.max_applied_id, last["id"] if last else 0)
            lag_seconds = 0.0
        data = {"applied_id": cursor.max_applied_id, "site_newest_id": newest,
                "lag_events": max(0, newest - cursor.max_applied_id), "lag_seconds": round(lag_seconds, 3),
                "gaps": len(cursor.gaps)}
        try:
            with self.engine.begin() as conn:
                samples.save(conn, self.tables.state, "event_lag", data)
        except sa.exc.SQLAlchemyError as e:  # an older database without the table: status goes without
            log.debug("event=lag_sample_not_saved error=%r", str(e)[:200])

    def _expire_gaps(self, cursor: cursors.Cursor) -> None:
        limit = _now() - dt.timedelta(seconds=self.config.gap_timeout)
        expired = sorted(i for i, seen in cursor.gaps.items() if seen <= limit)
        if not expired:
            return
        following = cursor.copy()
        for event_id in expired:
            del following.gaps[event_id]
        # What the lost events changed was written before the gap was first seen, and maybe long
        # before: take every scan watermark back before it (less the wait again, for the
        # transaction's own length), so the next incremental scan reads it whatever it did since.
        back_to = min(cursor.gaps[i] for i in expired) - dt.timedelta(seconds=self.config.gap_timeout)
        types = self.tables.state.types
        with self.engine.begin() as conn:
            conn.execute(sa.update(types).where(types.c.watermark > back_to).values(watermark=back_to))
            cursors.save(conn, self.tables.state, following)
        log.warning("event=gave_up_on_event_ids ids=%s waited_s=%s scan_watermarks_back_to=%s", expired,
                    self.config.gap_timeout, back_to.isoformat())

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set: at once after a full batch, slower and slower when idle.
        Pauses between tries (of the site, of a failing event) end as soon as it is set."""
        self.stop = self.remote.stop = stop
        pause = self.config.min_poll_interval
        while not stop.is_set():
            try:
                read = self.poll_once()
            except Stopped:
                return  # asked to stop while waiting on the site: the event at hand is applied next time
            except SiteError as e:
                log.warning("event=site_unavailable error=%r retry_in_s=%.1f", str(e), self.config.poll_interval)
                stop.wait(self.config.poll_interval)
                continue
            except DATABASE_TROUBLE as e:
                log.warning("event=database_unavailable error=%r retry_in_s=%.1f",
                            str(getattr(e, "orig", e)).strip()[:200], self.config.poll_interval)
                stop.wait(self.config.poll_interval)
                continue
            if read >= self.config.batch_size:
                continue  # more is waiting: no sleep after a full batch
            pause = self.config.min_poll_interval if read else min(pause * 2, self.config.poll_interval)
            self._idle(stop, pause)

    #: Seconds between two looks at the webhook mark while idle.
    WAKE_CHECK = 0.02

    def _idle(self, stop: threading.Event, pause: float) -> None:
        """Wait ``pause`` seconds, or until a webhook delivery names an event not applied yet.
        While the site's webhook delivers, an idle watcher polls only every
        ``webhook_poll_interval`` seconds: deliveries wake it, polling catches what they miss."""
        if not self.webhooks:
            stop.wait(pause)
            return
        st = self.tables.state
        started = time.monotonic()
        try:
            with self.engine.connect() as conn:
                wake, last = state.webhook_marks(conn, st)
                applied = cursors.load(conn, st)
        except DATABASE_TROUBLE:
            stop.wait(pause)
            return
        applied_id = applied.max_applied_id if applied is not None else 0
        if wake > applied_id:
            return
        delivering = last is not None and (dt.datetime.now(dt.UTC) - last).total_seconds() <= self.config.webhook_quiet
        longest = max(pause, self.config.webhook_poll_interval) if delivering else pause
        while not stop.wait(self.WAKE_CHECK):
            if time.monotonic() - started >= longest:
                return
            try:
                with self.engine.connect() as conn:
                    wake, _ = state.webhook_marks(conn, st)
            except DATABASE_TROUBLE:
                continue
            if wake > applied_id:
                return

