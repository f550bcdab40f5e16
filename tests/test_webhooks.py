"""Webhook deliveries (``POST /_sgcache/webhook``): signed by the site, verified over the raw
body, and a prompt for the watcher, never a way around its cursor. The proxy, the stand-in and
the watcher run for real; deliveries are posted as the site posts them (SITE-FACTS section 1)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import urllib.error
import urllib.request

import pytest
import sqlalchemy as sa

from sgcache.store import state
from sgcache.sync.remote import Remote
from sgcache.sync.scanner import Scanner
from sgcache.sync.watcher import Watcher

SECRET = "hook-secret"


def post(proxy, body: bytes, signature: str | None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if signature is not None:
        headers["X-SG-SIGNATURE"] = signature
    req = urllib.request.Request(proxy.url + "/_sgcache/webhook", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def delivery(*event_ids: int, batched: bool = False) -> bytes:
    items = [{"id": f"1.{n}.0", "event_log_entry_id": n, "event_type": "Shotgun_Shot_Change", "operation": "update",
              "entity": {"type": "Shot", "id": 1}, "meta": {"type": "attribute_change"},
              "created_at": "2026-12-05 12:00:00.000000", "session_uuid": None} for n in event_ids]
    data = {"deliveries": items} if batched else items[0]
    return json.dumps({"data": data, "timestamp": "2026-12-05T12:00:01Z"}).encode()


def marks(proxy) -> tuple[int, object]:
    cache = proxy.service.cache
    with cache.engine.connect() as conn:
        return state.webhook_marks(conn, cache.tables.state)


def slow_watcher(make_proxy, sg) -> tuple:
    """A proxy taking signed deliveries, its cache imported after ``sg`` made a project and three
    shots, and a watcher whose idle pauses are at least 30 s: only a delivery can make a change
    show within seconds. (proxy, engine, tables, watcher, shots)"""
    proxy = make_proxy(site__webhook_secret=SECRET, watcher__poll_interval="60", watcher__min_poll_interval="30",
                       watcher__webhook_poll_interval="60")
    engine, tables = proxy.service.cache.engine, proxy.service.cache.tables
    project = sg.create("Project", {"name": "Alpha"})
    shots = [sg.create("Shot", {"code": f"SH{n}", "project": project}) for n in range(3)]
    watcher = Watcher(engine, tables, Remote(proxy.config.site), proxy.config.watcher)
    watcher.webhooks = True
    watcher.start()
    Scanner(engine, tables, Remote(proxy.config.site), proxy.config.scanner).full()
    return proxy, engine, tables, watcher, shots


def test_only_deliveries_signed_with_the_secret_are_taken_and_each_is_counted(make_proxy):
    proxy = make_proxy(site__webhook_secret=SECRET)
    body = delivery(41)
    assert post(proxy, body, None)[0] == 401
    assert post(proxy, body, "sha1=" + "0" * 40)[0] == 401
    assert post(proxy, body, sign(body, "another-secret"))[0] == 401
    assert post(proxy, body + b" ", sign(body))[0] == 401  # the raw bytes are signed, not the JSON
    assert marks(proxy) == (0, None)  # nothing rejected did anything
    assert post(proxy, b"{not json", sign(b"{not json"))[0] == 400
    service = json.dumps({"data": {"id": "0", "event_type": "Webhook_Status_Change", "event_log_entry_id": 0}})
    assert post(proxy, service.encode(), sign(service.encode())) == (200, {"ok": True, "events": 0})
    assert marks(proxy) == (0, None)
    assert post(proxy, body, sign(body)) == (200, {"ok": True, "events": 1})
    assert marks(proxy)[0] == 41
    batch = delivery(44, 43, 42, batched=True)
    assert post(proxy, batch, sign(batch)) == (200, {"ok": True, "events": 3})
    assert post(proxy, body, sign(body))[0] == 200  # replayed: the mark never goes back
    assert marks(proxy)[0] == 44
    big = b"{" + b" " * (3 * 1024 * 1024) + b"}"
    assert post(proxy, big, sign(big))[0] == 413
    with urllib.request.urlopen(proxy.url + "/_sgcache/metrics", timeout=10) as r:
        metrics = r.read().decode()
    for outcome, n in (("rejected", 4), ("malformed", 1), ("ignored", 1), ("accepted", 3), ("refused", 1)):
        assert f'sgcache_webhook_deliveries_total{{outcome="{outcome}"}} {n}.0' in metrics, outcome


def test_without_a_secret_the_route_is_off(make_proxy):
    proxy = make_proxy()
    body = delivery(1)
    status, answer = post(proxy, body, sign(body))
    assert status == 404 and "site.webhook_secret" in answer["error"]


def test_a_delivery_wakes_an_idle_watcher_whose_polls_are_far_apart(make_proxy, sg):
    proxy, engine, tables, watcher, shots = slow_watcher(make_proxy, sg)
    shot = shots[0]
    stop = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
    thread.start()
    client = proxy.client()
    try:
        first = delivery(1)
        assert post(proxy, first, sign(first))[0] == 200  # the hook delivers: polls slow down
        for n, code in enumerate(("SH010-a", "SH010-b")):
            time.sleep(1.5)  # the watcher idles, its next poll a minute away
            sg.update("Shot", shot["id"], {"code": code})
            newest = sg.find_one("EventLogEntry", [], ["id"], order=[{"field_name": "id", "direction": "desc"}])
            body = delivery(newest["id"], batched=n == 1)
            sent = time.monotonic()
            assert post(proxy, body, sign(body))[0] == 200
            while client.find_one("Shot", [["id", "is", shot["id"]]], ["code"])["code"] != code:
                assert time.monotonic() - sent < 5, "the delivery did not wake the watcher"
                time.sleep(0.02)
    finally:
        stop.set()
        thread.join(10)
    with engine.connect() as conn:
        applied = conn.execute(sa.select(sa.func.count()).select_from(tables.state.applied)).scalar()
    assert applied >= 2
    # The status shows the hook; once the log moves long after its last delivery, it warns.
    from sgcache.sync import report

    assert "webhook: last delivery" in report.format_status(report.status(engine, tables))
    with engine.begin() as conn:
        state.set_meta(conn, tables.state, state.WEBHOOK_LAST, "2026-01-01T00:00:00+00:00")
    data = report.status(engine, tables)
    assert data["webhook"]["silent"] and "WARNING: no delivery" in report.format_status(data)
    with urllib.request.urlopen(proxy.url + "/_sgcache/", timeout=10) as r:
        assert "none while the event log moved" in r.read().decode()


@pytest.mark.parametrize("payload", [None, [], {"data": None}, {"data": {"event_log_entry_id": True}},
                                     {"data": {"deliveries": [{"event_log_entry_id": "12"}, "x", {}]}}])
def test_odd_payloads_name_what_they_can(payload):
    from sgcache.webhooks import event_ids

    assert event_ids(payload) == ([12] if payload and isinstance(payload, dict) and payload.get("data") and
                                  "deliveries" in payload["data"] else [])


@pytest.mark.parametrize("batched", [False, True], ids=["single", "batched"])
def test_the_stand_in_s_webhook_wakes_the_watcher_through_the_proxy(make_proxy, sg, mock_site, batched):
    from sgcache.mocksite.webhooks import WebhookSender

    proxy, engine, tables, watcher, shots = slow_watcher(make_proxy, sg)
    stop = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
    thread.start()
    wrong = WebhookSender(mock_site, proxy.url + "/_sgcache/webhook", "not-the-secret").start()
    sender = WebhookSender(mock_site, proxy.url + "/_sgcache/webhook", SECRET, batched=batched).start()
    client = proxy.client()
    try:
        time.sleep(1.0)  # the watcher idles: its next poll is half a minute away
        sent = time.monotonic()
        for shot in shots:
            sg.update("Shot", shot["id"], {"code": shot["code"] + "-new"})
        while [s["code"] for s in client.find("Shot", [], ["code"], order=[{"field_name": "id",
                                                                            "direction": "asc"}])] != \
                [s["code"] + "-new" for s in shots]:
            assert time.monotonic() - sent < 5, "the stand-in's deliveries did not wake the watcher"
            time.sleep(0.02)
    finally:
        stop.set()
        thread.join(10)
        sender.stop()
        wrong.stop()
    assert sender.delivered >= 1 and sender.failed == 0
    assert wrong.delivered == 0 and wrong.failed >= 1  # signed with another secret: refused (401)
