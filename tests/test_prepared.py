"""Repeated reads sent as PostgreSQL prepared statements (sgcache.store.prepared).

First on an engine of its own (what each connection prepares, keeps, drops and recovers), then
through a proxy with the real client: a read asked again runs prepared and answers as before,
and when the connections turn out not to hold what was recorded (a pooler in transaction mode,
a column whose type changed), the read is still answered from the cache.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from test_read_cache import answered_from_cache, import_all, world  # noqa: F401  (world: a fixture)

from sgcache.store.db import create_engine
from sgcache.store.prepared import OPTION, Prepared

pytestmark = pytest.mark.postgresql

HELD = "SELECT name, statement FROM pg_prepared_statements ORDER BY prepare_time"


@pytest.fixture
def engine(pg_url):
    eng = create_engine(pg_url)
    with eng.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE shot (id integer PRIMARY KEY, code text)")
        conn.execute(sa.text("INSERT INTO shot VALUES (:id, :code)"),
                     [{"id": 1, "code": "SH001"}, {"id": 2, "code": "SH002"}, {"id": 3, "code": "SH%03"}])
    yield eng
    eng.dispose()


def code_of(shot_id: int, *, prepare: bool = True) -> sa.TextClause:
    stmt = sa.text("SELECT code FROM shot WHERE id = :id").bindparams(id=shot_id)
    return stmt.execution_options(**{OPTION: True}) if prepare else stmt


def held(conn: sa.Connection) -> list[str]:
    """The statements this connection's server session holds prepared, oldest first."""
    return [row.statement for row in conn.exec_driver_sql(HELD)]


def test_a_marked_statement_is_prepared_once_per_connection_with_its_values(engine):
    Prepared(engine, 8)
    with engine.connect() as conn:
        assert conn.execute(code_of(1)).scalar_one() == "SH001"
        assert conn.execute(code_of(1)).scalar_one() == "SH001"
        statements = held(conn)
    assert len(statements) == 1
    assert "WHERE id = 1" in statements[0]  # the value is in the text: no generic plan for other values


def test_unmarked_statements_are_sent_as_they_are(engine):
    Prepared(engine, 8)
    with engine.connect() as conn:
        assert conn.execute(code_of(2, prepare=False)).scalar_one() == "SH002"
        assert held(conn) == []


def test_a_value_holding_a_percent_sign_is_sent_intact(engine):
    Prepared(engine, 8)
    with engine.connect() as conn:
        stmt = sa.text("SELECT id FROM shot WHERE code = :code").bindparams(code="SH%03")
        for _ in range(2):
            assert conn.execute(stmt.execution_options(**{OPTION: True})).scalar_one() == 3


def test_a_connection_keeps_at_most_the_limit_least_recently_used_dropped_first(engine):
    Prepared(engine, 2)
    with engine.connect() as conn:
        for shot_id in (1, 2, 1, 3):  # 1 is used again after 2: 2 is the one dropped for 3
            conn.execute(code_of(shot_id)).all()
        statements = held(conn)
    assert len(statements) == 2
    assert any("id = 1" in s for s in statements) and any("id = 3" in s for s in statements)


def test_a_statement_that_failed_is_prepared_again_from_nothing(engine):
    Prepared(engine, 8)
    failing = sa.text("SELECT 1 / (id - 1) FROM shot WHERE id = :id").bindparams(id=1)
    failing = failing.execution_options(**{OPTION: True})
    with engine.connect() as conn:
        for _ in range(2):
            # The server kept the statement it prepared before the division failed: prepared
            # again as if new, the second attempt would fail as a duplicate instead.
            with pytest.raises(sa.exc.DataError, match="division by zero"):
                conn.execute(failing)
            conn.rollback()
        assert conn.execute(code_of(2)).scalar_one() == "SH002"
        assert len(held(conn)) == 1


def test_the_same_text_on_another_database_url_gets_another_name(engine, pg_url):
    other = create_engine(pg_url + "&application_name=other" if "?" in pg_url else pg_url + "?application_name=other")
    try:
        names = []
        for eng in (engine, other):
            Prepared(eng, 8)
            with eng.connect() as conn:
                conn.execute(code_of(1)).all()
                names.append(conn.exec_driver_sql(HELD).all()[0].name)
        assert names[0] != names[1]
    finally:
        other.dispose()


def test_a_lost_statement_switches_preparing_off_and_says_so(engine, caplog):
    prepared = Prepared(engine, 8)
    with engine.connect() as conn:
        conn.execute(code_of(1)).all()
        conn.exec_driver_sql("DEALLOCATE ALL")  # as if another server session answered
        with pytest.raises(sa.exc.DBAPIError) as raised:
            conn.execute(code_of(1))
        conn.rollback()
        with caplog.at_level(logging.WARNING, logger="sgcache"):
            assert prepared.retry(raised.value)
        assert not prepared.on
        assert "event=prepared_statements_off" in caplog.text and "database.prepared_statements: 0" in caplog.text
        assert conn.execute(code_of(2)).scalar_one() == "SH002"
        assert held(conn) == []


# --- through the proxy ----------------------------------------------------------------------------


@pytest.fixture
def cached_pg_proxy(make_proxy, world):  # noqa: F811
    proxy = make_proxy()
    import_all(proxy)
    return proxy


@contextmanager
def idle_connections(proxy) -> Iterator[list[sa.Connection]]:
    """Every idle connection of the proxy's read pool, checked out for the block."""
    engine = proxy.service.cache.read_engine
    conns = [engine.connect() for _ in range(engine.pool.checkedin())]
    try:
        yield conns
    finally:
        for conn in conns:
            conn.close()


def pooled_statements(proxy) -> list[str]:
    """What every idle connection of the proxy's pool holds prepared."""
    with idle_connections(proxy) as conns:
        return [s for conn in conns for s in held(conn)]


def on_every_pooled_connection(proxy, sql: str) -> None:
    with idle_connections(proxy) as conns:
        for conn in conns:
            conn.exec_driver_sql(sql)
            conn.commit()


READ = ("Shot", [["sg_sequence.Sequence.code", "is", "SQ01"]], ["code", "project"])


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_read_asked_again_runs_prepared_and_answers_the_same(cached_pg_proxy, sg):
    client = cached_pg_proxy.client()
    expected = sg.find(*READ)
    assert answered_from_cache(cached_pg_proxy, lambda: client.find(*READ)) == (expected, True)
    assert pooled_statements(cached_pg_proxy) == []  # asked once: sent as plain SQL
    for _ in range(3):
        assert answered_from_cache(cached_pg_proxy, lambda: client.find(*READ)) == (expected, True)
    statements = pooled_statements(cached_pg_proxy)
    # The page (Shots through their Sequence) and the names of the Projects they link to.
    assert any("JOIN sequence" in s and "'SQ01'" in s for s in statements)
    assert any(s.split(" AS ", 1)[1].startswith("SELECT project.id") for s in statements)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_prepared_statements_zero_prepares_nothing(make_proxy, world, sg):  # noqa: F811
    proxy = make_proxy(database__prepared_statements="0")
    import_all(proxy)
    client = proxy.client()
    for _ in range(3):
        assert answered_from_cache(proxy, lambda: client.find(*READ))[1]
    assert proxy.service.cache.prepared is None
    assert pooled_statements(proxy) == []


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_pool_that_lost_its_statements_still_answers_and_stops_preparing(cached_pg_proxy, sg, caplog):
    client = cached_pg_proxy.client()
    expected = sg.find(*READ)
    for _ in range(3):
        client.find(*READ)
    assert pooled_statements(cached_pg_proxy)
    # What a pooler in transaction mode does: the next statement lands on a session without them.
    on_every_pooled_connection(cached_pg_proxy, "DEALLOCATE ALL")
    with caplog.at_level(logging.WARNING, logger="sgcache"):
        assert answered_from_cache(cached_pg_proxy, lambda: client.find(*READ)) == (expected, True)
    assert "event=prepared_statements_off" in caplog.text
    assert not cached_pg_proxy.service.cache.prepared.on
    assert answered_from_cache(cached_pg_proxy, lambda: client.find(*READ)) == (expected, True)
    assert pooled_statements(cached_pg_proxy) == []


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_column_retyped_under_a_prepared_read_is_planned_again(cached_pg_proxy, sg):
    client = cached_pg_proxy.client()
    expected = sg.find(*READ)
    for _ in range(3):
        client.find(*READ)
    with cached_pg_proxy.service.cache.engine.begin() as conn:
        # A prepared plan may not change its result's types: PostgreSQL refuses to run it.
        conn.exec_driver_sql("ALTER TABLE shot ALTER COLUMN code TYPE varchar(200)")
    assert answered_from_cache(cached_pg_proxy, lambda: client.find(*READ)) == (expected, True)
    assert cached_pg_proxy.service.cache.prepared.on
    assert answered_from_cache(cached_pg_proxy, lambda: client.find(*READ)) == (expected, True)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_prepared_read_sees_the_rows_as_they_are_now(cached_pg_proxy, sg, world):  # noqa: F811
    client = cached_pg_proxy.client()
    for _ in range(3):
        client.find(*READ)
    assert pooled_statements(cached_pg_proxy)
    shot = world["shots"][0]
    client.update("Shot", shot["id"], {"code": "renamed", "project": world["projects"][1]})
    result, cached = answered_from_cache(cached_pg_proxy, lambda: client.find(*READ))
    assert cached
    assert result == sg.find(*READ)
    assert {"type": "Shot", "id": shot["id"], "code": "renamed", "project": {
        **world["projects"][1], "name": "Beta"}} in result
