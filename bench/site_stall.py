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
import threading
import time
from pathlib import Path

import requests
import shotgun_api3

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import API_KEY, SCRIPT_NAME, CachedProxy, at_least, duration, percentile  # noqa: E402


def timed_find_ones(client: shotgun_api3.Shotgun, ids: list[int], count: int) -> list[float]:
    out = []
    for i in range(count):
        started = time.perf_counter()
        client.find_one("Shot", [["id", "is", ids[i % len(ids)]]], ["code"])
        out.append((time.perf_counter() - started) * 1000)
    return sorted(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stalled", type=at_least(), default=16)
    parser.add_argument("--requests", type=at_least(), default=400)
    parser.add_argument("--workers", type=at_least(), default=2)
    parser.add_argument("--threads", type=at_least(), default=8)
    parser.add_argument("--stall-seconds", type=duration(), default=60.0)
    parser.add_argument("--scale", type=at_least(), default=1)
    parser.add_argument("--json", type=Path)
    options = parser.parse_args()

    setup = CachedProxy("sgcache-bench-stall-", scale=options.scale, workers=options.workers, threads=options.threads)
    site_url, proxy_url = setup.site_url, setup.proxy_url
    try:
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
        setup.stop()


if __name__ == "__main__":
    main()
