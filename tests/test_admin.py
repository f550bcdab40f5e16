"""The proxy's own routes: /_sgcache/health, /_sgcache/status, /_sgcache/metrics and the status page.

The stand-in and the proxy run as real servers; requests come from the real client and from
``requests``. The status page is also opened in a real headless Chromium (see the last test).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import requests
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from sgcache.store import samples
from sgcache.sync.remote import Remote
from sgcache.sync.scanner import Scanner
from sgcache.sync.watcher import Watcher


@pytest.fixture
def world(sg):
    project = sg.create("Project", {"name": "Alpha"})
    seq = sg.create("Sequence", {"code": "SQ01", "project": project})
    shots = [sg.create("Shot", {"code": f"SH{i:03d}", "project": project, "sg_sequence": seq}) for i in range(5)]
    return {"project": project, "sequence": seq, "shots": shots}


def import_all(proxy) -> None:
    service = proxy.service
    Scanner(service.cache.engine, service.cache.tables, Remote(proxy.config.site), proxy.config.scanner).full()


def watch_once(proxy) -> Watcher:
    service = proxy.service
    watcher = Watcher(service.cache.engine, service.cache.tables, Remote(proxy.config.site), proxy.config.watcher)
    watcher.poll_once()
    return watcher


def get(proxy, path: str) -> requests.Response:
    return requests.get(proxy.url + path, timeout=10)


def metric_samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


# --- health -----------------------------------------------------------------------------------------


def test_health_is_ok_when_the_database_and_the_site_are(proxy):
    r = get(proxy, "/_sgcache/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "database": "ok", "site": "ok"}


def test_health_is_degraded_but_serving_without_the_database(make_proxy, tmp_path):
    proxy = make_proxy(database_url=f"sqlite:///{tmp_path / 'missing' / 'nowhere.sqlite'}", migrated=False)
    r = get(proxy, "/_sgcache/health")
    assert r.status_code == 200
    assert r.json() == {"status": "degraded", "database": "down", "site": "ok"}
    detail = get(proxy, "/_sgcache/status").json()["health"]  # the reason is for the admin routes only
    assert detail["reason"] == "the cache database is down: every request goes to the site"
    assert detail["database_error"] == "no such table: _sgcache_meta"  # never migrated


def test_health_is_degraded_but_serving_without_the_site(make_proxy, world):
    proxy = make_proxy(site_url="http://127.0.0.1:9", site__breaker_failures=1, site__connect_timeout=0.5)
    assert "is unavailable" in read_shots(proxy)["message"] or "could not reach" in read_shots(proxy)["message"]
    r = get(proxy, "/_sgcache/health")
    assert r.status_code == 200
    assert r.json() == {"status": "degraded", "database": "ok", "site": "down"}
    detail = get(proxy, "/_sgcache/status").json()["health"]
    assert detail["reason"] == "the site is unavailable: cached reads are answered, everything else fails"
    assert "refused" in detail["site_error"].lower()


def test_health_is_503_when_neither_can_serve_and_the_status_gives_the_reason(make_proxy, tmp_path):
    proxy = make_proxy(site_url="http://127.0.0.1:9", site__breaker_failures=1, site__connect_timeout=0.5,
                       database_url=f"sqlite:///{tmp_path / 'missing' / 'nowhere.sqlite'}", migrated=False)
    assert read_shots(proxy)["exception"] is True
    r = get(proxy, "/_sgcache/health")
    assert r.status_code == 503
    assert r.json() == {"status": "down", "database": "down", "site": "down"}
    assert get(proxy, "/_sgcache/status").json()["health"]["reason"] == ("both the cache database and the site "
                                                                        "are unavailable")


def read_shots(proxy) -> dict:
    """A read sent with requests (the client itself would call info first, and fail there)."""
    body = {"method_name": "read", "params": [{"script_name": "sgcache", "script_key": "sgcache-demo-key"},
                                              {"type": "Shot", "filters": {"logical_operator": "and",
                                                                           "conditions": []},
                                               "return_fields": ["code"]}]}
    return requests.post(proxy.url + "/api3/json", json=body, timeout=10).json()


# --- status -----------------------------------------------------------------------------------------


def test_status_reports_sync_state_counts_reasons_and_hit_ratio(make_proxy, world, sg):
    proxy = make_proxy()
    import_all(proxy)
    watch_once(proxy)
    client = proxy.client()
    for _ in range(3):
        client.find("Shot", [["sg_sequence", "is", world["sequence"]]], ["code"])
    client.find("Shot", [], ["code", "no_such_field"])  # not cached: passes through
    client.find("Note", [], ["subject"])  # an uncached type: passes through
    r = get(proxy, "/_sgcache/status")
    assert r.status_code == 200
    data = r.json()
    assert data["health"]["status"] == "ok"
    assert data["version"]
    proxy_counts = data["proxy"]
    assert proxy_counts["requests"]["read"] == {"cache": 3, "passthrough": 2}
    assert proxy_counts["requests"]["info"] == {"passthrough": 1}  # the client's first call
    assert proxy_counts["passthrough_reasons"] == {"uncached_field": 1, "uncached_type": 1}
    assert proxy_counts["hit_ratio"] == 0.6
    assert (proxy_counts["answered_from_cache"], proxy_counts["answerable_requests"]) == (3, 5)
    sync = data["sync"]
    assert sync["types"]["Shot"]["active"] == 5
    assert sync["types"]["Sequence"]["active"] == 1
    assert sync["types"]["Shot"]["full_scan_at"] is not None
    newest = Remote(proxy.config.site).newest_event_id()
    assert sync["cursor"]["max_applied_id"] == newest
    lag = sync["event_lag"]
    assert (lag["applied_id"], lag["site_newest_id"], lag["lag_events"], lag["lag_seconds"]) == (newest, newest, 0,
                                                                                                  0.0)
    assert lag["age_seconds"] < 30


def test_event_lag_counts_the_events_a_full_batch_leaves_waiting(make_proxy, world, sg):
    proxy = make_proxy(watcher__batch_size=2)
    import_all(proxy)
    for i in range(5):
        sg.update("Shot", world["shots"][i]["id"], {"description": f"changed {i}"})
    watcher = watch_once(proxy)  # applies 2 of the 5 update events and samples the lag
    assert watcher.applied == 2
    lag = get(proxy, "/_sgcache/status").json()["sync"]["event_lag"]
    newest = Remote(proxy.config.site).newest_event_id()
    assert lag["site_newest_id"] == newest
    assert lag["lag_events"] == newest - lag["applied_id"] >= 3
    assert lag["lag_seconds"] >= 0


def test_sgcache_status_prints_the_event_lag(make_proxy, world, tmp_path):
    from click.testing import CliRunner

    from sgcache.cli import cli

    proxy = make_proxy()
    import_all(proxy)
    watch_once(proxy)
    (tmp_path / "c.yml").write_text("")
    result = CliRunner().invoke(cli, ["--config", str(tmp_path / "c.yml"), "--database",
                                      proxy.config.database.url, "--schema", str(proxy.config.schema.path),
                                      "status"])
    assert result.exit_code == 0, result.output
    newest = Remote(proxy.config.site).newest_event_id()
    assert f"event lag: up to date (site newest event {newest}, watcher reported" in result.output


def test_status_without_the_database_says_so_and_still_counts(make_proxy, tmp_path, world):
    proxy = make_proxy(database_url=f"sqlite:///{tmp_path / 'missing' / 'nowhere.sqlite'}", migrated=False)
    proxy.client().find("Shot", [], ["code"])
    data = get(proxy, "/_sgcache/status").json()
    assert data["sync"] is None
    assert data["health"]["database"] == "down"
    assert data["proxy"]["passthrough_reasons"] == {"database_down": 1}


def test_latency_samples_from_requests_make_the_status_chart(make_proxy, world):
    proxy = make_proxy(admin__sample_interval=0.2)
    import_all(proxy)
    client = proxy.client()
    for _ in range(4):
        client.find("Shot", [], ["code"])
    deadline = time.monotonic() + 10
    while True:
        chart = get(proxy, "/_sgcache/status").json()["charts"]["latency"]
        if sum(p["requests"] for p in chart) >= 5:  # info, then 4 reads; status requests are not counted
            break
        assert time.monotonic() < deadline, chart
        time.sleep(0.2)
    assert sum(p["requests"] for p in chart) == 5
    assert sum(p["outcomes"].get("cache", 0) for p in chart) == 4
    assert all(0 < p["p50_ms"] <= p["p95_ms"] for p in chart)


def test_old_samples_are_deleted_when_new_ones_are_saved(engine, tables):
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    st = tables.state
    with engine.begin() as conn:
        samples.save(conn, st, "latency", {"n": 1}, at=now - dt.timedelta(hours=3))
        samples.save(conn, st, "event_lag", {"n": 2}, at=now - dt.timedelta(hours=3))
        samples.save(conn, st, "latency", {"n": 3}, at=now)
    with engine.connect() as conn:
        kept = conn.execute(sa.select(st.samples.c.kind, st.samples.c.data).order_by(st.samples.c.id)).all()
    assert kept == [("event_lag", '{"n":2}'), ("latency", '{"n":3}')]


def test_latency_histogram_quantiles_are_bucket_bounds_within_a_quarter():
    h = samples.LatencyHistogram()
    for ms in [1.0] * 50 + [10.0] * 45 + [100.0] * 5:
        h.add(ms, "cache")
    assert h.count == 100
    assert 1.0 <= h.quantile(0.5) < 1.25
    assert 10.0 <= h.quantile(0.95) < 12.5
    assert 100.0 <= h.quantile(0.99) < 125.0
    other = samples.LatencyHistogram.from_data(h.to_data())
    other.merge(h)
    assert other.count == 200 and other.outcomes == {"cache": 200}


# --- metrics ------------------------------------------------------------------------------------------


def test_metrics_count_requests_reasons_and_read_the_database(make_proxy, world):
    proxy = make_proxy()
    import_all(proxy)
    watch_once(proxy)
    client = proxy.client()
    client.find("Shot", [], ["code"])
    client.find("Shot", [], ["code"])
    client.find("Note", [], ["subject"])
    client.create("Sequence", {"code": "SQ02", "project": world["project"]})
    r = get(proxy, "/_sgcache/metrics")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    m = metric_samples(r.text)
    assert m[("sgcache_requests_total", (("method", "read"), ("outcome", "cache")))] == 2
    assert m[("sgcache_requests_total", (("method", "read"), ("outcome", "passthrough")))] == 1
    assert m[("sgcache_requests_total", (("method", "create"), ("outcome", "passthrough")))] == 1
    assert m[("sgcache_passthrough_total", (("reason", "uncached_type"),))] == 1
    assert m[("sgcache_read_plans_total", (("result", "compiled"),))] == 1  # the second find's was kept
    assert m[("sgcache_read_plans_total", (("result", "kept"),))] == 1
    assert m[("sgcache_request_duration_seconds_count", (("outcome", "cache"),))] == 2
    assert m[("sgcache_database_up", ())] == 1
    assert m[("sgcache_site_breaker_open", ())] == 0
    assert m[("sgcache_event_lag_seconds", ())] == 0
    assert m[("sgcache_event_lag_events", ())] == 0
    assert m[("sgcache_dead_letters", ())] == 0
    assert m[("sgcache_backfill_fields", (("entity_type", "Shot"),))] == 0
    assert m[("sgcache_full_scan_seconds", (("entity_type", "Shot"),))] > 0


def test_metrics_count_site_failures_and_the_open_breaker(make_proxy):
    proxy = make_proxy(site_url="http://127.0.0.1:9", site__breaker_failures=2, site__connect_timeout=0.5)
    assert read_shots(proxy)["exception"] is True
    m = metric_samples(get(proxy, "/_sgcache/metrics").text)
    assert m[("sgcache_upstream_errors_total", (("kind", "connection"),))] == 2  # the read and its one resend
    assert m[("sgcache_site_breaker_open", ())] == 1


def test_an_unknown_method_name_is_counted_as_other(proxy):
    r = requests.post(proxy.url + "/api3/json", json={"method_name": "made_up_method_x1", "params": [
        {"script_name": "sgcache", "script_key": "sgcache-demo-key"}]}, timeout=10)
    assert r.status_code == 200
    m = metric_samples(get(proxy, "/_sgcache/metrics").text)
    assert m[("sgcache_requests_total", (("method", "other"), ("outcome", "fault")))] == 1
    assert not any("made_up_method_x1" in str(key) for key in m)


# --- access ----------------------------------------------------------------------------------------------


def test_admin_allow_restricts_everything_but_health(make_proxy):
    proxy = make_proxy(admin__allow="10.0.0.0/8")
    for path in ("/_sgcache/status", "/_sgcache/metrics", "/_sgcache/"):
        r = get(proxy, path)
        assert r.status_code == 403, path
        assert "admin.allow" in r.text
    assert get(proxy, "/_sgcache/health").status_code == 200


def test_admin_allow_lets_listed_addresses_in(make_proxy):
    proxy = make_proxy(admin__allow="10.0.0.0/8, 127.0.0.1")
    assert get(proxy, "/_sgcache/status").status_code == 200


def test_a_bad_admin_network_is_a_config_error(tmp_path):
    from sgcache.config import load_config
    from sgcache.errors import ConfigError

    (tmp_path / "c.yml").write_text("admin:\n  allow: [10.0.0.0/8, not-a-network]\n")
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "c.yml", env={})
    assert "admin.allow: expected networks such as 10.0.0.0/8 or 127.0.0.1, got 'not-a-network'" in str(e.value)


# --- the page -------------------------------------------------------------------------------------------


def test_status_page_shows_health_types_requests_and_charts(make_proxy, world):
    proxy = make_proxy()
    import_all(proxy)
    watch_once(proxy)
    proxy.client().find("Shot", [], ["code"])
    r = get(proxy, "/_sgcache/")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    page = r.text
    assert '<span class="badge ok" id="health">ok</span>' in page
    assert "<td>Shot</td><td class=\"n\">5</td>" in page
    assert page.count("<svg") == 3
    assert "request latency p95 (ms)" in page and "event lag (s)" in page


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           "--hide-scrollbars", "--no-first-run", "--user-data-dir=" + os.environ["CHROMIUM_PROFILE"],
                           *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium); "
                    "the status page is checked in a real browser only where it is")
def test_status_page_in_a_real_browser(make_proxy, world, tmp_path, monkeypatch):
    from PIL import Image

    proxy = make_proxy(admin__sample_interval=0.2)
    import_all(proxy)
    watch_once(proxy)
    client = proxy.client()
    for _ in range(5):
        client.find("Shot", [], ["code"])
    client.find("Note", [], ["subject"])
    deadline = time.monotonic() + 10
    while not get(proxy, "/_sgcache/status").json()["charts"]["latency"]:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    monkeypatch.setenv("CHROMIUM_PROFILE", str(tmp_path / "profile"))
    url = proxy.url + "/_sgcache/"

    # What the browser built from the page: the numbers a reader sees.
    dom = _chromium("--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert 'id="health">ok</span>' in html
    assert 'id="hit-ratio">83.3 %</td>' in html  # 5 of 6 reads from the cache
    assert "<td>uncached_type</td><td class=\"n\">1</td>" in html
    assert 'id="lag">up to date</td>' in html
    assert html.count("<polyline") + html.count("<circle") >= 2  # p50 and p95 have data; no lag change needed

    # What it drew: the green health badge and the latency lines are on the screen.
    shot = tmp_path / "status.png"
    result = _chromium(f"--screenshot={shot}", "--window-size=1280,1400", url)
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 1400)
    colors = {color for _count, color in image.getcolors(maxcolors=1 << 20)}

    def near(rgb: tuple[int, int, int]) -> bool:
        return any(all(abs(a - b) <= 24 for a, b in zip(rgb, c, strict=True)) for c in colors)

    assert near((0x2e, 0x85, 0x40)), "the green 'ok' badge is not on the screen"
    assert near((0x2b, 0x7b, 0xb9)), "the p50 latency line is not on the screen"
    assert near((0xd9, 0x82, 0x2b)), "the p95 latency line is not on the screen"
    dark = sum(count for count, color in image.getcolors(maxcolors=1 << 20) if sum(color) < 200)
    assert dark > 2000, "hardly any text was drawn"


# --- gunicorn: metrics add up over workers -----------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_metrics_add_up_over_gunicorn_workers(mock_server, world, tmp_path, proxy_schema_path):
    import shotgun_api3
    from conftest import SCRIPT_AUTH

    from sgcache.schema import load
    from sgcache.store.db import create_engine
    from sgcache.store.migrate import migrate
    from sgcache.store.tables import Tables

    db_url = f"sqlite:///{tmp_path / 'cache.sqlite'}"
    engine = create_engine(db_url)
    migrate(engine, Tables(load(proxy_schema_path)))
    engine.dispose()
    port = _free_port()
    (tmp_path / "none.yml").write_text("")
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env["SGCACHE_SITE_API_KEY"] = "sgcache-demo-key"
    command = [sys.executable, "-m", "sgcache", "--config", str(tmp_path / "none.yml"), "--database", db_url,
               "--schema", str(proxy_schema_path), "--set", f"site.base_url={mock_server.url}",
               "--set", "site.script_name=sgcache", "-q", "web", "--bind", f"127.0.0.1:{port}", "--workers", "2",
               "--threads", "2"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/_sgcache/health", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, "sgcache web did not start"
            time.sleep(0.1)
        # Separate connections, so both workers get some of them.
        for _ in range(12):
            shotgun_api3.Shotgun(f"http://127.0.0.1:{port}", **SCRIPT_AUTH).find("Sequence", [], ["code"])
        totals = []
        for _ in range(4):  # each scrape may be answered by either worker: all give the sum
            text = requests.get(f"http://127.0.0.1:{port}/_sgcache/metrics", timeout=10).text
            m = metric_samples(text)
            totals.append(m[("sgcache_requests_total", (("method", "read"), ("outcome", "passthrough")))])
        assert totals == [12, 12, 12, 12]
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert process.returncode == 0
