"""Test fixtures: databases on both backends, schemas, writers.

PostgreSQL: each test run creates its own database (dropped at the end) on the server named by
SGCACHE_TEST_DATABASE_URL, else the local server; each test gets a fresh PostgreSQL schema in it.
Without a server, PostgreSQL tests skip with a warning, except under CI=true, where the run fails.

Migrated copies: a test whose cache will hold one of the usual schemas (the ``tables`` fixture's,
the proxy tests', test_sync's; see :func:`premigrated`) gets its ``db_url`` as a copy of a cache
migrated once per schema and test process: a file copy on SQLite, ``CREATE DATABASE ... TEMPLATE``
on PostgreSQL (its own database then, not a schema). A fresh migration of demo.yml is about a
second of DDL on PostgreSQL; a copy is a tenth of that. :func:`ensure_migrated` skips the migration
it would repeat. Tests of migrations themselves take an empty database as before.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
import re
import shutil
import socket
import types
import uuid
import weakref
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from sgcache.schema import loads
from sgcache.store.db import create_engine
from sgcache.store.migrate import migrate
from sgcache.store.tables import Tables
from sgcache.store.writer import Writer

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
#: why PostgreSQL tests cannot run (None when the server answered)
_pg_problem: str | None = None


def _server_url() -> sa.URL:
    url = make_url(os.environ.get("SGCACHE_TEST_DATABASE_URL") or DEFAULT_SERVER)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg2")
    return url


def _probe_server() -> str | None:
    """None if the test server answers, else why not."""
    server = _server_url()
    engine = sa.create_engine(server, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return None
    except sa.exc.DBAPIError as e:
        reason = str(e.orig).strip().splitlines()[0] if e.orig else str(e)
        return f"PostgreSQL unreachable at {server.render_as_string(hide_password=True)}: {reason}"
    finally:
        engine.dispose()


#: This machine, in the name of every database a test process makes, with the process's id: a
#: run killed outright leaves its databases behind, and a later run on this machine drops those
#: whose process is gone (see sweep_leftovers). Another machine's, on a shared server, it leaves.
HOST_TAG = hashlib.blake2b(socket.gethostname().encode(), digest_size=2).hexdigest()
_LEFTOVER = re.compile(r"^sgcache_(?:test|tpl|t|p)_([0-9a-f]{4})x(\d+)_")
#: what this run's start dropped
_swept: list[str] = []


def run_tag() -> str:
    """This process, in the names of the databases it makes."""
    return f"{HOST_TAG}x{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def sweep_leftovers(admin: sa.Engine) -> list[str]:
    """Drop the test databases of this machine whose test process is gone; return their names."""
    dropped = []
    with admin.connect() as conn:
        names = conn.execute(sa.text("SELECT datname FROM pg_database WHERE datname LIKE 'sgcache%'")).scalars()
        for name in list(names):
            found = _LEFTOVER.match(name)
            if found is None or found.group(1) != HOST_TAG or _alive(int(found.group(2))):
                continue
            # WITH (FORCE): a server the killed run started may still hold connections to it.
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            dropped.append(name)
    return dropped


def pytest_sessionstart(session):
    global _pg_problem
    _pg_problem = _probe_server()
    if _pg_problem and os.environ.get("CI", "").lower() == "true":
        pytest.exit(f"{_pg_problem} (CI=true: PostgreSQL is required)", returncode=1)
    if _pg_problem is None and not hasattr(session.config, "workerinput"):  # once a run, not per process
        admin = sa.create_engine(_server_url(), isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
        try:
            _swept.extend(sweep_leftovers(admin))
        except sa.exc.DBAPIError:
            pass  # no right to list or drop databases: nothing this run can clean
        finally:
            admin.dispose()


#: The test files that take longest, longest first: their summed test time in a full four-process
#: run on 2 cores (2026-12-06), from 303 s down to 40 s. ``make test`` runs pytest-xdist with
#: ``--dist loadfile --no-loadscope-reorder``, which hands files to the processes in collection
#: order; these go first, so that no long file starts near the end and runs on alone (xdist's
#: own order, by number of tests, started the 147 s crash test at 471 s, and the run ended 55 s
#: after the other processes were done). Files not named here follow, as collected.
SLOWEST_FIRST = [
    "test_sync.py", "test_sync_crash.py", "test_schema_follow.py", "test_read_cache.py", "test_proxy.py",
    "test_auth_policy.py", "test_history.py", "test_parallel_import.py", "test_watcher.py", "test_slim.py",
    "test_proxy_isolation.py", "test_read_differential.py", "test_demo.py", "test_validate.py", "test_chaos.py",
    "test_triggers.py", "test_project_subset.py", "test_cli.py", "test_thumbnails.py", "test_backfill.py",
]


def pytest_collection_modifyitems(session, config, items):
    rank = {name: n for n, name in enumerate(SLOWEST_FIRST)}
    position = {id(item): n for n, item in enumerate(items)}
    items.sort(key=lambda item: (rank.get(item.path.name, len(rank)), position[id(item)]))


def pytest_report_header(config):
    if _pg_problem:
        return [f"WARNING: {_pg_problem}; PostgreSQL tests will be SKIPPED"]
    lines = [f"PostgreSQL: {_server_url().render_as_string(hide_password=True)}"]
    if _swept:
        lines.append(f"dropped {len(_swept)} test database(s) left by killed runs on this machine")
    return lines


@pytest.fixture(scope="session")
def pg_database():
    """URL of a database made for this test run, or None when no server is reachable."""
    if _pg_problem:
        yield None
        return
    server = _server_url()
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    name = f"sgcache_test_{run_tag()}_{uuid.uuid4().hex[:6]}"
    created = False
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        created = True
        url = server.set(database=name)
    except sa.exc.ProgrammingError:
        url = server  # no CREATEDB right: per-test schemas in the given database still isolate tests
    yield url
    if created:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@contextmanager
def pg_schema(pg_database, prefix: str = "t") -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a schema of its own, dropped afterwards."""
    if pg_database is None:
        pytest.skip("PostgreSQL is not reachable (see the warning at the end of the run)")
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(pg_database)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield pg_database.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def pg_url(pg_database):
    """A PostgreSQL URL whose search_path is a schema made for this test alone."""
    with pg_schema(pg_database) as url:
        yield url


# --- migrated copies ------------------------------------------------------------------------


def _fingerprint(tables: Tables) -> str:
    """What a migration of ``tables`` makes: every table's columns and indexes, every field's record."""
    known = _FINGERPRINTS.get(tables)
    if known is None:
        known = _FINGERPRINTS[tables] = _fingerprint_of(tables)
    return known


_FINGERPRINTS: weakref.WeakKeyDictionary[Tables, str] = weakref.WeakKeyDictionary()


def _fingerprint_of(tables: Tables) -> str:
    parts: list = []
    for t in sorted(tables.metadata.tables.values(), key=lambda t: t.name):
        parts.append((t.name, [(c.name, repr(c.type), c.nullable, c.primary_key, repr(c.server_default))
                               for c in t.columns],
                      sorted((i.name, [str(e) for e in i.expressions], i.unique) for i in t.indexes)))
    for et in tables:
        parts.append((et.name, sorted((n, h.field.data_type, h.storage, h.cached) for n, h in et.fields.items())))
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:12]


#: URL of each migrated copy handed to a test -> the fingerprint of the tables it holds
_COPIES: dict[str, str] = {}


def _normal(url: str | sa.URL) -> str:
    return make_url(url).render_as_string(hide_password=False)


def ensure_migrated(engine: sa.Engine, tables: Tables) -> None:
    """``migrate(engine, tables)``, unless the database is a copy of that migration already."""
    if _COPIES.get(_normal(engine.url)) != _fingerprint(tables):
        migrate(engine, tables)


#: What a test can leave in a PostgreSQL database besides rows: schemas, relations (with their
#: grants), columns, indexes, constraints, triggers and functions. A copy is reused only when this
#: reads as it did on its template. (The schemas of temporary tables, ``pg_temp_N``, stay in the
#: catalog once a session has used one, empty when it ends: they are left out. ``%%``: psycopg2
#: reads a lone ``%`` as a parameter.)
_CATALOG_SQL = """
WITH kept AS (
  SELECT oid, nspname FROM pg_namespace
  WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
    AND nspname NOT LIKE 'pg\\_temp\\_%%' AND nspname NOT LIKE 'pg\\_toast\\_temp\\_%%'
)
SELECT md5(string_agg(item, ';' ORDER BY item)) FROM (
  SELECT 'n:' || nspname AS item FROM kept
  UNION ALL
  SELECT 'r:' || n.nspname || '.' || c.relname || ':' || c.relkind::text || c.relpersistence::text || ':'
         || coalesce(c.relacl::text, '')
  FROM pg_class c JOIN kept n ON n.oid = c.relnamespace
  UNION ALL
  SELECT 'a:' || c.oid::regclass::text || '.' || a.attname || ':' || format_type(a.atttypid, a.atttypmod) || ':'
         || a.attnotnull::text || ':' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN kept n ON n.oid = c.relnamespace
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  WHERE a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
  SELECT 'i:' || indexdef FROM pg_indexes WHERE schemaname IN (SELECT nspname FROM kept)
  UNION ALL
  SELECT 'c:' || pg_get_constraintdef(c.oid) || ':' || c.conname || ':' || c.conrelid::regclass::text
  FROM pg_constraint c JOIN kept n ON n.oid = c.connamespace
  UNION ALL
  SELECT 't:' || tgname || ':' || tgrelid::regclass::text FROM pg_trigger WHERE NOT tgisinternal
  UNION ALL
  SELECT 'p:' || p.oid::regprocedure::text FROM pg_proc p JOIN kept n ON n.oid = p.pronamespace
  UNION ALL
  SELECT 'd:' || array_to_string(setconfig, ',') FROM pg_db_role_setting
  WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
) catalog
"""


class _Template:
    """A migrated PostgreSQL database copied for tests, with what its copies are checked against
    before one is reused: its catalog and the rows of the few tables a migration fills."""

    def __init__(self, name: str, catalog: str, seeded: dict[str, tuple[str, bytes]]):
        self.name = name
        self.catalog = catalog
        self.seeded = seeded  # table -> (md5 of its rows, its rows as COPY text)
        self.parked: list[str] = []  # reset copies waiting for the next test


def _table_digest(conn, table: str) -> str:
    return conn.exec_driver_sql(
        f"SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM \"{table}\" t").scalar()


class MigratedCopies:
    """Caches migrated once per schema (per test process), copied for each test that needs one.

    On PostgreSQL a copy is a database made with ``CREATE DATABASE ... TEMPLATE``; when its test is
    done it is reset and kept for the next test of the same schema (``release``), since making and
    dropping a database of 800 relations costs the server close to a second of CPU (a forced
    checkpoint at each drop) against a tenth of that for the reset. A copy is reset only when its
    catalog reads as its template's (no table, column, index, trigger or function added, changed or
    removed, no grant, no database setting); otherwise it is dropped as before.
    """

    #: reset copies kept per schema, waiting for a test
    PARKED = 2

    def __init__(self, root: Path, pg_database: sa.URL | None):
        self.root = root
        self.pg_database = pg_database
        self._files: dict[str, Path] = {}  # fingerprint -> migrated SQLite file
        self._templates: dict[str, _Template] = {}  # fingerprint -> migrated PostgreSQL database
        self._admin: sa.Engine | None = None
        self._server: sa.URL | None = None
        self.reused = 0  # copies handed out again after a reset (for the tests of this class)
        self._out: set[str] = set()  # copies handed out and not given back

    def sqlite(self, tables: Tables, dest: Path) -> str:
        fp = _fingerprint(tables)
        template = self._files.get(fp)
        if template is None:
            template = self.root / f"migrated-{fp}.sqlite"
            engine = create_engine(f"sqlite:///{template}")
            migrate(engine, tables)
            engine.dispose()  # the last connection closed: the write-ahead log is folded into the file
            self._files[fp] = template
        shutil.copyfile(template, dest)
        url = _normal(f"sqlite:///{dest}")
        _COPIES[url] = fp
        return url

    def _engine(self, database: str) -> sa.Engine:
        return sa.create_engine(self._server.set(database=database), poolclass=sa.pool.NullPool)

    def _template(self, tables: Tables, fp: str) -> _Template:
        template = self._templates.get(fp)
        if template is None:
            name = f"sgcache_tpl_{run_tag()}_{fp}_{uuid.uuid4().hex[:6]}"
            with self._admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
            try:
                engine = create_engine(self._server.set(database=name))
                migrate(engine, tables)
                engine.dispose()  # a template must have no one connected while it is copied
                engine = self._engine(name)
                with engine.connect() as conn:
                    catalog = conn.exec_driver_sql(_CATALOG_SQL).scalar()
                    seeded = {}
                    for table in _nonempty_tables(conn):
                        rows = io.BytesIO()
                        conn.connection.dbapi_connection.cursor().copy_expert(f'COPY "{table}" TO STDOUT', rows)
                        seeded[table] = (_table_digest(conn, table), rows.getvalue())
                engine.dispose()
            except BaseException:
                self.drop(name)  # not left behind by a run that failed here
                raise
            template = self._templates[fp] = _Template(name, catalog, seeded)
        return template

    def postgresql(self, tables: Tables) -> tuple[str, str] | None:
        """(URL, database name) of a database holding only the migrated ``tables``, or None when the
        server does not let this run make databases. Give it back with :meth:`release`."""
        if self._admin is None:
            if self.pg_database is None or self.pg_database == _server_url():
                return None  # no CREATEDB right (see pg_database)
            self._server = _server_url()
            self._admin = sa.create_engine(self._server, isolation_level="AUTOCOMMIT")
        fp = _fingerprint(tables)
        template = self._template(tables, fp)
        # A new name each time: a process a test left behind cannot reach the next test's database.
        name = f"sgcache_t_{run_tag()}_{uuid.uuid4().hex[:10]}"
        with self._admin.connect() as conn:
            if template.parked:
                conn.execute(sa.text(f'ALTER DATABASE "{template.parked.pop()}" RENAME TO "{name}"'))
                self.reused += 1
            else:
                conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{template.name}"'))
        self._out.add(name)
        url = _normal(self._server.set(database=name))
        _COPIES[url] = fp
        return url, name

    def release(self, name: str, tables: Tables) -> None:
        """A test is done with the copy ``name``: reset it for the next test, or drop it."""
        self._out.discard(name)
        template = self._templates[_fingerprint(tables)]
        if len(template.parked) < self.PARKED:
            name, reset = self._park(name, template)
            if reset:
                return
        self.drop(name)

    def _park(self, name: str, template: _Template) -> tuple[str, bool]:
        """Rename the copy out of the test's reach and reset it: (its name now, whether it is
        parked for the next test). Not when it refuses connections, is still in use (the rename
        fails) or its reset fails in any way (psycopg2's own errors from COPY too)."""
        parked = f"sgcache_p_{run_tag()}_{uuid.uuid4().hex[:10]}"
        try:
            with self._admin.connect() as conn:
                if not conn.execute(sa.text("SELECT datallowconn FROM pg_database WHERE datname = :n"),
                                    {"n": name}).scalar():
                    return name, False
                conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                     "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})
                conn.execute(sa.text(f'ALTER DATABASE "{name}" RENAME TO "{parked}"'))
        except sa.exc.DBAPIError:
            return name, False
        reset = False
        with contextlib.suppress(Exception):
            reset = self._reset(parked, template)
        if reset:
            template.parked.append(parked)
        return parked, reset

    def _reset(self, name: str, template: _Template) -> bool:
        """Empty the copy ``name`` back to its template's rows; False when its catalog changed."""
        engine = self._engine(name)
        try:
            with engine.begin() as conn:
                if conn.exec_driver_sql(_CATALOG_SQL).scalar() != template.catalog:
                    return False
                stale = [t for t in _nonempty_tables(conn)
                         if t not in template.seeded or _table_digest(conn, t) != template.seeded[t][0]]
                if stale:
                    conn.exec_driver_sql("TRUNCATE " + ", ".join(f'"{t}"' for t in stale))
                for table in stale:
                    if table in template.seeded:
                        conn.connection.dbapi_connection.cursor().copy_expert(
                            f'COPY "{table}" FROM STDIN', io.BytesIO(template.seeded[table][1]))
                for schema, sequence in conn.exec_driver_sql(
                        "SELECT schemaname, sequencename FROM pg_sequences WHERE last_value IS NOT NULL").all():
                    conn.exec_driver_sql(f'ALTER SEQUENCE "{schema}"."{sequence}" RESTART')
            return True
        finally:
            engine.dispose()

    def drop(self, name: str) -> None:
        with self._admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def close(self) -> None:
        if self._admin is not None:
            for name in [*self._out, *(n for t in self._templates.values() for n in [*t.parked, t.name])]:
                self.drop(name)
            self._out.clear()
            self._templates.clear()
            self._admin.dispose()


def _nonempty_tables(conn) -> list[str]:
    """The tables of the public schema that hold a row."""
    tables = conn.exec_driver_sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").scalars().all()
    if not tables:
        return []
    return conn.exec_driver_sql(" UNION ALL ".join(
        f"SELECT '{t}' WHERE EXISTS (SELECT 1 FROM \"{t}\")" for t in tables)).scalars().all()


@pytest.fixture(scope="session")
def migrated_copies(tmp_path_factory, pg_database):
    copies = MigratedCopies(tmp_path_factory.mktemp("migrated"), pg_database)
    yield copies
    copies.close()


@pytest.fixture
def premigrated(request) -> Tables | None:
    """The tables the test's cache database (``db_url``) is to hold from the start, when one
    fixture of the test migrates a known schema: ``make_proxy`` (the proxy tests' schema),
    ``make_sync`` (test_sync's ``cache_tables``), ``tables`` (``small_schema``'s). None when
    none does or more than one might: the database starts empty, as a migration test wants."""
    names = set(request.fixturenames)
    wanted = []
    if "make_proxy" in names:
        wanted.append(lambda: request.getfixturevalue("proxy_tables"))
    if "make_sync" in names and "cache_tables" in names:
        wanted.append(lambda: request.getfixturevalue("cache_tables"))
    # a module of its own ``tables`` fixture migrates something else
    if "tables" in names and not hasattr(request.module, "tables"):
        wanted.append(lambda: Tables(request.getfixturevalue("small_schema")))
    return wanted[0]() if len(wanted) == 1 else None


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def db_url(request, tmp_path, premigrated, migrated_copies):
    """A fresh cache database URL, empty or holding the ``premigrated`` tables: every storage
    test runs once per backend."""
    if request.param == "sqlite":
        if premigrated is not None:
            return migrated_copies.sqlite(premigrated, tmp_path / "cache.sqlite")
        return f"sqlite:///{tmp_path / 'cache.sqlite'}"
    if premigrated is not None and request.getfixturevalue("pg_database") is not None:
        made = migrated_copies.postgresql(premigrated)
        if made is not None:
            url, name = made
            request.addfinalizer(lambda: (_COPIES.pop(url, None), migrated_copies.release(name, premigrated)))
            return url
    return request.getfixturevalue("pg_url")


@pytest.fixture
def engine(db_url):
    eng = create_engine(db_url)
    yield eng
    eng.dispose()


# A small schema that holds every cached data type, used across storage tests.
SMALL_SCHEMA = """\
# test schema
Project:
  identifier: name
  fields:
    id: number
    name: text
Sequence:
  identifier: code
  fields:
    id: number
    code: text
    project: {type: entity, entity_types: [Project]}
Asset:
  identifier: code
  fields:
    id: number
    code: text
Shot:
  identifier: code
  fields:
    id: number
    code: text
    description: text
    project: {type: entity, entity_types: [Project]}
    sg_sequence: {type: entity, entity_types: [Sequence]}
    assets: {type: multi_entity, entity_types: [Asset, Sequence]}
    sg_status_list: {type: status_list, valid_values: [wtg, ip, fin]}
    sg_shot_type: {type: list, valid_values: [Hero, BG]}
    sg_cut_in: number
    sg_cut_duration: duration
    sg_timecode: timecode
    sg_percent: percent
    sg_rate: float
    sg_budget: currency
    sg_footage: footage
    sg_flag: checkbox
    sg_color: color
    sg_entity_type: entity_type
    sg_uuid: uuid
    sg_url_template: url_template
    sg_start: date
    created_at: date_time
    updated_at: date_time
    image: image
    sg_link: url
    tag_list: {type: tag_list, entity_types: [Tag]}
    sg_data: serializable
    step_0: pivot_column
    sg_password: password
    sg_total: {type: number, properties: {query: {filters: []}}}
"""


@pytest.fixture
def small_schema():
    return loads(SMALL_SCHEMA, where="SMALL_SCHEMA")


@pytest.fixture
def tables(small_schema, engine):
    t = Tables(small_schema)
    ensure_migrated(engine, t)
    return t


@pytest.fixture
def writer(engine, tables):
    return Writer(engine, tables)


# --- the stand-in site ------------------------------------------------------------------------

SCRIPT_AUTH = {"script_name": "sgcache", "api_key": "sgcache-demo-key"}


@pytest.fixture(scope="session")
def site_schema():
    """The 77-type schema of schema/demo-site.yml, loaded once (copy it before changing it)."""
    from sgcache.schema import load

    return load(ROOT / "schema" / "demo-site.yml")


_PICKLED: dict[int, tuple[object, bytes]] = {}


def schema_copy(schema):
    """A deep copy of ``schema`` (a site's own, to edit freely): through pickle, five times faster
    than ``copy.deepcopy`` for the 77 types of demo-site.yml, and every stand-in site needs one."""
    kept = _PICKLED.get(id(schema))
    if kept is None or kept[0] is not schema:
        kept = _PICKLED[id(schema)] = (schema, pickle.dumps(schema, protocol=pickle.HIGHEST_PROTOCOL))
    return pickle.loads(kept[1])


@pytest.fixture
def mock_site(site_schema, tmp_path):
    """An empty stand-in site (users only), not yet listening."""
    from sgcache.mocksite import MockSite

    return MockSite(schema_copy(site_schema), file_dir=tmp_path / "files")


#: (scale, seed, schema, time zone) -> (the state of a fresh site with that studio, its counts,
#: entity ids of the fresh site before it)
_STUDIOS: dict[tuple, tuple[bytes, dict[str, int], dict]] = {}


def _held_ids(site) -> dict:
    return {t: list(ids) for t, ids in site.emu._ids.items() if ids}


def load_studio(site, scale: int = 1, seed: int = 0) -> dict[str, int]:
    """``build_studio(site, scale, seed)``, built once per test process and copied into each new
    site after that (the scale-1 studio takes most of a second to build, its copy a tenth).
    Only into a site on the real clock holding what a new site holds (its users, whose times
    are then those of the first site's making): any other gets the studio built as asked."""
    from sgcache.mocksite import MockSite
    from sgcache.mocksite.state import unpack_state
    from sgcache.mocksite.studio import build_studio

    if not isinstance(site.clock, types.FunctionType):  # a fake clock: its users' times are its own
        return build_studio(site, scale=scale, seed=seed)
    key = (scale, seed, hashlib.sha1(repr(site.schema).encode()).hexdigest(), site.emu.tz.key)
    made = _STUDIOS.get(key)
    if made is None:
        scratch = MockSite(schema_copy(site.schema), timezone=site.emu.tz.key)
        before = _held_ids(scratch)
        counts = build_studio(scratch, scale=scale, seed=seed)
        made = _STUDIOS[key] = (scratch.packed(), counts, before)
    packed, counts, before = made
    if _held_ids(site) != before:
        return build_studio(site, scale=scale, seed=seed)
    site.take_state(unpack_state(packed))
    return dict(counts)


@pytest.fixture
def mock_server(mock_site):
    """The stand-in site listening on a free local port, in a thread, for the real client."""
    from sgcache.mocksite.server import MockServer

    server = MockServer(mock_site).start()
    yield server
    server.stop()


@pytest.fixture
def sg(mock_server):
    """shotgun_api3 talking to the stand-in as the default script."""
    import shotgun_api3

    return shotgun_api3.Shotgun(mock_server.url, **SCRIPT_AUTH)


# --- the proxy --------------------------------------------------------------------------------

#: The cached types of the proxy tests: a slice of schema/demo.yml, small enough to migrate fast.
PROXY_TYPES = ["Project", "Sequence", "Shot", "Asset", "Task", "TaskTemplate", "Step", "Version", "HumanUser",
               "Playlist", "PublishedFile"]


@pytest.fixture(scope="session")
def proxy_schema_path(tmp_path_factory):
    """A schema file holding PROXY_TYPES as demo.yml defines them."""
    from sgcache.schema import load
    from sgcache.schema.model import Schema
    from sgcache.schema.yamlio import dumps

    full = load(ROOT / "schema" / "demo.yml")
    path = tmp_path_factory.mktemp("proxy") / "proxy-schema.yml"
    path.write_text(dumps(Schema(types={n: full.types[n] for n in PROXY_TYPES}, header="proxy tests")))
    return path


@pytest.fixture(scope="session")
def proxy_tables(proxy_schema_path) -> Tables:
    """The tables of the proxy tests' schema (for migrating: never changed)."""
    from sgcache.schema import load

    return Tables(load(proxy_schema_path))


class ProxyServer:
    """The proxy's Flask app on a real socket, in a thread, for the real client."""

    def __init__(self, config, engine=None):
        import threading

        from werkzeug.serving import make_server

        from sgcache.web import build_service, create_app

        self.config = config
        self.service = build_service(config, engine)
        self.app = create_app(config, service=self.service)
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       name="proxy", daemon=True)
        self.thread.start()

    def client(self, path: str = "", **auth):
        import shotgun_api3

        return shotgun_api3.Shotgun(self.url + path, **(auth or SCRIPT_AUTH))

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.service.close()


def proxy_config(tmp_path: Path, site_url: str, db_url: str, schema_path: Path, **settings):
    """A Config for a proxy in front of ``site_url`` (``settings``: ``section__key=value``)."""
    from sgcache.config import load_config

    empty = tmp_path / "empty.yml"
    empty.write_text("")
    overrides = {"site.base_url": site_url, "site.script_name": SCRIPT_AUTH["script_name"],
                 "site.api_key": SCRIPT_AUTH["api_key"], "database.url": db_url, "schema.path": str(schema_path),
                 # No random shadow checks (extra requests to the site) unless a test asks for them.
                 "auth.shadow_rate": "0",
                 # No slim records of the ~65 types the proxy tests leave out (two listings each per
                 # import) unless a test is about links to them (tests/test_slim.py, the differentials).
                 "scanner.slim_records": "none"}
    overrides.update({k.replace("__", "."): v for k, v in settings.items()})
    return load_config(empty, env={}, overrides=overrides)


@pytest.fixture
def make_proxy(mock_server, db_url, proxy_schema_path, proxy_tables, tmp_path):
    """Start proxies in front of the stand-in site, their cache migrated on ``db_url``."""
    started: list[ProxyServer] = []

    def make(*, site_url: str | None = None, database_url: str | None = None, migrated: bool = True,
             **settings) -> ProxyServer:
        config = proxy_config(tmp_path, site_url or mock_server.url, database_url or db_url, proxy_schema_path,
                              **settings)
        if migrated:
            engine = create_engine(config.database.url)
            ensure_migrated(engine, proxy_tables)
            engine.dispose()
        proxy = ProxyServer(config)  # its engine is made as `sgcache web` makes it
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.stop()
        proxy.service.cache.engine.dispose()


@pytest.fixture
def proxy(make_proxy) -> ProxyServer:
    """One proxy in front of the stand-in site, with its cache on this test's database."""
    return make_proxy()


@contextmanager
def imported_proxy(backend: str, tmp: Path, site_url: str, schema_path: Path, pg_database,
                   **settings) -> Iterator[ProxyServer]:
    """A proxy on a fresh cache (SQLite file or PostgreSQL schema) filled by a full import of the
    site; for module-scoped fixtures, which cannot use ``db_url``."""
    from sgcache.schema import load
    from sgcache.sync.remote import Remote
    from sgcache.sync.scanner import Scanner

    with ExitStack() as stack:
        if backend == "sqlite":
            url = f"sqlite:///{tmp / 'cache.sqlite'}"
        else:
            url = stack.enter_context(pg_schema(pg_database, "m"))
        config = proxy_config(tmp, site_url, url, schema_path, **{"scanner__slim_records": "all", **settings})
        engine = create_engine(url)
        stack.callback(engine.dispose)
        tables = Tables(load(schema_path))
        migrate(engine, tables)
        Scanner(engine, tables, Remote(config.site), config.scanner).full()
        proxy = ProxyServer(config, engine)
        stack.callback(proxy.stop)
        yield proxy


#: Lines a test wants in the run's summary (case counts, seeds), printed at the end.
_REPORT: list[str] = []


def report(line: str) -> None:
    _REPORT.append(line)


def _encodable(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # The fuzz tests log lone surrogates on purpose; pytest-xdist sends reports between
    # processes as UTF-8, which cannot carry them.
    outcome = yield
    report = outcome.get_result()
    report.sections = [(title, _encodable(content)) for title, content in report.sections]


def pytest_sessionfinish(session):
    # Under pytest-xdist each worker hands its lines to the controller, which prints them.
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["sgcache_report"] = list(_REPORT)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    _REPORT.extend(getattr(node, "workeroutput", {}).get("sgcache_report", []))


def pytest_terminal_summary(terminalreporter):
    for line in _REPORT:
        terminalreporter.write_line(line)
    if _pg_problem:
        bar = "!" * 78
        for line in (bar, f"WARNING: PostgreSQL tests were SKIPPED. {_pg_problem}",
                     "Start it (see README.rst) or set SGCACHE_TEST_DATABASE_URL.", bar):
            terminalreporter.write_line(line, red=True, bold=True)
