"""The event-log watcher: applies every relevant EventLogEntry to the cache, never losing one.

Each event is applied in one transaction together with the cursor move and a row in the
applied-events ledger, so after a crash at any point the watcher resumes with nothing lost and
nothing applied twice. Missing ids (late commits) are kept as gaps and awaited for
``watcher.gap_timeout`` seconds. A failing event is retried with backoff and then recorded in
the dead-letter table; the site being unreachable only pauses the watcher.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from sgcache.config import WatcherConfig
from sgcache.errors import ConversionError
from sgcache.fields.entity import EntityField, MultiEntityField
from sgcache.fields.scalar import DateTimeField
from sgcache.query import schema as site_schema
from sgcache.store import samples
from sgcache.store import state as store_state
from sgcache.store.tables import Tables
from sgcache.store.writer import Writer
from sgcache.sync import cursor as cursors
from sgcache.sync import links
from sgcache.sync.remote import Remote, SiteError

log = logging.getLogger(__name__)

LIFECYCLE = {"New", "Change", "Retirement", "Revival"}


#: Errors that say the cache database cannot be used right now (down, restarting, locked, or
#: not migrated for this schema): the event is retried later, never dead-lettered for it.
DATABASE_TROUBLE = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DisconnectionError)


def _aware(value: Any) -> dt.datetime | None:
    if not isinstance(value, dt.datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Parsed:
    """What an event is about, once read."""

    action: str
    entity_type: str
    entity_id: int | None
    field: str | None


#: Types whose changes may change who a caller is or what it may see on the site.
AUTH_TYPES = frozenset({"HumanUser", "ApiUser", "Project", "PermissionRuleSet", "Group"})


def _auth_subject(event: dict) -> str | None:
    """The type an event is about, when it is one of AUTH_TYPES."""
    parts = str(event.get("event_type") or "").split("_")
    if len(parts) >= 3 and parts[0] == "Shotgun":
        type_name = "_".join(parts[1:-1])
        if type_name in AUTH_TYPES:
            return type_name
    return None


def parse(event: dict) -> Parsed | None:
    """The action, entity and field of a Shotgun lifecycle event; None for anything else."""
    parts = (event.get("event_type") or "").split("_")
    if len(parts) < 3 or parts[0] != "Shotgun" or parts[-1] not in LIFECYCLE:
        return None
    action = parts[-1]
    meta = event.get("meta") or {}
    entity = event.get("entity") or {}
    # Connection types have underscores, so the middle of the event type is only a fallback.
    entity_type = "_".join(parts[1:-1])
    if action == "Change" and "actual_attribute_changed" in meta:
        # A back reference: the entry is about the other side (entity), meta about the source.
        if not entity:
            return None
        return Parsed("Change", entity["type"], entity["id"], event.get("attribute_name"))
    if isinstance(meta, dict) and meta.get("entity_type") == entity_type:
        entity_id = meta.get("entity_id")
    else:
        entity_id = None
    if entity_id is None and entity:
        entity_id = entity.get("id")
    return Parsed(action, entity_type, entity_id, event.get("attribute_name") if action == "Change" else None)


class Watcher:
    def __init__(self, engine: sa.Engine, tables: Tables, remote: Remote, config: WatcherConfig, *,
                 on_schema_change=None):
        self.engine = engine
        self.tables = tables
        self.remote = remote
        self.config = config
        self.writer = Writer(engine, tables)
        self.on_schema_change = on_schema_change
        self.applied = 0  # events applied by this process (tests and status)
        self._sampled_at: float | None = None  # monotonic time of the last lag sample

    # --- one event --------------------------------------------------------------------------------

    def _exists(self, conn: sa.Connection, entity_type: str, entity_id: int) -> bool:
        t = self.tables[entity_type].table
        return conn.execute(sa.select(t.c.id).where(t.c.id == entity_id)).first() is not None

    def _projects(self, conn: sa.Connection) -> set[int] | None:
        """The cached project set, or None when every project is cached."""
        meta = self.tables.state.meta
        raw = conn.execute(sa.select(meta.c.value).where(meta.c.key == "projects")).scalar()
        value = json.loads(raw) if raw else None
        return set(value) if isinstance(value, list) and value else None

    def _outside_projects(self, conn: sa.Connection, entity_type: str, entity: dict) -> bool:
        projects = self._projects(conn)
        if projects is None or "project" not in self.tables[entity_type].fields:
            return False
        project = entity.get("project")
        return not (isinstance(project, dict) and project.get("id") in projects)

    def _fetch_into(self, conn: sa.Connection, entity_type: str, entity_id: int, event_id: int | None) -> None:
        """Read the entity in full from the site and write it (active or retired as the site says)."""
        et = self.tables[entity_type]
        fields = et.cached_fields()
        entity, active = self.remote.fetch(entity_type, entity_id, fields)
        if entity is None:
            return
        if self._outside_projects(conn, entity_type, entity):
            # Not in the cached projects (or moved out of them): the cache does not hold it.
            self.writer.forget(entity_type, [entity_id], conn=conn)
            return
        written = self.writer.upsert(entity_type, [entity], active=active, event_id=event_id, conn=conn)
        if not written:
            # The row holds a newer event's values; what the site says now is newer still.
            self.writer.upsert(entity_type, [entity], active=active, conn=conn)

    @staticmethod
    def _stamp(et, event: dict) -> dict:
        """updated_at / updated_by of a write, from its entry: they change without events of their
        own (the incremental scan settles any second of difference)."""
        out = {}
        if et.cached("updated_at") and event.get("created_at") is not None:
            out["updated_at"] = event["created_at"]
        if et.cached("updated_by") and isinstance(event.get("user"), dict):
            out["updated_by"] = event["user"]
        return out

    def _retired_back_reference(self, conn: sa.Connection, event: dict) -> str:
        """A back reference on an entity retired at read time: ``entity`` is null and meta names
        the other side, so find the retired rows that link the source, on the site and in the
        cache, and read them again."""
        meta = event["meta"]
        parts = event["event_type"].split("_")
        entity_type, field_name = "_".join(parts[1:-1]), event.get("attribute_name")
        if entity_type not in self.tables or not self.tables[entity_type].cached(field_name or ""):
            return "skipped: type or field not cached"
        source = {"type": meta.get("entity_type"), "id": meta.get("entity_id")}
        if not isinstance(source["type"], str) or not isinstance(source["id"], int):
            return "skipped: no source in meta"
        et = self.tables[entity_type]
        handler = et.fields[field_name]
        ids: set[int] = set()
        for page in self.remote.pages(entity_type, ["id"], [[field_name, "is", source]], retired=True):
            ids.update(e["id"] for e in page)
        if isinstance(handler, MultiEntityField):
            assoc = et.associations[field_name]
            ids.update(conn.execute(sa.select(assoc.c.parent_id).where(assoc.c.child_type == source["type"])
                                    .where(assoc.c.child_id == source["id"])).scalars())
        elif isinstance(handler, EntityField):
            t = et.table
            ids.update(conn.execute(sa.select(t.c.id).where(t.c[handler.type_column] == source["type"])
                                    .where(t.c[handler.id_column] == source["id"])).scalars())
        for entity_id in sorted(ids):
            self._fetch_into(conn, entity_type, entity_id, event["id"])
        return f"fetched {len(ids)} retired"

    def apply(self, conn: sa.Connection, event: dict) -> str:
        """Apply one event inside ``conn``'s transaction; return what was done (for logs)."""
        about = _auth_subject(event)
        if about is not None:
            # Who callers are and what they may see may have changed: every proxy forgets what it
            # remembered of them (cached or not, whatever else the event does).
            store_state.bump_auth_epoch(conn, self.tables.state, f"event {event.get('id')} {about}")
        meta = event.get("meta")
        if isinstance(meta, dict) and "actual_attribute_changed" in meta and not event.get("entity") \
                and (event.get("event_type") or "").endswith("_Change"):
            return self._retired_back_reference(conn, event)
        if (event.get("event_type") or "").startswith("Shotgun_DisplayColumn_"):
            return self._schema_event(conn, event)
        parsed = parse(event)
        if parsed is None:
            return "skipped: not a lifecycle event"
        if parsed.entity_type not in self.tables or parsed.entity_id is None:
            return "skipped: type not cached"
        et = self.tables[parsed.entity_type]
        event_id = event["id"]
        if parsed.action in ("New", "Revival"):
            self._fetch_into(conn, parsed.entity_type, parsed.entity_id, event_id)
            if parsed.action == "Revival":
                # Rows read while it was retired saw their links to it as None: read them again.
                referrers = links.referrers_on_site(self.remote, self.tables,
                                                    (parsed.entity_type, parsed.entity_id))
                for other_type, other_id in sorted(referrers):
                    self._fetch_into(conn, other_type, other_id, None)
            return "fetched"
        if parsed.action == "Retirement":
            if self.writer.retire(parsed.entity_type, [parsed.entity_id], event_id=event_id, conn=conn):
                stamp = self._stamp(et, event)
                if stamp:
                    self.writer.upsert(parsed.entity_type, [{"id": parsed.entity_id, **stamp}], event_id=event_id,
                                       conn=conn)
            else:
                # Never held, or the row carries a later event's stamp while still active: do not
                # drop the retirement, read what the entity is on the site now (as a Change does).
                self._fetch_into(conn, parsed.entity_type, parsed.entity_id, event_id)
            return "retired"
        # Change
        handler = et.fields.get(parsed.field or "")
        if handler is None or not handler.cached:
            return "skipped: field not cached"
        if not self._exists(conn, parsed.entity_type, parsed.entity_id):
            # Never seen (made by a script without events, say): take it whole, not one field.
            self._fetch_into(conn, parsed.entity_type, parsed.entity_id, event_id)
            return "fetched"
        meta = event.get("meta") or {}
        direct = (parsed.field != "project" and "new_value" in meta and "actual_attribute_changed" not in meta
                  and not isinstance(handler, (MultiEntityField, DateTimeField))
                  and (not isinstance(handler, EntityField) or meta["new_value"] is None
                       or isinstance(meta["new_value"], dict)))
        if direct:
            entity = {"type": parsed.entity_type, "id": parsed.entity_id, parsed.field: meta["new_value"],
                      **self._stamp(et, event)}
            try:
                if self.writer.upsert(parsed.entity_type, [entity], event_id=event_id, conn=conn):
                    return "applied"
            except ConversionError:
                pass  # the client reshaped the value (text that looks like a timestamp): ask the site
        # Multi-entity lists, back references, timestamps, or a row already newer: ask the site.
        self._fetch_into(conn, parsed.entity_type, parsed.entity_id, event_id)
        return "fetched"

    def _schema_event(self, conn: sa.Connection, event: dict) -> str:
        meta = event.get("meta") or {}
        owner = meta.get("entity_type_owner")
        # The proxies' copy of the site's schema is out of date whatever the type.
        site_schema.forget(conn, self.tables)
        if owner in self.tables:
            t = self.tables.state.types
            conn.execute(sa.update(t).where(t.c.entity_type == owner).values(needs_rescan=True))
            field_name = meta.get("field_name")
            if self.tables[owner].cached(field_name or ""):
                # The cached copy of this field can no longer be trusted: reads pass it through
                # until a full import of the type fills it again.
                f = self.tables.state.fields
                conn.execute(sa.update(f).where(f.c.entity_type == owner).where(f.c.field_name == field_name)
                             .values(needs_backfill=True, backfill_reason="changed on the site"))
            log.warning("event=schema_changed entity_type=%s field=%s hint='update the schema file, "
                        "migrate, and run sgcache scan --full --types %s'", owner, meta.get("field_name"), owner)
        if self.on_schema_change is not None:
            self.on_schema_change(owner, meta.get("field_name"))
        return "schema change noted"

    # --- the loop ------------------------------------------------------------------------------------

    def _commit(self, event: dict | None, cursor: cursors.Cursor, dead: str | None = None,
                attempts: int = 0) -> str:
        """Apply ``event`` (if any) and save ``cursor``, in one transaction."""
        st = self.tables.state
        with self.engine.begin() as conn:
            outcome = "cursor"
            if event is not None:
                if conn.execute(sa.select(st.applied.c.event_id).where(st.applied.c.event_id == event["id"])).first():
                    outcome = "already applied"
                else:
                    if dead is None:
                        outcome = self.apply(conn, event)
                    else:
                        conn.execute(sa.insert(st.dead_letters).values(
                            event_id=event["id"], event_type=event.get("event_type"),
                            entity_type=(event.get("meta") or {}).get("entity_type") if isinstance(
                                event.get("meta"), dict) else None,
                            entity_id=(event.get("meta") or {}).get("entity_id") if isinstance(
                                event.get("meta"), dict) else None,
                            error=dead, attempts=attempts, failed_at=_now(),
                            event=json.dumps(event, default=str)))
                        self._suspect(conn, event)
                        outcome = "dead letter"
                    conn.execute(sa.insert(st.applied).values(event_id=event["id"], applied_at=_now()))
            cursors.save(conn, st, cursor)
        return outcome

    def _suspect(self, conn: sa.Connection, event: dict) -> None:
        """A dead-lettered event left its entity as it was: reads of its type pass through (see
        ReadState.suspect) until the next full import of the type, which the periodic scan makes
        at once (needs_rescan)."""
        parsed = parse(event)
        meta = event.get("meta") if isinstance(event.get("meta"), dict) else {}
        entity_type = parsed.entity_type if parsed is not None else meta.get("entity_type")
        if entity_type in self.tables:
            t = self.tables.state.types
            conn.execute(sa.update(t).where(t.c.entity_type == entity_type).values(needs_rescan=True))
            log.warning("event=type_suspect entity_type=%s hint='reads of it pass through until its next full "
                        "import (sgcache scan --interval makes it; or sgcache scan --full --types %s)'",
                        entity_type, entity_type)

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
                time.sleep(delay)
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
        processed = 0
        # Late ids first: they are older than anything new.
        if cursor.gaps:
            for event in self.remote.events_by_id(sorted(cursor.gaps)):
                if event["id"] not in cursor.gaps:
                    continue
                following = cursor.copy()
                del following.gaps[event["id"]]
                self._handle(event, following)
                cursor = following
                processed += 1
        events = self.remote.events_after(cursor.max_applied_id, self.config.batch_size)
        now = _now()
        for event in events:
            if cursor.is_done(event["id"]):
                continue
            following = cursor.copy()
            for missing in range(cursor.max_applied_id + 1, event["id"]):
                following.gaps.setdefault(missing, now)
            following.max_applied_id = max(cursor.max_applied_id, event["id"])
            self._handle(event, following)
            cursor = following
            processed += 1
        self._expire_gaps(cursor)
        self._sample_lag(cursor, events)
        return len(events)

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
            created = _aware(last.get("created_at"))
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
        """Poll until ``stop`` is set: at once after a full batch, slower and slower when idle."""
        pause = self.config.min_poll_interval
        while not stop.is_set():
            try:
                read = self.poll_once()
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
            stop.wait(pause)


def dead_letters(engine: sa.Engine, tables: Tables) -> list[dict[str, Any]]:
    t = tables.state.dead_letters
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(t).order_by(t.c.event_id)).mappings()]
