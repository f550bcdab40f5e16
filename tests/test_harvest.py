"""A read that passes through also brings fresh copies of the entities it lists: kept in the cache
(sgcache.api3.harvest), never over a newer event, and counted when they corrected something.

The stand-in and the proxy run as real servers and the real client talks to the proxy, on
SQLite and PostgreSQL. ``quiet-script`` writes without events, as scripts with events off do.
"""

from __future__ import annotations

import concurrent.futures
import time

import shotgun_api3
import sqlalchemy as sa
from test_read_cache import answered_from_cache, cached_proxy, world  # noqa: F401

QUIET = {"script_name": "quiet-script", "api_key": "quiet-demo-key"}
#: A return field through a type the proxy tests leave out: the read passes through.
THROUGH_SCENE = "sg_scene.Scene.code"


def settle(proxy, until, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not until():
        assert time.monotonic() < deadline, "the harvest did not finish in time"
        time.sleep(0.05)


def code_in_cache(proxy, shot_id: int) -> str:
    t = proxy.service.cache.tables["Shot"].table
    with proxy.service.cache.engine.connect() as conn:
        return conn.execute(sa.select(t.c.code).where(t.c.id == shot_id)).scalar_one()


def test_a_change_made_with_events_off_is_corrected_by_a_passthrough_read_that_returned_it(  # noqa: F811
        cached_proxy, mock_server, world):  # noqa: F811
    shot = world["shots"][0]
    quiet = shotgun_api3.Shotgun(mock_server.url, **QUIET)
    quiet.update("Shot", shot["id"], {"code": "RENAMED_QUIETLY"})
    client = cached_proxy.client()
    stale, cached = answered_from_cache(cached_proxy, lambda: client.find_one("Shot", [["id", "is", shot["id"]]],
                                                                              ["code"]))
    assert cached and stale["code"] == "SH001"  # no event, no scan yet: the cache does not know
    harvest = cached_proxy.service.harvest
    passed, cached = answered_from_cache(cached_proxy, lambda: client.find("Shot", [["id", "is", shot["id"]]],
                                                                           ["code", THROUGH_SCENE]))
    assert not cached and passed[0]["code"] == "RENAMED_QUIETLY"
    settle(cached_proxy, lambda: harvest.corrected == 1)
    fresh, cached = answered_from_cache(cached_proxy, lambda: client.find_one("Shot", [["id", "is", shot["id"]]],
                                                                              ["code"]))
    assert cached and fresh["code"] == "RENAMED_QUIETLY"
    metrics = cached_proxy.service.metrics.exposition()[0].decode()
    assert "sgcache_passthrough_refreshed_total 1.0" in metrics


def test_an_entity_the_cache_lacks_is_read_whole_not_inserted_from_the_answer(  # noqa: F811
        cached_proxy, mock_server, world):  # noqa: F811
    quiet = shotgun_api3.Shotgun(mock_server.url, **QUIET)
    new = quiet.create("Shot", {"code": "MADE_QUIETLY", "project": world["projects"][0],
                                "description": "not asked for"})
    client = cached_proxy.client()
    harvest = cached_proxy.service.harvest
    client.find("Shot", [["code", "is", "MADE_QUIETLY"]], ["code", THROUGH_SCENE])
    settle(cached_proxy, lambda: harvest.fetched == 1)
    row, cached = answered_from_cache(cached_proxy, lambda: client.find_one("Shot", [["id", "is", new["id"]]],
                                                                            ["code", "description", "project"]))
    # Read whole by sgcache's script: the fields the passthrough did not return are there too.
    assert cached and row["description"] == "not asked for" and row["project"]["id"] == world["projects"][0]["id"]
    assert harvest.corrected == 0


def test_a_passthrough_answer_older_than_an_applied_event_never_overwrites_it(  # noqa: F811
        cached_proxy, mock_server, world):  # noqa: F811
    shot = world["shots"][1]
    service = cached_proxy.service
    t = service.cache.tables["Shot"].table
    # An event newer than the request wrote NEWER (the site itself still says SH002 here, so a
    # write past the guard would show).
    with service.cache.engine.begin() as conn:
        conn.execute(sa.update(t).where(t.c.id == shot["id"]).values(code="NEWER", _last_event_id=10**9))
    as_of = concurrent.futures.Future()
    as_of.set_result(5)  # the newest event when the request went out
    service.harvest._keep("Shot", [{"type": "Shot", "id": shot["id"], "code": "SH002"}], as_of)
    assert code_in_cache(cached_proxy, shot["id"]) == "NEWER"


def test_answers_of_callers_who_see_only_some_projects_are_not_kept(make_proxy, mock_server, world):  # noqa: F811
    from test_read_cache import import_all

    proxy = make_proxy(auth__groups="artist=visible_projects")
    import_all(proxy)
    shot = world["shots"][0]
    shotgun_api3.Shotgun(mock_server.url, **QUIET).update("Shot", shot["id"], {"code": "RENAMED_QUIETLY"})
    artist = proxy.client(login="artist", password="artist-password")
    try:
        artist.find("Shot", [["id", "is", shot["id"]]], ["code", THROUGH_SCENE])
    except shotgun_api3.Fault:
        pass  # the artist may not see the shot at all: nothing to keep either way
    time.sleep(0.5)
    assert proxy.service.harvest.corrected == 0 and proxy.service.harvest.fetched == 0
    assert code_in_cache(proxy, shot["id"]) == "SH001"


def test_answers_listing_retired_entities_are_not_kept(cached_proxy, sg, mock_server, world):  # noqa: F811
    shot = world["shots"][2]
    quiet = shotgun_api3.Shotgun(mock_server.url, **QUIET)
    quiet.update("Shot", shot["id"], {"code": "GONE_QUIETLY"})
    quiet.delete("Shot", shot["id"])  # renamed and retired without events: the cache holds it active
    cached_proxy.client().find("Shot", [["id", "is", shot["id"]]], ["code", THROUGH_SCENE], retired_only=True)
    time.sleep(0.5)
    harvest = cached_proxy.service.harvest
    assert harvest.corrected == 0 and harvest.fetched == 0
    assert code_in_cache(cached_proxy, shot["id"]) == "SH003"  # left to the scans, which see it retired
