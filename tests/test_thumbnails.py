"""Thumbnail URLs in cached answers are never stale: the stand-in presigns them with a short lifetime
and shows a placeholder while an upload is processed, as a hosted site does; the proxy reads
expiring URLs and placeholders again before answering (sgcache.api3.thumbnails).

The real client over real HTTP against the stand-in and the proxy, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import shotgun_api3
import sqlalchemy as sa
from conftest import schema_copy
from test_read_cache import answered_from_cache, calls, import_all
from test_slim import poll

from sgcache.api3.thumbnails import expires_at, image_paths, is_placeholder
from sgcache.mocksite import MockSite
from sgcache.mocksite.launch import build_site
from sgcache.mocksite.thumbnails import PLACEHOLDER_PNG

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schema"


@pytest.fixture
def mock_site(site_schema, tmp_path):
    """The stand-in with thumbnails presigned for 20 seconds (a test may change ``thumbnails.ttl``
    and ``.pending``)."""
    return MockSite(schema_copy(site_schema), file_dir=tmp_path / "files", thumbnail_ttl=20)


def thumbnail_file(tmp_path):
    path = tmp_path / "thumb.png"
    path.write_bytes(PNG)
    return str(path)


def shots_with_thumbnails(sg, tmp_path, count: int = 1) -> list[dict]:
    project = sg.create("Project", {"name": "Thumbs"})
    shots = [sg.create("Shot", {"code": f"TH{i:02d}", "project": project}) for i in range(count)]
    for shot in shots:
        sg.upload_thumbnail("Shot", shot["id"], thumbnail_file(tmp_path))
    return shots


def stored(proxy, entity_type: str, entity_id: int, field: str = "image") -> str | None:
    t = proxy.service.cache.tables[entity_type].table
    with proxy.service.cache.engine.connect() as conn:
        return conn.execute(sa.select(t.c[field]).where(t.c.id == entity_id)).scalar_one()


def newest_event(sg) -> int:
    return sg.find_one("EventLogEntry", [], ["id"], order=[{"field_name": "id", "direction": "desc"}])["id"]


def refreshed(proxy) -> float:
    for line in proxy.service.metrics.exposition()[0].decode().splitlines():
        if line.startswith("sgcache_thumbnails_refreshed_total "):
            return float(line.split()[1])
    raise AssertionError("no sgcache_thumbnails_refreshed_total in the metrics")


def site_down(mock_server) -> None:
    requests.post(mock_server.url + "/_mock/failure", json={"mode": "503", "count": 1000}, timeout=5)


def site_up(mock_server) -> None:
    requests.post(mock_server.url + "/_mock/failure", json={"mode": "off"}, timeout=5)


# === the stand-in ===================================================================================


def test_the_stand_in_presigns_thumbnails_as_s3_does(sg, mock_site, tmp_path):
    (shot,) = shots_with_thumbnails(sg, tmp_path)
    url = sg.find_one("Shot", [["id", "is", shot["id"]]], ["image"])["image"]
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Expires"] == ["20"] and set(query) == {"X-Amz-Date", "X-Amz-Expires", "X-Amz-Signature"}
    assert time.time() + 18 <= expires_at(url) <= time.time() + 20
    assert requests.get(url, timeout=5).content == PNG


def test_a_tampered_or_expired_signed_url_is_refused(sg, mock_site, tmp_path):
    mock_site.thumbnails.ttl = 2
    (shot,) = shots_with_thumbnails(sg, tmp_path)
    url = sg.find_one("Shot", [["id", "is", shot["id"]]], ["image"])["image"]
    assert requests.get(url, timeout=5).status_code == 200
    assert requests.get(url.replace("X-Amz-Expires=2", "X-Amz-Expires=9"), timeout=5).status_code == 403
    assert requests.get(url.replace("X-Amz-Signature=", "X-Amz-Signature=0"), timeout=5).status_code == 403
    time.sleep(max(0.0, expires_at(url) - time.time()) + 0.1)
    answer = requests.get(url, timeout=5)
    assert answer.status_code == 403 and "expired" in answer.text


def test_each_read_signs_afresh_and_deep_paths_are_signed_too(sg, mock_site, tmp_path):
    (shot,) = shots_with_thumbnails(sg, tmp_path)
    task = sg.create("Task", {"content": "comp", "entity": shot, "project": shot["project"]})
    first = sg.find_one("Shot", [["id", "is", shot["id"]]], ["image"])["image"]
    time.sleep(1.1)
    deep = sg.find_one("Task", [["id", "is", task["id"]]], ["entity.Shot.image"])["entity.Shot.image"]
    assert urlsplit(deep).path == urlsplit(first).path
    assert expires_at(deep) > expires_at(first)


def test_a_new_thumbnail_reads_as_the_placeholder_then_as_its_url_without_an_event(sg, mock_site, tmp_path):
    mock_site.thumbnails.pending = 1.5
    (shot,) = shots_with_thumbnails(sg, tmp_path)
    after_upload = newest_event(sg)
    during = sg.find_one("Shot", [["id", "is", shot["id"]]], ["image"])["image"]
    assert is_placeholder(during) and during.endswith("/images/status/transient/thumbnail_pending.png")
    assert requests.get(during, timeout=5).content == PLACEHOLDER_PNG
    time.sleep(1.6)
    after = sg.find_one("Shot", [["id", "is", shot["id"]]], ["image"])["image"]
    assert not is_placeholder(after) and requests.get(after, timeout=5).status_code == 200
    assert newest_event(sg) == after_upload


def test_a_site_built_with_a_lifetime_has_it(tmp_path):
    schema = SCHEMA_DIR / "demo-site.yml"
    site = build_site(schema, data="empty", file_dir=tmp_path / "files", thumbnail_ttl=900, thumbnail_pending=3)
    assert (site.thumbnails.ttl, site.thumbnails.pending) == (900, 3)
    assert build_site(schema, data="empty", file_dir=tmp_path / "files").thumbnails.ttl is None


# === the proxy ======================================================================================


def test_an_expiring_thumbnail_is_read_again_before_the_cached_answer_goes_back(make_proxy, sg, tmp_path):
    (shot,) = shots_with_thumbnails(sg, tmp_path)
    proxy = make_proxy(reads__url_margin="30")  # every 20-second URL expires within the margin
    import_all(proxy)
    imported = stored(proxy, "Shot", shot["id"])
    time.sleep(1.1)  # the next signature carries a later time
    found, cached = answered_from_cache(proxy, lambda: proxy.client().find_one("Shot", [["id", "is", shot["id"]]],
                                                                               ["code", "image"]))
    assert cached and found["code"] == "TH00"
    assert found["image"] != imported and expires_at(found["image"]) > expires_at(imported)
    assert stored(proxy, "Shot", shot["id"]) == found["image"]
    assert requests.get(found["image"], timeout=5).status_code == 200
    assert refreshed(proxy) == 1


def test_a_fresh_thumbnail_is_answered_without_asking_the_site(make_proxy, sg, mock_site, mock_server, tmp_path):
    mock_site.thumbnails.ttl = 3600
    (shot,) = shots_with_thumbnails(sg, tmp_path)
    proxy = make_proxy()  # a margin of 10 minutes: an hour's URL is fresh
    import_all(proxy)
    client = proxy.client()
    client.find_one("Project", [])  # credentials checked once
    before = calls(mock_server, "read")
    found, cached = answered_from_cache(proxy, lambda: client.find_one("Shot", [["id", "is", shot["id"]]], ["image"]))
    assert cached and found["image"] == stored(proxy, "Shot", shot["id"])
    assert calls(mock_server, "read") == before
    assert refreshed(proxy) == 0


def test_one_read_refreshes_a_whole_page(make_proxy, sg, mock_server, tmp_path):
    shots = shots_with_thumbnails(sg, tmp_path, count=6)
    for shot in shots[:3]:
        sg.upload_filmstrip_thumbnail("Shot", shot["id"], thumbnail_file(tmp_path))
    proxy = make_proxy(reads__url_margin="30")
    import_all(proxy)
    client = proxy.client()
    client.find_one("Project", [])  # credentials checked
    before = calls(mock_server, "read")
    found, cached = answered_from_cache(proxy, lambda: client.find("Shot", [["id", "in", [s["id"] for s in shots]]],
                                                                   ["code", "image", "filmstrip_image"]))
    assert cached and len(found) == 6
    assert all(expires_at(s["image"]) > time.time() + 15 for s in found)
    assert [s["filmstrip_image"] is not None for s in found] == [True] * 3 + [False] * 3
    assert all(expires_at(s["filmstrip_image"]) > time.time() + 15 for s in found[:3])
    assert [stored(proxy, "Shot", s["id"], "filmstrip_image") for s in found[:3]] == \
        [s["filmstrip_image"] for s in found[:3]]
    # The newest event id (the rows' stamp), then one read of the six.
    assert calls(mock_server, "read") == before + 2
    assert refreshed(proxy) == 6


def test_a_deep_thumbnail_is_refreshed_and_stored_in_the_row_that_holds_it(make_proxy, sg, mock_server, tmp_path):
    shots = shots_with_thumbnails(sg, tmp_path, count=2)
    tasks = [sg.create("Task", {"content": f"comp {i}", "entity": shots[i % 2], "project": shots[0]["project"]})
             for i in range(4)]
    proxy = make_proxy(reads__url_margin="30")
    import_all(proxy)
    client = proxy.client()
    client.find_one("Project", [])
    before = calls(mock_server, "read")
    time.sleep(1.1)
    found, cached = answered_from_cache(proxy, lambda: client.find("Task", [["id", "in", [t["id"] for t in tasks]]],
                                                                   ["content", "entity.Shot.image"]))
    assert cached and [t["content"] for t in found] == ["comp 0", "comp 1", "comp 2", "comp 3"]
    assert set(found[0]) == {"type", "id", "content", "entity.Shot.image"}
    assert all(expires_at(t["entity.Shot.image"]) > time.time() + 15 for t in found)
    assert [stored(proxy, "Shot", s["id"]) for s in shots] == [found[0]["entity.Shot.image"],
                                                              found[1]["entity.Shot.image"]]
    assert calls(mock_server, "read") == before + 2


def test_a_placeholder_is_never_answered_once_the_site_has_the_thumbnail(make_proxy, sg, mock_site, tmp_path):
    mock_site.thumbnails.ttl, mock_site.thumbnails.pending = 3600, 2.5
    proxy = make_proxy()
    project = sg.create("Project", {"name": "Thumbs"})
    shot = sg.create("Shot", {"code": "TH_P", "project": project})
    import_all(proxy)
    sg.upload_thumbnail("Shot", shot["id"], thumbnail_file(tmp_path))
    poll(proxy)  # the upload's events: the cache reads the entity and stores the placeholder
    assert is_placeholder(stored(proxy, "Shot", shot["id"]))
    after_upload = newest_event(sg)
    client = proxy.client()
    during, cached = answered_from_cache(proxy, lambda: client.find_one("Shot", [["id", "is", shot["id"]]],
                                                                        ["image"]))
    assert cached and is_placeholder(during["image"])  # still processed: the site shows the placeholder too
    time.sleep(2.6)  # processed: the site now shows the real URL, and logs nothing about it
    after, cached = answered_from_cache(proxy, lambda: client.find_one("Shot", [["id", "is", shot["id"]]],
                                                                       ["image"]))
    assert cached and not is_placeholder(after["image"]) and "X-Amz-Signature=" in after["image"]
    assert after["image"] == stored(proxy, "Shot", shot["id"])
    assert newest_event(sg) == after_upload


def test_an_expired_thumbnail_is_never_answered_while_the_site_is_down(make_proxy, sg, mock_site, mock_server,
                                                                       tmp_path):
    mock_site.thumbnails.ttl = 2
    (shot,) = shots_with_thumbnails(sg, tmp_path)
    proxy = make_proxy()
    import_all(proxy)
    client = proxy.client()
    client.find_one("Project", [])  # credentials checked, remembered while the site is down
    time.sleep(max(0.0, expires_at(stored(proxy, "Shot", shot["id"])) - time.time()) + 0.1)
    site_down(mock_server)
    try:
        answer = client.find_one("Shot", [["id", "is", shot["id"]]], ["image"])
    except (shotgun_api3.ProtocolError, shotgun_api3.Fault):
        answer = None
    finally:
        site_up(mock_server)
    assert answer is None or expires_at(answer["image"]) > time.time()
    assert proxy.service.reasons["url_refresh_failed"] == 1
    # A cached answer without thumbnails still comes from the cache.
    _, cached = answered_from_cache(proxy, lambda: client.find_one("Shot", [["id", "is", shot["id"]]], ["code"]))
    assert cached


def test_an_expiring_thumbnail_is_answered_as_it_is_while_the_site_is_down(make_proxy, sg, mock_server, tmp_path):
    (shot,) = shots_with_thumbnails(sg, tmp_path)
    proxy = make_proxy(reads__url_margin="30")  # within the margin, but 20 seconds from expiring
    import_all(proxy)
    client = proxy.client()
    client.find_one("Project", [])
    site_down(mock_server)
    try:
        found, cached = answered_from_cache(proxy, lambda: client.find_one("Shot", [["id", "is", shot["id"]]],
                                                                           ["image"]))
    finally:
        site_up(mock_server)
    assert cached and found["image"] == stored(proxy, "Shot", shot["id"]) and expires_at(found["image"]) > time.time()
    assert proxy.service.reasons["url_refresh_failed"] == 0
    assert refreshed(proxy) == 0


def test_an_expired_thumbnail_of_an_entity_the_site_no_longer_shows_passes_through(make_proxy, sg, mock_site,
                                                                                    tmp_path):
    mock_site.thumbnails.ttl = 2
    shots = shots_with_thumbnails(sg, tmp_path, count=2)
    proxy = make_proxy()
    import_all(proxy)
    sg.delete("Shot", shots[0]["id"])  # the watcher has not seen it: the cache still holds it active
    time.sleep(max(0.0, expires_at(stored(proxy, "Shot", shots[0]["id"])) - time.time()) + 0.1)
    found = proxy.client().find("Shot", [["id", "in", [s["id"] for s in shots]]], ["image"])
    assert [s["id"] for s in found] == [shots[1]["id"]]  # the site's answer
    assert expires_at(found[0]["image"]) > time.time()
    assert proxy.service.reasons["url_refresh_failed"] == 1


# === pure functions =================================================================================


def test_signed_urls_of_both_kinds_are_read():
    assert expires_at("https://cdn/x.png?Expires=1700000000&Signature=a") == 1700000000
    s3 = "https://b.s3.amazonaws.com/x.jpg?X-Amz-Date=20261205T010000Z&X-Amz-Expires=900&X-Amz-Signature=s"
    assert expires_at(s3) == 1796432400 + 900
    assert expires_at("https://site/thumbnail/1.png") is None
    assert expires_at("https://cdn/x.png?Expires=soon") == 0.0
    assert is_placeholder("https://site/images/status/transient/thumbnail_pending.png")
    assert is_placeholder("https://site/images/status/transient/another_state.png")
    assert not is_placeholder("https://site/images/status/x.png")


def test_image_return_fields_are_found_own_and_deep(proxy_schema_path):
    from sgcache.schema import load
    from sgcache.store.tables import Tables

    tables = Tables(load(proxy_schema_path))
    paths = image_paths(tables, "Task", ["content", "image", "entity.Shot.image", "entity.Shot.code",
                                         "entity.Shot.sg_sequence.Sequence.image", "entity.Shot", "image"])
    assert [(p.name, p.holder, p.field, p.link) for p in paths] == [
        ("image", "Task", "image", None),
        ("entity.Shot.image", "Shot", "image", "entity"),
        ("entity.Shot.sg_sequence.Sequence.image", "Sequence", "image", "entity.Shot.sg_sequence"),
    ]
