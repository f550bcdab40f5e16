"""One request never hurts the others: a failing, huge or strange read passes through alone.

A read the database refuses (too large, too deep, timed out) passes that one request through
with reason ``query_error``; only a lost connection switches the cache off. Values the compiler
cannot hold (a huge relative date, a huge page number, a number SQLite cannot store, deep
nesting) get the site's own answer, never an internal error. The real client talks to a real
proxy in front of the stand-in.
"""

from __future__ import annotations

import logging

import pytest
import requests
import shotgun_api3
import sqlalchemy as sa
from conftest import SCRIPT_AUTH
from test_read_cache import import_all, world  # noqa: F401 (a fixture)


def reasons_after(proxy, call) -> tuple[object, dict]:
    before = dict(proxy.service.reasons)
    try:
        result = call()
    except shotgun_api3.Fault as e:
        result = e
    grown = {r: n - before.get(r, 0) for r, n in proxy.service.reasons.items() if n > before.get(r, 0)}
    return result, grown


@pytest.fixture
def cached(make_proxy, world):  # noqa: F811
    proxy = make_proxy(site__max_concurrent="2", site__busy_wait="0.3")
    import_all(proxy)
    return proxy


def nested(depth: int) -> list:
    group = ["code", "is", "SH001"]
    filters = [group]
    for _ in range(depth):
        filters = [{"filter_operator": "any", "filters": filters}]
    return filters


def test_a_query_the_database_refuses_passes_through_alone_and_the_cache_stays_on(cached, sg, caplog):
    # 1,200 conditions make an expression tree SQLite refuses ("too large"); PostgreSQL plans it.
    filters = [{"filter_operator": "any", "filters": [["code", "is", f"SH{i:04d}"] for i in range(1200)]}]
    client = cached.client()
    with caplog.at_level(logging.WARNING):
        result, reasons = reasons_after(cached, lambda: client.find("Shot", filters, ["code"]))
    assert result == sg.find("Shot", filters, ["code"])
    assert "database_down" not in reasons
    assert cached.service.cache.state_name == "ok"
    again, reasons = reasons_after(cached, lambda: client.find("Shot", [], ["code"]))
    assert reasons == {} and again == sg.find("Shot", [], ["code"])
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize("name, filters, kwargs", [
    ("a relative date in the far future", [["created_at", "in_last", 10**12, "DAY"]], {}),
    ("a number SQLite cannot hold", [["id", "is", 10**30]], {}),
    ("a number far beyond the site's", [["id", "greater_than", -(10**30)]], {}),
    ("200 levels of nesting", nested(200), {}),
])
def test_values_too_large_or_too_deep_get_the_site_s_answer(cached, sg, name, filters, kwargs, caplog):
    client = cached.client()
    with caplog.at_level(logging.WARNING):
        ours, reasons = reasons_after(cached, lambda: client.find("Shot", filters, ["code"], **kwargs))
    try:
        theirs = sg.find("Shot", filters, ["code"], **kwargs)
    except shotgun_api3.Fault as e:
        theirs = e
    if isinstance(theirs, Exception):
        assert isinstance(ours, shotgun_api3.Fault) and str(ours) == str(theirs)
    else:
        assert ours == theirs
    assert "internal error" not in str(ours)
    assert "Traceback" not in caplog.text
    assert cached.service.cache.state_name == "ok"


def test_a_page_number_beyond_any_database_gets_the_site_s_answer(cached, sg):
    args = {"type": "Shot", "return_fields": ["code"], "filters": {"logical_operator": "and", "conditions": []},
            "paging": {"entities_per_page": 50, "current_page": 2**62}}
    body = {"method_name": "read", "params": [{"script_name": SCRIPT_AUTH["script_name"],
                                               "script_key": SCRIPT_AUTH["api_key"]}, args]}
    ours = requests.post(cached.url + "/api3/json", json=body, timeout=10)
    theirs = requests.post(sg.base_url + "/api3/json", json=body, timeout=10)
    assert ours.status_code == 200 and "internal error" not in ours.text
    assert ours.json() == theirs.json()
    assert cached.service.cache.state_name == "ok"


def test_sqlite_and_postgresql_errors_that_are_one_statement_s_problem_are_not_lost_connections():
    import sqlite3

    from sgcache.api3.cache import connection_lost

    class PgError(Exception):
        def __init__(self, code):
            super().__init__(code)
            self.pgcode = code

    too_large = sa.exc.OperationalError("SELECT", {}, sqlite3.OperationalError("Expression tree is too large"))
    locked_out = sa.exc.OperationalError("SELECT", {}, sqlite3.OperationalError("unable to open database file"))
    timeout = sa.exc.OperationalError("SELECT", {}, PgError("57014"))
    stack = sa.exc.OperationalError("SELECT", {}, PgError("54001"))
    admin_shutdown = sa.exc.OperationalError("SELECT", {}, PgError("57P01"))
    link_failure = sa.exc.OperationalError("SELECT", {}, PgError("08006"))
    assert [connection_lost(e) for e in (too_large, timeout, stack)] == [False, False, False]
    assert [connection_lost(e) for e in (locked_out, admin_shutdown, link_failure)] == [True, True, True]


# --- compression follows what the caller accepts ----------------------------------------------------------


def raw_post(url: str, body: dict, accept_encoding: str | None) -> tuple[int, dict, bytes]:
    import http.client
    import json
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    headers = {"Content-Type": "application/json"}
    if accept_encoding is not None:
        headers["Accept-Encoding"] = accept_encoding
    conn.putrequest("POST", "/api3/json", skip_accept_encoding=True)
    for k, v in headers.items():
        conn.putheader(k, v)
    data = json.dumps(body).encode()
    conn.putheader("Content-Length", str(len(data)))
    conn.endheaders(data)
    reply = conn.getresponse()
    out = reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
    conn.close()
    return out


@pytest.mark.parametrize("accept, compressed", [(None, False), ("identity", False), ("gzip", True),
                                                ("gzip;q=0", False)])
def test_a_relayed_answer_is_compressed_only_for_a_caller_that_accepts_it(cached, sg, accept, compressed):
    import gzip
    import json

    for i in range(60):
        sg.create("Note", {"subject": f"note {i}", "content": "x" * 100})
    auth = {"script_name": SCRIPT_AUTH["script_name"], "script_key": SCRIPT_AUTH["api_key"]}
    body = {"method_name": "read", "params": [auth, {"type": "Note", "return_fields": ["subject", "content"],
                                                     "filters": {"logical_operator": "and", "conditions": []}}]}
    status, headers, data = raw_post(cached.url, body, accept)
    assert status == 200
    assert (headers.get("content-encoding") == "gzip") is compressed
    text = gzip.decompress(data) if compressed else data
    assert len(json.loads(text)["results"]["entities"]) == 60


# --- a huge request costs by its size, and leaves nothing behind ----------------------------------------------


def test_a_huge_entity_in_with_a_bogus_key_is_refused_before_it_is_compiled(cached, world):  # noqa: F811
    from sgcache.query import paths

    links = [{"type": "Sequence", "id": i} for i in range(1, 20_001)]
    aliases = len(paths._ALIASES)
    stranger = shotgun_api3.Shotgun(cached.url, script_name="sgcache", api_key="not-the-key")
    with pytest.raises(shotgun_api3.AuthenticationFault):
        stranger.find("Shot", [["sg_sequence", "in", links]], ["code"])
    assert len(paths._ALIASES) == aliases


@pytest.mark.parametrize("count", [3, 2_000, 20_000])
def test_an_entity_in_of_any_size_gets_the_site_s_answer_with_one_alias_per_type(cached, sg, world, count):  # noqa: F811
    from sgcache.query import paths

    links = [world["sequence"], *({"type": "Sequence", "id": 10_000 + i} for i in range(count - 1))]
    client = cached.client()
    client.find("Shot", [["sg_sequence", "in", links[:2]]], ["code"])  # the aliases a small request needs
    aliases = len(paths._ALIASES)
    result, reasons = reasons_after(cached, lambda: client.find("Shot", [["sg_sequence", "in", links]], ["code"]))
    assert result == sg.find("Shot", [["sg_sequence", "in", links]], ["code"])
    assert len(paths._ALIASES) <= aliases + 2
    if count <= 5_000:
        assert reasons == {}  # from the cache
    after, reasons = reasons_after(cached, lambda: client.find("Shot", [], ["code"]))
    assert reasons == {}


def test_a_request_needing_too_many_joins_passes_through(cached, sg, world):  # noqa: F811
    from sgcache.query import paths

    filters = [{"filter_operator": "any", "filters": [["sg_sequence", "is", {"type": "Sequence", "id": i}]
                                                      for i in range(1, 1_001)]}]
    aliases = len(paths._ALIASES)
    result, reasons = reasons_after(cached, lambda: cached.client().find("Shot", filters, ["code"]))
    assert reasons == {"unsupported_filter": 1}
    assert result == sg.find("Shot", filters, ["code"])
    assert len(paths._ALIASES) <= aliases + paths.MAX_ALIASES


def test_a_return_field_asked_ten_thousand_times_is_fetched_once(cached, sg, world):  # noqa: F811
    fields = ["code", *["sg_sequence.Sequence.code"] * 10_000]
    queries = []

    def count(*_args):
        queries.append(1)

    engine = cached.service.cache.read_engine
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        result, reasons = reasons_after(cached, lambda: cached.client().find("Shot", [], fields))
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert reasons == {}
    assert result == sg.find("Shot", [], fields)
    # The read's few queries and the state's (imported types, fields, marks, slim types...):
    # nowhere near one per copy of the field.
    assert len(queries) < 12


# --- a stalled site never takes every thread --------------------------------------------------------------


def test_past_site_max_concurrent_a_passthrough_gets_503_and_cached_reads_go_on(cached, sg, mock_server):
    import threading
    import time

    proxy = cached
    client = proxy.client()
    expected = client.find("Shot", [], ["code"])  # verified and cached before the site stalls
    assert proxy.service.upstream._turns is not None
    limit = proxy.service.upstream._turns._initial_value
    requests.post(mock_server.url + "/_mock/failure", json={"mode": "stall", "count": limit, "stall_seconds": 3},
                  timeout=5).raise_for_status()
    stalled = [threading.Thread(target=lambda: proxy.client().find("Note", [], ["subject"])) for _ in range(limit)]
    for t in stalled:
        t.start()
    time.sleep(1.0)  # both stalled clients hold their turns
    started = time.monotonic()
    with pytest.raises(shotgun_api3.ProtocolError) as e:
        shotgun_api3.Shotgun(proxy.url, connect=False, **SCRIPT_AUTH).find("Note", [], ["subject"])
    assert e.value.errcode == 503
    assert time.monotonic() - started < 2.5  # the busy wait, not the stall
    result, reasons = reasons_after(proxy, lambda: client.find("Shot", [], ["code"]))
    assert result == expected and reasons == {}
    for t in stalled:
        t.join(10)


@pytest.mark.parametrize("unknown", ["credentials", "identity", "visibility"])
def test_a_caller_the_proxy_cannot_check_while_its_turns_are_taken_gets_503_not_a_fault(
        make_proxy, sg, world, unknown):  # noqa: F811
    # Checking a caller's credentials, learning who it is, or learning what a visible_projects
    # caller may see found no turn on the site: the caller got a Fault (an API error, which scripts take as final)
    # where a passthrough gets the busy site's 503.
    proxy = make_proxy(site__max_concurrent="2", site__busy_wait="0.3", auth__groups="artist=visible_projects")
    import_all(proxy)
    artist = {"login": "artist", "password": "artist-password"}
    caller = shotgun_api3.Shotgun(proxy.url, connect=False, **artist)
    caller.config.server_caps = proxy.client().server_caps  # skip its info call
    if unknown != "credentials":
        caller.find("Asset", [], ["code"])  # checked, placed in its group, its visibility learned; then
        proxy.service.policy.forget_all()  # what it may see is dropped ...
        if unknown == "identity":
            proxy.service.policy.identities.forget_all()  # ... and who it is
    upstream = proxy.service.upstream
    for _ in range(upstream.turns):  # as requests on a stalled site hold them
        assert upstream._turns.acquire(timeout=5)
    try:
        with pytest.raises(shotgun_api3.ProtocolError) as e:
            caller.find("Shot", [], ["code"])
        assert e.value.errcode == 503
    finally:
        for _ in range(upstream.turns):
            upstream._turns.release()
    assert caller.find("Shot", [], ["code"]) == shotgun_api3.Shotgun(sg.base_url, **artist).find("Shot", [], ["code"])


# --- an upload is read back before its answer, as a write is ---------------------------------------------


@pytest.mark.parametrize("how", ["upload_thumbnail", "upload"])
def test_a_read_after_an_upload_through_the_proxy_sees_it(cached, sg, world, tmp_path, how):  # noqa: F811
    import time

    client = cached.client()
    # Made through the proxy, so the cache holds it at once.
    version = client.create("Version", {"code": "v001", "project": world["projects"][0]})
    fields = ["updated_at", "image", "code"]
    path = tmp_path / "thumb.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 4096)
    before = sg.find_one("Version", [["id", "is", version["id"]]], ["updated_at"])["updated_at"]
    time.sleep(1.1)  # the upload's updated_at differs from the row's by at least a second
    if how == "upload_thumbnail":
        client.upload_thumbnail("Version", version["id"], str(path))
    else:
        client.upload("Version", version["id"], str(path), field_name="sg_uploaded_movie", display_name="cut.mov")
    expected = sg.find_one("Version", [["id", "is", version["id"]]], fields)
    assert expected["updated_at"] != before
    seen, reasons = reasons_after(cached, lambda: client.find_one("Version", [["id", "is", version["id"]]], fields))
    assert reasons == {}  # from the cache
    assert seen == expected
