"""Differential test of the policy: random reads as each demo person equal the stand-in's answers.

The stand-in holds the scale-1 studio with its permission groups (admin, manager, artist and
vendor logins, see docs/mocksite.rst). A proxy caches it with ``auth.groups`` mapping admin and
manager to ``all``, artist to ``visible_projects`` and vendor to ``passthrough``. Random finds
and summaries (``sgcache.api3.audit.random_requests``) are sent with the real client, as each
person logged in and as sgcache's script with ``sudo_as_login`` that person, to the proxy and
straight to the stand-in: every result, or fault, must be the same. The share of requests
answered from the cache per group goes to the run's summary.

``SGCACHE_AUTH_DIFF_EXAMPLES`` sets the number of requests per person and way of logging in
(default 60).
"""

from __future__ import annotations

import os
import tempfile
import zlib
from collections import Counter
from pathlib import Path

import pytest
import shotgun_api3
from conftest import ROOT, SCRIPT_AUTH, imported_proxy, report, schema_copy

from sgcache.api3.audit import random_requests
from sgcache.mocksite import MockSite
from sgcache.mocksite.server import MockServer
from sgcache.mocksite.studio import build_studio

EXAMPLES = int(os.environ.get("SGCACHE_AUTH_DIFF_EXAMPLES", "60"))
CACHE_SCHEMA = ROOT / "schema" / "demo.yml"
GROUPS = "admin=all,manager=all,artist=visible_projects,vendor=passthrough"
PEOPLE = {"admin": "admin-password", "manager": "manager-password", "artist": "artist-password",
          "vendor": "vendor-password"}


@pytest.fixture(scope="module")
def server(site_schema):
    tmp = Path(tempfile.mkdtemp(prefix="sgcache-authdiff-"))
    site = MockSite(schema_copy(site_schema), file_dir=tmp / "files")
    build_studio(site, scale=1, seed=11)
    server = MockServer(site).start()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def proxy_for(request, server, pg_database):
    tmp = Path(tempfile.mkdtemp(prefix="sgcache-authdiff-cache-"))
    with imported_proxy(request.param, tmp, server.url, CACHE_SCHEMA, pg_database, auth__groups=GROUPS,
                        auth__shadow_rate="0") as proxy:
        yield request.param, proxy


def ask(client: shotgun_api3.Shotgun, method: str, args: dict):
    """The client's own JSON-RPC call (what find() and summarize() send), result or fault."""
    try:
        return "ok", client._call_rpc(method, args)
    except shotgun_api3.Fault as e:
        return "fault", str(e)


@pytest.mark.parametrize("login", list(PEOPLE))
@pytest.mark.parametrize("how", ["login", "sudo"])
def test_random_reads_as_each_person_equal_the_site_s(proxy_for, server, login, how):
    backend, proxy = proxy_for
    if how == "login":
        auth = {"login": login, "password": PEOPLE[login]}
    else:
        auth = {**SCRIPT_AUTH, "sudo_as_login": login}
    through = proxy.client(**auth)
    direct = shotgun_api3.Shotgun(server.url, **auth)
    group = login  # each demo login is in the group of the same name
    state = proxy.service.read_state()
    types = sorted(state.ready & {"Shot", "Asset", "Task", "Version", "Sequence", "Project", "HumanUser",
                                  "PublishedFile", "Playlist", "Note", "Step", "TimeLog"})
    service = proxy.service
    requests = random_requests(service.cache.engine, service.cache.tables, types, EXAMPLES,
                               seed=zlib.crc32(f"{login} {how}".encode()))
    before = service.cache_answers
    differences = []
    for method, args in requests:
        ours, theirs = ask(through, method, args), ask(direct, method, args)
        if ours != theirs:
            differences.append((method, args["type"], args.get("filters")))
    cached = service.cache_answers - before
    report(f"auth differential ({backend}): {login} by {how} (group {group}): {cached} of {len(requests)} "
           f"answered from the cache, {len(differences)} differences")
    assert differences == []
    if group == "vendor":
        assert cached == 0
    else:
        assert cached > 0


def test_each_demo_person_is_in_the_group_of_the_same_name(server):
    sg = shotgun_api3.Shotgun(server.url, **SCRIPT_AUTH)
    people = sg.find("HumanUser", [["login", "in", list(PEOPLE)]], ["login", "permission_rule_set"])
    codes = {p["id"]: p for p in sg.find("PermissionRuleSet", [], ["code"])}
    found = Counter()
    for p in people:
        found[p["login"]] = codes[p["permission_rule_set"]["id"]]["code"]
    assert dict(found) == {login: login for login in PEOPLE}
