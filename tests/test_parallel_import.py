"""A full import over several connections at once (scanner.concurrency), and a site that
throttles (429, or 503 with Retry-After): the same cache as a one-page-at-a-time import, every
connection waiting as the site asks, and nothing left running after a stop or an error.

The stand-in runs as a real server and the sync engine talks to it through shotgun_api3, on
SQLite and on PostgreSQL.
"""

# ruff: noqa: F811 (the make_sync fixture, imported, is each test's argument)

from __future__ import annotations

import threading
import time

import pytest
import requests
import sqlalchemy as sa
from test_sync import cache_tables, make_sync  # noqa: F401 (fixtures)

from sgcache.sync import remote as remote_module
from sgcache.sync.listings import id_ranges
from sgcache.sync.remote import Remote, SiteRefused, Stopped, Throttle, retry_after


def fetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(("import-fetch", "import-plan"))]


def counts(s) -> dict[str, int]:
    """Rows per cached type, active and retired."""
    out = {}
    with s.engine.connect() as conn:
        for et in s.tables:
            out[et.name] = conn.execute(sa.select(sa.func.count()).select_from(et.table)).scalar()
    return out


# --- id ranges ------------------------------------------------------------------------------------


def test_a_large_type_is_split_into_ranges_that_cover_every_id_once():
    ranges = id_ranges(10_000, 9_000, 500, 4)
    assert len(ranges) == 4
    assert ranges[0][0] == 0 and ranges[-1][1] is None  # from the first id; open above for new ones
    for (_, below), (after, _) in zip(ranges, ranges[1:], strict=False):
        assert below == after + 1  # id < below, then id > after: nothing twice, nothing missed
    covered = [i for i in range(1, 12_000) if sum(after < i and (below is None or i < below)
                                                  for after, below in ranges) == 1]
    assert len(covered) == 11_999


@pytest.mark.parametrize("highest, total, most",
                         [(100, 900, 4), (10_000, 1_999, 4), (10_000, 50_000, 1), (2, 9_000, 4)])
def test_a_small_type_or_one_connection_is_one_listing(highest, total, most):
    assert id_ranges(highest, total, 500, most) == [(0, None)]


# --- Retry-After ------------------------------------------------------------------------------------


def test_retry_after_reads_seconds_or_a_date_and_is_bounded():
    assert retry_after({"retry-after": "3"}) == 3.0
    assert retry_after({"retry-after": "0.5"}) == 0.5
    assert retry_after({"retry-after": "-4"}) == 0.0
    assert retry_after({"retry-after": "99999"}) == remote_module.MAX_RETRY_AFTER
    assert retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, now=lambda: 1445412480.0) == 10.0
    assert retry_after({"retry-after": "soon"}) is None
    assert retry_after({"retry-after": "nan"}) is None
    assert retry_after({}) is None
    assert retry_after("HTTP error from server") is None  # what shotgun_api3 sets before it has headers


def test_a_throttle_holds_every_connection_until_the_latest_pause_ends():
    now = [100.0]
    throttle = Throttle(clock=lambda: now[0])
    throttle.hold(2)
    throttle.hold(1)  # a shorter pause never shortens a longer one
    assert throttle.remaining() == 2.0
    now[0] += 1.5
    assert throttle.remaining() == 0.5
    now[0] += 1
    assert throttle.remaining() == 0.0


# --- the import ---------------------------------------------------------------------------------------


def test_a_parallel_import_holds_what_a_one_at_a_time_import_holds(make_sync):
    # A small page size splits the studio's larger types into id ranges fetched side by side.
    s = make_sync(studio=True)
    s.scanner(concurrency=4, page_size=20).full()
    assert not fetch_threads()
    assert s.diff() == []
    parallel = counts(s)
    t = s.tables.state.types
    with s.engine.connect() as conn:
        complete = set(conn.execute(sa.select(t.c.entity_type).where(t.c.full_scan_at.is_not(None))).scalars())
    assert complete == {et.name for et in s.tables}
    with s.engine.begin() as conn:  # again, one page after another, from nothing
        for et in s.tables:
            conn.execute(sa.delete(et.table))
            for assoc in et.associations.values():
                conn.execute(sa.delete(assoc))
    s.scanner(concurrency=1, page_size=20).full()
    assert counts(s) == parallel
    assert sum(parallel.values()) > 4000


def test_a_parallel_import_uses_several_connections_at_once(make_sync, monkeypatch):
    s = make_sync(studio=True)
    busy, most = [0], [0]
    lock = threading.Lock()
    real_call = Remote.call

    def call(remote, what, fn):
        with lock:
            busy[0] += 1
            most[0] = max(most[0], busy[0])
        try:
            time.sleep(0.01)  # a site's round trip, so that calls overlap when they can
            return real_call(remote, what, fn)
        finally:
            with lock:
                busy[0] -= 1

    monkeypatch.setattr(Remote, "call", call)
    s.scanner(concurrency=3, page_size=50).full(types=["Shot", "Asset", "Task", "Version"])
    assert most[0] >= 3
    assert s.diff(["Shot", "Asset", "Task", "Version"]) == []


def test_a_throttling_site_is_waited_out_as_its_retry_after_asks(make_sync):
    s = make_sync()
    failure = requests.post(f"{s.server.url}/_mock/failure", json={"mode": "429", "count": 3, "retry_after": 1})
    assert failure.ok
    scanner = s.scanner(concurrency=4)
    started = time.monotonic()
    scanner.full(types=["Shot", "Asset", "Task"])
    assert time.monotonic() - started >= 1.0  # the site asked for a second
    assert scanner.remote.throttle.pauses >= 1  # the connections share one throttle
    assert s.diff(["Shot", "Asset", "Task"]) == []


def test_a_503_with_retry_after_is_waited_out_without_using_up_the_tries(make_sync):
    s = make_sync()
    requests.post(f"{s.server.url}/_mock/failure", json={"mode": "503", "count": 8, "retry_after": "0.1"})
    remote = s.remote(attempts=2, backoff=0.01)
    assert remote.count("Shot", []) == 6  # eight refusals, two tries: only the throttle got it there
    assert remote.throttle.pauses == 8


def test_a_503_without_retry_after_is_a_failed_try_as_before(make_sync):
    s = make_sync()
    requests.post(f"{s.server.url}/_mock/failure", json={"mode": "503", "count": 8})
    remote = s.remote(attempts=2, backoff=0.01)
    with pytest.raises(remote_module.SiteError, match="did not answer after 2 tries"):
        remote.count("Shot", [])
    assert remote.throttle.pauses == 0


def test_a_type_the_site_refuses_fails_the_import_and_stops_the_other_fetchers(make_sync, monkeypatch):
    s = make_sync(studio=True)
    real_pages = Remote.pages

    def pages(remote, entity_type, *args, **kwargs):
        if entity_type == "Task":
            raise SiteRefused("read Task: the site answered: no")
        yield from real_pages(remote, entity_type, *args, **kwargs)

    monkeypatch.setattr(Remote, "pages", pages)
    with pytest.raises(SiteRefused, match="read Task"):
        s.scanner(concurrency=4, page_size=20).full()
    assert not fetch_threads()
    assert s.type_state("Task") is None or s.type_state("Task")["full_scan_at"] is None


def test_a_stop_ends_a_parallel_import_between_two_pages_leaving_it_unfinished(make_sync, monkeypatch):
    s = make_sync(studio=True)
    stop = threading.Event()
    real_pages = Remote.pages
    pages_read = [0]

    def pages(remote, *args, **kwargs):
        for page in real_pages(remote, *args, **kwargs):
            pages_read[0] += 1
            if pages_read[0] == 5:
                stop.set()  # SIGTERM while pages are in flight
            yield page

    monkeypatch.setattr(Remote, "pages", pages)
    scanner = s.scanner(concurrency=4, page_size=20)
    scanner.stop = stop
    scanner.remote.stop = stop
    with pytest.raises(Stopped):
        scanner.full()
    assert not fetch_threads()
    t = s.tables.state.types
    with s.engine.connect() as conn:
        complete = set(conn.execute(sa.select(t.c.entity_type).where(t.c.full_scan_at.is_not(None))).scalars())
    assert complete != {et.name for et in s.tables}
    scanner = s.scanner(concurrency=4, page_size=20)
    scanner.full_where_needed()  # what the next start does
    assert s.diff() == []
