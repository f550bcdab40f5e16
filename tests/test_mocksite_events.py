"""The stand-in site's event log (EVENTLOG.md), read the way a watcher reads it: ``find`` on
EventLogEntry over real HTTP with the real ``shotgun_api3`` client.

Most tests run on a site whose clock is fixed (``NOW``), so ``created_at`` and retirement dates
are exact. Late commits (``late_events``) are driven by advancing that clock instead of sleeping.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid

import pytest
import shotgun_api3
from conftest import schema_copy
from shotgun_api3 import Fault

from sgcache.mocksite import MockSite
from sgcache.mocksite.server import MockServer

SCRIPT = {"script_name": "sgcache", "api_key": "sgcache-demo-key"}
QUIET = {"script_name": "quiet-script", "api_key": "quiet-demo-key"}
HUMAN = {"login": "artist", "password": "artist-password"}
NOW = dt.datetime(2024, 3, 13, 12, 0, 0, tzinfo=dt.UTC)
FIELDS = ["event_type", "attribute_name", "meta", "entity", "project", "user", "session_uuid", "created_at",
          "description"]
BY_ID = [{"field_name": "id", "direction": "asc"}]


class FakeClock:
    def __init__(self, now: dt.datetime = NOW):
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def stop_in_background(server: MockServer) -> None:
    """MockServer.stop() waits up to 0.5 s for werkzeug's poll loop; don't make every test wait."""
    threading.Thread(target=server.stop, daemon=True).start()


def connect(server: MockServer, **auth) -> shotgun_api3.Shotgun:
    sg = shotgun_api3.Shotgun(server.url, connect=False, **(auth or SCRIPT))
    sg.config.timeout_secs = 5
    return sg


def link(entity_type: str, entity_id: int, name: str | None = None) -> dict:
    out = {"type": entity_type, "id": entity_id}
    if name is not None:
        out["name"] = name
    return out


def last_id(sg) -> int:
    last = sg.find_one("EventLogEntry", [], ["id"], order=[{"field_name": "id", "direction": "desc"}])
    return last["id"] if last else 0


def events_after(sg, after: int, filters: list | None = None) -> list[dict]:
    return sg.find("EventLogEntry", [["id", "greater_than", after], *(filters or [])], FIELDS, order=BY_ID)


def visible_ids(sg) -> set[int]:
    return {e["id"] for e in sg.find("EventLogEntry", [], ["id"])}


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def server(site_schema, tmp_path, clock):
    site = MockSite(schema_copy(site_schema), file_dir=tmp_path / "files", clock=clock)
    srv = MockServer(site).start()
    yield srv
    stop_in_background(srv)


@pytest.fixture
def sg(server):
    return connect(server)


@pytest.fixture
def ids(sg):
    """ApiUser id of the script and HumanUser id of the artist."""
    return {"script": sg.find_one("ApiUser", [["firstname", "is", "sgcache"]])["id"],
            "artist": sg.find_one("HumanUser", [["login", "is", "artist"]])["id"]}


@pytest.fixture
def world(server):
    """A project, two sequences, a shot in SQ1 and an asset, loaded without events."""
    load = server.site.load_entity
    artist = {"type": "HumanUser", "id": server.site.humans["artist"].id}
    project = link("Project", load("Project", {"name": "Alpha", "users": [artist]}))  # the artist works on it
    sq1 = link("Sequence", load("Sequence", {"code": "SQ1", "project": project}))
    sq2 = link("Sequence", load("Sequence", {"code": "SQ2", "project": project}))
    shot = link("Shot", load("Shot", {"code": "SH1", "sg_sequence": sq1, "project": project,
                                      "description": "old text"}))
    shot2 = link("Shot", load("Shot", {"code": "SH2", "project": project}))
    bob = link("Asset", load("Asset", {"code": "Bob", "project": project}))
    car = link("Asset", load("Asset", {"code": "Car", "project": project}))
    return {"project": project, "sq1": sq1, "sq2": sq2, "shot": shot, "shot2": shot2, "bob": bob, "car": car}


# === New and in_create Changes ===================================================================


def test_create_logs_new_then_one_in_create_change_per_field(sg, ids):
    before = last_id(sg)
    shot = sg.create("Shot", {"code": "SH9", "sg_cut_in": 12, "description": "hello"})
    events = events_after(sg, before)
    assert [e["event_type"] for e in events] == ["Shotgun_Shot_New"] + ["Shotgun_Shot_Change"] * 3
    new, *changes = events
    assert new["meta"] == {"type": "new_entity", "entity_type": "Shot", "entity_id": shot["id"]}
    assert new["attribute_name"] is None
    assert new["entity"] == link("Shot", shot["id"], "SH9")
    assert all(c["id"] > new["id"] for c in changes)
    assert sorted(c["attribute_name"] for c in changes) == ["code", "description", "sg_cut_in"]
    cut_in = next(c for c in changes if c["attribute_name"] == "sg_cut_in")
    assert cut_in["meta"] == {"type": "attribute_change", "attribute_name": "sg_cut_in", "entity_type": "Shot",
                              "entity_id": shot["id"], "field_data_type": "number", "old_value": None,
                              "new_value": 12, "in_create": True}
    assert cut_in["entity"] == link("Shot", shot["id"], "SH9")


def test_in_create_change_of_a_link_carries_the_entity_dict(sg, world):
    before = last_id(sg)
    task = sg.create("Task", {"content": "Anim", "entity": world["shot"]})
    change = events_after(sg, before, [["attribute_name", "is", "entity"]])
    assert len(change) == 1
    assert change[0]["meta"] == {"type": "attribute_change", "attribute_name": "entity", "entity_type": "Task",
                                 "entity_id": task["id"], "field_data_type": "entity", "old_value": None,
                                 "new_value": link("Shot", world["shot"]["id"], "SH1"), "in_create": True}


def test_new_event_names_the_project_the_entity_is_created_in(sg, world):
    before = last_id(sg)
    sg.create("Shot", {"code": "SH9", "project": world["project"]})
    events = events_after(sg, before)
    assert [e["project"] for e in events] == [link("Project", world["project"]["id"], "Alpha")] * len(events)


# === Changes ====================================================================================


def test_plain_change_has_old_and_new_values_and_field_data_type(sg, world):
    before = last_id(sg)
    sg.update("Shot", world["shot"]["id"], {"description": "new text"})
    [event] = events_after(sg, before)
    assert event["event_type"] == "Shotgun_Shot_Change"
    assert event["attribute_name"] == "description"
    assert event["entity"] == link("Shot", world["shot"]["id"], "SH1")
    assert event["meta"] == {"type": "attribute_change", "attribute_name": "description", "entity_type": "Shot",
                             "entity_id": world["shot"]["id"], "field_data_type": "text",
                             "old_value": "old text", "new_value": "new text"}


def test_update_to_the_same_value_logs_nothing(sg, world):
    before = last_id(sg)
    sg.update("Shot", world["shot"]["id"], {"description": "old text"})
    assert events_after(sg, before) == []


def test_entity_change_has_old_and_new_entity_dicts_with_names(sg, world):
    before = last_id(sg)
    sg.update("Shot", world["shot"]["id"], {"sg_sequence": world["sq2"]})
    [forward] = events_after(sg, before, [["entity", "type_is", "Shot"]])
    assert forward["meta"] == {"type": "attribute_change", "attribute_name": "sg_sequence", "entity_type": "Shot",
                               "entity_id": world["shot"]["id"], "field_data_type": "entity",
                               "old_value": link("Sequence", world["sq1"]["id"], "SQ1"),
                               "new_value": link("Sequence", world["sq2"]["id"], "SQ2")}


def test_multi_entity_change_has_added_and_removed_but_no_old_or_new(sg, world):
    sg.update("Shot", world["shot"]["id"], {"assets": [world["bob"]]})
    before = last_id(sg)
    sg.update("Shot", world["shot"]["id"], {"assets": [world["car"]]})
    [forward] = events_after(sg, before, [["entity", "type_is", "Shot"]])
    assert forward["attribute_name"] == "assets"
    assert forward["meta"] == {"type": "attribute_change", "attribute_name": "assets", "entity_type": "Shot",
                               "entity_id": world["shot"]["id"], "field_data_type": "multi_entity",
                               "added": [link("Asset", world["car"]["id"], "Car")],
                               "removed": [link("Asset", world["bob"]["id"], "Bob")]}


def test_multi_entity_add_mode_logs_only_what_was_added(sg, world):
    sg.update("Shot", world["shot"]["id"], {"assets": [world["bob"]]})
    before = last_id(sg)
    sg.update("Shot", world["shot"]["id"], {"assets": [world["car"]]}, multi_entity_update_modes={"assets": "add"})
    [forward] = events_after(sg, before, [["entity", "type_is", "Shot"]])
    assert forward["meta"]["added"] == [link("Asset", world["car"]["id"], "Car")]
    assert forward["meta"]["removed"] == []


# === back references =============================================================================


def test_back_reference_changes_point_at_the_forward_change(sg, world):
    task = sg.create("Task", {"content": "Anim", "entity": world["shot"]})
    before = last_id(sg)
    sg.update("Task", task["id"], {"entity": world["shot2"]})
    events = events_after(sg, before)
    forward = events[0]
    assert forward["event_type"] == "Shotgun_Task_Change" and forward["attribute_name"] == "entity"
    backs = events[1:]
    assert [b["entity"] for b in backs] == [link("Shot", world["shot"]["id"], "SH1"),
                                             link("Shot", world["shot2"]["id"], "SH2")]
    task_link = link("Task", task["id"], "Anim")
    common = {"type": "attribute_change", "attribute_name": "tasks", "entity_type": "Task", "entity_id": task["id"],
              "field_data_type": "entity", "actual_attribute_changed": "Task.entity",
              "original_event_log_entry_id": forward["id"]}
    assert backs[0]["meta"] == {**common, "added": [], "removed": [task_link]}
    assert backs[1]["meta"] == {**common, "added": [task_link], "removed": []}
    for back in backs:
        assert back["event_type"] == "Shotgun_Shot_Change"
        assert back["attribute_name"] == "tasks"
        assert back["id"] > forward["id"]


def test_back_reference_of_a_multi_entity_field(sg, world):
    before = last_id(sg)
    sg.update("Shot", world["shot"]["id"], {"assets": [world["bob"]]})
    forward, back = events_after(sg, before)
    assert back["event_type"] == "Shotgun_Asset_Change"
    assert back["entity"] == link("Asset", world["bob"]["id"], "Bob")
    assert back["attribute_name"] == "shots"
    assert back["meta"]["actual_attribute_changed"] == "Shot.assets"
    assert back["meta"]["original_event_log_entry_id"] == forward["id"]
    assert back["meta"]["field_data_type"] == "multi_entity"
    assert back["meta"]["added"] == [link("Shot", world["shot"]["id"], "SH1")]


# === Retirement and Revival ======================================================================


def test_retirement_meta_and_null_entity(sg, world):
    before = last_id(sg)
    assert sg.delete("Shot", world["shot"]["id"]) is True
    [event] = events_after(sg, before)
    assert event["event_type"] == "Shotgun_Shot_Retirement"
    assert event["entity"] is None
    assert event["attribute_name"] is None
    assert event["meta"] == {"type": "entity_retirement", "class_name": "Shot", "display_name": "SH1",
                             "entity_id": world["shot"]["id"], "entity_type": "Shot", "id": world["shot"]["id"],
                             "retirement_date": "2024-03-13 12:00:00 UTC"}


def test_revival_meta_and_present_entity(sg, world):
    sg.delete("Shot", world["shot"]["id"])
    before = last_id(sg)
    assert sg.revive("Shot", world["shot"]["id"]) is True
    [event] = events_after(sg, before)
    assert event["event_type"] == "Shotgun_Shot_Revival"
    assert event["entity"] == link("Shot", world["shot"]["id"], "SH1")
    assert event["meta"] == {"class_name": "Shot", "display_name": "SH1", "entity_id": world["shot"]["id"],
                             "entity_type": "Shot", "id": world["shot"]["id"]}


def test_repeated_delete_and_revive_log_nothing_more(sg, world):
    sg.delete("Shot", world["shot"]["id"])
    before = last_id(sg)
    assert sg.delete("Shot", world["shot"]["id"]) is False
    assert events_after(sg, before) == []
    sg.revive("Shot", world["shot"]["id"])
    before = last_id(sg)
    assert sg.revive("Shot", world["shot"]["id"]) is False
    assert events_after(sg, before) == []


def test_entity_is_null_on_every_event_while_the_entity_is_retired(sg):
    before = last_id(sg)
    shot = sg.create("Shot", {"code": "SH9"})
    sg.update("Shot", shot["id"], {"description": "x"})
    sg.delete("Shot", shot["id"])
    events = events_after(sg, before)
    assert len(events) == 4  # New, in_create code, description, Retirement
    assert [e["entity"] for e in events] == [None] * 4
    assert [e["meta"]["entity_id"] for e in events] == [shot["id"]] * 4
    sg.revive("Shot", shot["id"])
    assert [e["entity"] for e in events_after(sg, before)] == [link("Shot", shot["id"], "SH9")] * 5


# === who, where, when ===========================================================================


def test_event_user_project_session_uuid_and_created_at(sg, world, ids, clock):
    session = str(uuid.uuid4())
    sg.set_session_uuid(session)
    clock.advance(42)
    before = last_id(sg)
    sg.update("Shot", world["shot"]["id"], {"description": "new"})
    [event] = events_after(sg, before)
    assert event["user"] == link("ApiUser", ids["script"], "sgcache")
    assert event["project"] == link("Project", world["project"]["id"], "Alpha")
    assert event["session_uuid"] == session
    assert event["created_at"].astimezone(dt.UTC) == NOW + dt.timedelta(seconds=42)


def test_event_without_session_uuid_has_null(sg, world):
    before = last_id(sg)
    sg.update("Shot", world["shot"]["id"], {"description": "new"})
    assert events_after(sg, before)[0]["session_uuid"] is None


def test_event_user_of_a_human_user(server, sg, world, ids):
    before = last_id(sg)
    connect(server, **HUMAN).update("Shot", world["shot"]["id"], {"description": "new"})
    [event] = events_after(sg, before)
    assert event["user"] == link("HumanUser", ids["artist"], "Ann Artist")
    assert "sudo_actual_user" not in event["meta"]


def test_sudo_as_login_event_user_is_the_person_and_meta_names_the_script(server, sg, world, ids):
    before = last_id(sg)
    connect(server, sudo_as_login="artist", **SCRIPT).update("Shot", world["shot"]["id"], {"description": "new"})
    [event] = events_after(sg, before)
    assert event["user"] == link("HumanUser", ids["artist"], "Ann Artist")
    assert event["meta"]["sudo_actual_user"] == link("ApiUser", ids["script"], "sgcache")


def test_quiet_script_writes_make_no_event_but_move_updated_at(server, sg, world, clock):
    quiet = connect(server, **QUIET)
    before = last_id(sg)
    created = quiet.create("Shot", {"code": "QUIET"}, ["updated_at"])
    clock.advance(30)
    quiet.update("Shot", world["shot"]["id"], {"description": "silent"})
    quiet.delete("Shot", created["id"])
    assert events_after(sg, before) == []
    shot = sg.find_one("Shot", [["id", "is", world["shot"]["id"]]], ["updated_at", "description", "updated_by"])
    assert shot["description"] == "silent"
    assert shot["updated_at"].astimezone(dt.UTC) == NOW + dt.timedelta(seconds=30)
    assert shot["updated_by"]["name"] == "quiet-script"
    retired = sg.find_one("Shot", [["id", "is", created["id"]]], ["updated_at"], retired_only=True)
    assert retired["updated_at"].astimezone(dt.UTC) == NOW + dt.timedelta(seconds=30)


# === reading the log =============================================================================


def test_event_type_in_filter(sg, world):
    before = last_id(sg)
    shot = sg.create("Shot", {"code": "SH9"})
    sg.delete("Shot", shot["id"])
    events = events_after(sg, before, [["event_type", "in", ["Shotgun_Shot_New", "Shotgun_Shot_Retirement"]]])
    assert [e["event_type"] for e in events] == ["Shotgun_Shot_New", "Shotgun_Shot_Retirement"]


def test_event_ids_grow_in_write_order_and_sort_descending(sg, world):
    for n in range(3):
        sg.update("Shot", world["shot"]["id"], {"sg_cut_in": n + 1})
    rows = sg.find("EventLogEntry", [], ["meta"], order=[{"field_name": "id", "direction": "desc"}], limit=3)
    assert [r["meta"]["new_value"] for r in rows] == [3, 2, 1]
    assert rows[0]["id"] > rows[1]["id"] > rows[2]["id"]


def test_event_log_pages(sg, world):
    for n in range(5):
        sg.update("Shot", world["shot"]["id"], {"sg_cut_in": n + 1})
    all_ids = [e["id"] for e in sg.find("EventLogEntry", [], order=BY_ID)]
    assert len(all_ids) == 5
    assert [e["id"] for e in sg.find("EventLogEntry", [], limit=2, page=2, order=BY_ID)] == all_ids[2:4]
    assert [e["id"] for e in sg.find("EventLogEntry", [["id", "greater_than", all_ids[1]]], limit=2)] == \
        all_ids[2:4]


def test_filtering_on_event_meta_is_a_fault(sg, world):
    sg.update("Shot", world["shot"]["id"], {"description": "new"})
    with pytest.raises(Fault, match="serializable"):
        sg.find("EventLogEntry", [["meta", "is", None]])


def test_batch_logs_its_requests_in_order(sg, world):
    before = last_id(sg)
    sg.batch([
        {"request_type": "update", "entity_type": "Shot", "entity_id": world["shot"]["id"],
         "data": {"description": "one"}},
        {"request_type": "delete", "entity_type": "Shot", "entity_id": world["shot2"]["id"]},
    ])
    assert [e["event_type"] for e in events_after(sg, before)] == ["Shotgun_Shot_Change", "Shotgun_Shot_Retirement"]


def test_upload_to_a_url_field_logs_a_change_with_the_attachment(sg, world, tmp_path):
    version = sg.create("Version", {"code": "v1"})
    path = tmp_path / "take.mov"
    path.write_bytes(b"bytes")
    before = last_id(sg)
    attachment_id = sg.upload("Version", version["id"], str(path), field_name="sg_uploaded_movie")
    [change] = events_after(sg, before, [["event_type", "is", "Shotgun_Version_Change"]])
    assert change["attribute_name"] == "sg_uploaded_movie"
    assert change["meta"]["field_data_type"] == "url"
    assert change["meta"]["old_value"] is None
    assert change["meta"]["new_value"]["id"] == attachment_id
    assert change["meta"]["new_value"]["url"].endswith(f"/file_serve/attachment/{attachment_id}")


def test_thumbnail_upload_logs_a_transient_then_a_final_image_change(sg, tmp_path):
    version = sg.create("Version", {"code": "v1"})
    path = tmp_path / "thumb.png"
    path.write_bytes(b"\x89PNG fake")
    before = last_id(sg)
    sg.upload_thumbnail("Version", version["id"], str(path))
    changes = events_after(sg, before, [["attribute_name", "is", "image"]])
    assert len(changes) == 2
    assert changes[0]["meta"].get("is_transient") is True
    assert not changes[1]["meta"].get("is_transient")


# === schema changes ==============================================================================


def test_schema_changes_log_display_column_events(sg):
    before = last_id(sg)
    name = sg.schema_field_create("Shot", "number", "Frame Budget")
    sg.schema_field_update("Shot", name, {"description": "frames"})
    sg.schema_field_delete("Shot", name)
    events = events_after(sg, before)
    assert [e["event_type"] for e in events] == [
        "Shotgun_DisplayColumn_New", "Shotgun_DisplayColumn_Change", "Shotgun_DisplayColumn_Delete"]
    for event in events:
        assert event["meta"]["entity_type"] == "DisplayColumn"
        assert event["meta"]["entity_type_owner"] == "Shot"
        assert event["meta"]["field_name"] == name
    assert events[0]["meta"]["type"] == "new_entity"
    assert set(events[0]["meta"]["attributes"]) == {"data_type", "human_name"}
    assert events[1]["meta"]["attributes"] == ["description"]


def test_quiet_script_schema_changes_log_nothing(server, sg):
    before = last_id(sg)
    connect(server, **QUIET).schema_field_create("Shot", "text", "Silent Field")
    assert events_after(sg, before) == []
    assert "sg_silent_field" in sg.schema_field_read("Shot")


def test_display_column_events_of_one_field_name_the_same_column(sg):
    before = last_id(sg)
    name = sg.schema_field_create("Shot", "number", "Frame Budget")
    sg.schema_field_update("Shot", name, {"description": "frames"})
    sg.schema_field_delete("Shot", name)
    assert len({e["meta"]["entity_id"] for e in events_after(sg, before)}) == 1


# === late commits ===============================================================================


@pytest.fixture
def late_site(site_schema, clock):
    def build(share: float, seed: int = 0) -> MockServer:
        site = MockSite(schema_copy(site_schema), late_events=share, seed=seed, clock=clock)
        return MockServer(site).start()

    servers = []
    yield lambda share, seed=0: servers.append(build(share, seed)) or servers[-1]
    for srv in servers:
        stop_in_background(srv)


def test_late_entries_are_hidden_while_later_higher_ids_are_readable(late_site, clock):
    server = late_site(1.0)
    sg = connect(server)
    shots = [sg.create("Shot", {"code": f"SH{n}"})["id"] for n in range(4)]
    assert [s["id"] for s in sg.find("Shot", [])] == shots  # the entities are readable at once
    assert visible_ids(sg) == set()  # their entries are not
    snapshots = []
    for _ in range(22):  # NOW .. NOW + 5.5 s by quarter seconds
        snapshots.append((clock.now - NOW, visible_ids(sg)))
        clock.advance(0.25)
    events = sg.find("EventLogEntry", [], ["meta"], order=BY_ID)
    assert [e["id"] for e in events] == list(range(1, 9))  # New + in_create code per shot, no gap left
    writes = [{e["id"] for e in events if e["meta"]["entity_id"] == shot} for shot in shots]
    for when, seen in snapshots:
        if when < dt.timedelta(seconds=2):
            assert seen == set(), when
        for write in writes:
            assert write <= seen or not write & seen, "one write's entries commit together"
    assert any(later <= seen and not earlier & seen
               for _, seen in snapshots for i, earlier in enumerate(writes) for later in writes[i + 1:]), \
        "no moment where a later write's entries were readable before an earlier write's"


def test_with_a_share_of_late_writes_the_others_are_readable_at_once(late_site, clock):
    server = late_site(0.5, seed=1)
    sg = connect(server)
    for n in range(10):
        sg.update("HumanUser", 1, {"email": f"a{n}@studio.example"})
    seen = visible_ids(sg)
    assert 0 < len(seen) < 10
    assert max(seen) > min(set(range(1, 11)) - seen)  # a gap below a readable id
    clock.advance(5.01)
    assert visible_ids(sg) == set(range(1, 11))
