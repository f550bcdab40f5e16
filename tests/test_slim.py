"""Links to types the schema file leaves out, answered from their slim records (type, id, name,
retired flag, project) and kept in step by the full import, the watcher and the scans.

The proxy tests' schema caches Shot, Version and others but not Note, Scene or TankPublishedFile;
the real client talks to the proxy and to the stand-in, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import time

import pytest
import shotgun_api3
import sqlalchemy as sa
from test_read_cache import answered_from_cache, import_all

from sgcache.mocksite.faults import Fault
from sgcache.sync.remote import Remote
from sgcache.sync.scanner import Scanner
from sgcache.sync.watcher import Watcher


@pytest.fixture
def linked(sg):
    """Shots linking Scenes and Notes, none of which the cache's schema holds."""
    project = sg.create("Project", {"name": "Slim"})
    forest = sg.create("Scene", {"code": "Forest", "project": project})
    cave = sg.create("Scene", {"code": "Cave", "project": project})
    gone = sg.create("Scene", {"code": "Gone", "project": project})
    shots = [sg.create("Shot", {"code": f"SL{i:03d}", "project": project, "sg_scene": scene})
             for i, scene in enumerate([forest, cave, gone, None], start=1)]
    notes = [sg.create("Note", {"subject": subject, "project": project, "note_links": [shots[0]]})
             for subject in ("Hero note", "second thoughts", "Retired note")]
    sg.delete("Note", notes[2]["id"])
    sg.delete("Scene", gone["id"])
    return {"project": project, "scenes": [forest, cave, gone], "shots": shots, "notes": notes}


@pytest.fixture
def slim_proxy(make_proxy, linked):
    proxy = make_proxy(scanner__slim_records="all")
    import_all(proxy)
    return proxy


def poll(proxy) -> None:
    service = proxy.service
    watcher = Watcher(service.cache.engine, service.cache.tables, Remote(proxy.config.site), proxy.config.watcher)
    watcher.start()
    watcher.poll_once()
    time.sleep(service.STATE_TTL)


def same_answer(proxy, sg, call) -> object:
    """The call's answer through the proxy, checked to come from the cache and equal the site's."""
    result, cached = answered_from_cache(proxy, lambda: call(proxy.client()))
    assert cached, dict(proxy.service.reasons)
    assert result == call(sg)
    return result


def test_links_to_a_type_the_schema_leaves_out_are_named_from_the_cache(slim_proxy, sg, linked):
    shots = same_answer(slim_proxy, sg, lambda c: c.find("Shot", [["project", "is", linked["project"]]],
                                                          ["code", "sg_scene", "notes"]))
    by_code = {s["code"]: s for s in shots}
    forest = linked["scenes"][0]
    assert by_code["SL001"]["sg_scene"] == {"type": "Scene", "id": forest["id"], "name": "Forest"}
    # A retired Scene or Note reads as no link, as on the site.
    assert by_code["SL003"]["sg_scene"] is None
    assert [n["name"] for n in by_code["SL001"]["notes"]] == ["Hero note", "second thoughts"]


@pytest.mark.parametrize("filters", [
    [["sg_scene", "name_contains", "ore"]],
    [["sg_scene", "name_is", "cave"]],
    [["sg_scene", "name_starts_with", "GO"]],
    [["sg_scene", "type_is", "Scene"]],
    [["sg_scene", "type_is_not", "Scene"]],
    [["sg_scene", "is", None]],
    [["sg_scene", "is_not", None]],
    [["notes", "name_contains", "hero"]],
    [["notes", "name_not_contains", "thoughts"]],
    [["notes", "is", None]],
], ids=lambda f: " ".join(str(x) for x in f[0]))
def test_filters_on_links_to_a_type_the_schema_leaves_out_are_answered_from_the_cache(slim_proxy, sg, linked,
                                                                                      filters):
    project = ["project", "is", linked["project"]]
    same_answer(slim_proxy, sg, lambda c: c.find("Shot", [project, *filters], ["code"]))


def test_a_filter_naming_an_entity_of_a_type_the_schema_leaves_out(slim_proxy, sg, linked):
    cave, gone = linked["scenes"][1], linked["scenes"][2]
    assert [s["code"] for s in same_answer(slim_proxy, sg, lambda c: c.find("Shot", [["sg_scene", "is", cave]],
                                                                             ["code"]))] == ["SL002"]
    # A link to a retired entity matches nothing, on the site and in the cache.
    assert same_answer(slim_proxy, sg, lambda c: c.find("Shot", [["sg_scene", "in", [gone]]], ["code"])) == []


def test_sorting_on_a_link_to_a_type_the_schema_leaves_out(slim_proxy, sg, linked):
    same_answer(slim_proxy, sg, lambda c: c.find("Shot", [["project", "is", linked["project"]]], ["code"],
                                                 order=[{"field_name": "sg_scene", "direction": "desc"}]))


def test_a_rename_a_retirement_and_a_new_entity_reach_the_slim_records_through_events(slim_proxy, sg, linked):
    forest, cave = linked["scenes"][0], linked["scenes"][1]
    sg.update("Scene", forest["id"], {"code": "Deep Forest"})
    sg.delete("Scene", cave["id"])
    lake = sg.create("Scene", {"code": "Lake", "project": linked["project"]})
    sg.update("Shot", linked["shots"][3]["id"], {"sg_scene": lake})
    poll(slim_proxy)
    shots = same_answer(slim_proxy, sg, lambda c: c.find("Shot", [["project", "is", linked["project"]]],
                                                          ["code", "sg_scene"]))
    assert [s["sg_scene"] and s["sg_scene"]["name"] for s in shots] == ["Deep Forest", None, None, "Lake"]
    sg.revive("Scene", cave["id"])
    poll(slim_proxy)
    assert same_answer(slim_proxy, sg, lambda c: c.find_one("Shot", [["id", "is", linked["shots"][1]["id"]]],
                                                            ["sg_scene"]))["sg_scene"]["name"] == "Cave"


def test_an_incremental_scan_finds_a_rename_made_without_an_event(slim_proxy, sg, linked, mock_server):
    forest = linked["scenes"][0]
    quiet = shotgun_api3.Shotgun(mock_server.url, script_name="quiet-script", api_key="quiet-demo-key")
    quiet.update("Scene", forest["id"], {"code": "Quiet Forest"})
    service = slim_proxy.service
    Scanner(service.cache.engine, service.cache.tables, Remote(slim_proxy.config.site),
            slim_proxy.config.scanner).incremental()
    time.sleep(service.STATE_TTL)
    shot = same_answer(slim_proxy, sg, lambda c: c.find_one("Shot", [["code", "is", "SL001"]], ["sg_scene"]))
    assert shot["sg_scene"]["name"] == "Quiet Forest"


def test_without_slim_records_links_to_types_the_schema_leaves_out_pass_through(make_proxy, sg, linked):
    proxy = make_proxy(scanner__slim_records="none")
    import_all(proxy)
    time.sleep(proxy.service.STATE_TTL)
    result, cached = answered_from_cache(proxy, lambda: proxy.client().find("Shot", [], ["sg_scene"]))
    assert not cached and proxy.service.reasons["uncached_type"] >= 1
    assert result == sg.find("Shot", [], ["sg_scene"])


def test_an_excluded_type_passes_through_and_the_others_are_still_answered(make_proxy, sg, linked):
    proxy = make_proxy(scanner__slim_records="all", scanner__slim_exclude="Scene")
    import_all(proxy)
    time.sleep(proxy.service.STATE_TTL)
    _, cached = answered_from_cache(proxy, lambda: proxy.client().find("Shot", [], ["sg_scene"]))
    assert not cached
    same_answer(proxy, sg, lambda c: c.find("Shot", [], ["notes"]))


def test_a_type_the_site_refuses_to_list_is_recorded_and_never_trusted(make_proxy, sg, linked, mock_site,
                                                                        monkeypatch):
    proxy = make_proxy(scanner__slim_records="all")
    read = mock_site.handlers["read"]

    def refuse_scenes(caller, args):
        if args.get("type") == "Scene":
            raise Fault("API read() Scene: permission denied")
        return read(caller, args)

    monkeypatch.setitem(mock_site.handlers, "read", refuse_scenes)
    import_all(proxy)
    time.sleep(proxy.service.STATE_TTL)
    slim_types = proxy.service.cache.tables.state.slim_types
    with proxy.service.cache.engine.connect() as conn:
        row = conn.execute(sa.select(slim_types).where(slim_types.c.entity_type == "Scene")).mappings().one()
    assert row["full_scan_at"] is None and row["error"]
    _, cached = answered_from_cache(proxy, lambda: proxy.client().find("Shot", [], ["sg_scene"]))
    assert not cached


def test_sgcache_status_says_how_many_slim_records_are_held_and_which_types_have_none(slim_proxy):
    from sgcache.sync.report import format_status, status

    service = slim_proxy.service
    slim_types = service.cache.tables.state.slim_types
    with service.cache.engine.begin() as conn:
        conn.execute(sa.update(slim_types).where(slim_types.c.entity_type == "Scene")
                     .values(full_scan_at=None, error="the site answered: permission denied"))
    data = status(service.cache.engine, service.cache.tables)
    assert data["slim"]["refused"] == {"Scene": "the site answered: permission denied"}
    assert data["slim"]["records"] >= 5  # the Scenes and Notes of the fixture, at least
    text = format_status(data)
    assert "  Scene: links to it pass through (the site answered: permission denied)" in text
    assert f"slim records: {data['slim']['records']} entities of {data['slim']['types']} types" in text


def test_a_link_written_through_the_proxy_to_a_new_entity_of_a_type_left_out_reads_back_named(slim_proxy, sg,
                                                                                                linked):
    client = slim_proxy.client()
    river = client.create("Scene", {"code": "River", "project": linked["project"]})  # passes through
    shot = linked["shots"][3]
    client.update("Shot", shot["id"], {"sg_scene": river})  # read back, before the watcher saw the Scene
    row = same_answer(slim_proxy, sg, lambda c: c.find_one("Shot", [["id", "is", shot["id"]]], ["sg_scene"]))
    assert row["sg_scene"] == {"type": "Scene", "id": river["id"], "name": "River"}


def test_a_link_to_a_type_the_site_does_not_have_is_answered(slim_proxy, sg, mock_site):
    """Reply.entity allows AppWelcome and Banner, which the site's schema lacks: no entity of
    them can exist, so such links never resolve and the field is answered from the cache."""
    assert "AppWelcome" not in mock_site.schema.types
    assert "AppWelcome" in mock_site.schema.types["Reply"].fields["entity"].entity_types
    note = sg.create("Note", {"subject": "replied"})
    sg.create("Reply", {"entity": note, "content": "yes"})
    proxy = slim_proxy
    service = proxy.service
    from test_read_cache import import_all as again

    again(proxy)  # Reply is not in the proxy tests' schema: its Note links are named from slim records
    time.sleep(service.STATE_TTL)
    slim_types = service.cache.tables.state.slim_types
    with service.cache.engine.connect() as conn:
        row = conn.execute(sa.select(slim_types).where(slim_types.c.entity_type == "AppWelcome")).mappings().one()
    assert row["full_scan_at"] is not None and row["error"] is None
    # HumanUser.app_welcomes and .banners (cached) allow only such types: answered from the cache.
    same_answer(proxy, sg, lambda c: c.find("HumanUser", [], ["login", "app_welcomes", "banners"]))
