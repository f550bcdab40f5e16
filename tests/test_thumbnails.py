"""Thumbnail URLs in cached answers are never stale: the stand-in signs them with a short lifetime
and shows a placeholder while an upload is processed, as a hosted site does; the proxy reads
expiring URLs and placeholders again before answering (sgcache.api3.thumbnails).

The real client over real HTTP against the stand-in and the proxy, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import requests
import shotgun_api3
import sqlalchemy as sa
from test_read_cache import answered_from_cache, calls, import_all
from test_slim import poll

from sgcache.api3.thumbnails import expires_at, is_placeholder

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64


def shots_with_thumbnails(sg, tmp_path, count: int = 1) -> list[dict]:
    project = sg.create("Project", {"name": "Thumbs"})
    path = tmp_path / "thumb.png"
    path.write_bytes(PNG)
    shots = [sg.create("Shot", {"code": f"TH{i:02d}", "project": project}) for i in range(count)]
    for shot in shots:
        sg.upload_thumbnail("Shot", shot["id"], str(path))
    return shots


def stored_image(proxy, shot_id: int) -> str | None:
    t = proxy.service.cache.tables["Shot"].table
    with proxy.service.cache.engine.connect() as conn:
        return conn.execute(sa.select(t.c.image).where(t.c.id == shot_id)).scalar_one()


def test_the_stand_in_signs_thumbnails_that_expire(sg, mock_site, mock_server, tmp_path):
    mock_site.thumbnails.ttl = 1
    (shot,) = shots_with_thumbnails(sg, tmp_path)
    url = sg.find_one("Shot", [["id", "is", shot["id"]]], ["image"])["image"]
    assert "Expires=" in url and "Signature=" in url
    assert requests.get(url, timeout=5).status_code == 200
    tampered = url.replace("Signature=", "Signature=0")
    assert requests.get(tampered, timeout=5).status_code == 403
    time.sleep(1.2)
    assert requests.get(url, timeout=5).status_code == 403


def test_an_expiring_thumbnail_is_read_again_before_the_cached_answer_goes_back(make_proxy, sg, mock_site,
                                                                                tmp_path):
    mock_site.thumbnails.ttl = 20
    (shot,) = shots_with_thumbnails(sg, tmp_path)
    proxy = make_proxy(reads__url_margin="30")  # every URL of the stand-in expires within the margin
    import_all(proxy)
    imported = stored_image(proxy, shot["id"])
    time.sleep(1.1)  # the next signature carries a later time
    found, cached = answered_from_cache(proxy, lambda: proxy.client().find_one("Shot", [["id", "is", shot["id"]]],
                                                                               ["image"]))
    assert cached
    assert found["image"] != imported and expires_at(found["image"]) > time.time() + 15
    assert stored_image(proxy, shot["id"]) == found["image"]
    assert requests.get(found["image"], timeout=5).status_code == 200
    assert "sgcache_thumbnails_refreshed_total 1.0" in proxy.service.metrics.exposition()[0].decode()


def test_a_fresh_thumbnail_is_answered_without_asking_the_site(make_proxy, sg, mock_site, mock_server, tmp_path):
    mock_site.thumbnails.ttl = 3600
    (shot,) = shots_with_thumbnails(sg, tmp_path)
    proxy = make_proxy()  # a margin of 10 minutes: an hour's URL is fresh
    import_all(proxy)
    client = proxy.client()
    client.find_one("Shot", [["id", "is", shot["id"]]], ["image"])  # credentials checked once
    before = calls(mock_server, "read")
    found, cached = answered_from_cache(proxy, lambda: client.find_one("Shot", [["id", "is", shot["id"]]], ["image"]))
    assert cached and found["image"] == stored_image(proxy, shot["id"])
    assert calls(mock_server, "read") == before


def test_one_call_refreshes_a_whole_page(make_proxy, sg, mock_site, mock_server, tmp_path):
    mock_site.thumbnails.ttl = 20
    shots = shots_with_thumbnails(sg, tmp_path, count=6)
    proxy = make_proxy(reads__url_margin="30")
    import_all(proxy)
    client = proxy.client()
    client.find_one("Project", [])  # credentials checked
    before = calls(mock_server, "read")
    found, cached = answered_from_cache(proxy, lambda: client.find("Shot", [["id", "in", [s["id"] for s in shots]]],
                                                                   ["code", "image"]))
    assert cached and len(found) == 6 and all(expires_at(s["image"]) > time.time() + 15 for s in found)
    # The newest event id (for the stamp), then one read of the six.
    assert calls(mock_server, "read") == before + 2


def test_a_placeholder_is_never_answered_once_the_site_has_the_thumbnail(make_proxy, sg, mock_site, tmp_path):
    mock_site.thumbnails.ttl, mock_site.thumbnails.pending = 3600, 1.5
    proxy = make_proxy()
    project = sg.create("Project", {"name": "Thumbs"})
    shot = sg.create("Shot", {"code": "TH_P", "project": project})
    import_all(proxy)
    path = tmp_path / "thumb.png"
    path.write_bytes(PNG)
    sg.upload_thumbnail("Shot", shot["id"], str(path))
    poll(proxy)  # the upload's events: the cache reads the entity and stores the placeholder
    assert is_placeholder(stored_image(proxy, shot["id"]))
    client = proxy.client()
    time.sleep(1.6)  # processed: the site now shows the real URL, and logs nothing about it
    found, cached = answered_from_cache(proxy, lambda: client.find_one("Shot", [["id", "is", shot["id"]]],
                                                                       ["image"]))
    assert cached and not is_placeholder(found["image"]) and "Signature=" in found["image"]
    assert found["image"] == stored_image(proxy, shot["id"])


def test_an_expired_thumbnail_is_never_answered_while_the_site_is_down(make_proxy, sg, mock_site, mock_server,
                                                                       tmp_path):
    mock_site.thumbnails.ttl = 2
    (shot,) = shots_with_thumbnails(sg, tmp_path)
    proxy = make_proxy()
    import_all(proxy)
    client = proxy.client()
    client.find_one("Project", [])  # credentials checked, remembered while the site is down
    time.sleep(2.1)
    requests.post(mock_server.url + "/_mock/failure", json={"mode": "503", "count": 1000}, timeout=5)
    try:
        answer = client.find_one("Shot", [["id", "is", shot["id"]]], ["image"])
    except (shotgun_api3.ProtocolError, shotgun_api3.Fault):
        answer = None
    finally:
        requests.post(mock_server.url + "/_mock/failure", json={"mode": "off"}, timeout=5)
    assert answer is None or expires_at(answer["image"]) > time.time()
    assert proxy.service.reasons["url_refresh_failed"] == 1
    # A cached answer without thumbnails still comes from the cache.
    _, cached = answered_from_cache(proxy, lambda: client.find_one("Shot", [["id", "is", shot["id"]]], ["code"]))
    assert cached


def test_signed_urls_of_both_kinds_are_read():
    assert expires_at("https://cdn/x.png?Expires=1700000000&Signature=a") == 1700000000
    s3 = "https://b.s3.amazonaws.com/x.jpg?X-Amz-Date=20261205T010000Z&X-Amz-Expires=900&X-Amz-Signature=s"
    assert expires_at(s3) == 1796432400 + 900
    assert expires_at("https://site/thumbnail/1.png") is None
    assert expires_at("https://cdn/x.png?Expires=soon") == 0.0
    assert is_placeholder("https://site/images/status/transient/thumbnail_pending.png")
    assert not parse_qs(urlsplit("https://site/images/status/transient/x.png").query)
