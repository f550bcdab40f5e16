"""A cache holding only some projects (``scanner.projects``) answers the reads whose rows all lie
in them; links out of them are named from slim records, and hops out of them pass through.

The real client talks to the proxy and to the stand-in, on SQLite and PostgreSQL. Project
Alpha is cached, Beta is not; a Shot of Alpha links a Sequence of Beta.
"""

from __future__ import annotations

import time

import pytest
from test_read_cache import answered_from_cache, import_all
from test_slim import poll


@pytest.fixture
def split(sg):
    alpha = sg.create("Project", {"name": "Alpha"})
    beta = sg.create("Project", {"name": "Beta"})
    seq_a = sg.create("Sequence", {"code": "SQ_A", "project": alpha})
    seq_b = sg.create("Sequence", {"code": "SQ_B", "project": beta})
    scene = sg.create("Scene", {"code": "Forest", "project": beta})
    shots_a = [sg.create("Shot", {"code": f"A{i:02d}", "project": alpha, "sg_sequence": seq, "sg_scene": scene})
               for i, seq in enumerate([seq_a, seq_b, None])]
    shots_b = [sg.create("Shot", {"code": f"B{i:02d}", "project": beta, "sg_sequence": seq_b}) for i in range(2)]
    # Assets of both projects on one Alpha shot: a multi-entity field reaching out of the cached projects.
    assets = [sg.create("Asset", {"code": code, "project": project}) for code, project in (("Chair", alpha),
                                                                                         ("Table", beta))]
    sg.update("Shot", shots_a[0]["id"], {"assets": assets})
    return {"alpha": alpha, "beta": beta, "seq_a": seq_a, "seq_b": seq_b, "shots_a": shots_a, "shots_b": shots_b}


@pytest.fixture
def subset_proxy(make_proxy, split):
    proxy = make_proxy(scanner__slim_records="all")
    import_all(proxy, projects=[split["alpha"]["id"]])
    time.sleep(proxy.service.STATE_TTL)
    return proxy


def cached_answer(proxy, sg, call):
    result, cached = answered_from_cache(proxy, lambda: call(proxy.client()))
    assert cached, dict(proxy.service.reasons)
    assert result == call(sg)
    return result


def passed_through(proxy, sg, call, reason: str = "project_subset"):
    before = proxy.service.reasons[reason]
    result, cached = answered_from_cache(proxy, lambda: call(proxy.client()))
    assert not cached
    assert proxy.service.reasons[reason] == before + 1
    assert result == call(sg)
    return result


def test_a_read_kept_to_the_cached_projects_is_answered_and_names_links_out_of_them(subset_proxy, sg, split):
    shots = cached_answer(subset_proxy, sg, lambda c: c.find("Shot", [["project", "is", split["alpha"]]],
                                                              ["code", "sg_sequence", "sg_scene", "project"]))
    assert [s["code"] for s in shots] == ["A00", "A01", "A02"]
    # A01's sequence is in Beta, which the cache does not hold: named from its slim record.
    assert shots[1]["sg_sequence"] == {"type": "Sequence", "id": split["seq_b"]["id"], "name": "SQ_B"}


def test_a_read_not_kept_to_the_cached_projects_passes_through(subset_proxy, sg, split):
    passed_through(subset_proxy, sg, lambda c: c.find("Shot", [], ["code"]))
    passed_through(subset_proxy, sg, lambda c: c.find("Shot", [["project", "in", [split["alpha"], split["beta"]]]],
                                                      ["code"]))
    passed_through(subset_proxy, sg, lambda c: c.find("Shot", [{"filter_operator": "any", "filters": [
        ["project", "is", split["alpha"]], ["code", "is", "B00"]]}], ["code"]))


def test_a_type_without_a_project_is_answered_whole(subset_proxy, sg, split):
    cached_answer(subset_proxy, sg, lambda c: c.find("Project", [], ["name"]))
    cached_answer(subset_proxy, sg, lambda c: c.find("HumanUser", [], ["login", "name"]))


def test_filters_and_sorts_on_links_out_of_the_cached_projects(subset_proxy, sg, split):
    alpha = ["project", "is", split["alpha"]]
    assert [s["code"] for s in cached_answer(subset_proxy, sg, lambda c: c.find(
        "Shot", [alpha, ["sg_sequence", "is", split["seq_b"]]], ["code"]))] == ["A01"]
    cached_answer(subset_proxy, sg, lambda c: c.find("Shot", [alpha, ["sg_sequence", "name_contains", "_b"]], ["code"]))
    cached_answer(subset_proxy, sg, lambda c: c.find("Shot", [alpha], ["code"],
                                                     order=[{"field_name": "sg_sequence", "direction": "desc"}]))
    cached_answer(subset_proxy, sg, lambda c: c.summarize("Shot", [alpha], [{"field": "id", "type": "count"}],
                                                          grouping=[{"field": "sg_sequence", "type": "exact",
                                                                     "direction": "asc"}]))


def test_a_hop_out_of_the_cached_projects_passes_through(subset_proxy, sg, split):
    alpha = ["project", "is", split["alpha"]]
    # A01's sequence lies in Beta: its code is not held.
    passed_through(subset_proxy, sg, lambda c: c.find("Shot", [alpha], ["code", "sg_sequence.Sequence.code"]))
    passed_through(subset_proxy, sg, lambda c: c.find("Shot", [alpha, ["sg_sequence.Sequence.code", "is", "SQ_B"]],
                                                      ["code"]))
    # A hop that stays inside is answered.
    cached_answer(subset_proxy, sg, lambda c: c.find("Shot", [alpha, ["code", "is", "A00"]],
                                                     ["sg_sequence.Sequence.code"]))


def test_links_out_of_the_cached_projects_follow_events(subset_proxy, sg, split):
    alpha = ["project", "is", split["alpha"]]
    sg.update("Sequence", split["seq_b"]["id"], {"code": "SQ_B2"})
    sg.update("Sequence", split["seq_a"]["id"], {"project": split["beta"]})  # moves out of the cached projects
    poll(subset_proxy)
    shots = cached_answer(subset_proxy, sg, lambda c: c.find("Shot", [alpha], ["code", "sg_sequence"]))
    assert [s["sg_sequence"] and s["sg_sequence"]["name"] for s in shots] == ["SQ_A", "SQ_B2", None]
    sg.delete("Sequence", split["seq_b"]["id"])
    poll(subset_proxy)
    shots = cached_answer(subset_proxy, sg, lambda c: c.find("Shot", [alpha], ["code", "sg_sequence"]))
    assert shots[1]["sg_sequence"] is None


def test_a_new_project_set_lists_what_lies_outside_it_again(subset_proxy, sg, split):
    import_all(subset_proxy, projects=[split["beta"]["id"]])
    time.sleep(subset_proxy.service.STATE_TTL)
    shots = cached_answer(subset_proxy, sg, lambda c: c.find("Shot", [["project", "is", split["beta"]]],
                                                              ["code", "sg_sequence"]))
    assert [s["code"] for s in shots] == ["B00", "B01"]
    passed_through(subset_proxy, sg, lambda c: c.find("Shot", [["project", "is", split["alpha"]]], ["code"]))


def test_a_multi_entity_field_reaching_out_of_the_cached_projects(subset_proxy, sg, split):
    alpha = ["project", "is", split["alpha"]]
    shot = cached_answer(subset_proxy, sg, lambda c: c.find_one("Shot", [alpha, ["code", "is", "A00"]], ["assets"]))
    assert [a["name"] for a in shot["assets"]] == ["Chair", "Table"]
    for relation, value in (("name_contains", "tab"), ("name_not_contains", "tab"), ("name_is", "table")):
        condition = ["assets", relation, value]
        cached_answer(subset_proxy, sg, lambda c, condition=condition: c.find("Shot", [alpha, condition], ["code"]))
    passed_through(subset_proxy, sg, lambda c: c.find("Shot", [alpha, ["assets.Asset.code", "is", "Table"]], ["code"]))
