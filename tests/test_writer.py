"""The writer: upsert, retire and revive, on both backends."""

from __future__ import annotations

import datetime as dt
import functools

import pytest
import sqlalchemy as sa
from conftest import SMALL_SCHEMA
from hypothesis import given, settings
from hypothesis import strategies as st

from sgcache.errors import ConversionError, UnknownEntityType
from sgcache.schema import loads
from sgcache.store.reader import read_entities
from sgcache.store.tables import Tables
from sgcache.store.writer import Writer


def shots(engine, tables, *fields, meta=False):
    with engine.connect() as conn:
        return read_entities(conn, tables, "Shot", fields=list(fields), include_meta=meta)


def links(engine, tables, field="assets"):
    assoc = tables["Shot"].associations[field]
    with engine.connect() as conn:
        return conn.execute(sa.select(assoc.c.parent_id, assoc.c.position, assoc.c.child_type, assoc.c.child_id)
                            .order_by(assoc.c.parent_id, assoc.c.position)).all()


def test_upsert_inserts_new_entities(writer, engine, tables):
    n = writer.upsert("Shot", [{"type": "Shot", "id": 1, "code": "A"}, {"type": "Shot", "id": 2, "code": "B"}])
    assert n == 2
    assert shots(engine, tables, "code") == [{"type": "Shot", "id": 1, "code": "A"},
                                             {"type": "Shot", "id": 2, "code": "B"}]


def test_upsert_updates_only_the_fields_present(writer, engine, tables):
    writer.upsert("Shot", [{"type": "Shot", "id": 1, "code": "A", "description": "first", "sg_cut_in": 1001}])
    writer.upsert("Shot", [{"type": "Shot", "id": 1, "description": "second"}])
    assert shots(engine, tables, "code", "description", "sg_cut_in") == [
        {"type": "Shot", "id": 1, "code": "A", "description": "second", "sg_cut_in": 1001}]


def test_upsert_with_none_clears_a_field(writer, engine, tables):
    writer.upsert("Shot", [{"type": "Shot", "id": 1, "code": "A", "sg_sequence": {"type": "Sequence", "id": 3}}])
    writer.upsert("Shot", [{"type": "Shot", "id": 1, "sg_sequence": None}])
    assert shots(engine, tables, "code", "sg_sequence") == [{"type": "Shot", "id": 1, "code": "A",
                                                             "sg_sequence": None}]


def test_upsert_accepts_rows_with_different_field_sets_in_one_batch(writer, engine, tables):
    writer.upsert("Shot", [{"type": "Shot", "id": 1, "code": "A"},
                           {"type": "Shot", "id": 2, "description": "only"},
                           {"type": "Shot", "id": 3, "code": "C", "description": "both"}])
    assert shots(engine, tables, "code", "description") == [
        {"type": "Shot", "id": 1, "code": "A", "description": None},
        {"type": "Shot", "id": 2, "code": None, "description": "only"},
        {"type": "Shot", "id": 3, "code": "C", "description": "both"}]


def test_the_same_id_twice_in_a_batch_merges_with_later_values_winning(writer, engine, tables):
    n = writer.upsert("Shot", [{"type": "Shot", "id": 1, "code": "A", "description": "x"},
                               {"type": "Shot", "id": 1, "code": "B"}])
    assert n == 1
    assert shots(engine, tables, "code", "description") == [{"type": "Shot", "id": 1, "code": "B",
                                                             "description": "x"}]


def test_upsert_ignores_uncached_deep_and_unknown_keys(writer, engine, tables):
    writer.upsert("Shot", [{"type": "Shot", "id": 1, "code": "A", "step_0": "x", "sg_password": "secret",
                            "sg_sequence.Sequence.code": "SQ", "no_such_field": 5}])
    assert shots(engine, tables, "code") == [{"type": "Shot", "id": 1, "code": "A"}]


def test_multi_entity_rows_keep_list_order(writer, engine, tables):
    writer.upsert("Shot", [{"type": "Shot", "id": 1, "assets": [
        {"type": "Asset", "id": 30}, {"type": "Sequence", "id": 4}, {"type": "Asset", "id": 10}]}])
    assert links(engine, tables) == [(1, 0, "Asset", 30), (1, 1, "Sequence", 4), (1, 2, "Asset", 10)]
    assert shots(engine, tables, "assets")[0]["assets"] == [
        {"type": "Asset", "id": 30}, {"type": "Sequence", "id": 4}, {"type": "Asset", "id": 10}]


def test_multi_entity_value_replaces_the_previous_list(writer, engine, tables):
    writer.upsert("Shot", [
        {"type": "Shot", "id": 1, "assets": [{"type": "Asset", "id": 1}, {"type": "Asset", "id": 2}]},
        {"type": "Shot", "id": 2, "assets": [{"type": "Asset", "id": 9}]}])
    writer.upsert("Shot", [{"type": "Shot", "id": 1, "assets": [{"type": "Asset", "id": 2}, {"type": "Asset", "id": 3},
                                                                 {"type": "Asset", "id": 1}]}])
    assert links(engine, tables) == [(1, 0, "Asset", 2), (1, 1, "Asset", 3), (1, 2, "Asset", 1),
                                     (2, 0, "Asset", 9)]


def test_empty_multi_entity_list_removes_all_links(writer, engine, tables):
    writer.upsert("Shot", [{"type": "Shot", "id": 1, "assets": [{"type": "Asset", "id": 1}]}])
    writer.upsert("Shot", [{"type": "Shot", "id": 1, "assets": []}])
    assert links(engine, tables) == []
    assert shots(engine, tables, "assets") == [{"type": "Shot", "id": 1, "assets": []}]


def test_multi_entity_absent_from_the_dict_is_left_alone(writer, engine, tables):
    writer.upsert("Shot", [{"type": "Shot", "id": 1, "assets": [{"type": "Asset", "id": 1}]}])
    writer.upsert("Shot", [{"type": "Shot", "id": 1, "code": "A"}])
    assert links(engine, tables) == [(1, 0, "Asset", 1)]


def test_upsert_is_idempotent(writer, engine, tables):
    batch = [{"type": "Shot", "id": 1, "code": "A", "assets": [{"type": "Asset", "id": 1}], "tag_list": ["x"]}]
    writer.upsert("Shot", batch)
    first = shots(engine, tables, "code", "assets", "tag_list")
    writer.upsert("Shot", batch)
    assert shots(engine, tables, "code", "assets", "tag_list") == first
    assert links(engine, tables) == [(1, 0, "Asset", 1)]


def test_a_bad_value_rolls_back_the_whole_batch(writer, engine, tables):
    writer.upsert("Shot", [{"type": "Shot", "id": 1, "code": "before"}])
    with pytest.raises(ConversionError, match=r"Shot\.sg_cut_in"):
        writer.upsert("Shot", [{"type": "Shot", "id": 1, "code": "after"},
                               {"type": "Shot", "id": 2, "sg_cut_in": "not a number"}])
    assert shots(engine, tables, "code") == [{"type": "Shot", "id": 1, "code": "before"}]


@pytest.mark.parametrize("field,value", [
    ("sg_cut_in", True), ("sg_rate", False), ("code", 12), ("sg_flag", 1), ("sg_cut_in", "12"), ("code", ["a"]),
    # links and wire dates have shortcuts of their own (Writer._convert)
    ("sg_sequence", {"type": "Sequence", "id": True}), ("sg_sequence", {"type": "Sequence", "id": "3"}),
    ("sg_sequence", {"id": 3}), ("sg_sequence", {"type": 7, "id": 3}), ("sg_sequence", [{"type": "Sequence", "id": 3}]),
    ("sg_start", "2026-02-30"), ("sg_start", "2026-02-03T12:00:00Z"), ("sg_start", "20260203"),
    ("sg_start", "2026-W10-1"), ("sg_start", "２０２６-02-03"),
    ("created_at", "2026-02-03"), ("created_at", "2026-02-03 12:00:00Z"), ("created_at", "2024-W10-1T12:00:00Z"),
    ("created_at", "2026-02-03T25:00:00Z"), ("created_at", "2026-02-03T12:00:00+01:00"),
])
def test_a_value_of_a_near_kind_is_refused_not_stored(writer, field, value):
    """Values of exactly a field's kind are stored without the handler's checks; a value of a
    subclass or a look-alike (a bool for a number, a number for text, a date for a time, a
    link without a type) still meets them."""
    with pytest.raises(ConversionError, match=rf"Shot\.{field}"):
        writer.upsert("Shot", [{"type": "Shot", "id": 1, field: value}])


class _Link(dict):
    pass


class _Id(int):
    pass


@pytest.mark.parametrize("field,value", [
    ("code", "SH010"), ("sg_cut_in", 1001), ("sg_rate", 23.976), ("sg_flag", False), ("sg_flag", None),
    ("sg_sequence", {"type": "Sequence", "id": 3}), ("sg_sequence", {"type": "Sequence", "id": 3, "name": "SQ"}),
    ("sg_sequence", _Link(type="Sequence", id=3)), ("sg_sequence", {"type": "Sequence", "id": _Id(3)}),
    ("sg_sequence", None), ("sg_start", "2026-02-03"), ("sg_start", None),
    ("created_at", "2026-02-03T12:00:00Z"), ("created_at", "1999-12-31T23:59:59Z"), ("created_at", None),
])
def test_the_writers_shortcuts_store_what_the_field_stores(writer, tables, field, value):
    """Writer._convert stores plain values without the field's put(): what it stores is put()'s."""
    handler = tables["Shot"].fields[field]
    row, _ = writer._convert(tables["Shot"], {"type": "Shot", "id": 1, field: value})
    expected = {"id": 1}
    handler.put(expected, value)
    assert row == expected
    assert [type(v) for v in row.values()] == [type(v) for v in expected.values()]


def test_values_of_each_plain_kind_are_stored_as_given(writer, engine, tables):
    entity = {"type": "Shot", "id": 1, "code": "SH010", "sg_cut_in": 1001, "sg_rate": 23.976, "sg_flag": False,
              "sg_percent": 2.0, "sg_timecode": 0}
    writer.upsert("Shot", [entity])
    stored = shots(engine, tables, *[k for k in entity if k not in ("type", "id")])
    assert stored == [{**entity, "sg_percent": 2}] and type(stored[0]["sg_percent"]) is int


def test_a_database_error_rolls_back_association_changes_too(writer, engine, tables):
    writer.upsert("Shot", [{"type": "Shot", "id": 1, "assets": [{"type": "Asset", "id": 1}]}])
    with pytest.raises(RuntimeError):
        with engine.begin() as conn:
            writer.upsert("Shot", [{"type": "Shot", "id": 1, "assets": [{"type": "Asset", "id": 2}]}], conn=conn)
            raise RuntimeError("the caller's transaction fails after the write")
    assert links(engine, tables) == [(1, 0, "Asset", 1)]


@pytest.mark.parametrize("entity,message", [
    ({"type": "Shot", "code": "no id"}, "integer 'id'"),
    ({"type": "Shot", "id": "1"}, "integer 'id'"),
    ({"type": "Asset", "id": 1}, "has type 'Asset'"),
])
def test_malformed_entities_are_refused(writer, entity, message):
    with pytest.raises(ConversionError, match=message):
        writer.upsert("Shot", [entity])


def test_unknown_entity_type_is_refused(writer):
    with pytest.raises(UnknownEntityType, match="Element"):
        writer.upsert("Element", [{"type": "Element", "id": 1}])


def test_new_rows_are_active_and_record_cache_times(writer, engine, tables):
    writer.upsert("Shot", [{"type": "Shot", "id": 1, "code": "A"}])
    (row,) = shots(engine, tables, "code", meta=True)
    assert row["_active"] is True
    assert row["_cache_created_at"] is not None and row["_cache_updated_at"] >= row["_cache_created_at"]
    assert row["_last_event_id"] is None


def test_updates_keep_the_creation_time(writer, engine, tables):
    writer.upsert("Shot", [{"type": "Shot", "id": 1, "code": "A"}])
    (before,) = shots(engine, tables, meta=True)
    writer.upsert("Shot", [{"type": "Shot", "id": 1, "code": "B"}])
    (after,) = shots(engine, tables, meta=True)
    assert after["_cache_created_at"] == before["_cache_created_at"]
    assert after["_cache_updated_at"] >= before["_cache_updated_at"]


def test_upsert_with_active_false_stores_a_retired_row(writer, engine, tables):
    writer.upsert("Shot", [{"type": "Shot", "id": 1, "code": "gone"}], active=False)
    assert shots(engine, tables, meta=True)[0]["_active"] is False
    # active=None leaves the state alone
    writer.upsert("Shot", [{"type": "Shot", "id": 1, "code": "still gone"}])
    assert shots(engine, tables, meta=True)[0]["_active"] is False


def test_retire_and_revive(writer, engine, tables):
    writer.upsert("Shot", [{"type": "Shot", "id": i} for i in (1, 2, 3)])
    assert writer.retire("Shot", [1, 3]) == 2
    assert [r["_active"] for r in shots(engine, tables, meta=True)] == [False, True, False]
    assert writer.revive("Shot", [3]) == 1
    assert [r["_active"] for r in shots(engine, tables, meta=True)] == [False, True, True]


def test_retire_skips_entities_the_cache_does_not_hold(writer, engine, tables):
    assert writer.retire("Shot", [404]) == 0
    assert shots(engine, tables) == []


def test_retire_is_idempotent(writer, engine, tables):
    writer.upsert("Shot", [{"type": "Shot", "id": 1}])
    writer.retire("Shot", [1])
    writer.retire("Shot", [1])
    assert shots(engine, tables, meta=True)[0]["_active"] is False


def test_an_older_event_never_overwrites_newer_data(writer, engine, tables):
    writer.upsert("Shot", [{"type": "Shot", "id": 1, "code": "new", "assets": [{"type": "Asset", "id": 2}]}],
                  event_id=20)
    n = writer.upsert("Shot", [{"type": "Shot", "id": 1, "code": "old", "assets": [{"type": "Asset", "id": 1}]}],
                      event_id=10)
    assert n == 0
    (row,) = shots(engine, tables, "code", "assets", meta=True)
    assert (row["code"], row["assets"], row["_last_event_id"]) == ("new", [{"type": "Asset", "id": 2}], 20)


def test_the_same_or_a_newer_event_applies(writer, engine, tables):
    writer.upsert("Shot", [{"type": "Shot", "id": 1, "code": "a"}], event_id=20)
    assert writer.upsert("Shot", [{"type": "Shot", "id": 1, "code": "b"}], event_id=20) == 1
    assert writer.upsert("Shot", [{"type": "Shot", "id": 1, "code": "c"}], event_id=21) == 1
    (row,) = shots(engine, tables, "code", meta=True)
    assert (row["code"], row["_last_event_id"]) == ("c", 21)


def test_an_older_retirement_does_not_undo_a_newer_revival(writer, engine, tables):
    writer.upsert("Shot", [{"type": "Shot", "id": 1}])
    writer.revive("Shot", [1], event_id=30)
    assert writer.retire("Shot", [1], event_id=25) == 0
    assert shots(engine, tables, meta=True)[0]["_active"] is True


def test_writes_without_an_event_id_keep_the_last_event_id(writer, engine, tables):
    writer.upsert("Shot", [{"type": "Shot", "id": 1, "code": "a"}], event_id=7)
    writer.upsert("Shot", [{"type": "Shot", "id": 1, "code": "b"}])
    (row,) = shots(engine, tables, "code", meta=True)
    assert (row["code"], row["_last_event_id"]) == ("b", 7)


def test_bulk_upsert_of_several_thousand_entities(writer, engine, tables):
    batch = [{"type": "Shot", "id": i, "code": f"SH{i:05d}", "sg_cut_in": i, "created_at": "2024-01-01T00:00:00Z",
              "assets": [{"type": "Asset", "id": i % 7}, {"type": "Asset", "id": i % 11}]} for i in range(1, 3001)]
    assert writer.upsert("Shot", batch) == 3000
    t = tables["Shot"].table
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t)).scalar() == 3000
        assert conn.execute(sa.select(sa.func.sum(t.c.sg_cut_in))).scalar() == sum(range(1, 3001))
        assoc = tables["Shot"].associations["assets"]
        assert conn.execute(sa.select(sa.func.count()).select_from(assoc)).scalar() == 6000
    assert shots(engine, tables, "code", "assets")[2999] == {
        "type": "Shot", "id": 3000, "code": "SH03000",
        "assets": [{"type": "Asset", "id": 3000 % 7}, {"type": "Asset", "id": 3000 % 11}]}


# --- the shortcuts against put(), on values hypothesis makes ------------------------------------

_DATEISH = st.text(alphabet="0123456789-T:Z+ W.", min_size=0, max_size=26)
_WIRE_TIMES = st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31)).map(
    lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ") if d.year >= 1000 else f"{d.year:04d}" + d.strftime("-%m-%dT%H:%M:%SZ"))
_WIRE_DATES = st.dates().map(lambda d: f"{d.year:04d}-{d.month:02d}-{d.day:02d}")
_IDS = st.one_of(st.integers(-2**40, 2**40), st.booleans(), st.text(max_size=3), st.none(), st.floats())
_LINKS = st.one_of(
    st.fixed_dictionaries({"type": st.one_of(st.sampled_from(["Sequence", ""]), st.integers(), st.none()),
                           "id": _IDS}, optional={"name": st.text(max_size=5), "extra": st.integers()}),
    st.fixed_dictionaries({}, optional={"type": st.just("Sequence"), "id": st.integers(0, 9)}),
    st.lists(st.integers(), max_size=2), st.integers(), st.text(max_size=4), st.none())
#: Texts an ISO parser takes that the wire's shape does not: week dates, wide digits, offsets.
_LOOKALIKES = st.sampled_from(["2026-W10-1", "2026-W10-1T12:00:00Z", "２０２６-02-03", "2026-02-03T12:00:00+00:00",
                               "2026-02-03T12:00Z", "2026-02-03 12:00:00Z", "+2026-02-03", "2026-02-03T12:00:00.5Z"])
_VALUES = {"sg_sequence": _LINKS,
           "sg_start": st.one_of(_WIRE_DATES, _DATEISH, _LOOKALIKES, st.integers(), st.none()),
           "created_at": st.one_of(_WIRE_TIMES, _DATEISH, _LOOKALIKES, st.dates(), st.integers(), st.none())}


@functools.cache
def _plain_writer() -> tuple[Tables, Writer]:
    tables = Tables(loads(SMALL_SCHEMA))
    return tables, Writer(sa.create_engine("sqlite://"), tables)


def _outcome(call):
    try:
        row = call()
    except ConversionError as e:
        return "refused", str(e)
    return {k: (v, type(v)) for k, v in row.items()}


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(field=st.sampled_from(sorted(_VALUES)), data=st.data())
def test_the_writers_shortcuts_agree_with_put_on_any_value(field, data):
    """Whatever the value, _convert stores what put() stores, or refuses it with the same error."""
    value = data.draw(_VALUES[field])
    tables, writer = _plain_writer()
    handler = tables["Shot"].fields[field]

    def by_put():
        row = {"id": 1}
        handler.put(row, value)
        return row

    assert _outcome(lambda: writer._convert(tables["Shot"], {"type": "Shot", "id": 1, field: value})[0]) == \
        _outcome(by_put)
