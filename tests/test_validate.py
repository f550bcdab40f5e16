"""``sgcache validate counts`` and ``validate data``: the cache checked against the site.

Each test imports a small hand-made stand-in site (:func:`studio`) into a cache on SQLite and on
PostgreSQL (the ``engine`` fixture), plants differences in the cache (through SQL) or on the site
(through its API, with no watcher running), and runs the command in this process through
:func:`sgcache.cli.main`, as the installed ``sgcache`` runs it, to check its exact output and
exit status.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path

import pytest
import shotgun_api3
import sqlalchemy as sa
import yaml
from conftest import SCRIPT_AUTH, SMALL_SCHEMA, schema_copy
from test_sync import link, stop_in_background

from sgcache.cli import main
from sgcache.config import load_config
from sgcache.mocksite import MockSite
from sgcache.mocksite.server import MockServer
from sgcache.schema import load, loads
from sgcache.schema.model import Schema
from sgcache.schema.yamlio import dumps
from sgcache.store.migrate import migrate
from sgcache.store.tables import Tables
from sgcache.store.writer import Writer
from sgcache.sync.remote import RateLimit, Remote
from sgcache.sync.scanner import Scanner
from sgcache.sync.watcher import Watcher

ROOT = Path(__file__).resolve().parent.parent
#: The cached types: few, so that a test imports its site in well under a second.
CACHED = ["Asset", "HumanUser", "Project", "Sequence", "Shot"]
#: No throttling in tests (the limiter has a test of its own).
FAST = ("--rate", "1000")


@pytest.fixture(scope="session")
def validate_schema_path(tmp_path_factory) -> Path:
    full = load(ROOT / "schema" / "demo.yml")
    path = tmp_path_factory.mktemp("validate") / "cached.yml"
    path.write_text(dumps(Schema(types={n: full.types[n] for n in CACHED}, header="validate tests")))
    return path


@pytest.fixture(scope="session")
def validate_tables(validate_schema_path) -> Tables:
    return Tables(load(validate_schema_path))


@dataclasses.dataclass
class Studio:
    """A stand-in site, its cache (imported in full) and a settings file for ``sgcache``."""

    site: MockSite
    server: MockServer
    engine: sa.Engine
    tables: Tables
    config: object
    config_path: Path
    ids: dict

    def sg(self) -> shotgun_api3.Shotgun:
        return shotgun_api3.Shotgun(self.server.url, **SCRIPT_AUTH)

    def remote(self) -> Remote:
        return Remote(self.config.site)

    def import_all(self, projects: list[int] | None = None) -> None:
        Scanner(self.engine, self.tables, self.remote(), self.config.scanner, progress=False).full(projects=projects)

    def watcher(self) -> Watcher:
        return Watcher(self.engine, self.tables, self.remote(), self.config.watcher)

    def newest_event_id(self) -> int:
        return self.remote().newest_event_id()

    def fields(self, entity_type: str) -> int:
        """How many fields ``validate data`` compares by default."""
        return len(self.tables[entity_type].cached_fields()) - 1

    # --- differences planted in the cache ------------------------------------------------------------

    def set_in_cache(self, entity_type: str, entity_id: int, **values) -> None:
        et = self.tables[entity_type]
        columns = {et.fields[name].column: value for name, value in values.items()}
        with self.engine.begin() as conn:
            conn.execute(sa.update(et.table).where(et.table.c.id == entity_id).values(**columns))

    def retire_in_cache(self, entity_type: str, entity_id: int) -> None:
        t = self.tables[entity_type].table
        with self.engine.begin() as conn:
            conn.execute(sa.update(t).where(t.c.id == entity_id).values(_active=False))

    def delete_in_cache(self, entity_type: str, entity_id: int) -> None:
        t = self.tables[entity_type].table
        with self.engine.begin() as conn:
            conn.execute(sa.delete(t).where(t.c.id == entity_id))

    def add_to_cache(self, entity_type: str, entity: dict) -> None:
        Writer(self.engine, self.tables).upsert(entity_type, [{"type": entity_type, **entity}], active=True)


def build_world(site: MockSite) -> dict:
    """Two projects with three shots each (linked to nothing but their project, so a planted
    difference shows alone), a retired shot, two assets and a sequence."""
    ids: dict = {"projects": [site.load_entity("Project", {"name": name}) for name in ("Alpha", "Beta")]}
    alpha = link("Project", ids["projects"][0])
    ids["shots"] = [site.load_entity("Shot", {"code": f"SH{p}{i}", "project": link("Project", project),
                                              "description": f"shot {p}{i}", "sg_cut_in": 1001 + i})
                    for p, project in zip("AB", ids["projects"], strict=True) for i in range(3)]
    ids["retired_shot"] = site.load_entity("Shot", {"code": "OLD", "project": alpha}, retired=True)
    ids["assets"] = [site.load_entity("Asset", {"code": f"A{i}", "project": alpha}) for i in range(2)]
    ids["sequence"] = site.load_entity("Sequence", {"code": "SQ1", "project": alpha})
    return ids


@pytest.fixture
def make_studio(engine, site_schema, validate_schema_path, validate_tables, tmp_path):
    """make_studio(imported=True) -> Studio, its cache on this test's database."""
    servers: list[MockServer] = []

    def make(*, imported: bool = True) -> Studio:
        site = MockSite(schema_copy(site_schema), file_dir=tmp_path / "files")
        ids = build_world(site)
        server = MockServer(site).start()
        servers.append(server)
        tables = validate_tables
        migrate(engine, tables)
        settings = {
            "site": {"base_url": server.url, "script_name": SCRIPT_AUTH["script_name"],
                     "api_key": SCRIPT_AUTH["api_key"], "timeout": 10},
            "database": {"url": engine.url.render_as_string(hide_password=False)},
            "schema": {"path": str(validate_schema_path)},
            "watcher": {"min_poll_interval": 0.01, "poll_interval": 0.05},
            "log": {"level": "warning"},
        }
        config_path = tmp_path / "sgcache.yml"
        config_path.write_text(yaml.safe_dump(settings), encoding="utf-8")
        studio = Studio(site, server, engine, tables, load_config(config_path, env={}), config_path, ids)
        if imported:
            studio.import_all()
        return studio

    yield make
    for server in servers:
        stop_in_background(server)


@pytest.fixture
def studio(make_studio) -> Studio:
    return make_studio()


@dataclasses.dataclass
class Run:
    status: int
    out: list[str]
    err: list[str]


@pytest.fixture
def sgcache(capsys, monkeypatch):
    """sgcache(*args, config=PATH) -> Run: ``sgcache --config PATH ARGS`` in this process."""
    for name in [k for k in __import__("os").environ if k.startswith("SGCACHE_")]:
        monkeypatch.delenv(name)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level

    def run(*args: str, config: Path) -> Run:
        capsys.readouterr()
        try:
            main(["--config", str(config), *args])
            status = 0
        except SystemExit as e:
            status = e.code
        out, err = capsys.readouterr()
        return Run(status, out.splitlines(), err.splitlines())

    yield run
    # The command set up logging to this test's captured stderr; later tests log elsewhere.
    root.handlers[:] = handlers
    root.setLevel(level)


def counts(studio: Studio, sgcache, *args: str) -> Run:
    return sgcache("validate", "counts", *args, *FAST, config=studio.config_path)


def data(studio: Studio, sgcache, *args: str) -> Run:
    return sgcache("validate", "data", *args, *FAST, config=studio.config_path)


def table(run: Run) -> dict[str, list[str]]:
    """The counts table: type -> [site active, cache active, site retired, cache retired, status]."""
    assert run.out[0].split() == ["TYPE", "SITE", "ACTIVE", "CACHE", "ACTIVE", "SITE", "RETIRED", "CACHE", "RETIRED",
                                  "STATUS"]
    rows = {}
    for line in run.out[1:-1]:
        name, *numbers = line.split(maxsplit=5)
        rows[name] = numbers
    return rows


# --- a cache that matches ------------------------------------------------------------------------------


def test_counts_of_a_fresh_import_match_the_site_and_exit_0(studio, sgcache):
    result = counts(studio, sgcache)
    assert result.status == 0, result.err
    humans = len(studio.sg().find("HumanUser", [], ["id"]))
    assert table(result) == {
        "Asset": ["2", "2", "0", "0", "ok"],
        "HumanUser": [str(humans), str(humans), "0", "0", "ok"],
        "Project": ["2", "2", "0", "0", "ok"],
        "Sequence": ["1", "1", "0", "0", "ok"],
        "Shot": ["6", "6", "1", "1", "ok"],
    }
    assert result.out[-1] == "counts match for 5 types"
    assert result.err == []


def test_data_of_a_fresh_import_has_no_differences_and_exits_0(studio, sgcache):
    result = data(studio, sgcache, "Shot", "Project")
    assert result.status == 0, result.err
    values = 7 * studio.fields("Shot") + 2 * studio.fields("Project")
    assert result.out == [f"compared 9 entities ({values} field values) of 2 types: 0 differences"]
    assert result.err == []


# --- differences planted in the cache ------------------------------------------------------------------


def test_counts_report_rows_retired_deleted_and_added_in_the_cache(studio, sgcache):
    shots = studio.ids["shots"]
    studio.retire_in_cache("Shot", shots[0])
    studio.delete_in_cache("Shot", shots[1])
    studio.add_to_cache("Shot", {"id": 9999, "code": "GHOST"})
    studio.delete_in_cache("Asset", studio.ids["assets"][0])
    result = counts(studio, sgcache)
    assert result.status == 1
    rows = table(result)
    assert rows["Shot"] == ["6", "5", "1", "2", "differs"]
    assert rows["Asset"] == ["2", "1", "0", "0", "differs"]
    assert rows["Project"] == ["2", "2", "0", "0", "ok"]
    assert result.out[-1] == "counts differ for 2 of 5 types"
    assert result.err == []  # the cache had every event: nothing to wait for


def test_data_reports_a_changed_value_and_rows_retired_deleted_and_added_in_the_cache(studio, sgcache):
    shots = studio.ids["shots"]
    studio.set_in_cache("Shot", shots[0], description="planted")
    studio.retire_in_cache("Shot", shots[1])
    studio.delete_in_cache("Shot", shots[2])
    studio.add_to_cache("Shot", {"id": 9999, "code": "GHOST"})
    result = data(studio, sgcache, "Shot")
    assert result.status == 1
    assert result.out == [
        f'Shot {shots[0]} description: site="shot A0" cache="planted"',
        f"Shot {shots[1]} _active: site=true cache=false",
        f'Shot {shots[2]} (row): site="present" cache="missing"',
        'Shot 9999 (row): site="missing" cache="present"',
        f"compared 8 entities ({6 * studio.fields('Shot')} field values) of 1 type: 4 differences",
    ]
    assert result.err == []


# --- differences on the site, and events in flight -----------------------------------------------------


def test_counts_report_changes_on_the_site_the_cache_has_not_applied_after_the_wait(studio, sgcache):
    sg = studio.sg()
    sg.create("Shot", {"code": "NEW", "project": link("Project", studio.ids["projects"][0])})
    sg.delete("Shot", studio.ids["shots"][0])
    newest = studio.newest_event_id()
    result = counts(studio, sgcache, "Shot", "Asset", "--wait", "0.2")
    assert result.status == 1
    assert table(result) == {"Shot": ["6", "6", "2", "1", "differs"], "Asset": ["2", "2", "0", "0", "ok"]}
    assert result.err == [
        f"counts differ for Shot: waiting up to 0.2 s for the cache to apply the site's events up to {newest}",
        "the cache has not applied them all after 0.2 s (applied up to 0); checking again anyway",
    ]


def test_data_reports_changes_on_the_site_the_cache_has_not_applied_after_the_wait(studio, sgcache):
    sg = studio.sg()
    shots = studio.ids["shots"]
    sg.update("Shot", shots[0], {"description": "changed on the site"})
    sg.delete("Shot", shots[1])
    new = sg.create("Shot", {"code": "NEW", "project": link("Project", studio.ids["projects"][0])})["id"]
    newest = studio.newest_event_id()
    result = data(studio, sgcache, "Shot", "--fields", "description", "--wait", "0.2")
    assert result.status == 1
    assert result.out == [
        f'Shot {shots[0]} description: site="changed on the site" cache="shot A0"',
        f"Shot {shots[1]} _active: site=false cache=true",
        f'Shot {new} (row): site="present" cache="missing"',
        "compared 8 entities (7 field values) of 1 type: 3 differences",
    ]
    assert result.err == [
        f"3 entities differ: waiting up to 0.2 s for the cache to apply the site's events up to {newest}",
        "the cache has not applied them all after 0.2 s (applied up to 0); checking again anyway",
    ]


@pytest.fixture
def watcher_applies_during_the_wait(studio, monkeypatch):
    """Once validate notes the site's newest event (it found a difference), a watcher applies
    every waiting event in a thread, while validate waits for it."""
    real = Remote.newest_event_id
    started: list[threading.Thread] = []

    def drain(watcher: Watcher) -> None:
        while watcher.poll_once() >= watcher.config.batch_size:
            pass

    def newest_then_watch(self) -> int:
        newest = real(self)
        if not started:
            started.append(threading.Thread(target=drain, args=(studio.watcher(),)))
            started[0].start()
        return newest

    monkeypatch.setattr(Remote, "newest_event_id", newest_then_watch)
    yield started
    for thread in started:
        thread.join(10)


def test_counts_allow_for_events_the_watcher_applies_during_the_wait(studio, sgcache,
                                                                      watcher_applies_during_the_wait):
    studio.sg().create("Shot", {"code": "NEW", "project": link("Project", studio.ids["projects"][0])})
    result = counts(studio, sgcache, "Shot", "Asset")
    assert result.status == 0, result.out
    assert table(result) == {"Shot": ["7", "7", "1", "1", "ok after wait"], "Asset": ["2", "2", "0", "0", "ok"]}
    assert result.out[-1] == "counts match for 2 types"
    assert len(watcher_applies_during_the_wait) == 1


def test_data_allows_for_events_the_watcher_applies_during_the_wait(studio, sgcache, watcher_applies_during_the_wait):
    shots = studio.ids["shots"]
    studio.sg().update("Shot", shots[0], {"description": "changed on the site"})
    studio.sg().delete("Shot", shots[1])
    result = data(studio, sgcache, "Shot")
    assert result.status == 0, result.out
    assert result.out == [f"compared 7 entities ({7 * studio.fields('Shot')} field values) of 1 type: 0 differences"]
    assert len(watcher_applies_during_the_wait) == 1


# --- choosing what to compare ------------------------------------------------------------------------


def test_data_filters_compare_the_entities_the_site_or_the_cache_matches(studio, sgcache):
    shots = studio.ids["shots"]
    studio.set_in_cache("Shot", shots[2], code="SHA1")  # the cache now matches it, the site does not
    studio.set_in_cache("Shot", shots[3], description="planted")  # matched by neither: not compared
    result = data(studio, sgcache, "Shot", "--filters", '[["code", "is", "SHA1"]]')
    assert result.status == 1
    assert result.out == [
        f'Shot {shots[2]} code: site="SHA2" cache="SHA1"',
        f"compared 2 entities ({2 * studio.fields('Shot')} field values) of 1 type: 1 difference",
    ]


def test_data_filters_the_cache_cannot_evaluate_compare_what_the_site_matches_and_say_so(studio, sgcache):
    shots = studio.ids["shots"]
    studio.set_in_cache("Shot", shots[2], code="SHA1")
    fields = studio.tables.state.fields
    with studio.engine.begin() as conn:  # code awaits a backfill: the cache's values are not trusted
        conn.execute(sa.update(fields).where(fields.c.entity_type == "Shot", fields.c.field_name == "code")
                     .values(needs_backfill=True))
    result = data(studio, sgcache, "Shot", "--filters", '[["code", "is", "SHA1"]]', "--fields", "description")
    assert result.status == 0
    assert result.out == ["compared 1 entity (1 field value) of 1 type: 0 differences"]
    assert result.err == ["Shot: the cache cannot evaluate --filters (field_backfill: Shot.code): only the entities "
                          "the site matches are compared"]


def test_data_fields_limit_the_compared_fields(studio, sgcache):
    shot = studio.ids["shots"][0]
    studio.set_in_cache("Shot", shot, description="planted", sg_cut_in=7)
    result = data(studio, sgcache, "Shot", "--fields", "description,code")
    assert result.status == 1
    assert result.out == [
        f'Shot {shot} description: site="shot A0" cache="planted"',
        "compared 7 entities (14 field values) of 1 type: 1 difference",
    ]


def test_data_limit_and_page_take_entities_in_id_order(studio, sgcache):
    shots = studio.ids["shots"]
    for i, shot in enumerate(shots):
        studio.set_in_cache("Shot", shot, description=f"planted {i}")
    result = data(studio, sgcache, "Shot", "--fields", "description", "--page-size", "2", "--page", "2",
                  "--limit", "3")
    assert result.status == 1
    # Pages of 2 in id order: page 2 starts at the third shot; three entities from there.
    assert result.out == [
        f'Shot {shots[2]} description: site="shot A2" cache="planted 2"',
        f'Shot {shots[3]} description: site="shot B0" cache="planted 3"',
        f'Shot {shots[4]} description: site="shot B1" cache="planted 4"',
        "compared 3 entities (3 field values) of 1 type: 3 differences",
    ]


def test_validation_of_a_cache_of_one_project_compares_the_site_within_that_project(make_studio, sgcache):
    studio = make_studio(imported=False)
    alpha = studio.ids["projects"][0]
    studio.import_all(projects=[alpha])
    by_counts = counts(studio, sgcache, "Shot", "Project")
    assert by_counts.status == 0, by_counts.out
    assert table(by_counts) == {"Shot": ["3", "3", "1", "1", "ok"], "Project": ["2", "2", "0", "0", "ok"]}
    by_data = data(studio, sgcache, "Shot", "--fields", "code")
    assert by_data.status == 0, by_data.out
    assert by_data.out == ["compared 4 entities (4 field values) of 1 type: 0 differences"]


def test_a_type_never_fully_imported_fails_validation_without_being_compared(make_studio, sgcache):
    studio = make_studio(imported=False)
    Scanner(studio.engine, studio.tables, studio.remote(), studio.config.scanner, progress=False).full(types=["Shot"])
    by_counts = counts(studio, sgcache, "Shot", "Asset")
    assert by_counts.status == 1
    assert table(by_counts) == {"Shot": ["6", "6", "1", "1", "ok"], "Asset": ["2", "0", "0", "0", "not imported"]}
    by_data = data(studio, sgcache, "Shot", "Asset", "--fields", "code")
    assert by_data.status == 1
    assert by_data.out == ["Asset: never fully imported (run sgcache scan --full): not compared",
                           "compared 7 entities (7 field values) of 1 type: 0 differences"]


# --- bad input -----------------------------------------------------------------------------------------


@pytest.fixture
def unused_setup(tmp_path) -> tuple[Path, Path]:
    """A settings file whose site and database are never reached: (its path, the database file)."""
    schema = tmp_path / "small.yml"
    schema.write_text(SMALL_SCHEMA, encoding="utf-8")
    db = tmp_path / "never.sqlite"
    config = tmp_path / "sgcache.yml"
    config.write_text(yaml.safe_dump({
        "site": {"base_url": "http://127.0.0.1:9", "script_name": "sgcache", "api_key": "key"},
        "database": {"url": f"sqlite:///{db}"}, "schema": {"path": str(schema)}, "log": {"level": "warning"}}),
        encoding="utf-8")
    return config, db


@pytest.mark.parametrize(("args", "error"), [
    (["counts", "Nope"], "Invalid value for TYPE: entity type 'Nope' is not in the cached schema"),
    (["data", "Shot", "Nope"], "Invalid value for TYPE: entity type 'Nope' is not in the cached schema"),
    (["data", "Shot", "Asset", "--fields", "code,description"],
     "Invalid value for --fields: Asset has no field 'description' in the schema"),
    (["data", "Shot", "--fields", "step_0"],
     "Invalid value for --fields: Shot.step_0 is not cached (pivot columns are computed per query by the site)"),
    (["data", "--filters", '[["code", "is"'],
     "Invalid value for --filters: not valid JSON (Expecting ',' delimiter at line 1 column 15)"),
    (["data", "--filters", '{"code": "SH010"}'],
     "Invalid value for --filters: expected a JSON list of filters, got dict"),
    (["data", "--filters", '[["code"]]'],
     'Invalid value for --filters: a filter must be [field, relation, value...], got ["code"]'),
], ids=["counts-type", "data-type", "field", "uncached-field", "json", "not-a-list", "not-a-filter"])
def test_bad_input_is_a_usage_error_naming_it_exit_2(unused_setup, sgcache, args, error):
    config, db = unused_setup
    result = sgcache("validate", *args, config=config)
    assert result.status == 2
    assert result.out == []
    assert result.err[-1] == f"Error: {error}"
    assert not any("Traceback" in line for line in result.err)
    assert not db.exists()  # rejected before the database (or the site) was reached


def test_a_database_never_set_up_is_one_error_line(unused_setup, sgcache):
    config, db = unused_setup
    result = sgcache("validate", "counts", config=config)
    assert result.status == 1
    assert result.err == [f"sgcache: error: sqlite:///{db} is not set up yet: run `sgcache scan --full`"]


def test_a_database_behind_the_schema_file_is_reported_not_migrated(unused_setup, sgcache):
    config, db = unused_setup
    older = loads(SMALL_SCHEMA)
    del older.types["Shot"].fields["description"]
    engine = sa.create_engine(f"sqlite:///{db}")
    migrate(engine, Tables(older))
    result = sgcache("validate", "data", "Shot", config=config)
    assert result.status == 1
    assert result.err == [f"sgcache: error: sqlite:///{db} does not match the schema file (2 changes pending): "
                          "run `sgcache schema migrate`"]
    assert "description" not in {c["name"] for c in sa.inspect(engine).get_columns("shot")}
    engine.dispose()


# --- the rate limit ------------------------------------------------------------------------------------


class FakeTime:
    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_rate_limit_spaces_requests_evenly_by_sleeping():
    t = FakeTime()
    limit = RateLimit(5, clock=t.clock, sleep=t.sleep)
    limit.wait()  # the first goes at once
    limit.wait()  # the second waits its 0.2 s slot
    t.now += 0.1
    limit.wait()  # 0.1 s after the second: 0.1 s more
    t.now += 5
    limit.wait()  # long after: at once, no burst allowance either
    assert t.sleeps == [pytest.approx(0.2), pytest.approx(0.1)]


def test_a_rate_limit_shared_by_threads_gives_each_request_a_slot_of_its_own():
    # validate checks several types at once (scanner.concurrency), each over its own connection:
    # --rate holds for them all together.
    sleeps: list[float] = []
    lock = threading.Lock()

    def sleep(seconds: float) -> None:
        with lock:
            sleeps.append(round(seconds, 6))

    limit = RateLimit(5, clock=lambda: 0.0, sleep=sleep)  # time stands still: every slot is ahead
    threads = [threading.Thread(target=lambda: [limit.wait() for _ in range(5)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(sleeps) == [round(0.2 * k, 6) for k in range(1, 20)]  # the first at once, then one per slot


def test_a_remote_s_siblings_share_its_rate_limit_throttle_and_stop(tmp_path):
    settings = tmp_path / "empty.yml"
    settings.write_text("")
    site = load_config(settings, env={}, overrides={"site.base_url": "http://127.0.0.1:9", **{
        f"site.{key}": value for key, value in SCRIPT_AUTH.items()}}).site
    stop = threading.Event()
    remote = Remote(site, rate=3, stop=stop)
    sibling = remote.sibling()
    assert sibling is not remote
    assert (sibling.rate_limit, sibling.throttle, sibling.stop) == (remote.rate_limit, remote.throttle, stop)


def test_every_request_of_a_remote_with_a_rate_waits_for_its_slot(mock_server, tmp_path):
    settings = tmp_path / "empty.yml"
    settings.write_text("")
    site = load_config(settings, env={}, overrides={"site.base_url": mock_server.url, **{
        f"site.{key}": value for key, value in SCRIPT_AUTH.items()}}).site
    t = FakeTime()
    remote = Remote(site, rate=2)
    remote.rate_limit = RateLimit(2, clock=t.clock, sleep=t.sleep)
    assert remote.entity_count("HumanUser", []) == 1
    assert remote.entity_count("HumanUser", [], retired=True) == 0
    assert remote.newest_event_id() == 0
    assert t.sleeps == [pytest.approx(0.5), pytest.approx(0.5)]
