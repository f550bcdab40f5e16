"""Each caller gets from the cache only what the site would show that caller.

Who is asking (script, person, sudo_as_login, session token), the policy per permission group
(``auth.groups``, deny by default), visible_projects answers equal to the site's, the watcher's
events dropping what was remembered, and shadow checks switching a wrongly set group off. The
stand-in models permission groups (docs/mocksite.rst); the proxy and the stand-in run as real
servers and the real client talks to both.
"""

from __future__ import annotations

import http.server
import json
import logging
import threading
import time

import pytest
import requests
import shotgun_api3
from conftest import SCRIPT_AUTH
from test_read_cache import import_all, world  # noqa: F401 (a fixture)

from sgcache.mocksite.site import Human
from sgcache.store import state as store_state
from sgcache.sync.remote import Remote
from sgcache.sync.watcher import Watcher

ARTIST = {"login": "artist", "password": "artist-password"}
VENDOR = {"login": "vendor", "password": "vendor-password"}


def person(sg, login: str) -> dict:
    found = sg.find_one("HumanUser", [["login", "is", login]], ["id"])
    assert found is not None, f"the stand-in has no {login}"
    return {"type": "HumanUser", "id": found["id"]}


@pytest.fixture
def alpha_artist(sg, world):  # noqa: F811
    """The artist is assigned to project Alpha (and not Beta)."""
    sg.update("Project", world["projects"][0]["id"], {"users": [person(sg, "artist")]})
    return world


def outcome(proxy, call):
    """(result, how it was answered: cache or the passthrough reason)."""
    before_cache, before = proxy.service.cache_answers, dict(proxy.service.reasons)
    result = call()
    if proxy.service.cache_answers > before_cache:
        return result, "cache"
    grown = [r for r, n in proxy.service.reasons.items() if n > before.get(r, 0)]
    return result, grown[0] if grown else "passthrough"


def site_as(mock_server, **auth):
    return shotgun_api3.Shotgun(mock_server.url, **auth)


# --- deny by default ------------------------------------------------------------------------------------


def test_a_person_passes_through_by_default(make_proxy, sg, mock_server, alpha_artist):
    proxy = make_proxy()
    import_all(proxy)
    result, how = outcome(proxy, lambda: proxy.client(**ARTIST).find("Shot", [], ["code", "project"]))
    assert how == "group_not_listed"
    assert result == site_as(mock_server, **ARTIST).find("Shot", [], ["code", "project"])
    assert {s["project"]["id"] for s in result} == {alpha_artist["projects"][0]["id"]}


def test_a_script_with_sudo_as_login_passes_through_by_default(make_proxy, sg, alpha_artist):
    proxy = make_proxy()
    import_all(proxy)
    _, how = outcome(proxy, lambda: proxy.client(**SCRIPT_AUTH, sudo_as_login="artist").find("Shot", [], ["code"]))
    assert how == "group_not_listed"


def test_sgcache_s_own_script_group_gets_everything_by_default(make_proxy, sg, alpha_artist):
    proxy = make_proxy()
    import_all(proxy)
    result, how = outcome(proxy, lambda: proxy.client().find("Shot", [], ["code"]))
    assert how == "cache"
    assert len(result) == len(alpha_artist["shots"])


def test_a_group_mapped_to_passthrough_passes_through(make_proxy, sg, alpha_artist):
    proxy = make_proxy(auth__groups="artist=passthrough")
    import_all(proxy)
    _, how = outcome(proxy, lambda: proxy.client(**ARTIST).find("Shot", [], ["code"]))
    assert how == "group_passthrough"


def test_the_startup_log_states_the_policy(make_proxy, caplog):
    with caplog.at_level(logging.INFO, logger="sgcache.api3.service"):
        make_proxy(auth__groups="artist=visible_projects,manager=all")
    lines = [r.getMessage() for r in caplog.records if "event=auth_policy" in r.getMessage()]
    assert len(lines) == 1
    assert "artist=visible_projects, manager=all" in lines[0] and "'sgcache'" in lines[0]


# --- who is asking ---------------------------------------------------------------------------------------


def post(proxy, auth: dict, method: str = "read", args: dict | None = None) -> dict:
    args = args or {"type": "Shot", "return_fields": ["code"], "filters": {"logical_operator": "and",
                                                                          "conditions": []}}
    body = json.dumps({"method_name": method, "params": [auth, args]})
    return requests.post(proxy.url + "/api3/json", data=body, timeout=10,
                         headers={"content-type": "application/json"}).json()


def test_a_script_name_sent_with_a_session_token_is_not_judged_by_the_script_name(make_proxy, sg, mock_server,
                                                                                  alpha_artist):
    proxy = make_proxy(auth__groups="artist=passthrough")
    import_all(proxy)
    token = site_as(mock_server, **ARTIST).get_session_token()
    mixed = {"script_name": "sgcache", "script_key": "sgcache-demo-key", "session_token": token}
    before = proxy.service.cache_answers
    post(proxy, mixed)
    assert proxy.service.cache_answers == before
    assert proxy.service.reasons["identity_unknown"] == 1


def test_a_session_token_minted_through_sgcache_carries_its_person(make_proxy, sg, alpha_artist):
    proxy = make_proxy(auth__groups="artist=visible_projects")
    import_all(proxy)
    token = proxy.client(**ARTIST).get_session_token()
    by_token = proxy.client(session_token=token)
    result, how = outcome(proxy, lambda: by_token.find("Shot", [], ["code", "project"]))
    assert how == "cache"
    assert {s["project"]["id"] for s in result} == {alpha_artist["projects"][0]["id"]}
    with proxy.service.cache.engine.connect() as conn:
        stored = conn.execute(proxy.service.cache.tables.state.sessions.select()).mappings().all()
    assert [(r["kind"], r["name"]) for r in stored] == [("person", "artist")]
    assert token not in json.dumps([dict(r) for r in stored], default=str)


def test_a_session_token_sgcache_never_saw_minted_has_no_identity(make_proxy, sg, mock_server, alpha_artist):
    proxy = make_proxy(auth__groups="artist=visible_projects")
    import_all(proxy)
    token = site_as(mock_server, **ARTIST).get_session_token()
    _, how = outcome(proxy, lambda: proxy.client(session_token=token).find("Shot", [], ["code"]))
    assert how == "identity_unknown"


def test_a_script_sudo_as_a_person_gets_the_person_s_view(make_proxy, sg, mock_server, alpha_artist):
    proxy = make_proxy(auth__groups="artist=visible_projects")
    import_all(proxy)
    client = proxy.client(**SCRIPT_AUTH, sudo_as_login="artist")
    result, how = outcome(proxy, lambda: client.find("Shot", [], ["code", "project"]))
    assert how == "cache"
    assert result == site_as(mock_server, **SCRIPT_AUTH, sudo_as_login="artist").find("Shot", [], ["code", "project"])
    assert len(result) < len(alpha_artist["shots"])


# --- visible_projects ------------------------------------------------------------------------------------

VISIBLE_READS = {
    "shots with their project": lambda sg: sg.find("Shot", [], ["code", "project", "sg_sequence"]),
    "assets list shots of visible projects only": lambda sg: sg.find("Asset", [], ["code", "shots"]),
    "projects": lambda sg: sg.find("Project", [], ["name"], include_archived_projects=True),
    "a project filter": lambda sg: sg.find("Shot", [["project", "is", {"type": "Project", "id": 1}]], ["code"]),
    "people": lambda sg: sg.find("HumanUser", [["login", "is", "artist"]], ["login", "name"]),
    "paged with counts": lambda sg: sg.find("Shot", [], ["code"], limit=2, page=2),
    "summarize by project": lambda sg: sg.summarize("Shot", [], [{"field": "id", "type": "count"}],
                                                   grouping=[{"field": "project", "type": "exact",
                                                              "direction": "asc"}]),
}


@pytest.mark.parametrize("name", list(VISIBLE_READS))
def test_visible_projects_answers_equal_the_site_s_for_the_person(make_proxy, sg, mock_server, alpha_artist, name):
    proxy = make_proxy(auth__groups="artist=visible_projects")
    import_all(proxy)
    call = VISIBLE_READS[name]
    result, how = outcome(proxy, lambda: call(proxy.client(**ARTIST)))
    assert how == "cache"
    assert result == call(site_as(mock_server, **ARTIST))


def test_visible_projects_leaves_out_links_to_rows_the_person_cannot_see(make_proxy, sg, alpha_artist):
    proxy = make_proxy(auth__groups="artist=visible_projects")
    import_all(proxy)
    beta = alpha_artist["projects"][1]["id"]
    beta_shots = {s["id"] for s in alpha_artist["shots"] if s["project"]["id"] == beta}
    everything = sg.find("Asset", [], ["shots"])
    assert any(link["id"] in beta_shots for a in everything for link in a["shots"])  # the admin sees them
    seen = proxy.client(**ARTIST).find("Asset", [], ["shots"])
    assert seen and not any(link["id"] in beta_shots for a in seen for link in a["shots"])


@pytest.mark.parametrize("filters", [
    [["sg_sequence", "is", None]],
    [["sg_sequence.Sequence.code", "is", "SQ01"]],
    [["assets", "is_not", None]],
])
def test_visible_projects_passes_link_filters_through(make_proxy, sg, mock_server, alpha_artist, filters):
    proxy = make_proxy(auth__groups="artist=visible_projects")
    import_all(proxy)
    result, how = outcome(proxy, lambda: proxy.client(**ARTIST).find("Shot", filters, ["code"]))
    assert how in ("restricted_link", "restricted_path")
    assert result == site_as(mock_server, **ARTIST).find("Shot", filters, ["code"])


def test_visible_projects_asks_the_site_once_per_person(make_proxy, sg, alpha_artist):
    proxy = make_proxy(auth__groups="artist=visible_projects")
    import_all(proxy)
    client = proxy.client(**ARTIST)
    client.find("Shot", [], ["code"])
    probes = proxy.service.policy.probes
    assert probes >= 2  # the projects, then one probe per cached type
    for _ in range(3):
        client.find("Asset", [], ["code"])
    assert proxy.service.policy.probes == probes


def test_a_visible_projects_caller_s_first_read_fits_a_one_request_site_limit(make_proxy, mock_site, mock_server,
                                                                            alpha_artist):
    # Learning what the caller may see probes each cached type: four at once, past a limit of one,
    # three of them waited for the one turn, and the one that waited past site.busy_wait failed
    # the read with a "busy" fault, though no one else used the site.
    from sgcache.mocksite.server import MockServer

    import_all(make_proxy())
    slow = MockServer(mock_site, latency_ms=200).start()  # a probe holds the turn 200 ms
    try:
        proxy = make_proxy(site_url=slow.url, auth__groups="artist=visible_projects", site__max_concurrent="1")
        result, how = outcome(proxy, lambda: proxy.client(**ARTIST).find("Shot", [], ["code"]))
        assert how == "cache"
        assert proxy.service.policy.probes > 5
        assert result == site_as(mock_server, **ARTIST).find("Shot", [], ["code"])
    finally:
        slow.stop()


# --- the watcher drops what was remembered ---------------------------------------------------------------


def test_a_permission_group_change_on_the_site_reaches_the_proxy_at_once(make_proxy, sg, alpha_artist):
    proxy = make_proxy(auth__groups="artist=visible_projects", auth__verify_ttl="600")
    import_all(proxy)
    watcher = Watcher(proxy.service.cache.engine, proxy.service.cache.tables, Remote(proxy.config.site),
                      proxy.config.watcher)
    watcher.start()
    client = proxy.client(**ARTIST)
    assert outcome(proxy, lambda: client.find("Shot", [], ["code"]))[1] == "cache"
    vendor_group = sg.find_one("PermissionRuleSet", [["code", "is", "vendor"]], ["id"])
    sg.update("HumanUser", person(sg, "artist")["id"], {"permission_rule_set": vendor_group})
    watcher.poll_once()
    time.sleep(proxy.service.STATE_TTL + 0.1)
    assert outcome(proxy, lambda: client.find("Shot", [], ["code"]))[1] == "group_not_listed"


def test_an_event_about_people_drops_remembered_credentials(make_proxy, sg, alpha_artist):
    proxy = make_proxy(auth__verify_ttl="600")
    import_all(proxy)
    watcher = Watcher(proxy.service.cache.engine, proxy.service.cache.tables, Remote(proxy.config.site),
                      proxy.config.watcher)
    watcher.start()
    client = proxy.client()
    client.find("Shot", [], ["code"])
    checks = proxy.service.verifier.checks
    client.find("Shot", [], ["code"])
    assert proxy.service.verifier.checks == checks  # remembered
    sg.update("HumanUser", person(sg, "artist")["id"], {"firstname": "Anne"})
    watcher.poll_once()
    time.sleep(proxy.service.STATE_TTL + 0.1)
    client.find("Shot", [], ["code"])
    assert proxy.service.verifier.checks == checks + 1


# --- credential checks -----------------------------------------------------------------------------------


class _HtmlSite(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (the standard library's name)
        self.rfile.read(int(self.headers.get("content-length") or 0))
        body = b"<html><body>Please sign in</body></html>"
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_an_html_page_with_http_200_does_not_accept_credentials(make_proxy):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HtmlSite)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        proxy = make_proxy(site_url=f"http://127.0.0.1:{server.server_port}")
        auth = {"script_name": "sgcache", "script_key": "sgcache-demo-key"}
        reply = requests.post(proxy.url + "/api3/json", timeout=10, data=json.dumps(
            {"method_name": "read", "params": [auth, {"type": "Shot", "return_fields": ["code"]}]}))
        assert reply.status_code == 200
        assert proxy.service.verifier.remembered(auth) is None
    finally:
        server.shutdown()
        server.server_close()


# --- shadow checks ---------------------------------------------------------------------------------------


def wait_for(predicate, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


@pytest.fixture
def vendor_world(sg, mock_site, world):  # noqa: F811
    """A vendor on project Alpha with one of its shots' tasks assigned."""
    mock_site.add_human(Human(VENDOR["login"], VENDOR["password"], "Vic Vendor", group="vendor"))
    vendor = person(sg, "vendor")
    alpha = world["projects"][0]
    sg.update("Project", alpha["id"], {"users": [vendor, person(sg, "artist")]})
    shot = next(s for s in world["shots"] if s["project"]["id"] == alpha["id"])
    sg.create("Task", {"content": "comp", "project": alpha, "entity": shot, "task_assignees": [vendor]})
    sg.create("Task", {"content": "anim", "project": alpha, "entity": shot})
    return world


def test_a_wrong_policy_is_caught_by_a_shadow_check_and_the_group_switched_off(make_proxy, sg, mock_server,
                                                                               vendor_world):
    # Vendors only see what is assigned to them: visible_projects is the wrong policy for them.
    proxy = make_proxy(auth__groups="vendor=visible_projects", auth__shadow_rate="1")
    import_all(proxy)
    client = proxy.client(**VENDOR)
    wrong, how = outcome(proxy, lambda: client.find("Task", [], ["content"]))
    assert how == "cache"
    assert wrong != site_as(mock_server, **VENDOR).find("Task", [], ["content"])
    wait_for(lambda: proxy.service.shadow.stats().get("vendor", {}).get("different"))
    with proxy.service.cache.engine.connect() as conn:
        tripped = store_state.tripped_groups(conn, proxy.service.cache.tables.state)
    assert tripped["vendor"]["method"] == "read" and tripped["vendor"]["type"] == "Task"
    result, how = outcome(proxy, lambda: client.find("Task", [], ["content"]))
    assert how == "group_switched_off"
    assert result == site_as(mock_server, **VENDOR).find("Task", [], ["content"])
    metrics = requests.get(proxy.url + "/_sgcache/metrics", timeout=10).text
    assert 'sgcache_shadow_mismatches_total{group="vendor"} 1.0' in metrics


def test_a_right_policy_passes_its_shadow_checks(make_proxy, sg, alpha_artist):
    proxy = make_proxy(auth__groups="artist=visible_projects", auth__shadow_rate="1")
    import_all(proxy)
    client = proxy.client(**ARTIST)
    for call in VISIBLE_READS.values():
        call(client)
    wait_for(lambda: sum(proxy.service.shadow.stats().get("artist", {}).values()) >= len(VISIBLE_READS))
    assert proxy.service.shadow.stats()["artist"] == {"same": len(VISIBLE_READS)}


def test_auth_check_reports_a_wrong_policy_and_proves_a_right_one(make_proxy, sg, vendor_world):
    from sgcache.api3.audit import check_person

    proxy = make_proxy()
    import_all(proxy)
    wrong = check_person(proxy.config, "vendor", n=40, mode="visible_projects")
    assert wrong.cached > 0 and not wrong.ok
    assert "verdict: MISMATCH" in wrong.text()
    right = check_person(proxy.config, "artist", n=40, mode="visible_projects")
    assert right.cached > 0 and right.ok, right.text()
    assert "verdict: ok" in right.text()


# --- sgcache auth check / clear, as an operator runs them ------------------------------------------------


def run_sgcache(proxy, *args: str):
    """``python -m sgcache ARGS`` with the proxy's settings in the environment (the key too)."""
    import os
    import subprocess
    import sys

    from conftest import ROOT

    config = proxy.config
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGCACHE_")}
    env.update({"SGCACHE_SITE_BASE_URL": config.site.base_url, "SGCACHE_SITE_SCRIPT_NAME": config.site.script_name,
                "SGCACHE_SITE_API_KEY": config.site.api_key.reveal(), "SGCACHE_DATABASE_URL": config.database.url,
                "SGCACHE_SCHEMA_PATH": str(config.schema.path), "PYTHONPATH": str(ROOT)})
    return subprocess.run([sys.executable, "-m", "sgcache", "--config", os.devnull, *args], env=env,
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_the_auth_check_command_exits_1_on_a_wrong_policy_and_0_on_a_right_one(make_proxy, sg, vendor_world):
    proxy = make_proxy()
    import_all(proxy)
    wrong = run_sgcache(proxy, "auth", "check", "--login", "vendor", "--n", "30", "--mode", "visible_projects")
    assert wrong.returncode == 1, wrong.stderr
    assert "verdict: MISMATCH" in wrong.stdout and "group vendor" in wrong.stdout
    right = run_sgcache(proxy, "auth", "check", "--login", "artist", "--n", "30", "--mode", "visible_projects")
    assert right.returncode == 0, right.stdout + right.stderr
    assert "0 differ from the site" in right.stdout and "verdict: ok" in right.stdout
    assert "sgcache-demo-key" not in right.stdout + right.stderr


def test_the_auth_check_command_names_an_unknown_login(make_proxy, sg, world):  # noqa: F811
    proxy = make_proxy()
    result = run_sgcache(proxy, "auth", "check", "--login", "nobody")
    assert result.returncode == 1
    assert "no active person with login 'nobody'" in result.stderr and "Traceback" not in result.stderr


def test_auth_clear_lets_a_switched_off_group_have_cached_answers_again(make_proxy, sg, alpha_artist):
    proxy = make_proxy(auth__groups="artist=visible_projects")
    import_all(proxy)
    proxy.service.trip_group("artist", {"method": "read", "type": "Shot", "mode": "visible_projects", "at": "now"})
    client = proxy.client(**ARTIST)
    assert outcome(proxy, lambda: client.find("Shot", [], ["code"]))[1] == "group_switched_off"
    status = requests.get(proxy.url + "/_sgcache/status", timeout=10).json()
    assert status["auth"]["switched_off"]["artist"]["type"] == "Shot"
    cleared = run_sgcache(proxy, "auth", "clear", "artist")
    assert cleared.returncode == 0 and "cleared artist" in cleared.stdout, cleared.stderr
    time.sleep(proxy.service.STATE_TTL + 0.1)
    assert outcome(proxy, lambda: client.find("Shot", [], ["code"]))[1] == "cache"


def test_info_says_the_database_is_down_without_saying_why(make_proxy):
    proxy = make_proxy(database_url="postgresql://postgres:hunter2@127.0.0.1:1/nothing", migrated=False)
    reply = requests.post(proxy.url + "/api3/json", data=json.dumps({"method_name": "info", "params": []}),
                          timeout=10)
    payload = reply.json()
    sgcache_info = payload.get("results", payload)["sgcache"]
    assert sgcache_info["database"] == "down"
    assert "database_problem" not in sgcache_info
    assert "127.0.0.1:1" not in reply.text and "hunter2" not in reply.text and "refused" not in reply.text
