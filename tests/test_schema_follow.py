"""The schema follows the site (``schema.follow: follow``): a schema change on the stand-in is
seen by the watcher, migrated, recorded in the cache database and taken up by the proxy, with
reads right throughout; ``sgcache schema sync`` does the same by hand.

The stand-in and the proxy run as real servers and the real client talks to the proxy, on
SQLite and on PostgreSQL.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import shotgun_api3
import sqlalchemy as sa
from conftest import PROXY_TYPES, ROOT, SCRIPT_AUTH

from sgcache.api3.cache import CacheDatabase
from sgcache.schema import loads
from sgcache.schema.follow import record
from sgcache.schema.follow.follower import FollowDeferred, Follower, WatcherFollow
from sgcache.schema.follow.held import HeldSchema
from sgcache.schema.follow.plan import Change, keep_identifiers, plan
from sgcache.store import state
from sgcache.store.tables import Tables
from sgcache.sync.remote import Remote
from sgcache.sync.scanner import Scanner
from sgcache.sync.watcher import Watcher

#: Rules that select, out of the stand-in's schema, exactly the proxy tests' schema file.
RULES = """\
-*.*:pivot_column
-*.*:password
-*.*current_user*
-*.*_viewed_by_*
""" + "".join(f"+{name}\n" for name in PROXY_TYPES)


@pytest.fixture
def rules(tmp_path) -> Path:
    path = tmp_path / "rules.txt"
    path.write_text(RULES)
    return path


@pytest.fixture
def world(sg):
    """Two shots in a project, with a description and a cut in."""
    project = sg.create("Project", {"name": "Alpha"})
    shots = [sg.create("Shot", {"code": f"SH{i:03d}", "project": project, "description": f"shot {i}",
                                "sg_cut_in": 1000 + i}) for i in (1, 2)]
    return {"project": project, "shots": shots}


def import_where_needed(proxy, tables: Tables) -> None:
    """What the scanner does at the start of each round, with the schema it holds."""
    Scanner(proxy.service.cache.engine, tables, Remote(proxy.config.site), proxy.config.scanner).full_where_needed()


def answered_from_cache(proxy, call) -> tuple[object, bool]:
    before = proxy.service.cache_answers
    result = call()
    return result, proxy.service.cache_answers > before


def take_up(proxy, test, timeout: float = 15.0) -> None:
    """Make requests until the proxy's tables pass ``test`` (a new schema is taken up between requests)."""
    client = proxy.client()
    deadline = time.monotonic() + timeout
    while not test(proxy.service.cache.tables):
        assert time.monotonic() < deadline, "the proxy did not take up the new schema"
        client.find_one("Project", [], ["name"])
        time.sleep(0.1)


def state_fresh(proxy) -> None:
    """Let the proxy's read state (backfill marks, imported types) be read again."""
    time.sleep(proxy.service.STATE_TTL + 0.1)


@pytest.fixture
def following(make_proxy, world, rules, monkeypatch):
    """A proxy following the site, its cache imported, and a watcher following the site with it."""
    monkeypatch.setattr("sgcache.api3.cache.SCHEMA_CHECK_SECONDS", 0.2)
    proxy = make_proxy(schema__follow="follow", schema__rules=str(rules))
    engine = proxy.service.cache.engine
    import_where_needed(proxy, proxy.service.cache.tables)
    held = HeldSchema(engine, proxy.config, name="watch")
    tables = held.acquire()
    remote = Remote(proxy.config.site)
    watcher = Watcher(engine, tables, remote, proxy.config.watcher,
                      schema_follow=WatcherFollow(held, Follower(engine, proxy.config, remote)))
    watcher.start()
    watcher.poll_once()  # compares once at the start: the rules select the schema file, nothing changes
    yield proxy, watcher, held
    held.release()


def columns(engine, table: str) -> set[str]:
    return {c["name"] for c in sa.inspect(engine).get_columns(table)}


def field_states(engine) -> dict[tuple[str, str], state.FieldState]:
    st = state.define(sa.MetaData())
    with engine.connect() as conn:
        return state.read_field_states(conn, st)


# --- the plan -----------------------------------------------------------------------------------------

OLD = """\
Shot:
  identifier: title
  fields:
    id: number
    code: text
    title: text
    sg_cut_in: number
    sg_sequence: {type: entity, entity_types: [Sequence]}
Sequence:
  identifier: code
  fields: {id: number, code: text}
"""

NEW = """\
Shot:
  identifier: code
  fields:
    id: number
    code: {type: text, label: Shot Code}
    title: text
    sg_cut_in: text
    sg_sequence: {type: entity, entity_types: [Sequence, Scene]}
    sg_notes: text
Asset:
  identifier: code
  fields: {id: number, code: text}
"""


def test_the_plan_names_each_change_once_by_type_then_field():
    changes = plan(loads(OLD), loads(NEW))
    assert [c.describe() for c in changes] == [
        "new type Asset (2 fields)",
        "removed type Sequence (2 fields)",
        "changed type Shot (identifier)",
        "changed field Shot.code (label)",
        "changed data type Shot.sg_cut_in (number -> text)",
        "new field Shot.sg_notes (text)",
        "changed field Shot.sg_sequence (entity_types)",
    ]


def test_a_change_logs_as_key_value_pairs():
    change = Change("data_type", "Shot", "sg_cut_in", "number -> text")
    assert change.log_fields() == "change=data_type entity_type=Shot field=sg_cut_in detail='number -> text'"


def test_equal_schemas_make_an_empty_plan():
    assert plan(loads(OLD), loads(OLD)) == []


def test_a_type_in_use_keeps_its_identifier_while_that_field_is_kept():
    wanted = loads(NEW)
    keep_identifiers(loads(OLD), wanted)
    assert wanted["Shot"].identifier == "title"
    del wanted["Shot"].fields["title"]
    wanted["Shot"].identifier = "code"
    keep_identifiers(loads(OLD), wanted)
    assert wanted["Shot"].identifier == "code"


# --- where the followed schema lives ------------------------------------------------------------------


def test_the_recorded_schema_comes_back_with_its_digest(engine):
    schema = loads(NEW)
    with engine.begin() as conn:
        state.define(sa.MetaData()).meta.create(conn)
        digest = record.record(conn, schema)
    with engine.connect() as conn:
        found, found_digest = record.recorded_schema(conn)
        assert record.recorded_digest(conn) == digest == found_digest
    assert digest.startswith("sha256:")
    assert plan(schema, found) == []


def follow_config(tmp_path, **overrides):
    """Settings that follow the site, from an empty file (``overrides``: ``section__key=value``)."""
    from sgcache.config import load_config

    empty = tmp_path / "empty.yml"
    empty.write_text("")
    return load_config(empty, env={}, overrides={"schema.follow": "follow",
                                                 **{k.replace("__", "."): v for k, v in overrides.items()}})


def test_a_fresh_database_starts_from_the_schema_file(engine, tmp_path, proxy_schema_path):
    held = HeldSchema(engine, follow_config(tmp_path, schema__path=str(proxy_schema_path)))
    try:
        tables = held.acquire()
        assert sorted(tables.entities) == sorted(PROXY_TYPES) and held.digest is None
        assert not held.stale()
    finally:
        held.release()


def test_the_commands_read_the_recorded_schema_when_following_and_the_file_otherwise(engine, tmp_path,
                                                                                     proxy_schema_path):
    from sgcache.cli.common import cache_tables

    url = engine.url.render_as_string(hide_password=False)
    with engine.begin() as conn:
        state.define(sa.MetaData()).meta.create(conn)
        record.record(conn, loads(NEW))
    following = follow_config(tmp_path, schema__path=str(proxy_schema_path), database__url=url)
    assert sorted(cache_tables(following).entities) == ["Asset", "Shot"]
    manual = follow_config(tmp_path, schema__path=str(proxy_schema_path), database__url=url, schema__follow="manual")
    assert sorted(cache_tables(manual).entities) == sorted(PROXY_TYPES)


def test_an_empty_rules_setting_means_none(tmp_path):
    from sgcache.config import load_config

    empty = tmp_path / "sgcache.yml"
    empty.write_text("schema: {rules: ''}\n")
    assert record.rules_path(load_config(empty, env={})) is None
    assert record.rules_path(load_config(empty, env={"SGCACHE_SCHEMA_RULES": ""})) is None
    config = load_config(empty, env={"SGCACHE_SCHEMA_RULES": str(tmp_path / "rules.txt")})
    assert record.rules_path(config) == tmp_path / "rules.txt"


def test_follow_is_manual_by_default_and_takes_words_yaml_keeps_as_text(tmp_path):
    from sgcache.config import load_config
    from sgcache.errors import ConfigError

    empty = tmp_path / "sgcache.yml"
    empty.write_text("")
    assert load_config(empty, env={}).schema.follow == "manual"
    empty.write_text("schema: {follow: follow}\n")
    assert load_config(empty, env={}).schema.follow == "follow"
    empty.write_text("schema: {follow: off}\n")  # YAML reads it as false: not a choice
    with pytest.raises(ConfigError, match="schema.follow"):
        load_config(empty, env={})


# --- the proxy takes up a new schema ------------------------------------------------------------------




def test_a_request_keeps_the_tables_it_started_with(engine, small_schema, monkeypatch, tmp_path):
    from sgcache.store.migrate import migrate

    monkeypatch.setattr("sgcache.api3.cache.SCHEMA_CHECK_SECONDS", 0.0)
    old = Tables(small_schema)
    migrate(engine, old)
    grown = loads(NEW)
    with engine.begin() as conn:
        digest = record.record(conn, grown)
    cache = CacheDatabase(engine, old)
    cache.follow_schema(follow_config(tmp_path), None, settle=0.0)
    started = threading.Event()
    seen: list[Tables] = []

    def request():
        cache.pin_tables()  # the first look sees the recorded schema; it is taken up at the next request
        started.set()
        time.sleep(0.3)
        seen.append(cache.tables)
        cache.unpin_tables()

    thread = threading.Thread(target=request)
    thread.start()
    started.wait()
    cache.pin_tables()  # another request: the new schema is due, and taken up
    assert "Asset" in cache.tables and "Project" not in cache.tables
    cache.unpin_tables()
    thread.join()
    assert seen == [old]
    assert cache._digest == digest  # noqa: SLF001 (what the next look compares with)


def test_a_new_schema_is_taken_up_only_after_the_settle_time(engine, small_schema, monkeypatch, tmp_path):
    from sgcache.store.migrate import migrate

    monkeypatch.setattr("sgcache.api3.cache.SCHEMA_CHECK_SECONDS", 0.0)
    now = [100.0]
    old = Tables(small_schema)
    migrate(engine, old)
    with engine.begin() as conn:
        record.record(conn, loads(NEW))
    cache = CacheDatabase(engine, old, clock=lambda: now[0])
    cache.follow_schema(follow_config(tmp_path), None, settle=2.5)
    cache.pin_tables()
    cache.unpin_tables()
    now[0] += 2.0
    cache.pin_tables()
    assert cache.tables is old
    cache.unpin_tables()
    now[0] += 0.6
    cache.pin_tables()
    assert "Asset" in cache.tables
    cache.unpin_tables()


# --- following the site: the watcher ------------------------------------------------------------------


def test_a_field_added_on_the_site_is_answered_from_the_cache_after_its_import(following, sg, world, caplog):
    proxy, watcher, held = following
    client = proxy.client()
    name = sg.schema_field_create("Shot", "text", "Take Notes")
    assert name == "sg_take_notes"
    sg.update("Shot", world["shots"][0]["id"], {name: "a good take"})
    query = lambda c: c.find("Shot", [], ["code", name], order=[{"field_name": "id", "direction": "asc"}])  # noqa: E731
    with caplog.at_level(logging.INFO, logger="sgcache.schema.follow"):
        watcher.poll_once()
    assert "event=schema_followed change=new_field entity_type=Shot field=sg_take_notes detail='text'" in caplog.text
    assert "sg_take_notes" in columns(proxy.service.cache.engine, "shot")
    assert field_states(proxy.service.cache.engine)["Shot", name].needs_backfill
    assert name in watcher.tables["Shot"].fields
    # The proxy has not taken the new schema up yet: the field is unknown to it and passes through.
    result, cached = answered_from_cache(proxy, lambda: query(client))
    assert not cached and result == query(sg)
    # Taken up, before the import: the backfill mark passes it through (at once: no read state from
    # before the migration is used with the new tables).
    take_up(proxy, lambda tables: name in tables["Shot"].fields)
    result, cached = answered_from_cache(proxy, lambda: query(client))
    assert not cached and proxy.service.reasons["field_backfill"] >= 1
    assert result == query(sg)
    # The scanner's next round imports the type in full: then the cache answers, as the site does.
    import_where_needed(proxy, held.tables)
    state_fresh(proxy)
    result, cached = answered_from_cache(proxy, lambda: query(client))
    assert cached
    assert result == query(sg)
    assert result[0][name] == "a good take"


def test_a_field_removed_on_the_site_is_no_longer_stored(following, sg, world):
    proxy, watcher, _ = following
    engine = proxy.service.cache.engine
    assert "description" in columns(engine, "shot")
    sg.schema_field_delete("Shot", "description")
    watcher.poll_once()
    assert "description" not in columns(engine, "shot")
    assert ("Shot", "description") not in field_states(engine)
    take_up(proxy, lambda tables: "description" not in tables["Shot"].fields)
    client = proxy.client()
    with pytest.raises(shotgun_api3.Fault) as direct:
        sg.find("Shot", [["description", "is", "shot 1"]], ["code"])
    before = proxy.service.cache_answers
    with pytest.raises(shotgun_api3.Fault) as through:
        client.find("Shot", [["description", "is", "shot 1"]], ["code"])
    assert str(through.value) == str(direct.value)
    assert proxy.service.cache_answers == before
    # The rest of the type is still answered from the cache.
    result, cached = answered_from_cache(proxy, lambda: client.find("Shot", [], ["code"]))
    assert cached and result == sg.find("Shot", [], ["code"])


def test_a_changed_data_type_is_migrated_and_imported_again(following, sg, world):
    proxy, watcher, held = following
    engine = proxy.service.cache.engine
    sg.schema_field_delete("Shot", "sg_cut_in")
    assert sg.schema_field_create("Shot", "text", "Cut In") == "sg_cut_in"
    sg.update("Shot", world["shots"][1]["id"], {"sg_cut_in": "1010 (moved)"})
    watcher.poll_once()
    states = field_states(engine)
    assert (states["Shot", "sg_cut_in"].data_type, states["Shot", "sg_cut_in"].needs_backfill) == ("text", True)
    with engine.connect() as conn:
        followed, _ = record.recorded_schema(conn)
    assert followed["Shot"].fields["sg_cut_in"].data_type == "text"
    take_up(proxy, lambda tables: tables["Shot"].fields["sg_cut_in"].field.data_type == "text")
    import_where_needed(proxy, held.tables)
    state_fresh(proxy)
    client = proxy.client()
    query = lambda c: c.find("Shot", [["sg_cut_in", "contains", "moved"]], ["code", "sg_cut_in"])  # noqa: E731
    result, cached = answered_from_cache(proxy, lambda: query(client))
    assert cached
    assert result == query(sg) == [{"type": "Shot", "id": world["shots"][1]["id"], "code": "SH002",
                                    "sg_cut_in": "1010 (moved)"}]


def test_a_new_type_the_rules_select_is_created_and_imported(following, sg, rules):
    proxy, watcher, held = following
    engine = proxy.service.cache.engine
    sg.create("Department", {"name": "Lighting", "code": "LGT"})
    rules.write_text(RULES + "+Department\n")  # the rules are read again at each change
    sg.schema_field_create("Department", "text", "Floor")
    watcher.poll_once()
    assert "department" in sa.inspect(engine).get_table_names()
    assert "Department" in held.tables
    take_up(proxy, lambda tables: "Department" in tables)
    client = proxy.client()
    query = lambda c: c.find("Department", [], ["name", "code", "sg_floor"])  # noqa: E731
    result, cached = answered_from_cache(proxy, lambda: query(client))
    assert not cached and proxy.service.reasons["type_not_imported"] >= 1 and result == query(sg)
    import_where_needed(proxy, held.tables)
    state_fresh(proxy)
    result, cached = answered_from_cache(proxy, lambda: query(client))
    assert cached
    assert result == query(sg) == [{"type": "Department", "id": result[0]["id"], "name": "Lighting",
                                    "code": "LGT", "sg_floor": None}]


def test_a_field_the_rules_drop_changes_nothing(following, sg):
    proxy, watcher, held = following
    digest = held.digest
    sg.schema_field_create("Department", "text", "Floor")  # Department is not selected
    watcher.poll_once()
    with proxy.service.cache.engine.connect() as conn:
        assert record.recorded_digest(conn) == digest is None
    assert "Department" not in watcher.tables


def test_a_follow_waits_for_the_other_sync_processes_to_let_go(following, sg, monkeypatch):
    proxy, _, watcher_held = following
    watcher_held.release()  # the watcher is not polling: only the scanner holds the schema
    engine = proxy.service.cache.engine
    scanner = HeldSchema(engine, proxy.config, name="scan")
    scanner.acquire()
    try:
        monkeypatch.setattr(Follower, "LOCK_WAIT", 0.5)
        sg.schema_field_create("Shot", "text", "Take Notes")
        with pytest.raises(FollowDeferred):
            Follower(engine, proxy.config, Remote(proxy.config.site)).follow()
        assert "sg_take_notes" not in columns(engine, "shot")
        with engine.connect() as conn:
            assert record.pending(conn) is None  # given up: nothing is left waiting
        # The scanner sees a follower waiting, lets go, and loads the new schema once it is made.
        monkeypatch.setattr(Follower, "LOCK_WAIT", 30.0)
        follower = threading.Thread(target=Follower(engine, proxy.config, Remote(proxy.config.site)).follow)
        follower.start()
        deadline = time.monotonic() + 10
        while not scanner.stale():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        scanner.release()
        tables = scanner.acquire()
        follower.join()
        assert "sg_take_notes" in tables["Shot"].fields
        assert "sg_take_notes" in columns(engine, "shot")
    finally:
        scanner.release()


def test_a_scan_under_way_starts_again_with_the_new_schema(following, sg):
    from sgcache.cli.syncing import _with_schema

    proxy, _, watcher_held = following
    watcher_held.release()  # the watcher is not polling: only the scan holds the schema
    engine = proxy.service.cache.engine
    rounds: list[Tables] = []
    stop = threading.Event()

    def work(tables, this_round):
        rounds.append(tables)
        if len(rounds) == 1:
            this_round.wait(30)  # an import under way, stopped between two pages
            from sgcache.sync.remote import Stopped
            raise Stopped("stopping")
        return "done"

    outcome: list[str] = []
    scan = threading.Thread(target=lambda: outcome.append(_with_schema(proxy.config, engine, "scan", stop, work)))
    scan.start()
    while not rounds:
        time.sleep(0.05)
    sg.schema_field_create("Shot", "text", "Take Notes")
    Follower(engine, proxy.config, Remote(proxy.config.site)).follow()
    scan.join(30)
    assert outcome == ["done"]
    assert [("sg_take_notes" in t["Shot"].fields) for t in rounds] == [False, True]


# --- by hand: sgcache schema sync -----------------------------------------------------------------------


def run_sgcache(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SGCACHE_")}
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    full_env.update(env)
    return subprocess.run([sys.executable, "-m", "sgcache", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def sync_env(make_proxy, mock_server, rules, proxy_schema_path, db_url):
    make_proxy()  # the cache migrated for the schema file
    return {"SGCACHE_SITE_BASE_URL": mock_server.url, "SGCACHE_SITE_SCRIPT_NAME": SCRIPT_AUTH["script_name"],
            "SGCACHE_SITE_API_KEY": SCRIPT_AUTH["api_key"], "SGCACHE_DATABASE_URL": db_url,
            "SGCACHE_SCHEMA_PATH": str(proxy_schema_path), "SGCACHE_SCHEMA_RULES": str(rules),
            "SGCACHE_SCHEMA_FOLLOW": "follow"}


def test_schema_sync_dry_run_prints_the_plan_and_changes_nothing(sync_env, sg, tmp_path, db_url):
    sg.schema_field_create("Shot", "text", "Take Notes")
    sg.schema_field_delete("Shot", "description")
    result = run_sgcache("schema", "sync", "--dry-run", cwd=tmp_path, env=sync_env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == ["  removed field Shot.description (text)", "  new field Shot.sg_take_notes (text)"]
    assert lines[2].endswith("would make 2 changes")
    engine = sa.create_engine(db_url)
    try:
        assert {"description"} <= columns(engine, "shot") and "sg_take_notes" not in columns(engine, "shot")
        with engine.connect() as conn:
            assert record.recorded_digest(conn) is None
    finally:
        engine.dispose()


def test_schema_sync_migrates_and_records_the_site_s_schema(sync_env, sg, tmp_path, db_url):
    sg.schema_field_create("Shot", "text", "Take Notes")
    result = run_sgcache("schema", "sync", cwd=tmp_path, env=sync_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "  new field Shot.sg_take_notes (text)"
    assert "made 1 changes" in result.stdout and "imports Shot in full" in result.stdout
    engine = sa.create_engine(db_url)
    try:
        assert "sg_take_notes" in columns(engine, "shot")
        with engine.connect() as conn:
            followed, _ = record.recorded_schema(conn)
        assert "sg_take_notes" in followed["Shot"].fields
    finally:
        engine.dispose()
    again = run_sgcache("schema", "sync", cwd=tmp_path, env=sync_env)
    assert "already the site's as the rules select it (11 entity types)" in again.stdout
    shown = run_sgcache("schema", "show", "Shot", cwd=tmp_path, env=sync_env)
    assert "sg_take_notes" in shown.stdout and "schema: the followed schema in the cache database" in shown.stderr


def test_schema_sync_needs_follow_unless_dry_run(sync_env, tmp_path):
    result = run_sgcache("schema", "sync", cwd=tmp_path, env={**sync_env, "SGCACHE_SCHEMA_FOLLOW": "manual"})
    assert result.returncode == 2
    assert "schema.follow: follow" in result.stderr and "Traceback" not in result.stderr


def test_going_back_to_the_file_forgets_the_followed_schema(sync_env, sg, tmp_path, db_url):
    sg.schema_field_create("Shot", "text", "Take Notes")
    assert run_sgcache("schema", "sync", cwd=tmp_path, env=sync_env).returncode == 0
    back = run_sgcache("schema", "migrate", cwd=tmp_path, env={**sync_env, "SGCACHE_SCHEMA_FOLLOW": "manual"})
    assert back.returncode == 0, back.stderr
    assert "the schema file is in use again" in back.stderr
    engine = sa.create_engine(db_url)
    try:
        assert "sg_take_notes" not in columns(engine, "shot")
        with engine.connect() as conn:
            assert record.recorded_digest(conn) is None
    finally:
        engine.dispose()


# --- following off --------------------------------------------------------------------------------------


def test_with_follow_manual_a_schema_change_waits_for_an_operator(make_proxy, world, sg, caplog):
    proxy = make_proxy()
    import_where_needed(proxy, proxy.service.cache.tables)
    engine = proxy.service.cache.engine
    assert not proxy.service.cache.follows_schema
    watcher = Watcher(engine, proxy.service.cache.tables, Remote(proxy.config.site), proxy.config.watcher)
    watcher.start()
    name = sg.schema_field_create("Shot", "text", "Take Notes")
    with caplog.at_level(logging.WARNING):
        watcher.poll_once()
    assert "update the schema file" in caplog.text
    assert name not in columns(engine, "shot")
    with engine.connect() as conn:
        assert record.recorded_digest(conn) is None
    result, cached = answered_from_cache(proxy, lambda: proxy.client().find("Shot", [], ["code", name]))
    assert not cached and result == sg.find("Shot", [], ["code", name])


# --- the whole story, with no operator: sgcache auto ------------------------------------------------------


def wait_for(test, timeout: float, what: str, log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    while not test():
        assert time.monotonic() < deadline, f"{what}; sgcache auto's log:\n{log_path.read_text()[-4000:]}"
        time.sleep(0.2)


def test_with_sgcache_auto_a_new_field_is_answered_from_the_cache_with_no_operator(make_proxy, sync_env, world, sg,
                                                                                  tmp_path, monkeypatch):
    monkeypatch.setattr("sgcache.api3.cache.SCHEMA_CHECK_SECONDS", 0.2)
    proxy = make_proxy(schema__follow="follow", schema__rules=sync_env["SGCACHE_SCHEMA_RULES"])
    client = proxy.client()
    log_path = tmp_path / "auto.log"
    env = {**sync_env, "SGCACHE_WATCHER_POLL_INTERVAL": "0.2", "SGCACHE_SCANNER_SLIM_RECORDS": "none"}
    with open(log_path, "w") as log_file:
        auto = subprocess.Popen([sys.executable, "-m", "sgcache", "auto", "--scan-interval", "1"], cwd=tmp_path,
                                env={**{k: v for k, v in os.environ.items() if not k.startswith("SGCACHE_")},
                                     "PYTHONPATH": str(ROOT), **env},
                                stdout=log_file, stderr=subprocess.STDOUT)
    try:
        by_id = [{"field_name": "id", "direction": "asc"}]
        query = lambda c: c.find("Shot", [], ["code", "sg_take_notes"], order=by_id)  # noqa: E731
        wait_for(lambda: answered_from_cache(proxy, lambda: client.find("Shot", [], ["code"]))[1], 60,
                 "the first full import did not happen", log_path)
        assert sg.schema_field_create("Shot", "text", "Take Notes") == "sg_take_notes"
        sg.update("Shot", world["shots"][0]["id"], {"sg_take_notes": "a good take"})

        def answered() -> bool:
            result, cached = answered_from_cache(proxy, lambda: query(client))
            assert result == query(sg)  # right throughout: from the site until the cache holds it
            return cached

        wait_for(answered, 90, "the new field was not answered from the cache", log_path)
        assert query(client)[0]["sg_take_notes"] == "a good take"
    finally:
        auto.terminate()
        auto.wait(30)
    text = log_path.read_text()
    assert "event=schema_followed change=new_field entity_type=Shot field=sg_take_notes" in text
    assert "event=schema_reload process=scan" in text
