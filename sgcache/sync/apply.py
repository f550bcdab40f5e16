"""How one event becomes a change in the cache, inside the transaction that records it.

:class:`EventApplier` writes what an event says (or what the site says now, when the event
cannot be trusted alone) through the one writer; everything it needs from the site comes from
:class:`~sgcache.sync.answers.SiteAnswers`. The watcher (:mod:`sgcache.sync.watcher`) decides
when, with its cursor, ledger and retries.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa

from sgcache.config import WatcherConfig
from sgcache.errors import ConversionError
from sgcache.fields.entity import EntityField, MultiEntityField
from sgcache.query import site_schema
from sgcache.store import history, slim
from sgcache.store import state as store_state
from sgcache.store.tables import EntityTable, Tables
from sgcache.store.writer import OTHER_SIDES_ALL, OTHER_SIDES_CHANGED, OTHER_SIDES_NONE, Writer
from sgcache.sync import links
from sgcache.sync.answers import Prefetched, SiteAnswers
from sgcache.sync.events import (
    Parsed,
    auth_subject,
    aware,
    carries_value,
    is_retired_back_reference,
    is_schema_event,
    parse,
    stamp,
)
from sgcache.sync.remote import Remote, SiteRefused

#: The watcher's log: one logger for everything the watcher does, whichever module does it.
log = logging.getLogger("sgcache.sync.watcher")


class EventApplier:
    """Applies single events to the cache, each inside a transaction the caller opened."""

    def __init__(self, engine: sa.Engine, tables: Tables, remote: Remote, config: WatcherConfig, *,
                 on_schema_change=None):
        self.engine = engine
        self.tables = tables
        self.remote = remote
        self.config = config
        # Every change an event makes goes through the one writer (which queues the other sides).
        self.writer = Writer(engine, tables)
        self.on_schema_change = on_schema_change  # called with (entity type, field) of a schema event
        self._event_at = None  # the site's time of the event being applied

    # --- what the cache holds ------------------------------------------------------------------------

    def _newer_than(self, conn: sa.Connection, entity_type: str, entity_id: int, event: dict) -> bool:
        """Whether the cached row was read from the site after a later write than ``event``: its
        ``updated_at`` (a scan or a read-back wrote it) is past the event's time. The event's
        stamp cannot tell, since a scan stamps rows with the events applied *before* it read.
        Then the event must not be written over the row; the site says what is current."""
        t = self.tables[entity_type].table
        created = aware(event.get("created_at"))
        if created is None or "updated_at" not in t.c:
            return False
        updated = aware(conn.execute(sa.select(t.c.updated_at).where(t.c.id == entity_id)).scalar())
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

    # --- reading an entity again ---------------------------------------------------------------------

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
            # Not in the cached projects (or moved out of them): the cache does not hold it, but
            # keeps its slim record, which names links to it.
            self.writer.forget(entity_type, [entity_id], conn=conn)
            ident = et.entity_type.identifier
            slim.upsert(conn, self.tables.state.slim,
                        [slim.record(entity, slim.SlimType(entity_type, ident, True), active=active)],
                        event_id=event_id)
            return
        was_active = self._held_active(conn, entity_type, entity_id)
        other_sides = OTHER_SIDES_ALL if unseen else OTHER_SIDES_CHANGED
        # Left alone if another process wrote the row after the answer was asked (its read may
        # be newer); a row this round wrote itself carries this transaction's time.
        since = None if (entity_type, entity_id) in site.written else site.asked_at(entity_type, entity_id, fields)
        written = self.writer.upsert(entity_type, [entity], active=active, event_id=event_id, conn=conn,
                                     other_sides=other_sides, unless_written_since=since, changed_at=self._event_at)
        if not written:
            # The row holds a newer event's values (what the site says now is newer still), or
            # was written after the answer was asked (then the site is asked again).
            written = self.writer.upsert(entity_type, [entity], active=active, conn=conn, other_sides=other_sides,
                                         unless_written_since=since, changed_at=self._event_at)
            if not written:
                site.ask_again(entity_type, entity_id, fields)
                return
        site.written.add((entity_type, entity_id))
        self._unsure_since_event(conn, entity_type, entity_id, entity, event_id)
        if referrers and active and was_active is False:
            self._fetch_referrers(conn, site, (entity_type, entity_id), referrers=False)

    def _unsure_since_event(self, conn: sa.Connection, entity_type: str, entity_id: int, entity: dict,
                            event_id: int | None) -> None:
        """The entity read for an event changed again after it (a watcher behind the site): the
        versions between the event and that change were not seen (history.mark_unsure)."""
        if event_id is None or self._event_at is None:
            return
        updated = aware(entity.get("updated_at"))
        if updated is not None and updated - self._event_at > history.SAME_MOMENT and \
                history.mark_unsure(conn, self.tables, entity_type, entity_id, self._event_at, updated, event_id):
            log.info("event=history_unsure type=%s id=%d event_id=%d from=%s to=%s", entity_type, entity_id,
                     event_id, self._event_at.isoformat(), updated.isoformat())

    def _fetch_referrers(self, conn: sa.Connection, site: SiteAnswers, target: tuple[str, int], *,
                         referrers: bool) -> None:
        """Read again the rows that link to ``target`` on the site (asked in one find per type);
        ``referrers``: as _fetch_into's, for each of them."""
        found = sorted(links.referrers_on_site(site, self.tables, target))
        by_type: dict[str, list[int]] = {}
        for other_type, other_id in found:
            by_type.setdefault(other_type, []).append(other_id)
        for other_type, ids in by_type.items():
            et = self.tables[other_type]
            site.fetch_many(other_type, self._versions(conn, et, ids), et.cached_fields())
        for other_type, other_id in found:
            self._fetch_into(conn, site, other_type, other_id, None, referrers=referrers)

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

    # --- a batch's entities, asked at once --------------------------------------------------------------

    @staticmethod
    def _versions(conn: sa.Connection, et: EntityTable, ids: list[int]) -> dict[int, Any]:
        """Each id's cached row version (``_cache_updated_at``; None: not held), read before the
        site is asked about them (see Prefetched)."""
        t = et.table
        versions: dict[int, Any] = dict.fromkeys(ids)
        versions.update(conn.execute(sa.select(t.c.id, t.c._cache_updated_at).where(t.c.id.in_(ids))).all())
        return versions

    def _will_fetch(self, event: dict) -> tuple[str, int] | None:
        """The entity applying ``event`` will most likely read from the site (a creation, a
        revival, a change the event cannot carry), or None."""
        if is_retired_back_reference(event) or is_schema_event(event):
            return None
        parsed = parse(event)
        if parsed is None or parsed.entity_id is None or parsed.entity_type not in self.tables:
            return None
        if parsed.action in ("New", "Revival"):
            return parsed.entity_type, parsed.entity_id
        if parsed.action != "Change":
            return None
        handler = self.tables[parsed.entity_type].fields.get(parsed.field or "")
        if handler is None or not handler.cached or carries_value(parsed, event.get("meta") or {}, handler):
            return None
        return parsed.entity_type, parsed.entity_id

    def prefetch(self, events: list[dict]) -> Prefetched:
        """Ask the site, one find per type, about the entities ``events`` will read from it.

        Each row's version is read first, then the site asked (see Prefetched). A type the site
        refuses to answer for (a field it no longer has, say) is left to the events to ask about
        one by one; the site being down stops the poll as any read would.
        """
        prefetched = Prefetched()
        wanted: dict[str, set[int]] = {}
        for event in events:
            found = self._will_fetch(event)
            if found is not None:
                wanted.setdefault(found[0], set()).add(found[1])
        for entity_type, ids in sorted(wanted.items()):
            et = self.tables[entity_type]
            with self.engine.connect() as conn:
                versions = self._versions(conn, et, sorted(ids))
            try:
                prefetched.ask(self.remote, entity_type, versions, et.cached_fields())
            except SiteRefused as e:
                log.info("event=prefetch_refused entity_type=%s ids=%d error=%r", entity_type, len(ids), str(e)[:200])
        return prefetched

    # --- one event -----------------------------------------------------------------------------------

    def apply(self, conn: sa.Connection, event: dict, site: SiteAnswers) -> str:
        """Apply one event inside ``conn``'s transaction; return what was done (for logs).

        Everything it needs from the site comes from ``site``; when that lacks an answer the
        caller rolls back, asks, and applies again (see SiteAnswers)."""
        # What the event changes started being true at the event's time (the versions kept in
        # history say so; see sgcache.store.history).
        self._event_at = aware(event.get("created_at"))
        about = auth_subject(event)
        if about is not None:
            # Who callers are and what they may see may have changed: every proxy forgets what it
            # remembered of them (cached or not, whatever else the event does).
            store_state.bump_auth_epoch(conn, self.tables.state, f"event {event.get('id')} {about}")
        if is_retired_back_reference(event):
            return self._retired_back_reference(conn, site, event)
        if is_schema_event(event):
            return self._schema_event(conn, event)
        parsed = parse(event)
        if parsed is None:
            return "skipped: not a lifecycle event"
        if parsed.entity_id is None:
            return "skipped: no entity"
        if parsed.entity_type not in self.tables:
            return self._apply_slim(conn, site, parsed, event)
        if parsed.action in ("New", "Revival"):
            return self._apply_new(conn, site, parsed, event["id"])
        if parsed.action == "Retirement":
            return self._apply_retirement(conn, site, parsed, event)
        return self._apply_change(conn, site, parsed, event)

    def _apply_slim(self, conn: sa.Connection, site: SiteAnswers, parsed: Parsed, event: dict) -> str:
        """An event about a type the schema leaves out: its slim record follows (see
        sgcache.store.slim); anything but its name, project and retired flag is not held."""
        st = self.tables.state
        row = conn.execute(sa.select(st.slim_types).where(st.slim_types.c.entity_type == parsed.entity_type)
                           ).mappings().first()
        if row is None or row["error"] is not None:
            return "skipped: type not cached"
        t = slim.SlimType(parsed.entity_type, row["identifier"], bool(row["has_project"]), bool(row["has_updated_at"]))
        event_id = event["id"]
        if parsed.action == "Retirement":
            slim.set_active(conn, st.slim, t.name, [parsed.entity_id], False, event_id=event_id)
            return "slim retired"
        meta = event.get("meta") or {}
        held = conn.execute(sa.select(st.slim.c.id).where(st.slim.c.entity_type == t.name,
                                                          st.slim.c.id == parsed.entity_id)).first() is not None
        if parsed.action == "Change" and held:
            if parsed.field not in (t.identifier, "project"):
                return "skipped: field not held"
            new = meta.get("new_value")
            if parsed.field == t.identifier and "new_value" in meta and "actual_attribute_changed" not in meta \
                    and (new is None or isinstance(new, str)):
                slim.upsert(conn, st.slim, [{"entity_type": t.name, "id": parsed.entity_id, "name": new}],
                            event_id=event_id, fields=("name",))
                return "slim renamed"
        # New, revived, or met for the first time: what the site says now.
        fields = sorted({"id", *([t.identifier] if t.identifier else []), *(["project"] if t.has_project else [])})
        entity, active = site.fetch(t.name, parsed.entity_id, fields)
        if entity is None:
            return "slim: not on the site"
        slim.upsert(conn, st.slim, [slim.record(entity, t, active=active)], event_id=event_id)
        return "slim fetched"

    def _apply_new(self, conn: sa.Connection, site: SiteAnswers, parsed: Parsed, event_id: int) -> str:
        self._fetch_into(conn, site, parsed.entity_type, parsed.entity_id, event_id, referrers=False)
        if parsed.action == "Revival":
            # Rows read while it was retired saw their links to it as None: read them again.
            self._fetch_referrers(conn, site, (parsed.entity_type, parsed.entity_id), referrers=True)
        return "fetched"

    def _apply_retirement(self, conn: sa.Connection, site: SiteAnswers, parsed: Parsed, event: dict) -> str:
        event_id = event["id"]
        if self._newer_than(conn, parsed.entity_type, parsed.entity_id, event):
            self._fetch_into(conn, site, parsed.entity_type, parsed.entity_id, event_id)
        elif self.writer.retire(parsed.entity_type, [parsed.entity_id], event_id=event_id, conn=conn,
                                changed_at=self._event_at):
            values = stamp(self.tables[parsed.entity_type], event)
            if values:
                self.writer.upsert(parsed.entity_type, [{"id": parsed.entity_id, **values}], event_id=event_id,
                                   conn=conn, other_sides=OTHER_SIDES_NONE, changed_at=self._event_at)
        else:
            # Never held, or the row carries a later event's stamp while still active: do not
            # drop the retirement, read what the entity is on the site now (as a Change does).
            self._fetch_into(conn, site, parsed.entity_type, parsed.entity_id, event_id)
        return "retired"

    def _apply_change(self, conn: sa.Connection, site: SiteAnswers, parsed: Parsed, event: dict) -> str:
        et = self.tables[parsed.entity_type]
        event_id = event["id"]
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
        if carries_value(parsed, meta, handler) and not self._newer_than(conn, parsed.entity_type, parsed.entity_id,
                                                                          event):
            entity = {"type": parsed.entity_type, "id": parsed.entity_id, parsed.field: meta["new_value"],
                      **stamp(et, event)}
            try:
                # A link's other side has its own back-reference event: nothing to queue.
                if self.writer.upsert(parsed.entity_type, [entity], event_id=event_id, conn=conn,
                                      other_sides=OTHER_SIDES_NONE, changed_at=self._event_at):
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
            if self.on_schema_change is None:
                log.warning("event=schema_changed entity_type=%s field=%s hint='update the schema file, "
                            "migrate, and run sgcache scan --full --types %s'", owner, meta.get("field_name"), owner)
            else:  # followed (schema.follow: follow): the watcher changes the schema after this poll
                log.info("event=schema_changed entity_type=%s field=%s note='followed after this poll'", owner,
                         meta.get("field_name"))
        if self.on_schema_change is not None:
            self.on_schema_change(owner, meta.get("field_name"))
        return "schema change noted"
