"""Benchmark: what one huge request costs the proxy, with a bogus key and with a good one.

    .venv/bin/python bench/huge_request.py [--links 20000] [--repeats 20] [--scale 1] [--json FILE]

Starts ``sgcache mock-site`` (studio data at ``--scale``), fills a scratch SQLite cache with
``sgcache scan --full`` and starts ``sgcache web`` with one gunicorn worker (so its memory can
be read from /proc). Then it sends ``find("Shot", [["sg_sequence", "in", <--links links>]])``:

1. ``--repeats`` times with a bogus script key: the time of each answer (an authentication
   fault) and the worker's resident memory before and after;
2. ``--repeats`` times with the right key: the time, where the answer came from
   (``X-Sgcache-Outcome``), and whether it equals the site's own answer;
3. then an ordinary cached ``find_one`` a hundred times: its outcome and p50.

Run by hand; the figures go in issue notes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import requests
import shotgun_api3

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import API_KEY, SCRIPT_NAME, CachedProxy, at_least, percentile  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def worker_pid(master: int) -> int:
    children = [int(p) for task in Path(f"/proc/{master}/task").iterdir()
                for p in (task / "children").read_text().split()]
    if len(children) != 1:
        raise RuntimeError(f"expected one gunicorn worker under {master}, found {children}")
    return children[0]


def post(url: str, body: dict) -> tuple[float, int, str, dict]:
    started = time.perf_counter()
    reply = requests.post(f"{url}/api3/json", json=body, timeout=120)
    elapsed = (time.perf_counter() - started) * 1000
    return elapsed, reply.status_code, reply.headers.get("X-Sgcache-Outcome", "-"), reply.json()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--links", type=at_least(), default=20_000)
    parser.add_argument("--repeats", type=at_least(), default=20)
    parser.add_argument("--scale", type=at_least(), default=1)
    parser.add_argument("--json", type=Path)
    options = parser.parse_args()

    setup = CachedProxy("sgcache-bench-huge-", scale=options.scale, workers=1, threads=4)
    site_url, proxy_url = setup.site_url, setup.proxy_url
    try:
        worker = worker_pid(setup.web.proc.pid)
        direct = shotgun_api3.Shotgun(site_url, script_name=SCRIPT_NAME, api_key=API_KEY)
        sequences = [{"type": "Sequence", "id": s["id"]} for s in direct.find("Sequence", [], ["id"])]
        links = (sequences + [{"type": "Sequence", "id": 100_000 + i} for i in range(options.links)])[:options.links]
        filters = {"logical_operator": "and", "conditions": [
            {"path": "sg_sequence", "relation": "in", "values": links}]}
        read = {"type": "Shot", "return_fields": ["code", "sg_sequence"], "filters": filters,
                "return_only": "active", "paging": {"current_page": 1, "entities_per_page": 500}}

        def body(key: str) -> dict:
            return {"method_name": "read", "params": [{"script_name": SCRIPT_NAME, "script_key": key}, read]}

        client = shotgun_api3.Shotgun(proxy_url, script_name=SCRIPT_NAME, api_key=API_KEY)
        shot = direct.find_one("Shot", [], ["id"])["id"]
        for _ in range(20):  # warm the worker
            client.find_one("Shot", [["id", "is", shot]], ["code"])
        rss_before = rss_mb(worker)

        bogus = []
        for _ in range(options.repeats):
            elapsed, status, outcome, answer = post(proxy_url, body("not-the-key"))
            assert answer.get("exception") and answer.get("error_code") == 102, answer
            bogus.append(elapsed)
        rss_after_bogus = rss_mb(worker)

        expected = direct.find("Shot", [["sg_sequence", "in", links]], ["code", "sg_sequence"])
        good, outcomes, equal = [], {}, True
        for _ in range(options.repeats):
            elapsed, status, outcome, answer = post(proxy_url, body(API_KEY))
            good.append(elapsed)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            got = sorted(answer["results"]["entities"], key=lambda e: e["id"])
            equal &= got == sorted(expected, key=lambda e: e["id"])
        rss_after_good = rss_mb(worker)

        after = []
        after_outcomes: dict[str, int] = {}
        for _ in range(100):
            started = time.perf_counter()
            reply = requests.post(f"{proxy_url}/api3/json", json={"method_name": "read", "params": [
                {"script_name": SCRIPT_NAME, "script_key": API_KEY},
                {"type": "Shot", "return_fields": ["code"], "return_only": "active",
                 "filters": {"logical_operator": "and", "conditions": [
                     {"path": "id", "relation": "is", "values": [shot]}]},
                 "paging": {"current_page": 1, "entities_per_page": 1}}]}, timeout=30)
            after.append((time.perf_counter() - started) * 1000)
            outcome = reply.headers.get("X-Sgcache-Outcome", "-")
            after_outcomes[outcome] = after_outcomes.get(outcome, 0) + 1

        bogus.sort()
        good.sort()
        after.sort()
        result = {
            "links": options.links, "body_bytes": len(json.dumps(body("x"))),
            "bogus_key": {"p50_ms": round(percentile(bogus, 50), 1), "max_ms": round(bogus[-1], 1)},
            "good_key": {"p50_ms": round(percentile(good, 50), 1), "max_ms": round(good[-1], 1),
                         "outcomes": outcomes, "equal_to_site": equal, "entities": len(expected)},
            "worker_rss_mb": {"before": round(rss_before, 1), "after_bogus": round(rss_after_bogus, 1),
                              "after_good": round(rss_after_good, 1)},
            "next_find_one": {"p50_ms": round(percentile(after, 50), 2), "outcomes": after_outcomes},
        }
        print(f"{options.links} links, body {result['body_bytes'] / 1024:.0f} KiB")
        print(f"bogus key: p50 {result['bogus_key']['p50_ms']} ms, max {result['bogus_key']['max_ms']} ms "
              f"({options.repeats} requests)")
        print(f"good key:  p50 {result['good_key']['p50_ms']} ms, max {result['good_key']['max_ms']} ms, "
              f"answered by {outcomes}, equal to the site's answer: {equal}")
        print(f"worker RSS: {result['worker_rss_mb']['before']} MB before, {result['worker_rss_mb']['after_bogus']} "
              f"MB after the bogus ones, {result['worker_rss_mb']['after_good']} MB after the good ones")
        print(f"next find_one: p50 {result['next_find_one']['p50_ms']} ms, answered by {after_outcomes}")
        if options.json:
            options.json.write_text(json.dumps(result, indent=2))
    finally:
        setup.stop()


if __name__ == "__main__":
    main()
