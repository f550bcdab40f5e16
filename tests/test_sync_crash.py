"""``sgcache watch`` as real processes: killed at random points while the site is written to, and
two of them at once (leader and standby).

The stand-in site runs in the test process (MockServer, real HTTP); the watchers are
``python -m sgcache ... watch`` subprocesses on the same cache database (an SQLite file, and
PostgreSQL when it is reachable: the ``db_url`` fixture).
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import shotgun_api3
import sqlalchemy as sa
from conftest import schema_copy
from test_sync import CACHE_SCHEMA, ROOT, link, small_world, stop_in_background, wait_for

from sgcache.config import ScannerConfig, Secret, SiteConfig
from sgcache.mocksite import MockSite
from sgcache.mocksite.server import MockServer
from sgcache.mocksite.studio import build_studio
from sgcache.schema import load
from sgcache.store.db import create_engine
from sgcache.store.migrate import migrate
from sgcache.store.reader import read_entities
from sgcache.store.tables import Tables
from sgcache.sync import cursor as cursors
from sgcache.sync.compare import diff
from sgcache.sync.remote import Remote
from sgcache.sync.scanner import Scanner
from sgcache.sync.watcher import dead_letters

KEY = "sgcache-demo-key"

# Loaded by the watcher subprocesses (PYTHONPATH), active only with SGCACHE_TEST_TX_TOKENS set: an SQLite
# function naming the current transaction, for the write-log triggers (PostgreSQL has txid_current()).
SITECUSTOMIZE = '''\
import os

if os.environ.get("SGCACHE_TEST_TX_TOKENS"):
    import itertools
    import sqlite3

    import sqlalchemy
    from sqlalchemy import event
    from sqlalchemy.pool import Pool

    _serial = itertools.count(1)
    _current = {}

    def _register(dbapi_conn, _record):
        if isinstance(dbapi_conn, sqlite3.Connection):
            key = id(dbapi_conn)
            _current[key] = next(_serial)
            dbapi_conn.create_function("sgtest_tx", 0, lambda: f"{os.getpid()}:{_current[key]}")

    def _next_transaction(conn):
        key = id(conn.connection.dbapi_connection)
        if key in _current:
            _current[key] = next(_serial)

    event.listen(Pool, "connect", _register)
    event.listen(sqlalchemy.Engine, "commit", _next_transaction)
    event.listen(sqlalchemy.Engine, "rollback", _next_transaction)
'''


@pytest.fixture(scope="module")
def cache_tables() -> Tables:
    return Tables(load(CACHE_SCHEMA))


class Cache:
    """The stand-in site, the cache database and how to run ``sgcache watch`` against them."""

    def __init__(self, site: MockSite, db_url: str, tables: Tables, tmp_path: Path, **settings):
        self.site = site
        self.server = MockServer(site).start()
        self.db_url = db_url
        self.engine = create_engine(db_url)
        self.tables = tables
        self.tmp_path = tmp_path
        migrate(self.engine, tables)
        self.site_config = SiteConfig(base_url=self.server.url, script_name="sgcache", api_key=Secret(KEY),
                                      timeout=10.0)
        self.settings = {"watcher.min_poll_interval": "0.01", "watcher.poll_interval": "0.2",
                         "watcher.gap_timeout": "30", **settings}
        (tmp_path / "sitecustomize").mkdir(exist_ok=True)
        (tmp_path / "sitecustomize" / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
        self.procs: list[subprocess.Popen] = []
        self.started = 0

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        self.engine.dispose()
        stop_in_background(self.server)

    def remote(self) -> Remote:
        return Remote(self.site_config)

    def sg(self) -> shotgun_api3.Shotgun:
        client = shotgun_api3.Shotgun(self.server.url, script_name="sgcache", api_key=KEY, connect=False)
        client.config.timeout_secs = 10
        return client

    def watch(self, *extra: str) -> tuple[subprocess.Popen, Path]:
        """Start ``python -m sgcache ... watch``; its stderr goes to a file in tmp_path."""
        return self.watch_command(*extra, "watch")

    def watch_command(self, *command: str) -> tuple[subprocess.Popen, Path]:
        """Start ``python -m sgcache [settings] COMMAND...``; its stderr goes to a file in tmp_path."""
        self.started += 1
        log = self.tmp_path / f"watch-{self.started}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SGCACHE_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.tmp_path / "sitecustomize"), str(ROOT),
                                                          os.environ.get("PYTHONPATH")]))
        env["SGCACHE_SITE_API_KEY"] = KEY
        env["SGCACHE_TEST_TX_TOKENS"] = "1"
        args = [sys.executable, "-m", "sgcache", "--database", self.db_url, "--schema", str(CACHE_SCHEMA),
                "--set", f"site.base_url={self.server.url}", "--set", "site.script_name=sgcache"]
        for key, value in self.settings.items():
            args += ["--set", f"{key}={value}"]
        with open(log, "w", encoding="utf-8") as err:
            proc = subprocess.Popen([*args, *command], cwd=self.tmp_path, env=env, stdout=subprocess.DEVNULL,
                                    stderr=err)
        self.procs.append(proc)
        return proc, log

    def cursor(self) -> cursors.Cursor | None:
        with self.engine.connect() as conn:
            return cursors.load(conn, self.tables.state)

    def newest_event_id(self) -> int:
        ids = self.site.emu._ids["EventLogEntry"]
        return ids[-1] if ids else 0

    def caught_up(self) -> bool:
        cursor = self.cursor()
        return cursor is not None and cursor.max_applied_id >= self.newest_event_id() and not cursor.gaps

    def applied_ids(self) -> list[int]:
        t = self.tables.state.applied
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(t.c.event_id).order_by(t.c.event_id)).scalars())


@pytest.fixture
def make_cache(db_url, site_schema, cache_tables, tmp_path):
    made: list[Cache] = []

    def make(site: MockSite, **settings) -> Cache:
        cache = Cache(site, db_url, cache_tables, tmp_path, **settings)
        made.append(cache)
        return cache

    yield make
    for cache in made:
        cache.close()


def install_write_log(cache: Cache, after_event: int) -> None:
    """Log every committed write that sets a row's ``_last_event_id`` (to an event after
    ``after_event``), with the transaction that made it, by triggers on every entity table."""
    postgres = cache.engine.dialect.name == "postgresql"
    with cache.engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE sgtest_writes (tbl TEXT, row_id BIGINT, event_id BIGINT, tx TEXT)"))
        if postgres:
            conn.execute(sa.text(
                "CREATE FUNCTION sgtest_log() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "INSERT INTO sgtest_writes VALUES (TG_TABLE_NAME, NEW.id, NEW._last_event_id, txid_current()::text); "
                "RETURN NULL; END $$"))
        for et in cache.tables:
            table = et.table.name
            if postgres:
                conn.execute(sa.text(
                    f'CREATE TRIGGER sgtest_writes AFTER INSERT OR UPDATE OF _last_event_id ON "{table}" '
                    f"FOR EACH ROW WHEN (NEW._last_event_id > {after_event}) EXECUTE FUNCTION sgtest_log()"))
            else:
                for when in ("INSERT", "UPDATE OF _last_event_id"):
                    conn.execute(sa.text(
                        f'CREATE TRIGGER "sgtest_{table}_{when.split()[0].lower()}" AFTER {when} ON "{table}" '
                        f"WHEN NEW._last_event_id > {after_event} BEGIN INSERT INTO sgtest_writes VALUES "
                        f"('{table}', NEW.id, NEW._last_event_id, sgtest_tx()); END"))


class Stream:
    """Evented writes on a studio: field updates, creates, multi-entity edits from both sides of
    reverse pairs, link moves, retirements and revivals (of shots others link to, and of shots
    nothing links to)."""

    def __init__(self, sg: shotgun_api3.Shotgun, seed: int):
        self.sg = sg
        self.rng = random.Random(seed)
        self.shots = [e["id"] for e in sg.find("Shot", [], ["id"])]
        self.assets = [e["id"] for e in sg.find("Asset", [], ["id"])]
        self.seqs = sg.find("Sequence", [], ["project"])
        self.tasks = [e["id"] for e in sg.find("Task", [["entity", "type_is", "Shot"]], ["id"])]
        self.loose: list[int] = []
        self.retired_loose: list[int] = []
        self.retired_linked: list[int] = []

    def write(self, i: int) -> None:
        sg, rng = self.sg, self.rng
        shot = rng.choice(self.shots)
        r = rng.random()
        if r < 0.25:
            sg.update("Shot", shot, {"description": f"d{i}", "sg_cut_in": i})
        elif r < 0.37:
            current = [a["id"] for a in sg.find_one("Shot", [["id", "is", shot]], ["assets"])["assets"]]
            if current and rng.random() < 0.4:
                sg.update("Shot", shot, {"assets": [link("Asset", rng.choice(current))]},
                          multi_entity_update_modes={"assets": "remove"})
            else:
                new = [link("Asset", a) for a in rng.sample(self.assets, 3) if a not in current][:2]
                sg.update("Shot", shot, {"assets": new or [link("Asset", self.assets[0])]},
                          multi_entity_update_modes={"assets": rng.choice(["set", "add"]) if new else "set"})
        elif r < 0.45:
            asset = rng.choice(self.assets)
            sg.update("Asset", asset, {"description": f"a{i}", "shots": [link("Shot", shot)]})
        elif r < 0.53:
            seq = rng.choice(self.seqs)
            self.shots.append(sg.create("Shot", {"code": f"N{i}", "project": seq["project"],
                                                 "sg_sequence": link("Sequence", seq["id"])})["id"])
        elif r < 0.61:
            self.tasks.append(sg.create("Task", {"content": f"T{i}", "entity": link("Shot", shot),
                                                 "project": self.seqs[0]["project"]})["id"])
        elif r < 0.68:
            task = rng.choice(self.tasks)
            sg.update("Task", task, {"entity": link("Shot", shot), "content": f"moved {i}"})
        elif r < 0.76:
            project = rng.choice(self.seqs)["project"]
            self.loose.append(sg.create("Shot", {"code": f"L{i}", "project": project})["id"])
        elif r < 0.8:
            if len(self.shots) > 30:
                self.shots.remove(shot)
                sg.delete("Shot", shot)
                self.retired_linked.append(shot)
        elif r < 0.83:
            if self.retired_linked:
                back = self.retired_linked.pop(rng.randrange(len(self.retired_linked)))
                sg.revive("Shot", back)
                self.shots.append(back)
            else:
                sg.update("Shot", shot, {"sg_cut_out": i})
        elif r < 0.9:
            if self.loose:
                gone = self.loose.pop(rng.randrange(len(self.loose)))
                sg.delete("Shot", gone)
                self.retired_loose.append(gone)
            else:
                sg.update("Shot", shot, {"sg_cut_out": i})
        elif self.retired_loose:
            back = self.retired_loose.pop(rng.randrange(len(self.retired_loose)))
            sg.revive("Shot", back)
            self.loose.append(back)
        else:
            sg.update("Shot", shot, {"sg_cut_out": i})


#: The size of the run. The suite's is a third of the soak's; ``bench/crash_soak.py`` runs it at
#: full length (1,000 writes, 22 kills) or longer, through these variables.
CHANGES = int(os.environ.get("SGCACHE_CRASH_CHANGES", "400"))
KILLS = int(os.environ.get("SGCACHE_CRASH_KILLS", "12"))


def test_watcher_killed_at_random_points_loses_nothing_and_applies_nothing_twice(make_cache, site_schema):
    """CHANGES writes stream to the site while ``sgcache watch`` is SIGKILLed at random points
    (during start-up, and while it applies events) and restarted, KILLS times; then one more
    watcher catches up.

    Nothing lost: the cache matches the site (``diff``) and the applied-events ledger holds every
    event id the site logged, no more.

    Nothing applied twice, checked independently of the ledger (whose primary key makes a
    duplicate *ledger row* impossible by construction): triggers on every entity table log each
    committed write that sets a row's ``_last_event_id``, with the database transaction that made
    it (``txid_current()`` on PostgreSQL, an SQLite function the subprocesses register through
    ``sitecustomize``). Applying an event writes its rows with ``_last_event_id`` = its id, all in
    one transaction; were an event applied again after a crash (say its changes committed apart
    from its ledger row and cursor move), the same row and event id would appear under a second
    transaction. The triggers see commits at the storage level, whatever the code's transactions.
    (Checked by hand: a watcher patched to commit an event's changes apart from its ledger row and
    cursor move fails here on both databases, while ``diff`` and the ledger checks still pass.)

    History holds too: every row's kept versions and its current one follow each other with no
    gap (a version lost) and no overlap (one kept twice); see ``assert_versions_chain``.
    """
    site = MockSite(schema_copy(site_schema), late_events=0.1, seed=3)
    build_studio(site, scale=1)
    cache = make_cache(site)
    # No slim records: the events of the types the schema leaves out would each be read from the
    # site, and this test is about the cursor, not about them (tests/test_slim.py is).
    Scanner(cache.engine, cache.tables, cache.remote(), ScannerConfig(slim_records="none"), progress=False).full()
    start = cache.cursor().max_applied_id
    install_write_log(cache, start)
    stream = Stream(cache.sg(), seed=5)
    rng = random.Random(9)
    kills: list[tuple[str, int]] = []  # (when, events the killed process applied)
    writing = threading.Event()
    writing.set()
    failure: list[BaseException] = []

    def killer():
        try:
            while writing.is_set() or len(kills) < KILLS:
                before = cache.cursor().max_applied_id
                proc, _ = cache.watch()
                if rng.random() < 0.3:
                    when = "start-up"
                    time.sleep(rng.uniform(0.05, 1.0))  # a random moment of its start
                else:
                    when = "applying"
                    target = before + rng.randint(1, 40)
                    deadline = time.monotonic() + 8
                    while cache.cursor().max_applied_id < target and time.monotonic() < deadline \
                            and proc.poll() is None:
                        time.sleep(0.005)
                    time.sleep(rng.uniform(0, 0.03))
                assert proc.poll() is None, f"the watcher exited by itself with {proc.returncode}"
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                kills.append((when, cache.cursor().max_applied_id - before))
        except BaseException as e:  # noqa: BLE001 (reported by the test thread)
            failure.append(e)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        for i in range(CHANGES):
            # Spread the stream over the kills: never more than one kill's share ahead.
            wait_for(lambda i=i: failure or len(kills) >= i * KILLS // CHANGES, 60, interval=0.005,
                     what="the next kill")
            if failure:
                break
            stream.write(i)
    finally:
        writing.clear()
        thread.join(120)
    assert not failure, failure
    assert len(kills) >= KILLS
    # The kills' moments follow a seeded draw: 7 of the first 12 (13 of 22) are while applying.
    assert sum(1 for when, applied in kills if when == "applying" and applied > 0) >= KILLS * 5 // 12, kills

    final, log = cache.watch()
    # Generous: on a loaded 2-core runner the last watcher waits out late events (gap_timeout 30 s)
    # while the other test worker runs; what is checked is that nothing is lost or applied twice.
    wait_for(cache.caught_up, 240, interval=0.05, what="the last watcher to catch up")
    final.send_signal(signal.SIGTERM)
    try:
        # It finishes the poll in hand first: on a loaded 2-core runner a stop once took over 15 s
        # (as in the standby test below); the log says where it was if it does not stop.
        assert final.wait(45) == 0, log.read_text()
    except subprocess.TimeoutExpired:
        raise AssertionError("the last watcher did not stop on SIGTERM:\n" + log.read_text()[-3000:]) from None

    logs = "".join(p.read_text(encoding="utf-8") for p in sorted(cache.tmp_path.glob("watch-*.log")))
    assert "Traceback" not in logs
    assert "event=dead_letter" not in logs
    assert dead_letters(cache.engine, cache.tables) == []
    assert diff(cache.engine, cache.tables, cache.remote()) == []
    assert_versions_chain(cache.engine, cache.tables)

    logged = [i for i in site.emu._ids["EventLogEntry"] if i > start]
    assert len(logged) > 2 * CHANGES
    assert cache.applied_ids() == logged
    with cache.engine.connect() as conn:
        # An event whose row writes were committed by more than one transaction: applied twice
        # (or in pieces).
        twice = conn.execute(sa.text("SELECT event_id, COUNT(DISTINCT tx) FROM sgtest_writes GROUP BY event_id "
                                     "HAVING COUNT(DISTINCT tx) > 1")).all()
        rows, events, transactions = conn.execute(sa.text(
            "SELECT COUNT(*), COUNT(DISTINCT event_id), COUNT(DISTINCT tx) FROM sgtest_writes "
            "WHERE tx IS NOT NULL")).one()
        total = conn.execute(sa.text("SELECT COUNT(*) FROM sgtest_writes")).scalar()
    assert twice == []
    assert rows == total  # every write was attributed to a transaction
    assert events > CHANGES  # most events wrote rows (the others were back references or skipped)
    assert transactions == events
    assert rows > events


def assert_versions_chain(engine, tables) -> None:
    """Each row's versions (sgcache.store.history) chain: in the order kept, each ends exactly where
    the next starts, the last kept where the current row starts; and each list's kept rows never
    overlap."""
    broken = []
    with engine.connect() as conn:
        for et in tables:
            h, t = et.history, et.table
            kept: dict[int, list[tuple]] = {}
            # In the order they were kept (several may end at the same second).
            for row in conn.execute(sa.select(h.c.id, h.c._valid_from, h.c._valid_to).order_by(h.c.id, h.c._version)):
                kept.setdefault(row[0], []).append((row[1], row[2]))
            current = dict(conn.execute(sa.select(t.c.id, t.c._valid_from).where(t.c.id.in_(list(kept)))).all()) \
                if kept else {}
            for entity_id, spans in kept.items():
                chain = [*spans, (current[entity_id], None)] if entity_id in current else spans
                for (start, end), (following, _) in zip(chain, chain[1:], strict=False):
                    if start is not None and end < start or end != following:
                        broken.append((et.name, entity_id, start, end, following))
        links = tables.state.link_history
        spans: dict[tuple, set[tuple]] = {}
        for row in conn.execute(sa.select(links.c.entity_type, links.c.field, links.c.parent_id, links.c._valid_from,
                                          links.c._valid_to)):
            spans.setdefault(row[:3], set()).add((row[3], row[4]))
        for et in tables:  # the lists held now: valid from their start on
            for name, assoc in et.associations.items():
                for parent, start in conn.execute(sa.select(assoc.c.parent_id, assoc.c._valid_from).distinct()):
                    spans.setdefault((et.name, name, parent), set()).add((start, None))
        for key, found in spans.items():
            # A span that ends where it starts (two changes in one second of the site's clock) is
            # never seen by a read.
            ordered = sorted((s for s in found if s[0] is None or s[1] is None or s[0] < s[1]),
                             key=lambda s: (s[0] is not None, s[0]))
            for (_, end), (start, _) in zip(ordered, ordered[1:], strict=False):
                if start is not None and (end is None or start < end):
                    broken.append((*key, end, start))
    assert broken == [], "\n".join(repr(b) for b in broken[:4])


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.exists() else ""


def applied_in(log: Path) -> set[int]:
    """Event ids a watcher says it applied (its -v debug lines)."""
    return {int(m) for m in re.findall(r"event=applied id=(\d+) type=\S+ outcome=(?!already)", read(log))}


def test_two_watchers_one_applies_and_the_standby_takes_over_when_it_dies(make_cache, site_schema):
    site = MockSite(schema_copy(site_schema))
    world = small_world(site)
    cache = make_cache(site)
    Scanner(cache.engine, cache.tables, cache.remote(), ScannerConfig(slim_records="none"), progress=False).full()
    sg = cache.sg()

    leader, leader_log = cache.watch("-v")
    wait_for(lambda: "event=watch_started" in read(leader_log), 30, what="the first watcher to lead")
    standby, standby_log = cache.watch("-v")
    wait_for(lambda: "event=standby name=watch" in read(standby_log), 30, what="the second to stand by")

    start = cache.newest_event_id()
    for n, shot in enumerate(world["shots"]):
        sg.update("Shot", shot, {"description": f"first round {n}"})
    first = set(range(start + 1, cache.newest_event_id() + 1))
    wait_for(cache.caught_up, 20, what="the leader to apply the first round")
    # Its log line follows each commit: on a loaded machine the last may come a moment later.
    wait_for(lambda: applied_in(leader_log) >= first, 10, what="the leader to log the first round")
    assert applied_in(leader_log) == first
    assert applied_in(standby_log) == set()
    assert "event=watch_started" not in read(standby_log)

    leader.send_signal(signal.SIGKILL)
    leader.wait(10)
    killed = time.monotonic()
    wait_for(lambda: "event=watch_started" in read(standby_log), 30, what="the standby to take over")
    assert time.monotonic() - killed < 10

    start = cache.newest_event_id()
    for n, shot in enumerate(world["shots"]):
        sg.update("Shot", shot, {"description": f"second round {n}"})
    second = set(range(start + 1, cache.newest_event_id() + 1))
    wait_for(cache.caught_up, 20, what="the new leader to apply the second round")
    wait_for(lambda: applied_in(standby_log) >= second, 10, what="the new leader to log the second round")
    assert applied_in(standby_log) == second
    assert cache.applied_ids()[-len(first | second):] == sorted(first | second)
    assert diff(cache.engine, cache.tables, cache.remote(), ["Shot"]) == []
    standby.send_signal(signal.SIGTERM)
    try:
        # It finishes the poll in hand first; on a machine loaded by the chaos test next door
        # that has taken over 15 s.
        assert standby.wait(45) == 0, read(standby_log)[-3000:]
    except subprocess.TimeoutExpired:
        raise AssertionError("the watcher did not stop on SIGTERM:\n" + read(standby_log)[-3000:]) from None


def children_of(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (from /proc)."""
    out = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        if re.search(rf"^PPid:\s+{pid}$", text, re.M):
            out.append(int(status.parent.name))
    return out


def test_auto_imports_then_runs_the_watcher_and_the_periodic_scanner(make_cache, site_schema):
    """``sgcache auto`` on a database never imported: its scanner child imports every type, then
    the watcher applies an evented write and the periodic scan one without events; SIGTERM stops
    the group cleanly."""
    site = MockSite(schema_copy(site_schema))
    world = small_world(site)
    cache = make_cache(site, **{"scanner.overlap": "5"})
    auto, log = cache.watch_command("auto", "--scan-interval", "1")

    def imported():
        t = cache.tables.state.types
        with cache.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(t).where(t.c.full_scan_at.is_not(None))
                                ).scalar() == len(cache.tables.entities)

    wait_for(imported, 60, interval=0.1, what="auto's first full import")
    children = children_of(auto.pid)
    assert len(children) == 2
    sg = cache.sg()
    quiet = shotgun_api3.Shotgun(cache.server.url, script_name="quiet-script", api_key="quiet-demo-key",
                                 connect=False)
    evented, silent = world["shots"][0], world["shots"][1]
    sg.update("Shot", evented, {"description": "through the event log"})
    quiet.update("Shot", silent, {"description": "through the scanner"})

    def cached():
        with cache.engine.connect() as conn:
            found = {e["id"]: e["description"] for e in read_entities(conn, cache.tables, "Shot",
                                                                      ids=[evented, silent], fields=["description"])}
        return found == {evented: "through the event log", silent: "through the scanner"}

    wait_for(cached, 30, interval=0.1, what="both writes in the cache")
    auto.send_signal(signal.SIGTERM)
    assert auto.wait(30) == 0, read(log)
    assert all(not Path(f"/proc/{pid}").exists() or "zombie" in read(Path(f"/proc/{pid}/status")).lower()
               for pid in children)
    assert "event=child_died" not in read(log)


def test_a_scan_service_stops_at_once_on_sigterm_while_it_waits_to_try_the_site_again(make_cache, site_schema):
    """The site fails: the scanner pauses between tries (0.5, 1, 2, 4 s). SIGTERM during the pauses
    ends the service at once, cleanly (a process manager would otherwise wait, then kill it)."""
    site = MockSite(schema_copy(site_schema))
    small_world(site)
    cache = make_cache(site)
    cache.server.failures.set("503", seconds=120)
    scan, log = cache.watch_command("scan", "--interval", "1", "--no-progress")
    wait_for(lambda: "event=site_retry" in read(log), 30, what="the scanner's first retry")
    asked = time.monotonic()
    scan.send_signal(signal.SIGTERM)
    assert scan.wait(10) == 0, read(log)
    assert time.monotonic() - asked < 2.0, read(log)
    assert "Traceback" not in read(log)


def test_a_full_import_stops_between_two_pages_on_sigterm_and_is_done_again_at_the_next_start(make_cache,
                                                                                          site_schema):
    site = MockSite(schema_copy(site_schema))
    small_world(site)
    cache = make_cache(site, **{"scanner.page_size": "1"})
    cache.server.failures.set("stall", seconds=120, stall_seconds=0.2)  # every request takes 0.2 s
    scan, log = cache.watch_command("scan", "--interval", "1", "--no-progress")
    t = cache.tables.state.types

    def imported() -> int:
        with cache.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(t).where(t.c.full_scan_at.is_not(None))
                                ).scalar() or 0

    def projects() -> int:
        # A connection left open holds its transaction, and the schema's drop at teardown waits on it.
        with cache.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(cache.tables["Project"].table)).scalar()

    wait_for(projects, 30, what="the import's first page")
    asked = time.monotonic()
    scan.send_signal(signal.SIGTERM)
    assert scan.wait(10) == 0, read(log)
    assert time.monotonic() - asked < 2.0, read(log)
    assert "stopped before the scan finished" in read(log)
    assert imported() < len(cache.tables.entities)  # not marked complete: the next start imports it
    cache.server.failures.set("off")
    again, log = cache.watch_command("scan", "--interval", "1", "--no-progress")
    wait_for(lambda: imported() == len(cache.tables.entities), 60, what="the next start's full import")
    again.send_signal(signal.SIGTERM)
    assert again.wait(10) == 0, read(log)
    assert diff(cache.engine, cache.tables, cache.remote()) == []
