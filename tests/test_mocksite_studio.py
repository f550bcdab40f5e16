"""The generated studio (sgcache.mocksite.studio): size, determinism and consistency of its data."""

from __future__ import annotations

from collections import Counter

import pytest
from conftest import schema_copy

from sgcache.mocksite.site import MockSite
from sgcache.mocksite.studio import ANCHOR, HISTORY_START, build_studio

AUTH = {"script_name": "sgcache", "script_key": "sgcache-demo-key"}
EVERYTHING = {"logical_operator": "and", "conditions": []}


@pytest.fixture(scope="module")
def studio(site_schema):
    """(site, counts, counts before the build) for scale 1, seed 0; shared: tests only read it."""
    site = MockSite(schema_copy(site_schema))
    before = {t: len(rows) for t, rows in site.emu._db.items()}
    counts = build_studio(site, scale=1, seed=0)
    return site, counts, before


def rows(site: MockSite, entity_type: str) -> list[dict]:
    return list(site.emu._db[entity_type].values())


def live(site: MockSite, entity_type: str) -> list[dict]:
    return [r for r in rows(site, entity_type) if not r["__retired"]]


def record_count(site: MockSite, entity_type: str, **extra) -> int:
    answer = site.call("summarize", [AUTH, {"type": entity_type, "filters": EVERYTHING,
                                            "summaries": [{"field": "id", "type": "record_count"}], **extra}])
    return answer["summaries"]["id"]


def test_counts_match_what_the_site_holds(studio):
    site, counts, before = studio
    for entity_type, count in counts.items():
        assert len(site.emu._db[entity_type]) == before[entity_type] + count, entity_type
        # summarize counts live rows: the site's own users (made first) and the studio's unretired ones
        made = rows(site, entity_type)[before[entity_type]:]
        assert record_count(site, entity_type) == before[entity_type] + sum(not r["__retired"] for r in made)


def test_scale_one_is_about_five_thousand_entities(studio):
    _, counts, _ = studio
    assert 4000 <= sum(counts.values()) <= 6500
    for entity_type in ("Department", "Group", "Step", "PublishedFileType", "LocalStorage", "Sequence", "Shot",
                        "Asset", "Task", "Version", "PublishedFile", "Note", "Reply", "Playlist", "TimeLog",
                        "CustomEntity01"):
        assert counts.get(entity_type, 0) > 0, entity_type
    assert counts["HumanUser"] >= 40
    assert counts["Project"] >= 3


def test_same_seed_same_data_other_seed_other_data(studio, site_schema):
    site, counts, _ = studio
    again = MockSite(schema_copy(site_schema))
    assert build_studio(again, scale=1, seed=0) == counts
    for entity_type in ("Project", "Shot", "Task", "Version", "Note", "PublishedFile"):
        assert again.emu._db[entity_type] == site.emu._db[entity_type], entity_type
    other = MockSite(schema_copy(site_schema))
    build_studio(other, scale=1, seed=1)
    assert other.emu._db["Shot"] != site.emu._db["Shot"]
    assert other.emu._db["Version"] != site.emu._db["Version"]


def test_exactly_one_project_is_archived_and_hidden_on_request(studio):
    site, _, _ = studio
    archived = [p for p in rows(site, "Project") if p["archived"]]
    assert len(archived) == 1
    archived_shots = [s for s in live(site, "Shot") if s["project"]["id"] == archived[0]["id"]]
    assert archived_shots
    assert record_count(site, "Shot", include_archived_projects=False) == \
        len(live(site, "Shot")) - len(archived_shots)


def test_some_shots_tasks_versions_and_notes_are_retired(studio):
    site, counts, _ = studio
    for entity_type in ("Shot", "Task", "Version", "Note"):
        retired = [r for r in rows(site, entity_type) if r["__retired"]]
        assert 0 < len(retired) < 0.1 * counts[entity_type], entity_type
    answer = site.call("read", [AUTH, {"type": "Version", "return_fields": ["code"], "filters": EVERYTHING,
                                       "return_only": "retired", "paging": {"entities_per_page": 500,
                                                                            "current_page": 1}}])
    assert {e["id"] for e in answer["entities"]} == {r["id"] for r in rows(site, "Version") if r["__retired"]}


def test_shots_belong_to_a_sequence_of_their_project_which_lists_them(studio):
    site, _, _ = studio
    sequences = site.emu._db["Sequence"]
    for shot in rows(site, "Shot"):
        sequence = sequences[shot["sg_sequence"]["id"]]
        assert sequence["project"] == shot["project"]
        assert {"type": "Shot", "id": shot["id"]} in sequence["shots"]
        assert shot["code"].startswith(sequence["code"] + "_SH")
    assert sum(len(s["shots"]) for s in sequences.values()) == len(rows(site, "Shot"))


def test_shot_cut_data_is_consistent(studio):
    site, _, _ = studio
    for shot in rows(site, "Shot"):
        assert shot["sg_cut_duration"] == shot["sg_cut_out"] - shot["sg_cut_in"] + 1
        assert shot["sg_head_in"] < shot["sg_cut_in"] < shot["sg_cut_out"] < shot["sg_tail_out"]
        assert shot["sg_working_duration"] == shot["sg_tail_out"] - shot["sg_head_in"] + 1
        assert (shot["head_in"], shot["head_out"], shot["tail_in"], shot["tail_out"]) == (
            shot["sg_head_in"], shot["sg_cut_in"] - 1, shot["sg_cut_out"] + 1, shot["sg_tail_out"])
        assert shot["head_duration"] == shot["head_out"] - shot["head_in"] + 1


def test_versions_and_publishes_link_tasks_of_the_same_entity(studio):
    site, _, _ = studio
    tasks, versions = site.emu._db["Task"], site.emu._db["Version"]
    for version in rows(site, "Version"):
        task = tasks[version["sg_task"]["id"]]
        assert task["entity"] == version["entity"] and task["project"] == version["project"]
        assert version["frame_count"] is None or \
            version["frame_count"] == version["sg_last_frame"] - version["sg_first_frame"] + 1
    for published in rows(site, "PublishedFile"):
        version = versions[published["version"]["id"]]
        assert published["entity"] == version["entity"] and published["task"] == version["sg_task"]
        assert {"type": "PublishedFile", "id": published["id"]} in version["published_files"]
        path = published["path"]
        assert path["link_type"] == "local" and path["url"] == "file://" + path["local_path"]


def test_assets_of_several_types_linked_to_shots_both_ways(studio, site_schema):
    site, _, _ = studio
    kinds = Counter(a["sg_asset_type"] for a in rows(site, "Asset"))
    assert len(kinds) >= 3
    assert set(kinds) <= set(site_schema["Asset"].fields["sg_asset_type"].valid_values)
    assets = site.emu._db["Asset"]
    linked = 0
    for shot in rows(site, "Shot"):
        for link in shot["assets"]:
            assert assets[link["id"]]["project"] == shot["project"]
            assert {"type": "Shot", "id": shot["id"]} in assets[link["id"]]["shots"]
            linked += 1
    assert linked > len(rows(site, "Shot"))


def test_reverse_links_are_filled(studio):
    site, _, _ = studio
    db = site.emu._db
    for playlist in rows(site, "Playlist"):
        assert playlist["versions"]
        for link in playlist["versions"]:
            assert {"type": "Playlist", "id": playlist["id"]} in db["Version"][link["id"]]["playlists"]
    for reply in rows(site, "Reply"):
        assert {"type": "Reply", "id": reply["id"]} in db["Note"][reply["entity"]["id"]]["replies"]
    for task in rows(site, "Task"):
        owner = task["entity"]
        assert {"type": "Task", "id": task["id"]} in db[owner["type"]][owner["id"]]["tasks"]
    for group in rows(site, "Group"):
        for link in group["users"]:
            assert {"type": "Group", "id": group["id"]} in db["HumanUser"][link["id"]]["groups"]


def test_list_and_status_values_are_valid_for_the_schema(studio, site_schema):
    site, counts, _ = studio
    for entity_type in counts:
        for name, f in site_schema[entity_type].fields.items():
            if f.data_type in ("list", "status_list") and f.valid_values:
                used = {r.get(name) for r in rows(site, entity_type)} - {None}
                assert used <= set(f.valid_values), (entity_type, name, used - set(f.valid_values))


def test_dates_are_before_the_anchor_and_ids_follow_creation(studio):
    site, counts, before = studio
    for entity_type in counts:
        made = rows(site, entity_type)[before[entity_type]:]
        stamps = [r["created_at"] for r in made if r.get("created_at") is not None]
        assert all(HISTORY_START <= t < ANCHOR for t in stamps), entity_type
        assert stamps == sorted(stamps), entity_type
    tasks = site.emu._db["Task"]
    for task in rows(site, "Task"):
        assert task["start_date"] <= task["due_date"]
    for log in rows(site, "TimeLog"):
        task = tasks[log["entity"]["id"]]
        assert task["start_date"] <= log["date"] <= task["due_date"]
        assert log["duration"] > 0


def test_read_through_the_site(studio):
    site, _, _ = studio
    answer = site.call("read", [AUTH, {
        "type": "Shot", "return_fields": ["code", "sg_sequence", "sg_status_list", "tasks"], "filters": EVERYTHING,
        "paging": {"entities_per_page": 5, "current_page": 1}, "return_paging_info_without_counts": True}])
    assert answer["paging_info"]["has_next_page"]
    first = answer["entities"][0]
    assert first["sg_sequence"]["type"] == "Sequence" and first["code"].startswith(first["sg_sequence"]["name"])


def test_a_smaller_schema_gets_a_smaller_studio(small_schema):
    site = MockSite(small_schema, humans=[])
    counts = build_studio(site, scale=1, seed=0)
    assert set(counts) <= {"Project", "Sequence", "Asset", "Shot"}
    assert counts["Shot"] > 0 and counts["Project"] > 0
    shot = rows(site, "Shot")[0]
    assert shot["sg_sequence"]["type"] == "Sequence"


def test_scale_must_be_a_positive_integer(site_schema):
    site = MockSite(schema_copy(site_schema))
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError):
            build_studio(site, scale=bad)
