"""Benchmark: a cached find_one's latency while the site stalls every passthrough.

    .venv/bin/python bench/site_stall.py [--stalled 16] [--requests 400] [--workers 2] [--threads 8]
        [--stall-seconds 60] [--scale 1] [--json FILE]

Starts ``sgcache mock-site`` (studio data at ``--scale``) in a process of its own, fills a scratch
SQLite cache with ``sgcache scan --full`` and starts ``sgcache web`` (gunicorn gthread,
``--workers`` x ``--threads``, ``site.max_concurrent`` left at its default). Then, with the real
shotgun_api3 client:

1. idle: ``--requests`` cached ``find_one("Shot", [["id", "is", N]], ["code"])`` calls, one client;
2. stalled: the stand-in is told to stall every request for ``--stall-seconds``, ``--stalled``
   client threads each send a passthrough read (of Tag, which the cache does not hold) and keep sending more as
   theirs end (503 "busy" answers included), and the same cached find_one calls are timed again.

It prints p50 / p95 of both runs, their ratio, and what the stalled clients got (stalled on the
site, or HTTP 503 from the bulkhead). Run by hand; the figures go in issue notes.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
import shotgun_api3

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import API_KEY, ROOT, SCRIPT_NAME, Child, child_env, free_port, percentile, wait_for_info  # noqa: E402


def timed_find_ones(client: shotgun_api3.Shotgun, ids: list[int], count: int) -> list[float]:
    out = []
    for i in range(count):
        started = time.perf_counter()
        client.find_one("Shot", [["id", "is", ids[i % len(ids)]]], ["code"])
        out.append((time.perf_counter() - started) * 1000)
    return sorted(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stalled", type=int, default=16)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--stall-seconds", type=float, default=60.0)
    parser.add_argument("--scale", type=int, default=1)
    parser.add_argument("--json", type=Path)
    options = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="sgcache-bench-stall-"))
    env = child_env()
    site_port, proxy_port = free_port(), free_port()
    site_url, proxy_url = f"http://127.0.0.1:{site_port}", f"http://127.0.0.1:{proxy_port}"
    settings = ["--database", f"sqlite:///{tmp / 'cache.sqlite'}", "--schema", str(ROOT / "schema" / "demo.yml"),
                "--set", f"site.base_url={site_url}", "--set", f"site.script_name={SCRIPT_NAME}"]
    env["SGCACHE_SITE_API_KEY"] = API_KEY
    sgcache = [sys.executable, "-m", "sgcache", "--config", "/dev/null"]
    children: list[Child] = []
    try:
        site = Child("site", [*sgcache, "mock-site", "--bind", f"127.0.0.1:{site_port}", "--data", "demo",
                              "--scale", str(options.scale), "--schema", str(ROOT / "schema" / "demo-site.yml")],
                     tmp, env)
        children.append(site)
        wait_for_info(site, site_url, 120)
        Child("migrate", [*sgcache, *settings, "schema", "migrate"], tmp, env).wait(120)
        Child("scan", [*sgcache, *settings, "scan", "--full", "--no-progress"], tmp, env).wait(600)
        web = Child("web", [*sgcache, *settings, "web", "--bind", f"127.0.0.1:{proxy_port}", "--workers",
                            str(options.workers), "--threads", str(options.threads)], tmp, env)
        children.append(web)
        wait_for_info(web, proxy_url, 60)

        direct = shotgun_api3.Shotgun(site_url, script_name=SCRIPT_NAME, api_key=API_KEY)
        ids = [s["id"] for s in direct.find("Shot", [], ["id"], limit=200)]
        client = shotgun_api3.Shotgun(proxy_url, script_name=SCRIPT_NAME, api_key=API_KEY)
        timed_find_ones(client, ids, 50)  # warm every worker's verdicts and connections
        idle = timed_find_ones(client, ids, options.requests)

        requests.post(f"{site_url}/_mock/failure", json={"mode": "stall", "seconds": 3600,
                                                         "stall_seconds": options.stall_seconds}, timeout=5)
        stop = threading.Event()
        outcomes: dict[str, int] = {"answered": 0, "busy_503": 0, "other": 0}
        lock = threading.Lock()

        def stall() -> None:
            sg = shotgun_api3.Shotgun(proxy_url, script_name=SCRIPT_NAME, api_key=API_KEY, connect=False)
            sg.config.timeout_secs = options.stall_seconds + 30
            while not stop.is_set():
                try:
                    sg.find("Tag", [], ["name"], limit=1)
                    kind = "answered"
                except shotgun_api3.ProtocolError as e:
                    kind = "busy_503" if e.errcode == 503 else "other"
                    time.sleep(0.05)
                except Exception:
                    kind = "other"
                    time.sleep(0.05)
                with lock:
                    outcomes[kind] += 1

        threads = [threading.Thread(target=stall, daemon=True) for _ in range(options.stalled)]
        for t in threads:
            t.start()
        time.sleep(2.0)  # every stalled client is waiting on the site (or turned away)
        stalled = timed_find_ones(client, ids, options.requests)
        stop.set()
        requests.post(f"{site_url}/_mock/failure", json={"mode": "off"}, timeout=5)

        def figures(times: list[float]) -> dict[str, float]:
            return {"p50_ms": round(percentile(times, 50), 2), "p95_ms": round(percentile(times, 95), 2)}

        result = {"idle": figures(idle), "stalled": figures(stalled), "stalled_clients": options.stalled,
                  "workers": options.workers, "threads": options.threads, "stalled_client_outcomes": outcomes}
        result["p95_ratio"] = round(result["stalled"]["p95_ms"] / result["idle"]["p95_ms"], 2)
        print(f"cached find_one, idle:    p50 {result['idle']['p50_ms']} ms, p95 {result['idle']['p95_ms']} ms")
        print(f"cached find_one, {options.stalled} passthroughs stalled on the site: p50 "
              f"{result['stalled']['p50_ms']} ms, p95 {result['stalled']['p95_ms']} ms "
              f"(p95 ratio {result['p95_ratio']})")
        print(f"stalled clients meanwhile: {outcomes}")
        if options.json:
            options.json.write_text(json.dumps(result, indent=2))
    finally:
        for child in reversed(children):
            child.stop(grace=10)


if __name__ == "__main__":
    main()
