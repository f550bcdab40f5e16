"""What the proxy refuses to relay, who may see its own routes, and what never leaves it.

The stand-in site and the proxy run as real HTTP servers (``mock_server`` and ``make_proxy`` in
conftest). Hostile requests are sent with ``http.client``, which sends a path exactly as given
(``requests`` would remove its dot segments first), and a recorder on the stand-in proves that a
refused request never reached it. ``sgcache auto`` runs as a real process with its children.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import shotgun_api3
import sqlalchemy as sa
from conftest import ROOT, SCRIPT_AUTH

from sgcache.config import AdminConfig, env_name
from sgcache.sync.remote import Remote
from sgcache.sync.scanner import Scanner

#: For tests of the protocol that never look at the cache: one database is enough.
sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

KEY = SCRIPT_AUTH["api_key"]
CREDENTIALS = {"script_name": SCRIPT_AUTH["script_name"], "script_key": KEY}
READ_SHOTS = {"type": "Shot", "filters": {"logical_operator": "and", "conditions": []}, "return_fields": ["code"],
              "paging": {"current_page": 1, "entities_per_page": 1}}


@dataclass
class Received:
    method: str
    path: str  # as it came on the request line
    headers: dict[str, str]  # lower-case names


@pytest.fixture
def site_requests(mock_server) -> list[Received]:
    """Every request the stand-in receives from now on, as it arrived."""
    seen: list[Received] = []
    inner = mock_server.app.wsgi_app

    def recording(environ, start_response):
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        seen.append(Received(environ["REQUEST_METHOD"], environ.get("RAW_URI") or environ["REQUEST_URI"], headers))
        return inner(environ, start_response)

    mock_server.app.wsgi_app = recording
    return seen


def raw(proxy, method: str, path: str, body: bytes | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    """(status, content type, body) of one request whose path is sent exactly as given."""
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read().decode("utf-8", "replace")
    finally:
        conn.close()


def rpc_body(method: str, *params) -> bytes:
    return json.dumps({"method_name": method, "params": list(params)}).encode()


def post_raw_json(proxy, text: str) -> dict:
    status, _, body = raw(proxy, "POST", "/api3/json", text.encode("utf-8"),
                          {"Content-Type": "application/json; charset=utf-8"})
    assert status == 200, body
    return json.loads(body)


# --- file routes: only the documented ones, never a way around them -------------------------------------

#: (verb, path) pairs that leave the file routes by dot segments, encoded or not, or encoded slashes.
ESCAPES = [
    ("POST", "/upload/../api3/json"),
    ("POST", "/upload/%2e%2e/api3/json"),
    ("POST", "/upload/%2E%2E/api3/json"),
    ("POST", "/upload/.%2E/api3/json"),
    ("POST", "/upload/upload_file/../../api3/json"),
    ("GET", "/file_serve/../_mock/stats"),
    ("GET", "/file_serve/attachment/../../_mock/stats"),
    ("GET", "/file_serve/%2e%2e/_mock/stats"),
    ("GET", "/file_serve/%252e%252e/_mock/stats"),
    ("GET", "/file_serve/..%2f_mock%2fstats"),
    ("GET", "/file_serve/attachment%2F1"),
    ("GET", "/thumbnail/./full/Shot/1"),
    ("GET", "/thumbnail/%2e/full/Shot/1"),
    ("GET", "/thumbnail/..\\_mock\\stats"),
    ("GET", "/thumbnail/full/%2e%2e%2f%2e%2e%2f_mock%2fstats"),
    ("POST", "/sg/../api3/json"),
]


@sqlite_only
@pytest.mark.parametrize(("verb", "path"), ESCAPES)
def test_a_path_with_dot_segments_or_encoded_slashes_is_refused_and_never_reaches_the_site(proxy, site_requests,
                                                                                           verb, path):
    status, content_type, text = raw(proxy, verb, path, rpc_body("read", CREDENTIALS, READ_SHOTS),
                                     {"Content-Type": "application/json"})

    assert status == 400, text
    assert content_type.startswith("text/plain")
    assert text.startswith("sgcache: 400 Bad Request: ") and text.count("\n") == 1, text
    assert site_requests == []


#: Paths under the file prefixes that neither sgcache nor shotgun_api3 documents.
UNDOCUMENTED = [
    ("POST", "/upload/anything_else"),
    ("POST", "/upload/api_link_file/extra"),
    ("POST", "/upload/upload_file/extra"),
    ("GET", "/file_serve/_mock/stats"),
    ("GET", "/file_serve/attachment/1/extra"),
    ("GET", "/file_serve/attachment/x"),
    ("GET", "/thumbnail/_mock;stats"),
    ("GET", "/thumbnail/full/Shot/1/2/3/4"),
]


@sqlite_only
@pytest.mark.parametrize(("verb", "path"), UNDOCUMENTED)
def test_a_path_outside_the_documented_file_routes_gets_a_404_and_never_reaches_the_site(proxy, site_requests,
                                                                                         verb, path):
    status, content_type, text = raw(proxy, verb, path, b"x" if verb == "POST" else None)

    assert status == 404, text
    assert content_type.startswith("text/plain")
    assert text.startswith("sgcache: 404 Not Found: ") and text.count("\n") == 1, text
    assert site_requests == []


@sqlite_only
def test_the_documented_file_routes_reach_the_site_at_the_same_path(proxy, site_requests):
    sent = [("GET", "/file_serve/attachment/12345"), ("GET", "/thumbnail/full/Shot/12"),
            ("GET", "/upload/get_thumbnail_url?entity_type=Shot&entity_id=12"),
            ("POST", "/upload/api_get_upload_link_info")]
    for verb, path in sent:
        raw(proxy, verb, path, b"upload_type=Attachment" if verb == "POST" else None)

    assert [(r.method, r.path) for r in site_requests] == sent


@sqlite_only
def test_a_download_sends_the_site_the_session_cookie_and_nothing_else_of_the_caller_s(proxy, sg, site_requests,
                                                                                      tmp_path):
    version = sg.create("Version", {"code": "v001"})
    path = tmp_path / "plate.bin"
    path.write_bytes(b"plate" * 1000)
    attachment = sg.upload("Version", version["id"], str(path), field_name="sg_uploaded_movie")
    token = sg.get_session_token()
    site_requests.clear()

    status, _, body = raw(proxy, "GET", f"/file_serve/attachment/{attachment}", headers={
        "Authorization": "Basic cHJveHl1c2VyOnByb3h5cGFzcw==",
        "Proxy-Authorization": "Basic c2VjcmV0",
        "Cookie": f"proxy_login=abc123; _session_id={token}; tracking=xyz",
        "Connection": "keep-alive, X-Hop-Secret",
        "X-Hop-Secret": "hop",
        "TE": "trailers",
        "Upgrade": "h2c",
        "X-Internal-Token": "internal",
        "Range": "bytes=0-",
    })

    assert status == 200 and body == "plate" * 1000
    (received,) = site_requests
    assert received.headers["cookie"] == f"_session_id={token}"
    assert received.headers["range"] == "bytes=0-"
    leaked = {"authorization", "proxy-authorization", "x-hop-secret", "te", "upgrade", "x-internal-token"}
    assert leaked & set(received.headers) == set()
    assert "keep-alive, x-hop-secret" not in received.headers.get("connection", "").lower()


@sqlite_only
def test_a_session_cookie_that_could_smuggle_another_cookie_is_not_sent(proxy, site_requests):
    raw(proxy, "GET", "/file_serve/attachment/1", headers={"Cookie": '_session_id="abc; admin=1"'})

    (received,) = site_requests
    assert "cookie" not in received.headers


@sqlite_only
def test_an_upload_through_the_real_client_still_reaches_the_site_without_cookies_or_authorization(
        proxy, sg, site_requests, tmp_path):
    version = sg.create("Version", {"code": "v002"})
    path = tmp_path / "movie.bin"
    path.write_bytes(b"movie" * 1000)
    via = shotgun_api3.Shotgun(f"http://user:pass@127.0.0.1:{proxy.port}", **SCRIPT_AUTH)
    site_requests.clear()

    attachment = via.upload("Version", version["id"], str(path), field_name="sg_uploaded_movie")
    via.find("Note", [], ["subject"])  # not a cached type: relayed to the site

    assert isinstance(attachment, int)
    uploads = [r for r in site_requests if r.path == "/upload/upload_file"]
    assert len(uploads) == 1
    assert "authorization" not in uploads[0].headers and "cookie" not in uploads[0].headers
    # The client's Basic credentials were for the proxy: a relayed JSON-RPC call drops them too.
    relayed = [r for r in site_requests if r.path == "/api3/json"]
    assert relayed and all("authorization" not in r.headers for r in relayed)


# --- duplicate keys in a JSON-RPC body -------------------------------------------------------------------


@sqlite_only
@pytest.mark.parametrize(("body", "key"), [
    ('{"method_name": "info", "method_name": "read", "params": []}', "method_name"),
    ('{"method_name": "read", "params": [{"script_name": "sgcache", "script_key": "wrong", '
     f'"script_key": "{KEY}"}}, {json.dumps(READ_SHOTS)}]}}', "script_key"),
    ('{"method_name": "read", "params": [' + json.dumps(CREDENTIALS) + ', {"type": "Shot", "type": "Asset", '
     '"filters": {"logical_operator": "and", "conditions": []}, "return_fields": ["code"]}]}', "type"),
    ('{"method_name": "update", "params": [' + json.dumps(CREDENTIALS) + ', {"type": "Shot", "id": 1, '
     '"fields": [{"field_name": "code", "value": "a", "value": "b"}]}]}', "value"),
    ('{"method_name": "read", "method_\\u006eame": "info", "params": []}', "method_name"),
])
def test_a_body_with_a_duplicated_key_gets_a_fault_naming_it_and_never_reaches_the_site(proxy, site_requests,
                                                                                        body, key):
    answer = post_raw_json(proxy, body)

    assert answer["exception"] is True
    assert answer["message"] == (f'sgcache: the request body has the key "{key}" more than once in one '
                                 "object; send each key once")
    assert site_requests == []


@sqlite_only
def test_the_same_key_in_different_objects_is_fine(proxy):
    body = {"method_name": "read", "params": [CREDENTIALS, {**READ_SHOTS, "filters": {
        "logical_operator": "and", "conditions": [
            {"path": "code", "relation": "is", "values": ["a"]},
            {"path": "code", "relation": "is", "values": ["b"]}]}}]}

    answer = post_raw_json(proxy, json.dumps(body))

    assert "exception" not in answer, answer
    assert answer["results"]["entities"] == []


# --- the admin routes ------------------------------------------------------------------------------------


def test_admin_allow_defaults_to_loopback_only():
    assert AdminConfig().allow == ["127.0.0.1/32", "::1/128"]


@sqlite_only
@pytest.mark.parametrize(("address", "status"), [("127.0.0.1", 200), ("::1", 200), ("::ffff:127.0.0.1", 200),
                                                 ("192.0.2.7", 403), ("10.1.2.3", 403), ("2001:db8::1", 403)])
def test_by_default_only_loopback_may_open_the_status(proxy, address, status):
    with proxy.app.test_client() as client:
        for path in ("/_sgcache/status", "/_sgcache/metrics", "/_sgcache/"):
            response = client.get(path, environ_base={"REMOTE_ADDR": address})
            assert response.status_code == status, (path, response.text)
        assert client.get("/_sgcache/health", environ_base={"REMOTE_ADDR": address}).status_code == 200


@sqlite_only
def test_an_empty_admin_allow_lets_nobody_in_but_health_stays_open(make_proxy):
    proxy = make_proxy(admin__allow="")

    for path in ("/_sgcache/status", "/_sgcache/metrics", "/_sgcache/"):
        response = requests.get(proxy.url + path, timeout=10)
        assert response.status_code == 403, path
        assert response.text == "sgcache: this address may not open the admin pages (admin.allow)\n"
    assert requests.get(proxy.url + "/_sgcache/health", timeout=10).status_code == 200


@sqlite_only
def test_health_gives_short_words_and_no_error_text_url_or_host(make_proxy, tmp_path):
    database = tmp_path / "missing" / "nowhere.sqlite"
    proxy = make_proxy(site_url="http://127.0.0.1:9", site__breaker_failures=1, site__connect_timeout=0.5,
                       database_url=f"sqlite:///{database}", migrated=False)
    raw(proxy, "POST", "/api3/json", rpc_body("read", CREDENTIALS, READ_SHOTS))  # opens the breaker

    response = requests.get(proxy.url + "/_sgcache/health", timeout=10)

    assert response.status_code == 503
    assert response.json() == {"status": "down", "database": "down", "site": "down"}
    for secret in ("127.0.0.1", ":9", "nowhere", str(tmp_path), "refused", "no such table", socket.gethostname()):
        assert secret not in response.text
    # The reason and the errors are for the operator, on the admin routes.
    detail = requests.get(proxy.url + "/_sgcache/status", timeout=10).json()["health"]
    assert detail["reason"] == "both the cache database and the site are unavailable"
    assert "refused" in detail["site_error"]


@pytest.fixture
def shots(sg):
    project = sg.create("Project", {"name": "Alpha"})
    return [sg.create("Shot", {"code": f"SH{i:03d}", "project": project}) for i in range(3)]


def import_all(proxy) -> None:
    service = proxy.service
    Scanner(service.cache.engine, service.cache.tables, Remote(proxy.config.site), proxy.config.scanner).full()


def count_queries(proxy) -> list[str]:
    """The statements counting rows of an entity table that ``proxy`` runs from now on."""
    names = "|".join(re.escape(et.table.name) for et in proxy.service.cache.tables)
    counting = re.compile(rf'\bcount\s*\(.*\bFROM\s+"?({names})"?(\s|$)', re.I | re.S)
    seen: list[str] = []

    @sa.event.listens_for(proxy.service.cache.engine, "before_cursor_execute")
    def record(_conn, _cursor, statement, *_args):
        if counting.search(statement):
            seen.append(statement)

    return seen


@sqlite_only
def test_status_takes_row_counts_from_a_sample_counted_at_most_once_per_interval(make_proxy, shots, sg):
    proxy = make_proxy(admin__row_count_interval=60)
    import_all(proxy)
    counted = count_queries(proxy)

    first = requests.get(proxy.url + "/_sgcache/status", timeout=10).json()["sync"]
    after_first = len(counted)
    again = [requests.get(proxy.url + path, timeout=10) for path in ("/_sgcache/status", "/_sgcache/",
                                                                       "/_sgcache/status")]

    assert first["types"]["Shot"]["active"] == 3 and first["types"]["Project"]["active"] == 1
    assert after_first > 0
    assert len(counted) == after_first  # no table counted again
    assert again[0].json()["sync"]["types"]["Shot"]["active"] == 3
    assert again[0].json()["sync"]["rows_counted_at"] == first["rows_counted_at"]
    assert '<td>Shot</td><td class="n">3</td>' in again[1].text
    # Another proxy process on the same database uses the same sample.
    other = make_proxy()
    counted_by_other = count_queries(other)
    assert requests.get(other.url + "/_sgcache/status", timeout=10).json()["sync"]["types"]["Shot"]["active"] == 3
    assert counted_by_other == []


@sqlite_only
def test_row_counts_are_counted_again_once_the_interval_has_passed(make_proxy, shots, sg):
    proxy = make_proxy(admin__row_count_interval=0.5)
    import_all(proxy)
    assert requests.get(proxy.url + "/_sgcache/status", timeout=10).json()["sync"]["types"]["Shot"]["active"] == 3
    sg.create("Shot", {"code": "SH100", "project": shots[0]["project"]})
    import_all(proxy)

    time.sleep(0.6)
    sync = requests.get(proxy.url + "/_sgcache/status", timeout=10).json()["sync"]

    assert sync["types"]["Shot"]["active"] == 4


# --- sgcache auto: secrets reach the children by the environment, never by argv --------------------------


def test_auto_children_get_every_command_line_setting_in_their_environment_not_in_argv():
    from sgcache.sync.supervise import sync_children

    overrides = {"site.api_key": "s3cret-key", "database.url": "postgresql://sgcache:pg-pass@db1/sgcache",
                 "site.base_url": "https://studio.example", "schema.path": "/etc/sgcache/cached.yml"}

    commands, env = sync_children("/etc/sgcache/sgcache.yml", overrides, 300.0, environ={"PATH": "/usr/bin"})

    assert set(commands) == {"watch", "scan"}
    assert commands["watch"][-1] == "watch"
    assert commands["scan"][-4:] == ["scan", "--interval", "300.0", "--no-progress"]
    for argv in commands.values():
        assert argv[1:5] == ["-m", "sgcache", "--config", "/etc/sgcache/sgcache.yml"]
        assert not any("s3cret-key" in arg or "pg-pass" in arg or "--set" in arg for arg in argv)
    assert env == {"PATH": "/usr/bin", "SGCACHE_SITE_API_KEY": "s3cret-key",
                   "SGCACHE_DATABASE_URL": "postgresql://sgcache:pg-pass@db1/sgcache",
                   "SGCACHE_SITE_BASE_URL": "https://studio.example", "SGCACHE_SCHEMA_PATH": "/etc/sgcache/cached.yml"}
    assert env_name("site", "api_key") == "SGCACHE_SITE_API_KEY"


def test_a_command_line_setting_beats_the_same_variable_inherited_by_auto():
    from sgcache.sync.supervise import sync_children

    _, env = sync_children(None, {"site.api_key": "from-flag"}, 0, environ={"SGCACHE_SITE_API_KEY": "inherited"})

    assert env["SGCACHE_SITE_API_KEY"] == "from-flag"


def _children_of(pid: int) -> list[int]:
    out = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            if re.search(rf"^PPid:\s+{pid}$", status.read_text(), re.M):
                out.append(int(status.parent.name))
        except OSError:
            continue
    return out


def _proc_strings(pid: int, name: str) -> list[str]:
    return (Path(f"/proc/{pid}") / name).read_bytes().decode("utf-8", "replace").rstrip("\0").split("\0")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sgcache_auto_keeps_the_api_key_off_its_children_s_command_lines(mock_server, db_url, proxy_schema_path,
                                                                          tmp_path):
    (tmp_path / "empty.yml").write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGCACHE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    args = [sys.executable, "-m", "sgcache", "--config", str(tmp_path / "empty.yml"), "--database", db_url,
            "--schema", str(proxy_schema_path), "--set", f"site.base_url={mock_server.url}",
            "--set", "site.script_name=sgcache", "--set", f"site.api_key={KEY}", "auto", "--scan-interval", "60"]
    log = tmp_path / "auto.log"
    with open(log, "w", encoding="utf-8") as err:
        auto = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 60
        engine = sa.create_engine(db_url)
        try:
            while True:
                assert auto.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                try:
                    with engine.connect() as conn:
                        tables = set(sa.inspect(conn).get_table_names())
                        imported = "_sgcache_types" in tables and conn.execute(sa.text(
                            "SELECT count(*) FROM _sgcache_types WHERE full_scan_at IS NOT NULL")).scalar()
                except sa.exc.OperationalError:
                    imported = 0  # SQLite: the schema changed under this look (auto is migrating); look again
                if imported and imported >= 11 and len(_children_of(auto.pid)) == 2:
                    break  # the scanner child imported every type: it had the key
                time.sleep(0.2)
        finally:
            engine.dispose()
        children = _children_of(auto.pid)
        for pid in children:
            argv = _proc_strings(pid, "cmdline")
            assert argv[-1] in ("watch", "--no-progress")
            assert not any(KEY in arg for arg in argv), argv
            assert f"SGCACHE_SITE_API_KEY={KEY}" in _proc_strings(pid, "environ")
    finally:
        auto.send_signal(signal.SIGTERM)
        assert auto.wait(30) == 0, log.read_text()
    assert "event=child_died" not in log.read_text()
