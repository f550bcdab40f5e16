"""The test suite's own PostgreSQL copies (conftest.MigratedCopies): a copy a test is done with is
reset and handed to the next test only when it holds exactly what its template held."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from conftest import MigratedCopies
from sqlalchemy.engine import make_url

from sgcache.store.tables import Tables

pytestmark = pytest.mark.postgresql


@pytest.fixture
def copies(pg_database, tmp_path):
    if pg_database is None:
        pytest.skip("PostgreSQL is not reachable (see the warning at the end of the run)")
    made = MigratedCopies(tmp_path, pg_database)
    yield made
    made.close()


@pytest.fixture
def small_tables(small_schema) -> Tables:
    return Tables(small_schema)


def engine_of(url: str) -> sa.Engine:
    return sa.create_engine(url, poolclass=sa.pool.NullPool)


def databases(copies: MigratedCopies) -> set[str]:
    with copies._admin.connect() as conn:
        return set(conn.execute(sa.text("SELECT datname FROM pg_database")).scalars())


def take(copies: MigratedCopies, tables: Tables) -> tuple[str, str]:
    made = copies.postgresql(tables)
    if made is None:
        pytest.skip("the server does not let this run make databases")
    return made


def test_a_copy_is_handed_out_again_holding_only_its_templates_rows(copies, small_tables):
    url, name = take(copies, small_tables)
    engine = engine_of(url)
    with engine.begin() as conn:
        fields = conn.execute(sa.text("SELECT COUNT(*) FROM _sgcache_fields")).scalar()
        assert fields > 0  # a migration fills it: the reset must keep those rows
        conn.execute(sa.text("INSERT INTO shot (id, code, _cache_created_at, _cache_updated_at) "
                             "VALUES (1, 'SH001', now(), now()), (2, 'SH002', now(), now())"))
        conn.execute(sa.text("DELETE FROM _sgcache_fields WHERE entity_type = 'Shot'"))
        conn.execute(sa.text("INSERT INTO _history_shot (id, code, _valid_to) VALUES (1, 'old', now())"))
        # The bulk writer's temporary tables leave their schema (pg_temp_N) in the catalog: no change.
        conn.execute(sa.text("CREATE TEMPORARY TABLE scratch (n INTEGER)"))
    engine.dispose()
    copies.release(name, small_tables)

    url2, name2 = take(copies, small_tables)
    assert copies.reused == 1
    assert name2 != name and name not in databases(copies)  # the old name reaches nothing
    engine = engine_of(url2)
    with engine.begin() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM shot")).scalar() == 0
        assert conn.execute(sa.text("SELECT COUNT(*) FROM _sgcache_fields")).scalar() == fields
        # The history's version numbers start again as in a new copy.
        version = conn.execute(sa.text(
            "INSERT INTO _history_shot (id, code, _valid_to) VALUES (1, 'x', now()) RETURNING _version")).scalar()
        assert version == 1
    engine.dispose()
    copies.release(name2, small_tables)


def test_a_copy_whose_tables_changed_is_dropped_not_handed_out_again(copies, small_tables):
    url, name = take(copies, small_tables)
    engine = engine_of(url)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE shot ADD COLUMN sg_extra TEXT"))
    engine.dispose()
    copies.release(name, small_tables)
    assert all(not template.parked for template in copies._templates.values())

    url, name = take(copies, small_tables)
    assert copies.reused == 0
    engine = engine_of(url)
    with engine.connect() as conn:
        assert "sg_extra" not in [c["name"] for c in sa.inspect(conn).get_columns("shot")]
    engine.dispose()
    copies.release(name, small_tables)


def test_a_connection_left_open_by_a_test_is_closed_and_cannot_write_to_the_next_copy(copies, small_tables,
                                                                                     pg_database):
    url, name = take(copies, small_tables)
    left = sa.create_engine(url)  # pooled: its connection stays open after the block
    with left.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    copies.release(name, small_tables)
    url2, _ = take(copies, small_tables)
    assert copies.reused == 1
    with pytest.raises(sa.exc.OperationalError):
        with left.connect() as conn:  # its connection was ended; a new one finds no such database
            conn.execute(sa.text("SELECT 1"))
    left.dispose()
    assert make_url(url2).database != name
    copies.close()  # also drops a copy never given back
    assert not {name, make_url(url2).database} & databases_left(pg_database)


def databases_left(server: sa.URL) -> set[str]:
    engine = sa.create_engine(server, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        names = set(conn.execute(sa.text("SELECT datname FROM pg_database")).scalars())
    engine.dispose()
    return names


def test_a_killed_run_s_databases_on_this_machine_are_dropped_and_no_others(pg_database):
    import subprocess
    import uuid

    from conftest import HOST_TAG, _server_url, run_tag, sweep_leftovers

    if pg_database is None:
        pytest.skip("PostgreSQL is not reachable (see the warning at the end of the run)")
    gone = subprocess.Popen(["true"])
    gone.wait()  # a test process that has ended (killed runs end the same way, without their finally)
    other_host = format((int(HOST_TAG, 16) + 1) % 0x10000, "04x")
    mark = uuid.uuid4().hex[:6]
    dead = f"{HOST_TAG}x{gone.pid}"
    names = {"killed": f"sgcache_t_{dead}_{mark}", "template": f"sgcache_tpl_{dead}_{mark}",
             "running": f"sgcache_p_{run_tag()}_{mark}", "other machine": f"sgcache_t_{other_host}x{gone.pid}_{mark}",
             "not a test's": f"sgcache_{dead}_{mark}"}
    admin = sa.create_engine(_server_url(), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            for name in names.values():
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        held = engine_of(str(_server_url().set(database=names["killed"])))
        with held.connect():  # a server the killed run started, still connected
            dropped = sweep_leftovers(admin)
        held.dispose()
        assert sorted(dropped) == sorted([names["killed"], names["template"]])
        with admin.connect() as conn:
            left = set(conn.execute(sa.text("SELECT datname FROM pg_database")).scalars())
        assert {k for k, n in names.items() if n in left} == {"running", "other machine", "not a test's"}
    finally:
        with admin.connect() as conn:
            for name in names.values():
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
