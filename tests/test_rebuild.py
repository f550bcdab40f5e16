"""``sgcache rebuild``: types imported again from nothing while the proxy serves, never a wrong answer."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
import sqlalchemy as sa

from sgcache.errors import SgcacheError
from sgcache.sync.rebuild import Rebuilder, rebuilding
from sgcache.sync.remote import Remote
from sgcache.sync.scanner import Scanner


@pytest.fixture
def world(sg):
    project = sg.create("Project", {"name": "Alpha"})
    seq = sg.create("Sequence", {"code": "SQ01", "project": project})
    shots = [sg.create("Shot", {"code": f"SH{i:03d}", "project": project, "sg_sequence": seq}) for i in range(12)]
    return {"project": project, "sequence": seq, "shots": shots}


def scanner_for(proxy, **changes) -> Scanner:
    import dataclasses

    service = proxy.service
    config = dataclasses.replace(proxy.config.scanner, **changes)
    return Scanner(service.cache.engine, service.cache.tables, Remote(proxy.config.site), config, progress=False)


def corrupt(proxy, shot_id: int) -> None:
    """What a rebuild is for: rows that no longer say what the site says."""
    with proxy.service.cache.engine.begin() as conn:
        conn.execute(sa.text("UPDATE shot SET code = 'CORRUPT' WHERE id = :id"), {"id": shot_id})
        conn.execute(sa.text("INSERT INTO shot (id, code, _active, _cache_created_at, _cache_updated_at) "
                             "VALUES (999999, 'GHOST', :t, :now, :now)"),
                     {"t": True, "now": dt.datetime.now(dt.UTC)})


SHOT_FIELDS = ["code", "sg_sequence", "project"]
ORDER = [{"field_name": "id", "direction": "asc"}]


def test_a_rebuild_under_read_load_never_serves_a_wrong_answer(make_proxy, world, sg):
    proxy = make_proxy()
    scanner_for(proxy).full()
    corrupt(proxy, world["shots"][0]["id"])
    client = proxy.client()
    truth = sg.find("Shot", [], SHOT_FIELDS, order=ORDER)
    deep_truth = sg.find("Shot", [["sg_sequence.Sequence.code", "is", "SQ01"]], ["code"], order=ORDER)
    assert client.find("Shot", [], SHOT_FIELDS, order=ORDER) != truth  # the corruption is served before

    answers: list[tuple[float, float, bool, bool]] = []  # (began, ended, right answer, from the cache)
    problems: list[BaseException] = []
    stop = threading.Event()

    def read_continuously() -> None:
        reader = proxy.client()
        while not stop.is_set():
            try:
                # Timed from when the reads began: a read begun before the mark took effect may
                # end well after it on a loaded machine, and was rightly answered from the cache.
                began, before = time.monotonic(), proxy.service.cache_answers
                right = reader.find("Shot", [], SHOT_FIELDS, order=ORDER) == truth
                right &= reader.find("Shot", [["sg_sequence.Sequence.code", "is", "SQ01"]], ["code"],
                                     order=ORDER) == deep_truth
                answers.append((began, time.monotonic(), right, proxy.service.cache_answers > before))
            except BaseException as e:  # noqa: BLE001 - reported below
                problems.append(e)
                return

    # One entity a page, so the import takes many round trips while the readers read.
    rebuilder = Rebuilder(proxy.service.cache.engine, proxy.service.cache.tables, scanner_for(proxy, page_size=1),
                          grace=1.0)
    readers = [threading.Thread(target=read_continuously) for _ in range(2)]
    for t in readers:
        t.start()
    time.sleep(0.3)
    started = time.monotonic()
    report = rebuilder.rebuild(["Shot"])
    finished = time.monotonic()
    time.sleep(1.0)  # the proxy's read state is reused for up to 0.5 s
    stop.set()
    for t in readers:
        t.join(timeout=30)
    assert problems == []
    assert [t.entity_type for t in report.types] == ["Shot"]
    during = [a for a in answers if started + 0.6 < a[0] and a[1] < finished]
    after = [a for a in answers if a[0] > finished + 0.6]
    # The answers that were read from the cache before the mark took effect were the corrupted
    # ones; from the mark on, every answer is the site's.
    assert all(right for began, _, right, _ in answers if began > started + 0.6)
    assert during and not any(cached for *_, cached in during)  # passed through while rebuilding
    assert after and all(cached for *_, cached in after)  # and from the cache once it is done
    assert proxy.service.reasons["type_rebuilding"] >= len(during)
    assert client.find("Shot", [], SHOT_FIELDS, order=ORDER) == truth
    with proxy.service.cache.engine.connect() as conn:
        assert rebuilding(conn, proxy.service.cache.tables) is None
        assert conn.execute(sa.text("SELECT count(*) FROM shot WHERE id = 999999")).scalar() == 0


def test_links_into_a_type_being_rebuilt_pass_through(make_proxy, world, sg):
    proxy = make_proxy()
    scanner_for(proxy).full()
    with proxy.service.cache.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO _sgcache_meta (key, value) VALUES ('rebuilding', :v)"),
                     {"v": '{"types": ["Sequence"], "started_at": "2026-11-25T00:00:00+00:00"}'})
    time.sleep(0.6)
    client = proxy.client()
    before = proxy.service.cache_answers
    assert client.find("Shot", [], ["code", "sg_sequence"], order=ORDER) == sg.find("Shot", [], ["code", "sg_sequence"],
                                                                                   order=ORDER)
    assert client.find("Shot", [], ["code"], order=ORDER) == sg.find("Shot", [], ["code"], order=ORDER)
    assert proxy.service.cache_answers == before + 1  # only the read that touches no Sequence
    assert proxy.service.reasons["type_rebuilding"] == 1


def test_an_interrupted_rebuild_keeps_its_types_passing_through_until_rebuilt(make_proxy, world, sg):
    proxy = make_proxy()
    scanner_for(proxy).full()
    rebuilder = Rebuilder(proxy.service.cache.engine, proxy.service.cache.tables, scanner_for(proxy), grace=0.1)
    stop = threading.Event()
    stop.set()
    with pytest.raises(SgcacheError, match="interrupted before it changed anything"):
        rebuilder.rebuild(["Shot"], stop)
    with proxy.service.cache.engine.connect() as conn:
        assert rebuilding(conn, proxy.service.cache.tables)["types"] == ["Shot"]
    report = rebuilder.rebuild(["Sequence"])  # the next rebuild takes the interrupted one's types too
    assert sorted(t.entity_type for t in report.types) == ["Sequence", "Shot"]
    with proxy.service.cache.engine.connect() as conn:
        assert rebuilding(conn, proxy.service.cache.tables) is None


def test_only_one_rebuild_runs_at_a_time(make_proxy, world):
    from sgcache.sync.leader import Leadership

    proxy = make_proxy()
    scanner_for(proxy).full()
    other = Leadership(proxy.service.cache.engine, "rebuild")
    assert other.try_acquire()
    try:
        with pytest.raises(SgcacheError, match="another sgcache rebuild is running"):
            Rebuilder(proxy.service.cache.engine, proxy.service.cache.tables, scanner_for(proxy)).rebuild(["Shot"])
    finally:
        other.release()


def test_sgcache_rebuild_command(make_proxy, world, tmp_path):
    from click.testing import CliRunner

    from sgcache.cli import cli

    proxy = make_proxy()
    scanner_for(proxy).full()
    corrupt(proxy, world["shots"][0]["id"])
    (tmp_path / "c.yml").write_text("")
    base = ["--config", str(tmp_path / "c.yml"), "--database", proxy.config.database.url, "--schema",
            str(proxy.config.schema.path), "--set", f"site.base_url={proxy.config.site.base_url}",
            "--set", "site.script_name=sgcache"]
    env = {"SGCACHE_SITE_API_KEY": "sgcache-demo-key"}
    result = CliRunner().invoke(cli, [*base, "rebuild", "Shot", "--no-progress"], env=env)
    assert result.exit_code == 0, result.output
    assert "rebuilt Shot: 12 entities in" in result.output
    with proxy.service.cache.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT code FROM shot WHERE id = :id"), {"id": world["shots"][0]["id"]}) \
            .scalar() == "SH000"
    bad = CliRunner().invoke(cli, [*base, "rebuild", "Nope"], env=env)
    assert bad.exit_code == 2
    assert "not a cached entity type: Nope" in bad.output
