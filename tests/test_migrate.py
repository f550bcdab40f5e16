"""Migrations: the database is made to agree with the schema file, on both backends."""

from __future__ import annotations

import copy
import datetime as dt

import sqlalchemy as sa

from sgcache.schema import loads
from sgcache.schema.model import EntityType, Field
from sgcache.store import state
from sgcache.store.migrate import migrate
from sgcache.store.reader import read_entities
from sgcache.store.tables import Tables
from sgcache.store.writer import Writer


def columns(engine, table):
    return {c["name"] for c in sa.inspect(engine).get_columns(table)}


def table_names(engine):
    return set(sa.inspect(engine).get_table_names())


def index_names(engine, table):
    return {ix["name"] for ix in sa.inspect(engine).get_indexes(table)}


def marks(engine, tables):
    with engine.connect() as conn:
        return state.backfill_marks(conn, tables.state)


def evolve(schema, change):
    """A copy of ``schema`` changed by ``change(copy)``."""
    new = copy.deepcopy(schema)
    change(new)
    return new


def test_first_migration_creates_entity_association_and_state_tables(engine, small_schema):
    report = migrate(engine, Tables(small_schema))
    assert {"project", "sequence", "asset", "shot", "shot_assets", "_sgcache_meta", "_sgcache_fields"} \
        <= table_names(engine)
    assert "create table shot" in report.actions
    assert {"sg_sequence__type", "sg_sequence__id", "code", "_active", "_cache_created_at", "_cache_updated_at",
            "_last_event_id"} <= columns(engine, "shot")
    assert columns(engine, "shot_assets") == {"parent_id", "position", "child_type", "child_id", "_valid_from"}


def test_indexes_cover_links_updated_at_project_and_associations(engine, small_schema):
    migrate(engine, Tables(small_schema))
    assert {"ix_shot_sg_sequence", "ix_shot_project", "ix_shot_updated_at"} <= index_names(engine, "shot")
    assert "ix_shot_assets_child" in index_names(engine, "shot_assets")
    pk = sa.inspect(engine).get_pk_constraint("shot_assets")["constrained_columns"]
    assert pk == ["parent_id", "position"]
    assert sa.inspect(engine).get_pk_constraint("shot")["constrained_columns"] == ["id"]


def index_columns(engine, table):
    return {ix["name"]: ix["column_names"] for ix in sa.inspect(engine).get_indexes(table)}


def test_link_indexes_of_a_project_scoped_type_end_with_the_project(engine, small_schema):
    migrate(engine, Tables(small_schema))
    shot = index_columns(engine, "shot")
    assert shot["ix_shot_sg_sequence"] == ["sg_sequence__id", "sg_sequence__type", "project__id"]
    assert shot["ix_shot_project"] == ["project__id", "project__type"]


def test_an_index_made_with_other_columns_is_made_again(engine, small_schema):
    migrate(engine, Tables(small_schema))
    with engine.begin() as conn:  # as an older sgcache made it
        conn.exec_driver_sql("DROP INDEX ix_shot_sg_sequence")
        conn.exec_driver_sql("CREATE INDEX ix_shot_sg_sequence ON shot (sg_sequence__id, sg_sequence__type)")
    report = migrate(engine, Tables(small_schema))
    assert report.actions == ["drop index ix_shot_sg_sequence (sg_sequence__id, sg_sequence__type)",
                              "create index ix_shot_sg_sequence"]
    assert index_columns(engine, "shot")["ix_shot_sg_sequence"] == ["sg_sequence__id", "sg_sequence__type",
                                                                     "project__id"]
    assert migrate(engine, Tables(small_schema)).actions == []


def test_history_indexes_end_with_when_the_version_ended_and_older_ones_are_made_again(engine, small_schema):
    # A read of the past wants the versions valid at a moment: with the end in the index, the
    # index leaves out the versions that ended before it.
    migrate(engine, Tables(small_schema))
    history = index_columns(engine, "_history_shot")
    assert history["ix__history_shot_ix_shot_sg_sequence"] == ["sg_sequence__id", "sg_sequence__type",
                                                                 "project__id", "_valid_to"]
    assert history["ix__history_shot_ended"] == ["_valid_to"]  # every row as of a moment: a summary
    with engine.begin() as conn:  # as an older sgcache made it
        conn.exec_driver_sql("DROP INDEX ix__history_shot_ix_shot_sg_sequence")
        conn.exec_driver_sql("CREATE INDEX ix__history_shot_ix_shot_sg_sequence ON _history_shot "
                             "(sg_sequence__id, sg_sequence__type, project__id)")
    report = migrate(engine, Tables(small_schema))
    assert report.actions == ["drop index ix__history_shot_ix_shot_sg_sequence (sg_sequence__id, sg_sequence__type, "
                              "project__id)", "create index ix__history_shot_ix_shot_sg_sequence"]
    assert index_columns(engine, "_history_shot") == history
    assert migrate(engine, Tables(small_schema)).actions == []


def test_second_run_changes_nothing(engine, small_schema):
    migrate(engine, Tables(small_schema))
    report = migrate(engine, Tables(small_schema))
    assert report.actions == []
    assert report.changed is False


def test_a_new_type_marks_every_cached_field_for_backfill(engine, tables):
    m = marks(engine, tables)
    assert set(m["Shot"]) == {f for f, h in tables["Shot"].fields.items() if h.cached}
    assert m["Shot"]["code"] == "new entity type"
    assert "step_0" not in m["Shot"]  # uncached: nothing to fill


def test_clearing_backfill_marks_survives_a_later_migration(engine, small_schema, tables):
    with engine.begin() as conn:
        state.clear_backfill(conn, tables.state, "Shot")
    migrate(engine, Tables(small_schema))
    assert "Shot" not in marks(engine, tables)
    assert "Asset" in marks(engine, tables)


def test_adding_a_field_adds_its_columns_and_marks_only_it(engine, small_schema, tables):
    with engine.begin() as conn:
        state.clear_backfill(conn, tables.state, "Shot")
    new = evolve(small_schema, lambda s: s["Shot"].fields.update(
        sg_scene=Field("sg_scene", "entity", entity_types=["Scene"]),
        sg_frames=Field("sg_frames", "number")))
    report = migrate(engine, Tables(new))
    assert {"sg_scene__type", "sg_scene__id", "sg_frames"} <= columns(engine, "shot")
    assert "ix_shot_sg_scene" in index_names(engine, "shot")
    assert marks(engine, tables)["Shot"] == {"sg_scene": "new field", "sg_frames": "new field"}
    # The report lists every field still awaiting a full import; for Shot that is now just these two.
    assert {b for b in report.backfill if b[0] == "Shot"} == {("Shot", "sg_scene", "new field"),
                                                               ("Shot", "sg_frames", "new field")}


def test_adding_a_multi_entity_field_creates_its_association_table(engine, small_schema, tables):
    new = evolve(small_schema, lambda s: s["Shot"].fields.update(
        shots=Field("shots", "multi_entity", entity_types=["Shot"])))
    migrate(engine, Tables(new))
    assert "shot_shots" in table_names(engine)
    assert "ix_shot_shots_child" in index_names(engine, "shot_shots")


def test_changing_a_data_type_recreates_the_storage_and_keeps_other_data(engine, small_schema, tables):
    Writer(engine, tables).upsert("Shot", [{"type": "Shot", "id": 1, "code": "A", "sg_footage": "12-04"}])
    with engine.begin() as conn:
        state.clear_backfill(conn, tables.state, "Shot")
    new = evolve(small_schema, lambda s: setattr(s["Shot"].fields["sg_footage"], "data_type", "number"))
    new_tables = Tables(new)
    report = migrate(engine, new_tables)
    assert "drop column shot.sg_footage" in report.actions
    assert "add column shot.sg_footage" in report.actions
    with engine.connect() as conn:
        (row,) = read_entities(conn, new_tables, "Shot", fields=["code", "sg_footage"])
    assert row == {"type": "Shot", "id": 1, "code": "A", "sg_footage": None}
    assert marks(engine, new_tables)["Shot"] == {"sg_footage": "data type changed from footage to number"}
    # The new column takes the new type.
    Writer(engine, new_tables).upsert("Shot", [{"type": "Shot", "id": 1, "sg_footage": 42}])


def test_changing_an_entity_field_to_multi_entity_swaps_columns_for_a_table(engine, small_schema, tables):
    new = evolve(small_schema, lambda s: setattr(s["Shot"].fields["sg_sequence"], "data_type", "multi_entity"))
    migrate(engine, Tables(new))
    assert not {"sg_sequence__type", "sg_sequence__id"} & columns(engine, "shot")
    assert "ix_shot_sg_sequence" not in index_names(engine, "shot")
    assert "shot_sg_sequence" in table_names(engine)
    # and back again
    migrate(engine, Tables(small_schema))
    assert {"sg_sequence__type", "sg_sequence__id"} <= columns(engine, "shot")
    assert "shot_sg_sequence" not in table_names(engine)
    assert "ix_shot_sg_sequence" in index_names(engine, "shot")


def test_a_field_that_leaves_the_schema_is_dropped_and_forgotten(engine, small_schema, tables):
    new = evolve(small_schema, lambda s: [s["Shot"].fields.pop(f) for f in ("sg_sequence", "assets", "code")])
    report = migrate(engine, Tables(new))
    assert not {"sg_sequence__type", "sg_sequence__id", "code"} & columns(engine, "shot")
    assert "shot_assets" not in table_names(engine)
    assert "forget field Shot.code" in report.actions
    with engine.connect() as conn:
        known = state.read_field_states(conn, tables.state)
    assert ("Shot", "code") not in known and ("Shot", "description") in known
    assert migrate(engine, Tables(new)).actions == []


def test_a_field_that_becomes_uncached_loses_its_storage(engine, small_schema, tables):
    new = evolve(small_schema, lambda s: setattr(s["Shot"].fields["description"], "data_type", "pivot_column"))
    migrate(engine, Tables(new))
    assert "description" not in columns(engine, "shot")
    with engine.connect() as conn:
        assert state.read_field_states(conn, tables.state)[("Shot", "description")].storage == "uncached"


def test_a_type_that_leaves_the_schema_is_dropped_with_its_association_tables(engine, small_schema, tables):
    new = evolve(small_schema, lambda s: s.types.pop("Shot"))
    report = migrate(engine, Tables(new))
    assert not {"shot", "shot_assets"} & table_names(engine)
    assert "forget entity type Shot" in report.actions
    with engine.connect() as conn:
        assert not [k for k in state.read_field_states(conn, tables.state) if k[0] == "Shot"]


def test_tables_sgcache_did_not_make_are_never_touched(engine, small_schema):
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE element (id INTEGER PRIMARY KEY, note TEXT)"))
        conn.execute(sa.text("INSERT INTO element VALUES (1, 'keep me')"))
    migrate(engine, Tables(small_schema))
    migrate(engine, Tables(evolve(small_schema, lambda s: s.types.pop("Shot"))))
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT note FROM element")).scalar() == "keep me"


def test_missing_columns_are_recreated_and_marked(engine, small_schema, tables):
    with engine.begin() as conn:
        q = conn.dialect.identifier_preparer.quote
        conn.execute(sa.text(f"ALTER TABLE shot DROP COLUMN {q('description')}"))
        state.clear_backfill(conn, tables.state, "Shot")
    migrate(engine, Tables(small_schema))
    assert "description" in columns(engine, "shot")
    assert marks(engine, tables)["Shot"] == {"description": "storage was missing"}


def test_dry_run_reports_without_changing_anything(engine, small_schema):
    report = migrate(engine, Tables(small_schema), dry_run=True)
    assert "create table shot" in report.actions
    assert table_names(engine) == set()
    migrate(engine, Tables(small_schema))
    new = evolve(small_schema, lambda s: s["Shot"].fields.pop("code"))
    report = migrate(engine, Tables(new), dry_run=True)
    assert report.actions == ["drop column shot.code", "forget field Shot.code", "drop column _history_shot.code"]
    assert "code" in columns(engine, "shot")


def test_a_valid_types_change_needs_no_migration(engine, small_schema, tables):
    new = evolve(small_schema, lambda s: s["Shot"].fields["sg_sequence"].entity_types.append("Scene"))
    assert migrate(engine, Tables(new)).actions == []


def test_long_names_are_shortened_to_fit_postgresql(engine):
    long_type = "CustomNonProjectEntity01"
    field = "downstream_published_file_dependencies_of_the_very_long_kind"
    schema = loads("")
    schema.types[long_type] = EntityType(long_type, {"id": Field("id", "number"),
                                                     field: Field(field, "multi_entity", entity_types=["Shot"])})
    tables = Tables(schema)
    migrate(engine, tables)
    assoc = tables[long_type].associations[field]
    assert len(assoc.name) <= 63
    assert assoc.name in table_names(engine)
    assert migrate(engine, Tables(schema)).actions == []


def test_migrating_the_shipped_demo_schema_is_idempotent(engine):
    from pathlib import Path

    from sgcache.schema import load
    demo = load(Path(__file__).resolve().parent.parent / "schema" / "demo.yml")
    first = migrate(engine, Tables(demo))
    assert len([a for a in first.actions if a.startswith("create table")]) > len(demo)
    assert migrate(engine, Tables(demo)).actions == []


def test_a_table_of_the_same_name_that_sgcache_did_not_make_is_refused(engine, small_schema):
    from sgcache.errors import SchemaError

    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE asset (id INTEGER PRIMARY KEY, note TEXT)"))
    try:
        migrate(engine, Tables(small_schema))
    except SchemaError as e:
        assert "table asset already exists in the database but was not made by sgcache" in str(e)
    else:
        raise AssertionError("migrate built on a foreign table")
    assert columns(engine, "asset") == {"id", "note"}


def test_an_association_table_name_taken_by_a_foreign_table_is_refused(engine, small_schema, tables):
    from sgcache.errors import SchemaError

    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE shot_shots (x INTEGER)"))
    new = evolve(small_schema, lambda s: s["Shot"].fields.update(
        shots=Field("shots", "multi_entity", entity_types=["Shot"])))
    try:
        migrate(engine, Tables(new))
    except SchemaError as e:
        assert "table shot_shots already exists" in str(e)
    else:
        raise AssertionError("migrate replaced a foreign table")
    assert columns(engine, "shot_shots") == {"x"}


def test_dry_run_of_a_data_type_change_lists_the_same_changes_as_the_real_run(engine, small_schema, tables):
    new = evolve(small_schema, lambda s: setattr(s["Shot"].fields["sg_sequence"], "data_type", "text"))
    planned = migrate(engine, Tables(new), dry_run=True).actions
    done = migrate(engine, Tables(new)).actions
    assert planned == done
    assert "add column shot.sg_sequence" in done and "drop column shot.sg_sequence__id" in done


def test_very_long_field_names_get_columns_that_fit(engine, small_schema):
    long_name = "sg_" + "really_long_field_name_" * 3 + "for_the_link"
    new = evolve(small_schema, lambda s: s["Shot"].fields.update(
        {long_name: Field(long_name, "entity", entity_types=["Asset"]),
         long_name + "_x": Field(long_name + "_x", "text")}))
    tables = Tables(new)
    migrate(engine, tables)
    handler = tables["Shot"].fields[long_name]
    assert len(handler.type_column) <= 63 and len(handler.id_column) <= 63
    assert handler.type_column != handler.id_column
    assert {handler.type_column, handler.id_column} <= columns(engine, "shot")
    Writer(engine, tables).upsert("Shot", [{"type": "Shot", "id": 1, long_name: {"type": "Asset", "id": 4},
                                            long_name + "_x": "ok"}])
    with engine.connect() as conn:
        (row,) = read_entities(conn, tables, "Shot", fields=[long_name, long_name + "_x"])
    assert row[long_name] == {"type": "Asset", "id": 4} and row[long_name + "_x"] == "ok"
    # and removing them again finds the shortened columns
    migrate(engine, Tables(small_schema))
    assert not {handler.type_column, handler.id_column} & columns(engine, "shot")


def test_a_bookkeeping_table_of_an_older_sgcache_gets_its_new_columns_and_keeps_its_rows(engine, small_schema):
    tables = Tables(small_schema)
    migrate(engine, tables)
    failed = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    with engine.begin() as conn:
        # The dead-letter table as sgcache made it before later tries existed.
        conn.execute(sa.text("DROP TABLE _sgcache_dead_letters"))
        conn.execute(sa.text("CREATE TABLE _sgcache_dead_letters (event_id BIGINT PRIMARY KEY, event_type TEXT, "
                             "entity_type TEXT, entity_id BIGINT, error TEXT NOT NULL, attempts INTEGER NOT NULL, "
                             "failed_at TIMESTAMP NOT NULL, event TEXT NOT NULL)"))
        conn.execute(sa.text("INSERT INTO _sgcache_dead_letters VALUES (7, 'Shotgun_Shot_Change', 'Shot', 3, "
                             "'RuntimeError: no', 5, :failed, '{}')"), {"failed": failed.replace(tzinfo=None)})
    report = migrate(engine, tables, dry_run=True)
    assert "add column _sgcache_dead_letters.next_retry_at" in report.actions
    assert "next_retry_at" not in columns(engine, "_sgcache_dead_letters")
    report = migrate(engine, tables)
    assert {"add column _sgcache_dead_letters.retries", "add column _sgcache_dead_letters.next_retry_at",
            "add column _sgcache_dead_letters.resolved_at", "add column _sgcache_dead_letters.resolution"} \
        <= set(report.actions)
    dl = tables.state.dead_letters
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(sa.select(dl)).mappings()]
    assert [(r["event_id"], r["error"], r["retries"], r["next_retry_at"], r["resolved_at"]) for r in rows] == \
        [(7, "RuntimeError: no", 0, None, None)]
    assert migrate(engine, tables).actions == []
