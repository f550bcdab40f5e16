"""The proxy (sgcache.web, sgcache.api3, sgcache.upstream) driven by the unmodified shotgun_api3 client.

Every test starts the stand-in site and the proxy as real HTTP servers (``mock_server`` and
``proxy`` in conftest) and talks to the proxy exactly as a pipeline script would. Tests that
look at the cache run on SQLite and PostgreSQL (the ``db_url`` fixture).
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import logging
import re
import threading
import time

import pytest
import requests
import shotgun_api3
import sqlalchemy as sa
from conftest import SCRIPT_AUTH, load_studio

from sgcache.store.reader import read_entities
from sgcache.store.tables import Tables

#: For tests of the protocol that never look at the cache: one database is enough.
sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

USER_AUTH = {"login": "artist", "password": "artist-password"}
SECRETS = ("sgcache-demo-key", "artist-password")


# --- helpers -----------------------------------------------------------------------------------------


@pytest.fixture
def studio(mock_site):
    """The stand-in filled with the scale-1 studio (about 5,000 entities)."""
    return load_studio(mock_site, scale=1, seed=3)


def calls(mock_server, method: str) -> int:
    return requests.get(mock_server.url + "/_mock/stats", timeout=5).json()["calls"].get(method, 0)


def inject(mock_server, mode: str, **options) -> None:
    response = requests.post(mock_server.url + "/_mock/failure", json={"mode": mode, **options}, timeout=5)
    assert response.status_code == 200, response.text


def cached(proxy, entity_type: str, ids: list[int], fields: list[str]) -> dict[int, dict]:
    """The cache's rows for ``ids``, with ``_active``, read straight from the tables."""
    service = proxy.service
    tables: Tables = service.cache.tables
    with service.cache.engine.connect() as conn:
        rows = read_entities(conn, tables, entity_type, ids=ids, fields=fields)
        t = tables[entity_type].table
        active = dict(conn.execute(sa.select(t.c.id, t.c._active).where(t.c.id.in_(ids))).all())
    return {r["id"]: {**r, "_active": active[r["id"]]} for r in rows}


def ids_of(links: list[dict] | None) -> list[int]:
    return [link["id"] for link in links or []]


# --- the protocol ------------------------------------------------------------------------------------


READ_CALLS = [
    ("find shots by status, sorted, with a deep field",
     lambda sg: sg.find("Shot", [["sg_status_list", "is_not", "omt"]],
                        ["code", "sg_sequence", "sg_sequence.Sequence.code"],
                        order=[{"field_name": "code", "direction": "desc"}], limit=40)),
    ("find_one by id", lambda sg: sg.find_one("Shot", [["id", "is", 5]], ["code", "project", "created_at"])),
    ("find with nested or-group and paging over two pages",
     lambda sg: sg.find("Task", [{"filter_operator": "any", "filters": [["content", "contains", "comp"],
                                                                         ["content", "starts_with", "Anim"]]}],
                        ["content", "entity"], limit=700)),
    ("find retired only", lambda sg: sg.find("Shot", [], ["code"], retired_only=True)),
    ("summarize with grouping", lambda sg: sg.summarize(
        "Shot", [], [{"field": "id", "type": "count"}], grouping=[{"field": "sg_status_list", "type": "exact",
                                                                    "direction": "asc"}])),
    ("schema_read", lambda sg: sg.schema_read()),
    ("schema_entity_read", lambda sg: sg.schema_entity_read()),
    ("schema_field_read of one field", lambda sg: sg.schema_field_read("Shot", "code")),
    ("schema_field_read of a type", lambda sg: sg.schema_field_read("Version")),
]


@sqlite_only
@pytest.mark.parametrize("name,call", READ_CALLS, ids=[c[0] for c in READ_CALLS])
def test_reads_through_the_proxy_equal_the_site_s_own_answers(studio, sg, proxy, name, call):
    assert call(proxy.client()) == call(sg)


UNSUPPORTED_BY_THE_STAND_IN = [
    ("text_search", lambda sg: sg.text_search("SH0010", {"Shot": []})),
    ("note_thread_read", lambda sg: sg.note_thread_read(1)),
    ("activity_stream_read", lambda sg: sg.activity_stream_read("Shot", 1)),
    ("preferences_read", lambda sg: sg.preferences_read()),
    ("work_schedule_read", lambda sg: sg.work_schedule_read("2026-01-01", "2026-01-31")),
    ("follow", lambda sg: sg.follow({"type": "HumanUser", "id": 1}, {"type": "Shot", "id": 1})),
    ("followers", lambda sg: sg.followers({"type": "Shot", "id": 1})),
    ("a method no client knows yet", lambda sg: sg._call_rpc("future_method", {"x": 1})),
]


@sqlite_only
@pytest.mark.parametrize("name,call", UNSUPPORTED_BY_THE_STAND_IN, ids=[c[0] for c in UNSUPPORTED_BY_THE_STAND_IN])
def test_other_methods_pass_through_and_the_caller_gets_the_site_s_own_answer(studio, sg, proxy, mock_server,
                                                                              name, call):
    with pytest.raises(shotgun_api3.Fault) as direct:
        call(sg)
    before = sum(requests.get(mock_server.url + "/_mock/stats", timeout=5).json()["calls"].values())
    with pytest.raises(shotgun_api3.Fault) as through:
        call(proxy.client())
    after = sum(requests.get(mock_server.url + "/_mock/stats", timeout=5).json()["calls"].values())
    assert str(through.value) == str(direct.value)
    assert after > before  # it reached the site


@sqlite_only
def test_get_session_token_passes_through_and_the_token_works_through_the_proxy(proxy, sg):
    token = proxy.client().get_session_token()
    by_token = shotgun_api3.Shotgun(proxy.url, session_token=token)
    assert by_token.find_one("HumanUser", [["login", "is", "artist"]], ["login"])["login"] == "artist"


@sqlite_only
def test_schema_writes_pass_through(proxy, sg):
    via = proxy.client()
    name = via.schema_field_create("Shot", "text", "Proxy Note")
    assert name == "sg_proxy_note"
    assert via.schema_field_update("Shot", name, {"description": "made through sgcache"})
    assert sg.schema_field_read("Shot", name)[name]["description"]["value"] == "made through sgcache"
    assert via.schema_field_delete("Shot", name)
    assert name not in sg.schema_field_read("Shot")


@sqlite_only
def test_info_is_the_site_s_info_plus_an_sgcache_key(proxy, sg):
    info = proxy.client().info()
    site_info = sg.info()
    assert info["version"] == site_info["version"] == [8, 50, 0]
    assert {k: v for k, v in info.items() if k != "sgcache"} == site_info
    assert info["sgcache"]["version"]
    assert info["sgcache"]["site"] == "ok"
    assert info["sgcache"]["database"] == "ok"


@sqlite_only
def test_info_is_asked_of_the_site_once_per_info_ttl(make_proxy, mock_server):
    proxy = make_proxy(site__info_ttl=0.5)
    before = calls(mock_server, "info")
    client = proxy.client()
    for _ in range(5):
        client.info()
    assert calls(mock_server, "info") - before == 1
    time.sleep(0.6)
    client.info()
    assert calls(mock_server, "info") - before == 2


@sqlite_only
def test_when_the_info_copy_expires_one_request_asks_the_site_and_the_others_use_the_copy(make_proxy,
                                                                                        mock_server):
    proxy = make_proxy(site__info_ttl=0.2)
    clients = [proxy.client() for _ in range(6)]  # each asked info once on connecting
    time.sleep(0.3)
    before = calls(mock_server, "info")
    inject(mock_server, "stall", count=1, stall_seconds=1)
    took: list[float] = []

    def ask(client):
        started = time.monotonic()
        assert client.info()["version"] == [8, 50, 0]
        took.append(time.monotonic() - started)

    threads = [threading.Thread(target=ask, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert calls(mock_server, "info") - before == 1
    assert len(took) == 6
    assert sorted(took)[-2] < 0.5  # only the one that asked the site waited for it


@sqlite_only
@pytest.mark.parametrize("base", ["/sg/", "/studio/shotgun/"])
def test_a_base_url_with_a_path_reaches_the_same_site(proxy, sg, studio, base):
    via = proxy.client(base)
    assert via.config.api_path == f"{base}api3/json"
    assert via.find("Sequence", [], ["code"]) == sg.find("Sequence", [], ["code"])


@sqlite_only
def test_faults_of_the_site_reach_the_caller_as_faults(proxy, studio):
    with pytest.raises(shotgun_api3.Fault, match="NoSuchType"):
        proxy.client().find("NoSuchType", [])


@sqlite_only
def test_sgcache_s_own_answers_are_gzipped_for_clients_that_accept_it(proxy, monkeypatch):
    monkeypatch.setattr("sgcache.web.GZIP_MIN_BYTES", 10)  # info is smaller than the default threshold
    body = {"method_name": "info", "params": []}
    zipped = requests.post(proxy.url + "/api3/json", json=body, headers={"Accept-Encoding": "gzip"}, stream=True,
                           timeout=5)
    assert zipped.headers["Content-Encoding"] == "gzip"
    raw = zipped.raw.read(decode_content=False)
    assert raw[:2] == b"\x1f\x8b"
    assert json.loads(gzip.decompress(raw))["version"] == [8, 50, 0]
    plain = requests.post(proxy.url + "/api3/json", json=body, headers={"Accept-Encoding": "identity"}, timeout=5)
    assert "Content-Encoding" not in plain.headers
    assert plain.json()["version"] == [8, 50, 0]
    # The real client asks for gzip and reads it.
    assert proxy.client().info()["version"] == [8, 50, 0]


@sqlite_only
def test_every_answer_carries_a_request_id_and_the_outcome(proxy):
    response = requests.post(proxy.url + "/api3/json", json={"method_name": "info", "params": []}, timeout=5,
                             headers={"X-Request-Id": "abc123"})
    assert response.headers["X-Sgcache-Request-Id"] == "abc123"
    assert response.headers["X-Sgcache-Outcome"] in ("cache", "passthrough")


@sqlite_only
@pytest.mark.parametrize("given", ["abc status=500", "x\ty", "a'b", "\u00e9t\u00e9", "r" * 65])
def test_a_request_id_that_could_forge_log_keys_is_replaced_by_a_fresh_one(proxy, caplog, given):
    with caplog.at_level(logging.INFO, logger="sgcache.web"):
        response = requests.post(proxy.url + "/api3/json", json={"method_name": "info", "params": []}, timeout=5,
                                 headers={"X-Request-Id": given.encode("utf-8")})
    assert re.fullmatch(r"[0-9a-f]{16}", response.headers["X-Sgcache-Request-Id"])
    (line,) = [r.getMessage() for r in caplog.records if "event=request" in r.getMessage()]
    assert f"id={response.headers['X-Sgcache-Request-Id']} " in line and line.count("status=") == 1


@sqlite_only
def test_each_request_is_one_log_line_with_id_method_type_outcome_and_caller(proxy, studio, caplog):
    with caplog.at_level(logging.INFO, logger="sgcache.web"):
        proxy.client().find_one("Shot", [], ["code"])
    lines = [r.getMessage() for r in caplog.records if r.name == "sgcache.web" and "method=read" in r.getMessage()]
    assert len(lines) == 1
    line = lines[0]
    for part in ("event=request", "method=read", "type=Shot", "outcome=passthrough", "status=200",
                 "caller=script:sgcache", "id=", "ms="):
        assert part in line


# --- files ---------------------------------------------------------------------------------------------


@sqlite_only
def test_file_upload_and_download_stream_through(proxy, sg, studio, tmp_path):
    via = proxy.client()
    version = sg.find_one("Version", [], ["id"])
    payload = bytes(range(256)) * 4096  # 1 MiB
    path = tmp_path / "plate.bin"
    path.write_bytes(payload)
    attachment_id = via.upload("Version", version["id"], str(path), field_name="sg_uploaded_movie",
                               display_name="plate.bin")
    assert isinstance(attachment_id, int)
    movie = sg.find_one("Version", [["id", "is", version["id"]]], ["sg_uploaded_movie"])["sg_uploaded_movie"]
    assert movie["name"] == "plate.bin"
    assert via.download_attachment(attachment_id=attachment_id) == payload
    response = requests.get(f"{proxy.url}/file_serve/attachment/{attachment_id}", stream=True, timeout=5)
    # The site sent it in chunks and so does the proxy: it relays blocks, it does not buffer the file.
    assert response.headers["Transfer-Encoding"] == "chunked"
    assert response.raw.read() == payload


@sqlite_only
def test_thumbnail_upload_streams_through(proxy, sg, studio, tmp_path):
    shot = sg.find_one("Shot", [], ["id"])
    path = tmp_path / "thumb.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 2048)
    assert isinstance(proxy.client().upload_thumbnail("Shot", shot["id"], str(path)), int)
    assert sg.find_one("Shot", [["id", "is", shot["id"]]], ["image"])["image"]


@sqlite_only
def test_a_download_of_a_missing_file_relays_the_site_s_status(proxy):
    response = requests.get(f"{proxy.url}/file_serve/attachment/999999", timeout=5)
    assert response.status_code == 404
    assert "No such attachment" in response.text


# --- writes: read your writes ---------------------------------------------------------------------------


def test_create_is_in_the_cache_when_the_call_returns_and_the_caller_gets_the_fields_it_asked_for(
        proxy, sg, studio, mock_server):
    project = sg.find_one("Project", [], ["name"])
    sequence = sg.find_one("Sequence", [["project", "is", project]], ["code"])
    before = calls(mock_server, "create")
    shot = proxy.client().create("Shot", {"code": "RYW_0010", "project": project, "sg_sequence": sequence,
                                          "description": "made through sgcache"}, ["sg_status_list"])
    assert calls(mock_server, "create") - before == 1
    assert set(shot) == {"type", "id", "code", "project", "sg_sequence", "description", "sg_status_list"}
    row = cached(proxy, "Shot", [shot["id"]], ["code", "description", "sg_sequence", "created_at"])[shot["id"]]
    assert row["code"] == "RYW_0010"
    assert row["description"] == "made through sgcache"
    assert row["sg_sequence"]["id"] == sequence["id"]
    assert row["created_at"] is not None
    assert row["_active"]
    # The other side of the link: Sequence.shots now lists the new shot.
    seq_row = cached(proxy, "Sequence", [sequence["id"]], ["shots"])[sequence["id"]]
    assert shot["id"] in ids_of(seq_row["shots"])


def test_update_is_in_the_cache_when_the_call_returns(proxy, sg, studio, mock_server):
    shot = sg.find_one("Shot", [], ["code"])
    before = calls(mock_server, "update")
    result = proxy.client().update("Shot", shot["id"], {"description": "updated through sgcache"})
    assert calls(mock_server, "update") - before == 1
    assert result == {"type": "Shot", "id": shot["id"], "description": "updated through sgcache"}
    row = cached(proxy, "Shot", [shot["id"]], ["description", "updated_at"])[shot["id"]]
    assert row["description"] == "updated through sgcache"
    site = sg.find_one("Shot", [["id", "is", shot["id"]]], ["updated_at"])
    assert row["updated_at"] == site["updated_at"].astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("mode", ["set", "add", "remove"])
def test_multi_entity_updates_in_every_mode_are_cached_on_both_sides(proxy, sg, studio, mode):
    project = sg.find_one("Project", [], ["name"])
    assets = sg.find("Asset", [["project", "is", project]], ["code"], limit=3)
    # Made through the proxy, so the cache knows what it linked before the update.
    shot = proxy.client().create("Shot", {"code": f"ME_{mode}", "project": project,
                                          "assets": [assets[0], assets[1]]})
    proxy.client().update("Shot", shot["id"], {"assets": [assets[1], assets[2]]},
                          multi_entity_update_modes={"assets": mode})
    a0, a1, a2 = (a["id"] for a in assets)
    expected = {"set": [a1, a2], "add": [a0, a1, a2], "remove": [a0]}[mode]
    changed = {"set": [a0, a2], "add": [a2], "remove": [a1]}[mode]
    site = sg.find_one("Shot", [["id", "is", shot["id"]]], ["assets"])
    assert ids_of(site["assets"]) == expected
    row = cached(proxy, "Shot", [shot["id"]], ["assets"])[shot["id"]]
    assert ids_of(row["assets"]) == expected
    # The other side (Asset.shots) of every asset the update linked or unlinked.
    asset_rows = cached(proxy, "Asset", changed, ["shots"])
    for asset_id in changed:
        on_site = sg.find_one("Asset", [["id", "is", asset_id]], ["shots"])
        assert (shot["id"] in ids_of(on_site["shots"])) == (asset_id in expected)
        assert ids_of(asset_rows[asset_id]["shots"]) == ids_of(on_site["shots"])


def test_delete_and_revive_are_in_the_cache_when_the_call_returns(proxy, sg, studio, mock_server):
    shot = sg.find_one("Shot", [], ["code"])
    via = proxy.client()
    assert via.delete("Shot", shot["id"]) is True
    assert cached(proxy, "Shot", [shot["id"]], ["code"])[shot["id"]]["_active"] is False
    assert via.revive("Shot", shot["id"]) is True
    assert cached(proxy, "Shot", [shot["id"]], ["code"])[shot["id"]]["_active"] is True
    assert calls(mock_server, "delete") == 1
    assert calls(mock_server, "revive") == 1


def test_a_mixed_batch_is_one_request_to_the_site_and_every_result_is_cached(proxy, sg, studio, mock_server):
    project = sg.find_one("Project", [], ["name"])
    old = sg.find("Shot", [["project", "is", project]], ["code"], limit=2)
    before = calls(mock_server, "batch")
    results = proxy.client().batch([
        {"request_type": "create", "entity_type": "Shot", "data": {"code": "BATCH_A", "project": project}},
        {"request_type": "create", "entity_type": "Asset", "data": {"code": "batch asset", "project": project}},
        {"request_type": "update", "entity_type": "Shot", "entity_id": old[0]["id"],
         "data": {"description": "batched"}},
        {"request_type": "delete", "entity_type": "Shot", "entity_id": old[1]["id"]},
    ])
    assert calls(mock_server, "batch") - before == 1
    assert calls(mock_server, "create") == 0  # one batch, not four calls
    new_shot, new_asset, updated, deleted = results
    assert deleted is True
    shots = cached(proxy, "Shot", [new_shot["id"], old[0]["id"], old[1]["id"]], ["code", "description"])
    assert shots[new_shot["id"]]["code"] == "BATCH_A"
    assert shots[old[0]["id"]]["description"] == "batched"
    assert shots[old[1]["id"]]["_active"] is False
    assert cached(proxy, "Asset", [new_asset["id"]], ["code"])[new_asset["id"]]["code"] == "batch asset"


def test_a_failed_batch_changes_nothing_in_the_cache(proxy, sg, studio):
    shot = sg.find_one("Shot", [], ["description"])
    with pytest.raises(shotgun_api3.Fault):
        proxy.client().batch([
            {"request_type": "update", "entity_type": "Shot", "entity_id": shot["id"], "data": {"description": "x"}},
            {"request_type": "update", "entity_type": "Shot", "entity_id": 10**9, "data": {"description": "y"}},
        ])
    assert sg.find_one("Shot", [["id", "is", shot["id"]]], ["description"])["description"] == shot["description"]
    assert cached(proxy, "Shot", [shot["id"]], ["description"]) == {}


def test_tasks_a_task_template_makes_are_cached_with_the_new_entity(proxy, sg, studio):
    project = sg.find_one("Project", [], ["name"])
    template = sg.create("TaskTemplate", {"code": "Shot basics"})
    step = sg.find_one("Step", [], ["code"])
    for content in ("layout", "anim"):
        sg.create("Task", {"content": content, "task_template": template, "step": step})
    shot = proxy.client().create("Shot", {"code": "TT_0010", "project": project, "task_template": template})
    tasks = sg.find("Task", [["entity", "is", shot]], ["content", "template_task"])
    assert sorted(t["content"] for t in tasks) == ["anim", "layout"]
    rows = cached(proxy, "Task", [t["id"] for t in tasks], ["content", "entity"])
    assert sorted(r["content"] for r in rows.values()) == ["anim", "layout"]
    assert all(r["entity"]["id"] == shot["id"] for r in rows.values())
    assert sorted(ids_of(cached(proxy, "Shot", [shot["id"]], ["tasks"])[shot["id"]]["tasks"])) == \
        sorted(t["id"] for t in tasks)


@sqlite_only
def test_a_write_on_a_type_the_cache_does_not_hold_simply_passes_through(proxy, sg, studio):
    note = proxy.client().create("Note", {"subject": "not cached", "project": sg.find_one("Project", [])})
    assert sg.find_one("Note", [["id", "is", note["id"]]], ["subject"])["subject"] == "not cached"


@sqlite_only
def test_a_write_the_site_refuses_is_the_site_s_fault_and_nothing_is_cached(proxy, studio):
    with pytest.raises(shotgun_api3.Fault, match="no_such_field"):
        proxy.client().create("Shot", {"code": "x", "no_such_field": 1})


@sqlite_only
def test_a_write_the_site_applied_is_answered_even_if_caching_it_fails(proxy, sg, studio, monkeypatch, caplog):
    def broken(*_args, **_kwargs):
        raise RuntimeError("simulated bug in the refresh")

    monkeypatch.setattr(proxy.service.refresher, "refresh", broken)
    shot = sg.find_one("Shot", [], ["code"])
    with caplog.at_level(logging.ERROR):
        result = proxy.client().update("Shot", shot["id"], {"description": "still answered"})
    assert result["description"] == "still answered"
    assert "event=write_not_cached" in caplog.text


def test_a_watcher_event_older_than_a_cached_write_does_not_undo_it(proxy, sg, studio):
    """Write results are stamped with the newest event id seen before they were read back."""
    shot = sg.find_one("Shot", [], ["code"])
    sg.update("Shot", shot["id"], {"description": "v1"})  # an event the watcher has not applied
    before = sg.find_one("EventLogEntry", [], ["id"], order=[{"field_name": "id", "direction": "desc"}])
    proxy.client().update("Shot", shot["id"], {"description": "v2"})
    t = proxy.service.cache.tables["Shot"].table
    with proxy.service.cache.engine.connect() as conn:
        stamped = conn.execute(sa.select(t.c._last_event_id).where(t.c.id == shot["id"])).scalar()
    newest = sg.find_one("EventLogEntry", [], ["id"], order=[{"field_name": "id", "direction": "desc"}])
    assert before["id"] <= stamped <= newest["id"]


# --- authentication -----------------------------------------------------------------------------------


BAD_CREDENTIALS = {
    "wrong key": {"script_name": "sgcache", "api_key": "not-the-key"},
    "unknown script": {"script_name": "nobody", "api_key": "sgcache-demo-key"},
    "wrong password": {"login": "artist", "password": "wrong"},
    "unknown user": {"login": "ghost", "password": "artist-password"},
    "sudo as nobody": {**SCRIPT_AUTH, "sudo_as_login": "ghost"},
}


@sqlite_only
@pytest.mark.parametrize("name", list(BAD_CREDENTIALS))
def test_bad_credentials_get_the_authentication_fault_and_nothing_else(proxy, studio, name):
    client = shotgun_api3.Shotgun(proxy.url, connect=False, **BAD_CREDENTIALS[name])
    for call in (lambda: client.find_one("Shot", [], ["code"]), lambda: client.create("Shot", {"code": "x"}),
                 lambda: client.schema_read()):
        with pytest.raises(shotgun_api3.AuthenticationFault):
            call()


@sqlite_only
def test_an_expired_session_token_gets_the_authentication_fault(proxy, mock_server):
    token = proxy.client().get_session_token()
    client = shotgun_api3.Shotgun(proxy.url, session_token=token)
    assert client.find_one("HumanUser", [], ["login"])
    requests.post(mock_server.url + "/_mock/expire_sessions", timeout=5)
    with pytest.raises(shotgun_api3.AuthenticationFault):
        shotgun_api3.Shotgun(proxy.url, session_token=token).find_one("Project", [], ["name"])


@sqlite_only
def test_a_request_without_credentials_is_refused_without_asking_the_site(proxy, mock_server):
    before = calls(mock_server, "read")
    response = requests.post(proxy.url + "/api3/json", timeout=5, json={
        "method_name": "read", "params": [{}, {"type": "Shot", "filters": {"logical_operator": "and",
                                                                             "conditions": []}}]})
    body = response.json()
    assert response.status_code == 200
    assert body["exception"] is True and body["error_code"] == 102
    assert "authentication required" in body["message"]
    assert calls(mock_server, "read") == before
    for params in ([], [None], [{"script_name": "sgcache"}]):
        body = requests.post(proxy.url + "/api3/json", json={"method_name": "read", "params": params},
                             timeout=5).json()
        assert body["error_code"] == 102


@sqlite_only
def test_good_credentials_of_every_kind_work(proxy, studio):
    assert proxy.client().find_one("Project", [], ["name"])
    assert shotgun_api3.Shotgun(proxy.url, **USER_AUTH).find_one("Project", [], ["name"])
    assert proxy.client(**SCRIPT_AUTH, sudo_as_login="artist").find_one("Project", [], ["name"])


@sqlite_only
def test_rejected_credentials_are_remembered_briefly_so_a_flood_stays_off_the_site(make_proxy, mock_server):
    proxy = make_proxy(auth__failure_ttl=0.5)
    bad = shotgun_api3.Shotgun(proxy.url, script_name="sgcache", api_key="wrong", connect=False)
    before = calls(mock_server, "read")
    for _ in range(20):
        with pytest.raises(shotgun_api3.AuthenticationFault, match="Can't authenticate script"):
            bad.find_one("Shot", [])
    assert calls(mock_server, "read") - before == 1
    time.sleep(0.6)
    with pytest.raises(shotgun_api3.AuthenticationFault):
        bad.find_one("Shot", [])
    assert calls(mock_server, "read") - before == 2


@sqlite_only
def test_a_verified_caller_is_trusted_until_verify_ttl_then_asked_again(make_proxy, mock_server):
    proxy = make_proxy(auth__verify_ttl=0.5)
    verifier = proxy.service.verifier
    auth = {"script_name": "sgcache", "script_key": "sgcache-demo-key"}
    before = calls(mock_server, "read")
    assert verifier.verify(auth, "Shot") is True
    assert verifier.verify(auth, "Shot") is True
    assert calls(mock_server, "read") - before == 1
    time.sleep(0.6)
    assert verifier.verify(auth, "Shot") is True
    assert calls(mock_server, "read") - before == 2


@sqlite_only
def test_a_passthrough_answer_counts_as_verification(proxy, mock_server, studio):
    proxy.client().find_one("Shot", [], ["code"])
    auth = {"script_name": "sgcache", "script_key": "sgcache-demo-key"}
    before = calls(mock_server, "read")
    assert proxy.service.verifier.verify(auth, "Shot") is True
    assert calls(mock_server, "read") == before


@sqlite_only
def test_verification_memory_is_keyed_by_a_salted_hash_never_the_secret(proxy):
    verifier = proxy.service.verifier
    auth = {"script_name": "sgcache", "script_key": "sgcache-demo-key"}
    verifier.remember(auth, True)
    keys = list(verifier._verdicts)
    assert all("sgcache-demo-key" not in k for k in keys)
    assert verifier.key(auth) in keys
    assert verifier.key(auth) != type(verifier)(proxy.config.auth, None).key(auth)  # salted per process


@sqlite_only
def test_cached_scripts_limits_who_may_use_the_cache(make_proxy):
    proxy = make_proxy(auth__cached_scripts="pipeline")
    policy = proxy.service.policy
    for auth in ({"script_name": "sgcache", "script_key": "k"}, {"user_login": "artist", "user_password": "p"},
                 {"script_name": "pipeline", "script_key": "k", "sudo_as_login": "artist"}):
        assert policy.decide(auth).reason == "caller_not_in_cached_scripts"
    assert policy.decide({"script_name": "pipeline", "script_key": "k"}).reason != "caller_not_in_cached_scripts"


def test_no_secret_reaches_the_database_the_logs_or_the_answers(proxy, studio, caplog):
    bodies = []
    with caplog.at_level(logging.DEBUG):
        for auth in (SCRIPT_AUTH, {"script_name": "sgcache", "api_key": "sgcache-demo-key-wrong"}, USER_AUTH,
                     {"login": "artist", "password": "artist-password-wrong"}):
            client = shotgun_api3.Shotgun(proxy.url, connect=False, **auth)
            for call in (lambda c=client: c.find_one("Shot", [], ["code"]),
                         lambda c=client: c.create("Shot", {"code": "secret test", "project": {"type": "Project",
                                                                                             "id": 1}})):
                try:
                    bodies.append(repr(call()))
                except shotgun_api3.Fault as e:
                    bodies.append(str(e))
        token = proxy.client().get_session_token()
        shotgun_api3.Shotgun(proxy.url, session_token=token).find_one("Shot", [])
    logs = caplog.text
    with proxy.service.cache.engine.connect() as conn:
        dump = []
        for table in proxy.service.cache.tables.metadata.sorted_tables:
            dump.extend(repr(tuple(row)) for row in conn.execute(sa.select(table)))
    everything = "\n".join([logs, *bodies, *dump])
    for secret in (*SECRETS, token):
        assert secret not in everything


# --- when things fail ----------------------------------------------------------------------------------


@sqlite_only
def test_a_503_from_the_site_reaches_the_client_as_the_site_s_status(proxy, mock_server, studio):
    client = proxy.client()
    client.info()
    inject(mock_server, "503", count=1)
    with pytest.raises(shotgun_api3.ProtocolError) as e:
        client.find_one("Shot", [])
    assert e.value.errcode == 503


@sqlite_only
def test_info_before_any_copy_relays_the_site_s_503(proxy, mock_server):
    inject(mock_server, "503", count=1)
    with pytest.raises(shotgun_api3.ProtocolError) as e:
        proxy.client().info()
    assert e.value.errcode == 503


@sqlite_only
def test_a_single_502_is_retried_by_the_client_and_the_read_succeeds(proxy, mock_server, studio):
    client = proxy.client()
    client.info()
    inject(mock_server, "502", count=1)
    assert client.find_one("Shot", [], ["code"])["code"]


@sqlite_only
@pytest.mark.parametrize("mode", ["502", "504"])
def test_a_site_that_keeps_failing_gives_the_client_its_status_promptly(proxy, mock_server, studio, mode):
    client = proxy.client()
    client.info()
    client.BACKOFF = 0.05
    inject(mock_server, mode, count=10)
    started = time.monotonic()
    with pytest.raises(shotgun_api3.ProtocolError) as e:
        client.find_one("Shot", [])
    assert e.value.errcode == int(mode)
    assert time.monotonic() - started < 5


@sqlite_only
def test_a_stalled_site_gives_a_clear_fault_after_site_timeout(make_proxy, mock_server, studio):
    proxy = make_proxy(site__timeout=1)
    client = proxy.client()
    client.info()
    inject(mock_server, "stall", count=1, stall_seconds=3)
    started = time.monotonic()
    with pytest.raises(shotgun_api3.Fault, match="did not answer within 1 s"):
        client.find_one("Shot", [])
    assert time.monotonic() - started < 2.5


@sqlite_only
def test_a_write_to_a_stalled_site_is_sent_once_and_reported_as_maybe_applied(make_proxy, mock_server, studio):
    proxy = make_proxy(site__timeout=1)
    client = proxy.client()
    client.info()
    project = client.find_one("Project", [])
    # Both the write and sgcache's own look at the event log (sent alongside it) stall.
    inject(mock_server, "stall", count=2, stall_seconds=2)
    with pytest.raises(shotgun_api3.Fault, match="may or may not have reached the site"):
        client.create("Shot", {"code": "stalled", "project": project})
    time.sleep(1.5)  # the stalled request completes on the site
    assert calls(mock_server, "create") == 1


@sqlite_only
def test_a_dropped_connection_is_retried_for_a_read_and_never_for_a_write(proxy, mock_server, sg, studio):
    client = proxy.client()
    client.info()
    inject(mock_server, "drop", count=1)
    assert client.find_one("Shot", [], ["code"])["code"]  # sent again: a read changes nothing
    project = sg.find_one("Project", [])
    inject(mock_server, "drop", count=1)
    # Note is not cached, so the create is the only request the proxy sends.
    with pytest.raises(shotgun_api3.Fault, match="may or may not have reached the site"):
        client.create("Note", {"subject": "dropped", "project": project})
    assert calls(mock_server, "create") == 0
    assert sg.find("Note", [["subject", "is", "dropped"]]) == []


@sqlite_only
def test_a_dead_site_opens_the_breaker_and_the_proxy_recovers_with_the_site(make_proxy, mock_server, studio):
    proxy = make_proxy(site__breaker_failures=2, site__breaker_cooldown=0.5, site__connect_timeout=1)
    client = proxy.client()
    info = client.info()
    mock_server.go_down(1.5)
    time.sleep(0.1)
    messages = []
    for _ in range(4):
        with pytest.raises(shotgun_api3.Fault) as e:
            client.find_one("Shot", [])
        messages.append(str(e.value))
    assert "could not reach the Shotgun site" in messages[0]
    assert "unavailable" in messages[-1] and "will try it again" in messages[-1]
    # info is still answered, from the last copy, and says the site is away.
    while_down = proxy.client().info()
    assert while_down["version"] == info["version"]
    assert while_down["sgcache"]["site"] in ("unavailable", "recovering")
    deadline = time.monotonic() + 10
    while True:
        try:
            assert client.find_one("Shot", [], ["code"])
            break
        except shotgun_api3.Fault:
            assert time.monotonic() < deadline, "the proxy did not recover"
            time.sleep(0.2)
    assert proxy.client().info()["sgcache"]["site"] == "ok"


@sqlite_only
def test_a_restarted_proxy_answers_info_from_the_saved_copy_while_the_site_is_down(make_proxy, mock_server):
    first = make_proxy()
    site_info = first.client().info()
    second = make_proxy(database_url=first.config.database.url, migrated=False, site__connect_timeout=1)
    mock_server.go_down(2)
    time.sleep(0.1)
    info = shotgun_api3.Shotgun(second.url, connect=False, **SCRIPT_AUTH).info()
    assert info["version"] == site_info["version"]
    assert "site_problem" in info["sgcache"]


@sqlite_only
def test_with_the_database_unreachable_everything_passes_through(make_proxy, sg, studio):
    proxy = make_proxy(database_url="postgresql://postgres@127.0.0.1:1/nothing", migrated=False)
    client = proxy.client()
    info = client.info()
    assert info["sgcache"]["database"] == "down"
    assert info["sgcache"]["answers"] == "passthrough"
    assert client.find("Sequence", [], ["code"]) == sg.find("Sequence", [], ["code"])
    shot = client.create("Shot", {"code": "no cache", "project": sg.find_one("Project", [])})
    assert sg.find_one("Shot", [["id", "is", shot["id"]]], ["code"])["code"] == "no cache"


@pytest.mark.postgresql
def test_when_postgresql_goes_away_the_proxy_passes_through_and_comes_back(make_proxy, pg_database, sg, studio,
                                                                          caplog):
    admin = sa.create_engine(pg_database, isolation_level="AUTOCOMMIT")
    name = f"sgcache_down_{int(time.time() * 1000) % 10**8}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        url = pg_database.set(database=name).render_as_string(hide_password=False)
        proxy = make_proxy(database_url=url)
        client = proxy.client()
        project = sg.find_one("Project", [])
        assert client.info()["sgcache"]["database"] == "ok"
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                         {"n": name})
        with caplog.at_level(logging.ERROR, logger="sgcache.api3.cache"):
            shot = client.create("Shot", {"code": "while the db is away", "project": project})
        assert sg.find_one("Shot", [["id", "is", shot["id"]]], ["code"])["code"] == "while the db is away"
        assert "event=database_down" in caplog.text
        assert client.find_one("Shot", [["id", "is", shot["id"]]], ["code"])["code"] == "while the db is away"
        assert client.info()["sgcache"]["database"] == "down"
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        proxy.service.cache._checked_at = 0  # do not wait for the next periodic check
        assert client.info()["sgcache"]["database"] == "ok"
        again = client.create("Shot", {"code": "db back", "project": project})
        assert cached(proxy, "Shot", [again["id"]], ["code"])[again["id"]]["code"] == "db back"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@sqlite_only
def test_slow_passthroughs_do_not_hold_up_other_requests(make_proxy, mock_server, studio):
    proxy = make_proxy(site__timeout=5)
    fast = proxy.client()
    fast.info()
    slow = proxy.client()
    slow.info()
    inject(mock_server, "stall", count=1, stall_seconds=2)
    thread = threading.Thread(target=lambda: slow.find_one("Shot", []), daemon=True)
    thread.start()
    time.sleep(0.2)
    started = time.monotonic()
    assert fast.find_one("Project", [], ["name"])
    assert time.monotonic() - started < 1
    thread.join(5)


# --- sgcache web ---------------------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@sqlite_only
@pytest.mark.parametrize("dev", [False, True], ids=["gunicorn", "dev"])
def test_sgcache_web_serves_the_real_client_and_stops_cleanly(mock_server, studio, sg, db_url, proxy_schema_path,
                                                             tmp_path, dev):
    import os
    import signal
    import subprocess
    import sys

    from sgcache.schema import load
    from sgcache.store.db import create_engine
    from sgcache.store.migrate import migrate

    engine = create_engine(db_url)
    migrate(engine, Tables(load(proxy_schema_path)))
    engine.dispose()
    port = _free_port()
    env = {**os.environ, "SGCACHE_SITE_API_KEY": "sgcache-demo-key"}
    command = [sys.executable, "-m", "sgcache", "--config", str(tmp_path / "none.yml"), "--database", db_url,
               "--schema", str(proxy_schema_path), "--set", f"site.base_url={mock_server.url}",
               "--set", "site.script_name=sgcache", "web", "--bind", f"127.0.0.1:{port}", "--workers", "1",
               "--threads", "4", *(["--dev"] if dev else [])]
    (tmp_path / "none.yml").write_text("")
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.post(f"http://127.0.0.1:{port}/api3/json", json={"method_name": "info", "params": []},
                              timeout=1)
                break
            except requests.ConnectionError:
                assert process.poll() is None, process.stderr.read()
                assert time.monotonic() < deadline, "sgcache web did not start"
                time.sleep(0.1)
        client = shotgun_api3.Shotgun(f"http://127.0.0.1:{port}", **SCRIPT_AUTH)
        assert client.info()["sgcache"]["database"] == "ok"
        assert client.find("Sequence", [], ["code"]) == sg.find("Sequence", [], ["code"])
    finally:
        process.send_signal(signal.SIGTERM if not dev else signal.SIGINT)
        try:
            _, stderr = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert "method=read type=Sequence outcome=passthrough" in stderr
    assert "sgcache-demo-key" not in stderr
    if not dev:
        assert process.returncode == 0, stderr
