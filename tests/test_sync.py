"""The sync engine (sgcache/sync) end to end: full and incremental scans, the event-log watcher,
``sgcache status`` and leadership.

The upstream is always a stand-in site (:class:`~sgcache.mocksite.MockSite`) served over real
HTTP by :class:`~sgcache.mocksite.server.MockServer` and read with the real ``shotgun_api3``
client; every test that touches the cache runs on SQLite and on PostgreSQL (the ``engine``
fixture). Each site runs on a :class:`FakeClock`: timestamps are exact, and late event-log
commits (``late_events``) are released by advancing that clock rather than by sleeping. Where a
test must wait for the watcher it polls a condition with a deadline.

A test marked ``xfail(strict=True, reason="BUG: ...")`` shows a bug found while writing them:
it passes once the bug is fixed (and then fails until the mark is removed).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests
import shotgun_api3
import sqlalchemy as sa
from conftest import ensure_migrated, schema_copy

from sgcache.config import load_config
from sgcache.mocksite import MockSite
from sgcache.mocksite.server import MockServer
from sgcache.mocksite.studio import build_studio
from sgcache.query import Uncertain
from sgcache.query.paths import Context
from sgcache.schema import load
from sgcache.store import state
from sgcache.store.reader import read_entities
from sgcache.store.readstate import load_state
from sgcache.store.tables import Tables
from sgcache.store.writer import Writer
from sgcache.sync import cursor as cursors
from sgcache.sync import report
from sgcache.sync import watcher as watcher_module
from sgcache.sync.compare import diff
from sgcache.sync.leader import Leadership
from sgcache.sync.remote import Remote
from sgcache.sync.scanner import Scanner
from sgcache.sync.watcher import Watcher, dead_letters

ROOT = Path(__file__).resolve().parent.parent
CACHE_SCHEMA = ROOT / "schema" / "demo.yml"
SCRIPT = {"script_name": "sgcache", "api_key": "sgcache-demo-key"}
QUIET = {"script_name": "quiet-script", "api_key": "quiet-demo-key"}
WATCHER_LOG = "sgcache.sync.watcher"


# --- helpers ---------------------------------------------------------------------------------------


class FakeClock:
    """The site's clock: frozen unless a test advances it (late events wait for it too)."""

    def __init__(self):
        self.now = dt.datetime.now(dt.UTC).replace(microsecond=0)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float = 1) -> None:
        self.now += dt.timedelta(seconds=seconds)


def link(entity_type: str, entity_id: int) -> dict:
    return {"type": entity_type, "id": entity_id}


def wait_for(condition, timeout: float = 15.0, interval: float = 0.02, what: str = "condition"):
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def run_watcher_until(watcher: Watcher, condition, timeout: float, what: str) -> None:
    """Run ``watcher`` in a thread, as ``sgcache watch`` does, until ``condition`` holds."""
    stop = threading.Event()
    runner = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
    runner.start()
    try:
        wait_for(condition, timeout, what=what)
    finally:
        stop.set()
        runner.join(10)


def listening(server: MockServer) -> bool:
    try:
        socket.create_connection((server.host, server.port), timeout=1).close()
        return True
    except OSError:
        return False


def stop_in_background(server: MockServer) -> None:
    """MockServer.stop() waits for werkzeug's poll loop; don't make every test wait for it."""
    threading.Thread(target=server.stop, daemon=True).start()


def small_world(site: MockSite, shots: int = 3) -> dict:
    """A hand-made site: two projects, a sequence each, three assets each, ``shots`` shots each
    with a task, and one retired shot."""
    ids: dict = {}
    ids["projects"] = [site.load_entity("Project", {"name": name}) for name in ("Alpha", "Beta")]
    ids["sequences"], ids["shots"], ids["assets"], ids["tasks"] = [], [], [], []
    for p, project in enumerate(ids["projects"]):
        plink = link("Project", project)
        seq = site.load_entity("Sequence", {"code": f"SQ{p}", "project": plink})
        ids["sequences"].append(seq)
        assets = [site.load_entity("Asset", {"code": f"A{p}{i}", "project": plink}) for i in range(3)]
        ids["assets"] += assets
        for i in range(shots):
            shot = site.load_entity("Shot", {
                "code": f"SH{p}{i}", "project": plink, "sg_sequence": link("Sequence", seq),
                "description": f"shot {p}{i}", "assets": [link("Asset", assets[i % 3])]})
            ids["shots"].append(shot)
            ids["tasks"].append(site.load_entity("Task", {
                "content": f"anim {p}{i}", "project": plink, "entity": link("Shot", shot)}))
    ids["retired_shot"] = site.load_entity("Shot", {"code": "OLD", "project": link("Project", ids["projects"][0])},
                                           retired=True)
    return ids


@dataclasses.dataclass
class Sync:
    """One stand-in site, its server, a migrated cache database and settings for both."""

    site: MockSite
    server: MockServer
    clock: FakeClock
    engine: sa.Engine
    tables: Tables
    config: object
    world: dict

    # Each watcher, scanner and check gets its own Remote: a shotgun_api3 client is not thread safe.
    def remote(self, **kwargs) -> Remote:
        return Remote(self.config.site, **kwargs)

    def scanner(self, **settings) -> Scanner:
        return Scanner(self.engine, self.tables, self.remote(), dataclasses.replace(self.config.scanner, **settings),
                       progress=False)

    def watcher(self, remote: Remote | None = None, **settings) -> Watcher:
        return Watcher(self.engine, self.tables, remote or self.remote(),
                       dataclasses.replace(self.config.watcher, **settings))

    def sg(self, auth: dict = SCRIPT) -> shotgun_api3.Shotgun:
        client = shotgun_api3.Shotgun(self.server.url, connect=False, **auth)
        client.config.timeout_secs = 10
        return client

    def quiet(self) -> shotgun_api3.Shotgun:
        return self.sg(QUIET)

    def cursor(self) -> cursors.Cursor | None:
        with self.engine.connect() as conn:
            return cursors.load(conn, self.tables.state)

    def newest_event_id(self) -> int:
        """The site's newest event id, visible or still hidden (a late commit)."""
        ids = self.site.emu._ids["EventLogEntry"]
        return ids[-1] if ids else 0

    def drain(self, watcher: Watcher) -> None:
        """Poll until a poll reads less than a full batch."""
        while watcher.poll_once() >= watcher.config.batch_size:
            pass

    def caught_up(self) -> bool:
        cursor = self.cursor()
        return cursor is not None and cursor.max_applied_id >= self.newest_event_id() and not cursor.gaps

    def catch_up(self, watcher: Watcher, timeout: float = 20.0) -> None:
        """Release every late event (advance the site's clock), then poll until all are applied."""
        self.clock.advance(10)

        def done():
            self.drain(watcher)
            return self.caught_up()

        wait_for(done, timeout, what="the watcher to catch up")

    def applied_ids(self) -> list[int]:
        t = self.tables.state.applied
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(t.c.event_id).order_by(t.c.event_id)).scalars())

    def diff(self, types: list[str] | None = None):
        return diff(self.engine, self.tables, self.remote(), types)

    def row(self, entity_type: str, entity_id: int, *fields: str) -> dict:
        with self.engine.connect() as conn:
            rows = read_entities(conn, self.tables, entity_type, ids=[entity_id], fields=list(fields),
                                 include_meta=True)
        assert rows, f"{entity_type} {entity_id} is not in the cache"
        return rows[0]

    def type_state(self, entity_type: str) -> dict | None:
        t = self.tables.state.types
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t).where(t.c.entity_type == entity_type)).mappings().first()
        return dict(row) if row else None

    def events(self, after: int = 0) -> list[dict]:
        return self.sg().find("EventLogEntry", [["id", "greater_than", after]],
                              ["event_type", "attribute_name", "meta", "entity"],
                              order=[{"field_name": "id", "direction": "asc"}])


@pytest.fixture(scope="session")
def cache_tables() -> Tables:
    """The cache's tables for schema/demo.yml (30 entity types)."""
    return Tables(load(CACHE_SCHEMA))


@pytest.fixture
def make_sync(engine, site_schema, cache_tables, tmp_path):
    """make_sync(studio=False, late_events=0, world_shots=3, **settings) -> Sync, with the studio of
    build_studio (scale 1) or small_world; settings are "section.key": value."""
    servers: list[MockServer] = []
    empty = tmp_path / "empty-settings.yml"
    empty.write_text("", encoding="utf-8")  # never ./sgcache.yml of the working directory

    def make(*, studio: bool = False, late_events: float = 0.0, world_shots: int = 3, **settings) -> Sync:
        clock = FakeClock()
        site = MockSite(schema_copy(site_schema), late_events=late_events, seed=1, clock=clock,
                        file_dir=tmp_path / "files")
        if studio:
            build_studio(site, scale=1)
            world = {}
        else:
            clock.advance(-86400)  # the data is a day old, far behind any scan's overlap window
            world = small_world(site, world_shots)
            clock.advance(86400)
        server = MockServer(site).start()
        servers.append(server)
        ensure_migrated(engine, cache_tables)
        overrides = {"site.base_url": server.url, "site.script_name": "sgcache", "site.api_key": "sgcache-demo-key",
                     "site.timeout": "10", "database.url": engine.url.render_as_string(hide_password=False),
                     "watcher.gap_timeout": "60", "watcher.min_poll_interval": "0.01",
                     "watcher.poll_interval": "0.1",
                     # The slim records of the ~45 types demo.yml leaves out have their own tests
                     # (tests/test_slim.py); here they would only add two listings per type per import.
                     "scanner.slim_records": "none"}
        overrides.update({k: str(v) for k, v in settings.items()})
        config = load_config(empty, env={}, overrides=overrides)
        return Sync(site, server, clock, engine, cache_tables, config, world)

    yield make
    for server in servers:
        stop_in_background(server)


@pytest.fixture
def sync(make_sync) -> Sync:
    """A small hand-made site, fully imported into the cache (cursor started)."""
    s = make_sync()
    s.scanner().full()
    return s


# --- full import -------------------------------------------------------------------------------------


def test_full_scan_makes_every_cached_type_match_the_site(make_sync):
    s = make_sync(studio=True)
    report_ = s.scanner().full()
    assert len(report_.types) == len(s.tables.entities) == 30
    assert report_.written > 4000
    assert s.diff() == []


def test_full_scan_records_when_each_type_was_fully_imported(make_sync):
    s = make_sync()
    before = dt.datetime.now(dt.UTC)
    s.scanner().full()
    after = dt.datetime.now(dt.UTC)
    for et in s.tables:
        st = s.type_state(et.name)
        assert st is not None, et.name
        assert before <= st["full_scan_at"] <= after, et.name
        assert st["needs_rescan"] is False
        assert st["incremental_scans"] == 0


def test_full_scan_clears_the_backfill_marks_of_the_types_it_imports(make_sync):
    s = make_sync()
    with s.engine.connect() as conn:
        marked = state.backfill_marks(conn, s.tables.state)
    assert set(marked) == set(s.tables.entities)  # a new database: every field awaits a full import
    s.scanner().full(types=["Shot", "Asset"])
    with s.engine.connect() as conn:
        marked = state.backfill_marks(conn, s.tables.state)
    assert set(marked) == set(s.tables.entities) - {"Shot", "Asset"}
    s.scanner().full()
    with s.engine.connect() as conn:
        assert state.backfill_marks(conn, s.tables.state) == {}


def test_full_scan_starts_the_cursor_at_the_newest_event_before_importing(make_sync, monkeypatch):
    """The cursor is the site's newest event id as of the start: a write made while the import
    runs is after it, so the watcher replays it."""
    s = make_sync()
    sg = s.sg()
    shot = s.world["shots"][0]
    sg.update("Shot", shot, {"description": "before the import"})
    newest_before = s.newest_event_id()
    assert newest_before > 0
    scanner = s.scanner()
    real_count = Remote.count
    during = []
    lock = threading.Lock()

    def count_and_write(remote, entity_type, filters):
        with lock:
            if not during:  # the first type being imported: someone writes on the site meanwhile
                during.append(sg.update("Shot", shot, {"description": "during the import"}))
        return real_count(remote, entity_type, filters)

    monkeypatch.setattr(Remote, "count", count_and_write)  # the parallel import's connections too
    scanner.full()
    assert s.cursor().max_applied_id == newest_before
    assert s.cursor().gaps == {}
    assert s.newest_event_id() > newest_before
    watcher = s.watcher()
    s.drain(watcher)
    assert s.row("Shot", shot, "description")["description"] == "during the import"
    assert s.diff() == []


def test_full_scan_of_one_project_holds_only_its_rows_and_every_type_without_a_project(make_sync):
    s = make_sync(studio=True)
    sg = s.sg()
    projects = sorted(p["id"] for p in sg.find("Project", [], ["id"]))
    assert len(projects) > 1
    chosen = projects[0]
    s.scanner().full(projects=[chosen])
    with s.engine.connect() as conn:
        meta = s.tables.state.meta
        assert json.loads(conn.execute(sa.select(meta.c.value).where(meta.c.key == "projects")).scalar()) == [chosen]
    scoped = [et for et in s.tables if "project" in et.fields]
    assert {"Shot", "Task", "Version", "Asset"} <= {et.name for et in scoped}
    checked = 0
    for et in scoped:
        handler = et.fields["project"]
        with s.engine.connect() as conn:
            cached = dict(conn.execute(sa.select(et.table.c.id, et.table.c[handler.id_column])).all())
        assert set(cached.values()) <= {chosen}, et.name
        site_ids = {e["id"] for retired in (False, True)
                    for e in sg.find(et.name, [["project", "is", link("Project", chosen)]], ["id"],
                                     retired_only=retired)}
        assert set(cached) == site_ids, et.name
        checked += len(site_ids)
    assert checked > 1000
    # Types without a project field are imported whole.
    for name in ("HumanUser", "Project", "Department"):
        et = s.tables[name]
        assert "project" not in et.fields
        with s.engine.connect() as conn:
            cached = set(conn.execute(sa.select(et.table.c.id)).scalars())
        site_ids = {e["id"] for retired in (False, True) for e in sg.find(name, [], ["id"], retired_only=retired)}
        assert cached == site_ids and len(site_ids) > 1, name


def test_reimporting_one_type_keeps_the_recorded_project_set(make_sync):
    s = make_sync()
    chosen = s.world["projects"][0]
    s.scanner().full(projects=[chosen])
    s.scanner().full(types=["Shot"])
    assert report.status(s.engine, s.tables)["projects"] == [chosen]
    shot = s.tables["Shot"]
    with s.engine.connect() as conn:
        column = shot.table.c[shot.fields["project"].id_column]
        assert set(conn.execute(sa.select(column)).scalars()) == {chosen}


def test_full_scan_with_another_project_set_drops_the_rows_of_the_old_projects(make_sync):
    s = make_sync()
    first, second = s.world["projects"]
    s.scanner().full(projects=[first])
    s.scanner().full(projects=[second])
    assert report.status(s.engine, s.tables)["projects"] == [second]
    assert set(shot_projects(s).values()) == {second}


def test_full_where_needed_imports_only_types_never_imported_or_flagged(make_sync):
    s = make_sync()
    s.scanner().full(types=["Shot", "Asset", "Task"])
    with s.engine.begin() as conn:
        t = s.tables.state.types
        conn.execute(sa.update(t).where(t.c.entity_type == "Asset").values(needs_rescan=True))
    shot_import = s.type_state("Shot")["full_scan_at"]
    done = s.scanner().full_where_needed()
    imported = {t.entity_type for t in done.types}
    assert imported == set(s.tables.entities) - {"Shot", "Task"}
    assert s.type_state("Shot")["full_scan_at"] == shot_import
    assert s.type_state("Asset")["needs_rescan"] is False
    assert s.scanner().full_where_needed().types == []


def test_full_where_needed_imports_a_type_with_fields_marked_for_backfill(make_sync):
    from sgcache.store.state import backfill_marks

    s = make_sync()
    s.scanner().full()
    with s.engine.begin() as conn:  # what `sgcache schema migrate` leaves after adding a field
        f = s.tables.state.fields
        conn.execute(sa.update(f).where(f.c.entity_type == "Asset", f.c.field_name == "code")
                     .values(needs_backfill=True, backfill_reason="new field"))
    assert [t.entity_type for t in s.scanner().full_where_needed().types] == ["Asset"]
    with s.engine.connect() as conn:
        assert backfill_marks(conn, s.tables.state) == {}
    assert s.scanner().full_where_needed().types == []


# --- incremental scans and reconcile ---------------------------------------------------------------


def test_incremental_scan_picks_up_writes_that_made_no_event(sync):
    s = sync
    quiet = s.quiet()
    start = s.newest_event_id()
    s.clock.advance(5)
    shot, gone, back = s.world["shots"][0], s.world["shots"][1], s.world["retired_shot"]
    quiet.update("Shot", shot, {"description": "quietly changed", "sg_cut_in": 1001})
    new = quiet.create("Shot", {"code": "QUIET", "project": link("Project", s.world["projects"][0])})["id"]
    quiet.delete("Shot", gone)
    quiet.revive("Shot", back)
    assert s.newest_event_id() == start  # nothing in the event log
    s.drain(s.watcher())
    assert s.row("Shot", shot, "description")["description"] == "shot 00"
    s.scanner().incremental()
    row = s.row("Shot", shot, "description", "sg_cut_in", "updated_by")
    assert (row["description"], row["sg_cut_in"], row["updated_by"]) == (
        "quietly changed", 1001, link("ApiUser", s.site.scripts["quiet-script"].id))
    assert s.row("Shot", new, "code")["code"] == "QUIET"
    assert s.row("Shot", gone)["_active"] is False
    assert s.row("Shot", back)["_active"] is True
    assert s.diff() == []
    assert s.type_state("Shot")["incremental_scans"] == 1


def test_incremental_scan_skips_a_type_never_fully_imported(make_sync):
    s = make_sync()
    s.scanner().full(types=["Shot"])
    done = {t.entity_type: t for t in s.scanner().incremental(types=["Shot", "Asset"]).types}
    assert done["Asset"].skipped == "never fully imported"
    assert done["Shot"].skipped is None
    assert s.type_state("Asset") is None


def test_incremental_scan_updates_the_reverse_side_of_a_link_written_without_events(sync):
    s = sync
    quiet = s.quiet()
    seq, shot = s.world["sequences"][0], s.world["shots"][0]
    move_watermarks_past_the_world(s)
    new = quiet.create("Shot", {"code": "QUIET", "project": link("Project", s.world["projects"][0]),
                                "sg_sequence": link("Sequence", seq)})["id"]
    task = quiet.create("Task", {"content": "quiet", "project": link("Project", s.world["projects"][0]),
                                 "entity": link("Shot", shot)})["id"]
    s.scanner().incremental()
    assert link("Shot", new) in s.row("Sequence", seq, "shots")["shots"]
    assert link("Task", task) in s.row("Shot", shot, "tasks")["tasks"]
    assert s.diff() == []


def test_incremental_scan_restores_links_to_an_entity_revived_without_an_event(make_sync):
    s = make_sync()
    shot, task, asset, seq = s.world["shots"][3], s.world["tasks"][3], s.world["assets"][3], s.world["sequences"][1]
    s.quiet().delete("Shot", shot)
    s.scanner().full()  # reads the task, the asset and the sequence while the shot is retired
    assert s.row("Task", task, "entity")["entity"] is None
    move_watermarks_past_the_world(s)
    s.quiet().revive("Shot", shot)
    s.scanner().incremental()
    assert s.row("Shot", shot)["_active"] is True
    assert s.row("Task", task, "entity")["entity"] == link("Shot", shot)
    assert link("Shot", shot) in s.row("Asset", asset, "shots")["shots"]
    assert link("Shot", shot) in s.row("Sequence", seq, "shots")["shots"]
    assert s.diff() == []


def move_watermarks_past_the_world(s: Sync) -> None:
    """Rows written now (without events) move the Shot, Task, Asset and Sequence watermarks past
    the world's day-old rows, so the next incremental scan reads only what changed after."""
    quiet = s.quiet()
    quiet.update("Sequence", s.world["sequences"][0], {"description": "now"})
    quiet.update("Shot", s.world["shots"][0], {"sg_cut_out": 100})
    quiet.update("Asset", s.world["assets"][0], {"description": "now"})
    quiet.update("Task", s.world["tasks"][0], {"content": "now"})
    s.scanner().incremental()
    s.clock.advance(120)


def test_reverse_side_of_a_link_written_without_events_is_updated_after_the_watcher_read_the_entity(sync):
    s = sync
    old_shot, new_shot, task = s.world["shots"][1], s.world["shots"][2], s.world["tasks"][1]
    move_watermarks_past_the_world(s)
    s.quiet().update("Task", task, {"entity": link("Shot", new_shot)})  # no event: Shot.tasks change too
    s.sg().update("Task", task, {"task_assignees": [link("HumanUser", s.site.humans["artist"].id)]})
    s.drain(s.watcher())  # a multi-entity change: the watcher reads the whole task
    assert s.row("Task", task, "entity")["entity"] == link("Shot", new_shot)
    s.scanner().incremental()
    assert link("Task", task) not in s.row("Shot", old_shot, "tasks")["tasks"]
    assert link("Task", task) in s.row("Shot", new_shot, "tasks")["tasks"]
    assert s.diff(["Shot", "Task"]) == []


def test_a_row_read_again_for_a_revival_still_updates_the_other_side_of_its_changed_link(sync):
    # A shot revived and a task moved onto it, both without events: the Shot scan reads the task
    # again as a row linking to the revived shot, before the Task scan reads it as changed (and
    # then finds nothing changed). Whichever read writes the task first, the shot it left must
    # lose it from its tasks.
    s = sync
    revived, old_shot, task = s.world["shots"][2], s.world["shots"][1], s.world["tasks"][1]
    s.quiet().delete("Shot", revived)
    move_watermarks_past_the_world(s)
    assert s.row("Shot", revived)["_active"] is False
    s.quiet().revive("Shot", revived)
    s.quiet().update("Task", task, {"entity": link("Shot", revived)})
    s.scanner().incremental()
    assert link("Task", task) not in s.row("Shot", old_shot, "tasks")["tasks"]
    assert s.diff() == []


def test_status_shows_the_other_sides_queued_until_a_scan_reads_them(sync):
    s = sync
    old_shot, new_shot, task = s.world["shots"][0], s.world["shots"][1], s.world["tasks"][0]
    Writer(s.engine, s.tables).upsert("Task", [{"type": "Task", "id": task, "entity": link("Shot", new_shot)}])
    data = report.status(s.engine, s.tables)
    assert data["other_sides"]["queued"] == 2 and data["other_sides"]["oldest"] is not None
    assert "other sides of links to read again: 2" in report.format_status(data)
    s.quiet().update("Task", task, {"entity": link("Shot", new_shot)})
    assert s.scanner().incremental().other_sides >= 2  # the two shots, and what the scan itself queued
    data = report.status(s.engine, s.tables)
    assert data["other_sides"]["queued"] == 0
    assert "other sides of links" not in report.format_status(data)
    assert link("Task", task) not in s.row("Shot", old_shot, "tasks")["tasks"]


def test_a_list_set_without_events_clears_the_link_of_a_retired_entity_it_held(make_sync):
    # The site drops a retired shot from a sequence's shots when the list is set, though no read
    # of the list ever showed it (the import read it hidden): the retired shot's own sg_sequence
    # (read with retired_only) changes all the same.
    s = make_sync()
    seq, retired, kept = s.world["sequences"][0], s.world["shots"][2], s.world["shots"][1]
    s.quiet().delete("Shot", retired)
    s.scanner().full()
    s.clock.advance(120)  # the retirement is then older than any later scan's overlap
    move_watermarks_past_the_world(s)
    assert s.row("Shot", retired, "sg_sequence")["_active"] is False
    s.quiet().update("Sequence", seq, {"shots": [link("Shot", kept)]})
    s.scanner().incremental()
    stored = s.sg().find("Shot", [["id", "is", retired]], ["sg_sequence"], retired_only=True)
    assert stored and stored[0]["sg_sequence"] is None
    with s.engine.connect() as conn:
        t = s.tables["Shot"].table
        assert conn.execute(sa.select(t.c.sg_sequence__id).where(t.c.id == retired)).scalar() is None
    assert s.diff() == []


def test_every_write_queues_the_other_sides_of_the_links_it_changes_in_its_own_transaction(sync):
    # Whoever writes a changed link (the watcher at any depth, a scan, a proxy's read-back) queues
    # the entities on the other side with the write, so a process killed after it loses nothing.
    s = sync
    old_shot, new_shot, task = s.world["shots"][0], s.world["shots"][1], s.world["tasks"][0]
    writer = Writer(s.engine, s.tables)
    queue = s.tables.state.other_sides
    with pytest.raises(RuntimeError):
        with s.engine.begin() as conn:
            writer.upsert("Task", [{"type": "Task", "id": task, "entity": link("Shot", new_shot)}], conn=conn)
            raise RuntimeError("killed before the commit")
    with s.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(queue)).scalar() == 0
    writer.upsert("Task", [{"type": "Task", "id": task, "entity": link("Shot", new_shot)}])
    writer.upsert("Task", [{"type": "Task", "id": task, "content": "only text"}])  # no link in it: nothing more
    with s.engine.connect() as conn:
        queued = {(r.entity_type, r.entity_id): r.because for r in conn.execute(sa.select(queue))}
    assert queued == {("Shot", old_shot): f"Task {task}.entity", ("Shot", new_shot): f"Task {task}.entity"}
    s.quiet().update("Task", task, {"entity": link("Shot", new_shot)})  # the site agrees now
    s.scanner().incremental()  # every scan ends by reading what is queued
    with s.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(queue)).scalar() == 0
    assert link("Task", task) not in s.row("Shot", old_shot, "tasks")["tasks"]
    assert link("Task", task) in s.row("Shot", new_shot, "tasks")["tasks"]
    assert s.diff(["Shot", "Task"]) == []


def delete_upstream(site: MockSite, entity_type: str, entity_id: int) -> None:
    """Remove an entity from the stand-in without a retirement or an event (a hard delete)."""
    with site.lock:
        del site.emu._db[entity_type][entity_id]
        site.emu._ids[entity_type].remove(entity_id)
        site._read_cache.clear()


def test_full_scan_retires_a_row_deleted_upstream_without_an_event(sync):
    s = sync
    gone = s.world["shots"][1]  # not the highest id: reconcile only looks below the highest id listed
    assert s.row("Shot", gone)["_active"] is True
    delete_upstream(s.site, "Shot", gone)
    report_ = s.scanner().full(types=["Shot"])
    assert report_.types[0].retired_missing == 1
    assert s.row("Shot", gone)["_active"] is False
    assert s.diff(["Shot"]) == []


def test_reconcile_retires_a_row_deleted_upstream_on_every_nth_incremental_scan(sync):
    s = sync
    gone = s.world["shots"][2]
    delete_upstream(s.site, "Shot", gone)
    scanner = s.scanner(reconcile_every=3)
    for scan in (1, 2):
        done = scanner.incremental(types=["Shot"]).types[0]
        assert done.retired_missing == 0, f"scan {scan}"
        assert s.row("Shot", gone)["_active"] is True, f"scan {scan}"
    done = scanner.incremental(types=["Shot"]).types[0]
    assert done.retired_missing == 1
    assert s.row("Shot", gone)["_active"] is False
    assert s.type_state("Shot")["incremental_scans"] == 3
    assert s.diff(["Shot"]) == []


def test_full_scan_imports_text_that_looks_like_a_timestamp(make_sync):
    """shotgun_api3 turns every string of the YYYY-MM-DDTHH:MM:SSZ shape into a datetime, text
    fields included; the cache must store the text."""
    s = make_sync()
    shot = s.world["shots"][0]
    s.quiet().update("Shot", shot, {"description": "2024-01-01T00:00:00Z"})
    s.scanner().full()
    assert s.row("Shot", shot, "description")["description"] == "2024-01-01T00:00:00Z"
    assert s.diff() == []


# --- a burst of writes -------------------------------------------------------------------------------


class Burst:
    """Random writes on a studio site: field updates, creates, multi-entity edits (set, add, remove)
    from either side of a reverse pair (Shot.assets / Asset.shots, Task.entity / Shot.tasks,
    Shot.sg_sequence / Sequence.shots), retirements, and revivals of linked and unlinked shots.

    A share of the plain-field updates, unlinked creates, retirements and revivals is made by
    quiet-script (no events). Link writes all make events, and a shot that others link to is only
    revived with an event: see the xfail tests of reverse sides and revivals without events. Every
    write changes something: the stand-in moves updated_at on a no-op update without an event.
    """

    def __init__(self, s: Sync, seed: int, quiet_share: float):
        self.s = s
        self.rng = random.Random(seed)
        self.quiet_share = quiet_share
        self.sg, self.quiet = s.sg(), s.quiet()
        self.shots = [e["id"] for e in self.sg.find("Shot", [], ["id"])]
        self.assets = [e["id"] for e in self.sg.find("Asset", [], ["id"])]
        self.seqs = self.sg.find("Sequence", [], ["project"])
        self.tasks = [e["id"] for e in self.sg.find("Task", [["entity", "type_is", "Shot"]], ["id"])]
        self.loose: list[int] = []  # shots made by the burst, linked from nowhere
        self.retired_loose: list[int] = []
        self.retired_linked: list[int] = []
        self.quiet_writes = 0
        self.revived_linked = 0

    def client(self, evented: bool = False):
        if not evented and self.rng.random() < self.quiet_share:
            self.quiet_writes += 1
            return self.quiet
        return self.sg

    def run(self, writes: int, chunk: int, watcher: Watcher | None) -> None:
        for i in range(writes):
            self.s.clock.advance(1)
            self.write(i)
            if watcher is not None and i % chunk == chunk - 1:
                self.s.drain(watcher)  # the watcher runs between chunks, some late events still hidden

    def write(self, i: int) -> None:
        rng, shot = self.rng, self.rng.choice(self.shots)
        r = rng.random()
        if r < 0.2:
            self.client().update("Shot", shot, {"description": f"d{i}", "sg_cut_in": i})
        elif r < 0.3:
            current = [a["id"] for a in self.sg.find_one("Shot", [["id", "is", shot]], ["assets"])["assets"]]
            mode = rng.choice(["set", "add", "remove"])
            if mode == "remove" and current:
                value = [link("Asset", rng.choice(current))]
            else:
                mode = "add" if mode == "remove" else mode
                value = [link("Asset", a) for a in rng.sample(self.assets, 3) if a not in current][:2]
            if value:
                self.sg.update("Shot", shot, {"assets": value}, multi_entity_update_modes={"assets": mode})
        elif r < 0.38:
            asset = rng.choice(self.assets)
            current = [e["id"] for e in self.sg.find_one("Asset", [["id", "is", asset]], ["shots"])["shots"]]
            others = [s for s in self.shots if s not in current]
            self.sg.update("Asset", asset, {"description": f"a{i}", "shots": [link("Shot", rng.choice(others))]},
                           multi_entity_update_modes={"shots": "add"})
        elif r < 0.46:
            seq = rng.choice(self.seqs)
            self.shots.append(self.sg.create("Shot", {"code": f"N{i}", "project": seq["project"],
                                                      "sg_sequence": link("Sequence", seq["id"])})["id"])
        elif r < 0.52:
            project = rng.choice(self.seqs)["project"]
            self.loose.append(self.client().create("Shot", {"code": f"L{i}", "project": project,
                                                            "description": "loose"})["id"])
        elif r < 0.6:
            task = self.sg.create("Task", {"content": f"T{i}", "entity": link("Shot", shot),
                                           "project": self.seqs[0]["project"]})
            self.tasks.append(task["id"])
        elif r < 0.66:
            task = rng.choice(self.tasks)
            current = self.sg.find_one("Task", [["id", "is", task]], ["entity"])["entity"]
            if current != link("Shot", shot):
                self.sg.update("Task", task, {"entity": link("Shot", shot), "content": f"moved {i}"})
        elif r < 0.72:
            if len(self.shots) > 20:  # a shot others link to
                self.shots.remove(shot)
                self.client().delete("Shot", shot)
                self.retired_linked.append(shot)
        elif r < 0.78:
            if self.retired_linked:
                back = self.retired_linked.pop(rng.randrange(len(self.retired_linked)))
                self.client(evented=True).revive("Shot", back)
                self.shots.append(back)
                self.revived_linked += 1
        elif r < 0.89:
            if self.loose:
                gone = self.loose.pop(rng.randrange(len(self.loose)))
                self.client().delete("Shot", gone)
                self.retired_loose.append(gone)
        elif self.retired_loose:
            back = self.retired_loose.pop(rng.randrange(len(self.retired_loose)))
            self.client().revive("Shot", back)
            self.loose.append(back)


def test_watcher_alone_matches_the_site_after_a_burst_of_evented_writes(make_sync):
    s = make_sync(studio=True, late_events=0.3)
    s.scanner().full()
    start = s.newest_event_id()
    watcher = s.watcher()
    burst = Burst(s, seed=7, quiet_share=0.0)
    burst.run(80, chunk=16, watcher=watcher)
    assert burst.quiet_writes == 0
    assert burst.revived_linked > 0
    assert s.site.emu.hidden_until  # some entries were committed late
    s.catch_up(watcher)
    assert s.newest_event_id() - start > 150
    assert s.diff() == []


def test_watcher_then_one_incremental_scan_match_the_site_after_a_mixed_burst(make_sync):
    s = make_sync(late_events=0.3, world_shots=14)
    s.scanner().full()
    move_watermarks_past_the_world(s)  # the incremental scan below reads only what the burst changed
    watcher = s.watcher()
    burst = Burst(s, seed=11, quiet_share=0.45)
    burst.run(80, chunk=16, watcher=watcher)
    assert burst.quiet_writes > 12
    s.catch_up(watcher)
    assert s.diff(["Shot"]) != []  # the watcher cannot see what quiet-script wrote
    s.scanner().incremental()
    assert s.diff() == []


def test_links_to_an_entity_retired_during_the_import_come_back_when_it_is_revived(sync):
    s = sync
    # A shot with a task and an asset, retired (without an event) before the import.
    shot, task, asset = s.world["shots"][3], s.world["tasks"][3], s.world["assets"][3]
    s.quiet().delete("Shot", shot)
    s.scanner().full()
    assert s.row("Task", task, "entity")["entity"] is None
    s.sg().revive("Shot", shot)
    s.catch_up(s.watcher())
    assert s.row("Shot", shot)["_active"] is True
    assert s.row("Task", task, "entity")["entity"] == link("Shot", shot)
    assert link("Shot", shot) in s.row("Asset", asset, "shots")["shots"]
    assert s.diff() == []


def test_the_rows_linking_to_an_entity_are_found_with_two_finds_per_type(make_sync):
    """What a revival reads again: every cached row linking to the entity, active or retired,
    whichever of its type's link fields holds the link; asked in two finds per type (active,
    retired), the type's link fields at once, not two per field."""
    from sgcache.store import writer
    from sgcache.sync import links

    s = make_sync()
    shot, other, third = s.world["shots"][:3]
    sg = s.sg()
    sg.update("Shot", other, {"shots": [link("Shot", shot)]})  # Shot links to Shot through two fields
    sg.update("Shot", third, {"parent_shots": [link("Shot", shot)]})
    task = s.world["tasks"][0]  # its entity is the shot
    sg.delete("Task", task)
    before = s.site.emu.finds
    found = links.referrers_on_site(s.remote(), s.tables, ("Shot", shot))
    assert {("Shot", other), ("Shot", third), ("Task", task)} <= found
    assert ("Shot", s.world["shots"][4]) not in found
    types = [et.name for et in s.tables if any(
        not et.fields[n].field.entity_types or "Shot" in et.fields[n].field.entity_types
        for n in writer.link_fields(et))]
    assert s.site.emu.finds - before == 2 * len(types)


# --- the watcher, event by event ----------------------------------------------------------------------


def outcomes(caplog) -> dict[int, str]:
    """{event id: outcome} from the watcher's debug lines."""
    out = {}
    for record in caplog.records:
        message = record.getMessage()
        if record.name == WATCHER_LOG and message.startswith("event=applied "):
            fields = dict(part.split("=", 1) for part in message.split(" ", 3)[:3])
            out[int(fields["id"])] = message.split("outcome=", 1)[1]
    return out


def test_watcher_skips_events_of_uncached_types_and_fields(sync, caplog):
    s = sync
    sg = s.sg()
    project = s.world["projects"][0]
    before = s.row("Project", project, "name")
    start = s.newest_event_id()
    sg.create("CustomEntity02", {"code": "not cached"})  # a type the cache does not hold
    sg.update("Project", project, {"current_user_favorite": True})  # a field the cache does not hold
    events = s.events(start)
    assert [e["event_type"] for e in events] == ["Shotgun_CustomEntity02_New", "Shotgun_CustomEntity02_Change",
                                                 "Shotgun_Project_Change"]
    assert "CustomEntity02" not in s.tables
    caplog.set_level(logging.DEBUG, logger=WATCHER_LOG)
    s.drain(s.watcher())
    assert outcomes(caplog) == {events[0]["id"]: "skipped: type not cached",
                                events[1]["id"]: "skipped: type not cached",
                                events[2]["id"]: "skipped: field not cached"}
    assert s.row("Project", project, "name") == before  # not even _cache_updated_at moved
    assert s.applied_ids() == [e["id"] for e in events]
    assert s.cursor() == cursors.Cursor(events[-1]["id"], {})
    assert dead_letters(s.engine, s.tables) == []


def test_watcher_applies_a_change_to_text_that_looks_like_a_timestamp(sync):
    s = sync
    shot = s.world["shots"][0]
    s.sg().update("Shot", shot, {"description": "2024-01-01T00:00:00Z"})
    s.drain(s.watcher(max_attempts=1))
    assert dead_letters(s.engine, s.tables) == []
    assert s.row("Shot", shot, "description")["description"] == "2024-01-01T00:00:00Z"


def test_a_retirement_refused_for_a_newer_stamp_reads_the_entity_from_the_site(sync):
    # The row carries a later event's stamp (a write read back, say) but is still active: the
    # retirement event must not be dropped; the site says what the entity is now.
    s = sync
    shot = s.world["shots"][0]
    t = s.tables["Shot"].table
    with s.engine.begin() as conn:
        conn.execute(sa.update(t).where(t.c.id == shot).values(_last_event_id=10**12))
    s.sg().delete("Shot", shot)
    s.drain(s.watcher(max_attempts=1))
    assert s.row("Shot", shot, "code")["_active"] is False


def test_watcher_skips_noise_events_and_reads_the_entity_of_an_event_without_meta(sync, caplog):
    """Entries a hosted site logs besides lifecycle events (loaded straight into the stand-in's
    log), and a Change whose meta is null."""
    s = sync
    shot, user = s.world["shots"][0], s.site.humans["artist"].id
    s.quiet().update("Shot", shot, {"description": "changed on the site"})
    start = s.newest_event_id()
    noise = [
        {"event_type": "Shotgun_User_Login", "entity": link("HumanUser", user)},
        {"event_type": "Shotgun_Attachment_View", "entity": None, "meta": {"type": "attachment_view"}},
        {"event_type": "Shotgun_Reading_Change", "attribute_name": "read", "entity": link("Shot", shot),
         "meta": {"type": "attribute_change", "attribute_name": "read", "entity_type": "Reading"}},
        {"event_type": "Toolkit_App_Startup", "entity": None, "meta": {"core": "v0.20"}},
        {"event_type": "Shotgun_Shot_Change", "attribute_name": "description", "entity": link("Shot", shot)},
    ]
    ids = [s.site.load_entity("EventLogEntry", {"description": "noise", "user": link("HumanUser", user), **e})
           for e in noise]
    assert ids == list(range(start + 1, start + 6))
    caplog.set_level(logging.DEBUG, logger=WATCHER_LOG)
    s.drain(s.watcher(max_attempts=1))
    assert outcomes(caplog) == {ids[0]: "skipped: not a lifecycle event", ids[1]: "skipped: not a lifecycle event",
                                ids[2]: "skipped: type not cached", ids[3]: "skipped: not a lifecycle event",
                                ids[4]: "fetched"}
    assert dead_letters(s.engine, s.tables) == []
    assert s.row("Shot", shot, "description")["description"] == "changed on the site"
    assert s.caught_up()


@pytest.mark.parametrize("write", ["update", "delete"])
def test_event_about_an_entity_the_cache_never_held_reads_it_whole(sync, write):
    """Made by a script without events, then changed or retired by one with events: the cache
    takes the whole entity from the site, retired if it is."""
    s = sync
    project = link("Project", s.world["projects"][0])
    shot = s.quiet().create("Shot", {"code": "UNSEEN", "project": project, "sg_cut_in": 5,
                                     "sg_sequence": link("Sequence", s.world["sequences"][0])})["id"]
    if write == "update":
        s.sg().update("Shot", shot, {"description": "now with events"})
    else:
        s.sg().delete("Shot", shot)
    s.drain(s.watcher())
    row = s.row("Shot", shot, "code", "sg_cut_in", "description", "project", "sg_sequence")
    assert (row["code"], row["sg_cut_in"], row["project"]) == ("UNSEEN", 5, project)
    assert row["sg_sequence"] == link("Sequence", s.world["sequences"][0])
    assert row["_active"] is (write == "update")
    assert row["description"] == ("now with events" if write == "update" else None)
    assert row["_last_event_id"] == s.newest_event_id()
    assert s.diff(["Shot"]) == []


def test_back_reference_on_a_retired_entity_rereads_the_retired_rows(sync, caplog):
    """Moving a task off a retired shot logs a Change of the shot's ``tasks`` whose entity is null:
    the watcher finds the retired rows that listed the task and reads them again."""
    s = sync
    sg = s.sg()
    old, new, task = s.world["shots"][0], s.world["shots"][1], s.world["tasks"][0]
    sg.delete("Shot", old)
    watcher = s.watcher()
    s.drain(watcher)
    assert link("Task", task) in s.row("Shot", old, "tasks")["tasks"]
    start = s.newest_event_id()
    sg.update("Task", task, {"entity": link("Shot", new)})
    events = s.events(start)
    back = [e for e in events if e["meta"].get("actual_attribute_changed") == "Task.entity"
            and e["meta"]["removed"]]
    assert len(back) == 1 and back[0]["entity"] is None  # the retired shot reads as null
    caplog.set_level(logging.DEBUG, logger=WATCHER_LOG)
    s.drain(watcher)
    assert outcomes(caplog)[back[0]["id"]] == "fetched 1 retired"
    assert s.row("Shot", old, "tasks")["tasks"] == []
    assert s.row("Shot", old)["_active"] is False
    assert link("Task", task) in s.row("Shot", new, "tasks")["tasks"]
    assert s.diff(["Shot", "Task"]) == []


def test_watcher_keeps_a_project_limited_cache_to_its_projects(make_sync):
    s = make_sync()
    chosen, other = s.world["projects"]
    s.scanner().full(projects=[chosen])
    shot = s.tables["Shot"]
    with s.engine.connect() as conn:
        column = shot.table.c[shot.fields["project"].id_column]
        assert set(conn.execute(sa.select(column)).scalars()) == {chosen}
    s.sg().create("Shot", {"code": "ELSEWHERE", "project": link("Project", other)})
    s.sg().update("Shot", s.world["shots"][3], {"description": "a shot of the other project"})
    s.drain(s.watcher())
    with s.engine.connect() as conn:
        assert set(conn.execute(sa.select(column)).scalars()) == {chosen}


def shot_projects(s: Sync) -> dict[int, int]:
    """{shot id: project id} of the cached shots."""
    shot = s.tables["Shot"]
    with s.engine.connect() as conn:
        return dict(conn.execute(sa.select(shot.table.c.id, shot.table.c[shot.fields["project"].id_column])).all())


def test_watcher_follows_an_entity_moving_in_and_out_of_the_cached_projects(make_sync):
    s = make_sync()
    chosen, other = s.world["projects"]
    s.scanner().full(projects=[chosen])
    leaving, arriving = s.world["shots"][0], s.world["shots"][3]
    assert shot_projects(s)[leaving] == chosen and arriving not in shot_projects(s)
    s.sg().update("Shot", leaving, {"project": link("Project", other)})
    s.sg().update("Shot", arriving, {"project": link("Project", chosen)})
    s.drain(s.watcher())
    assert leaving not in shot_projects(s)
    assert shot_projects(s)[arriving] == chosen
    assert s.row("Shot", arriving, "code")["code"] == "SH10"


def test_incremental_scan_drops_an_entity_moved_out_of_the_cached_projects(make_sync):
    s = make_sync()
    chosen, other = s.world["projects"]
    s.scanner().full(projects=[chosen])
    leaving = s.world["shots"][1]
    move_watermarks_past_the_world(s)
    s.quiet().update("Shot", leaving, {"project": link("Project", other)})
    s.scanner().incremental()
    assert shot_projects(s).get(leaving) in (None, other)


def test_incremental_scan_keeps_a_project_limited_cache_to_its_projects(make_sync):
    s = make_sync()
    chosen, other = s.world["projects"]
    s.scanner().full(projects=[chosen])
    move_watermarks_past_the_world(s)
    elsewhere = s.world["shots"][4]  # a shot of the other project
    s.quiet().update("Asset", s.world["assets"][1], {"shots": [link("Shot", elsewhere)]},
                     multi_entity_update_modes={"shots": "add"})
    s.scanner().incremental()
    assert set(shot_projects(s).values()) == {chosen}


def test_late_event_below_the_starting_cursor_is_awaited(make_sync):
    s = make_sync()
    sg = s.sg()
    s.site.late_events = 1.0
    sg.update("Shot", s.world["shots"][0], {"description": "committed late"})
    late_id = s.newest_event_id()
    s.site.late_events = 0.0
    sg.update("Shot", s.world["shots"][1], {"description": "on time"})
    s.scanner().full()  # the cursor starts here, past the uncommitted entry
    assert s.cursor().max_applied_id == late_id + 1
    s.clock.advance(10)
    s.drain(s.watcher())
    assert late_id in s.applied_ids()


def test_late_event_is_applied_when_it_appears(sync):
    s = sync
    sg = s.sg()
    late_shot, shot = s.world["shots"][0], s.world["shots"][1]
    s.site.late_events = 1.0
    sg.update("Shot", late_shot, {"description": "committed late"})
    late_id = s.newest_event_id()
    s.site.late_events = 0.0
    sg.update("Shot", shot, {"description": "on time"})
    watcher = s.watcher()
    s.drain(watcher)
    assert s.row("Shot", shot, "description")["description"] == "on time"
    assert s.row("Shot", late_shot, "description")["description"] == "shot 00"
    cursor = s.cursor()
    assert cursor.max_applied_id == late_id + 1
    assert list(cursor.gaps) == [late_id]
    s.clock.advance(10)  # the late entry commits
    s.drain(watcher)
    assert s.row("Shot", late_shot, "description")["description"] == "committed late"
    assert s.row("Shot", late_shot)["_last_event_id"] == late_id
    assert s.cursor() == cursors.Cursor(late_id + 1, {})
    assert late_id in s.applied_ids()


def late_change_and_gap(s: Sync, monkeypatch) -> tuple[int, int, Watcher, Callable[[], None]]:
    """A change whose event commits late, one after it on time, and a watcher that gives up on a
    gap after 0.3 s of its clock, which stands still until the returned ``expire`` moves it past
    that (on a busy machine, real time let a drain outlast the wait before its gap was looked at):
    (the late shot, the late event id, the watcher, expire)."""
    moment = [watcher_module._now()]
    monkeypatch.setattr(watcher_module, "_now", lambda: moment[0])

    def expire() -> None:
        moment[0] += dt.timedelta(seconds=1)

    sg = s.sg()
    late_shot, shot = s.world["shots"][0], s.world["shots"][1]
    s.site.late_events = 1.0
    sg.update("Shot", late_shot, {"description": "too late"})
    late_id = s.newest_event_id()
    s.site.late_events = 0.0
    sg.update("Shot", shot, {"description": "on time"})
    return late_shot, late_id, s.watcher(gap_timeout=0.3), expire


def test_gap_older_than_gap_timeout_is_given_up(sync, caplog, monkeypatch):
    s = sync
    late_shot, late_id, watcher, expire = late_change_and_gap(s, monkeypatch)
    caplog.set_level(logging.WARNING, logger=WATCHER_LOG)
    s.drain(watcher)
    assert list(s.cursor().gaps) == [late_id]
    s.drain(watcher)
    assert list(s.cursor().gaps) == [late_id]  # not before its time
    expire()
    s.drain(watcher)
    assert not s.cursor().gaps
    assert s.cursor() == cursors.Cursor(late_id + 1, {})
    [message] = [r.getMessage() for r in caplog.records if "gave_up" in r.getMessage()]
    assert message.startswith(f"event=gave_up_on_event_ids ids=[{late_id}] waited_s=0.3 scan_watermarks_back_to=")
    s.clock.advance(10)  # it commits after all: too late for the watcher
    s.drain(watcher)
    assert late_id not in s.applied_ids()
    assert s.row("Shot", late_shot, "description")["description"] == "shot 00"
    s.scanner().incremental()  # the safety net
    assert s.row("Shot", late_shot, "description")["description"] == "too late"


def test_failing_event_is_retried_then_dead_lettered_and_the_watcher_moves_on(sync, caplog):
    s = sync
    sg = s.sg()
    bad_shot, shot = s.world["shots"][0], s.world["shots"][1]
    sg.update("Shot", bad_shot, {"description": "poison"})
    bad_id = s.newest_event_id()
    sg.update("Shot", shot, {"description": "after the poison"})
    watcher = s.watcher(max_attempts=3)
    tries = poison(watcher, bad_id)
    caplog.set_level(logging.WARNING, logger=WATCHER_LOG)
    s.drain(watcher)
    assert tries == [bad_id] * 3
    dead = dead_letters(s.engine, s.tables)
    assert [(d["event_id"], d["event_type"], d["entity_type"], d["entity_id"], d["error"], d["attempts"])
            for d in dead] == [(bad_id, "Shotgun_Shot_Change", "Shot", bad_shot,
                                "RuntimeError: cannot apply this one", 3)]
    assert json.loads(dead[0]["event"])["meta"]["new_value"] == "poison"
    assert sum("event=apply_retry" in r.getMessage() for r in caplog.records) == 2
    assert s.row("Shot", bad_shot, "description")["description"] == "shot 00"
    assert s.row("Shot", shot, "description")["description"] == "after the poison"
    assert s.cursor() == cursors.Cursor(bad_id + 1, {})
    assert s.applied_ids()[-2:] == [bad_id, bad_id + 1]


def test_a_gap_given_up_moves_the_scan_watermarks_back_before_it(sync, monkeypatch):
    # A transaction whose event commits long after its updated_at: by the time the watcher gives
    # up on the id, a scan may have moved its watermark past the change. The give-up must take
    # the watermarks back, so the next scan reads what the lost event changed.
    s = sync
    late_shot, late_id, watcher, expire = late_change_and_gap(s, monkeypatch)
    s.drain(watcher)
    assert list(s.cursor().gaps) == [late_id]
    # A scan ran meanwhile and its watermarks went far past the change.
    types = s.tables.state.types
    with s.engine.begin() as conn:
        conn.execute(sa.update(types).values(watermark=s.clock() + dt.timedelta(hours=1)))
    expire()
    s.drain(watcher)
    assert not s.cursor().gaps
    s.clock.advance(10)  # it commits after all: too late for the watcher
    s.drain(watcher)
    assert s.row("Shot", late_shot, "description")["description"] == "shot 00"
    s.scanner().incremental()
    assert s.row("Shot", late_shot, "description")["description"] == "too late"


def test_a_dead_letter_makes_reads_of_its_type_pass_through_until_the_type_is_imported_again(sync):
    s = sync
    watcher, shot, bad_id, tries = poisoned_change(s, max_attempts=1)
    s.drain(watcher)

    assert read_refusal(s, "Shot") == "dead_letter"
    assert read_refusal(s, "Sequence") is None
    s.scanner().full(types=["Shot"])
    assert read_refusal(s, "Shot") is None
    assert s.row("Shot", shot, "description")["description"] == "poison"


@pytest.mark.parametrize("failure", [{"mode": "down", "seconds": 1}, {"mode": "503", "count": 6}],
                         ids=["down", "503"])
def test_site_outage_pauses_the_watcher_without_skipping_anything(sync, caplog, failure):
    s = sync
    sg = s.sg()
    start = s.newest_event_id()
    for n, shot in enumerate(s.world["shots"]):
        sg.update("Shot", shot, {"description": f"written before the outage {n}"})
    expected = list(range(start + 1, s.newest_event_id() + 1))
    caplog.set_level(logging.WARNING, logger="sgcache")
    # Few quick retries in the client: the outage reaches the watcher's loop, which waits and polls again.
    watcher = s.watcher(remote=s.remote(attempts=2, backoff=0.05))
    requests.post(s.server.url + "/_mock/failure", json=failure, timeout=5).raise_for_status()
    if failure["mode"] == "down":
        wait_for(lambda: not listening(s.server), 5, what="the site to go down")
    started = time.monotonic()
    run_watcher_until(watcher, s.caught_up, 20, "the watcher to catch up after the outage")
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("event=site_unavailable") for m in messages)
    if failure["mode"] == "down":
        assert time.monotonic() - started > 0.5  # it waited for the site to come back
    assert s.applied_ids() == expected
    assert dead_letters(s.engine, s.tables) == []
    assert s.cursor() == cursors.Cursor(expected[-1], {})
    assert s.diff(["Shot"]) == []


def test_an_event_that_meets_a_database_outage_waits_for_it_and_is_not_dead_lettered(sync, caplog):
    s = sync
    shot = s.world["shots"][0]
    s.sg().update("Shot", shot, {"description": "written during the outage"})
    watcher = s.watcher(max_attempts=2, poll_interval=0.05)
    real_commit = watcher._commit
    outage = {"left": 5}

    def commit(event, cursor, *args, **kwargs):
        if event is not None and outage["left"]:
            outage["left"] -= 1
            raise sa.exc.OperationalError("INSERT ...", {}, Exception("server closed the connection unexpectedly"))
        return real_commit(event, cursor, *args, **kwargs)

    watcher._commit = commit
    caplog.set_level(logging.WARNING, logger=WATCHER_LOG)
    run_watcher_until(watcher, lambda: s.row("Shot", shot, "description")["description"] == "written during the outage",
                      5, "the event applied once the database is back")
    assert outage["left"] == 0  # five tries met the outage, more than max_attempts
    assert dead_letters(s.engine, s.tables) == []
    assert "event=database_unavailable" in caplog.text


def test_event_whose_request_the_site_refuses_is_dead_lettered_not_retried_forever(sync):
    s = sync
    sg = s.sg()
    shot, back = s.world["shots"][0], s.world["retired_shot"]
    sg.schema_field_delete("Element", "shots")  # the cache schema still has it
    sg.revive("Shot", back)
    revival = s.newest_event_id()
    sg.update("Shot", shot, {"description": "after the revival"})
    watcher = s.watcher(max_attempts=2)
    run_watcher_until(watcher, lambda: s.row("Shot", shot, "description")["description"] == "after the revival",
                      1.5, "the event after the refused one")
    assert [d["event_id"] for d in dead_letters(s.engine, s.tables)] == [revival]
    assert s.caught_up()


def test_older_event_never_overwrites_a_newer_value(sync):
    s = sync
    sg = s.sg()
    shot = s.world["shots"][0]
    s.site.late_events = 1.0
    sg.update("Shot", shot, {"description": "older"})
    older = s.newest_event_id()
    s.site.late_events = 0.0
    sg.update("Shot", shot, {"description": "newer"})
    newer = s.newest_event_id()
    watcher = s.watcher()
    s.drain(watcher)
    row = s.row("Shot", shot, "description")
    assert (row["description"], row["_last_event_id"]) == ("newer", newer)
    s.clock.advance(10)
    s.drain(watcher)  # the older entry arrives after the newer one was applied
    row = s.row("Shot", shot, "description")
    assert (row["description"], row["_last_event_id"]) == ("newer", newer)
    assert older in s.applied_ids()
    assert s.caught_up()


def test_late_retirement_does_not_retire_an_entity_revived_since(sync):
    s = sync
    sg = s.sg()
    shot = s.world["shots"][0]
    s.site.late_events = 1.0
    sg.delete("Shot", shot)
    retirement = s.newest_event_id()
    s.site.late_events = 0.0
    sg.revive("Shot", shot)
    revival = s.newest_event_id()
    watcher = s.watcher()
    s.drain(watcher)
    assert (s.row("Shot", shot)["_active"], s.row("Shot", shot)["_last_event_id"]) == (True, revival)
    s.clock.advance(10)
    s.drain(watcher)
    assert retirement in s.applied_ids()
    assert (s.row("Shot", shot)["_active"], s.row("Shot", shot)["_last_event_id"]) == (True, revival)
    assert s.diff(["Shot"]) == []


def test_event_already_applied_is_not_applied_again(sync):
    """Events read again (a cursor rewound, a second reader) are recognised by the applied-events
    ledger: the row keeps what the incremental scan wrote after them."""
    s = sync
    sg = s.sg()
    shot = s.world["shots"][0]
    start = s.cursor()
    sg.update("Shot", shot, {"sg_cut_in": 7})
    sg.update("Shot", shot, {"description": "from an event"})
    first = s.watcher()
    s.drain(first)
    assert first.applied == 2
    s.clock.advance(5)
    s.quiet().update("Shot", shot, {"description": "quiet, after the event"})
    s.scanner().incremental(types=["Shot"])  # written as of the cursor: the newest event id
    before = s.row("Shot", shot, "description", "sg_cut_in")
    assert before["description"] == "quiet, after the event"
    ledger = s.applied_ids()
    with s.engine.begin() as conn:
        cursors.save(conn, s.tables.state, start)  # rewind: both events will be read again
    again = s.watcher()
    s.drain(again)
    assert again.applied == 0
    assert s.row("Shot", shot, "description", "sg_cut_in") == before  # _cache_updated_at included
    assert s.applied_ids() == ledger
    assert s.caught_up()


SCHEMA_EDITS = {  # the edit, and the action of the DisplayColumn event it logs
    "delete": (lambda sg: sg.schema_field_delete("Shot", "sg_shotnumber"), "Delete"),
    "update": (lambda sg: sg.schema_field_update("Shot", "description", {"name": "Summary"}), "Change"),
    "create": (lambda sg: sg.schema_field_create("Shot", "text", "Extra Notes"), "New"),
}
@pytest.mark.parametrize("edit", ["delete", "update", "create"])
def test_schema_change_event_marks_the_type_for_a_new_full_import(sync, edit):
    s = sync
    start = s.newest_event_id()
    change, action = SCHEMA_EDITS[edit]
    change(s.sg())
    events = s.events(start)
    assert [e["event_type"] for e in events] == [f"Shotgun_DisplayColumn_{action}"]
    assert events[0]["meta"]["entity_type_owner"] == "Shot"
    noted = []
    watcher = s.watcher()
    watcher.on_schema_change = lambda owner, field: noted.append((owner, field))
    s.drain(watcher)
    assert s.type_state("Shot")["needs_rescan"] is True
    assert s.type_state("Asset")["needs_rescan"] is False
    assert noted == [("Shot", events[0]["meta"]["field_name"])]
    assert report.status(s.engine, s.tables)["types"]["Shot"]["needs_rescan"] is True
    assert [t.entity_type for t in s.scanner().full_where_needed().types] == ["Shot"]
    assert s.type_state("Shot")["needs_rescan"] is False


def test_schema_change_of_a_cached_field_marks_it_for_backfill(sync):
    s = sync
    s.sg().schema_field_update("Shot", "description", {"name": "Summary"})
    s.drain(s.watcher())
    with s.engine.connect() as conn:
        assert "description" in state.backfill_marks(conn, s.tables.state).get("Shot", {})


# --- status --------------------------------------------------------------------------------------------


def sgcache(*args: str, cwd: Path, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """``python -m sgcache ARGS`` with no SGCACHE_* variable from the caller's environment."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SGCACHE_")}
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "sgcache", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def test_status_shows_the_cursor_dead_letters_and_rows_per_type(sync, tmp_path):
    s = sync
    sg = s.sg()
    s.site.late_events = 1.0
    sg.update("Shot", s.world["shots"][2], {"description": "late"})
    gap = s.newest_event_id()
    s.site.late_events = 0.0
    sg.update("Shot", s.world["shots"][0], {"description": "poison"})
    bad_id = s.newest_event_id()
    watcher = s.watcher(max_attempts=1)
    poison(watcher, bad_id)
    s.drain(watcher)
    data = report.status(s.engine, s.tables)
    assert data["cursor"]["max_applied_id"] == bad_id
    assert data["cursor"]["last_complete_id"] == gap - 1
    assert list(data["cursor"]["gaps"]) == [str(gap)]
    dead = [(d["event_id"], d["error"]) for d in data["dead_letters"]]
    assert dead == [(bad_id, "RuntimeError: cannot apply this one")]
    assert data["projects"] == "all"
    assert (data["types"]["Shot"]["active"], data["types"]["Shot"]["retired"]) == (6, 1)
    assert data["types"]["Project"]["active"] == 2
    assert data["types"]["Shot"]["full_scan_at"] is not None
    assert data["types"]["Shot"]["backfill_fields"] == 0

    result = sgcache("--database", s.engine.url.render_as_string(hide_password=False), "--schema", str(CACHE_SCHEMA),
                     "status", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"event log: applied up to {bad_id}, complete up to {gap - 1}, 1 open gaps"
    assert lines[1].startswith(f"event lag: up to date (site newest event {bad_id}, watcher reported ")
    assert lines[2] == "dead letters: 1"
    assert lines[3].startswith(f"  event {bad_id} Shotgun_Shot_Change: RuntimeError: cannot apply this one "
                               "(tried again 0 times, next try 20")
    # A gap is open, so the watcher has not vouched for any moment yet.
    assert re.fullmatch(r"history: reads of the past from \S+ to not yet known \(\d+ versions kept\)", lines[4])
    assert lines[5] == "projects: all"
    shot_line = next(line for line in lines if line.startswith("Shot "))
    assert shot_line.split()[1:3] == ["6", "1"]
    assert len([line for line in lines[7:] if line.strip()]) == 30


def test_status_of_a_new_database_says_nothing_was_imported_yet(tmp_path):
    result = sgcache("--database", f"sqlite:///{tmp_path / 'new.sqlite'}", "--schema", str(CACHE_SCHEMA), "status",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("event log: not started")


# --- leadership ----------------------------------------------------------------------------------------


def test_second_leader_waits_until_the_first_releases(engine, tmp_path):
    first, second, other = Leadership(engine, "watch"), Leadership(engine, "watch"), Leadership(engine, "scan")
    try:
        assert first.try_acquire() is True
        assert second.try_acquire() is False
        assert second.try_acquire() is False
        assert other.try_acquire() is True  # another name, another lock
        stop = threading.Event()
        stop.set()
        assert second.acquire(stop) is False  # a standby asked to stop gives up
        first.release()
        assert second.try_acquire() is True
        assert first.try_acquire() is False
    finally:
        for leadership in (first, second, other):
            leadership.release()


# --- project-limited caches (scanner) -------------------------------------------------------------------


def read_refusal(s: Sync, type_name: str) -> str | None:
    """Why a read of ``type_name`` would pass through to the site on type grounds, else None."""
    with s.engine.connect() as conn:
        read_state = load_state(conn, s.tables)
    try:
        Context(s.tables, read_state, s.engine.dialect.name, tz=ZoneInfo("UTC")).entity_table(type_name)
    except Uncertain as u:
        return u.reason
    return None


def poison(watcher, event_id: int, *, times: int | None = None) -> list[int]:
    """Make applying ``event_id`` fail (every time, or its first ``times`` tries); return the tries."""
    real_apply = watcher.apply
    tries: list[int] = []

    def apply(conn, event, site):
        if event["id"] == event_id:
            tries.append(event_id)
            if times is None or len(tries) <= times:
                raise RuntimeError("cannot apply this one")
        return real_apply(conn, event, site)

    watcher.apply = apply
    return tries


def poisoned_change(s: Sync, **settings) -> tuple:
    """(watcher, shot, event id, tries): an evented change of the first shot that this new
    watcher (with ``settings``) fails to apply every time (see poison)."""
    shot = s.world["shots"][0]
    s.sg().update("Shot", shot, {"description": "poison"})
    bad_id = s.newest_event_id()
    watcher = s.watcher(**settings)
    return watcher, shot, bad_id, poison(watcher, bad_id)


def test_widening_the_project_set_passes_a_type_through_until_it_is_imported_again(make_sync):
    s = make_sync()
    first, second = s.world["projects"]
    s.scanner().full(projects=[first])
    scanner = s.scanner(concurrency=1)  # one type after another: the import stops between two
    real_count = scanner.remote.count

    def count(entity_type, filters):
        if entity_type == "Shot":
            raise RuntimeError("the import stops here")
        return real_count(entity_type, filters)

    scanner.remote.count = count
    with pytest.raises(RuntimeError, match="the import stops here"):
        scanner.full(projects=[])
    assert report.status(s.engine, s.tables)["projects"] == "all"
    assert set(shot_projects(s).values()) == {first}
    assert read_refusal(s, "Shot") == "type_not_imported"  # it holds the first project's shots only
    assert read_refusal(s, "Asset") is None  # imported again before the stop
    assert read_refusal(s, "HumanUser") is None  # no project field: complete all along
    finished = {t.entity_type for t in s.scanner().full_where_needed().types}  # what `scan --interval` does
    assert "Shot" in finished and not {"Asset", "HumanUser"} & finished
    assert read_refusal(s, "Shot") is None
    assert set(shot_projects(s).values()) == {first, second}


def test_full_scan_drops_an_entity_moved_out_of_the_cached_projects(make_sync):
    s = make_sync()
    chosen, other = s.world["projects"]
    s.scanner().full(projects=[chosen])
    leaving = s.world["shots"][1]
    s.quiet().update("Shot", leaving, {"project": link("Project", other)})
    done = {t.entity_type: t for t in s.scanner().full().types}
    assert leaving not in shot_projects(s)  # dropped, not kept as a retired row of the cached project
    assert done["Shot"].retired_missing == 0


def test_incremental_scan_drops_an_entity_whose_project_was_cleared(make_sync):
    s = make_sync()
    chosen = s.world["projects"][0]
    s.scanner().full(projects=[chosen])
    cleared = s.world["shots"][2]
    move_watermarks_past_the_world(s)
    s.quiet().update("Shot", cleared, {"project": None})
    s.scanner().incremental()
    assert cleared not in shot_projects(s)


def test_incremental_scan_updates_a_cached_row_linked_from_another_project(make_sync):
    s = make_sync()
    chosen = s.world["projects"][0]
    s.scanner().full(projects=[chosen])
    move_watermarks_past_the_world(s)
    seq, elsewhere = s.world["sequences"][0], s.world["shots"][4]  # a sequence of the cached project
    s.quiet().update("Shot", elsewhere, {"sg_sequence": link("Sequence", seq)})  # no event: Sequence.shots too
    s.scanner().incremental()
    assert link("Shot", elsewhere) in s.row("Sequence", seq, "shots")["shots"]
    assert set(shot_projects(s).values()) == {chosen}
