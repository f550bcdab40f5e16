"""Running event plugins' callbacks on the events the watcher applied, each callback with its own
cursor in the cache database (see sgcache.store.triggerstate and docs/triggers.rst).

A callback is handed the events the watcher has applied, in event-id order, each once: the
cache already holds the event's change when the callback runs. After the callback returns, its
cursor moves in one transaction that records the success. A crash after the callback returned
and before that commit runs it again on the same event at the next start: for side effects on
the site the guarantee is at least once, with the event's id to make callbacks idempotent.

The watcher may apply an event late (its id was a gap, filled later). Events above the lowest
open gap are handled as they come and remembered one by one; the cursor passes them once the
gap is filled or given up (``watcher.gap_timeout``). So a late event reaches a callback after
later ones, at most ``gap_timeout`` seconds after its neighbours.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from sgcache.config import TriggersConfig
from sgcache.store.tables import Tables
from sgcache.sync import cursor as cursors
from sgcache.sync.events import entry_from_json
from sgcache.triggers.plugins import Callback, Plugin

log = logging.getLogger(__name__)

#: Events read per callback per look.
BATCH = 200
#: The longest wait between two tries of a failing callback.
MAX_RETRY_DELAY = 60.0


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Runner:
    """Hands applied events to every loaded callback; :meth:`run_once` does one round."""

    def __init__(self, engine: sa.Engine, tables: Tables, plugins: list[Plugin], config: TriggersConfig,
                 proxy_url: str, *, connect: Callable[..., Any] | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.engine = engine
        self.tables = tables
        self.plugins = plugins
        self.callbacks: list[Callback] = [c for p in plugins for c in p.callbacks]
        self.config = config
        self.proxy_url = proxy_url
        self._connect = connect
        self._connections: dict[str, Any] = {}
        self._clock = clock
        self._sleep = sleep
        self._next_try: dict[str, float] = {}
        self.handled = 0  # callbacks run successfully by this process (tests and status)

    # --- the callbacks' connections ----------------------------------------------------------------

    def connection(self, callback: Callback) -> Any:
        """The callback's ``sg``: shotgun_api3 through sgcache, with the callback's own credentials."""
        found = self._connections.get(callback.key)
        if found is None:
            if self._connect is None:
                import shotgun_api3

                found = shotgun_api3.Shotgun(self.proxy_url, script_name=callback.script_name,
                                             api_key=callback.script_key, connect=False)
            else:
                found = self._connect(self.proxy_url, callback.script_name, callback.script_key)
            self._connections[callback.key] = found
        return found

    # --- cursors -----------------------------------------------------------------------------------

    def start(self) -> None:
        """A callback seen for the first time starts after the newest event applied: a new plugin
        does not replay the past."""
        st = self.tables.state
        with self.engine.begin() as conn:
            known = set(conn.execute(sa.select(st.trigger_cursors.c.callback)).scalars())
            newest = conn.execute(sa.select(sa.func.max(st.applied.c.event_id))).scalar() or 0
            for callback in self.callbacks:
                if callback.key not in known:
                    conn.execute(sa.insert(st.trigger_cursors).values(callback=callback.key, watermark=newest,
                                                                      started_at=_now()))
                    log.info("event=trigger_cursor_started callback=%s after_id=%d", callback.key, newest)

    def _settled(self, conn: sa.Connection) -> int:
        """The highest event id below which the watcher has settled every id (applied or given up)."""
        cursor = cursors.load(conn, self.tables.state)
        if cursor is None:
            return 0
        return min([cursor.max_applied_id, *[gap - 1 for gap in cursor.gaps]])

    # --- one round ---------------------------------------------------------------------------------

    def run_once(self) -> int:
        """Hand every callback the events waiting for it; return how many callbacks ran well."""
        ran = 0
        for callback in self.callbacks:
            if self._clock() < self._next_try.get(callback.key, 0.0):
                continue
            ran += self._run_callback(callback)
        return ran

    #: Seconds between two looks at the newest applied event while idle.
    LOOK = 0.02

    def run(self, stop: threading.Event) -> None:
        """Hand out events until ``stop``: a round whenever the watcher has applied a new event
        (looked at every LOOK seconds, one small query), and every ``poll_interval`` seconds
        anyway (retries, gaps closing)."""
        self.start()
        applied = self.tables.state.applied
        seen, last_round, more = None, 0.0, True
        while not stop.is_set():
            try:
                with self.engine.connect() as conn:
                    newest = conn.execute(sa.select(sa.func.max(applied.c.event_id))).scalar()
                if more or newest != seen or self._clock() - last_round >= self.config.poll_interval:
                    seen, last_round = newest, self._clock()
                    more = self.run_once() > 0  # a full batch may have left more: another round at once
                    if more:
                        continue
            except sa.exc.DBAPIError as e:
                # The database is away: nothing is lost (each cursor moves with its success); wait.
                log.warning("event=triggers_database_unavailable error=%r", str(getattr(e, "orig", e))[:200])
                more = True
                stop.wait(self.config.poll_interval)
                continue
            stop.wait(self.LOOK)

    def _run_callback(self, callback: Callback) -> int:
        st = self.tables.state
        c, done, dead, applied = st.trigger_cursors, st.trigger_done, st.trigger_dead, st.applied
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(c).where(c.c.callback == callback.key)).mappings().first()
            if row is None or row["stopped_at"] is not None:
                return 0
            settled = self._settled(conn)
            skip = sa.union(sa.select(done.c.event_id).where(done.c.callback == callback.key),
                            sa.select(dead.c.event_id).where(dead.c.callback == callback.key))
            waiting = conn.execute(sa.select(applied.c.event_id, applied.c.event)
                                   .where(applied.c.event_id > row["watermark"], applied.c.event_id.not_in(skip))
                                   .order_by(applied.c.event_id).limit(BATCH)).all()
        watermark, failures, ran = row["watermark"], row["failures"], 0
        written = watermark
        for event_id, kept in waiting:
            if kept is None:
                # Applied by a watcher that kept no entries (triggers.paths unset in its settings).
                log.warning("event=trigger_entry_missing callback=%s event_id=%d (set triggers.paths for the "
                            "watcher too)", callback.key, event_id)
            event = entry_from_json(kept) if kept else None
            if event is None or not callback.matches(event):
                if event_id <= settled:
                    watermark = event_id  # nothing to do for it: the cursor passes it
                continue
            error = self._call(callback, event)
            if error is not None:
                self._save_watermark(callback, watermark, written)
                failures += 1
                self._failed(callback, event_id, error, failures)
                break
            ran += 1
            failures = 0
            # The success and the cursor move, in one transaction. Above a gap the watcher still
            # waits on, the event is remembered until the cursor can pass it.
            with self.engine.begin() as conn:
                if event_id <= settled:
                    watermark = event_id
                    conn.execute(sa.delete(done).where(done.c.callback == callback.key, done.c.event_id <= watermark))
                else:
                    conn.execute(sa.insert(done).values(callback=callback.key, event_id=event_id, done_at=_now()))
                conn.execute(sa.update(c).where(c.c.callback == callback.key).values(
                    watermark=watermark, failures=0, last_error=None, last_event_id=event_id,
                    last_success_at=_now()))
                written = watermark
        else:
            self._save_watermark(callback, watermark, written)
            self._catch_up(callback, settled)
        self.handled += ran
        return ran

    def _save_watermark(self, callback: Callback, watermark: int, written: int) -> None:
        if watermark > written:
            st = self.tables.state
            with self.engine.begin() as conn:
                conn.execute(sa.update(st.trigger_cursors).where(st.trigger_cursors.c.callback == callback.key)
                             .values(watermark=watermark))
                conn.execute(sa.delete(st.trigger_done).where(st.trigger_done.c.callback == callback.key,
                                                              st.trigger_done.c.event_id <= watermark))

    def _catch_up(self, callback: Callback, settled: int) -> None:
        """Move the cursor over what is settled and handled: ids the watcher gave up on, and
        events handled above a gap that has since closed."""
        st = self.tables.state
        c, done, dead, applied = st.trigger_cursors, st.trigger_done, st.trigger_dead, st.applied
        with self.engine.begin() as conn:
            watermark = conn.execute(sa.select(c.c.watermark).where(c.c.callback == callback.key)).scalar()
            if watermark is None or watermark >= settled:
                return
            handled = sa.union(sa.select(done.c.event_id).where(done.c.callback == callback.key),
                               sa.select(dead.c.event_id).where(dead.c.callback == callback.key))
            pending = conn.execute(sa.select(sa.func.min(applied.c.event_id))
                                   .where(applied.c.event_id > watermark, applied.c.event_id <= settled,
                                          applied.c.event_id.not_in(handled))).scalar()
            moved = settled if pending is None else pending - 1
            if moved > watermark:
                conn.execute(sa.update(c).where(c.c.callback == callback.key).values(watermark=moved))
                conn.execute(sa.delete(done).where(done.c.callback == callback.key, done.c.event_id <= moved))

    def _call(self, callback: Callback, event: dict) -> str | None:
        """Run the callback; the error, if it raised."""
        try:
            callback.function(self.connection(callback), callback.logger, event, callback.args)
        except Exception as e:
            callback.logger.exception("event=callback_failed callback=%s event_id=%s", callback.key, event.get("id"))
            return f"{type(e).__name__}: {e}"
        return None

    def _failed(self, callback: Callback, event_id: int, error: str, failures: int) -> None:
        """Record a failure: try again later, or, after ``max_attempts``, stop the callback
        (stopOnError) or put the event in its dead letters and go on."""
        st = self.tables.state
        c = st.trigger_cursors
        with self.engine.begin() as conn:
            values: dict[str, Any] = {"failures": failures, "last_error": error}
            if failures >= self.config.max_attempts:
                if callback.stop_on_error:
                    values["stopped_at"] = _now()
                    log.error("event=callback_stopped callback=%s event_id=%d attempts=%d error=%r", callback.key,
                              event_id, failures, error)
                else:
                    conn.execute(sa.insert(st.trigger_dead).values(callback=callback.key, event_id=event_id,
                                                                   error=error, attempts=failures,
                                                                   failed_at=_now()))
                    values.update(failures=0)
                    log.error("event=callback_dead_letter callback=%s event_id=%d attempts=%d error=%r",
                              callback.key, event_id, failures, error)
            conn.execute(sa.update(c).where(c.c.callback == callback.key).values(**values))
        delay = min(self.config.retry_delay * 2 ** (failures - 1), MAX_RETRY_DELAY)
        self._next_try[callback.key] = self._clock() + delay

    def retry_dead(self, keys: list[str]) -> tuple[int, int]:
        """Hand each unresolved dead letter of the callbacks ``keys`` to its callback once more;
        (handled, failed again). A handled one is marked resolved."""
        st = self.tables.state
        dead, applied = st.trigger_dead, st.applied
        by_key = {c.key: c for c in self.callbacks}
        handled = failed = 0
        with self.engine.connect() as conn:
            letters = conn.execute(sa.select(dead.c.callback, dead.c.event_id, applied.c.event)
                                   .join(applied, applied.c.event_id == dead.c.event_id)
                                   .where(dead.c.callback.in_(keys), dead.c.resolved_at.is_(None))
                                   .order_by(dead.c.callback, dead.c.event_id)).all()
        for key, event_id, kept in letters:
            callback = by_key.get(key)
            if callback is None or not kept:
                failed += 1
                continue
            error = self._call(callback, entry_from_json(kept))
            with self.engine.begin() as conn:
                where = sa.and_(dead.c.callback == key, dead.c.event_id == event_id)
                if error is None:
                    conn.execute(sa.update(dead).where(where).values(resolved_at=_now()))
                    handled += 1
                else:
                    conn.execute(sa.update(dead).where(where).values(error=error, attempts=dead.c.attempts + 1,
                                                                     failed_at=_now()))
                    failed += 1
        return handled, failed
