"""History: the versions the cache keeps of every row, and reads of the past through ``/as-of/<time>``.

The stand-in and the proxy run as real servers; the real client reads the site at moments T1, T2,
T3 while entities are changed, linked, renamed, retired, revived and made in between, and the
watcher applies the site's events. The same calls through ``/as-of/T`` (a fixed set, and 200
random finds and summaries: ``SGCACHE_HISTORY_CALLS`` and ``SGCACHE_HISTORY_SEED`` change them)
must then give exactly the answers the site gave at T, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import random
import time

import pytest
import shotgun_api3
import sqlalchemy as sa
from conftest import report

from sgcache.store import history
from sgcache.store.writer import Writer
from sgcache.sync.remote import Remote
from sgcache.sync.scanner import Scanner
from sgcache.sync.watcher import Watcher


def make_world(sg) -> dict:
    """Two projects, a sequence, three assets and eight shots linked to them, made on the site."""
    p1 = sg.create("Project", {"name": "Alpha"})
    p2 = sg.create("Project", {"name": "Beta"})
    seq = sg.create("Sequence", {"code": "SQ01", "project": p1})
    assets = [sg.create("Asset", {"code": code, "project": p1}) for code in ("chair", "Table", "lamp")]
    shots = [sg.create("Shot", {"code": f"SH{i:03d}", "project": p1 if i % 2 else p2, "sg_sequence": seq,
                                "sg_status_list": ["wtg", "ip", "fin"][i % 3], "description": f"shot {i}",
                                "assets": assets[: i % 3]})
             for i in range(1, 9)]
    return {"projects": [p1, p2], "sequence": seq, "assets": assets, "shots": shots}


@pytest.fixture
def world(sg):
    return make_world(sg)


@pytest.fixture
def watched_proxy(make_proxy, world, monkeypatch):
    """A proxy whose cache holds a full import of the stand-in, with a watcher to drive by hand."""
    monkeypatch.setattr(Watcher, "COMMIT_LAG", 0.2)
    proxy = make_proxy()
    service = proxy.service
    watcher = Watcher(service.cache.engine, service.cache.tables, Remote(proxy.config.site), proxy.config.watcher)
    watcher.start()  # the cursor starts before the import, as `sgcache auto` starts it
    Scanner(service.cache.engine, service.cache.tables, Remote(proxy.config.site), proxy.config.scanner).full()
    proxy.watcher = watcher
    return proxy


def catch_up(proxy) -> None:
    """Apply every event the site has logged (the watcher finds nothing more)."""
    for _ in range(20):
        if proxy.watcher.poll_once() == 0:
            return
    raise AssertionError("the watcher did not catch up")


def moment() -> dt.datetime:
    """The next whole second, once it has passed (the site's times are whole seconds): nothing
    written before this returns changes after it."""
    now = time.time()
    at = math.ceil(now) if now % 1 > 0 else now
    time.sleep(max(0.0, at - now) + 0.05)
    return dt.datetime.fromtimestamp(at, dt.UTC)


def after(at: dt.datetime) -> None:
    """Wait until the second of ``at`` is over, so later writes have later site times."""
    time.sleep(max(0.0, at.timestamp() + 1.0 - time.time()) + 0.05)


def stamp(at: dt.datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


CALLS = [
    lambda sg: sg.find("Shot", [], ["code", "sg_status_list", "description", "assets", "sg_sequence", "project"],
                       order=[{"field_name": "id", "direction": "asc"}]),
    lambda sg: sg.find("Shot", [["project.Project.name", "is", "Alpha"]], ["code", "assets"],
                       order=[{"field_name": "code", "direction": "desc"}]),
    lambda sg: sg.find("Shot", [["assets", "is", {"type": "Asset", "id": 1}]], ["code"]),
    lambda sg: sg.find("Shot", [["sg_status_list", "in", ["ip", "fin"]]], ["code", "sg_sequence.Sequence.code"]),
    lambda sg: sg.find("Shot", [], ["code"], retired_only=True),
    lambda sg: sg.find("Asset", [], ["code", "shots"], order=[{"field_name": "code", "direction": "asc"}]),
    lambda sg: sg.find("Sequence", [], ["code", "shots"]),
    lambda sg: sg.find("Shot", [], ["code"], limit=3, page=2, order=[{"field_name": "code", "direction": "asc"}]),
    lambda sg: sg.find_one("Shot", [["code", "starts_with", "sh00"]], ["code", "description"]),
    lambda sg: sg.summarize("Shot", [], [{"field": "id", "type": "count"}],
                            grouping=[{"field": "sg_status_list", "type": "exact", "direction": "asc"}]),
    lambda sg: sg.summarize("Shot", [["project.Project.name", "is", "Beta"]], [{"field": "code", "type": "count"}]),
]


def record(sg) -> list:
    return [call(sg) for call in CALLS]


#: Random reads per moment in the differential (run more by hand), and their seed.
RANDOM_CALLS = int(os.environ.get("SGCACHE_HISTORY_CALLS", "200"))
RANDOM_SEED = int(os.environ.get("SGCACHE_HISTORY_SEED", "20261205"))


def random_calls(world: dict, n: int = RANDOM_CALLS, seed: int = RANDOM_SEED) -> list:
    """``n`` random finds and summaries over the world's types: conditions on every field the
    changes touch (text, status, links, lists, deep paths, ids), nested groups, sorts, pages,
    retired_only. Each sort ends with id, so site and cache order ties alike."""
    rng = random.Random(seed)
    shots, assets, seq = world["shots"], world["assets"], world["sequence"]
    words = ["SH001", "SH00", "renamed", "again", "SH100", "sh", "1", "-", "later"]
    link = lambda e: {"type": e["type"], "id": e["id"]}  # noqa: E731
    conditions = {
        "Shot": [
            lambda: ["code", rng.choice(["is", "is_not", "contains", "not_contains", "starts_with", "ends_with"]),
                     rng.choice(words)],
            lambda: ["code", rng.choice(["in", "not_in"]), rng.sample(["SH001", "SH002", "SH100", "SH001-renamed",
                                                                       "SH001-again", "SH003"], 2)],
            lambda: ["sg_status_list", rng.choice(["is", "is_not"]), rng.choice(["wtg", "ip", "fin"])],
            lambda: ["sg_status_list", "in", rng.sample(["wtg", "ip", "fin"], 2)],
            lambda: ["description", rng.choice(["is", "is_not"]), rng.choice([None, "shot 2", "shot 5"])],
            lambda: ["description", "contains", rng.choice(["shot", "2", "x"])],
            lambda: ["assets", rng.choice(["is", "is_not"]), link(rng.choice(assets))],
            lambda: ["assets", rng.choice(["name_contains", "name_is", "name_starts_with"]),
                     rng.choice(["a", "Desk", "Table", "ch", "lamp"])],
            lambda: ["assets", rng.choice(["is", "is_not"]), None],
            lambda: ["sg_sequence", rng.choice(["is", "is_not"]), rng.choice([link(seq), None])],
            lambda: ["sg_sequence.Sequence.code", rng.choice(["is", "starts_with", "is_not"]),
                     rng.choice(["SQ01", "SQ01b", "SQ"])],
            lambda: ["project.Project.name", rng.choice(["is", "is_not"]), rng.choice(["Alpha", "Beta"])],
            lambda: ["assets.Asset.code", rng.choice(["is", "contains"]), rng.choice(["Desk", "Table", "a", "lamp"])],
            lambda: ["id", rng.choice(["greater_than", "less_than", "is"]), rng.choice(shots)["id"]],
        ],
        "Asset": [
            lambda: ["code", rng.choice(["is", "contains", "starts_with"]), rng.choice(["Desk", "Table", "a", "ch"])],
            lambda: ["shots", rng.choice(["is", "is_not"]), link(rng.choice(shots))],
            lambda: ["shots.Shot.code", rng.choice(["contains", "is"]), rng.choice(words)],
            lambda: ["id", "in", [a["id"] for a in rng.sample(assets, 2)]],
        ],
        "Sequence": [
            lambda: ["code", rng.choice(["is", "starts_with"]), rng.choice(["SQ01", "SQ01b", "SQ"])],
            lambda: ["shots", rng.choice(["is", "is_not"]), link(rng.choice(shots))],
        ],
    }
    returned = {"Shot": ["code", "sg_status_list", "description", "assets", "sg_sequence", "project",
                         "sg_sequence.Sequence.code", "project.Project.name"],
                "Asset": ["code", "shots", "project"], "Sequence": ["code", "shots"]}
    sorts = {"Shot": ["code", "sg_status_list", "description", "sg_sequence", "id"], "Asset": ["code", "id"],
             "Sequence": ["code", "id"]}

    def group(entity_type: str, depth: int = 0) -> list:
        out = []
        for _ in range(rng.choice([0, 1, 1, 2, 3])):
            if depth < 2 and rng.random() < 0.2:
                out.append({"filter_operator": rng.choice(["all", "any"]), "filters": group(entity_type, depth + 1)})
            else:
                out.append(rng.choice(conditions[entity_type])())
        return out

    calls = []
    for _ in range(n):
        entity_type = rng.choice(["Shot", "Shot", "Shot", "Asset", "Sequence"])
        filters = group(entity_type)
        operator = rng.choice(["and", "or"])
        if rng.random() < 0.2:
            grouping = [{"field": rng.choice(["sg_status_list", "sg_sequence", "project"]) if entity_type == "Shot"
                         else "code", "type": "exact", "direction": rng.choice(["asc", "desc"])}]
            calls.append(lambda sg, t=entity_type, f=filters, o=operator, g=grouping: sg.summarize(
                t, f, [{"field": "id", "type": "count"}], filter_operator=o, grouping=g))
            continue
        fields = rng.sample(returned[entity_type], rng.randint(1, min(3, len(returned[entity_type]))))
        order = [{"field_name": rng.choice(sorts[entity_type]), "direction": rng.choice(["asc", "desc"])}]
        order.append({"field_name": "id", "direction": "asc"})
        limit = rng.choice([0, 0, 2, 3])
        page = rng.choice([1, 2]) if limit else 0
        retired = rng.random() < 0.1
        calls.append(lambda sg, t=entity_type, f=filters, fl=fields, o=order, op=operator, lim=limit, p=page,
                     r=retired: sg.find(t, f, fl, order=o, filter_operator=op, limit=lim, page=p, retired_only=r))
    return calls


def record_random(sg, calls: list) -> list:
    """Each call's answer, or None where the site refused it (such calls are not compared)."""
    out = []
    for call in calls:
        try:
            out.append(call(sg))
        except shotgun_api3.Fault:
            out.append(None)
    return out


def test_reads_as_of_past_moments_equal_what_the_site_answered_then(watched_proxy, sg, world):
    proxy = watched_proxy
    shots, assets = world["shots"], world["assets"]
    randoms = random_calls(world)
    catch_up(proxy)
    t1 = moment()
    seen = {t1: record(sg)}
    drawn = {t1: record_random(sg, randoms)}
    after(t1)
    sg.update("Shot", shots[0]["id"], {"code": "SH001-renamed", "sg_status_list": "fin"})
    sg.update("Shot", shots[1]["id"], {"assets": [assets[2], assets[0]]})
    sg.update("Asset", assets[1]["id"], {"code": "Desk"})  # the name of links to it changes
    sg.delete("Shot", shots[2]["id"])
    sg.create("Shot", {"code": "SH100", "project": world["projects"][0], "sg_status_list": "ip",
                       "assets": [assets[1]]})
    catch_up(proxy)
    t2 = moment()
    seen[t2] = record(sg)
    drawn[t2] = record_random(sg, randoms)
    after(t2)
    sg.revive("Shot", shots[2]["id"])
    sg.update("Shot", shots[1]["id"], {"assets": [], "description": None})
    sg.update("Shot", shots[0]["id"], {"code": "SH001-again"})
    sg.delete("Asset", assets[0]["id"])
    sg.update("Sequence", world["sequence"]["id"], {"code": "SQ01b"})
    catch_up(proxy)
    t3 = moment()
    seen[t3] = record(sg)
    drawn[t3] = record_random(sg, randoms)
    after(t3)
    sg.update("Shot", shots[3]["id"], {"code": "SH004-later"})  # after T3: no read of T3 may see it
    time.sleep(1.1)
    catch_up(proxy)  # records how far the watcher has looked (once a second)
    assert len({repr(v) for v in seen.values()}) == 3  # the moments differ
    from test_sync_crash import assert_versions_chain

    assert_versions_chain(proxy.service.cache.engine, proxy.service.cache.tables)
    for at, expected in seen.items():
        past = proxy.client(f"/as-of/{stamp(at)}/")
        before = proxy.service.cache_answers
        assert record(past) == expected, stamp(at)
        assert proxy.service.cache_answers == before + len(CALLS)
    # The random reads: the same answers, every one from the cache.
    compared = 0
    for at, answers in drawn.items():
        past = proxy.client(f"/as-of/{stamp(at)}/")
        for n, (call, expected) in enumerate(zip(randoms, answers, strict=True)):
            if expected is None:
                continue
            assert call(past) == expected, f"random call {n} (seed {RANDOM_SEED}) as of {stamp(at)}"
            compared += 1
    assert compared >= 0.9 * 3 * len(randoms)
    found = [a for answers in drawn.values() for a in answers if a not in (None, [])]
    assert len(found) >= 0.4 * compared  # most reads find something: the comparison means something
    assert len({repr(v) for v in drawn.values()}) == 3
    report(f"history differential [{proxy.config.database.url.split(':')[0]}]: {compared} random reads at 3 moments "
           f"(seed {RANDOM_SEED}) equal the site's")


def test_a_past_read_before_the_history_begins_is_refused_with_the_earliest_time(watched_proxy):
    catch_up(watched_proxy)
    past = watched_proxy.client("/as-of/2020-01-01T00:00:00Z/")
    with pytest.raises(shotgun_api3.Fault, match=r"cannot answer this read as of 2020-01-01T00:00:00Z exactly: "
                       r"history_before_start \(Shot: the cache's history of it begins at 20\d\d-"):
        past.find("Shot", [], ["code"])


def test_a_past_read_later_than_the_watcher_has_looked_is_refused(watched_proxy):
    catch_up(watched_proxy)
    future = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    with pytest.raises(shotgun_api3.Fault, match="history_not_yet .*the watcher has applied the site's changes up to"):
        watched_proxy.client(f"/as-of/{stamp(future)}/").find("Shot", [], ["code"])


def test_writes_and_other_methods_through_an_as_of_url_get_a_fault_and_reach_no_one(watched_proxy, sg):
    catch_up(watched_proxy)
    past = watched_proxy.client(f"/as-of/{stamp(dt.datetime.now(dt.UTC))}/")
    with pytest.raises(shotgun_api3.Fault, match="create cannot be sent through an as-of URL"):
        past.create("Shot", {"code": "never"})
    with pytest.raises(shotgun_api3.Fault, match="upload_url cannot|cannot be sent through an as-of URL"):
        past.text_search("hero", {"Shot": []})
    assert sg.find("Shot", [["code", "is", "never"]]) == []


def test_an_as_of_url_without_its_trailing_slash_gets_a_fault_not_the_present(watched_proxy):
    # The client turns http://host/as-of/T into requests to /as-of/api3/json: T is lost.
    with pytest.raises(shotgun_api3.Fault, match="needs a time and a trailing slash"):
        watched_proxy.client("/as-of/2026-12-01T18:00:00Z").find("Shot", [], ["code"])


BAD_TIMES = ["yesterday", "2026-12-01", "2026-12-01T18:00:00", "2026-13-01T18:00:00Z", "2026-12-01T18:00:00%2B01:00x",
             "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"]  # no such moment in UTC


def test_a_bad_as_of_time_gets_a_fault_naming_it(watched_proxy):
    for text in BAD_TIMES:  # one proxy for every case: each one costs an import
        with pytest.raises(shotgun_api3.Fault, match="as-of time .* (is not an ISO 8601 time with a zone|is not a "
                           "valid)"):
            watched_proxy.client(f"/as-of/{text}/").find("Shot", [], ["code"])


def test_a_zone_offset_names_the_same_moment_as_utc(watched_proxy, world):
    catch_up(watched_proxy)
    at = moment()
    time.sleep(1.1)  # the watcher records how far it has looked once a second
    catch_up(watched_proxy)
    local = (at.astimezone(dt.timezone(dt.timedelta(hours=5, minutes=30)))).isoformat()
    utc = watched_proxy.client(f"/as-of/{stamp(at)}/").find("Shot", [], ["code"])
    assert watched_proxy.client(f"/as-of/{local}/").find("Shot", [], ["code"]) == utc
    assert len(utc) == len(world["shots"])


# --- the writer's versions -----------------------------------------------------------------------


def versions(engine, tables, type_name: str) -> list[dict]:
    et = tables[type_name]
    h = et.history
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(h).order_by(h.c.id, h.c._valid_to)).mappings()]


T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def test_writing_the_same_values_again_keeps_no_version(engine, tables, writer):
    shot = {"type": "Shot", "id": 1, "code": "a", "sg_sequence": {"type": "Sequence", "id": 2}}
    writer.upsert("Shot", [shot], changed_at=at(0))
    writer.upsert("Shot", [shot], changed_at=at(5))
    writer.upsert("Shot", [dict(shot)], changed_at=at(9))
    assert versions(engine, tables, "Shot") == []


def test_a_change_keeps_the_values_it_replaces_with_their_interval(engine, tables, writer):
    writer.upsert("Shot", [{"type": "Shot", "id": 1, "code": "a"}], changed_at=at(0), event_id=10)
    writer.upsert("Shot", [{"type": "Shot", "id": 1, "code": "b"}], changed_at=at(5), event_id=11)
    writer.retire("Shot", [1], changed_at=at(7), event_id=12)
    writer.revive("Shot", [1], changed_at=at(9), event_id=13)
    kept = [(v["code"], v["_active"], v["_valid_from"], v["_valid_to"], v["_to_event"])
            for v in versions(engine, tables, "Shot")]
    assert kept == [("a", True, at(0), at(5), 11), ("b", True, at(5), at(7), 12), ("b", False, at(7), at(9), 13)]


def test_a_late_change_never_makes_versions_overlap(engine, tables, writer):
    writer.upsert("Shot", [{"type": "Shot", "id": 1, "code": "a"}], changed_at=at(10))
    writer.upsert("Shot", [{"type": "Shot", "id": 1, "code": "b"}], changed_at=at(5))  # told late
    (kept,) = versions(engine, tables, "Shot")
    assert (kept["code"], kept["_valid_from"], kept["_valid_to"]) == ("a", at(10), at(10))


def test_a_list_that_changes_keeps_its_old_rows_and_one_that_does_not_keeps_none(engine, tables, writer):
    assets = [{"type": "Asset", "id": 1}, {"type": "Asset", "id": 2}]
    writer.upsert("Shot", [{"type": "Shot", "id": 1, "assets": assets}], changed_at=at(0))
    writer.upsert("Shot", [{"type": "Shot", "id": 1, "assets": assets}], changed_at=at(3))
    writer.upsert("Shot", [{"type": "Shot", "id": 1, "assets": assets[1:]}], changed_at=at(6))
    h = tables.state.link_history
    with engine.connect() as conn:
        kept = sorted((r.entity_type, r.field, r.child_id, r.position, r._valid_from, r._valid_to)
                      for r in conn.execute(sa.select(h)))
    assert kept == [("Shot", "assets", 1, 0, at(0), at(6)), ("Shot", "assets", 2, 1, at(0), at(6))]


def test_rows_the_cache_forgets_end_in_history(engine, tables, writer):
    writer.upsert("Shot", [{"type": "Shot", "id": 1, "code": "a"}], changed_at=at(0))
    writer.forget("Shot", [1])
    (kept,) = versions(engine, tables, "Shot")
    assert kept["code"] == "a" and kept["_valid_to"] > at(0)


def test_as_of_views_give_each_moment_its_rows(engine, tables, writer):
    writer.upsert("Shot", [{"type": "Shot", "id": 1, "code": "a"}], changed_at=at(0))
    writer.upsert("Shot", [{"type": "Shot", "id": 1, "code": "b"}], changed_at=at(5))
    writer.upsert("Shot", [{"type": "Shot", "id": 2, "code": "c"}], changed_at=at(7))
    et = tables["Shot"]

    def codes(when):
        view = history.as_of(et.table, et.history, when)
        with engine.connect() as conn:
            return sorted(conn.execute(sa.select(view.c.code)).scalars())

    assert codes(at(-1)) == []
    assert codes(at(0)) == ["a"]
    assert codes(at(4)) == ["a"]
    assert codes(at(5)) == ["b"]
    assert codes(at(8)) == ["b", "c"]


def test_a_writer_keeps_versions_whatever_its_batch_size(engine, tables, monkeypatch):
    from sgcache.store import bulk

    monkeypatch.setattr(bulk, "MIN_ROWS", 2)
    writer = Writer(engine, tables)
    writer.upsert("Shot", [{"type": "Shot", "id": i, "code": f"a{i}"} for i in range(1, 6)], changed_at=at(0))
    writer.upsert("Shot", [{"type": "Shot", "id": i, "code": f"b{i}"} for i in range(1, 6)], changed_at=at(1))
    assert sorted(v["code"] for v in versions(engine, tables, "Shot")) == [f"a{i}" for i in range(1, 6)]


def test_a_cache_made_before_history_gets_its_tables_at_the_next_migration(engine, tables, writer, small_schema):
    from sgcache.store.migrate import migrate
    from sgcache.store.readstate import load_state
    from sgcache.store.tables import Tables

    writer.upsert("Shot", [{"type": "Shot", "id": 1, "code": "a"}])
    # As an sgcache without history left it: no history tables, no _valid_from, no history_from.
    with engine.begin() as conn:
        for et in tables:
            conn.execute(sa.text(f'DROP TABLE "{et.history.name}"'))
            for table in (et.table, *et.associations.values()):
                conn.execute(sa.text(f'ALTER TABLE "{table.name}" DROP COLUMN _valid_from'))
        conn.execute(sa.text("ALTER TABLE _sgcache_fields DROP COLUMN history_from"))
        conn.execute(sa.text("DROP TABLE _history_links"))
        conn.execute(sa.text("UPDATE _sgcache_fields SET needs_backfill = false WHERE entity_type = 'Shot'"))
    before = dt.datetime.now(dt.UTC)
    report = migrate(engine, Tables(small_schema))
    assert {"create table _history_shot", "create table _history_links", "add column shot._valid_from",
            "add column shot_assets._valid_from"} <= set(report.actions)
    assert migrate(engine, Tables(small_schema)).actions == []  # done once
    with engine.connect() as conn:
        state = load_state(conn, tables)
        assert conn.execute(sa.text("SELECT _valid_from FROM shot")).scalar() is None  # from before history
    assert state.history_from[("Shot", "code")] >= before
    writer.upsert("Shot", [{"type": "Shot", "id": 1, "code": "b"}], changed_at=at(0))
    (kept,) = versions(engine, tables, "Shot")
    assert (kept["code"], kept["_valid_from"], kept["_valid_to"]) == ("a", None, at(0))
    # A version from before history began, now ended, is what the past held before it ended.
    et = tables["Shot"]
    with engine.connect() as conn:
        for when, code in ((at(-1), "a"), (at(0), "b")):
            view = history.as_of(et.table, et.history, when)
            assert conn.execute(sa.select(view.c.code)).scalars().all() == [code]


EVERY_TYPE = {
    "type": "Shot", "id": 1, "code": "SH010", "description": "tab\there", "project": {"type": "Project", "id": 2},
    "sg_sequence": {"type": "Sequence", "id": 3}, "assets": [{"type": "Asset", "id": 4}, {"type": "Sequence", "id": 3}],
    "sg_status_list": "ip", "sg_shot_type": "Hero", "sg_cut_in": 1001, "sg_cut_duration": 240, "sg_timecode": 3600,
    "sg_percent": 50, "sg_rate": 23.976, "sg_budget": 1234.5, "sg_footage": "12-04", "sg_flag": True,
    "sg_color": "255,0,0", "sg_entity_type": "Asset", "sg_uuid": "7c4d6e2a-2f1e-4b3a-9c8d-0e1f2a3b4c5d",
    "sg_url_template": "https://x/{id}", "sg_start": "2026-01-02",
    "created_at": dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    "updated_at": dt.datetime(2026, 1, 1, 10, 0, tzinfo=dt.UTC),
    "sg_link": {"url": "https://x/y", "name": "y", "link_type": "web"}, "tag_list": ["hero", "fx"],
    "sg_data": {"nested": {"a": [1, None, True, 2.5]}, "q": "\"\\"},
}


def test_every_data_type_written_again_unchanged_keeps_no_version(engine, tables, writer):
    writer.upsert("Shot", [EVERY_TYPE])
    writer.upsert("Shot", [dict(EVERY_TYPE)], changed_at=at(60 * 24 * 400))
    writer.upsert("Shot", [{**EVERY_TYPE, "updated_at": EVERY_TYPE["updated_at"]}], event_id=5)
    assert versions(engine, tables, "Shot") == []
    writer.upsert("Shot", [{**EVERY_TYPE, "sg_rate": 24.0}], event_id=6)
    assert [v["sg_rate"] for v in versions(engine, tables, "Shot")] == [23.976]


# --- sgcache history and sgcache changes -----------------------------------------------------------


@pytest.fixture
def cli_cache(tmp_path, db_url, tables, writer, small_schema):
    """A config naming this test's cache, which holds a few changes of Shot 1."""
    from conftest import SMALL_SCHEMA

    (tmp_path / "schema.yml").write_text(SMALL_SCHEMA)
    config = tmp_path / "sgcache.yml"
    config.write_text(f"database:\n  url: {db_url}\nschema:\n  path: {tmp_path / 'schema.yml'}\n")
    assets = [{"type": "Asset", "id": 4}, {"type": "Asset", "id": 5}]
    writer.upsert("Shot", [{"type": "Shot", "id": 1, "code": "a", "assets": assets}], changed_at=at(0))
    writer.upsert("Shot", [{"type": "Shot", "id": 2, "code": "other"}], changed_at=at(0))
    writer.upsert("Shot", [{"type": "Shot", "id": 1, "code": "b", "assets": assets[1:]}], changed_at=at(5),
                  event_id=41)
    writer.retire("Shot", [1], changed_at=at(7), event_id=42)
    return config


def sgcache(config, *args: str):
    import os
    import subprocess
    import sys

    from conftest import ROOT

    env = {k: v for k, v in os.environ.items() if not k.startswith("SGCACHE_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "sgcache", "--config", str(config), *args], capture_output=True,
                          text=True, timeout=120, env=env)


def test_sgcache_history_prints_an_entity_s_timeline(cli_cache):
    out = sgcache(cli_cache, "history", "Shot", "1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        '2026-01-01T00:05:00Z  event 41  assets: [Asset 4, Asset 5] -> [Asset 5]',
        '2026-01-01T00:05:00Z  event 41  code: "a" -> "b"',
        '2026-01-01T00:07:00Z  event 42  retired: false -> true',
    ]
    only = sgcache(cli_cache, "history", "show", "Shot", "1", "--field", "code", "--json")
    import json

    assert json.loads(only.stdout) == [{"at": "2026-01-01T00:05:00Z", "event_id": 41, "by": None, "field": "code",
                                        "old": "a", "new": "b"}]


def test_a_timeline_shows_the_spans_the_cache_does_not_know(cli_cache, engine, tables):
    with engine.begin() as conn:  # the watcher read Shot 1 for event 40 only after it changed again
        history.mark_unsure(conn, tables, "Shot", 1, at(1), at(5), 40)
    out = sgcache(cli_cache, "history", "Shot", "1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == ("2026-01-01T00:01:00Z  event 40  unknown until 2026-01-01T00:05:00Z: read "
                                          "from the site only after it changed again (reads of the past in between "
                                          "are refused)")
    assert len(out.stdout.splitlines()) == 4
    import json

    only = json.loads(sgcache(cli_cache, "history", "Shot", "1", "--field", "code", "--json").stdout)
    assert only[0] == {"at": "2026-01-01T00:01:00Z", "event_id": 40, "by": None, "field": "unknown", "old": None,
                       "new": None, "until": "2026-01-01T00:05:00Z"}
    assert [c["field"] for c in only] == ["unknown", "code"]
    # What changed since: the change that ended the span, not the span.
    changed = json.loads(sgcache(cli_cache, "changes", "--since", "2026-01-01T00:00:30Z", "--json").stdout)
    assert "unknown" not in {f for e in changed["entities"] for f in e["fields"]}


def test_sgcache_changes_lists_what_changed_since_a_moment(cli_cache):
    out = sgcache(cli_cache, "changes", "--since", "2026-01-01T00:01:00Z")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["2026-01-01T00:07:00Z  Shot 1  assets, code, retired"]
    assert sgcache(cli_cache, "changes", "--since", "2026-01-01T00:01:00Z", "--types", "Asset").stdout == \
        "no change since 2026-01-01T00:01:00Z\n"


HISTORY_COMMAND_ERRORS = [
    (["history", "Nope", "1"], "'Nope' is not a cached entity type"),
    (["history", "Shot", "1", "--field", "nope"], "Shot.nope is not a cached field"),
    (["changes", "--since", "yesterday"], "expected an ISO 8601 time with a zone"),
    (["changes", "--since", "1d", "--types", "Nope"], "not a cached entity type: Nope"),
]


def test_history_commands_name_what_is_wrong(cli_cache):
    for args, message in HISTORY_COMMAND_ERRORS:
        out = sgcache(cli_cache, *args)
        assert out.returncode != 0 and message in out.stderr and "Traceback" not in out.stderr, args


# --- the admin routes ----------------------------------------------------------------------------------


def test_the_history_routes_answer_only_callers_the_site_accepts_who_see_everything(watched_proxy, sg, world):
    import requests

    shot = world["shots"][0]
    before = moment()
    after(before)
    sg.update("Shot", shot["id"], {"code": "renamed"})
    catch_up(watched_proxy)
    url = f"{watched_proxy.url}/_sgcache/history/Shot/{shot['id']}"
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, auth=("sgcache", "wrong-key"), timeout=10).status_code == 401
    refused = requests.get(url, auth=("artist", "artist-password"), timeout=10)  # group artist: passthrough
    assert refused.status_code == 403 and "see every project" in refused.json()["error"]
    admin = ("sgcache", "sgcache-demo-key")
    found = requests.get(url, auth=admin, timeout=10)
    assert found.status_code == 200
    assert [(c["field"], c["old"], c["new"]) for c in found.json()["changes"] if c["field"] == "code"] == [
        ("code", "SH001", "renamed")]
    changes = requests.get(f"{watched_proxy.url}/_sgcache/changes", params={"since": stamp(before), "types": "Shot"},
                           auth=admin, timeout=10)
    assert changes.status_code == 200
    assert [(e["type"], e["id"], e["created"], e["fields"]) for e in changes.json()["entities"]] == [
        ("Shot", shot["id"], False, ["code", "updated_at"])]
    for path, status in (("/_sgcache/changes?since=yesterday", 400), ("/_sgcache/changes", 400),
                         ("/_sgcache/changes?since=1h&types=Nope", 404), ("/_sgcache/history/Nope/1", 404),
                         ("/_sgcache/history/Shot/1?field=nope", 404)):
        response = requests.get(watched_proxy.url + path, auth=admin, timeout=10)
        assert response.status_code == status, path
        assert "Traceback" not in response.text and response.json()["error"]


# --- retention ---------------------------------------------------------------------------------------


def test_pruning_removes_versions_ended_before_the_horizon_in_batches(engine, tables, writer):
    for minute in range(6):
        writer.upsert("Shot", [{"type": "Shot", "id": 1, "code": f"v{minute}",
                                "assets": [{"type": "Asset", "id": minute + 1}]}], changed_at=at(minute))
    assert len(versions(engine, tables, "Shot")) == 5
    with engine.begin() as conn:  # unsure spans (history.mark_unsure) go with the versions
        history.mark_unsure(conn, tables, "Shot", 1, at(0), at(2), 7)
        history.mark_unsure(conn, tables, "Shot", 1, at(2), at(4), 8)
    removed = history.prune(engine, tables, at(3), batch=2)  # v0..v2 ended at minutes 1..3
    assert removed == 2 + 2 + 1  # two Shot versions, two lists and a span ended before minute 3
    assert [v["code"] for v in versions(engine, tables, "Shot")] == ["v2", "v3", "v4"]
    with engine.connect() as conn:
        assert history.pruned_until(conn, tables) == at(3)
        assert history.unsure_at(conn, tables, at(3)) == {"Shot": at(4)}
        assert history.unsure_at(conn, tables, at(4)) == {}
    history.prune(engine, tables, at(1))  # an older horizon never moves it back
    with engine.connect() as conn:
        assert history.pruned_until(conn, tables) == at(3)


def test_moments_a_lagging_watcher_read_past_are_refused_not_guessed(watched_proxy, sg, world):
    """The watcher reads a new Shot from the site only after it was renamed (it was behind): what
    the Shot was between its creation and the rename is not known. A read of those moments is
    refused (before, it answered as if the Shot did not exist yet); a read after the rename, or of
    another type, is answered."""
    catch_up(watched_proxy)
    shot = sg.create("Shot", {"code": "SH-NEW", "project": world["projects"][0]})
    between = moment()
    after(between)
    sg.update("Shot", shot["id"], {"code": "SH-RENAMED"})
    later = moment()
    after(later)
    catch_up(watched_proxy)  # both events now: the creation reads the Shot as renamed
    with pytest.raises(shotgun_api3.Fault, match=rf"cannot answer this read as of {stamp(between)} exactly: "
                       r"history_not_exact \(Shot: the cache read some of its entities after they had changed "
                       r"again.*ask for 20\d\d-.* or later"):
        watched_proxy.client(f"/as-of/{stamp(between)}/").find("Shot", [["id", "is", shot["id"]]], ["code"])
    # Reads that name Shots (through links) touch them too.
    with pytest.raises(shotgun_api3.Fault, match="history_not_exact"):
        watched_proxy.client(f"/as-of/{stamp(between)}/").find("Sequence", [], ["shots"])
    assert watched_proxy.client(f"/as-of/{stamp(between)}/").find("Asset", [], ["code"]) == \
        sg.find("Asset", [], ["code"])
    assert watched_proxy.client(f"/as-of/{stamp(later)}/").find("Shot", [["id", "is", shot["id"]]], ["code"]) == \
        [{"type": "Shot", "id": shot["id"], "code": "SH-RENAMED"}]
    import requests

    timeline = requests.get(f"{watched_proxy.url}/_sgcache/history/Shot/{shot['id']}",
                            auth=("sgcache", "sgcache-demo-key"), timeout=10).json()["changes"]
    unknown = [c for c in timeline if c["field"] == "unknown"]
    assert len(unknown) == 1 and unknown[0]["at"] < stamp(between) < unknown[0]["until"], timeline


def test_a_read_before_the_pruning_horizon_is_refused(watched_proxy):
    catch_up(watched_proxy)
    cache = watched_proxy.service.cache
    horizon = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    history.prune(cache.engine, cache.tables, horizon)
    time.sleep(0.6)  # the proxy reads the state tables again after reads.STATE_TTL
    past = watched_proxy.client(f"/as-of/{stamp(horizon - dt.timedelta(seconds=5))}/")
    with pytest.raises(shotgun_api3.Fault, match=r"history_pruned \(versions that ended before .* are no longer kept"):
        past.find("Shot", [], ["code"])


def test_the_periodic_scan_prunes_with_history_keep(engine, tables, writer):
    from sgcache.config import ScannerConfig, SiteConfig
    from sgcache.sync.scanner import Scanner

    writer.upsert("Shot", [{"type": "Shot", "id": 1, "code": "old"}], changed_at=at(0))
    writer.upsert("Shot", [{"type": "Shot", "id": 1, "code": "new"}], changed_at=at(1))
    scanner = Scanner(engine, tables, Remote(SiteConfig(base_url="http://127.0.0.1:9")), ScannerConfig(),
                      progress=False)
    assert scanner.prune_history() == 0  # history.keep 0: for ever
    scanner.history_keep = 86400.0
    assert scanner.prune_history() == 1  # ended in 2026-01, more than a day ago
    assert versions(engine, tables, "Shot") == []


def test_status_shows_from_when_to_when_the_past_can_be_read(watched_proxy, sg, world):
    import requests

    from sgcache.sync import report

    sg.update("Shot", world["shots"][0]["id"], {"code": "changed"})
    time.sleep(1.1)
    catch_up(watched_proxy)
    cache = watched_proxy.service.cache
    data = report.status(cache.engine, cache.tables)
    past = data["history"]
    assert past["start"] is not None and past["until"] > past["start"] and past["versions"] >= 1
    assert "history: reads of the past from " in report.format_status(data)
    page = requests.get(watched_proxy.url + "/_sgcache/", timeout=10).text
    assert 'id="history">from ' in page and "versions kept" in page


def test_a_list_emptied_then_set_by_an_older_time_never_overlaps_its_past(engine, tables, writer):
    from test_sync_crash import assert_versions_chain

    asset = [{"type": "Asset", "id": 1}]
    writer.upsert("Shot", [{"type": "Shot", "id": 1, "assets": asset}], changed_at=at(0))
    writer.upsert("Shot", [{"type": "Shot", "id": 1, "assets": []}], changed_at=at(10))
    writer.upsert("Shot", [{"type": "Shot", "id": 1, "assets": asset}], changed_at=at(5))  # told late
    assert_versions_chain(engine, tables)


def test_a_bulk_written_batch_dates_its_versions_as_a_small_one_does(engine, tables, monkeypatch):
    from test_sync_crash import assert_versions_chain

    from sgcache.store import bulk

    monkeypatch.setattr(bulk, "MIN_ROWS", 2)
    writer = Writer(engine, tables)
    writer.upsert("Shot", [{"type": "Shot", "id": i, "code": f"a{i}", "updated_at": at(-100)} for i in range(1, 6)])
    writer.upsert("Shot", [{"type": "Shot", "id": i, "code": f"b{i}"} for i in range(1, 6)], changed_at=at(1))
    writer.upsert("Shot", [{"type": "Shot", "id": i, "code": f"b{i}", "updated_at": at(-100)} for i in range(1, 6)])
    with engine.connect() as conn:
        starts = set(conn.execute(sa.select(tables["Shot"].table.c._valid_from)).scalars())
    assert starts == {at(1)}
    assert_versions_chain(engine, tables)
