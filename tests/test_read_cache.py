"""Reads and schema calls answered from the cache: when they are, when they pass through, and why.

The stand-in and the proxy run as real servers and the real client talks to the proxy; the
cache is filled by a full import (``Scanner.full``) on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import time

import pytest
import requests
import shotgun_api3
import sqlalchemy as sa
from conftest import SCRIPT_AUTH, schema_copy
from test_flights import together

from sgcache.store.state import set_meta
from sgcache.sync.remote import Remote
from sgcache.sync.scanner import Scanner
from sgcache.sync.watcher import Watcher


@pytest.fixture
def world(sg):
    """A few entities on the stand-in: two projects, sequences, shots, assets."""
    p1 = sg.create("Project", {"name": "Alpha"})
    p2 = sg.create("Project", {"name": "Beta"})
    seq = sg.create("Sequence", {"code": "SQ01", "project": p1})
    assets = [sg.create("Asset", {"code": code, "project": p1}) for code in ("chair", "Table")]
    shots = [sg.create("Shot", {"code": f"SH{i:03d}", "project": p1 if i % 2 else p2, "sg_sequence": seq,
                                "description": None if i % 3 else f"shot {i}", "assets": assets[: i % 3]})
             for i in range(1, 9)]
    return {"projects": [p1, p2], "sequence": seq, "assets": assets, "shots": shots}


@pytest.fixture
def cached_proxy(make_proxy, world):
    """A proxy whose cache holds a full import of the stand-in."""
    proxy = make_proxy()
    import_all(proxy)
    return proxy


def import_all(proxy, **kwargs) -> None:
    service = proxy.service
    Scanner(service.cache.engine, service.cache.tables, Remote(proxy.config.site), proxy.config.scanner).full(**kwargs)


def answered_from_cache(proxy, call) -> tuple[object, bool]:
    before = proxy.service.cache_answers
    result = call()
    return result, proxy.service.cache_answers > before


def calls(mock_server, method: str) -> int:
    return requests.get(mock_server.url + "/_mock/stats", timeout=5).json()["calls"].get(method, 0)


READS = [
    lambda sg: sg.find("Shot", [["project.Project.name", "is", "alpha"]], ["code", "sg_sequence", "assets"],
                       order=[{"field_name": "code", "direction": "desc"}]),
    lambda sg: sg.find("Shot", [["description", "is", None]], ["code"]),
    lambda sg: sg.find("Asset", [["shots", "is_not", None]], ["code", "shots"]),
    lambda sg: sg.find_one("Sequence", [["code", "starts_with", "sq"]], ["code", "shots"]),
]


@pytest.mark.parametrize("index", range(len(READS)))
def test_a_read_of_imported_types_is_answered_from_the_cache_with_the_site_s_answer(cached_proxy, sg, index):
    result, cached = answered_from_cache(cached_proxy, lambda: READS[index](cached_proxy.client()))
    assert cached
    assert result == READS[index](sg)


def test_reads_pass_through_until_the_type_is_imported(make_proxy, sg, world):
    proxy = make_proxy()
    client = proxy.client()
    result, cached = answered_from_cache(proxy, lambda: client.find("Shot", [], ["code"]))
    assert not cached
    assert proxy.service.reasons["type_not_imported"] == 1
    assert result == sg.find("Shot", [], ["code"])
    import_all(proxy)
    time.sleep(proxy.service.STATE_TTL)
    result, cached = answered_from_cache(proxy, lambda: client.find("Shot", [], ["code"]))
    assert cached
    assert result == sg.find("Shot", [], ["code"])


def test_a_field_with_a_backfill_mark_passes_through(cached_proxy, sg):
    service = cached_proxy.service
    fields = service.cache.tables.state.fields
    with service.cache.engine.begin() as conn:
        conn.execute(sa.update(fields).where(fields.c.entity_type == "Shot", fields.c.field_name == "description")
                     .values(needs_backfill=True, backfill_reason="test"))
    time.sleep(service.STATE_TTL)
    client = cached_proxy.client()
    result, cached = answered_from_cache(cached_proxy, lambda: client.find("Shot", [], ["description"]))
    assert not cached and service.reasons["field_backfill"] == 1
    assert result == sg.find("Shot", [], ["description"])
    _, cached = answered_from_cache(cached_proxy, lambda: client.find("Shot", [], ["code"]))
    assert cached  # the other fields are still answered


# --- kept plans ---------------------------------------------------------------------------------------


def test_a_kept_plan_is_not_used_once_a_field_it_reads_gets_a_backfill_mark(cached_proxy, sg):
    # A plan is kept under the read state it was compiled against: the same request after the
    # state changed is compiled again, and passes through.
    service = cached_proxy.service
    plans = service.reads.plans
    client = cached_proxy.client()
    ask = lambda: client.find("Shot", [["code", "starts_with", "SH"]], ["code", "description"])  # noqa: E731
    assert answered_from_cache(cached_proxy, ask)[1]
    hits = plans.hits
    result, cached = answered_from_cache(cached_proxy, ask)
    assert cached and plans.hits == hits + 1
    assert result == sg.find("Shot", [["code", "starts_with", "SH"]], ["code", "description"])
    fields = service.cache.tables.state.fields
    with service.cache.engine.begin() as conn:
        conn.execute(sa.update(fields).where(fields.c.entity_type == "Shot", fields.c.field_name == "description")
                     .values(needs_backfill=True, backfill_reason="test"))
    time.sleep(service.STATE_TTL)
    result, cached = answered_from_cache(cached_proxy, ask)
    assert not cached and service.reasons["field_backfill"] == 1
    assert result == sg.find("Shot", [["code", "starts_with", "SH"]], ["code", "description"])


def test_reads_counting_from_now_are_compiled_each_time(cached_proxy):
    plans = cached_proxy.service.reads.plans
    client = cached_proxy.client()
    client.find("Shot", [["code", "is", "SH001"]], ["code"])
    kept = len(plans)
    assert kept >= 1
    for _ in range(2):
        _, cached = answered_from_cache(cached_proxy, lambda: client.find(
            "Shot", [["created_at", "in_last", [1, "DAY"]]], ["code"]))
        assert cached
    assert len(plans) == kept


def test_plan_cache_zero_compiles_every_read(make_proxy, world):
    proxy = make_proxy(reads__plan_cache="0")
    import_all(proxy)
    client = proxy.client()
    for _ in range(2):
        assert answered_from_cache(proxy, lambda: client.find("Shot", [], ["code"]))[1]
    assert len(proxy.service.reads.plans) == 0 and proxy.service.reads.plans.hits == 0


def test_every_read_state_field_is_in_the_plan_key_or_left_out_on_purpose():
    # A new field the compiler reads must be in the key, or plans kept before it changed would
    # still be used after.
    from dataclasses import fields

    from sgcache.store.readstate import PLAN_FIELDS, ReadState

    about_callers_or_the_past = {"auth_epoch", "tripped", "history_from", "history_until", "history_pruned"}
    assert {f.name for f in fields(ReadState)} == set(PLAN_FIELDS) | about_callers_or_the_past


@pytest.mark.parametrize("call,reason", [
    (lambda sg: sg.find("Shot", [], ["code", "sg_cut_in", "no_such_field"]), "uncached_field"),
    (lambda sg: sg.find("Note", [], ["subject"]), "uncached_type"),
    (lambda sg: sg.find("Shot", [], ["code"], additional_filter_presets=[{"preset_name": "LATEST",
                                                                            "latest_by": "ENTITIES_CREATED_AT"}]),
     "filter_presets"),
], ids=["uncached field", "uncached type", "filter presets"])
def test_what_the_cache_cannot_answer_passes_through_with_its_reason_counted(cached_proxy, sg, call, reason):
    client = cached_proxy.client()
    try:
        expected = ("ok", call(sg))
    except shotgun_api3.Fault as e:
        expected = ("fault", str(e))
    try:
        actual = ("ok", call(client))
    except shotgun_api3.Fault as e:
        actual = ("fault", str(e))
    assert actual == expected
    assert cached_proxy.service.reasons[reason] >= 1


def test_a_filter_the_site_refuses_gets_the_site_s_own_fault(cached_proxy, sg):
    with pytest.raises(shotgun_api3.Fault) as direct:
        sg.find("Shot", [["code", "in_last", 1, "DAY"]])
    with pytest.raises(shotgun_api3.Fault) as through:
        cached_proxy.client().find("Shot", [["code", "in_last", 1, "DAY"]])
    assert str(through.value) == str(direct.value)


def test_a_cache_holding_some_projects_passes_reads_through(make_proxy, sg, world):
    proxy = make_proxy()
    import_all(proxy, projects=[world["projects"][0]["id"]])
    time.sleep(proxy.service.STATE_TTL)
    client = proxy.client()
    result, cached = answered_from_cache(proxy, lambda: client.find("Shot", [], ["code"]))
    assert not cached and proxy.service.reasons["project_subset"] == 1
    assert result == sg.find("Shot", [], ["code"])


def test_a_write_through_the_proxy_is_read_back_from_the_cache(cached_proxy, sg, world):
    client = cached_proxy.client()
    shot = client.create("Shot", {"code": "NEW_010", "project": world["projects"][0],
                                  "assets": [world["assets"][1]]})
    result, cached = answered_from_cache(cached_proxy, lambda: client.find_one(
        "Shot", [["code", "is", "new_010"]], ["code", "assets", "sg_sequence"]))
    assert cached
    assert result == {"type": "Shot", "id": shot["id"], "code": "NEW_010", "sg_sequence": None,
                      "assets": [{"type": "Asset", "id": world["assets"][1]["id"], "name": "Table"}]}
    asset, cached = answered_from_cache(cached_proxy, lambda: client.find_one(
        "Asset", [["id", "is", world["assets"][1]["id"]]], ["shots"]))
    assert cached
    assert {"type": "Shot", "id": shot["id"], "name": "NEW_010"} in asset["shots"]


# --- credentials before cached answers ----------------------------------------------------------------


def test_cached_reads_need_credentials_the_site_accepts(cached_proxy):
    bad = shotgun_api3.Shotgun(cached_proxy.url, script_name="sgcache", api_key="wrong", connect=False)
    with pytest.raises(shotgun_api3.AuthenticationFault):
        bad.find("Shot", [], ["code"])
    assert cached_proxy.service.cache_answers == 0


def test_a_caller_is_checked_once_then_remembered(make_proxy, mock_server, world):
    proxy = make_proxy(auth__groups="artist=all")
    import_all(proxy)
    client = shotgun_api3.Shotgun(proxy.url, login="artist", password="artist-password")
    before = calls(mock_server, "read")
    for _ in range(5):
        client.find("Shot", [], ["code"])
    # one credential check and one read of who the person is, then five cached answers
    assert calls(mock_server, "read") - before == 2


def test_a_caller_s_concurrent_first_requests_cost_the_site_what_one_does(make_proxy, mock_site, mock_server,
                                                                         world):
    # A farm job's threads start together: before, each asked the site whether its credentials
    # were good and who it was, and with site.max_concurrent 2 some got "busy" faults instead
    # of answers.
    import threading

    from sgcache.mocksite.server import MockServer

    import_all(make_proxy())
    slow = MockServer(mock_site, latency_ms=200).start()  # every thread arrives while the first asks
    try:
        def artists(proxy, n):
            return [shotgun_api3.Shotgun(proxy.url, login="artist", password="artist-password") for _ in range(n)]

        settings = {"site_url": slow.url, "auth__groups": "artist=all", "site__max_concurrent": "2"}
        (alone,) = artists(make_proxy(**settings), 1)
        before = calls(mock_server, "read")
        expected = alone.find("Shot", [], ["code"])
        one_costs = calls(mock_server, "read") - before
        assert one_costs >= 2  # at least a credential check and a look-up of the person

        clients = artists(make_proxy(**settings), 8)
        before = calls(mock_server, "read")
        start, answers = threading.Barrier(len(clients)), []

        def read(client):
            start.wait()
            try:
                answers.append(client.find("Shot", [], ["code"]))
            except shotgun_api3.Fault as e:
                answers.append(e)

        threads = [threading.Thread(target=read, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert answers == [expected] * len(clients)
        assert calls(mock_server, "read") - before == one_costs
    finally:
        slow.stop()


def test_a_recently_verified_caller_keeps_getting_cached_reads_while_the_site_is_down(make_proxy, mock_server,
                                                                                     world):
    proxy = make_proxy(site__connect_timeout=1)
    import_all(proxy)
    time.sleep(proxy.service.STATE_TTL)
    client = proxy.client()
    before = client.find("Shot", [], ["code"])
    stranger = shotgun_api3.Shotgun(proxy.url, login="artist", password="artist-password", connect=False)
    stranger.config.server_caps = client.server_caps  # skip its info call
    mock_server.go_down(2)
    time.sleep(0.1)
    assert client.find("Shot", [], ["code"]) == before
    with pytest.raises(shotgun_api3.Fault, match="cannot check your credentials"):
        stranger.find("Shot", [], ["code"])


def test_cached_scripts_sends_other_callers_to_the_site(make_proxy, world, mock_server):
    proxy = make_proxy(auth__cached_scripts="pipeline")
    import_all(proxy)
    client = proxy.client()
    result, cached = answered_from_cache(proxy, lambda: client.find("Shot", [], ["code"]))
    assert not cached and proxy.service.reasons["caller_not_in_cached_scripts"] == 1


# --- schema ----------------------------------------------------------------------------------------------


def test_schema_calls_are_answered_from_one_copy_of_the_site_s_schema(cached_proxy, sg, mock_server):
    client = cached_proxy.client()
    for _ in range(3):
        assert client.schema_read() == sg.schema_read()
        assert client.schema_entity_read() == sg.schema_entity_read()
        assert client.schema_field_read("Shot") == sg.schema_field_read("Shot")
        assert client.schema_field_read("Shot", "code") == sg.schema_field_read("Shot", "code")
    # The copy covers the whole site, not only the cached types.
    assert "Note" in client.schema_read()
    assert calls(mock_server, "schema_read") == 1 + 3  # sgcache's one copy, plus the three direct calls
    assert cached_proxy.service.cache_answers >= 12


def test_a_schema_change_seen_by_the_watcher_refreshes_the_copy(cached_proxy, sg):
    client = cached_proxy.client()
    assert "sg_new_field" not in client.schema_field_read("Shot")
    sg.schema_field_create("Shot", "text", "New Field")
    service = cached_proxy.service
    watcher = Watcher(service.cache.engine, service.cache.tables, Remote(cached_proxy.config.site),
                      cached_proxy.config.watcher)
    watcher.start()
    watcher.poll_once()
    assert "sg_new_field" in client.schema_field_read("Shot")


def test_unknown_types_and_fields_in_schema_calls_get_the_site_s_fault(cached_proxy, sg):
    for call in (lambda c: c.schema_field_read("NoSuchType"), lambda c: c.schema_field_read("Shot", "nope")):
        with pytest.raises(shotgun_api3.Fault) as direct:
            call(sg)
        with pytest.raises(shotgun_api3.Fault) as through:
            call(cached_proxy.client())
        assert str(through.value) == str(direct.value)


def test_per_project_schema_calls_pass_through(cached_proxy, sg, world):
    project = world["projects"][0]
    assert cached_proxy.client().schema_entity_read(project) == sg.schema_entity_read(project)
    assert cached_proxy.service.reasons["schema_project"] == 1


def test_reads_pass_through_when_the_cache_database_fails(cached_proxy, sg, monkeypatch):
    service = cached_proxy.service
    with service.cache.engine.begin() as conn:
        set_meta(conn, service.cache.tables.state, "probe", "x")
    service.cache.failed(RuntimeError("simulated outage"))
    monkeypatch.setattr("sgcache.api3.cache.RECHECK_SECONDS", 3600)
    result, cached = answered_from_cache(cached_proxy, lambda: cached_proxy.client().find("Shot", [], ["code"]))
    assert not cached and service.reasons["database_down"] >= 1
    assert result == sg.find("Shot", [], ["code"])


def test_the_answer_says_where_it_came_from(cached_proxy):
    body = {"method_name": "read", "params": [
        {"script_name": SCRIPT_AUTH["script_name"], "script_key": SCRIPT_AUTH["api_key"]},
        {"type": "Shot", "return_fields": ["code"], "filters": {"logical_operator": "and", "conditions": []},
         "return_only": "active", "paging": {"entities_per_page": 5, "current_page": 1},
         "return_paging_info_without_counts": True}]}
    response = requests.post(cached_proxy.url + "/api3/json", json=body, timeout=5)
    assert response.headers["X-Sgcache-Outcome"] == "cache"
    assert len(response.json()["results"]["entities"]) == 5
    assert response.json()["results"]["paging_info"] == {"has_next_page": True}


@pytest.mark.postgresql
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_read_survives_the_database_dropping_its_connections(cached_proxy, sg):
    client = cached_proxy.client()
    client.find("Shot", [], ["code"])  # the pool now holds an open connection
    engine = cached_proxy.service.cache.engine
    killer = sa.create_engine(engine.url.render_as_string(hide_password=False))
    with killer.connect() as conn:
        killed = conn.execute(sa.text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'sgcache-web' AND datname = current_database()")).scalar()
    killer.dispose()
    assert killed >= 1
    result, cached = answered_from_cache(cached_proxy, lambda: client.find("Shot", [], ["code"]))
    assert cached
    assert result == sg.find("Shot", [], ["code"])


# --- the site's time zone --------------------------------------------------------------------------------


@pytest.mark.parametrize("zone", ["Pacific/Auckland", "America/Los_Angeles"])
def test_relative_dates_count_days_in_the_site_s_time_zone(site_schema, tmp_path, db_url, proxy_schema_path,
                                                            zone):
    import datetime as dt

    from conftest import ProxyServer, proxy_config

    from sgcache.mocksite import MockSite
    from sgcache.mocksite.server import MockServer
    from sgcache.schema import load
    from sgcache.store.db import create_engine
    from sgcache.store.migrate import migrate
    from sgcache.store.tables import Tables

    site = MockSite(schema_copy(site_schema), timezone=zone, file_dir=tmp_path / "files")
    project = site.load_entity("Project", {"name": "TZ"})
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    # Every half hour for three days either side: some land on each side of local midnights.
    for step in range(-144, 145):
        moment = now + dt.timedelta(minutes=30 * step, seconds=7)
        site.load_entity("Shot", {"code": f"S{step:+04d}", "project": {"type": "Project", "id": project},
                                  "sg_cut_in": step}, created_at=moment)
    with MockServer(site) as server:
        config = proxy_config(tmp_path, server.url, db_url, proxy_schema_path, site__timezone=zone)
        engine = create_engine(db_url)
        tables = Tables(load(proxy_schema_path))
        migrate(engine, tables)
        Scanner(engine, tables, Remote(config.site), config.scanner).full()
        engine.dispose()
        proxy = ProxyServer(config)
        try:
            direct = shotgun_api3.Shotgun(server.url, **SCRIPT_AUTH)
            via = proxy.client()
            filters = [["created_at", rel, off] for rel in ("in_calendar_day", "in_calendar_week")
                       for off in (-1, 0, 1)]
            filters += [["created_at", rel, 1, "DAY"] for rel in ("in_last", "in_next", "not_in_last")]
            for f in filters:
                expected = direct.find("Shot", [f], ["code"])
                before = proxy.service.cache_answers
                assert via.find("Shot", [f], ["code"]) == expected, f
                assert proxy.service.cache_answers == before + 1
            summary = [{"field": "id", "type": "count"}]
            grouping = [{"field": "created_at", "type": "day", "direction": "asc"}]
            assert via.summarize("Shot", [], summary, grouping=grouping) == \
                direct.summarize("Shot", [], summary, grouping=grouping)
        finally:
            proxy.stop()
            proxy.service.cache.engine.dispose()


def test_reads_come_from_database_read_url_and_writes_go_to_database_url(make_proxy, sg, world, tmp_path, db_url):
    """database.read_url: cached reads from the replica, the read-back after a write into the primary."""
    if not db_url.startswith("sqlite"):
        pytest.skip("routing between two databases; a copied SQLite file stands in for the replica")
    import sqlite3

    primary = make_proxy()
    import_all(primary)
    replica_path = tmp_path / "replica.sqlite"
    with sqlite3.connect(db_url.removeprefix("sqlite:///")) as source, sqlite3.connect(replica_path) as copy:
        source.backup(copy)
    replica = sa.create_engine(f"sqlite:///{replica_path}")
    shot = world["shots"][0]
    with replica.begin() as conn:  # only the replica says so
        conn.execute(sa.text("UPDATE shot SET code = 'FROM-REPLICA' WHERE id = :id"), {"id": shot["id"]})
    proxy = make_proxy(database__read_url=f"sqlite:///{replica_path}")
    client = proxy.client()
    found, cached = answered_from_cache(proxy, lambda: client.find_one("Shot", [["id", "is", shot["id"]]], ["code"]))
    assert cached and found["code"] == "FROM-REPLICA"
    client.update("Shot", shot["id"], {"description": "written"})
    with sa.create_engine(db_url).connect() as conn:
        assert conn.execute(sa.text("SELECT description FROM shot WHERE id = :id"), {"id": shot["id"]}).scalar() \
            == "written"
    with replica.connect() as conn:
        assert conn.execute(sa.text("SELECT description FROM shot WHERE id = :id"), {"id": shot["id"]}).scalar() \
            != "written"
    replica.dispose()


def test_a_field_stored_otherwise_than_this_schema_says_passes_through(make_proxy, sg, world, tmp_path):
    """A proxy whose schema file (or version) differs from the last migration: the fields whose
    storage differs pass through (never read as the wrong type), the others stay cached."""
    from sgcache.schema import load
    from sgcache.schema.yamlio import dumps

    migrated = make_proxy()
    import_all(migrated)
    schema = load(migrated.config.schema.path)
    schema["Shot"].fields["description"].data_type = "number"  # as if the site changed it since
    newer = tmp_path / "newer.yml"
    newer.write_text(dumps(schema))
    proxy = make_proxy(schema__path=str(newer), migrated=False)
    client = proxy.client()
    expected = sg.find("Shot", [], ["code", "description"], order=[{"field_name": "id", "direction": "asc"}])
    found, cached = answered_from_cache(proxy, lambda: client.find(
        "Shot", [], ["code", "description"], order=[{"field_name": "id", "direction": "asc"}]))
    assert not cached and found == expected
    assert proxy.service.reasons["schema_mismatch"] == 1
    _, cached = answered_from_cache(proxy, lambda: client.find("Shot", [], ["code"]))
    assert cached


SQL_SUMMARIES = [
    ([{"field": "id", "type": "record_count"}], []),
    ([{"field": "id", "type": "count"}, {"field": "id", "type": "sum"}, {"field": "id", "type": "maximum"}],
     [{"field": "sg_status_list", "type": "exact", "direction": "asc"}]),
    ([{"field": "id", "type": "record_count"}, {"field": "description", "type": "count"}],
     [{"field": "sg_status_list", "type": "exact", "direction": "asc"}]),
    ([{"field": "sg_cut_in", "type": "sum"}, {"field": "sg_cut_in", "type": "average"},
      {"field": "sg_cut_in", "type": "maximum"}, {"field": "sg_cut_in", "type": "minimum"}],
     [{"field": "sg_status_list", "type": "exact", "direction": "desc"},
      {"field": "sg_cut_in", "type": "exact", "direction": "asc"}]),
    ([{"field": "code", "type": "count"}], [{"field": "description", "type": "exact", "direction": "asc"}]),
]


@pytest.mark.parametrize("summaries, grouping", SQL_SUMMARIES)
def test_summaries_totalled_in_sql_equal_the_row_by_row_totals(cached_proxy, sg, world, summaries, grouping):
    from zoneinfo import ZoneInfo

    from sgcache.query.paths import Context
    from sgcache.query.summarize import compile_summarize

    for i, shot in enumerate(world["shots"]):  # numbers to add up, some unset
        sg.update("Shot", shot["id"], {"sg_cut_in": None if i % 4 == 0 else 1000 + 7 * i,
                                       "sg_status_list": ["ip", "fin", "wtg"][i % 3]})
    import_all(cached_proxy)
    service = cached_proxy.service
    args = {"type": "Shot", "filters": {"logical_operator": "and", "conditions": []}, "summaries": summaries,
            "grouping": grouping}
    ctx = Context(service.cache.tables, service.read_state(), service.cache.engine.dialect.name, tz=ZoneInfo("UTC"))
    plan = compile_summarize(ctx, args)
    assert plan.aggregate is not None
    with service.cache.engine.connect() as conn:
        in_sql = plan.run(conn)
        plan.aggregate = None
        row_by_row = plan.run(conn)
    assert in_sql == row_by_row
    answer = cached_proxy.client().summarize("Shot", [], summaries, grouping=grouping or None)
    assert answer == sg.summarize("Shot", [], summaries, grouping=grouping or None)


def test_other_summaries_and_groupings_stay_row_by_row(cached_proxy):
    from zoneinfo import ZoneInfo

    from sgcache.query.paths import Context
    from sgcache.query.summarize import compile_summarize

    service = cached_proxy.service
    ctx = Context(service.cache.tables, service.read_state(), service.cache.engine.dialect.name, tz=ZoneInfo("UTC"))
    for summaries, grouping in (([{"field": "sg_status_list", "type": "status_list"}], []),
                                ([{"field": "id", "type": "record_count"}],
                                 [{"field": "sg_sequence", "type": "exact"}]),
                                ([{"field": "id", "type": "record_count"}],
                                 [{"field": "created_at", "type": "day"}])):
        plan = compile_summarize(ctx, {"type": "Shot", "filters": {"logical_operator": "and", "conditions": []},
                                       "summaries": summaries, "grouping": grouping})
        assert plan.aggregate is None, (summaries, grouping)


def test_a_write_through_the_proxy_to_an_entity_revived_without_an_event_restores_the_links_to_it(
        cached_proxy, sg, world):
    asset = world["assets"][1]
    shot = sg.create("Shot", {"code": "LINKS_010", "project": world["projects"][0], "assets": [asset]})
    sg.delete("Asset", asset["id"])
    import_all(cached_proxy)  # reads the shot while the asset is retired: no link to it
    quiet = shotgun_api3.Shotgun(cached_proxy.config.site.base_url, script_name="quiet-script",
                                 api_key="quiet-demo-key")
    quiet.revive("Asset", asset["id"])  # no event
    client = cached_proxy.client()
    client.update("Asset", asset["id"], {"description": "back"})
    result, cached = answered_from_cache(cached_proxy, lambda: client.find_one(
        "Shot", [["id", "is", shot["id"]]], ["assets"]))
    assert cached
    assert result["assets"] == [{"type": "Asset", "id": asset["id"], "name": "Table"}]


def test_a_write_through_the_proxy_follows_the_other_sides_of_other_sides(cached_proxy, sg, world):
    # A script with events off sets a sequence's shots, leaving one shot out: that shot's
    # sg_sequence is now None on the site, its updated_at unmoved. Then writes through the proxy
    # unlink and link another shot: the read-back reads the sequence again (other side of the
    # changed link), and must follow the sequence's own changed shots to the shot left out.
    seq = world["sequence"]
    left_out, linked = world["shots"][0], world["shots"][1]
    others = [s for s in sg.find("Shot", [["sg_sequence", "is", seq]], ["id"]) if s["id"] != left_out["id"]]
    quiet = shotgun_api3.Shotgun(cached_proxy.config.site.base_url, script_name="quiet-script",
                                 api_key="quiet-demo-key")
    quiet.update("Sequence", seq["id"], {"shots": [{"type": "Shot", "id": s["id"]} for s in others]})
    cached_proxy.client().update("Shot", linked["id"], {"sg_sequence": None})
    cached_proxy.client().update("Shot", linked["id"], {"sg_sequence": seq})
    result, cached = answered_from_cache(cached_proxy, lambda: cached_proxy.client().find_one(
        "Shot", [["id", "is", left_out["id"]]], ["sg_sequence"]))
    assert cached
    assert result["sg_sequence"] is None
    assert linked["id"] in [s["id"] for s in others]


def test_a_request_too_deep_to_key_is_compiled_as_any_other():
    # Parsed a little higher up the stack, a request nested nearly as deep as JSON allows may be
    # too deep to write out again for its key: it is compiled (and judged there), never a 500.
    from sgcache.api3.plans import PlanCache
    from sgcache.store.readstate import ReadState

    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    assert PlanCache(8).key("read", {"type": "Shot", "filters": deep}, ReadState(ready=frozenset())) is None
    assert PlanCache(8).key("read", {"type": "Shot"}, ReadState(ready=frozenset())) is not None



def test_equal_read_states_key_a_plan_with_one_object_and_a_changed_state_with_its_own():
    from sgcache.api3.plans import PlanCache
    from sgcache.store.readstate import ReadState
    from sgcache.store.slim import SlimType

    slim = {"Note": SlimType("Note", "subject", True)}
    cache, args = PlanCache(8), {"type": "Shot"}
    first = cache.key("read", args, ReadState(ready=frozenset({"Shot"}), slim=slim))
    again = cache.key("read", args, ReadState(ready=frozenset({"Shot"}), slim=dict(slim)))
    assert again == first and again[2] is first[2]  # found by identity, not by comparing the states
    changed = cache.key("read", args, ReadState(ready=frozenset({"Shot", "Asset"}), slim=slim))
    assert changed != first
    assert cache.key("read", args, ReadState(ready=frozenset({"Shot"}), slim=slim)) == first


RETIRED_TARGET_READS = [
    lambda ids: ("Shot", [["sg_sequence", "is", {"type": "Sequence", "id": ids["sequence"]}]], ["code"]),
    lambda ids: ("Shot", [["sg_sequence", "is_not", {"type": "Sequence", "id": ids["sequence"]}]], ["code"]),
    lambda ids: ("Shot", [["sg_sequence", "in", [{"type": "Sequence", "id": ids["sequence"]}]]], ["code"]),
    lambda ids: ("Shot", [["sg_sequence", "in", [{"type": "Sequence", "id": ids["sequence"]},
                                                 {"type": "Sequence", "id": 999_999}]]], ["code"]),
    lambda ids: ("Shot", [["assets", "is", {"type": "Asset", "id": ids["asset"]}]], ["code"]),
    lambda ids: ("Shot", [["assets", "in", [{"type": "Asset", "id": ids["asset"]},
                                            {"type": "Asset", "id": ids["other_asset"]}]]], ["code"]),
    lambda ids: ("Shot", [["project", "is", {"type": "Project", "id": ids["project"]}]], ["code"]),
]


@pytest.mark.parametrize("index", range(len(RETIRED_TARGET_READS)))
def test_a_filter_naming_one_retired_entity_matches_what_the_site_matches(cached_proxy, sg, world, index):
    ids = {"sequence": world["sequence"]["id"], "asset": world["assets"][0]["id"],
           "other_asset": world["assets"][1]["id"], "project": world["projects"][1]["id"]}
    client = cached_proxy.client()
    # Retired after the import, through the proxy: the Shots' rows still hold the links.
    client.delete("Sequence", ids["sequence"])
    client.delete("Asset", ids["asset"])
    read = RETIRED_TARGET_READS[index](ids)
    result, cached = answered_from_cache(cached_proxy, lambda: client.find(*read))
    assert cached
    assert result == sg.find(*read)


def test_threads_finding_the_read_state_due_read_the_tables_once(proxy, monkeypatch):
    import threading

    from sgcache.api3 import reads

    loads = []

    def slow_load(conn, tables):
        loads.append(threading.get_ident())
        time.sleep(0.2)  # long enough for every thread to find the state due meanwhile
        return real_load(conn, tables)

    real_load = reads.load_state
    monkeypatch.setattr(reads, "load_state", slow_load)
    service = proxy.service.reads
    states = together(8, service.read_state)
    assert len(loads) == 1
    assert len(states) == 8 and all(s is states[0] for s in states)


def test_threads_waiting_for_a_read_state_that_fails_take_the_failure_not_a_turn_each(proxy, monkeypatch):
    # A database that takes its connect timeout to fail would otherwise be waited out by each
    # thread in turn; the requests pass through at once instead.

    from sgcache.api3 import reads

    loads = []

    def failing_load(conn, tables):
        loads.append(1)
        time.sleep(0.2)
        raise sa.exc.OperationalError("SELECT", {}, Exception("server closed the connection"))

    monkeypatch.setattr(reads, "load_state", failing_load)
    started = time.monotonic()
    got = [e for e in together(8, proxy.service.reads.read_state) if isinstance(e, sa.exc.OperationalError)]
    assert len(loads) == 1 and len(got) == 8
    assert time.monotonic() - started < 1.0


def test_a_returned_link_that_a_filter_joined_is_named_from_that_join(cached_proxy, sg, world):
    engine = cached_proxy.service.cache.read_engine
    names_queries = []

    def count(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("SELECT sequence.id"):
            names_queries.append(statement)

    joined = ("Shot", [["sg_sequence.Sequence.code", "is", "SQ01"]], ["code", "sg_sequence", "project"])
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        client = cached_proxy.client()
        result, cached = answered_from_cache(cached_proxy, lambda: client.find(*joined))
        assert cached and result == sg.find(*joined) and len(result) == 8
        assert names_queries == []  # the Sequence's name came with the page
        # Retired: the filter's join finds no live Sequence, and the link reads as none.
        client.delete("Sequence", world["sequence"]["id"])
        unjoined = ("Shot", [["sg_sequence.Sequence.code", "is_not", "SQ02"]], ["code", "sg_sequence"])
        result, cached = answered_from_cache(cached_proxy, lambda: client.find(*unjoined))
        assert cached and result == sg.find(*unjoined)
        assert [shot["sg_sequence"] for shot in result] == [None] * 8
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
