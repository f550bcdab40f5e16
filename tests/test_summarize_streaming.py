"""Summaries counted row by row (not totalled in SQL) read the matching rows in batches of
``BATCH_ROWS``: memory holds one batch and the running totals, whatever the number of rows, and the
answer does not depend on where the batches end. On both databases."""

from __future__ import annotations

import datetime as dt
import random
import tracemalloc
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from sgcache.query import summarize
from sgcache.query.paths import Context
from sgcache.query.read import Values
from sgcache.query.summarize import compile_summarize
from sgcache.store.readstate import ReadState

STATUSES = ["wtg", "ip", "fin", None]
EVERYTHING = {"logical_operator": "and", "conditions": []}


def _shots(first: int, count: int, seed: int) -> list[dict]:
    """``count`` Shots from id ``first``, every field summarized below set on most and unset on some."""
    rnd = random.Random(seed)
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    out = []
    for i in range(first, first + count):
        moment = start + dt.timedelta(hours=rnd.randrange(24 * 400), seconds=rnd.randrange(60))
        out.append({
            "type": "Shot", "id": i,
            "code": rnd.choice(["", None, f"{rnd.choice('abcXYZ')}{i:05d}"]),
            "sg_status_list": rnd.choice(STATUSES),
            "sg_cut_in": rnd.choice([None, rnd.randrange(-50, 5000)]),
            "sg_rate": rnd.choice([None, rnd.uniform(-1, 1) * 10 ** rnd.randrange(-3, 6)]),
            "sg_flag": rnd.choice([True, False, None]),
            "sg_start": rnd.choice([None, (start + dt.timedelta(days=rnd.randrange(800))).date().isoformat()]),
            "created_at": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "project": rnd.choice([None, {"type": "Project", "id": 1}, {"type": "Project", "id": 2}]),
            "sg_sequence": rnd.choice([None, {"type": "Sequence", "id": 1}, {"type": "Sequence", "id": 2}]),
            "assets": rnd.sample([{"type": "Asset", "id": 1}, {"type": "Sequence", "id": 2}], rnd.randrange(3)),
        })
    return out


def _load(writer, first: int, count: int, seed: int = 13) -> list[dict]:
    writer.upsert("Project", [{"type": "Project", "id": 1, "name": "Beta"},
                              {"type": "Project", "id": 2, "name": "alpha"}])
    writer.upsert("Sequence", [{"type": "Sequence", "id": 1, "code": "SQ1"},
                               {"type": "Sequence", "id": 2, "code": "SQ2"}])
    writer.upsert("Asset", [{"type": "Asset", "id": 1, "code": "tree"}])
    shots = _shots(first, count, seed)
    for at in range(0, len(shots), 2000):
        writer.upsert("Shot", shots[at:at + 2000])
    return shots


def _run(engine, tables, summaries: list[dict], grouping: list[dict] | None = None) -> dict:
    ctx = Context(tables, ReadState(ready=frozenset(tables.entities)), engine.dialect.name, tz=ZoneInfo("UTC"))
    plan = compile_summarize(ctx, {"type": "Shot", "filters": EVERYTHING, "summaries": summaries,
                                   "grouping": grouping or []})
    assert plan.aggregate is None, "these summaries are meant for the row-by-row path"
    with engine.connect() as conn:
        return plan.run(conn)


# One summarize per case: an answer is keyed by field, so no field is summarized twice in one.
CASES = {
    "every summary type": (
        [{"field": "id", "type": "record_count"}, {"field": "code", "type": "count"},
         {"field": "sg_rate", "type": "sum"}, {"field": "sg_cut_in", "type": "average"},
         {"field": "sg_start", "type": "earliest"}, {"field": "created_at", "type": "latest"},
         {"field": "sg_flag", "type": "checked"}, {"field": "sg_status_list", "type": "status_list"},
         {"field": "assets", "type": "count"}],
        []),
    "the others": (
        [{"field": "sg_rate", "type": "maximum"}, {"field": "sg_cut_in", "type": "minimum"},
         {"field": "sg_flag", "type": "unchecked"}, {"field": "created_at", "type": "earliest"},
         {"field": "sg_start", "type": "latest"}, {"field": "sg_status_list", "type": "status_percentage",
                                                   "value": "ip"}],
        [{"field": "project", "type": "exact", "direction": "desc"}]),
    "percentages, number buckets in links": (
        [{"field": "sg_flag", "type": "percentage"}, {"field": "sg_status_list", "type": "percentage", "value": "fin"},
         {"field": "sg_rate", "type": "average"}],
        [{"field": "sg_sequence", "type": "entitytype"},
         {"field": "sg_cut_in", "type": "hundreds", "direction": "desc"},
         {"field": "sg_sequence", "type": "exact"}]),
    "dates": (
        [{"field": "sg_rate", "type": "sum"}, {"field": "id", "type": "record_count"}],
        [{"field": "created_at", "type": "quarter", "direction": "desc"}, {"field": "sg_start", "type": "week"},
         {"field": "created_at", "type": "fivedays"}]),
    "months, years, letters": (
        [{"field": "sg_status_list", "type": "status_list"}, {"field": "sg_cut_in", "type": "sum"}],
        [{"field": "sg_start", "type": "year"}, {"field": "created_at", "type": "month", "direction": "desc"},
         {"field": "code", "type": "firstletter"}]),
    "exact text, checkboxes, days, thousands": (
        [{"field": "sg_rate", "type": "minimum"}, {"field": "code", "type": "count"}],
        [{"field": "sg_status_list", "type": "exact"}, {"field": "sg_flag", "type": "exact", "direction": "desc"},
         {"field": "sg_cut_in", "type": "thousands"}, {"field": "sg_start", "type": "day"}]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_answer_does_not_depend_on_the_batch_size(engine, tables, writer, monkeypatch, case):
    _load(writer, 1, 60)
    summaries, grouping = CASES[case]
    monkeypatch.setattr(summarize, "BATCH_ROWS", 1_000_000)
    whole = _run(engine, tables, summaries, grouping)
    assert whole["summaries"] and (whole["groups"] or not grouping)
    for size in (1, 2, 7):
        monkeypatch.setattr(summarize, "BATCH_ROWS", size)
        assert _run(engine, tables, summaries, grouping) == whole, f"BATCH_ROWS={size}"


def test_decimal_sums_add_up_in_id_order_across_batches(engine, tables, writer, monkeypatch):
    """A float sum depends on the order of the additions: rows are added in id order, one by one,
    exactly as ``sum()`` over all of them, whatever the batches."""
    shots = _load(writer, 1, 300)
    rates = [s["sg_rate"] for s in sorted(shots, key=lambda s: s["id"]) if s["sg_rate"] is not None]
    cuts = [s["sg_cut_in"] for s in shots if s["sg_cut_in"] is not None]
    monkeypatch.setattr(summarize, "BATCH_ROWS", 7)
    answer = _run(engine, tables, [{"field": "sg_rate", "type": "sum"}, {"field": "sg_cut_in", "type": "average"},
                                   {"field": "id", "type": "record_count"}])
    assert answer["summaries"] == {"sg_rate": sum(rates), "sg_cut_in": sum(cuts) / len(cuts), "id": 300}


def test_first_of_equal_extremes_and_first_seen_statuses_are_kept_across_batches(engine, tables, writer,
                                                                                  monkeypatch):
    writer.upsert("Shot", [{"type": "Shot", "id": i, "sg_status_list": status, "sg_cut_in": cut}
                           for i, status, cut in [(1, None, None), (2, "ip", 5), (3, "fin", 9), (4, "ip", None),
                                                  (5, "wtg", 9), (6, "", 2)]])
    monkeypatch.setattr(summarize, "BATCH_ROWS", 2)
    answer = _run(engine, tables, [{"field": "sg_status_list", "type": "status_list"},
                                   {"field": "sg_cut_in", "type": "maximum"}],
                  [{"field": "sg_cut_in", "type": "tens", "direction": "desc"}])
    assert answer["summaries"] == {"sg_status_list": {"ip": 2, "fin": 1, "wtg": 1}, "sg_cut_in": 9}
    assert list(answer["summaries"]["sg_status_list"]) == ["ip", "fin", "wtg"]
    assert [(g["group_name"], g["group_value"], g["summaries"]) for g in answer["groups"]] == [
        ("0 - 9", 0, {"sg_status_list": {"ip": 1, "fin": 1, "wtg": 1}, "sg_cut_in": 9}),
        ("", None, {"sg_status_list": {"ip": 1}, "sg_cut_in": None}),
    ]


def _peak_bytes(engine, tables, summaries: list[dict], grouping: list[dict]) -> tuple[int, dict]:
    """The most memory Python held at once during one summarize, and its answer."""
    _run(engine, tables, summaries, grouping)  # statements compiled and cached, modules imported
    tracemalloc.start()
    try:
        answer = _run(engine, tables, summaries, grouping)
        return tracemalloc.get_traced_memory()[1], answer
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_number_of_rows(engine, tables, writer, monkeypatch):
    """Eight times the rows, in the same few groups: the peak stays that of one batch and the totals."""
    monkeypatch.setattr(summarize, "BATCH_ROWS", 100)
    summaries = [{"field": "sg_status_list", "type": "status_list"}, {"field": "sg_rate", "type": "sum"},
                 {"field": "created_at", "type": "latest"}, {"field": "assets", "type": "count"}]
    grouping = [{"field": "sg_status_list", "type": "exact"}, {"field": "project", "type": "exact"}]
    shots = _load(writer, 1, 1000)
    small, answer = _peak_bytes(engine, tables, summaries, grouping)
    assert [g["group_value"] for g in answer["groups"]] == ["fin", "ip", "wtg", None]
    shots += _load(writer, 1001, 7000, seed=14)
    large, answer = _peak_bytes(engine, tables, summaries, grouping)
    assert sum(answer["summaries"]["sg_status_list"].values()) == sum(1 for s in shots if s["sg_status_list"])
    # Holding the 7,000 more rows at once would take megabytes (a row is about a kilobyte here).
    assert large - small < 300_000, f"peak {small:,} bytes for 1,000 rows, {large:,} for 8,000"


def test_postgresql_keeps_the_matching_rows_in_a_server_side_cursor(engine, tables, writer, monkeypatch):
    """libpq would otherwise receive every row at once, in memory tracemalloc does not see."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite steps through its result row by row anyway")
    shots = _load(writer, 1, 50)
    monkeypatch.setattr(summarize, "BATCH_ROWS", 20)
    cursors: list[int] = []
    fetch = Values.fetch

    def fetch_and_count_cursors(self, plans, ids, rows=None):
        cursors.append(self.conn.execute(sa.text("SELECT count(*) FROM pg_cursors")).scalar())
        return fetch(self, plans, ids, rows)

    monkeypatch.setattr(Values, "fetch", fetch_and_count_cursors)
    answer = _run(engine, tables, [{"field": "sg_status_list", "type": "status_list"}])
    assert sum(answer["summaries"]["sg_status_list"].values()) == sum(1 for s in shots if s["sg_status_list"])
    assert cursors == [1, 1, 1]
