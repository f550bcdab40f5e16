"""Back-fill from the event log (``sgcache history import``): a cache installed after the changes
answers for the moments before it, from the old values in the site's log, exactly where the log
proves them, and refuses the rest.

The stand-in runs as a real server; entities are changed, linked, retired, revived and made while
the site's answers are recorded at T1 and T2; only then is the cache made and imported. After the
back-fill, the same calls through ``/as-of/T`` equal the recorded answers, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from typing import Any

import pytest
import shotgun_api3
from conftest import SCRIPT_AUTH
from test_history import CALLS, after, catch_up, make_world, moment, record, sgcache, stamp

from sgcache.store import backfill as store
from sgcache.sync.backfill import Entry, Undo
from sgcache.sync.events import Parsed
from sgcache.sync.remote import Remote
from sgcache.sync.scanner import Scanner
from sgcache.sync.watcher import Watcher

QUIET = {"script_name": "quiet-script", "api_key": "quiet-demo-key"}


def refused(client, call) -> str:
    with pytest.raises(shotgun_api3.Fault) as e:
        call(client)
    return str(e.value)


def test_a_cache_made_later_answers_for_the_weeks_before_it_where_the_log_proves_it(make_proxy, sg, mock_server,
                                                                                      monkeypatch, tmp_path):
    quiet = shotgun_api3.Shotgun(mock_server.url, **QUIET)
    world = make_world(sg)
    p1, seq, assets, shots = world["projects"][0], world["sequence"], world["assets"], world["shots"]
    versions = [sg.create("Version", {"code": f"v{i}", "project": p1}) for i in range(3)]
    playlist = sg.create("Playlist", {"code": "dailies", "project": p1, "versions": versions[:2]})
    t0 = moment()  # the back-fill reaches back to here
    after(t0)
    sg.update("Shot", shots[0]["id"], {"code": "SH001-renamed", "sg_status_list": "fin"})
    # [chair, Table] -> [chair, lamp]: where Table stood among the rest, the entry does not say.
    sg.update("Shot", shots[1]["id"], {"assets": [assets[0], assets[2]]})
    sg.update("Asset", assets[1]["id"], {"code": "Desk"})  # the name of links to it changes
    sg.delete("Shot", shots[2]["id"])
    sg.create("Shot", {"code": "SH100", "project": p1, "sg_status_list": "ip", "assets": [assets[1]]})
    sg.update("Shot", shots[3]["id"], {"sg_sequence": None, "project": p1})
    ta = moment()
    after(ta)
    # Unproven: the order a list of two had before it was reordered, and a write with no event.
    sg.update("Playlist", playlist["id"], {"versions": [versions[1], versions[0]]})
    quiet.update("Version", versions[1]["id"], {"description": "no event says so"})
    t1 = moment()
    seen = {t1: record(sg)}
    after(t1)
    sg.revive("Shot", shots[2]["id"])
    sg.update("Shot", shots[0]["id"], {"code": "SH001-again", "description": None})
    sg.update("Sequence", seq["id"], {"code": "SQ01b"})
    sg.update("Shot", shots[0]["id"], {"assets": [assets[0], assets[2]]})  # [chair] before: one link, proven
    sg.delete("Version", versions[2]["id"])  # links to it now read as nothing: who linked to it before?
    t2 = moment()
    seen[t2] = record(sg)
    listed = sg.find("Playlist", [], ["versions"])
    after(t2)

    # The cache arrives now: its history begins after T2.
    monkeypatch.setattr(Watcher, "COMMIT_LAG", 0.2)
    proxy = make_proxy()
    engine, tables = proxy.service.cache.engine, proxy.service.cache.tables
    watcher = Watcher(engine, tables, Remote(proxy.config.site), proxy.config.watcher)
    watcher.start()
    Scanner(engine, tables, Remote(proxy.config.site), proxy.config.scanner).full()
    proxy.watcher = watcher
    catch_up(proxy)
    import time

    time.sleep(1.1)
    catch_up(proxy)  # records how far the watcher has looked
    past = {at: proxy.client(f"/as-of/{stamp(at)}/") for at in (t0, ta, t1, t2)}
    assert "history_before_start" in refused(past[t1], CALLS[0])

    config = tmp_path / "sgcache.yml"
    config.write_text(f"database:\n  url: {proxy.config.database.url}\nschema:\n  path: {proxy.config.schema.path}\n"
                      f"site:\n  base_url: {mock_server.url}\n  script_name: sgcache\n")
    run = functools.partial(sgcache, config, "--set", f"site.api_key={SCRIPT_AUTH['api_key']}", "history", "import")
    done = run("--since", stamp(t0))
    assert done.returncode == 1 and "quiet-script" in done.stderr and "Traceback" not in done.stderr  # not in the log
    done = run("--since", stamp(t0), "--trust-log", "--json", "--progress")
    assert done.returncode == 0, done.stderr
    assert "event-log entries read" in done.stderr and "Shot: rows rebuilt" in done.stderr  # a bar each
    reports = {r["entity_type"]: r for r in json.loads(done.stdout)["types"]}

    from test_sync_crash import assert_versions_chain

    assert_versions_chain(engine, tables)
    for at in (t1, t2):
        before = proxy.service.cache_answers
        assert record(past[at]) == seen[at], stamp(at)
        assert proxy.service.cache_answers == before + len(CALLS)
    # What the log cannot prove is refused, with the moment it can be answered from.
    assert reports["Shot"]["proven_from"]["code"] == stamp(t0)
    assert "updated_at" not in reports["Shot"]["proven_from"] and "updated_at" in reports["Shot"]["unmoved"]
    assert stamp(t1) > reports["Shot"]["proven_from"]["assets"] > stamp(t0)
    assert "history_before_start" in refused(past[t1], lambda c: c.find("Shot", [], ["updated_at"]))
    order = refused(past[ta], lambda c: c.find("Playlist", [], ["versions"]))
    assert "Playlist.versions" in order and order.split("begins at ")[1][:20] > stamp(ta)
    retired = refused(past[t1], lambda c: c.find("Playlist", [], ["versions"]))
    assert stamp(t2) > retired.split("begins at ")[1][:20] > stamp(t1)
    assert past[t2].find("Playlist", [], ["versions"]) == listed
    assert past[ta].find("Playlist", [], ["code"]) == [{"type": "Playlist", "id": playlist["id"], "code": "dailies"}]
    assert "Version" in refused(past[ta], lambda c: c.find("Version", [], ["code"]))  # the write with no event
    assert past[t1].find("Version", [["id", "is", versions[1]["id"]]], ["code"])[0]["code"] == "v1"
    earlier = proxy.client(f"/as-of/{stamp(t0 - dt.timedelta(seconds=5))}/")
    assert stamp(t0) in refused(earlier, CALLS[0])

    # Again to the same moment: nothing left to do. Times it cannot use are named.
    done = run("--since", stamp(t0), "--types", "Shot", "--trust-log")
    assert done.returncode == 1 and "nothing to back-fill" in done.stderr
    for since, why in (("400d", "history.keep"), ("yesterday", "yesterday"), ("2026-13-01T00:00:00Z", "2026-13-01")):
        done = run("--since", since, "--trust-log")
        assert done.returncode != 0 and why in done.stderr and "Traceback" not in done.stderr, (since, done.stderr)
    done = run("--since", stamp(t0), "--types", "Nope", "--trust-log")
    assert done.returncode == 1 and "Nope" in done.stderr


# --- the rules of proof, one entity at a time (the cache's own tables, no site) -----------------

def at(seconds: int) -> dt.datetime:
    return dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC) + dt.timedelta(seconds=seconds)


BEGAN = at(1000)  # the history of Shot begins here; the back-fill reaches back to at(0)


def entry(n: int, seconds: int, action: str = "Change", field: str | None = None, **meta) -> Entry:
    return Entry(n, at(seconds), Parsed(action, "Shot", 1, field), meta)


def link(entity_id: int, entity_type: str = "Asset") -> dict:
    return {"type": entity_type, "id": entity_id, "name": f"{entity_type} {entity_id}"}


@pytest.fixture
def shot(engine, tables, writer):
    """Shot 1 as a full import read it at BEGAN: its oldest version dates from its last change."""
    writer.upsert("Shot", [{"type": "Shot", "id": 1, "code": "now", "assets": [link(4), link(5)],
                            "updated_at": at(900), "created_at": at(-50)}], changed_at=at(900))

    def undo(*entries: Entry, since: dt.datetime = at(0)) -> Undo:
        et = tables["Shot"]
        with engine.connect() as conn:
            oldest = store.oldest_versions(conn, et, BEGAN)
            rows = store.oldest_rows(conn, et, oldest, [1])
            lists = {n: store.oldest_lists(conn, tables, et, n, oldest, [1]) for n in ("assets",)}
        done = Undo(writer, et, since, BEGAN)
        done.entity(1, sorted(entries, key=lambda e: -e.id), oldest[1], rows[1], {"assets": lists["assets"][1]})
        return done

    return undo


def doubts(done: Undo) -> dict:
    """What the entries themselves leave unproven (not an updated_at no entry explains)."""
    return {k: v for k, v in done.unproven.items() if k != "*"}


def test_a_change_is_undone_to_its_old_value_and_dated_by_its_entry(shot):
    done = shot(entry(2, 900, field="code", old_value="before", new_value="now"),
                entry(1, 500, field="code", old_value="first", new_value="before"))
    assert [(v["code"], v["_valid_from"], v["_valid_to"], v["_to_event"]) for v in done.plan.row_versions] == \
        [("first", None, at(500), 1), ("before", at(500), at(900), 2)]
    assert done.plan.row_starts == {1: at(900)} and doubts(done) == {}


def test_a_change_the_copy_does_not_show_proves_nothing_before_it(shot):
    # The log says "x" was set at 500, but the row holds "now" and no later entry made it so.
    done = shot(entry(1, 500, field="code", old_value="first", new_value="x"))
    assert doubts(done) == {"code": at(500)} and done.plan.row_versions == []


def test_an_entry_after_the_oldest_version_began_is_left_to_the_later_versions(shot):
    done = shot(entry(1, 950, field="code", old_value="now", new_value="later"))
    assert doubts(done) == {} and done.plan.row_versions == []


def test_a_creation_ends_the_past_and_its_own_values_are_not_undone(shot):
    done = shot(entry(3, 900, field="code", old_value="made", new_value="now"),
                entry(2, 100, field="code", old_value=None, new_value="made", in_create=True),
                entry(1, 100, "New", type="new_entity"))
    assert [(v["code"], v["_valid_from"], v["_valid_to"]) for v in done.plan.row_versions] == \
        [("made", at(100), at(900))]
    assert done.plan.list_starts[("assets", 1)] == at(100) and doubts(done) == {}


def test_a_retirement_is_undone(shot, writer):
    done = shot(entry(1, 900, "Retirement"))  # the row is active: a retirement cannot have been last
    assert doubts(done) == {"id": at(900)}
    # Retired at 950 after the import: that retirement is in the versions already (the oldest
    # ended then), the revival before it is the back-fill's to undo.
    writer.retire("Shot", [1], changed_at=at(950))
    done = shot(entry(2, 950, "Retirement"), entry(1, 600, "Revival"))
    assert doubts(done) == {}
    assert [(v["_active"], v["_valid_from"], v["_valid_to"]) for v in done.plan.row_versions] == \
        [(False, None, at(600))]
    assert done.plan.row_starts == {1: at(600)}


def test_an_earlier_list_is_proven_only_when_its_order_is(shot):
    # [4] -> [4, 5]: one link left, nothing to order.
    done = shot(entry(1, 900, field="assets", added=[link(5)], removed=[]))
    assert doubts(done) == {} and [v[2] for v in done.plan.list_versions] == [[("Asset", 4)]]
    # [5, 6] -> [4, 5]: where 6 stood among the rest, the entry does not say.
    done = shot(entry(1, 900, field="assets", added=[link(4)], removed=[link(6)]))
    assert doubts(done) == {"assets": at(900)}
    # A reorder names no link at all.
    assert doubts(shot(entry(1, 900, field="assets", added=[], removed=[]))) == {"assets": at(900)}
    # A back-reference appends its link: [4] -> [4, 5] is proven whatever the list held.
    backref = {"added": [link(5)], "removed": [], "actual_attribute_changed": "Asset.shots"}
    assert doubts(shot(entry(1, 900, field="assets", **backref))) == {}


def test_what_the_log_cannot_prove_keeps_its_start(shot, tables):
    held = {"id": BEGAN, "code": BEGAN, "updated_at": BEGAN, "description": at(2000), "created_at": BEGAN}
    done = shot(entry(1, 900, field="code", old_value="before", new_value="now"))
    # updated_at moves with every write and no entry records it; description was added later.
    assert done.starts(held) == {"id": at(0), "code": at(0), "created_at": at(0)}
    # A timestamp's logged values are not what a read gives: its change proves nothing before it.
    done = shot(entry(1, 900, field="code", old_value="before", new_value="now"),
                entry(2, 700, field="created_at", old_value="2026-01-01 10:00:00 UTC", new_value=None))
    assert done.starts(held) == {"id": at(0), "code": at(0), "created_at": at(700)}


def test_a_write_no_entry_shows_proves_nothing_about_the_type_before_it(shot):
    done = shot()  # updated_at 900 is in the span, and no entry was made then
    assert done.unproven == {"*": at(900)}
    assert done.starts({"id": BEGAN, "code": BEGAN}) == {"id": at(900), "code": at(900)}
    assert shot(since=at(950)).unproven == {}  # before the span: nothing to explain


# --- many entities at once: one statement per kind of date, not one per row --------------------


def _many_shots_backfilled(pg_database, small_schema, *, unheld: bool = False) -> tuple[Any, dict, int]:
    """80 Shots imported at 900, 40 of them with a logged code change at 500 and 10 with a list
    change at 700, back-filled to 0; the report, every date the back-fill set, and how many
    UPDATE statements it ran once per row (executemany). ``unheld``: the log also names Shots
    the cache never held (between held ids and past the last), changed at 600 and 650."""
    import sqlalchemy as sa
    from conftest import ensure_migrated, pg_schema

    from sgcache.store.db import create_engine
    from sgcache.store.tables import Tables
    from sgcache.store.writer import Writer
    from sgcache.sync.backfill import backfill_type

    with pg_schema(pg_database, "bf") as url:
        engine = create_engine(url)
        try:
            tables = Tables(small_schema)
            ensure_migrated(engine, tables)
            Writer(engine, tables).upsert("Shot", [
                {"type": "Shot", "id": i, "code": f"s{i}", "assets": [link(4), link(5)] if i % 2 else [link(4)],
                 "updated_at": at(900), "created_at": at(-50)} for i in range(1, 81)], changed_at=at(900))
            entries = {i: [Entry(i, at(500), Parsed("Change", "Shot", i, "code"),
                                 {"old_value": f"was{i}", "new_value": f"s{i}"})] for i in range(1, 41)}
            for i in range(41, 61, 2):  # [4] -> [4, 5]
                entries[i] = [Entry(100 + i, at(700), Parsed("Change", "Shot", i, "assets"),
                                    {"added": [link(5)], "removed": []})]
            if unheld:
                with engine.begin() as conn:  # a gap in the ids the cache holds: 61 to 63
                    conn.execute(sa.delete(tables["Shot"].table).where(tables["Shot"].table.c.id.between(61, 63)))
                for i, seconds in ((62, 600), (500, 650)):
                    entries[i] = [Entry(300 + i, at(seconds), Parsed("Change", "Shot", i, "code"),
                                        {"old_value": "a", "new_value": "b"})]
            per_row = []
            sa.event.listen(engine, "before_cursor_execute",
                            lambda conn, cursor, statement, params, context, many:
                            per_row.append(statement) if many and statement.startswith("UPDATE") else None)
            report = backfill_type(engine, tables, tables["Shot"], at(0), BEGAN, entries)
            et = tables["Shot"]
            links = tables.state.link_history
            with engine.connect() as conn:
                def dump(table, *order):
                    clock = ("_version", "_cache_created_at", "_cache_updated_at")  # differ from run to run
                    columns = [c for c in table.c if c.name not in clock]
                    return [tuple(r) for r in conn.execute(sa.select(*columns).order_by(*order))]
                return report, {
                    "rows": dump(et.table, et.table.c.id),
                    "history": dump(et.history, et.history.c.id, et.history.c._valid_from),
                    "lists": dump(et.associations["assets"], *et.associations["assets"].c),
                    "links": dump(links, *links.c),
                }, len(per_row)
        finally:
            engine.dispose()


@pytest.mark.postgresql
def test_many_entities_are_dated_in_bulk_as_they_would_be_one_by_one(pg_database, small_schema, monkeypatch):
    from sgcache.store import bulk

    in_bulk = _many_shots_backfilled(pg_database, small_schema)
    monkeypatch.setattr(bulk, "MIN_ROWS", 10**9)  # every statement once per row
    one_by_one = _many_shots_backfilled(pg_database, small_schema)
    for part in in_bulk[1]:
        for a, b in zip(in_bulk[1][part], one_by_one[1][part], strict=True):
            assert a == b, (part, [(x, y) for x, y in zip(a, b, strict=True) if x != y])
    assert in_bulk[0].versions == one_by_one[0].versions
    assert in_bulk[2] == 0 and one_by_one[2] >= 3  # the rows' and the lists' dates: set in bulk, or row by row
    report, dates, _ = in_bulk
    assert report.versions == 40 + 10  # the 40 old codes and the 10 old lists
    assert {r[0] for r in dates["history"] if r[0] <= 40} == set(range(1, 41))


@pytest.mark.postgresql
def test_a_type_is_back_filled_a_range_of_ids_at_a_time_as_it_would_be_whole(pg_database, small_schema,
                                                                             monkeypatch):
    """Memory holds a range of entities at a time: ranges of 7 rows (12 of them, the log naming
    ids the cache does not hold in a gap and past the end) write what one range writes."""
    from sgcache.sync import backfill

    whole = _many_shots_backfilled(pg_database, small_schema, unheld=True)
    ranges = []
    real = backfill._backfill_range
    monkeypatch.setattr(backfill, "_backfill_range", lambda *a: ranges.append(a[5:7]) or real(*a))
    monkeypatch.setattr(backfill, "ENTITIES_AT_ONCE", 7)
    in_ranges = _many_shots_backfilled(pg_database, small_schema, unheld=True)
    assert len(ranges) == 12 and ranges[0] == (None, 7) and ranges[-1] == (ranges[-2][1], None)
    assert in_ranges[1] == whole[1]
    assert in_ranges[0].as_dict() == whole[0].as_dict()
    # Ranges of 50 rows, cut again every 4 entries: by entries, where the log names the entities.
    ranges.clear()
    monkeypatch.setattr(backfill, "ENTITIES_AT_ONCE", 50)
    monkeypatch.setattr(backfill, "ENTRIES_AT_ONCE", 4)
    by_entries = _many_shots_backfilled(pg_database, small_schema, unheld=True)
    assert ranges[:2] == [(None, 4), (4, 8)] and len(ranges) > 12 and ranges[-1][1] is None
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))  # contiguous
    assert by_entries[1] == whole[1] and by_entries[0].as_dict() == whole[0].as_dict()
    assert whole[0].unproven["id"] == at(650)  # never held, named before the history began
    assert whole[0].entities == 50 and whole[0].versions == 50


def test_the_rebuild_counts_every_row_of_the_type_once(engine, tables, writer, shot):
    """The history command's bar of a type's rebuild: its total is the type's rows, and each is
    counted as its range is done, whether its history began before the back-fill's start or not."""
    from sgcache.sync import backfill

    writer.upsert("Shot", [{"type": "Shot", "id": i, "code": f"later {i}", "updated_at": at(1500),
                            "created_at": at(1400)} for i in (2, 3, 4)], changed_at=at(1500))  # after BEGAN
    done: list[int] = []
    backfill.backfill_type(engine, tables, tables["Shot"], at(0), BEGAN, {}, rebuilt=done.append)
    assert sum(done) == backfill._rows(engine, tables["Shot"]) == 4
