"""Dead letters: events that kept failing, recorded, and tried again later until resolved.

An event that fails every try is recorded in the dead-letter table in the transaction that moves
the cursor past it, and its type turns suspect (reads pass through). :meth:`retry_dead_letters`
tries each again when its time comes, or reads its entity again; a type whose dead letter keeps
failing is marked for a full import.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

import sqlalchemy as sa

from sgcache.store.tables import Tables
from sgcache.sync.answers import NeedSite, SiteAnswers, in_rounds
from sgcache.sync.apply import EventApplier
from sgcache.sync.events import parse
from sgcache.sync.remote import SiteError

#: The watcher's log: one logger for everything the watcher does, whichever module does it.
log = logging.getLogger("sgcache.sync.watcher")

#: Errors that say the cache database cannot be used right now (down, restarting, locked, or
#: not migrated for this schema): the event is retried later, never dead-lettered for it.
DATABASE_TROUBLE = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DisconnectionError)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class DeadLetters(EventApplier):
    """Records the events that cannot be applied, and tries them again."""

    # --- recorded ------------------------------------------------------------------------------------

    def _dead_letter(self, conn: sa.Connection, event: dict, error: str, attempts: int) -> None:
        parsed = parse(event)
        meta = event.get("meta") if isinstance(event.get("meta"), dict) else {}
        entity_type, entity_id = meta.get("entity_type"), meta.get("entity_id")
        if parsed is not None and parsed.entity_id is not None:
            entity_type, entity_id = parsed.entity_type, parsed.entity_id
        conn.execute(sa.insert(self.tables.state.dead_letters).values(
            event_id=event["id"], event_type=event.get("event_type"),
            entity_type=entity_type if isinstance(entity_type, str) else None,
            entity_id=entity_id if isinstance(entity_id, int) else None,
            error=error, attempts=attempts, failed_at=_now(), event=json.dumps(event, default=str),
            next_retry_at=_now() + dt.timedelta(seconds=self.config.dead_letter_retry)))
        self._suspect(conn, event)

    def _suspect(self, conn: sa.Connection, event: dict) -> None:
        """A dead-lettered event left its entity as it was: reads of its type pass through (see
        ReadState.suspect) until a later try applies it or reads the entity again
        (retry_dead_letters), or a full import of the type completes."""
        parsed = parse(event)
        meta = event.get("meta") if isinstance(event.get("meta"), dict) else {}
        entity_type = parsed.entity_type if parsed is not None else meta.get("entity_type")
        if entity_type in self.tables:
            log.warning("event=type_suspect entity_type=%s event_id=%s retry_in_s=%.0f hint='reads of it pass "
                        "through until a retry applies the event or reads its entity again, or sgcache scan "
                        "--full --types %s'", entity_type, event.get("id"), self.config.dead_letter_retry,
                        entity_type)

    # --- tried again ---------------------------------------------------------------------------------

    #: Failed later tries of one dead letter after which its type is imported in full again.
    RESCAN_AFTER_RETRIES = 3

    def retry_dead_letters(self, limit: int = 20) -> int:
        """Try again the unresolved dead letters whose time has come; return how many resolved.

        A try applies the event again; when that still fails, it reads the event's entity again
        from the site instead, which brings its row up to date just as well. Either resolves the
        dead letter (its type stops being suspect once none is left). A try that fails waits twice
        as long as the one before, up to ``watcher.dead_letter_retry_max``; after
        RESCAN_AFTER_RETRIES the type is also marked for a full import (the scanner's cure).
        """
        dl, types = self.tables.state.dead_letters, self.tables.state.types
        with self.engine.begin() as conn:
            # A full import completed since the failure read every row of the type again.
            imported = sa.select(types.c.full_scan_at).where(types.c.entity_type == dl.c.entity_type) \
                .scalar_subquery()
            conn.execute(sa.update(dl).where(dl.c.resolved_at.is_(None)).where(dl.c.failed_at < imported)
                         .values(resolved_at=_now(), resolution="full import", next_retry_at=None))
            due = conn.execute(sa.select(dl.c.event_id, dl.c.event, dl.c.retries)
                               .where(dl.c.resolved_at.is_(None)).where(dl.c.next_retry_at <= _now())
                               .order_by(dl.c.event_id).limit(limit)).all()
        resolved = 0
        for event_id, raw, retries in due:
            try:
                event = json.loads(raw)
                how = self._retry(event)
            except (SiteError, *DATABASE_TROUBLE):
                raise  # not the event's fault: try again when the site or the database is back
            except Exception as e:
                self._retry_failed(event_id, retries + 1, f"{type(e).__name__}: {e}")
                continue
            resolved += 1
            log.info("event=dead_letter_resolved id=%s how=%r retries=%d", event_id, how, retries + 1)
        return resolved

    def _retry(self, event: dict) -> str:
        def again(conn: sa.Connection, site: SiteAnswers) -> str:
            return self._resolve(conn, event, site, self.apply(conn, event, site), "applied")

        try:
            return in_rounds(self.engine, self.remote, again)
        except (SiteError, *DATABASE_TROUBLE):
            raise
        except Exception as e:
            parsed = parse(event)
            if parsed is None or parsed.entity_type not in self.tables or parsed.entity_id is None:
                raise
            first = f"{type(e).__name__}: {e}"
            log.warning("event=dead_letter_retry_failed id=%s error=%r then='read the entity again'", event["id"],
                        first[:300])

            def reread(conn: sa.Connection, site: SiteAnswers) -> str:
                self._fetch_into(conn, site, parsed.entity_type, parsed.entity_id, None)
                return self._resolve(conn, event, site, "fetched", f"entity read again ({first[:200]})")

            return in_rounds(self.engine, self.remote, reread)

    def _resolve(self, conn: sa.Connection, event: dict, site: SiteAnswers, outcome: str, how: str) -> str:
        if site.pending:
            raise NeedSite
        dl = self.tables.state.dead_letters
        conn.execute(sa.update(dl).where(dl.c.event_id == event["id"])
                     .values(resolved_at=_now(), resolution=how, retries=dl.c.retries + 1, next_retry_at=None))
        return f"{how}: {outcome}"

    def _retry_failed(self, event_id: int, retries: int, error: str) -> None:
        wait = min(self.config.dead_letter_retry_max, self.config.dead_letter_retry * 2 ** retries)
        dl, types = self.tables.state.dead_letters, self.tables.state.types
        with self.engine.begin() as conn:
            conn.execute(sa.update(dl).where(dl.c.event_id == event_id).values(
                retries=retries, error=error[:2000], next_retry_at=_now() + dt.timedelta(seconds=wait)))
            entity_type = conn.execute(sa.select(dl.c.entity_type).where(dl.c.event_id == event_id)).scalar()
            rescan = retries >= self.RESCAN_AFTER_RETRIES and entity_type in self.tables
            if rescan:
                conn.execute(sa.update(types).where(types.c.entity_type == entity_type).values(needs_rescan=True))
        log.error("event=dead_letter_retry_failed id=%s retries=%d error=%r next_try_in_s=%.0f full_import=%s",
                  event_id, retries, error[:300], wait, "requested" if rescan else "no")


def dead_letters(engine: sa.Engine, tables: Tables) -> list[dict[str, Any]]:
    """The rows of the dead-letter table, in event id order."""
    t = tables.state.dead_letters
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(t).order_by(t.c.event_id)).mappings()]
