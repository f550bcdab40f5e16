"""The stand-in's permission groups, through the real client over HTTP (docs/mocksite.rst).

An admin script builds three projects; the artist is assigned to Alpha only, the vendor to Alpha
with one task. Each test asks as one of them and checks exactly what comes back.
"""

from __future__ import annotations

import pytest
import shotgun_api3
from conftest import SCRIPT_AUTH, schema_copy

from sgcache.errors import SgcacheError
from sgcache.mocksite.launch import credentials_text, load_users
from sgcache.mocksite.server import MockServer
from sgcache.mocksite.site import Human, MockSite
from sgcache.mocksite.studio import build_studio

ARTIST = {"login": "artist", "password": "artist-password"}
VENDOR = {"login": "vendor", "password": "vendor-password"}


@pytest.fixture
def people(mock_site):
    mock_site.add_human(Human("vendor", "vendor-password", "Vic Vendor", group="vendor"))
    return {login: {"type": "HumanUser", "id": h.id} for login, h in mock_site.humans.items()}


@pytest.fixture
def studio(sg, people):
    alpha = sg.create("Project", {"name": "Alpha", "users": [people["artist"], people["vendor"]]})
    beta = sg.create("Project", {"name": "Beta"})
    template = sg.create("Project", {"name": "Template Feature"})
    seq_a = sg.create("Sequence", {"code": "SQA", "project": alpha})
    seq_b = sg.create("Sequence", {"code": "SQB", "project": beta})
    shot_a = sg.create("Shot", {"code": "A1", "project": alpha, "sg_sequence": seq_a, "sg_cut_duration": 40})
    shot_a2 = sg.create("Shot", {"code": "A2", "project": alpha, "sg_sequence": seq_b})  # a link across projects
    shot_b = sg.create("Shot", {"code": "B1", "project": beta, "sg_sequence": seq_b})
    orphan = sg.create("Shot", {"code": "none"})
    asset = sg.create("Asset", {"code": "chair", "project": alpha, "shots": [shot_a, shot_b]})
    task = sg.create("Task", {"content": "comp", "project": alpha, "entity": shot_a,
                              "task_assignees": [people["vendor"]], "est_in_mins": 600})
    other_task = sg.create("Task", {"content": "anim", "project": alpha, "entity": shot_a2})
    return {"alpha": alpha, "beta": beta, "template": template, "seq_a": seq_a, "seq_b": seq_b,
            "shot_a": shot_a, "shot_a2": shot_a2, "shot_b": shot_b, "orphan": orphan, "asset": asset,
            "task": task, "other_task": other_task}


def as_(mock_server, **auth):
    return shotgun_api3.Shotgun(mock_server.url, **auth)


def ids(entities) -> set[int]:
    return {e["id"] for e in entities}


def names(entities) -> list[str]:
    return sorted(e["name"] for e in entities)


# --- projects and rows --------------------------------------------------------------------------


def test_an_artist_sees_its_projects_and_the_templates(mock_server, studio):
    assert names(as_(mock_server, **ARTIST).find("Project", [], ["name"])) == ["Alpha", "Template Feature"]


def test_an_admin_script_sees_every_project(sg, studio):
    assert names(sg.find("Project", [], ["name"])) == ["Alpha", "Beta", "Template Feature"]


def test_an_artist_sees_rows_of_its_projects_and_rows_without_a_project(mock_server, studio):
    shots = as_(mock_server, **ARTIST).find("Shot", [], ["code"])
    assert ids(shots) == ids([studio["shot_a"], studio["shot_a2"], studio["orphan"]])


def test_an_artist_sees_rows_of_types_without_a_project(mock_server, sg, studio):
    assert ids(as_(mock_server, **ARTIST).find("HumanUser", [], ["login"])) == ids(sg.find("HumanUser", []))


def test_archived_projects_follow_include_archived_projects_for_an_artist(mock_server, sg, studio):
    sg.update("Project", studio["alpha"]["id"], {"archived": True})
    artist = as_(mock_server, **ARTIST)
    assert names(artist.find("Project", [], ["name"])) == ["Alpha", "Template Feature"]
    assert names(artist.find("Project", [], ["name"], include_archived_projects=False)) == ["Template Feature"]
    assert ids(artist.find("Shot", [], include_archived_projects=False)) == {studio["orphan"]["id"]}


def test_a_vendor_sees_only_the_tasks_assigned_to_it_and_their_shots(mock_server, studio):
    vendor = as_(mock_server, **VENDOR)
    assert ids(vendor.find("Task", [], ["content"])) == {studio["task"]["id"]}
    assert ids(vendor.find("Shot", [], ["code"])) == {studio["shot_a"]["id"]}  # not even the orphan
    assert vendor.find("Sequence", [], ["code"]) == []
    assert vendor.find("Asset", [], ["code"]) == []


def test_a_vendor_sees_assets_of_its_tasks_notes_to_it_or_by_it_and_its_versions(mock_server, sg, people, studio):
    alpha, vendor_link = studio["alpha"], people["vendor"]
    sg.create("Task", {"content": "model", "project": alpha, "entity": studio["asset"],
                       "task_assignees": [vendor_link]})
    to_it = sg.create("Note", {"subject": "to", "project": alpha, "addressings_to": [vendor_link]})
    cc_it = sg.create("Note", {"subject": "cc", "project": alpha, "addressings_cc": [vendor_link]})
    sg.create("Note", {"subject": "others", "project": alpha, "addressings_to": [people["artist"]]})
    sg.create("Version", {"code": "v-admin", "project": alpha})
    vendor = as_(mock_server, **VENDOR)
    by_it = vendor.create("Note", {"subject": "mine", "project": alpha})
    version = vendor.create("Version", {"code": "v-vendor", "project": alpha})
    assert ids(vendor.find("Asset", [])) == {studio["asset"]["id"]}
    assert ids(vendor.find("Note", [])) == {to_it["id"], cc_it["id"], by_it["id"]}
    assert ids(vendor.find("Version", [])) == {version["id"]}


def test_a_vendor_sees_rows_without_a_project_only_under_its_rule(mock_server, sg, people, studio):
    sg.create("Sequence", {"code": "loose"})
    task = sg.create("Task", {"content": "loose", "entity": studio["orphan"], "task_assignees": [people["vendor"]]})
    vendor = as_(mock_server, **VENDOR)
    assert ids(vendor.find("Task", [])) == {studio["task"]["id"], task["id"]}
    assert ids(vendor.find("Shot", [])) == {studio["shot_a"]["id"], studio["orphan"]["id"]}
    assert vendor.find("Sequence", []) == []


def test_a_vendor_s_retired_task_no_longer_shows_its_shot(mock_server, sg, studio):
    sg.delete("Task", studio["task"]["id"])
    assert as_(mock_server, **VENDOR).find("Shot", []) == []


def test_a_group_with_the_person_s_id_does_not_assign_a_task_to_it(mock_server, sg, people, studio):
    group = sg.create("Group", {"code": "g"})
    while group["id"] < people["vendor"]["id"]:
        group = sg.create("Group", {"code": "g"})
    assert group["id"] == people["vendor"]["id"]
    sg.update("Task", studio["other_task"]["id"], {"task_assignees": [group]})
    assert ids(as_(mock_server, **VENDOR).find("Task", [])) == {studio["task"]["id"]}


def test_each_demo_login_sees_its_own_slice_of_the_studio(site_schema, tmp_path):
    site = MockSite(schema_copy(site_schema), file_dir=tmp_path)
    build_studio(site, scale=1, seed=0)
    server = MockServer(site).start()
    try:
        seen = {}
        for login in ("admin", "manager", "artist", "vendor"):
            sg = as_(server, login=login, password=f"{login}-password")
            seen[login] = {t: len(sg.find(t, [])) for t in ("Project", "Shot", "Asset", "Task", "Note", "Version")}
            seen[login]["names"] = names(sg.find("Project", [], ["name"]))
    finally:
        server.stop()
    assert seen["admin"] == seen["manager"]
    assert seen["admin"]["names"] == ["Aurora", "Blackwater", "Copper Sky", "Driftwood", "Template Project"]
    assert seen["artist"]["names"] == ["Copper Sky", "Driftwood", "Template Project"]
    assert seen["vendor"]["names"] == ["Copper Sky", "Template Project"]
    assert {t: seen["vendor"][t] for t in ("Shot", "Asset", "Task", "Note", "Version")} == {
        "Shot": 4, "Asset": 2, "Task": 6, "Note": 3, "Version": 2}
    for kind in ("Shot", "Asset", "Task", "Note", "Version"):
        assert 0 < seen["vendor"][kind] < seen["artist"][kind] < seen["admin"][kind]


def test_the_studio_s_generated_people_have_groups(site_schema, tmp_path):
    site = MockSite(schema_copy(site_schema), file_dir=tmp_path)
    build_studio(site, scale=1, seed=0)
    codes = {i: r["code"] for i, r in site.emu._db["PermissionRuleSet"].items()}
    demo = {h.id for h in site.humans.values()}
    groups = [codes[r["permission_rule_set"]["id"]] for i, r in site.emu._db["HumanUser"].items() if i not in demo]
    assert (groups.count("manager"), groups.count("vendor"), groups.count("admin")) == (4, 2, 0)
    assert groups.count("artist") == len(groups) - 6


# --- hidden types -------------------------------------------------------------------------------


def test_a_hidden_type_is_a_fault_naming_the_rule(mock_server, studio):
    with pytest.raises(shotgun_api3.Fault, match="^Entity of type ApiUser can not be accessed by this user. "
                                                 "Rule: Artist$"):
        as_(mock_server, **ARTIST).find("ApiUser", [], ["firstname"])


@pytest.mark.parametrize("call", [
    lambda sg: sg.summarize("PermissionRuleSet", [], [{"field": "id", "type": "record_count"}]),
    lambda sg: sg.create("ApiUser", {"firstname": "mine"}),
    lambda sg: sg.update("ApiUser", 1, {"permission_rule_set": None}),
    lambda sg: sg.delete("ApiUser", 1),
    lambda sg: sg.revive("ApiUser", 1),
    lambda sg: sg.batch([{"request_type": "delete", "entity_type": "PermissionRuleSet", "entity_id": 1}]),
])
def test_every_call_on_a_hidden_type_is_refused(mock_server, studio, call):
    with pytest.raises(shotgun_api3.Fault, match="Entity of type (ApiUser|PermissionRuleSet) can not be accessed "
                                                 "by this user. Rule: Vendor"):
        call(as_(mock_server, **VENDOR))


def test_a_link_into_a_hidden_type_reads_as_none(mock_server, sg, people, studio):
    artist = as_(mock_server, **ARTIST)
    me = artist.find_one("HumanUser", [["id", "is", people["artist"]["id"]]], ["permission_rule_set"])
    assert me["permission_rule_set"] is None
    assert sg.find_one("HumanUser", [["id", "is", people["artist"]["id"]]],
                       ["permission_rule_set"])["permission_rule_set"]["name"] == "artist"


# --- invisible links ------------------------------------------------------------------------------


def test_a_link_to_an_invisible_entity_reads_as_none_and_leaves_lists(mock_server, studio):
    artist = as_(mock_server, **ARTIST)
    shot = artist.find_one("Shot", [["id", "is", studio["shot_a2"]["id"]]], ["sg_sequence",
                                                                             "sg_sequence.Sequence.code"])
    assert shot["sg_sequence"] is None and shot["sg_sequence.Sequence.code"] is None
    asset = artist.find_one("Asset", [["id", "is", studio["asset"]["id"]]], ["shots"])
    assert [s["id"] for s in asset["shots"]] == [studio["shot_a"]["id"]]


def test_a_deep_return_field_goes_through_visible_entities_only(mock_server, studio):
    seq = as_(mock_server, **ARTIST).find_one("Sequence", [["id", "is", studio["seq_b"]["id"]]])
    assert seq is None
    [task] = as_(mock_server, **ARTIST).find("Task", [["id", "is", studio["other_task"]["id"]]],
                                             ["entity.Shot.sg_sequence", "entity.Shot.code"])
    assert task["entity.Shot.sg_sequence"] is None and task["entity.Shot.code"] == "A2"


def test_a_filter_on_an_invisible_link_sees_no_link(mock_server, sg, studio):
    artist = as_(mock_server, **ARTIST)
    assert ids(artist.find("Shot", [["sg_sequence", "is", None]], ["code"])) == ids([studio["shot_a2"],
                                                                                     studio["orphan"]])
    assert artist.find("Shot", [["sg_sequence", "is", studio["seq_b"]]], ["code"]) == []
    assert artist.find("Shot", [["sg_sequence.Sequence.code", "is", "SQB"]], ["code"]) == []
    assert len(sg.find("Shot", [["sg_sequence.Sequence.code", "is", "SQB"]], ["code"])) == 2


def test_a_filter_on_a_multi_entity_list_ignores_invisible_entries(mock_server, sg, studio):
    assert as_(mock_server, **ARTIST).find("Asset", [["shots", "is", studio["shot_b"]]]) == []
    assert ids(sg.find("Asset", [["shots", "is", studio["shot_b"]]])) == {studio["asset"]["id"]}


# --- hidden fields --------------------------------------------------------------------------------


def test_a_hidden_field_is_left_out_of_results(mock_server, studio):
    [task] = as_(mock_server, **VENDOR).find("Task", [], ["content", "est_in_mins", "entity.Shot.sg_cut_duration"])
    assert task == {"type": "Task", "id": studio["task"]["id"], "content": "comp"}


@pytest.mark.parametrize(("call", "message"), [
    (lambda sg: sg.find("Task", [["est_in_mins", "greater_than", 1]]),
     r"^API read\(\) Task.est_in_mins can not be accessed by this user. Rule: Vendor$"),
    (lambda sg: sg.find("Task", [{"filter_operator": "any", "filters": [["entity.Shot.sg_cut_duration", "is", 1]]}]),
     r"^API read\(\) Shot.sg_cut_duration can not be accessed by this user. Rule: Vendor$"),
    (lambda sg: sg.find("Shot", [], order=[{"field_name": "sg_cut_duration", "direction": "asc"}]),
     r"^API read\(\) Shot.sg_cut_duration can not be accessed"),
    (lambda sg: sg.summarize("Task", [], [{"field": "est_in_mins", "type": "sum"}]),
     r"^API summarize\(\) Task.est_in_mins can not be accessed by this user. Rule: Vendor$"),
    (lambda sg: sg.summarize("Task", [], [{"field": "id", "type": "count"}],
                             grouping=[{"field": "est_in_mins", "type": "exact", "direction": "asc"}]),
     r"^API summarize\(\) Task.est_in_mins can not be accessed"),
])
def test_a_hidden_field_is_a_fault_in_filters_sorts_summaries_and_groupings(mock_server, studio, call, message):
    with pytest.raises(shotgun_api3.Fault, match=message):
        call(as_(mock_server, **VENDOR))


def test_schemas_are_the_same_for_every_group(mock_server, sg, studio):
    vendor = as_(mock_server, **VENDOR)
    assert vendor.schema_field_read("Task") == sg.schema_field_read("Task")
    assert vendor.schema_entity_read() == sg.schema_entity_read()


# --- who ------------------------------------------------------------------------------------------


def test_sudo_as_login_applies_the_person_s_group(mock_server, studio):
    as_artist = as_(mock_server, **SCRIPT_AUTH, sudo_as_login="artist")
    assert names(as_artist.find("Project", [], ["name"])) == ["Alpha", "Template Feature"]


def test_a_session_token_applies_its_owner_s_group(mock_server, studio):
    token = as_(mock_server, **ARTIST).get_session_token()
    by_token = as_(mock_server, session_token=token)
    assert names(by_token.find("Project", [], ["name"])) == ["Alpha", "Template Feature"]


def test_a_session_minted_under_sudo_is_the_person_s(mock_server, studio):
    token = as_(mock_server, **SCRIPT_AUTH, sudo_as_login="vendor").get_session_token()
    assert ids(as_(mock_server, session_token=token).find("Task", [])) == {studio["task"]["id"]}


def test_a_script_in_a_restricted_group_is_restricted(mock_server, sg, studio):
    artist_group = sg.find_one("PermissionRuleSet", [["code", "is", "artist"]])
    script = sg.find_one("ApiUser", [["firstname", "is", "quiet-script"]])
    sg.update("ApiUser", script["id"], {"permission_rule_set": artist_group})
    quiet = as_(mock_server, script_name="quiet-script", api_key="quiet-demo-key")
    assert names(quiet.find("Project", [], ["name"])) == ["Template Feature"]  # a script is in no Project.users


def test_a_permission_group_change_takes_effect_at_once(mock_server, sg, people, studio):
    manager = sg.find_one("PermissionRuleSet", [["code", "is", "manager"]], ["code"])
    artist = as_(mock_server, **ARTIST)
    assert names(artist.find("Project", [], ["name"])) == ["Alpha", "Template Feature"]
    sg.update("HumanUser", people["artist"]["id"], {"permission_rule_set": manager})
    assert names(artist.find("Project", [], ["name"])) == ["Alpha", "Beta", "Template Feature"]
    [event] = sg.find("EventLogEntry", [["attribute_name", "is", "permission_rule_set"]], ["entity", "meta"])
    assert event["entity"]["id"] == people["artist"]["id"] and event["meta"]["new_value"]["id"] == manager["id"]


def test_an_empty_permission_group_is_the_default_one(mock_server, sg, people, studio):
    sg.update("HumanUser", people["vendor"]["id"], {"permission_rule_set": None})
    vendor = as_(mock_server, **VENDOR)
    assert names(vendor.find("Project", [], ["name"])) == ["Alpha", "Template Feature"]
    assert len(vendor.find("Task", [])) == 2  # an artist's view of Alpha, not a vendor's
    with pytest.raises(shotgun_api3.Fault, match="Rule: Artist$"):
        vendor.find("ApiUser", [])


def test_only_callers_who_see_everything_may_change_a_permission_group(mock_server, sg, people, studio):
    manager = sg.find_one("PermissionRuleSet", [["code", "is", "manager"]], ["code"])
    with pytest.raises(shotgun_api3.Fault, match=r"HumanUser.permission_rule_set is not editable"):
        as_(mock_server, **ARTIST).update("HumanUser", people["artist"]["id"], {"permission_rule_set": manager})


# --- writes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("write", [
    lambda sg, w: sg.update("Shot", w["shot_b"]["id"], {"description": "x"}),
    lambda sg, w: sg.delete("Shot", w["shot_b"]["id"]),
    lambda sg, w: sg.create("Shot", {"code": "new", "project": w["beta"]}),
    lambda sg, w: sg.update("Shot", w["shot_a"]["id"], {"project": w["beta"]}),
    lambda sg, w: sg.batch([
        {"request_type": "update", "entity_type": "Shot", "entity_id": w["shot_a"]["id"], "data": {"code": "ok"}},
        {"request_type": "update", "entity_type": "Shot", "entity_id": w["shot_b"]["id"], "data": {"code": "no"}}]),
])
def test_an_artist_cannot_write_what_it_cannot_see(mock_server, sg, studio, write):
    before = sg.find("Shot", [], ["code", "project", "description"])
    with pytest.raises(shotgun_api3.Fault, match="can not be accessed by this user. Rule: Artist"):
        write(as_(mock_server, **ARTIST), studio)
    assert sg.find("Shot", [], ["code", "project", "description"]) == before


def test_an_artist_cannot_revive_what_it_cannot_see(mock_server, sg, studio):
    sg.delete("Shot", studio["shot_b"]["id"])
    with pytest.raises(shotgun_api3.Fault, match=f"Shot {studio['shot_b']['id']} can not be accessed"):
        as_(mock_server, **ARTIST).revive("Shot", studio["shot_b"]["id"])
    assert sg.find_one("Shot", [["id", "is", studio["shot_b"]["id"]]]) is None


def test_an_artist_cannot_upload_to_what_it_cannot_see(mock_server, sg, studio, tmp_path):
    path = tmp_path / "still.png"
    path.write_bytes(b"not really a png")
    with pytest.raises(shotgun_api3.ShotgunError, match="can not be accessed by this user. Rule: Artist"):
        as_(mock_server, **ARTIST).upload("Shot", studio["shot_b"]["id"], str(path), field_name="sg_uploaded_movie")
    assert sg.find("Attachment", []) == []


def test_a_vendor_cannot_set_a_hidden_field(mock_server, sg, studio):
    with pytest.raises(shotgun_api3.Fault, match=r"^API update\(\) Task.est_in_mins can not be accessed by this "
                                                 r"user. Rule: Vendor$"):
        as_(mock_server, **VENDOR).update("Task", studio["task"]["id"], {"est_in_mins": 5})
    assert sg.find_one("Task", [["id", "is", studio["task"]["id"]]], ["est_in_mins"])["est_in_mins"] == 600


def test_an_artist_may_write_in_its_projects(mock_server, sg, studio):
    as_(mock_server, **ARTIST).update("Shot", studio["shot_a"]["id"], {"description": "lit"})
    assert sg.find_one("Shot", [["id", "is", studio["shot_a"]["id"]]], ["description"])["description"] == "lit"


def test_an_artist_may_create_and_change_a_row_in_one_batch(mock_server, sg, studio):
    [shot, changed] = as_(mock_server, **ARTIST).batch([
        {"request_type": "create", "entity_type": "Shot", "data": {"code": "N1", "project": studio["alpha"]}},
        {"request_type": "update", "entity_type": "Shot", "entity_id": studio["orphan"]["id"] + 1,
         "data": {"description": "new"}}])
    assert changed["id"] == shot["id"]
    assert sg.find_one("Shot", [["id", "is", shot["id"]]], ["code", "description"]) == {
        "type": "Shot", "id": shot["id"], "code": "N1", "description": "new"}


def test_a_write_s_answer_is_shown_as_the_caller_sees_it(mock_server, studio):
    shot = as_(mock_server, **ARTIST).create("Shot", {"code": "N2", "project": studio["alpha"],
                                                      "sg_sequence": studio["seq_b"]})
    assert shot["sg_sequence"] is None and shot["project"]["id"] == studio["alpha"]["id"]
    task = as_(mock_server, **VENDOR).update("Task", studio["task"]["id"], {"content": "comp v2"})
    assert task == {"type": "Task", "id": studio["task"]["id"], "content": "comp v2"}
    version = as_(mock_server, **VENDOR).create("Version", {"code": "v9", "project": studio["alpha"]},
                                                ["sg_status_list"])
    assert "sg_status_list" not in version and version["code"] == "v9"


# --- counts -----------------------------------------------------------------------------------------


def test_summaries_count_only_visible_rows(mock_server, sg, studio):
    summary = as_(mock_server, **ARTIST).summarize("Shot", [], [{"field": "id", "type": "record_count"}],
                                                   grouping=[{"field": "project", "type": "exact",
                                                              "direction": "asc"}])
    assert summary["summaries"]["id"] == 3
    assert sorted((g["group_value"] or {}).get("id", 0) for g in summary["groups"]) == [0, studio["alpha"]["id"]]
    assert sg.summarize("Shot", [], [{"field": "id", "type": "record_count"}])["summaries"]["id"] == 4


def test_page_counts_and_pages_cover_only_visible_rows(mock_server, studio):
    artist = as_(mock_server, **ARTIST)

    def page(number: int, **extra) -> dict:
        return artist._call_rpc("read", {
            "type": "Shot", "return_fields": ["code"], "filters": {"logical_operator": "and", "conditions": []},
            "paging": {"entities_per_page": 2, "current_page": number}, **extra})

    first = page(1, return_paging_info=True)
    assert first["paging_info"] == {"entity_count": 3, "current_page": 1, "page_count": 2}
    second = page(2, return_paging_info_without_counts=True)
    assert [e["code"] for e in second["entities"]] == ["none"]
    assert second["paging_info"] == {"has_next_page": False}


# --- setup ----------------------------------------------------------------------------------------


def test_each_person_and_script_has_its_group(sg, people):
    rule_sets = {r["id"]: r["code"] for r in sg.find("PermissionRuleSet", [], ["code"])}
    vendor = sg.find_one("HumanUser", [["login", "is", "vendor"]], ["permission_rule_set"])
    script = sg.find_one("ApiUser", [["firstname", "is", "sgcache"]], ["permission_rule_set"])
    assert rule_sets[vendor["permission_rule_set"]["id"]] == "vendor"
    assert rule_sets[script["permission_rule_set"]["id"]] == "api_admin"


def test_the_site_has_the_five_groups(sg):
    rows = sg.find("PermissionRuleSet", [], ["code", "display_name", "entity_type"])
    assert sorted((r["code"], r["display_name"], r["entity_type"]) for r in rows) == [
        ("admin", "Admin", "HumanUser"), ("api_admin", "API Admin", "ApiUser"), ("artist", "Artist", "HumanUser"),
        ("manager", "Manager", "HumanUser"), ("vendor", "Vendor", "HumanUser")]


def test_a_users_file_gives_groups_and_refuses_unknown_ones(tmp_path):
    good = tmp_path / "users.yml"
    good.write_text("scripts:\n  - {name: farm, key: k, group: artist}\n"
                    "humans:\n  - {login: lee, password: p, group: manager}\n  - {login: ann, password: p}\n")
    scripts, humans = load_users(good)
    assert [(s.name, s.group) for s in scripts] == [("farm", "artist")]
    assert [(h.login, h.group) for h in humans] == [("lee", "manager"), ("ann", "artist")]
    bad = tmp_path / "bad.yml"
    bad.write_text("humans:\n  - {login: lee, password: p, group: director}\n")
    with pytest.raises(SgcacheError, match=r"humans\[0\]: group must be one of admin, manager, artist, vendor, "
                                           r"api_admin, got 'director'"):
        load_users(bad)


def test_the_credentials_text_names_each_group(mock_site):
    mock_site.add_human(Human("vendor", "vendor-password", "Vic Vendor", group="vendor"))
    text = credentials_text(mock_site, "http://site")
    assert "  script 'sgcache' key 'sgcache-demo-key'  (group api_admin)" in text.splitlines()
    assert "  user 'vendor' password 'vendor-password'  (group vendor)" in text.splitlines()


def test_a_state_file_keeps_the_groups(site_schema, tmp_path):
    site = MockSite(schema_copy(site_schema), file_dir=tmp_path)
    site.add_human(Human("vendor", "vendor-password", "Vic Vendor", group="vendor"))
    site.save(tmp_path / "site.pickle")
    server = MockServer(MockSite.restore(tmp_path / "site.pickle", file_dir=tmp_path)).start()
    try:
        assert server.site.humans["vendor"].group == "vendor"
        with pytest.raises(shotgun_api3.Fault, match="Rule: Vendor"):
            as_(server, **VENDOR).find("ApiUser", [])
    finally:
        server.stop()
