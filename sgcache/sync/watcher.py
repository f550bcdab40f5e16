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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from sgcache.config import WatcherConfig
from sgcache.errors import ConversionError
from sgcache.fields.entity import EntityField, MultiEntityField
from sgcache.fields.scalar import DateTimeField
from sgcache.query import site_schema
from sgcache.store import samples
from sgcache.store import state as store_state
from sgcache.store.tables import Tables
from sgcache.store.writer import OTHER_SIDES_ALL, OTHER_SIDES_CHANGED, OTHER_SIDES_NONE, Writer
from sgcache.sync import cursor as cursors
from sgcache.sync import links
from sgcache.sync.refresh import Refresher
from sgcache.sync.remote import Remote, SiteError, Stopped, wait

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


class NeedSite(Exception):
    """Raised inside an event's transaction when applying it needs answers the site has not given
    yet: the transaction rolls back, the questions are asked with no transaction open, and the
    event is applied again with the answers."""


class SiteAnswers:
    """The site's answers for one event, asked outside any database transaction.

    Applying an event runs against this object instead of the site: a question it already has the
    answer to is answered from memory; a new one is noted and answered "nothing yet" (no entity,
    no pages), and the application is rolled back (``NeedSite``) and made again once every noted
    question has been asked. So the watcher never holds a transaction, its locks or its
    connection while it waits for the site, and the transaction that applies an event with its
    cursor move and ledger row stays short.

    An entity's answer is only used for the cached row it was asked about: the question names
    the row's ``_cache_updated_at`` as the watcher found it before asking, and when a scan or a
    proxy's read-back has written the row since, the answer may be older than the row and the
    question is asked again. (A row's version is taken once per round, before the round's own
    writes change it.) A write from another process that lands between that and the round's own
    write is caught by the write itself: it leaves alone a row written after the answer was
    asked (``asked_at``), and the question is asked again (``ask_again``).
    """

    def __init__(self, remote: Remote):
        self.remote = remote
        self._known: dict[tuple, Any] = {}
        self._asked: dict[tuple, Any] = {}  # key -> call, in the order noted
        self._times: dict[tuple, dt.datetime] = {}  # key -> when it was asked
        self._versions: dict[tuple[str, int], Any] = {}  # this round's: (type, id) -> version
        self.written: set[tuple[str, int]] = set()  # this round's: rows the round itself wrote

    def new_round(self) -> None:
        self._versions = {}
        self.written = set()

    def _answer(self, key: tuple, call, unknown: Any) -> Any:
        if key in self._known:
            return self._known[key]
        self._asked.setdefault(key, call)
        return unknown

    def _fetch_key(self, entity_type: str, entity_id: int, fields: list[str]) -> tuple:
        return ("fetch", entity_type, entity_id, tuple(fields), self._versions.get((entity_type, entity_id)))

    def fetch(self, entity_type: str, entity_id: int, fields: list[str], *,
              row_version: Callable[[], Any] = lambda: None) -> tuple[dict | None, bool]:
        if (entity_type, entity_id) not in self._versions:
            self._versions[entity_type, entity_id] = row_version()
        key = self._fetch_key(entity_type, entity_id, fields)
        return self._answer(key, lambda: self.remote.fetch(entity_type, entity_id, fields), (None, False))

    def asked_at(self, entity_type: str, entity_id: int, fields: list[str]) -> dt.datetime | None:
        """When the answer ``fetch`` gives now was asked of the site."""
        return self._times.get(self._fetch_key(entity_type, entity_id, fields))

    def ask_again(self, entity_type: str, entity_id: int, fields: list[str]) -> None:
        """Forget the answer ``fetch`` gives now: the next round asks the site again."""
        key = self._fetch_key(entity_type, entity_id, fields)
        self._known.pop(key, None)
        self._asked.setdefault(key, lambda: self.remote.fetch(entity_type, entity_id, fields))

    def pages(self, entity_type: str, fields: list[str], filters: list, *, retired: bool = False) -> list[list[dict]]:
        key = ("pages", entity_type, tuple(fields), json.dumps(filters, sort_keys=True, default=str), retired)
        return self._answer(key, lambda: list(self.remote.pages(entity_type, fields, filters, retired=retired)), [])

    @property
    def pending(self) -> bool:
        return bool(self._asked)

    def ask(self) -> int:
        """Ask the site every question noted since the last call; return how many."""
        asked, self._asked = self._asked, {}
        for key, call in asked.items():
            self._times[key] = _now()
            self._known[key] = call()
        return len(asked)


#: Most rounds of questions to the site one event may need: the entity, the rows that link to
#: it (a revival), those rows; more rounds mean the rows kept changing while the watcher asked.
MAX_SITE_ROUNDS = 10


class Watcher:
    def __init__(self, engine: sa.Engine, tables: Tables, remote: Remote, config: WatcherConfig, *,
                 on_schema_change=None):
        self.engine = engine
        self.tables = tables
        self.remote = remote
        self.config = config
        self.writer = Writer(engine, tables)
        # Reads the other sides of links the events' writes queued, after each poll.
        self.refresher = Refresher(engine, tables, None, remote=remote)
        self.on_schema_change = on_schema_change
        self.applied = 0  # events applied by this process (tests and status)
        self.stop: threading.Event | None = None  # set by run(): pauses between tries end at once
        self._sampled_at: float | None = None  # monotonic time of the last lag sample

    # --- one event --------------------------------------------------------------------------------

    def _newer_than(self, conn: sa.Connection, entity_type: str, entity_id: int, event: dict) -> bool:
        """Whether the cached row was read from the site after a later write than ``event``: its
        ``updated_at`` (a scan or a read-back wrote it) is past the event's time. The event's
        stamp cannot tell, since a scan stamps rows with the events applied *before* it read.
        Then the event must not be written over the row; the site says what is current."""
        t = self.tables[entity_type].table
        created = _aware(event.get("created_at"))
        if created is None or "updated_at" not in t.c:
            return False
        updated = _aware(conn.execute(sa.select(t.c.updated_at).where(t.c.id == entity_id)).scalar())
        return updated is not None and updated > created

    def _exists(self, conn: sa.Connection, entity_type: str, entity_id: int) -> bool:
        return self._held_active(conn, entity_type, entity_id) is not None

    def _held_active(self, conn: sa.Connection, entity_type: str, entity_id: int) -> bool | None:
        """Whether the cache holds the row active (True), retired (False), or not at all (None)."""
        t = self.tables[entity_type].table
        return conn.execute(sa.select(t.c._active).where(t.c.id == entity_id)).scalar()

    def _projects(self, conn: sa.Connection) -> set[int] | None:
        """The cached project set, or None when every project is cached."""
        projects = store_state.read_projects(conn, self.tables.state)
        return set(projects) if projects else None

    def _outside_projects(self, conn: sa.Connection, entity_type: str, entity: dict) -> bool:
        projects = self._projects(conn)
        if projects is None or "project" not in self.tables[entity_type].fields:
            return False
        project = entity.get("project")
        return not (isinstance(project, dict) and project.get("id") in projects)

    def _fetch_into(self, conn: sa.Connection, site: SiteAnswers, entity_type: str, entity_id: int,
                    event_id: int | None, *, unseen: bool = False, referrers: bool = True) -> None:
        """Read the entity in full from the site and write it (active or retired as the site says).

        When its links differ from the cached ones (a link written without an event, say), the
        writer queues the entities linked or unlinked, in this transaction: their reverse fields
        (``Shot.tasks`` for ``Task.entity``) changed with it, and no later scan would see a
        difference to act on; ``poll_once`` reads them after its events (Refresher.drain).
        ``unseen``: the entity was made without an event (the cache meets it at a change), so
        every link it has is new to the other sides too. A row held as retired that the site
        shows active was revived without an event: rows read while it was retired saw their links
        to it as None, so with ``referrers`` they are read again (as a Revival event does).
        """
        et = self.tables[entity_type]
        fields = et.cached_fields()
        t = et.table
        entity, active = site.fetch(entity_type, entity_id, fields, row_version=lambda: conn.execute(
            sa.select(t.c._cache_updated_at).where(t.c.id == entity_id)).scalar())
        if entity is None:
            return
        if self._outside_projects(conn, entity_type, entity):
            # Not in the cached projects (or moved out of them): the cache does not hold it.
            self.writer.forget(entity_type, [entity_id], conn=conn)
            return
        was_active = self._held_active(conn, entity_type, entity_id)
        other_sides = OTHER_SIDES_ALL if unseen else OTHER_SIDES_CHANGED
        # Left alone if another process wrote the row after the answer was asked (its read may
        # be newer); a row this round wrote itself carries this transaction's time.
        since = None if (entity_type, entity_id) in site.written else site.asked_at(entity_type, entity_id, fields)
        written = self.writer.upsert(entity_type, [entity], active=active, event_id=event_id, conn=conn,
                                     other_sides=other_sides, unless_written_since=since)
        if not written:
            # The row holds a newer event's values (what the site says now is newer still), or
            # was written after the answer was asked (then the site is asked again).
            written = self.writer.upsert(entity_type, [entity], active=active, conn=conn, other_sides=other_sides,
                                         unless_written_since=since)
            if not written:
                site.ask_again(entity_type, entity_id, fields)
                return
        site.written.add((entity_type, entity_id))
        if referrers and active and was_active is False:
            for other_type, other_id in sorted(links.referrers_on_site(site, self.tables, (entity_type, entity_id))):
                self._fetch_into(conn, site, other_type, other_id, None, referrers=False)

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

    def _retired_back_reference(self, conn: sa.Connection, site: SiteAnswers, event: dict) -> str:
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
        for page in site.pages(entity_type, ["id"], [[field_name, "is", source]], retired=True):
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
            self._fetch_into(conn, site, entity_type, entity_id, event["id"])
        return f"fetched {len(ids)} retired"

    def apply(self, conn: sa.Connection, event: dict, site: SiteAnswers) -> str:
        """Apply one event inside ``conn``'s transaction; return what was done (for logs).

        Everything it needs from the site comes from ``site``; when that lacks an answer the
        caller rolls back, asks, and applies again (see SiteAnswers)."""
        about = _auth_subject(event)
        if about is not None:
            # Who callers are and what they may see may have changed: every proxy forgets what it
            # remembered of them (cached or not, whatever else the event does).
            store_state.bump_auth_epoch(conn, self.tables.state, f"event {event.get('id')} {about}")
        meta = event.get("meta")
        if isinstance(meta, dict) and "actual_attribute_changed" in meta and not event.get("entity") \
                and (event.get("event_type") or "").endswith("_Change"):
            return self._retired_back_reference(conn, site, event)
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
            self._fetch_into(conn, site, parsed.entity_type, parsed.entity_id, event_id, referrers=False)
            if parsed.action == "Revival":
                # Rows read while it was retired saw their links to it as None: read them again.
                referrers = links.referrers_on_site(site, self.tables, (parsed.entity_type, parsed.entity_id))
                for other_type, other_id in sorted(referrers):
                    self._fetch_into(conn, site, other_type, other_id, None)
            return "fetched"
        if parsed.action == "Retirement":
            if self._newer_than(conn, parsed.entity_type, parsed.entity_id, event):
                self._fetch_into(conn, site, parsed.entity_type, parsed.entity_id, event_id)
            elif self.writer.retire(parsed.entity_type, [parsed.entity_id], event_id=event_id, conn=conn):
                stamp = self._stamp(et, event)
                if stamp:
                    self.writer.upsert(parsed.entity_type, [{"id": parsed.entity_id, **stamp}], event_id=event_id,
                                       conn=conn, other_sides=OTHER_SIDES_NONE)
            else:
                # Never held, or the row carries a later event's stamp while still active: do not
                # drop the retirement, read what the entity is on the site now (as a Change does).
                self._fetch_into(conn, site, parsed.entity_type, parsed.entity_id, event_id)
            return "retired"
        # Change
        handler = et.fields.get(parsed.field or "")
        if handler is None or not handler.cached:
            return "skipped: field not cached"
        held = self._held_active(conn, parsed.entity_type, parsed.entity_id)
        if held is None:
            # Never seen (made by a script without events, say): take it whole, not one field.
            self._fetch_into(conn, site, parsed.entity_type, parsed.entity_id, event_id, unseen=True)
            return "fetched"
        if held is False:
            # Changed while the cache holds it retired: revived without an event, read it whole
            # (with the rows that link to it).
            self._fetch_into(conn, site, parsed.entity_type, parsed.entity_id, event_id)
            return "fetched"
        meta = event.get("meta") or {}
        direct = (parsed.field != "project" and "new_value" in meta and "actual_attribute_changed" not in meta
                  and not isinstance(handler, (MultiEntityField, DateTimeField))
                  and (not isinstance(handler, EntityField) or meta["new_value"] is None
                       or isinstance(meta["new_value"], dict))
                  and not self._newer_than(conn, parsed.entity_type, parsed.entity_id, event))
        if direct:
            entity = {"type": parsed.entity_type, "id": parsed.entity_id, parsed.field: meta["new_value"],
                      **self._stamp(et, event)}
            try:
                # A link's other side has its own back-reference event: nothing to queue.
                if self.writer.upsert(parsed.entity_type, [entity], event_id=event_id, conn=conn,
                                      other_sides=OTHER_SIDES_NONE):
                    return "applied"
            except ConversionError:
                pass  # the client reshaped the value (text that looks like a timestamp): ask the site
        # Multi-entity lists, back references, timestamps, or a row already newer: ask the site.
        self._fetch_into(conn, site, parsed.entity_type, parsed.entity_id, event_id)
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
        """Apply ``event`` (if any) and save ``cursor``, in one transaction (made again, after
        asking the site with no transaction open, for as long as the event needs the site)."""
        return self._in_rounds(lambda conn, site: self._commit_in(conn, site, event, cursor, dead, attempts))

    def _commit_in(self, conn: sa.Connection, site: SiteAnswers, event: dict | None, cursor: cursors.Cursor,
                   dead: str | None, attempts: int) -> str:
        st = self.tables.state
        outcome = "cursor"
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
                conn.execute(sa.insert(st.applied).values(event_id=event["id"], applied_at=_now()))
        cursors.save(conn, st, cursor)
        return outcome

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

    # --- dead letters, tried again --------------------------------------------------------------

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
        try:
            return self._in_rounds(lambda conn, site: self._resolve(conn, event, site, self.apply(conn, event, site),
                                                                    "applied"))
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

            return self._in_rounds(reread)

    def _resolve(self, conn: sa.Connection, event: dict, site: SiteAnswers, outcome: str, how: str) -> str:
        if site.pending:
            raise NeedSite
        dl = self.tables.state.dead_letters
        conn.execute(sa.update(dl).where(dl.c.event_id == event["id"])
                     .values(resolved_at=_now(), resolution=how, retries=dl.c.retries + 1, next_retry_at=None))
        return f"{how}: {outcome}"

    def _in_rounds(self, work) -> str:
        """Run ``work(conn, site)`` in a transaction, again after each round of questions to the site."""
        site = SiteAnswers(self.remote)
        for _ in range(MAX_SITE_ROUNDS):
            site.new_round()
            try:
                with self.engine.begin() as conn:
                    return work(conn, site)
            except NeedSite:
                site.ask()
        raise RuntimeError(f"still needed the site after {MAX_SITE_ROUNDS} rounds")

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
        self.retry_dead_letters()
        self.refresher.drain()
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
            stop.wait(pause)


def dead_letters(engine: sa.Engine, tables: Tables) -> list[dict[str, Any]]:
    t = tables.state.dead_letters
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(t).order_by(t.c.event_id)).mappings()]
