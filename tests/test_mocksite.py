"""The stand-in Shotgun site, driven over real HTTP by the real ``shotgun_api3`` client.

Every test talks to a running :class:`~sgcache.mocksite.server.MockServer` the way a script (or the
cache) would; site methods are used only to load data quickly (``site.load_entity``), and the
``/_mock/`` admin routes only to inject failures and to count the calls that reached the site.
The event log has its own file, ``test_mocksite_events.py``.

Where the stand-in deviates from a hosted site (PROTOCOL.md / EVENTLOG.md), the test says so
and is marked ``xfail(strict=True, reason="BUG: ...")``.
"""

from __future__ import annotations

import datetime as dt
import re
import socket
import threading
import time
from types import SimpleNamespace

import pytest
import requests
import shotgun_api3
from conftest import schema_copy
from shotgun_api3 import AuthenticationFault, Fault, ProtocolError

from sgcache.mocksite import MockSite
from sgcache.mocksite.server import MockServer

SCRIPT = {"script_name": "sgcache", "api_key": "sgcache-demo-key"}
QUIET = {"script_name": "quiet-script", "api_key": "quiet-demo-key"}
HUMAN = {"login": "artist", "password": "artist-password"}
WIRE_AUTH = {"script_name": "sgcache", "script_key": "sgcache-demo-key"}
WIRE_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
#: the fixed "now" of the sites built with a fake clock: Wednesday 13 March 2024, noon UTC
NOW = dt.datetime(2024, 3, 13, 12, 0, 0, tzinfo=dt.UTC)


# --- helpers -----------------------------------------------------------------------------------


class FakeClock:
    """A clock for MockSite(clock=...): ``site.clock()`` and ``site.emu.clock()`` both read it."""

    def __init__(self, now: dt.datetime = NOW):
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def stop_in_background(server: MockServer) -> None:
    """MockServer.stop() waits up to 0.5 s for werkzeug's poll loop; don't make every test wait."""
    threading.Thread(target=server.stop, daemon=True).start()


def connect(server: MockServer, url: str | None = None, **auth) -> shotgun_api3.Shotgun:
    """A fresh client, not yet connected, with a short timeout (set before the connection exists)."""
    sg = shotgun_api3.Shotgun(url or server.url, connect=False, **(auth or SCRIPT))
    sg.config.timeout_secs = 5
    return sg


def link(entity_type: str, entity_id: int) -> dict:
    return {"type": entity_type, "id": entity_id}


def ids(rows: list[dict]) -> list[int]:
    return [r["id"] for r in rows]


def codes(rows: list[dict]) -> list[str]:
    return [r["code"] for r in rows]


def rpc(server: MockServer, method: str, params: list, path: str = "/api3/json") -> requests.Response:
    """One JSON-RPC call built by hand (what shotgun_api3 would send)."""
    return requests.post(server.url + path, json={"method_name": method, "params": params}, timeout=5)


def stats(server: MockServer) -> dict:
    return requests.get(server.url + "/_mock/stats", timeout=5).json()


def calls(server: MockServer, method: str) -> int:
    return stats(server)["calls"].get(method, 0)


def inject(server: MockServer, **body) -> None:
    response = requests.post(server.url + "/_mock/failure", json=body, timeout=5)
    assert response.status_code == 200, response.text


def api_user_id(sg, name: str = "sgcache") -> int:
    return sg.find_one("ApiUser", [["firstname", "is", name]])["id"]


def human_id(sg, login: str = "artist") -> int:
    return sg.find_one("HumanUser", [["login", "is", login]])["id"]


def max_event_id(sg) -> int:
    last = sg.find_one("EventLogEntry", [], ["id"], order=[{"field_name": "id", "direction": "desc"}])
    return last["id"] if last else 0


def utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC)


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def mock_server(mock_site):
    """conftest's mock_server, stopped in the background (a blocking stop costs 0.5 s a test)."""
    server = MockServer(mock_site).start()
    yield server
    stop_in_background(server)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def clocked_server(site_schema, tmp_path, clock):
    """An empty site whose clock is ``clock`` (now = NOW until a test advances it)."""
    site = MockSite(schema_copy(site_schema), file_dir=tmp_path / "files", clock=clock)
    server = MockServer(site).start()
    yield server
    stop_in_background(server)


@pytest.fixture
def csg(clocked_server):
    return connect(clocked_server)


@pytest.fixture
def studio(mock_server):
    """A small project, loaded directly (no events):

    ======  ========  ======  ======  ================  ===========
    shot    sequence  cut_in  status  description       assets
    ======  ========  ======  ======  ================  ===========
    SH010   SQ010     10      ip      Hero shot         Bob, Car
    SH020   SQ010     20      fin     background plate  Car
    sh030   SQ020     None    wtg     None
    SH040   None      5       ip      Hero crowd
    ======  ========  ======  ======  ================  ===========

    SQ020 is created before SQ010 (lower id, higher name). Tasks: Anim (SH010, assigned to
    Ann Artist), Comp (SH020), light (asset Bob).
    """
    site = mock_server.site
    load = site.load_entity
    project = link("Project", load("Project", {"name": "Alpha"}))
    sq20 = link("Sequence", load("Sequence", {"code": "SQ020", "project": project}))
    sq10 = link("Sequence", load("Sequence", {"code": "SQ010", "project": project}))
    bob = link("Asset", load("Asset", {"code": "Bob", "sg_asset_type": "Character", "project": project}))
    car = link("Asset", load("Asset", {"code": "Car", "sg_asset_type": "Vehicle", "project": project}))
    sh10 = link("Shot", load("Shot", {"code": "SH010", "sg_sequence": sq10, "sg_cut_in": 10, "sg_status_list": "ip",
                                      "description": "Hero shot", "assets": [bob, car], "project": project}))
    sh20 = link("Shot", load("Shot", {"code": "SH020", "sg_sequence": sq10, "sg_cut_in": 20, "sg_status_list": "fin",
                                      "description": "background plate", "assets": [car], "project": project}))
    sh30 = link("Shot", load("Shot", {"code": "sh030", "sg_sequence": sq20, "sg_status_list": "wtg",
                                      "project": project}))
    sh40 = link("Shot", load("Shot", {"code": "SH040", "sg_cut_in": 5, "sg_status_list": "ip",
                                      "description": "Hero crowd", "project": project}))
    artist = link("HumanUser", site.humans["artist"].id)
    anim = link("Task", load("Task", {"content": "Anim", "entity": sh10, "project": project,
                                      "task_assignees": [artist]}))
    comp = link("Task", load("Task", {"content": "Comp", "entity": sh20, "project": project}))
    light = link("Task", load("Task", {"content": "light", "entity": bob, "project": project}))
    return SimpleNamespace(project=project, sq10=sq10, sq20=sq20, bob=bob, car=car, sh10=sh10, sh20=sh20,
                           sh30=sh30, sh40=sh40, artist=artist, anim=anim, comp=comp, light=light)


def shot_codes(sg, filters, **kwargs) -> list[str]:
    return codes(sg.find("Shot", filters, ["code"], **kwargs))


# === 1. info ===================================================================================


def test_info_reports_version_page_size_and_no_direct_uploads(sg):
    info = sg.info()
    version = info["version"][:3]
    assert all(isinstance(v, int) and not isinstance(v, bool) for v in version)
    assert list(version) >= [8, 5, 0]
    assert info["api_max_entities_per_page"] == 500
    assert info["s3_direct_uploads_enabled"] is False


def test_info_needs_no_credentials_and_answers_a_bare_dict(mock_server):
    response = rpc(mock_server, "info", [])
    assert response.status_code == 200
    body = response.json()
    assert "results" not in body
    assert body["api_max_entities_per_page"] == 500


def test_server_caps_turn_on_the_features_of_a_modern_site(sg):
    caps = sg.server_caps
    assert caps.version >= (8, 5, 0)
    assert caps.ensure_paging_info_without_counts_support() is True
    assert caps.ensure_return_image_urls_support() is True
    caps.ensure_include_archived_projects()  # raises ShotgunError on an older site


# === 2. read ===================================================================================


def test_find_returns_type_and_id_of_every_match(sg, studio):
    assert sg.find("Shot", [["code", "is", "SH010"]]) == [{"type": "Shot", "id": studio.sh10["id"]}]


def test_nested_or_and_groups_in_dict_form(sg, studio):
    filters = [
        ["project", "is", studio.project],
        {"filter_operator": "any", "filters": [
            ["code", "is", "SH020"],
            {"filter_operator": "all", "filters": [["sg_status_list", "is", "ip"], ["sg_cut_in", "less_than", 8]]},
        ]},
    ]
    assert shot_codes(sg, filters) == ["SH020", "SH040"]


def test_top_level_filter_operator_any(sg, studio):
    assert shot_codes(sg, [["code", "is", "SH010"], ["sg_cut_in", "is", 20]], filter_operator="any") == \
        ["SH010", "SH020"]


def test_top_level_filter_operator_all_is_the_default(sg, studio):
    assert shot_codes(sg, [["sg_status_list", "is", "ip"], ["sg_cut_in", "greater_than", 6]]) == ["SH010"]


def test_deep_link_filter_one_hop(sg, studio):
    assert shot_codes(sg, [["sg_sequence.Sequence.code", "is", "SQ010"]]) == ["SH010", "SH020"]


def test_deep_link_filter_two_hops(sg, studio, mock_server):
    other = mock_server.site.load_entity("Project", {"name": "Other"})
    seq = mock_server.site.load_entity("Sequence", {"code": "SQ900", "project": link("Project", other)})
    mock_server.site.load_entity("Shot", {"code": "SH900", "sg_sequence": link("Sequence", seq)})
    assert shot_codes(sg, [["sg_sequence.Sequence.project.Project.name", "is", "Other"]]) == ["SH900"]
    assert shot_codes(sg, [["sg_sequence.Sequence.project.Project.name", "is", "Alpha"]]) == \
        ["SH010", "SH020", "sh030"]


def test_deep_return_fields_one_and_two_hops(sg, studio):
    rows = sg.find("Shot", [["id", "in", [studio.sh10["id"], studio.sh40["id"]]]],
                   ["sg_sequence.Sequence.code", "sg_sequence.Sequence.project.Project.name"])
    assert rows == [
        {"type": "Shot", "id": studio.sh10["id"], "sg_sequence.Sequence.code": "SQ010",
         "sg_sequence.Sequence.project.Project.name": "Alpha"},
        {"type": "Shot", "id": studio.sh40["id"], "sg_sequence.Sequence.code": None,
         "sg_sequence.Sequence.project.Project.name": None},
    ]


def test_link_name_is_the_identifier_field_of_the_linked_type(sg, studio):
    shot = sg.find_one("Shot", [["id", "is", studio.sh10["id"]]], ["tasks", "sg_sequence", "project"])
    assert shot["tasks"] == [{"type": "Task", "id": studio.anim["id"], "name": "Anim"}]  # Task: content
    assert shot["sg_sequence"] == {"type": "Sequence", "id": studio.sq10["id"], "name": "SQ010"}  # code
    assert shot["project"] == {"type": "Project", "id": studio.project["id"], "name": "Alpha"}  # name
    task = sg.find_one("Task", [["id", "is", studio.anim["id"]]], ["task_assignees"])
    assert task["task_assignees"] == [{"type": "HumanUser", "id": studio.artist["id"], "name": "Ann Artist"}]


def test_link_name_of_an_api_user_is_its_firstname(sg):
    shot = sg.create("Shot", {"code": "SH1"}, ["created_by"])
    assert shot["created_by"] == {"type": "ApiUser", "id": api_user_id(sg), "name": "sgcache"}


def test_link_name_follows_a_rename_of_the_linked_entity(sg, studio):
    sg.update("Sequence", studio.sq10["id"], {"code": "SQ010_renamed"})
    shot = sg.find_one("Shot", [["id", "is", studio.sh10["id"]]], ["sg_sequence"])
    assert shot["sg_sequence"]["name"] == "SQ010_renamed"


def test_limit_returns_the_first_rows_by_id(sg, studio):
    assert ids(sg.find("Shot", [], limit=2)) == [studio.sh10["id"], studio.sh20["id"]]


def test_page_with_limit_returns_that_page(sg, studio):
    assert ids(sg.find("Shot", [], limit=2, page=2)) == [studio.sh30["id"], studio.sh40["id"]]
    assert sg.find("Shot", [], limit=2, page=3) == []


def _load_shots(site, count: int) -> list[int]:
    return [site.load_entity("Shot", {"code": f"S{i:05d}"}) for i in range(count)]


def test_find_over_500_entities_pages_without_counts(sg, mock_server):
    expected = _load_shots(mock_server.site, 1201)
    before = calls(mock_server, "read")
    rows = sg.find("Shot", [], ["code"])
    assert ids(rows) == expected
    assert rows[1200]["code"] == "S01200"
    assert calls(mock_server, "read") - before == 3  # pages of 500, 500 and 201


def test_find_over_500_entities_pages_with_counts_on_an_older_site(sg, mock_server):
    expected = _load_shots(mock_server.site, 1201)
    sg.server_caps.version = (7, 0, 0)  # before 7.4.0 the client asks return_paging_info
    assert sg.server_caps.ensure_paging_info_without_counts_support() is False
    before = calls(mock_server, "read")
    assert ids(sg.find("Shot", [], ["code"])) == expected
    assert calls(mock_server, "read") - before == 3


def test_find_with_a_limit_over_one_page(sg, mock_server):
    expected = _load_shots(mock_server.site, 800)
    assert ids(sg.find("Shot", [], limit=700)) == expected[:700]


def test_paging_info_without_counts_on_the_wire(mock_server, studio):
    args = {"type": "Shot", "return_fields": ["code"], "filters": {"logical_operator": "and", "conditions": []},
            "paging": {"entities_per_page": 3, "current_page": 1}, "return_paging_info_without_counts": True}
    first = rpc(mock_server, "read", [WIRE_AUTH, args]).json()["results"]
    assert len(first["entities"]) == 3
    assert first["paging_info"] == {"has_next_page": True}
    args["paging"]["current_page"] = 2
    second = rpc(mock_server, "read", [WIRE_AUTH, args]).json()["results"]
    assert [e["code"] for e in second["entities"]] == ["SH040"]
    assert second["paging_info"] == {"has_next_page": False}


def test_paging_info_with_counts_on_the_wire(mock_server, studio):
    args = {"type": "Shot", "return_fields": ["code"], "filters": {"logical_operator": "and", "conditions": []},
            "paging": {"entities_per_page": 3, "current_page": 1}, "return_paging_info": True}
    result = rpc(mock_server, "read", [WIRE_AUTH, args]).json()["results"]
    assert result["paging_info"]["entity_count"] == 4
    assert len(result["entities"]) == 3


def test_default_order_is_by_id(sg, mock_server):
    made = [mock_server.site.load_entity("Shot", {"code": code}) for code in ("Z", "A", "M")]
    assert ids(sg.find("Shot", [])) == made
    assert shot_codes(sg, []) == ["Z", "A", "M"]


def test_sort_by_text_ascending_ignores_case(sg, studio):
    assert shot_codes(sg, [], order=[{"field_name": "code", "direction": "asc"}]) == \
        ["SH010", "SH020", "sh030", "SH040"]


def test_sort_descending(sg, studio):
    assert shot_codes(sg, [], order=[{"field_name": "code", "direction": "desc"}]) == \
        ["SH040", "sh030", "SH020", "SH010"]


def test_sort_puts_nulls_last_ascending(sg, studio):
    assert shot_codes(sg, [], order=[{"field_name": "sg_cut_in", "direction": "asc"}]) == \
        ["SH040", "SH010", "SH020", "sh030"]


def test_sort_puts_nulls_first_descending(sg, studio):
    assert shot_codes(sg, [], order=[{"field_name": "sg_cut_in", "direction": "desc"}]) == \
        ["sh030", "SH020", "SH010", "SH040"]


def test_multi_key_sort_first_key_wins(sg, studio):
    order = [{"field_name": "sg_status_list", "direction": "asc"}, {"field_name": "sg_cut_in", "direction": "desc"}]
    assert shot_codes(sg, [], order=order) == ["SH020", "SH010", "SH040", "sh030"]


def test_sort_by_entity_field_uses_the_linked_name(sg, studio):
    # SQ020 has the lower id; by name SQ010 comes first. Ties by id; no sequence last.
    assert shot_codes(sg, [], order=[{"field_name": "sg_sequence", "direction": "asc"}]) == \
        ["SH010", "SH020", "sh030", "SH040"]


def test_sort_with_a_page_slices_the_sorted_rows(sg, studio):
    order = [{"field_name": "code", "direction": "desc"}]
    assert codes(sg.find("Shot", [], ["code"], order=order, limit=2, page=2)) == ["SH020", "SH010"]


def test_retired_only_returns_retired_entities(sg, studio):
    sg.delete("Shot", studio.sh20["id"])
    assert shot_codes(sg, [], retired_only=True) == ["SH020"]
    assert shot_codes(sg, []) == ["SH010", "sh030", "SH040"]


def test_include_archived_projects_false_hides_entities_of_archived_projects(sg, mock_server):
    site = mock_server.site
    live = link("Project", site.load_entity("Project", {"name": "Live"}))
    old = link("Project", site.load_entity("Project", {"name": "Old", "archived": True}))
    site.load_entity("Shot", {"code": "LIVE", "project": live})
    site.load_entity("Shot", {"code": "OLD", "project": old})
    site.load_entity("Shot", {"code": "NOPROJECT"})
    assert shot_codes(sg, [], include_archived_projects=False) == ["LIVE", "NOPROJECT"]
    assert shot_codes(sg, []) == ["LIVE", "OLD", "NOPROJECT"]


def test_find_one_returns_the_first_match_or_none(sg, studio):
    assert sg.find_one("Shot", [["sg_status_list", "is", "ip"]], ["code"]) == \
        {"type": "Shot", "id": studio.sh10["id"], "code": "SH010"}
    assert sg.find_one("Shot", [["code", "is", "nothing"]]) is None


def test_values_come_back_in_wire_types(sg, studio, mock_server):
    body = rpc(mock_server, "read", [WIRE_AUTH, {
        "type": "Shot", "return_fields": ["created_at", "sg_cut_in", "code"],
        "filters": {"logical_operator": "and", "conditions": [
            {"path": "id", "relation": "is", "values": [studio.sh10["id"]]}]},
        "paging": {"entities_per_page": 500, "current_page": 1}}]).json()
    entity = body["results"]["entities"][0]
    assert WIRE_DATETIME.match(entity["created_at"])
    assert entity["sg_cut_in"] == 10 and entity["code"] == "SH010"


def test_id_conditions_narrow_only_when_all_must_hold(sg, studio):
    assert shot_codes(sg, [["id", "is", studio.sh10["id"]], ["code", "is", "SH020"]], filter_operator="any") == \
        ["SH010", "SH020"]
    assert shot_codes(sg, [["id", "greater_than", studio.sh30["id"]], ["code", "is", "SH010"]],
                      filter_operator="any") == ["SH010", "SH040"]
    assert shot_codes(sg, [["id", "is", studio.sh10["id"]], ["code", "is", "SH020"]]) == []


@pytest.mark.parametrize("relation, values, expected", [
    ("less_than", ["sh30"], ["SH010", "SH020"]),
    ("greater_than", ["sh20"], ["sh030", "SH040"]),
    ("between", ["sh20", "sh30"], ["SH020", "sh030"]),
    ("in", ["sh40", "sh10"], ["SH010", "SH040"]),
    ("not_in", ["sh40", "sh10"], ["SH020", "sh030"]),
    ("is_not", ["sh10"], ["SH020", "sh030", "SH040"]),
])
def test_id_relations(sg, studio, relation, values, expected):
    wire_values = [getattr(studio, v)["id"] for v in values]
    value = [wire_values] if relation in ("in", "not_in") else wire_values
    assert shot_codes(sg, [["id", relation, *value]]) == expected


def test_deep_path_through_a_link_of_another_type_is_none(sg, studio):
    tasks = sg.find("Task", [], ["content", "entity.Shot.code", "entity.Asset.code"])
    assert [(t["content"], t["entity.Shot.code"], t["entity.Asset.code"]) for t in tasks] == [
        ("Anim", "SH010", None), ("Comp", "SH020", None), ("light", None, "Bob")]
    assert [t["content"] for t in sg.find("Task", [["entity.Asset.code", "is", "Bob"]], ["content"])] == ["light"]


def test_deep_path_to_a_retired_entity_is_none(sg, studio):
    sg.delete("Sequence", studio.sq10["id"])
    shot = sg.find_one("Shot", [["id", "is", studio.sh10["id"]]], ["sg_sequence.Sequence.code"])
    assert shot["sg_sequence.Sequence.code"] is None
    assert shot_codes(sg, [["sg_sequence.Sequence.code", "is", "SQ010"]]) == []


def test_sort_by_a_deep_field(sg, studio):
    order = [{"field_name": "sg_sequence.Sequence.code", "direction": "desc"}, {"field_name": "code"}]
    assert shot_codes(sg, [], order=order) == ["SH040", "sh030", "SH010", "SH020"]


def test_sorted_pages_follow_a_write_between_pages(sg, studio):
    order = [{"field_name": "code", "direction": "asc"}]
    assert codes(sg.find("Shot", [], ["code"], order=order, limit=2, page=1)) == ["SH010", "SH020"]
    sg.update("Shot", studio.sh40["id"], {"code": "SH000"})
    assert codes(sg.find("Shot", [], ["code"], order=order, limit=2, page=1)) == ["SH000", "SH010"]
    assert codes(sg.find("Shot", [], ["code"], order=order, limit=2, page=2)) == ["SH020", "sh030"]


def test_entities_per_page_over_the_page_size_is_a_fault(mock_server, studio):
    body = rpc(mock_server, "read", [WIRE_AUTH, {"type": "Shot", "paging": {"entities_per_page": 501,
                                                                            "current_page": 1}}]).json()
    assert body["exception"] is True and "500" in body["message"]


# === 3. relations ==============================================================================

TEXT_CASES = [
    ("is", [["code", "is", "sh010"]], ["SH010"]),
    ("is_not", [["code", "is_not", "SH010"]], ["SH020", "sh030", "SH040"]),
    ("contains", [["description", "contains", "HERO"]], ["SH010", "SH040"]),
    ("not_contains_matches_null", [["description", "not_contains", "hero"]], ["SH020", "sh030"]),
    ("starts_with", [["description", "starts_with", "hero "]], ["SH010", "SH040"]),
    ("ends_with", [["description", "ends_with", "SHOT"]], ["SH010"]),
    ("in", [["code", "in", ["sh010", "SH030"]]], ["SH010", "sh030"]),
    ("not_in", [["code", "not_in", ["sh010", "SH030"]]], ["SH020", "SH040"]),
    ("is_null", [["description", "is", None]], ["sh030"]),
    ("list_field_in", [["sg_status_list", "in", ["IP", "fin"]]], ["SH010", "SH020", "SH040"]),
]


@pytest.mark.parametrize("filters, expected", [c[1:] for c in TEXT_CASES], ids=[c[0] for c in TEXT_CASES])
def test_text_relations_are_case_insensitive(sg, studio, filters, expected):
    assert shot_codes(sg, filters) == expected


NUMBER_CASES = [
    ("less_than_skips_null", [["sg_cut_in", "less_than", 10]], ["SH040"]),
    ("greater_than_skips_null", [["sg_cut_in", "greater_than", 5]], ["SH010", "SH020"]),
    ("between_is_inclusive", [["sg_cut_in", "between", 5, 10]], ["SH010", "SH040"]),
    ("not_between_skips_null", [["sg_cut_in", "not_between", 5, 10]], ["SH020"]),
    ("in", [["sg_cut_in", "in", [10, 20]]], ["SH010", "SH020"]),
    ("not_in_matches_null", [["sg_cut_in", "not_in", [10, 20]]], ["sh030", "SH040"]),
    ("is_null", [["sg_cut_in", "is", None]], ["sh030"]),
    ("is_not_null", [["sg_cut_in", "is_not", None]], ["SH010", "SH020", "SH040"]),
    ("is_not_value_matches_null", [["sg_cut_in", "is_not", 10]], ["SH020", "sh030", "SH040"]),
]


@pytest.mark.parametrize("filters, expected", [c[1:] for c in NUMBER_CASES], ids=[c[0] for c in NUMBER_CASES])
def test_number_relations_and_null(sg, studio, filters, expected):
    assert shot_codes(sg, filters) == expected


def _entity_cases(st):
    return {
        "is": ([["sg_sequence", "is", st.sq10]], ["SH010", "SH020"]),
        "is_not_matches_null": ([["sg_sequence", "is_not", st.sq10]], ["sh030", "SH040"]),
        "is_null": ([["sg_sequence", "is", None]], ["SH040"]),
        "in_several_values": ([["sg_sequence", "in", [st.sq10, st.sq20]]], ["SH010", "SH020", "sh030"]),
        "not_in": ([["sg_sequence", "not_in", [st.sq10]]], ["sh030", "SH040"]),
        "type_is": ([["sg_sequence", "type_is", "Sequence"]], ["SH010", "SH020", "sh030"]),
        "type_is_not": ([["sg_sequence", "type_is_not", "Sequence"]], ["SH040"]),
        "name_is": ([["sg_sequence", "name_is", "sq010"]], ["SH010", "SH020"]),
        "name_contains": ([["sg_sequence", "name_contains", "Q02"]], ["sh030"]),
        "name_not_contains": ([["sg_sequence", "name_not_contains", "010"]], ["sh030", "SH040"]),
        "name_starts_with": ([["sg_sequence", "name_starts_with", "sq0"]], ["SH010", "SH020", "sh030"]),
        "name_ends_with": ([["sg_sequence", "name_ends_with", "20"]], ["sh030"]),
    }


ENTITY_CASES = ["is", "is_not_matches_null", "is_null", "in_several_values", "not_in", "type_is", "type_is_not",
                "name_is", "name_contains", "name_not_contains", "name_starts_with", "name_ends_with"]


@pytest.mark.parametrize("case", ENTITY_CASES)
def test_entity_relations(sg, studio, case):
    filters, expected = _entity_cases(studio)[case]
    assert shot_codes(sg, filters) == expected


def test_entity_name_relation_uses_each_linked_types_identifier(sg, studio):
    # Task.entity links a Shot (code) or an Asset (code); Task.task_assignees a HumanUser (name).
    tasks = sg.find("Task", [["entity", "name_is", "BOB"]], ["content"])
    assert [t["content"] for t in tasks] == ["light"]
    tasks = sg.find("Task", [["task_assignees", "name_contains", "ann art"]], ["content"])
    assert [t["content"] for t in tasks] == ["Anim"]


def _multi_cases(st):
    return {
        "is": ([["assets", "is", st.bob]], ["SH010"]),
        "is_not": ([["assets", "is_not", st.bob]], ["SH020", "sh030", "SH040"]),
        "is_null": ([["assets", "is", None]], ["sh030", "SH040"]),
        "in": ([["assets", "in", [st.bob, st.car]]], ["SH010", "SH020"]),
        "type_is": ([["assets", "type_is", "Asset"]], ["SH010", "SH020"]),
        "name_contains": ([["assets", "name_contains", "CA"]], ["SH010", "SH020"]),
        "name_is": ([["assets", "name_is", "bob"]], ["SH010"]),
    }


@pytest.mark.parametrize("case", ["is", "is_not", "is_null", "in", "type_is", "name_contains", "name_is"])
def test_multi_entity_relations(sg, studio, case):
    filters, expected = _multi_cases(studio)[case]
    assert shot_codes(sg, filters) == expected


def test_filter_never_writes_names_into_stored_links(sg, studio):
    """mockgun stored ``name`` into links a filter touched; the stand-in must not."""
    sg.find("Shot", [["sg_sequence", "name_is", "SQ010"]])
    sg.update("Sequence", studio.sq10["id"], {"code": "NEW"})
    assert shot_codes(sg, [["sg_sequence", "name_is", "SQ010"]]) == []
    assert shot_codes(sg, [["sg_sequence", "name_is", "new"]]) == ["SH010", "SH020"]


# Relative dates, on a site whose clock says NOW (Wednesday 2024-03-13 12:00 UTC; weeks start Sunday).
DUE_DATES = {
    "today": "2024-03-13", "yesterday": "2024-03-12", "week_ago": "2024-03-06", "ten_ago": "2024-03-03",
    "tomorrow": "2024-03-14", "sunday": "2024-03-10", "last_saturday": "2024-03-09",
    "next_month": "2024-04-02", "last_year": "2023-12-31", "none": None,
}
DATE_CASES = [
    ("in_last_7_days", ["due_date", "in_last", 7, "DAY"],
     ["today", "yesterday", "week_ago", "sunday", "last_saturday"]),
    ("in_next_1_day", ["due_date", "in_next", 1, "DAY"], ["today", "tomorrow"]),
    ("not_in_last_7_days_skips_null", ["due_date", "not_in_last", 7, "DAY"],
     ["ten_ago", "tomorrow", "next_month", "last_year"]),
    ("in_last_1_month", ["due_date", "in_last", 1, "MONTH"],
     ["today", "yesterday", "week_ago", "ten_ago", "sunday", "last_saturday"]),
    ("in_calendar_day_today", ["due_date", "in_calendar_day", 0], ["today"]),
    ("in_calendar_day_yesterday", ["due_date", "in_calendar_day", -1], ["yesterday"]),
    ("in_calendar_week_this", ["due_date", "in_calendar_week", 0], ["today", "yesterday", "tomorrow", "sunday"]),
    ("in_calendar_week_last", ["due_date", "in_calendar_week", -1], ["week_ago", "ten_ago", "last_saturday"]),
    ("in_calendar_month_this", ["due_date", "in_calendar_month", 0],
     ["today", "yesterday", "week_ago", "ten_ago", "tomorrow", "sunday", "last_saturday"]),
    ("in_calendar_month_next", ["due_date", "in_calendar_month", 1], ["next_month"]),
    ("in_calendar_year_last", ["due_date", "in_calendar_year", -1], ["last_year"]),
]


@pytest.fixture
def due_tasks(clocked_server):
    for name, due in DUE_DATES.items():
        clocked_server.site.load_entity("Task", {"content": name, "due_date": due})


@pytest.mark.parametrize("condition, expected", [c[1:] for c in DATE_CASES], ids=[c[0] for c in DATE_CASES])
def test_date_relative_relations(csg, due_tasks, condition, expected):
    found = [t["content"] for t in csg.find("Task", [condition], ["content"])]
    assert sorted(found) == sorted(expected)


@pytest.fixture
def timed_playlists(clocked_server):
    """Playlists whose sg_date_and_time is 2 h ago, 30 h ago, 3 h ahead and 8 days ago."""
    for name, hours in {"2h_ago": -2, "30h_ago": -30, "3h_ahead": 3, "8d_ago": -192}.items():
        clocked_server.site.load_entity("Playlist", {"code": name, "sg_date_and_time": NOW + dt.timedelta(hours=hours)})
    clocked_server.site.load_entity("Playlist", {"code": "never"})


def test_date_time_in_calendar_day(csg, timed_playlists):
    assert sorted(codes(csg.find("Playlist", [["sg_date_and_time", "in_calendar_day", 0]], ["code"]))) == \
        ["2h_ago", "3h_ahead"]
    assert codes(csg.find("Playlist", [["sg_date_and_time", "in_calendar_day", -1]], ["code"])) == ["30h_ago"]


def test_date_time_absolute_comparisons(csg, timed_playlists):
    rows = csg.find("Playlist", [["sg_date_and_time", "greater_than", NOW - dt.timedelta(hours=3)]], ["code"])
    assert sorted(codes(rows)) == ["2h_ago", "3h_ahead"]
    rows = csg.find("Playlist", [["sg_date_and_time", "between", NOW - dt.timedelta(days=2), NOW]], ["code"])
    assert sorted(codes(rows)) == ["2h_ago", "30h_ago"]


def test_date_time_in_last_and_in_next(csg, timed_playlists):
    assert codes(csg.find("Playlist", [["sg_date_and_time", "in_last", 1, "DAY"]], ["code"])) == ["2h_ago"]
    assert codes(csg.find("Playlist", [["sg_date_and_time", "in_last", 3, "HOUR"]], ["code"])) == ["2h_ago"]
    assert codes(csg.find("Playlist", [["sg_date_and_time", "in_next", 1, "DAY"]], ["code"])) == ["3h_ahead"]
    assert sorted(codes(csg.find("Playlist", [["sg_date_and_time", "not_in_next", 1, "DAY"]], ["code"]))) == \
        ["2h_ago", "30h_ago", "8d_ago"]


def test_calendar_relations_use_the_sites_time_zone(site_schema, tmp_path, clock):
    # NOW is 05:00 in Los Angeles (PDT): 06:00 UTC today is 23:00 yesterday there.
    site = MockSite(schema_copy(site_schema), timezone="America/Los_Angeles", clock=clock)
    site.load_entity("Playlist", {"code": "late_yesterday_la", "sg_date_and_time": "2024-03-13T06:00:00Z"})
    site.load_entity("Playlist", {"code": "today_la", "sg_date_and_time": "2024-03-13T08:00:00Z"})
    server = MockServer(site).start()
    try:
        sg = connect(server)
        assert codes(sg.find("Playlist", [["sg_date_and_time", "in_calendar_day", 0]], ["code"])) == ["today_la"]
        assert codes(sg.find("Playlist", [["sg_date_and_time", "in_calendar_day", -1]], ["code"])) == \
            ["late_yesterday_la"]
    finally:
        stop_in_background(server)


def test_numeric_relations_on_duration_and_text_relations_on_color_and_entity_type(sg, mock_server):
    load = mock_server.site.load_entity
    load("Task", {"content": "short", "duration": 60, "color": "pipeline_step"})
    load("Task", {"content": "long", "duration": 600, "color": "255,0,0"})
    load("Task", {"content": "unset"})
    assert [t["content"] for t in sg.find("Task", [["duration", "greater_than", 100]], ["content"])] == ["long"]
    assert [t["content"] for t in sg.find("Task", [["duration", "not_in", [60]]], ["content"])] == ["long", "unset"]
    assert [t["content"] for t in sg.find("Task", [["color", "starts_with", "PIPELINE"]], ["content"])] == ["short"]
    load("Step", {"code": "Comp", "entity_type": "Shot"})
    load("Step", {"code": "Model", "entity_type": "Asset"})
    assert codes(sg.find("Step", [["entity_type", "is", "shot"]], ["code"])) == ["Comp"]


def test_unknown_field_in_a_filter_is_a_fault_naming_it(sg, studio):
    with pytest.raises(Fault, match=r"Shot\.no_such_field"):
        sg.find("Shot", [["no_such_field", "is", 1]])


def test_unknown_field_in_a_deep_filter_is_a_fault_naming_it(sg, studio):
    with pytest.raises(Fault, match=r"Sequence\.no_such_field"):
        sg.find("Shot", [["sg_sequence.Sequence.no_such_field", "is", 1]])


def test_unknown_relation_is_a_fault_naming_it(sg, studio):
    with pytest.raises(Fault, match="bogus_relation"):
        sg.find("Shot", [["code", "bogus_relation", "x"]])


def test_unknown_entity_type_is_a_fault_naming_it(sg):
    with pytest.raises(Fault, match="NoSuchType"):
        sg.find("NoSuchType", [])


@pytest.mark.parametrize("entity_type, field, kind", [
    ("Version", "sg_uploaded_movie", "url"), ("Task", "splits", "serializable"),
    ("HumanUser", "password_proxy", "password"), ("Shot", "step_0", "pivot_column")])
def test_filter_on_an_unfilterable_field_is_a_fault(sg, mock_server, studio, entity_type, field, kind):
    mock_server.site.load_entity("Version", {"code": "v1"})
    with pytest.raises(Fault, match=kind):
        sg.find(entity_type, [[field, "is", "x"]])


def test_relation_the_data_type_lacks_is_a_fault(sg, studio):
    with pytest.raises(Fault, match="contains"):
        sg.find("Shot", [["sg_cut_in", "contains", "1"]])


def test_invalid_filter_is_a_fault_even_on_an_empty_table(sg):
    with pytest.raises(Fault, match="url"):
        sg.find("Version", [["sg_uploaded_movie", "is", {"url": "http://x"}]])
    with pytest.raises(Fault, match="serializable"):
        sg.find("Task", [["splits", "is", "x"]])
    with pytest.raises(Fault, match="contains"):
        sg.find("Shot", [["sg_cut_in", "contains", "1"]])


# === 4. create, update, delete, revive, batch ===================================================


def test_create_returns_the_fields_set_plus_return_fields(sg):
    result = sg.create("Shot", {"code": "SH1", "sg_cut_in": 3}, ["description", "sg_status_list"])
    assert result == {"type": "Shot", "id": result["id"], "code": "SH1", "sg_cut_in": 3, "description": None,
                      "sg_status_list": "wtg"}


def test_create_answers_links_with_names(sg, studio):
    result = sg.create("Task", {"content": "FX", "entity": studio.sh10})
    assert result["entity"] == {"type": "Shot", "id": studio.sh10["id"], "name": "SH010"}


def test_created_at_is_whole_second_utc_on_the_wire(mock_server):
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    body = rpc(mock_server, "create", [WIRE_AUTH, {
        "type": "Shot", "fields": [{"field_name": "code", "value": "SH1"}],
        "return_fields": ["created_at", "updated_at"]}]).json()["results"]
    after = dt.datetime.now(dt.UTC)
    assert WIRE_DATETIME.match(body["created_at"]), body["created_at"]
    created = dt.datetime.strptime(body["created_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    assert before <= created <= after
    assert body["updated_at"] == body["created_at"]


def test_created_at_and_updated_at_come_from_the_sites_clock(csg):
    shot = csg.create("Shot", {"code": "SH1"}, ["created_at", "updated_at"])
    assert utc(shot["created_at"]) == NOW
    assert utc(shot["updated_at"]) == NOW


def test_created_by_is_the_scripts_api_user(sg):
    shot = sg.create("Shot", {"code": "SH1"}, ["created_by", "updated_by"])
    me = {"type": "ApiUser", "id": api_user_id(sg), "name": "sgcache"}
    assert shot["created_by"] == me
    assert shot["updated_by"] == me


def test_created_by_is_the_human_user(mock_server, sg):
    human = connect(mock_server, **HUMAN)
    shot = human.create("Shot", {"code": "SH1"}, ["created_by"])
    assert shot["created_by"] == {"type": "HumanUser", "id": human_id(sg), "name": "Ann Artist"}


def test_created_by_is_the_sudo_as_login_user(mock_server, sg):
    sudo = connect(mock_server, sudo_as_login="artist", **SCRIPT)
    shot = sudo.create("Shot", {"code": "SH1"}, ["created_by", "updated_by"])
    artist = {"type": "HumanUser", "id": human_id(sg), "name": "Ann Artist"}
    assert shot["created_by"] == artist
    assert shot["updated_by"] == artist


def test_values_of_every_common_data_type_round_trip(sg, studio):
    data = {"content": "all types", "color": "pipeline_step", "duration": 480, "milestone": True,
            "due_date": "2024-05-01", "tag_list": ["hero", "rush"], "entity": studio.sh10,
            "task_assignees": [studio.artist], "sg_status_list": "ip", "splits": [{"start": "2024-05-01"}]}
    task = sg.create("Task", data)
    row = sg.find_one("Task", [["id", "is", task["id"]]], list(data))
    assert row["color"] == "pipeline_step" and row["duration"] == 480 and row["milestone"] is True
    assert row["due_date"] == "2024-05-01" and row["tag_list"] == ["hero", "rush"]
    assert row["entity"] == {"type": "Shot", "id": studio.sh10["id"], "name": "SH010"}
    assert row["task_assignees"] == [{"type": "HumanUser", "id": studio.artist["id"], "name": "Ann Artist"}]
    assert row["splits"] == [{"start": "2024-05-01"}]
    version = sg.create("Version", {"code": "v1", "sg_frames_aspect_ratio": 1.85,
                                    "media_center_import_time": dt.datetime(2024, 5, 1, 10, 30, tzinfo=dt.UTC)})
    row = sg.find_one("Version", [["id", "is", version["id"]]], ["sg_frames_aspect_ratio", "media_center_import_time"])
    assert row["sg_frames_aspect_ratio"] == 1.85
    assert utc(row["media_center_import_time"]) == dt.datetime(2024, 5, 1, 10, 30, tzinfo=dt.UTC)


def test_create_may_set_created_at_and_created_by(sg, studio):
    shot = sg.create("Shot", {"code": "IMPORTED", "created_at": dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
                              "created_by": studio.artist}, ["created_at", "created_by"])
    assert utc(shot["created_at"]) == dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert shot["created_by"] == {"type": "HumanUser", "id": studio.artist["id"], "name": "Ann Artist"}


def test_setting_a_link_does_not_move_the_other_sides_updated_at(csg, clock, clocked_server):
    shot = csg.create("Shot", {"code": "SH1"})
    clock.advance(60)
    csg.create("Task", {"content": "Anim", "entity": shot})
    row = csg.find_one("Shot", [["id", "is", shot["id"]]], ["updated_at", "tasks"])
    assert len(row["tasks"]) == 1
    assert utc(row["updated_at"]) == NOW


def test_retired_task_leaves_shot_tasks_and_returns_on_revival(sg, studio):
    sg.delete("Task", studio.anim["id"])
    assert sg.find_one("Shot", [["id", "is", studio.sh10["id"]]], ["tasks"])["tasks"] == []
    sg.revive("Task", studio.anim["id"])
    assert ids(sg.find_one("Shot", [["id", "is", studio.sh10["id"]]], ["tasks"])["tasks"]) == [studio.anim["id"]]


def test_update_returns_one_dict_of_type_id_and_updated_fields(sg, studio):
    result = sg.update("Shot", studio.sh10["id"], {"description": "new", "sg_cut_in": 7})
    assert result == {"type": "Shot", "id": studio.sh10["id"], "description": "new", "sg_cut_in": 7}
    assert sg.find_one("Shot", [["id", "is", studio.sh10["id"]]], ["description", "sg_cut_in"]) == result


def test_update_moves_updated_at_and_updated_by_but_not_created_at(csg, clock, clocked_server):
    shot = csg.create("Shot", {"code": "SH1"})
    clock.advance(90)
    human = connect(clocked_server, **HUMAN)
    human.update("Shot", shot["id"], {"description": "later"})
    row = csg.find_one("Shot", [["id", "is", shot["id"]]], ["created_at", "updated_at", "updated_by", "created_by"])
    assert utc(row["created_at"]) == NOW
    assert utc(row["updated_at"]) == NOW + dt.timedelta(seconds=90)
    assert row["updated_by"]["type"] == "HumanUser"
    assert row["created_by"]["type"] == "ApiUser"


def test_multi_entity_update_mode_add(sg, studio):
    result = sg.update("Shot", studio.sh20["id"], {"assets": [studio.bob]}, multi_entity_update_modes={"assets": "add"})
    assert ids(result["assets"]) == [studio.car["id"], studio.bob["id"]]


def test_multi_entity_update_mode_remove(sg, studio):
    sg.update("Shot", studio.sh10["id"], {"assets": [studio.bob]}, multi_entity_update_modes={"assets": "remove"})
    shot = sg.find_one("Shot", [["id", "is", studio.sh10["id"]]], ["assets"])
    assert shot["assets"] == [{"type": "Asset", "id": studio.car["id"], "name": "Car"}]


def test_multi_entity_update_mode_set_is_the_default(sg, studio):
    sg.update("Shot", studio.sh10["id"], {"assets": [studio.bob]})
    assert ids(sg.find_one("Shot", [["id", "is", studio.sh10["id"]]], ["assets"])["assets"]) == [studio.bob["id"]]


def test_delete_answers_true_then_false(sg, studio):
    assert sg.delete("Shot", studio.sh10["id"]) is True
    assert sg.delete("Shot", studio.sh10["id"]) is False
    assert sg.find("Shot", [["id", "is", studio.sh10["id"]]]) == []


def test_revive_answers_true_then_false(sg, studio):
    sg.delete("Shot", studio.sh10["id"])
    assert sg.revive("Shot", studio.sh10["id"]) is True
    assert sg.revive("Shot", studio.sh10["id"]) is False
    assert shot_codes(sg, [["id", "is", studio.sh10["id"]]]) == ["SH010"]


def test_delete_of_a_missing_entity_is_a_fault(sg):
    with pytest.raises(Fault, match="999"):
        sg.delete("Shot", 999)


def test_update_of_a_retired_entity_is_a_fault(sg, studio):
    sg.delete("Shot", studio.sh10["id"])
    with pytest.raises(Fault):
        sg.update("Shot", studio.sh10["id"], {"description": "x"})


def test_retired_entity_leaves_multi_entity_values_and_links(sg, studio):
    sg.delete("Asset", studio.bob["id"])
    shot = sg.find_one("Shot", [["id", "is", studio.sh10["id"]]], ["assets"])
    assert ids(shot["assets"]) == [studio.car["id"]]
    sg.delete("Sequence", studio.sq10["id"])
    assert sg.find_one("Shot", [["id", "is", studio.sh10["id"]]], ["sg_sequence"])["sg_sequence"] is None


def test_batch_answers_each_result_in_order(sg, studio):
    results = sg.batch([
        {"request_type": "create", "entity_type": "Shot", "data": {"code": "NEW"}},
        {"request_type": "update", "entity_type": "Shot", "entity_id": studio.sh10["id"], "data": {"sg_cut_in": 1}},
        {"request_type": "delete", "entity_type": "Shot", "entity_id": studio.sh20["id"]},
    ])
    assert results[0]["code"] == "NEW" and results[0]["type"] == "Shot"
    assert results[1] == {"type": "Shot", "id": studio.sh10["id"], "sg_cut_in": 1}
    assert results[2] is True
    assert shot_codes(sg, []) == ["SH010", "sh030", "SH040", "NEW"]


def test_batch_is_all_or_nothing(sg, studio, mock_server):
    last_event = max_event_id(sg)
    shots_before = stats(mock_server)["entities"]["Shot"]
    with pytest.raises(Fault, match="999"):
        sg.batch([
            {"request_type": "create", "entity_type": "Shot", "data": {"code": "NEW", "sg_sequence": studio.sq10}},
            {"request_type": "update", "entity_type": "Shot", "entity_id": studio.sh10["id"],
             "data": {"description": "changed", "assets": []}},
            {"request_type": "create", "entity_type": "Shot", "data": {"sg_sequence": link("Sequence", 999)}},
        ])
    assert shot_codes(sg, [["code", "is", "NEW"]]) == []
    assert stats(mock_server)["entities"]["Shot"] == shots_before
    shot = sg.find_one("Shot", [["id", "is", studio.sh10["id"]]], ["description", "assets"])
    assert shot["description"] == "Hero shot"
    assert ids(shot["assets"]) == [studio.bob["id"], studio.car["id"]]
    sequence = sg.find_one("Sequence", [["id", "is", studio.sq10["id"]]], ["shots"])
    assert ids(sequence["shots"]) == [studio.sh10["id"], studio.sh20["id"]]
    asset = sg.find_one("Asset", [["id", "is", studio.bob["id"]]], ["shots"])
    assert ids(asset["shots"]) == [studio.sh10["id"]]
    assert max_event_id(sg) == last_event


def test_ids_are_not_reused_after_a_failed_batch(sg, studio):
    with pytest.raises(Fault):
        sg.batch([{"request_type": "create", "entity_type": "Shot", "data": {"code": "GONE"}},
                  {"request_type": "create", "entity_type": "Shot", "data": {"sg_sequence": link("Sequence", 999)}}])
    highest = max(s["id"] for retired in (False, True) for s in sg.find("Shot", [], ["id"], retired_only=retired))
    created = sg.create("Shot", {"code": "AFTER"})
    assert created["id"] == highest + 2  # the failed batch's id stays used, as in a database sequence
    events = sg.find("EventLogEntry", [["entity", "is", created]], ["id"], order=[{"field_name": "id",
                                                                                    "direction": "asc"}])
    assert events and len({e["id"] for e in events}) == len(events)


def test_reverse_field_task_entity_to_shot_tasks(sg, studio):
    task = sg.create("Task", {"content": "FX", "entity": studio.sh40})
    assert ids(sg.find_one("Shot", [["id", "is", studio.sh40["id"]]], ["tasks"])["tasks"]) == [task["id"]]
    sg.update("Task", task["id"], {"entity": studio.sh30})
    assert sg.find_one("Shot", [["id", "is", studio.sh40["id"]]], ["tasks"])["tasks"] == []
    assert ids(sg.find_one("Shot", [["id", "is", studio.sh30["id"]]], ["tasks"])["tasks"]) == [task["id"]]


def test_reverse_field_shot_sg_sequence_to_sequence_shots(sg, studio):
    sg.update("Shot", studio.sh40["id"], {"sg_sequence": studio.sq20})
    assert ids(sg.find_one("Sequence", [["id", "is", studio.sq20["id"]]], ["shots"])["shots"]) == \
        [studio.sh30["id"], studio.sh40["id"]]
    sg.update("Shot", studio.sh30["id"], {"sg_sequence": None})
    assert ids(sg.find_one("Sequence", [["id", "is", studio.sq20["id"]]], ["shots"])["shots"]) == [studio.sh40["id"]]


def test_reverse_field_shot_assets_to_asset_shots(sg, studio):
    sg.update("Shot", studio.sh10["id"], {"assets": [studio.car]})
    assert sg.find_one("Asset", [["id", "is", studio.bob["id"]]], ["shots"])["shots"] == []
    sg.update("Shot", studio.sh40["id"], {"assets": [studio.bob]}, multi_entity_update_modes={"assets": "add"})
    assert ids(sg.find_one("Asset", [["id", "is", studio.bob["id"]]], ["shots"])["shots"]) == [studio.sh40["id"]]


def test_reverse_field_asset_shots_to_shot_assets(sg, studio):
    sg.update("Asset", studio.bob["id"], {"shots": [studio.sh20]},
              multi_entity_update_modes={"shots": "add"})
    assert ids(sg.find_one("Shot", [["id", "is", studio.sh20["id"]]], ["assets"])["assets"]) == \
        [studio.car["id"], studio.bob["id"]]


def test_reverse_field_sequence_shots_sets_shot_sg_sequence(sg, studio):
    sg.update("Sequence", studio.sq20["id"], {"shots": [studio.sh40]}, multi_entity_update_modes={"shots": "add"})
    shot = sg.find_one("Shot", [["id", "is", studio.sh40["id"]]], ["sg_sequence"])
    assert shot["sg_sequence"] == {"type": "Sequence", "id": studio.sq20["id"], "name": "SQ020"}


def test_writing_a_non_editable_field_is_a_fault(sg, studio):
    with pytest.raises(Fault, match="open_notes_count"):
        sg.update("Shot", studio.sh10["id"], {"open_notes_count": "3"})


@pytest.mark.parametrize("field, value", [("updated_at", "2024-01-01T00:00:00Z"), ("id", 5),
                                          ("created_at", "2024-01-01T00:00:00Z")])
def test_writing_a_system_field_on_update_is_a_fault(sg, studio, field, value):
    with pytest.raises(Fault, match=field):
        sg._call_rpc("update", {"type": "Shot", "id": studio.sh10["id"],
                                "fields": [{"field_name": field, "value": value}]})


def test_linking_to_a_missing_entity_is_a_fault(sg, studio):
    with pytest.raises(Fault, match="999"):
        sg.update("Shot", studio.sh10["id"], {"sg_sequence": link("Sequence", 999)})
    assert sg.find_one("Shot", [["id", "is", studio.sh10["id"]]], ["sg_sequence"])["sg_sequence"]["id"] == \
        studio.sq10["id"]


def test_linking_to_a_type_the_field_does_not_take_is_a_fault(sg, studio):
    with pytest.raises(Fault, match="Asset"):
        sg.update("Shot", studio.sh10["id"], {"sg_sequence": studio.bob})


def test_a_value_of_the_wrong_type_is_a_fault(sg, studio):
    with pytest.raises(Fault, match="sg_cut_in"):
        sg.update("Shot", studio.sh10["id"], {"sg_cut_in": "ten"})


def test_unknown_field_on_create_is_a_fault(sg):
    with pytest.raises(Fault, match=r"Shot\.no_such_field"):
        sg.create("Shot", {"code": "x", "no_such_field": 1})
    assert sg.find("Shot", []) == []


def test_a_status_outside_the_valid_values_is_a_fault(sg):
    with pytest.raises(Fault):
        sg.create("Shot", {"code": "SH1", "sg_status_list": "bogus"})


# === 5. summarize ==============================================================================


def test_summarize_record_count_count_and_numbers(sg, studio):
    result = sg.summarize("Shot", [], [
        {"field": "id", "type": "record_count"}, {"field": "sg_cut_in", "type": "count"},
        {"field": "description", "type": "count"}])
    assert result["summaries"] == {"id": 4, "sg_cut_in": 3, "description": 3}
    assert result["groups"] == []


@pytest.mark.parametrize("kind, expected", [("sum", 35), ("maximum", 20), ("minimum", 5), ("average", 35 / 3)])
def test_summarize_number_summaries(sg, studio, kind, expected):
    result = sg.summarize("Shot", [], [{"field": "sg_cut_in", "type": kind}])
    assert result["summaries"]["sg_cut_in"] == pytest.approx(expected)


def test_summarize_earliest_and_latest_dates(csg, due_tasks):
    assert csg.summarize("Task", [], [{"field": "due_date", "type": "earliest"}])["summaries"] == \
        {"due_date": "2023-12-31"}
    assert csg.summarize("Task", [], [{"field": "due_date", "type": "latest"}])["summaries"] == \
        {"due_date": "2024-04-02"}


def test_summarize_applies_filters(sg, studio):
    result = sg.summarize("Shot", [["sg_status_list", "is", "ip"]], [{"field": "sg_cut_in", "type": "sum"}])
    assert result["summaries"] == {"sg_cut_in": 15}


def test_summarize_groups_exactly_on_a_list_field(sg, studio):
    result = sg.summarize("Shot", [], [{"field": "id", "type": "record_count"}],
                          grouping=[{"field": "sg_status_list", "type": "exact", "direction": "asc"}])
    assert [(g["group_name"], g["group_value"], g["summaries"]) for g in result["groups"]] == [
        ("fin", "fin", {"id": 1}), ("ip", "ip", {"id": 2}), ("wtg", "wtg", {"id": 1})]


def test_summarize_groups_descending(sg, studio):
    result = sg.summarize("Shot", [], [{"field": "id", "type": "record_count"}],
                          grouping=[{"field": "sg_status_list", "type": "exact", "direction": "desc"}])
    assert [g["group_value"] for g in result["groups"]] == ["wtg", "ip", "fin"]


def test_summarize_groups_on_an_entity_field_by_name(sg, studio):
    result = sg.summarize("Shot", [["sg_sequence", "is_not", None]], [{"field": "sg_cut_in", "type": "sum"}],
                          grouping=[{"field": "sg_sequence", "type": "exact", "direction": "asc"}])
    assert [(g["group_name"], g["summaries"]) for g in result["groups"]] == \
        [("SQ010", {"sg_cut_in": 30}), ("SQ020", {"sg_cut_in": 0})]
    assert result["groups"][0]["group_value"] == {"type": "Sequence", "id": studio.sq10["id"], "name": "SQ010"}


def test_summarize_nested_grouping(sg, studio):
    result = sg.summarize("Shot", [["sg_sequence", "is_not", None]], [{"field": "id", "type": "record_count"}],
                          grouping=[{"field": "sg_sequence", "type": "exact", "direction": "asc"},
                                    {"field": "sg_status_list", "type": "exact", "direction": "asc"}])
    outer = result["groups"]
    assert [g["group_name"] for g in outer] == ["SQ010", "SQ020"]
    assert [(g["group_value"], g["summaries"]) for g in outer[0]["groups"]] == [("fin", {"id": 1}), ("ip", {"id": 1})]
    assert [(g["group_value"], g["summaries"]) for g in outer[1]["groups"]] == [("wtg", {"id": 1})]


def test_summarize_groups_numbers_by_tens(sg, studio):
    result = sg.summarize("Shot", [["sg_cut_in", "is_not", None]], [{"field": "id", "type": "record_count"}],
                          grouping=[{"field": "sg_cut_in", "type": "tens", "direction": "asc"}])
    assert [(g["group_value"], g["summaries"]["id"]) for g in result["groups"]] == [(0, 1), (10, 1), (20, 1)]


def test_summarize_can_leave_out_archived_projects(sg, mock_server):
    site = mock_server.site
    old = link("Project", site.load_entity("Project", {"name": "Old", "archived": True}))
    site.load_entity("Shot", {"code": "OLD", "project": old, "sg_cut_in": 100})
    site.load_entity("Shot", {"code": "NEW", "sg_cut_in": 1})
    spec = [{"field": "sg_cut_in", "type": "sum"}]
    assert sg.summarize("Shot", [], spec)["summaries"] == {"sg_cut_in": 101}
    assert sg.summarize("Shot", [], spec, include_archived_projects=False)["summaries"] == {"sg_cut_in": 1}


def test_summarize_unknown_field_is_a_fault(sg, studio):
    with pytest.raises(Fault, match="no_such_field"):
        sg.summarize("Shot", [], [{"field": "no_such_field", "type": "sum"}])


# === 6. schema =================================================================================


def test_schema_read_has_the_77_types_with_data_types(sg):
    schema = sg.schema_read()
    assert len(schema) == 77
    assert schema["Shot"]["code"]["data_type"] == {"value": "text", "editable": False}
    assert schema["Shot"]["sg_sequence"]["data_type"]["value"] == "entity"
    assert schema["Shot"]["sg_sequence"]["properties"]["valid_types"]["value"] == ["Sequence"]
    assert schema["Shot"]["assets"]["data_type"]["value"] == "multi_entity"
    assert schema["Task"]["due_date"]["data_type"]["value"] == "date"
    assert schema["EventLogEntry"]["meta"]["data_type"]["value"] == "serializable"


def test_schema_entity_read_names_every_type(sg):
    entities = sg.schema_entity_read()
    assert len(entities) == 77
    assert entities["Shot"]["name"]["value"] == "Shot"


def test_schema_field_read_of_a_type(sg):
    fields = sg.schema_field_read("Shot")
    assert {"code", "sg_sequence", "assets", "tasks", "sg_cut_in"} <= set(fields)
    assert fields["sg_cut_in"]["data_type"]["value"] == "number"


def test_schema_field_read_of_one_field(sg):
    fields = sg.schema_field_read("Shot", "code")
    assert list(fields) == ["code"]
    assert fields["code"]["name"]["value"] == "Shot Code"


def test_schema_field_read_of_an_unknown_field_is_a_fault(sg):
    with pytest.raises(Fault, match="no_such_field"):
        sg.schema_field_read("Shot", "no_such_field")


def test_schema_field_create_adds_a_usable_field(sg, studio):
    name = sg.schema_field_create("Shot", "number", "Frame Budget", {"description": "frames we can afford"})
    assert name == "sg_frame_budget"
    field = sg.schema_field_read("Shot", name)[name]
    assert field["data_type"]["value"] == "number"
    assert field["name"]["value"] == "Frame Budget"
    assert field["description"]["value"] == "frames we can afford"
    assert sg.find_one("Shot", [["id", "is", studio.sh10["id"]]], [name])[name] is None
    sg.update("Shot", studio.sh10["id"], {name: 120})
    assert shot_codes(sg, [[name, "greater_than", 100]]) == ["SH010"]


def test_schema_field_update_changes_its_properties(sg):
    name = sg.schema_field_create("Shot", "text", "Notes Text")
    assert sg.schema_field_update("Shot", name, {"name": "Better Notes", "description": "why"}) is True
    field = sg.schema_field_read("Shot", name)[name]
    assert field["name"]["value"] == "Better Notes"
    assert field["description"]["value"] == "why"


def test_schema_field_delete_removes_the_field(sg, studio):
    name = sg.schema_field_create("Shot", "text", "Scratch")
    sg.update("Shot", studio.sh10["id"], {name: "x"})
    assert sg.schema_field_delete("Shot", name) is True
    assert name not in sg.schema_field_read("Shot")
    with pytest.raises(Fault, match=name):
        sg.find("Shot", [[name, "is", "x"]])


def test_schema_field_create_of_an_existing_field_is_a_fault(sg):
    sg.schema_field_create("Shot", "text", "Twice")
    with pytest.raises(Fault, match="sg_twice"):
        sg.schema_field_create("Shot", "text", "Twice")


# === 7. authentication =========================================================================


def test_wrong_script_key_is_an_authentication_fault(mock_server):
    bad = connect(mock_server, script_name="sgcache", api_key="wrong")
    with pytest.raises(AuthenticationFault):
        bad.find("Shot", [])


def test_unknown_script_is_an_authentication_fault(mock_server):
    bad = connect(mock_server, script_name="nobody", api_key="sgcache-demo-key")
    with pytest.raises(AuthenticationFault, match="nobody"):
        bad.find("Shot", [])


def test_wrong_password_is_an_authentication_fault(mock_server):
    bad = connect(mock_server, login="artist", password="wrong")
    with pytest.raises(AuthenticationFault):
        bad.find("Shot", [])


@pytest.mark.parametrize("params", [[], [{}], [{}, {"type": "Shot"}]],
                         ids=["no-params", "empty-auth", "empty-auth-args"])
def test_no_credentials_is_error_code_102_with_http_200(mock_server, params):
    response = rpc(mock_server, "read", params)
    assert response.status_code == 200
    body = response.json()
    assert body["exception"] is True
    assert body["error_code"] == 102
    assert "results" not in body


def test_failed_authentication_writes_nothing(mock_server, sg):
    bad = connect(mock_server, script_name="sgcache", api_key="wrong")
    with pytest.raises(AuthenticationFault):
        bad.create("Shot", {"code": "SH1"})
    assert sg.find("Shot", []) == []


def test_human_user_credentials_work(mock_server, sg):
    human = connect(mock_server, **HUMAN)
    human.create("Shot", {"code": "SH1"})
    assert shot_codes(human, []) == ["SH1"]


def test_session_token_of_a_script_works(mock_server, sg):
    token = sg.get_session_token()
    by_token = connect(mock_server, session_token=token)
    shot = by_token.create("Shot", {"code": "SH1"}, ["created_by"])
    assert shot["created_by"]["type"] == "ApiUser"


def test_session_token_of_a_human_user_acts_as_that_user(mock_server, sg):
    token = connect(mock_server, **HUMAN).get_session_token()
    by_token = connect(mock_server, session_token=token)
    shot = by_token.create("Shot", {"code": "SH1"}, ["created_by"])
    assert shot["created_by"] == {"type": "HumanUser", "id": human_id(sg), "name": "Ann Artist"}


def test_expired_session_token_is_an_authentication_fault(mock_server, sg):
    token = sg.get_session_token()
    by_token = connect(mock_server, session_token=token)
    assert by_token.find("Shot", []) == []
    assert requests.post(mock_server.url + "/_mock/expire_sessions", timeout=5).json()["expired"] >= 1
    with pytest.raises(AuthenticationFault):
        by_token.find("Shot", [])


def test_unknown_session_token_is_an_authentication_fault(mock_server):
    with pytest.raises(AuthenticationFault):
        connect(mock_server, session_token="not-a-token").find("Shot", [])


def test_sudo_as_an_unknown_login_is_an_authentication_fault(mock_server):
    with pytest.raises(AuthenticationFault):
        connect(mock_server, sudo_as_login="nobody", **SCRIPT).find("Shot", [])


def test_authentication_fault_carries_error_code_102(mock_server):
    body = rpc(mock_server, "read", [{"script_name": "sgcache", "script_key": "wrong"}, {"type": "Shot"}]).json()
    assert body["exception"] is True and body["error_code"] == 102


# === 10. files =================================================================================


@pytest.fixture
def version(sg):
    return sg.create("Version", {"code": "v001"})


def test_upload_sets_a_url_field_to_an_attachment(sg, version, tmp_path):
    path = tmp_path / "take.mov"
    path.write_bytes(b"movie-bytes")
    attachment_id = sg.upload("Version", version["id"], str(path), field_name="sg_uploaded_movie",
                              display_name="take1.mov")
    movie = sg.find_one("Version", [["id", "is", version["id"]]], ["sg_uploaded_movie"])["sg_uploaded_movie"]
    assert movie["type"] == "Attachment" and movie["id"] == attachment_id
    assert movie["name"] == "take1.mov"
    assert movie["link_type"] == "upload"
    assert movie["content_type"] == "video/quicktime"
    assert movie["url"].endswith(f"/file_serve/attachment/{attachment_id}")
    assert sg.find_one("Attachment", [["id", "is", attachment_id]]) is not None


def test_download_attachment_returns_the_bytes(sg, version, tmp_path):
    path = tmp_path / "take.mov"
    path.write_bytes(b"movie-bytes \x00\xff")
    attachment_id = sg.upload("Version", version["id"], str(path), field_name="sg_uploaded_movie")
    movie = sg.find_one("Version", [["id", "is", version["id"]]], ["sg_uploaded_movie"])["sg_uploaded_movie"]
    assert sg.download_attachment(movie) == b"movie-bytes \x00\xff"
    assert sg.download_attachment(attachment_id) == b"movie-bytes \x00\xff"
    target = tmp_path / "copy.mov"
    assert sg.download_attachment(movie, file_path=str(target)) == str(target)
    assert target.read_bytes() == b"movie-bytes \x00\xff"


def test_download_of_a_missing_attachment_fails(sg):
    with pytest.raises(shotgun_api3.ShotgunFileDownloadError):
        sg.download_attachment(12345)


def test_upload_thumbnail_sets_image_to_a_url(sg, version, tmp_path):
    path = tmp_path / "thumb.png"
    path.write_bytes(b"\x89PNG fake")
    attachment_id = sg.upload_thumbnail("Version", version["id"], str(path))
    image = sg.find_one("Version", [["id", "is", version["id"]]], ["image"])["image"]
    assert isinstance(image, str)
    assert image.endswith(f"/file_serve/attachment/{attachment_id}")
    assert requests.get(image, timeout=5).content == b"\x89PNG fake"


def test_stats_count_uploads_and_downloads(sg, version, tmp_path, mock_server):
    path = tmp_path / "a.txt"
    path.write_bytes(b"text")
    attachment_id = sg.upload("Version", version["id"], str(path), field_name="sg_uploaded_movie")
    sg.upload_thumbnail("Version", version["id"], str(path))
    sg.download_attachment(attachment_id)
    counted = stats(mock_server)
    assert counted["calls"]["upload_file"] == 1
    assert counted["calls"]["publish_thumbnail"] == 1
    assert counted["calls"]["file_serve"] == 1
    assert counted["entities"]["Attachment"] == 2


def test_upload_to_a_missing_entity_is_refused(sg, tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"text")
    with pytest.raises(shotgun_api3.ShotgunError, match="999"):
        sg.upload("Version", 999, str(path), field_name="sg_uploaded_movie")


def test_upload_with_bad_credentials_is_refused(mock_server, version, tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"text")
    bad = connect(mock_server, script_name="sgcache", api_key="wrong")
    with pytest.raises(shotgun_api3.ShotgunError):
        bad.upload("Version", version["id"], str(path), field_name="sg_uploaded_movie")
    assert stats(mock_server)["calls"].get("upload_file", 0) == 0


# === 11. failure injection =====================================================================


@pytest.fixture
def fsg(mock_server):
    """A client with a 1 s timeout and a short backoff between its 502/504 retries."""
    sg = connect(mock_server)
    sg.config.timeout_secs = 1
    sg.BACKOFF = 0.01
    sg.find("Shot", [])  # connected and warmed up
    return sg


@pytest.mark.parametrize("code", ["502", "504"])
def test_502_and_504_are_retried_by_the_client(fsg, mock_server, code):
    before = calls(mock_server, "read")
    inject(mock_server, mode=code, count=fsg.MAX_ATTEMPTS - 1)
    assert fsg.find("Shot", []) == []
    assert calls(mock_server, "read") - before == 1


@pytest.mark.parametrize("code", [502, 504])
def test_502_and_504_beyond_the_retries_are_a_protocol_error(fsg, mock_server, code):
    before = calls(mock_server, "read")
    inject(mock_server, mode=str(code), count=fsg.MAX_ATTEMPTS)
    with pytest.raises(ProtocolError) as caught:
        fsg.find("Shot", [])
    assert caught.value.errcode == code
    assert calls(mock_server, "read") == before
    assert fsg.find("Shot", []) == []  # the count is used up


def test_503_is_a_protocol_error_that_is_not_retried(fsg, mock_server):
    before = calls(mock_server, "read")
    inject(mock_server, mode="503", count=1)
    with pytest.raises(ProtocolError) as caught:
        fsg.find("Shot", [])
    assert caught.value.errcode == 503
    assert "maintenance" in caught.value.errmsg
    # a retry would have met no failure and reached the site
    assert calls(mock_server, "read") == before
    assert fsg.find("Shot", []) == []
    assert calls(mock_server, "read") == before + 1


def test_failure_for_some_seconds_expires(fsg, mock_server):
    inject(mock_server, mode="503", seconds=0.5)
    with pytest.raises(ProtocolError):
        fsg.find("Shot", [])
    with pytest.raises(ProtocolError):
        fsg.find("Shot", [])
    time.sleep(0.6)
    assert fsg.find("Shot", []) == []


def test_failure_mode_off_ends_it(fsg, mock_server):
    inject(mock_server, mode="503")
    with pytest.raises(ProtocolError):
        fsg.find("Shot", [])
    inject(mock_server, mode="off")
    assert fsg.find("Shot", []) == []


def test_stall_beyond_the_timeout_is_a_timeout_error(fsg, mock_server):
    inject(mock_server, mode="stall", count=1, stall_seconds=2)
    started = time.monotonic()
    with pytest.raises(TimeoutError):  # socket.timeout, raised by httplib2 without a retry
        fsg.find("Shot", [])
    assert 0.9 <= time.monotonic() - started < 1.9
    assert fsg.find("Shot", []) == []


def test_stall_shorter_than_the_timeout_only_delays(fsg, mock_server):
    inject(mock_server, mode="stall", count=1, stall_seconds=0.3)
    started = time.monotonic()
    assert fsg.find("Shot", []) == []
    assert time.monotonic() - started >= 0.3


def test_dropped_connection_is_a_connection_error(fsg, mock_server):
    # httplib2 re-sends once on a connection that closed without an answer: drop two.
    before = calls(mock_server, "read")
    inject(mock_server, mode="drop", count=2)
    with pytest.raises(ConnectionError):
        fsg.find("Shot", [])
    assert calls(mock_server, "read") == before
    assert fsg.find("Shot", []) == []


def _probe(port: int) -> str:
    """What connecting finds: "refused", "accepted", or "unclear" (a slow or reset connection)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except ConnectionRefusedError:
        return "refused"
    except OSError:
        return "unclear"
    return "accepted"


def _wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_down_refuses_connections_then_comes_back(mock_server):
    inject(mock_server, mode="down", seconds=1.0)
    assert _wait_for(lambda: _probe(mock_server.port) == "refused", 1.5), "the site did not stop listening"
    sg = connect(mock_server)
    with pytest.raises(ConnectionRefusedError):
        sg.find("Shot", [])
    assert _wait_for(lambda: _probe(mock_server.port) == "accepted", 3.0), "the site did not come back"
    assert sg.find("Shot", []) == []


def test_unknown_failure_mode_is_refused(mock_server):
    response = requests.post(mock_server.url + "/_mock/failure", json={"mode": "explode"}, timeout=5)
    assert response.status_code == 400


# === 12. persistence ===========================================================================


def test_state_file_restores_entities_ids_events_sessions_and_files(site_schema, tmp_path):
    files = tmp_path / "files"
    state = tmp_path / "site.pickle"
    server = MockServer(MockSite(schema_copy(site_schema), file_dir=files), state_file=state).start()
    sg = connect(server)
    shot = sg.create("Shot", {"code": "SH1", "sg_cut_in": 12})
    version = sg.create("Version", {"code": "v1"})
    upload = tmp_path / "take.mov"
    upload.write_bytes(b"kept bytes")
    attachment_id = sg.upload("Version", version["id"], str(upload), field_name="sg_uploaded_movie")
    token = sg.get_session_token()
    last_event = max_event_id(sg)
    server.stop()
    assert state.is_file()

    again = MockServer(MockSite.restore(state, file_dir=files)).start()
    try:
        sg2 = connect(again)
        assert sg2.find("Shot", [], ["code", "sg_cut_in"]) == [
            {"type": "Shot", "id": shot["id"], "code": "SH1", "sg_cut_in": 12}]
        new = sg2.create("Shot", {"code": "SH2"})
        assert new["id"] == shot["id"] + 1
        events = sg2.find("EventLogEntry", [["id", "greater_than", last_event]], ["event_type"])
        assert events and events[0]["id"] == last_event + 1
        assert events[0]["event_type"] == "Shotgun_Shot_New"
        assert connect(again, session_token=token).find("Shot", [["code", "is", "SH2"]]) != []
        assert connect(again, **HUMAN).find("Shot", [["code", "is", "SH1"]]) != []
        assert connect(again, **QUIET).find("Shot", [["code", "is", "SH1"]]) != []
        assert sg2.download_attachment(attachment_id) == b"kept bytes"
    finally:
        stop_in_background(again)


def test_admin_save_writes_the_state_file_now(site_schema, tmp_path):
    state = tmp_path / "site.pickle"
    server = MockServer(MockSite(schema_copy(site_schema)), state_file=state, autosave_seconds=60).start()
    try:
        connect(server).create("Shot", {"code": "SH1"})
        assert requests.post(server.url + "/_mock/save", timeout=5).json() == {"ok": True}
        restored = MockServer(MockSite.restore(state)).start()
        try:
            assert shot_codes(connect(restored), []) == ["SH1"]
        finally:
            stop_in_background(restored)
    finally:
        stop_in_background(server)


# === 13. base URL with a path ==================================================================


def test_base_url_with_a_path_reaches_the_prefixed_endpoint(mock_server):
    sg = connect(mock_server, url=mock_server.url + "/sg/")
    assert sg.config.api_path == "/sg/api3/json"
    created = sg.create("Shot", {"code": "SH1"})
    assert sg.find("Shot", [], ["code"]) == [{"type": "Shot", "id": created["id"], "code": "SH1"}]


def test_prefixed_endpoint_answers_like_the_root_one(mock_server):
    body = rpc(mock_server, "read", [WIRE_AUTH, {"type": "NoSuchType"}], path="/sg/api3/json").json()
    assert body["exception"] is True and "NoSuchType" in body["message"]


# === 14. envelopes =============================================================================


def test_unknown_method_is_a_fault_envelope_with_http_200(mock_server):
    response = rpc(mock_server, "no_such_method", [WIRE_AUTH])
    assert response.status_code == 200
    body = response.json()
    assert body["exception"] is True
    assert "no_such_method" in body["message"]
    assert "results" not in body


def test_unknown_method_through_the_client_is_a_fault(sg):
    with pytest.raises(Fault, match="no_such_method"):
        sg._call_rpc("no_such_method", None)


def test_fault_envelope_has_no_error_code_unless_authentication(mock_server):
    body = rpc(mock_server, "read", [WIRE_AUTH, {"type": "Shot", "filters": {
        "logical_operator": "and", "conditions": [{"path": "nope", "relation": "is", "values": [1]}]}}]).json()
    assert body["exception"] is True
    assert "Shot.nope" in body["message"]
    assert body.get("error_code") != 102


def test_large_answers_are_gzip_compressed_when_accepted(mock_server, sg):
    _load_shots(mock_server.site, 100)
    args = {"type": "Shot", "return_fields": ["code"], "paging": {"entities_per_page": 100, "current_page": 1}}
    response = requests.post(mock_server.url + "/api3/json", json={"method_name": "read", "params": [WIRE_AUTH, args]},
                             headers={"Accept-Encoding": "gzip"}, timeout=5)
    assert response.headers.get("Content-Encoding") == "gzip"
    assert len(response.json()["results"]["entities"]) == 100
    assert len(sg.find("Shot", [])) == 100  # the client decompresses it


def test_malformed_body_is_a_fault_envelope(mock_server):
    response = requests.post(mock_server.url + "/api3/json", data=b"{not json", timeout=5)
    assert response.status_code == 200
    assert response.json()["exception"] is True


# --- malformed requests (found by the proxy's fuzz test): a fault, never an HTTP 500 -----------------

WIRE_SCRIPT = {"script_name": "sgcache", "script_key": "sgcache-demo-key"}
MALFORMED = {
    "sudo_as_login that is not a name": ("read", [{**WIRE_SCRIPT, "sudo_as_login": [None]},
                                                  {"type": "Shot", "filters": {"logical_operator": "and",
                                                                               "conditions": []}}], 102),
    "a script key with non-ASCII text": ("read", [{"script_name": "sgcache", "script_key": "clé"}, {}], 102),
    "a password that is not text": ("read", [{"user_login": "artist", "user_password": 5}, {}], 102),
    "paging that is not a mapping": ("read", [WIRE_SCRIPT, {"type": "Shot", "paging": True, "filters": {
        "logical_operator": "and", "conditions": []}}], None),
    "a field_name that is a list": ("schema_field_read", [WIRE_SCRIPT, {"type": "Shot", "field_name": ["x"]}],
                                    None),
    "a summary without a field": ("summarize", [WIRE_SCRIPT, {"type": "Shot", "summaries": [{"type": "count"}],
                                                              "filters": {"logical_operator": "and",
                                                                          "conditions": []}}], None),
    "a number compared with text": ("read", [WIRE_SCRIPT, {"type": "Shot", "filters": {
        "logical_operator": "and", "conditions": [{"path": "id", "relation": "greater_than",
                                                   "values": ["not a number"]}]}}], None),
    "a lone surrogate echoed back": ("\ud800", [WIRE_SCRIPT], None),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_a_malformed_request_gets_a_fault_not_a_server_error(mock_server, sg, name):
    sg.create("Shot", {"code": "one"})
    method, params, code = MALFORMED[name]
    response = rpc(mock_server, method, params)
    assert response.status_code == 200
    body = response.json()
    assert body["exception"] is True and body["message"]
    assert body.get("error_code") == code


def test_a_checkbox_whose_schema_default_is_a_number_reads_as_a_boolean(sg):
    # schema/demo-site.yml, as the real site gives it: Attachment.queue_for_s3_upload default 0
    attachment = sg.create("Attachment", {"description": "x"})
    assert sg.find_one("Attachment", [["id", "is", attachment["id"]]],
                       ["queue_for_s3_upload"])["queue_for_s3_upload"] is False
