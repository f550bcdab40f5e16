"""Slim records of the types the schema file leaves out: listed in full once, then scanned by
``updated_at`` with the cached types (see :mod:`sgcache.store.slim`).

Which types, and which field names their links, comes from the site's own schema (the copy
the proxies share, read by sgcache's script after each schema change), each time a listing
starts: a type added on the site is listed at the next scan. A type the site refuses to list,
or whose links are named by a field the cache cannot hold as text, is recorded with the reason
and never trusted (links to it pass through). Rows are stamped as of the watcher's cursor when
the listing began, as the full import does, so an event applied meanwhile is never undone.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import logging
import threading
import time

import sqlalchemy as sa

from sgcache.query.site_schema import SiteSchema
from sgcache.schema.site import schema_from_site
from sgcache.store import slim
from sgcache.store.slim import SlimType
from sgcache.sync.progress import Progress
from sgcache.sync.remote import Remote, SiteError, SiteRefused, Stopped
from sgcache.sync.scanbase import ScanBase, TypeReport, aware, now

log = logging.getLogger("sgcache.sync.scanner")


class SlimScans(ScanBase):
    """Lists and scans the slim records of every type on the site the schema file leaves out."""

    def slim_types_on_site(self) -> tuple[dict[str, SlimType], dict[str, str]]:
        """(the types to hold as slim records, {type: why not} for those that cannot be)."""
        # The copy of the site's schema the proxies share (read once after each schema change),
        # not a new schema_read every scan: on a real site that is megabytes.
        fields, _ = SiteSchema(self.engine, self.tables, self._site_schema).get()
        schema = schema_from_site(fields)
        usable: dict[str, SlimType] = {}
        refused: dict[str, str] = {}
        excluded = set(self.config.slim_exclude)
        for t in schema:
            if t.name in self.tables or t.name in excluded:
                continue
            ident = t.identifier
            if ident is not None and t.fields[ident].data_type not in slim.NAME_TYPES:
                refused[t.name] = f"its links are named by {ident} ({t.fields[ident].data_type})"
                continue
            project = t.fields.get("project")
            has_project = project is not None and project.data_type == "entity" \
                and project.entity_types == ["Project"]
            usable[t.name] = SlimType(t.name, ident, has_project, "updated_at" in t.fields)
        self._phantoms = self._named_but_absent(schema)
        return usable, refused

    def _named_but_absent(self, schema) -> list[str]:
        """Types that link fields allow but the site does not have (``Reply.entity`` lists
        ``AppWelcome`` and ``Banner`` on many sites): no entity of them can exist, so a link to
        one never resolves, and they are recorded as listed with no records."""
        named = {name for t in [*schema, *(et.entity_type for et in self.tables)] for f in t.fields.values()
                 if f.data_type in ("entity", "multi_entity") for name in f.entity_types}
        return sorted(n for n in named if n not in schema.types and n not in self.tables
                      and n not in self.config.slim_exclude)

    def _site_schema(self) -> tuple[dict, dict]:
        return (self.remote.schema_read(),
                self.remote.call("schema_entity_read", lambda: self.remote.sg.schema_entity_read()))

    def _slim_state(self) -> dict[str, dict]:
        t = self.tables.state.slim_types
        with self.engine.connect() as conn:
            return {r["entity_type"]: dict(r) for r in conn.execute(t.select()).mappings()}

    def slim_scan(self, *, full: bool = False, changes: bool = True) -> list[TypeReport]:
        """List in full the types never listed (every type with ``full``), and (with ``changes``)
        scan the others for what changed since their watermark."""
        if self.config.slim_records == "none":
            return []
        try:
            usable, refused = self.slim_types_on_site()
        except SiteError as e:
            log.warning("event=slim_scan_skipped reason=%r", str(e))
            return []
        previous = self._slim_state()
        with self.engine.begin() as conn:
            for name, why in refused.items():
                if previous.get(name, {}).get("error") != why:
                    log.info("event=slim_type_refused entity_type=%s reason=%r", name, why)
                slim.save_type(conn, self.tables.state.slim_types, name, identifier=None, has_project=False,
                               has_updated_at=False, full_scan_at=None, error=why)
            for name in self._phantoms:
                if previous.get(name, {}).get("full_scan_at") is None:
                    log.info("event=slim_type_absent entity_type=%s note='named by link fields, not on the site'",
                             name)
                    slim.save_type(conn, self.tables.state.slim_types, name, identifier=None, has_project=False,
                                   has_updated_at=False, full_scan_at=now(), error=None)
        projects = self.recorded_projects() or []
        outside = self._outside_types(projects)
        todo = sorted(usable) + sorted(outside)
        if not todo:
            return []
        progress = Progress(f"slim records ({len(todo)} types)", len(todo), bar=self.progress)
        as_of = self._as_of()  # before any listing starts (see ScanBase._as_of)
        local = threading.local()
        counted = threading.Lock()

        def remote() -> Remote:
            # shotgun_api3 holds one connection: a Remote per thread (the shared one when only one runs).
            if threads == 1:
                return self.remote
            if getattr(local, "remote", None) is None:
                local.remote = self.remote.sibling()
            return local.remote

        def one(name: str) -> TypeReport:
            if self.stop is not None and self.stop.is_set():
                raise Stopped("slim records: stopping between two types")
            state = previous.get(name)
            t = usable.get(name) or outside[name]
            changed = state is not None and (state["identifier"] != t.identifier
                                             or bool(state["has_project"]) != t.has_project
                                             or bool(state["has_updated_at"]) != t.has_updated_at)
            try:
                if name in outside:
                    # A cached type's entities outside the cached projects: listed once; the type's
                    # own scans and the watcher keep them in step (_import, _fetch_into).
                    if full or state is None or state["full_scan_at"] is None or changed:
                        return self._slim_full(t, remote(), as_of, [["project", "not_in", [
                            {"type": "Project", "id": p} for p in projects]]])
                    return TypeReport(name)
                if full or state is None or state["full_scan_at"] is None or changed:
                    return self._slim_full(t, remote(), as_of)
                if changes:
                    return self._slim_incremental(t, state, remote(), as_of)
                return TypeReport(name)
            except SiteRefused as e:
                # One type the site will not list (a system type, a permission): the others go on.
                with self.engine.begin() as conn:
                    slim.save_type(conn, self.tables.state.slim_types, name, identifier=t.identifier,
                                   has_project=t.has_project, has_updated_at=False,
                                   full_scan_at=None, error=str(e)[:500])
                log.warning("event=slim_type_failed entity_type=%s error=%r", name, str(e)[:200])
                return TypeReport(name, skipped=str(e)[:200])
            finally:
                with counted:
                    progress.advance(1)

        # Types are listed scanner.concurrency at a time, each over its own connection to the site
        # (one at a time when the site's requests are rate limited, or the Remote is a given client).
        threads = self.fetch_threads()
        try:
            if threads == 1:
                reports = [one(name) for name in todo]
            else:
                with concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="slim-scan") as pool:
                    reports = list(pool.map(one, todo))
        finally:
            progress.close()
        return reports

    def _slim_fields(self, t: SlimType) -> list[str]:
        return sorted({"id", *(["updated_at"] if t.has_updated_at else []), *([t.identifier] if t.identifier else []),
                       *(["project"] if t.has_project else [])})

    def _slim_pages(self, t: SlimType, remote: Remote, filters: list, as_of: int | None, seen: set[int] | None
                    ) -> tuple[int, dt.datetime | None]:
        """Page both active and retired entities in; return (count, newest updated_at)."""
        count, newest = 0, None
        records = self.tables.state.slim
        for retired in (False, True):
            for page in remote.pages(t.name, self._slim_fields(t), filters, retired=retired,
                                          page_size=self.config.page_size):
                if self.stop is not None and self.stop.is_set():
                    raise Stopped(f"slim records of {t.name}: stopping after {count}")
                with self.engine.begin() as conn:
                    slim.upsert(conn, records, [slim.record(e, t, active=not retired) for e in page], event_id=as_of)
                count += len(page)
                for e in page:
                    if seen is not None:
                        seen.add(e["id"])
                    updated = aware(e.get("updated_at"))
                    if updated is not None and (newest is None or updated > newest):
                        newest = updated
        return count, newest

    def _outside_types(self, projects: list[int]) -> dict[str, SlimType]:
        """With only some projects cached: the cached project-scoped types, whose entities outside
        those projects are held as slim records (links to them are named from them)."""
        if not projects:
            return {}
        out = {}
        for et in self.tables:
            if "project" not in et.fields:
                continue
            ident = et.entity_type.identifier
            if ident is not None and not (et.cached(ident) and et.fields[ident].field.data_type in slim.NAME_TYPES):
                continue  # its links cannot be named from slim records: links out of the projects pass through
            out[et.name] = SlimType(et.name, ident, True, "updated_at" in et.fields)
        return out

    def write_outside(self, conn, et_name: str, entities: list[dict], *, active: bool, event_id: int | None) -> None:
        """Entities of a cached type that lie outside the cached projects, as the site returned
        them: kept as slim records (with only some projects cached)."""
        if not entities:
            return
        ident = self.tables[et_name].entity_type.identifier
        t = SlimType(et_name, ident, True)
        slim.upsert(conn, self.tables.state.slim, [slim.record(e, t, active=active) for e in entities],
                    event_id=event_id)

    def forget_outside_listings(self, conn) -> None:
        """A new project set: the cached types' listings of what lies outside it are redone."""
        names = [et.name for et in self.tables]
        st = self.tables.state
        conn.execute(sa.delete(st.slim).where(st.slim.c.entity_type.in_(names)))
        conn.execute(sa.update(st.slim_types).where(st.slim_types.c.entity_type.in_(names)).values(full_scan_at=None))

    def _slim_full(self, t: SlimType, remote: Remote, as_of: int | None, filters: list | None = None) -> TypeReport:
        started, scan_started = time.monotonic(), now()
        seen: set[int] = set()
        count, newest = self._slim_pages(t, remote, filters or [], as_of, seen)
        with self.engine.begin() as conn:
            missing = slim.retire_missing(conn, self.tables.state.slim, t.name, seen, as_of=as_of)
            slim.save_type(conn, self.tables.state.slim_types, t.name, identifier=t.identifier,
                           has_project=t.has_project, has_updated_at=t.has_updated_at, full_scan_at=scan_started,
                           watermark=newest or scan_started, last_scan_at=scan_started, error=None)
        seconds = time.monotonic() - started
        log.info("event=slim_full_scan entity_type=%s read=%d retired_missing=%d seconds=%.2f", t.name, count,
                 missing, seconds)
        return TypeReport(t.name, written=count, retired_missing=missing, seconds=seconds)

    def _slim_incremental(self, t: SlimType, state: dict, remote: Remote, as_of: int | None) -> TypeReport:
        started, scan_started = time.monotonic(), now()
        watermark = aware(state["watermark"]) or aware(state["full_scan_at"])
        if not t.has_updated_at:  # nothing says what changed: list it all again
            return self._slim_full(t, remote, as_of)
        since = watermark - dt.timedelta(seconds=self.config.overlap)
        count, newest = self._slim_pages(t, remote, [["updated_at", "greater_than", since]], as_of, None)
        with self.engine.begin() as conn:
            slim.update_type(conn, self.tables.state.slim_types, t.name,
                             watermark=max(v for v in (newest, watermark) if v is not None), last_scan_at=scan_started)
        return TypeReport(t.name, written=count, seconds=time.monotonic() - started)

