"""Every field type's conversions, wire -> database -> wire, alone and through a real database."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from sgcache.errors import ConversionError
from sgcache.fields import REGISTRY, UncachedField, UnknownField, make_field
from sgcache.fields.entity import EntityField, MultiEntityField
from sgcache.schema.model import Field
from sgcache.store.reader import read_entities

# Every data type the real site's schema uses, and the documented ones it does not.
REAL_SITE_TYPES = {"text", "entity", "number", "multi_entity", "date_time", "image", "checkbox", "tag_list",
                   "status_list", "pivot_column", "list", "date", "url", "color", "entity_type", "duration",
                   "float", "serializable", "uuid", "password", "percent"}
DOCUMENTED_TYPES = REAL_SITE_TYPES | {"currency", "footage", "timecode", "url_template", "summary", "query"}


def handler(data_type: str, **kwargs):
    return make_field("Shot", Field(name="sg_x", data_type=data_type, **kwargs))


def roundtrip(data_type: str, value):
    """Wire -> db values -> wire, without a database."""
    h = handler(data_type)
    return h.from_db(h.to_db(value))


def test_registry_has_a_class_for_every_documented_data_type():
    assert DOCUMENTED_TYPES <= set(REGISTRY)


@pytest.mark.parametrize("data_type", ["password", "pivot_column", "summary", "query", "calculated"])
def test_types_the_cache_cannot_hold_are_uncached(data_type):
    h = handler(data_type)
    assert isinstance(h, UncachedField)
    assert h.cached is False
    assert h.columns() == []
    assert h.storage == "uncached"


def test_a_field_with_a_query_property_is_calculated_whatever_its_data_type():
    h = make_field("Shot", Field(name="sg_count", data_type="number", properties={"query": {"filters": []}}))
    assert h.cached is False
    assert "calculated" in h.reason


def test_an_unknown_data_type_is_uncached_with_a_warning(caplog):
    h = make_field("Shot", Field(name="sg_new", data_type="hologram"))
    assert isinstance(h, UnknownField)
    assert h.cached is False
    assert "hologram" in caplog.text and "sg_new" in caplog.text


@pytest.mark.parametrize("data_type,value", [
    ("text", "plain"),
    ("text", "Ünïcødé ✓ 漢字"),
    ("text", ""),
    ("color", "255,0,0"),
    ("color", "pipeline_step"),
    ("entity_type", "Shot"),
    ("footage", "12-04"),
    ("list", "Hero"),
    ("status_list", "ip"),
    ("url_template", "https://x/{id}"),
    ("uuid", "8ad3f19c-5d3a-11e5-a8ad-0242ac110002"),
    ("number", 0),
    ("number", -42),
    ("number", 2**40),
    ("duration", 480),
    ("timecode", 3_600_000),
    ("percent", 75),
    ("float", 1.5),
    ("currency", 1234.56),
    ("checkbox", True),
    ("checkbox", False),
    ("date", "2024-02-29"),
    ("date_time", "2024-02-29T23:59:59Z"),
    ("image", "https://sg.example/thumbnail/1.jpg"),
    ("url", {"url": "https://x/y.mov", "name": "y.mov", "content_type": "video/quicktime",
             "link_type": "upload", "type": "Attachment", "id": 12}),
    ("tag_list", ["hero", "réf"]),
    ("tag_list", []),
    ("serializable", {"a": [1, 2, {"b": None}], "ü": "x"}),
    ("serializable", [1, "two"]),
])
def test_values_survive_conversion_unchanged(data_type, value):
    assert roundtrip(data_type, value) == value


@pytest.mark.parametrize("data_type", sorted(DOCUMENTED_TYPES - {"password", "pivot_column", "summary", "query",
                                                                 "multi_entity"}))
def test_none_stays_none(data_type):
    assert roundtrip(data_type, None) is None


def test_date_time_from_an_aware_datetime_is_converted_to_utc():
    tz = dt.timezone(dt.timedelta(hours=-8))
    assert roundtrip("date_time", dt.datetime(2024, 1, 1, 16, 30, 0, tzinfo=tz)) == "2024-01-02T00:30:00Z"


def test_date_time_from_a_naive_datetime_is_taken_as_utc():
    assert roundtrip("date_time", dt.datetime(2024, 1, 1, 16, 30, 0)) == "2024-01-01T16:30:00Z"


@pytest.mark.parametrize("data_type,value", [
    ("date_time", "2024-01-01 10:00:00"),
    ("date_time", "2024-01-01T10:00:00+01:00"),
    ("date_time", "2024-13-01T10:00:00Z"),
    ("date_time", 1700000000),
    ("date", "2024-02-30"),
    ("date", "24-01-01"),
    ("date", dt.datetime(2024, 1, 1)),
    ("text", 5),
    ("number", "5"),
    ("number", True),
    ("number", 1.5),
    ("float", "1.5"),
    ("checkbox", 1),
    ("checkbox", "true"),
    ("url", "https://x"),
    ("tag_list", "hero"),
    ("tag_list", [1, 2]),
    ("image", 5),
])
def test_wrong_values_are_refused_with_a_message_naming_the_field(data_type, value):
    with pytest.raises(ConversionError) as e:
        handler(data_type).to_db(value)
    assert "Shot.sg_x" in str(e.value)
    assert data_type in str(e.value)


def test_entity_field_has_type_and_id_columns():
    h = handler("entity", entity_types=["Sequence"])
    assert isinstance(h, EntityField)
    assert [c.name for c in h.columns()] == ["sg_x__type", "sg_x__id"]
    assert h.to_db({"type": "Sequence", "id": 3, "name": "SQ01"}) == {"sg_x__type": "Sequence", "sg_x__id": 3}
    assert h.to_db(None) == {"sg_x__type": None, "sg_x__id": None}
    assert h.from_db({"sg_x__type": "Sequence", "sg_x__id": 3}) == {"type": "Sequence", "id": 3}
    assert h.from_db({"sg_x__type": None, "sg_x__id": None}) is None


@pytest.mark.parametrize("value", [{"type": "Sequence"}, {"id": 3}, {"type": "Sequence", "id": "3"}, "Sequence:3",
                                   {"type": 5, "id": 3}])
def test_entity_field_refuses_malformed_links(value):
    with pytest.raises(ConversionError):
        handler("entity").to_db(value)


def test_multi_entity_keeps_order_through_positions():
    h = handler("multi_entity", entity_types=["Asset", "Shot"])
    assert isinstance(h, MultiEntityField)
    rows = h.to_rows([{"type": "Asset", "id": 9}, {"type": "Shot", "id": 2}, {"type": "Asset", "id": 1}])
    assert rows == [{"position": 0, "child_type": "Asset", "child_id": 9},
                    {"position": 1, "child_type": "Shot", "child_id": 2},
                    {"position": 2, "child_type": "Asset", "child_id": 1}]
    assert h.from_rows(list(reversed(rows))) == [{"type": "Asset", "id": 9}, {"type": "Shot", "id": 2},
                                                 {"type": "Asset", "id": 1}]
    assert h.to_rows([]) == [] and h.to_rows(None) == []
    assert h.from_rows([]) == []


# --- through a real database, on both backends -------------------------------------------------

FULL_SHOT = {
    "type": "Shot", "id": 7,
    "code": "SH010 ✓ 漢字",
    "description": "line one\nline two",
    "project": {"type": "Project", "id": 1, "name": "Demo"},
    "sg_sequence": {"type": "Sequence", "id": 3, "name": "SQ01"},
    "assets": [{"type": "Asset", "id": 5, "name": "tree"}, {"type": "Sequence", "id": 3}, {"type": "Asset", "id": 2}],
    "sg_status_list": "ip",
    "sg_shot_type": "Hero",
    "sg_cut_in": 1001,
    "sg_cut_duration": 96,
    "sg_timecode": 3_723_000,
    "sg_percent": 40,
    "sg_rate": 23.976,
    "sg_budget": 1500.25,
    "sg_footage": "6-00",
    "sg_flag": True,
    "sg_color": "0,128,255",
    "sg_entity_type": "Asset",
    "sg_uuid": "8ad3f19c-5d3a-11e5-a8ad-0242ac110002",
    "sg_url_template": "rvlink://{id}",
    "sg_start": "2024-02-29",
    "created_at": "2024-02-29T23:59:59Z",
    "updated_at": "1999-12-31T00:00:00Z",
    "image": "https://sg.example/thumbs/7.jpg?AWSAccessKeyId=x&Expires=1",
    "sg_link": {"url": "https://x/y", "name": "Y", "link_type": "web", "content_type": None},
    "tag_list": ["hero", "fx"],
    "sg_data": {"nested": {"list": [1, 2.5, None, "ü"]}, "flag": False},
}
EMPTY_SHOT = {"type": "Shot", "id": 8, **{k: None for k in FULL_SHOT if k not in ("type", "id")},
              "assets": [], "tag_list": [], "sg_data": {}, "sg_flag": False}


def test_every_cached_field_type_round_trips_through_the_database(writer, tables, engine):
    writer.upsert("Shot", [FULL_SHOT, EMPTY_SHOT])
    with engine.connect() as conn:
        full, empty = read_entities(conn, tables, "Shot", fields=[k for k in FULL_SHOT if k not in ("type", "id")])
    # Links come back without "name": the read path adds names from the linked entities.
    expected = dict(FULL_SHOT)
    expected["project"] = {"type": "Project", "id": 1}
    expected["sg_sequence"] = {"type": "Sequence", "id": 3}
    expected["assets"] = [{"type": "Asset", "id": 5}, {"type": "Sequence", "id": 3}, {"type": "Asset", "id": 2}]
    assert full == expected
    assert empty == EMPTY_SHOT


def test_native_column_types_are_used(engine, tables):
    """Dates and timestamps are real date/time columns; JSON is jsonb on PostgreSQL."""
    cols = {c["name"]: c["type"] for c in sa.inspect(engine).get_columns("shot")}
    assert isinstance(cols["sg_start"], sa.Date)
    assert isinstance(cols["created_at"], sa.DateTime)
    assert isinstance(cols["sg_flag"], sa.Boolean)
    assert isinstance(cols["sg_rate"], sa.Float)
    if engine.dialect.name == "postgresql":
        assert cols["created_at"].timezone is True
        assert type(cols["sg_data"]).__name__ == "JSONB"
        assert type(cols["tag_list"]).__name__ == "JSONB"


def test_date_time_is_stored_as_utc_instant(writer, engine, tables):
    writer.upsert("Shot", [{"type": "Shot", "id": 1, "created_at": "2024-06-01T12:00:00Z"}])
    t = tables["Shot"].table
    with engine.connect() as conn:
        stored = conn.execute(sa.select(t.c.created_at)).scalar_one()
        # Comparisons in SQL use real instants, whatever the session's time zone.
        later = conn.execute(sa.select(sa.func.count()).select_from(t).where(
            t.c.created_at > dt.datetime(2024, 6, 1, 13, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))))).scalar()
    assert stored == dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.UTC)
    assert later == 1


def test_json_null_is_sql_null(writer, engine, tables):
    writer.upsert("Shot", [{"type": "Shot", "id": 1, "sg_data": None, "tag_list": None}])
    t = tables["Shot"].table
    with engine.connect() as conn:
        nulls = conn.execute(sa.select(sa.func.count()).select_from(t).where(t.c.sg_data.is_(None))
                             .where(t.c.tag_list.is_(None))).scalar()
    assert nulls == 1


def test_uncached_fields_have_no_columns(tables, engine):
    cols = {c["name"] for c in sa.inspect(engine).get_columns("shot")}
    assert "step_0" not in cols and "sg_password" not in cols and "sg_total" not in cols
    assert {"sg_sequence__type", "sg_sequence__id"} <= cols


def test_every_storing_class_names_its_storage_itself_and_no_two_share_a_key():
    # The key is recorded in _sgcache_fields.storage: it must not follow the Python class name
    # (a rename would remake every such field's storage) and must tell association storage apart.
    from sgcache.fields.base import STORAGE, register, storage_has_association

    storing = {cls for cls in REGISTRY.values() if cls.cached}
    assert storing == set(STORAGE.values())
    assert all(STORAGE[cls.storage_key] is cls for cls in storing)
    assert storage_has_association("MultiEntityField:1") and not storage_has_association("EntityField:1")
    assert not storage_has_association("uncached") and not storage_has_association("NoSuchField:1")
    with pytest.raises(TypeError, match="storage_key of its own"):
        @register()
        class Renamed(STORAGE["TextField"]):  # inherits TextField's key: refused
            pass
    with pytest.raises(TypeError, match="storage_key of its own"):
        @register()
        class Clash(STORAGE["TextField"]):
            storage_key = "IntegerField"  # another class's key: refused



CACHED_TYPES = sorted(DOCUMENTED_TYPES - {"password", "pivot_column", "summary", "query"})


@pytest.mark.parametrize("data_type", CACHED_TYPES)
def test_a_field_read_as_is_gives_its_column_s_value_unchanged(data_type):
    """Readers take a ``read_as_is`` field's column straight (sgcache.query.read): only right
    where from_db gives back whatever the column holds, None included."""
    h = handler(data_type, entity_types=["Asset"] if "entity" in data_type else [])
    if h.read_as_is:
        held = object()
        assert h.from_db({h.column: held}) is held
        assert h.from_db({h.column: None}) is None


def test_the_kinds_read_as_is():
    read_as_is = {t for t in CACHED_TYPES
                  if handler(t, entity_types=["Asset"] if "entity" in t else []).read_as_is}
    assert read_as_is == {"text", "color", "entity_type", "footage", "list", "status_list", "url_template", "uuid",
                          "number", "duration", "percent", "timecode", "float", "currency", "serializable", "url",
                          "image", "tag_list"}
