"""Large batches on PostgreSQL go through COPY (sgcache.store.bulk): what they store is exactly
what the row-by-row statements store, the event-stamp guard holds, and a row another writer
inserts meanwhile is upserted, not lost. On SQLite the same tests check the ordinary path."""

from __future__ import annotations

import datetime as dt
import math

import pytest
import sqlalchemy as sa

from sgcache.store import bulk
from sgcache.store.reader import read_entities
from sgcache.store.writer import OTHER_SIDES_NONE, Writer

FIELDS = ["code", "description", "project", "sg_sequence", "assets", "sg_status_list", "sg_cut_in", "sg_rate",
          "sg_flag", "sg_start", "created_at", "sg_link", "tag_list", "sg_data", "sg_uuid"]

#: Text COPY must carry as it is: its own separators, escapes, NUL-free control characters, accents.
AWKWARD = ["tab\there", "new\nline", "carriage\rreturn", "back\\slash", "\\N", "\\.", "", " ", "quote'\"",
           "naïve café ✓ 日本", "\\t literally", "end\\"]


def shot(i: int) -> dict:
    text = AWKWARD[i % len(AWKWARD)]
    return {
        "type": "Shot", "id": i, "code": f"SH{i:04d}{text}", "description": None if i % 5 == 0 else text * 2,
        "project": {"type": "Project", "id": 1 + i % 3, "name": "ignored"},
        "sg_sequence": None if i % 4 == 0 else {"type": "Sequence", "id": 10 + i % 7},
        "assets": [{"type": "Asset", "id": 100 + (i + k) % 9} for k in range(i % 4)],
        "sg_status_list": ["wtg", "ip", "fin", None][i % 4],
        "sg_cut_in": None if i % 6 == 0 else i * 1000 - 5000,
        "sg_rate": [0.1, -2.5e-300, 1.7976931348623157e308, 23.976, None][i % 5],
        "sg_flag": [True, False, None][i % 3],
        "sg_start": f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}" if i % 7 else None,
        "created_at": dt.datetime(2026, 1, 1, 12, 0, i % 60, tzinfo=dt.timezone(dt.timedelta(hours=i % 5 - 2))),
        "sg_link": {"url": f"https://x/{text}", "name": text, "link_type": "web"} if i % 3 else None,
        "tag_list": [text, "hero"] if i % 2 else [],
        "sg_data": {"nested": {"text": text, "list": [1, None, True, 2.5]}, "quote": "\"\\"} if i % 4 else None,
        "sg_uuid": None,
    }


def stored(engine, tables, ids=None) -> list[dict]:
    with engine.connect() as conn:
        rows = read_entities(conn, tables, "Shot", ids=ids, fields=FIELDS, include_meta=True)
    return sorted(({k: v for k, v in r.items() if k not in ("_cache_updated_at", "_cache_created_at", "_valid_from")}
                   for r in rows), key=lambda r: r["id"])


def empty(engine, tables) -> None:
    """Delete every row of every entity and association table."""
    with engine.begin() as conn:
        for et in tables:
            for assoc in et.associations.values():
                conn.execute(sa.delete(assoc))
            conn.execute(sa.delete(et.table))


def write_both_ways(engine, tables, monkeypatch, batch: list[dict], **options) -> tuple[list[dict], list[dict]]:
    """What a batch stores with COPY (where usable) and row by row, each into empty tables."""
    results = []
    for min_rows in (bulk.MIN_ROWS, 10**9):
        empty(engine, tables)
        monkeypatch.setattr(bulk, "MIN_ROWS", min_rows)
        assert Writer(engine, tables).upsert("Shot", batch, **options) == len(batch)
        results.append(stored(engine, tables))
    return results[0], results[1]


def test_a_large_batch_stores_exactly_what_row_by_row_writes_store(engine, tables, monkeypatch):
    batch = [shot(i) for i in range(1, 241)]
    copied, row_by_row = write_both_ways(engine, tables, monkeypatch, batch, event_id=7)
    assert copied == row_by_row
    assert len(copied) == 240
    by_id = {r["id"]: r for r in copied}
    assert by_id[1]["code"] == "SH0001new\nline" and by_id[3]["code"] == "SH0003back\\slash"
    assert by_id[4]["description"] == "\\N\\N"  # text, not NULL
    assert by_id[5]["description"] is None
    assert by_id[6]["code"] == "SH0006" and by_id[6]["description"] == ""  # empty, not NULL
    assert by_id[3]["sg_data"] == {"nested": {"text": "back\\slash", "list": [1, None, True, 2.5]},
                                   "quote": "\"\\"}
    assert by_id[2]["sg_rate"] == 1.7976931348623157e308 and not math.isnan(by_id[2]["sg_rate"])
    assert by_id[1]["created_at"] == "2026-01-01T13:00:01Z"  # -1 h offset, kept as the same instant
    assert [a["id"] for a in by_id[7]["assets"]] == [107, 108, 100]
    assert all(r["_last_event_id"] == 7 and r["_active"] for r in copied)


def test_a_large_batch_over_held_rows_updates_them_as_row_by_row_writes_do(engine, tables, writer, monkeypatch):
    first = [shot(i) for i in range(1, 121)]
    second = [dict(shot(i + 3), id=i, type="Shot") for i in range(61, 181)]  # half held, half new
    results = []
    for min_rows in (bulk.MIN_ROWS, 10**9):
        monkeypatch.setattr(bulk, "MIN_ROWS", 10**9)
        empty(engine, tables)
        Writer(engine, tables).upsert("Shot", first, event_id=5)
        monkeypatch.setattr(bulk, "MIN_ROWS", min_rows)
        assert Writer(engine, tables).upsert("Shot", second, active=False, event_id=6,
                                             other_sides=OTHER_SIDES_NONE) == 120
        results.append(stored(engine, tables))
    assert results[0] == results[1]
    by_id = {r["id"]: r for r in results[0]}
    assert not by_id[61]["_active"] and by_id[61]["_last_event_id"] == 6 and by_id[60]["_active"]


def test_the_guard_keeps_rows_a_newer_event_wrote_in_a_large_batch(engine, tables, writer):
    writer.upsert("Shot", [shot(i) for i in range(1, 101)], event_id=10)
    newer = [i for i in range(1, 101) if i % 3 == 0]
    writer.upsert("Shot", [{"type": "Shot", "id": i, "code": f"newer {i}"} for i in newer], event_id=20)
    stale = [{"type": "Shot", "id": i, "code": f"stale {i}"} for i in range(1, 131)]  # 30 of them new
    written_ids: set[int] = set()
    written = writer.upsert("Shot", stale, event_id=15, written_ids=written_ids)
    assert written == 130 - len(newer)
    assert written_ids == set(range(1, 131)) - set(newer)
    codes = {r["id"]: r["code"] for r in stored(engine, tables)}
    assert all(codes[i] == f"newer {i}" for i in newer)
    assert all(codes[i] == f"stale {i}" for i in set(range(1, 131)) - set(newer))


def test_a_row_another_writer_inserts_meanwhile_is_upserted_not_lost(engine, tables, writer, monkeypatch):
    if engine.dialect.name != "postgresql":
        pytest.skip("COPY is PostgreSQL's; SQLite has one writer at a time")
    real_copy = bulk._copy
    raced: list[bool] = []

    def copy(conn, target, columns, data):
        if not raced and target.strip('"') == "shot":
            raced.append(True)
            # Another writer's row, committed just before this COPY (here: in its transaction).
            conn.execute(sa.text("INSERT INTO shot (id, code, _last_event_id, _cache_created_at, _cache_updated_at) "
                                 "VALUES (42, 'other', 3, now(), now())"))
        return real_copy(conn, target, columns, data)

    monkeypatch.setattr(bulk, "_copy", copy)
    batch = [shot(i) for i in range(1, 101)]
    assert writer.upsert("Shot", batch, event_id=9) == 100
    assert raced
    rows = {r["id"]: r for r in stored(engine, tables)}
    assert len(rows) == 100
    assert rows[42]["code"] == shot(42)["code"] and rows[42]["_last_event_id"] == 9
    assert [a["id"] for a in rows[42]["assets"]] == [a["id"] for a in shot(42)["assets"]]


def test_copy_text_escapes_what_would_break_a_line_or_a_column():
    assert bulk._text("a\tb\nc\rd\\e") == "a\\tb\\nc\\rd\\\\e"
    assert bulk._text(None) == "\\N" and bulk._text("\\N") == "\\\\N"
    assert bulk._text(True) == "t" and bulk._text(False) == "f"
    assert bulk._text(float("nan")) == "NaN" and bulk._text(float("-inf")) == "-Infinity"
    assert bulk._text(12) == "12" and bulk._text(2.5) == "2.5"
    assert bulk._text(dt.date(2026, 12, 5)) == "2026-12-05"


def test_a_column_converted_whole_gives_what_value_by_value_conversion_gives():
    """Whole columns of plain text or whole numbers skip the call per value; any other column,
    or text with something to escape, takes it: either way the text is the same."""
    columns = [["a", "b", ""], ["a", None, "b"], ["a\tb", None, "c"], [None, "x\\y"], [1, 2, -3], [None, 4, 0],
               [True, False, None], [1, True], [2.5, None], [None, None], ["\\N", None]]
    for values in columns:
        assert bulk._column(list(values), bulk._text) == [bulk._text(v) for v in values], values


def test_rows_are_turned_into_columns_with_none_where_a_row_lacks_one():
    rows = [{"a": 1, "b": "x"}, {"b": "y", "a": 2}]
    assert [list(c) for c in bulk._columns(rows, ["a", "b"])] == [[1, 2], ["x", "y"]]
    assert [list(c) for c in bulk._columns(rows, ["b", "a"])] == [["x", "y"], [1, 2]]
    assert [list(c) for c in bulk._columns([*rows, {"a": 3}], ["a", "b"])] == [[1, 2, 3], ["x", "y", None]]
    assert [list(c) for c in bulk._columns(rows, ["b"])] == [["x", "y"]]
    assert [list(c) for c in bulk._columns([], ["a", "b"])] == [[], []]


def test_rows_written_since_an_answer_was_asked_are_kept_in_a_large_batch_as_row_by_row(engine, tables, monkeypatch):
    """``unless_written_since`` (a passthrough page, a watcher's read) in both ways of writing: the
    rows another write touched after the moment are left alone, the others are written."""
    import datetime as dt
    import time

    results = []
    for min_rows in (bulk.MIN_ROWS, 10**9):
        monkeypatch.setattr(bulk, "MIN_ROWS", 10**9)
        empty(engine, tables)
        writer = Writer(engine, tables)
        writer.upsert("Shot", [shot(i) for i in range(1, 101)])
        time.sleep(0.01)
        asked = dt.datetime.now(dt.UTC)
        time.sleep(0.01)
        writer.upsert("Shot", [{"type": "Shot", "id": i, "code": f"newer {i}"} for i in range(1, 31)])
        monkeypatch.setattr(bulk, "MIN_ROWS", min_rows)
        written_ids: set[int] = set()
        stale = [{"type": "Shot", "id": i, "code": f"stale {i}"} for i in range(1, 121)]  # 20 of them new
        assert writer.upsert("Shot", stale, unless_written_since=asked, written_ids=written_ids) == 90
        assert written_ids == set(range(31, 121))
        results.append({r["id"]: r["code"] for r in stored(engine, tables)})
    assert results[0] == results[1]
    assert [results[0][i] for i in (1, 30, 31, 120)] == ["newer 1", "newer 30", "stale 31", "stale 120"]


def test_a_large_batch_keeps_the_versions_it_replaces_as_row_by_row_writes_do(engine, tables, monkeypatch):
    # The versions a batch replaces go to the history with COPY too: the same rows as the
    # insert statements write, awkward text, JSON, times and lists included.
    first = [shot(i) for i in range(1, 121)]
    second = [dict(shot(i + 3), id=i, type="Shot") for i in range(1, 121)]
    at = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    history = tables["Shot"].history
    links = tables.state.link_history
    kept = []
    for min_rows in (bulk.MIN_ROWS, 10**9):
        monkeypatch.setattr(bulk, "MIN_ROWS", 10**9)
        empty(engine, tables)
        with engine.begin() as conn:
            conn.execute(sa.delete(history))
            conn.execute(sa.delete(links))
        Writer(engine, tables).upsert("Shot", first, event_id=5, changed_at=at)
        monkeypatch.setattr(bulk, "MIN_ROWS", min_rows)
        assert Writer(engine, tables).upsert("Shot", second, event_id=6, changed_at=at + dt.timedelta(days=1),
                                             other_sides=OTHER_SIDES_NONE) == 120
        with engine.connect() as conn:
            versions = [{k: v for k, v in r.items() if k not in ("_version", "_cache_updated_at", "_cache_created_at")}
                        for r in conn.execute(sa.select(history)).mappings()]
            lists = [{k: v for k, v in r.items() if k != "_version"}
                     for r in conn.execute(sa.select(links)).mappings()]
        kept.append((sorted(versions, key=lambda r: r["id"]),
                     sorted(lists, key=lambda r: (r["parent_id"], r["position"]))))
    assert kept[0] == kept[1]
    versions, lists = kept[0]
    assert len(versions) == 120 and {v["_to_event"] for v in versions} == {6}
    assert versions[0]["code"] == "SH0001new\nline" and versions[0]["_valid_to"] == at + dt.timedelta(days=1)
    assert lists  # the lists a batch replaced are kept as well


def test_a_new_row_whose_list_rows_were_left_behind_gets_its_own_list_only(engine, tables, writer):
    """A batch of new rows skips deleting their lists (there is nothing to delete) unless rows of
    a new parent's list were left behind after all: then they are replaced, not kept or doubled."""
    assets = tables["Shot"].associations["assets"]
    with engine.begin() as conn:  # left behind by something that removed Shot 7's row alone
        conn.execute(sa.insert(assets), [{"parent_id": 7, "position": p, "child_type": "Asset", "child_id": 900 + p}
                                         for p in range(6)])
    batch = [shot(i) for i in range(1, 101)]
    assert writer.upsert("Shot", batch, event_id=4) == 100
    rows = {r["id"]: r for r in stored(engine, tables)}
    assert [a["id"] for a in rows[7]["assets"]] == [a["id"] for a in shot(7)["assets"]] == [107, 108, 100]
    assert all([a["id"] for a in rows[i]["assets"]] == [a["id"] for a in shot(i)["assets"]] for i in rows)


@pytest.mark.parametrize("size", [3, 100], ids=["statements", "copy"])
def test_a_row_another_writer_inserts_after_the_look_keeps_its_version(engine, tables, writer, monkeypatch, size):
    """Another writer inserts one of a batch's new rows (and its list) between this writer's look
    at the rows it replaces and its write: the values and list that writer stored are kept as
    versions that ended with this write, as for any row held before, never overwritten unseen."""
    from sgcache.store import history

    real_snapshot = history.snapshot
    raced: list[bool] = []
    before = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)

    def snapshot(conn, table, key, ids, **kw):
        found = real_snapshot(conn, table, key, ids, **kw)
        if not raced and table.name == "shot" and key == "id" and 42 in ids:
            raced.append(True)  # the other writer's row and list, committed just after the look
            conn.execute(sa.insert(table), {"id": 42, "code": "other", "_last_event_id": 3, "_active": True,
                                            "_cache_created_at": before, "_cache_updated_at": before,
                                            history.VALID_FROM: before})
            conn.execute(sa.insert(tables["Shot"].associations["assets"]),
                         [{"parent_id": 42, "position": 0, "child_type": "Asset", "child_id": 901,
                           history.VALID_FROM: before}])
        return found

    monkeypatch.setattr(history, "snapshot", snapshot)
    at = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
    batch = [shot(i) for i in range(40, 40 + size)]
    assert writer.upsert("Shot", batch, event_id=9, changed_at=at) == size
    assert raced
    rows = {r["id"]: r for r in stored(engine, tables)}
    assert rows[42]["code"] == shot(42)["code"] and rows[42]["_last_event_id"] == 9
    assert [a["id"] for a in rows[42]["assets"]] == [a["id"] for a in shot(42)["assets"]]
    with engine.connect() as conn:
        kept = conn.execute(sa.select(tables["Shot"].history)).mappings().all()
        lists = conn.execute(sa.select(tables.state.link_history)).mappings().all()
    assert [(v["id"], v["code"], v["_to_event"], v[history.VALID_FROM], v[history.VALID_TO]) for v in kept] == \
        [(42, "other", 9, before, at)]
    assert [(r["parent_id"], r["child_id"], r[history.VALID_TO]) for r in lists] == [(42, 901, at)]


def test_a_write_whose_new_row_other_writers_keep_taking_and_removing_is_given_up_whole(engine, tables, writer,
                                                                                        monkeypatch):
    """Should other writers remove a new row before each look and insert it again before each
    write, the writer gives up after RACE_ROUNDS rounds with an error naming the row, and writes
    nothing of the batch (its transaction is undone)."""
    from sgcache.store import history
    from sgcache.store import writer as writer_module

    real_snapshot = history.snapshot
    rounds: list[int] = []

    def snapshot(conn, table, key, ids, **kw):
        if table.name != "shot" or key != "id" or 42 not in ids:
            return real_snapshot(conn, table, key, ids, **kw)
        rounds.append(1)
        conn.execute(sa.delete(table).where(table.c.id == 42))  # gone before the look...
        found = real_snapshot(conn, table, key, ids, **kw)
        now = dt.datetime.now(dt.UTC)  # ...and back after it
        conn.execute(sa.insert(table), {"id": 42, "code": "other", "_last_event_id": 3, "_active": True,
                                        "_cache_created_at": now, "_cache_updated_at": now})
        return found

    monkeypatch.setattr(history, "snapshot", snapshot)
    with pytest.raises(RuntimeError, match=r"Shot: other writers inserted and removed rows 42 5 times"):
        writer.upsert("Shot", [shot(i) for i in range(40, 45)], event_id=9)
    assert len(rounds) == writer_module.RACE_ROUNDS
    assert stored(engine, tables) == []
