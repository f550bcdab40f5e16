"""The stand-in's permission groups, through the real client over HTTP (docs/mocksite.rst).

An admin script builds two projects; the artist is assigned to Alpha only, the vendor to Alpha
with one task. Each test asks as one of them and checks exactly what comes back.
"""

from __future__ import annotations

import pytest
import shotgun_api3

from sgcache.mocksite.site import Human

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


def test_an_artist_sees_its_projects_and_the_templates(mock_server, studio):
    seen = as_(mock_server, **ARTIST).find("Project", [], ["name"])
    assert sorted(p["name"] for p in seen) == ["Alpha", "Template Feature"]


def test_an_admin_script_sees_every_project(sg, studio):
    assert {"Alpha", "Beta", "Template Feature"} <= {p["name"] for p in sg.find("Project", [], ["name"])}


def test_an_artist_sees_rows_of_its_projects_and_rows_without_a_project(mock_server, studio):
    shots = as_(mock_server, **ARTIST).find("Shot", [], ["code"])
    assert ids(shots) == ids([studio["shot_a"], studio["shot_a2"], studio["orphan"]])


def test_a_hidden_type_is_a_fault_naming_the_rule(mock_server, studio):
    with pytest.raises(shotgun_api3.Fault, match="Entity of type ApiUser can not be accessed by this user. "
                                                 "Rule: Artist"):
        as_(mock_server, **ARTIST).find("ApiUser", [], ["firstname"])


def test_a_link_to_an_invisible_entity_reads_as_none_and_leaves_lists(mock_server, studio):
    artist = as_(mock_server, **ARTIST)
    shot = artist.find_one("Shot", [["id", "is", studio["shot_a2"]["id"]]], ["sg_sequence",
                                                                             "sg_sequence.Sequence.code"])
    assert shot["sg_sequence"] is None and shot["sg_sequence.Sequence.code"] is None
    asset = artist.find_one("Asset", [["id", "is", studio["asset"]["id"]]], ["shots"])
    assert [s["id"] for s in asset["shots"]] == [studio["shot_a"]["id"]]


def test_a_filter_on_an_invisible_link_sees_no_link(mock_server, sg, studio):
    artist = as_(mock_server, **ARTIST)
    assert ids(artist.find("Shot", [["sg_sequence", "is", None]], ["code"])) == ids([studio["shot_a2"],
                                                                                     studio["orphan"]])
    assert artist.find("Shot", [["sg_sequence", "is", studio["seq_b"]]], ["code"]) == []
    assert artist.find("Shot", [["sg_sequence.Sequence.code", "is", "SQB"]], ["code"]) == []
    assert len(sg.find("Shot", [["sg_sequence.Sequence.code", "is", "SQB"]], ["code"])) == 2


def test_a_vendor_sees_only_what_is_assigned_to_it(mock_server, studio):
    vendor = as_(mock_server, **VENDOR)
    assert ids(vendor.find("Task", [], ["content"])) == {studio["task"]["id"]}
    assert ids(vendor.find("Shot", [], ["code"])) == {studio["shot_a"]["id"]}  # not even the orphan
    assert vendor.find("Sequence", [], ["code"]) == []


def test_a_hidden_field_is_left_out_of_results_and_refused_in_filters(mock_server, studio):
    vendor = as_(mock_server, **VENDOR)
    [task] = vendor.find("Task", [], ["content", "est_in_mins", "entity.Shot.sg_cut_duration"])
    assert task == {"type": "Task", "id": studio["task"]["id"], "content": "comp"}
    with pytest.raises(shotgun_api3.Fault, match=r"Task.est_in_mins can not be accessed by this user. Rule: Vendor"):
        vendor.find("Task", [["est_in_mins", "greater_than", 1]], ["content"])
    with pytest.raises(shotgun_api3.Fault, match=r"Shot.sg_cut_duration can not be accessed"):
        vendor.find("Task", [], ["content"], order=[{"field_name": "entity.Shot.sg_cut_duration",
                                                      "direction": "asc"}])


def test_sudo_as_login_applies_the_person_s_group(mock_server, studio):
    from conftest import SCRIPT_AUTH

    as_artist = as_(mock_server, **SCRIPT_AUTH, sudo_as_login="artist")
    assert sorted(p["name"] for p in as_artist.find("Project", [], ["name"])) == ["Alpha", "Template Feature"]


def test_a_session_token_applies_its_owner_s_group(mock_server, studio):
    token = as_(mock_server, **ARTIST).get_session_token()
    by_token = as_(mock_server, session_token=token)
    assert sorted(p["name"] for p in by_token.find("Project", [], ["name"])) == ["Alpha", "Template Feature"]


@pytest.mark.parametrize("write", [
    lambda sg, w: sg.update("Shot", w["shot_b"]["id"], {"description": "x"}),
    lambda sg, w: sg.delete("Shot", w["shot_b"]["id"]),
    lambda sg, w: sg.create("Shot", {"code": "new", "project": w["beta"]}),
    lambda sg, w: sg.update("Shot", w["shot_a"]["id"], {"project": w["beta"]}),
    lambda sg, w: sg.create("ApiUser", {"firstname": "mine"}),
])
def test_an_artist_cannot_write_what_it_cannot_see(mock_server, sg, studio, write):
    before = sg.find("Shot", [], ["code", "project", "description"])
    with pytest.raises(shotgun_api3.Fault, match="can not be accessed by this user. Rule: Artist"):
        write(as_(mock_server, **ARTIST), studio)
    assert sg.find("Shot", [], ["code", "project", "description"]) == before


def test_a_vendor_cannot_set_a_hidden_field(mock_server, sg, studio):
    with pytest.raises(shotgun_api3.Fault, match="Task.est_in_mins can not be accessed"):
        as_(mock_server, **VENDOR).update("Task", studio["task"]["id"], {"est_in_mins": 5})
    assert sg.find_one("Task", [["id", "is", studio["task"]["id"]]], ["est_in_mins"])["est_in_mins"] == 600


def test_an_artist_may_write_in_its_projects(mock_server, sg, studio):
    as_(mock_server, **ARTIST).update("Shot", studio["shot_a"]["id"], {"description": "lit"})
    assert sg.find_one("Shot", [["id", "is", studio["shot_a"]["id"]]], ["description"])["description"] == "lit"


def test_a_permission_group_change_takes_effect_at_once(mock_server, sg, people, studio):
    manager = sg.find_one("PermissionRuleSet", [["code", "is", "manager"]], ["code"])
    sg.update("HumanUser", people["artist"]["id"], {"permission_rule_set": manager})
    assert {"Alpha", "Beta"} <= {p["name"] for p in as_(mock_server, **ARTIST).find("Project", [], ["name"])}
    [event] = sg.find("EventLogEntry", [["attribute_name", "is", "permission_rule_set"]], ["entity", "meta"])
    assert event["meta"]["new_value"]["id"] == manager["id"]


def test_only_admins_may_change_a_permission_group(mock_server, sg, people, studio):
    manager = sg.find_one("PermissionRuleSet", [["code", "is", "manager"]], ["code"])
    with pytest.raises(shotgun_api3.Fault):
        as_(mock_server, **ARTIST).update("HumanUser", people["artist"]["id"], {"permission_rule_set": manager})


def test_summaries_and_page_counts_cover_only_visible_rows(mock_server, studio):
    artist = as_(mock_server, **ARTIST)
    summary = artist.summarize("Shot", [], [{"field": "id", "type": "record_count"}])
    assert summary["summaries"]["id"] == 3
    sg_raw = artist._call_rpc("read", {"type": "Shot", "return_fields": ["code"], "filters": {
        "logical_operator": "and", "conditions": []}, "paging": {"entities_per_page": 2, "current_page": 1},
        "return_paging_info": True})
    assert sg_raw["paging_info"]["entity_count"] == 3


def test_schemas_are_the_same_for_every_group(mock_server, sg, studio):
    assert as_(mock_server, **VENDOR).schema_field_read("Task") == sg.schema_field_read("Task")


def test_each_person_and_script_has_its_group(sg, people):
    rule_sets = {r["id"]: r["code"] for r in sg.find("PermissionRuleSet", [], ["code"])}
    vendor = sg.find_one("HumanUser", [["login", "is", "vendor"]], ["permission_rule_set"])
    script = sg.find_one("ApiUser", [["firstname", "is", "sgcache"]], ["permission_rule_set"])
    assert rule_sets[vendor["permission_rule_set"]["id"]] == "vendor"
    assert rule_sets[script["permission_rule_set"]["id"]] == "api_admin"
    assert set(rule_sets.values()) == {"admin", "manager", "artist", "vendor", "api_admin"}
