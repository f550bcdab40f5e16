"""Benchmark: a day of pipeline reads, sent to the stand-in site and through sgcache, compared.

    .venv/bin/python bench/workload.py [--scale 5] [--calls 1000] [--seed 1] [--json FILE]

Starts the stand-in site with the demo studio at ``--scale``, fills a scratch SQLite cache of
the shipped schema (``schema/demo.yml``, the one ``make demo`` uses) with ``sgcache scan
--full`` and starts ``sgcache web`` in front of it (bench/benchlib.py ``CachedProxy``). Then it
draws ``--calls`` calls of the kinds below at random (seeded), with ids, logins and names taken
from the studio itself, and sends each one straight to the site and through sgcache with the
real shotgun_api3 client (as sgcache's demo script). Every pair of answers is compared exactly;
a difference is a correctness bug and is printed in full.

Kinds are run in blocks, one kind at a time, so that sgcache's own counters
(``/_sgcache/metrics``: ``sgcache_requests_total{method,outcome}`` and
``sgcache_passthrough_total{reason}``) say how many of each kind's calls were answered from
the cache and, for the others, why they passed through. The table gives per kind: calls, the
share answered from the cache, p50 latency straight to the site and through sgcache, answers
that differed, and the most frequent pass reason; then the same over all.

``--latency-ms`` gives the stand-in a hosted site's answer time (0 by default: the latencies
then compare the two programs, not the network). Run by hand; figures go in issue notes.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import signal
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import shotgun_api3
from benchlib import CachedProxy, connect, on_sigterm, percentile

Call = Callable[[shotgun_api3.Shotgun], Any]


@dataclass
class Pools:
    """Real values of the studio to draw calls from."""

    projects: list[dict]
    shots: list[dict]
    sequences: list[dict]
    assets: list[dict]
    users: list[dict]
    playlists: list[dict]
    steps: list[dict]
    versions: list[dict]

    @classmethod
    def read(cls, sg: shotgun_api3.Shotgun) -> Pools:
        return cls(projects=sg.find("Project", [], ["name"]),
                   shots=sg.find("Shot", [], ["code", "project", "sg_sequence"]),
                   sequences=sg.find("Sequence", [], ["code", "project"]),
                   assets=sg.find("Asset", [], ["code", "project", "sg_asset_type"]),
                   users=sg.find("HumanUser", [], ["login", "name"]),
                   playlists=sg.find("Playlist", [], ["code", "project"]),
                   steps=sg.find("Step", [], ["code"]),
                   versions=sg.find("Version", [], ["code", "entity", "project"]))


def link(entity: dict) -> dict:
    return {"type": entity["type"], "id": entity["id"]}


def kinds(p: Pools, rnd: random.Random) -> dict[str, Callable[[], Call]]:
    """Kind of call -> a maker of one call of that kind, with values drawn from the studio."""
    def pick(items: list[dict]) -> dict:
        return rnd.choice(items)

    def artist_tasks() -> Call:
        user = link(pick(p.users))
        return lambda sg: sg.find("Task", [["task_assignees", "is", user], ["sg_status_list", "is_not", "fin"]],
                                  ["content", "entity", "step", "sg_status_list", "due_date", "project"],
                                  order=[{"field_name": "due_date", "direction": "asc"}])

    def shot_versions() -> Call:
        shot = link(pick(p.shots))
        return lambda sg: sg.find("Version", [["entity", "is", shot]], ["code", "user", "sg_status_list",
                                                                          "created_at", "sg_task"],
                                  order=[{"field_name": "created_at", "direction": "desc"}])

    def latest_version() -> Call:
        shot = link(pick(p.shots))
        return lambda sg: sg.find_one("Version", [["entity", "is", shot]], ["code", "sg_path_to_movie", "user"],
                                      order=[{"field_name": "created_at", "direction": "desc"}])

    def shot_publishes() -> Call:
        shot = link(pick(p.shots))
        return lambda sg: sg.find("PublishedFile", [["entity", "is", shot]],
                                  ["code", "path", "version_number", "published_file_type", "created_at"],
                                  order=[{"field_name": "version_number", "direction": "desc"}])

    def playlist() -> Call:
        pl = pick(p.playlists) if p.playlists else None
        if pl is None:
            return lambda sg: sg.find("Playlist", [], ["code"])
        return lambda sg: sg.find_one("Playlist", [["id", "is", pl["id"]]], ["code", "versions", "sg_date_and_time"])

    def playlist_versions() -> Call:
        pl = link(pick(p.playlists)) if p.playlists else None
        return lambda sg: sg.find("Version", [["playlists", "is", pl]], ["code", "entity", "sg_status_list"])

    def notes_to_someone() -> Call:
        user = link(pick(p.users))
        return lambda sg: sg.find("Note", [["addressings_to", "is", user]],
                                  ["subject", "content", "note_links", "user", "created_at"],
                                  order=[{"field_name": "created_at", "direction": "desc"}], limit=20)

    def notes_on_shot() -> Call:
        shot = link(pick(p.shots))
        return lambda sg: sg.find("Note", [["note_links", "is", shot]], ["subject", "user", "sg_status_list"])

    def cut_data() -> Call:
        seq = link(pick(p.sequences))
        return lambda sg: sg.find("Shot", [["sg_sequence", "is", seq]],
                                  ["code", "sg_cut_in", "sg_cut_out", "sg_cut_duration", "sg_cut_order",
                                   "sg_sequence.Sequence.code"],
                                  order=[{"field_name": "sg_cut_order", "direction": "asc"}])

    def user_by_login() -> Call:
        login = pick(p.users)["login"]
        return lambda sg: sg.find_one("HumanUser", [["login", "is", login]], ["name", "sg_status_list", "login"])

    def shot_by_name() -> Call:
        shot = pick(p.shots)
        return lambda sg: sg.find_one("Shot", [["project", "is", link(shot["project"])], ["code", "is", shot["code"]]],
                                      ["code", "sg_status_list", "sg_sequence", "assets", "description"])

    def asset_by_name() -> Call:
        asset = pick(p.assets)
        return lambda sg: sg.find_one("Asset", [["code", "is", asset["code"]]],
                                      ["code", "sg_asset_type", "sg_status_list", "shots", "tasks"])

    def assets_by_type() -> Call:
        asset = pick(p.assets)
        return lambda sg: sg.find("Asset", [["project", "is", link(asset["project"])],
                                            ["sg_asset_type", "in", [asset["sg_asset_type"], "Prop"]]],
                                  ["code", "sg_asset_type", "sg_status_list"])

    def step_tasks() -> Call:
        step, project = pick(p.steps), link(pick(p.projects))
        return lambda sg: sg.find("Task", [["project", "is", project], ["step.Step.code", "is", step["code"]]],
                                  ["content", "entity", "task_assignees", "sg_status_list"], limit=100)

    def status_summary() -> Call:
        project = link(pick(p.projects))
        return lambda sg: sg.summarize("Shot", [["project", "is", project]], [{"field": "id", "type": "count"}],
                                       grouping=[{"field": "sg_status_list", "type": "exact", "direction": "asc"}])

    def versions_per_shot() -> Call:
        project = link(pick(p.projects))
        return lambda sg: sg.summarize("Version", [["project", "is", project]],
                                       [{"field": "id", "type": "record_count"}],
                                       grouping=[{"field": "entity", "type": "exact", "direction": "asc"}])

    def schema_fields() -> Call:
        entity_type = rnd.choice(["Shot", "Asset", "Task", "Version", "Note"])
        return lambda sg: sg.schema_field_read(entity_type)

    def schema_entities() -> Call:
        return lambda sg: sg.schema_entity_read()

    def projects() -> Call:
        return lambda sg: sg.find("Project", [["sg_status", "is_not", "Archive"]], ["name", "sg_status", "sg_type"])

    def user_by_id() -> Call:
        user = pick(p.users)["id"]
        return lambda sg: sg.find_one("HumanUser", [["id", "is", user]], ["name", "login", "created_at"])

    def version_by_id() -> Call:
        version = pick(p.versions)["id"]
        return lambda sg: sg.find_one("Version", [["id", "is", version]],
                                      ["code", "entity", "sg_task", "user", "sg_path_to_frames", "playlists",
                                       "entity.Shot.sg_sequence"])

    return {f.__name__: f for f in (artist_tasks, shot_versions, latest_version, shot_publishes, playlist,
                                    playlist_versions, notes_to_someone, notes_on_shot, cut_data, user_by_login,
                                    shot_by_name, asset_by_name, assets_by_type, step_tasks, status_summary,
                                    versions_per_shot, schema_fields, schema_entities, projects, user_by_id,
                                    version_by_id)}


# --- sgcache's counters ------------------------------------------------------------------------------

_SAMPLE = re.compile(r'^(sgcache_requests_total|sgcache_passthrough_total)\{([^}]*)\} ([0-9.e+]+)$')


def counters(proxy_url: str) -> Counter:
    """(metric, labels) -> value, from /_sgcache/metrics."""
    with urllib.request.urlopen(proxy_url + "/_sgcache/metrics", timeout=10) as r:
        text = r.read().decode()
    out: Counter = Counter()
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m:
            out[(m[1], m[2])] += float(m[3])
    return out


def _label(labels: str, name: str) -> str:
    m = re.search(rf'{name}="([^"]*)"', labels)
    return m[1] if m else ""


@dataclass
class KindResult:
    kind: str
    calls: int
    from_cache: int = 0
    requests: int = 0
    site_ms: list[float] = field(default_factory=list)
    sgcache_ms: list[float] = field(default_factory=list)
    mismatches: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    first_difference: str = ""

    def row(self) -> dict:
        return {"kind": self.kind, "calls": self.calls, "from_cache": self.from_cache, "requests": self.requests,
                "share": self.from_cache / self.requests if self.requests else 0.0,
                "site_p50_ms": percentile(sorted(self.site_ms), 50),
                "sgcache_p50_ms": percentile(sorted(self.sgcache_ms), 50), "mismatches": self.mismatches,
                "reasons": self.reasons, "first_difference": self.first_difference}


def outcome(sg: shotgun_api3.Shotgun, call: Call) -> tuple[tuple[str, Any], float]:
    started = time.perf_counter()
    try:
        result = ("ok", call(sg))
    except shotgun_api3.Fault as e:
        result = ("fault", str(e))
    return result, (time.perf_counter() - started) * 1000


def run_kind(kind: str, make: Callable[[], Call], calls: int, site: shotgun_api3.Shotgun,
             proxy: shotgun_api3.Shotgun, proxy_url: str) -> KindResult:
    out = KindResult(kind, calls)
    before = counters(proxy_url)
    for _ in range(calls):
        call = make()
        expected, site_ms = outcome(site, call)
        actual, sgcache_ms = outcome(proxy, call)
        out.site_ms.append(site_ms)
        out.sgcache_ms.append(sgcache_ms)
        if actual != expected:
            out.mismatches += 1
            if not out.first_difference:
                out.first_difference = f"site {expected!r:.400}\nsgcache {actual!r:.400}"
    after = counters(proxy_url)
    for (metric, labels), value in (after - before).items():
        if metric == "sgcache_requests_total":
            out.requests += int(value)
            if _label(labels, "outcome") == "cache":
                out.from_cache += int(value)
        else:
            out.reasons[_label(labels, "reason")] = int(value)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=int, default=5)
    parser.add_argument("--calls", type=int, default=1000, help="calls in all, spread over the kinds")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="the stand-in's answer time")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="an sgcache setting for the import and the proxy (repeatable)")
    parser.add_argument("--json", help="also write the results as JSON to this file")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, on_sigterm)
    rnd = random.Random(args.seed)
    print(f"starting the stand-in (scale {args.scale}) and sgcache, importing...", file=sys.stderr)
    started = time.monotonic()
    cached = CachedProxy("sgcache-workload-", scale=args.scale, settings=tuple(args.settings),
                         latency_ms=args.latency_ms)
    try:
        print(f"ready in {time.monotonic() - started:.0f} s", file=sys.stderr)
        site, proxy = connect(cached.site_url, 30), connect(cached.proxy_url, 30)
        pools = Pools.read(site)
        makers = kinds(pools, rnd)
        # Calls drawn at random, then run kind by kind (the counters are per kind).
        drawn = Counter(rnd.choice(sorted(makers)) for _ in range(args.calls))
        results = [run_kind(kind, makers[kind], drawn[kind], site, proxy, cached.proxy_url)
                   for kind in sorted(drawn)]
    finally:
        cached.stop()
    rows = [r.row() for r in results]
    total_requests = sum(r["requests"] for r in rows)
    total_cache = sum(r["from_cache"] for r in rows)
    all_site = sorted(ms for r in results for ms in r.site_ms)
    all_sgcache = sorted(ms for r in results for ms in r.sgcache_ms)
    reasons: Counter = Counter()
    for r in results:
        reasons.update(r.reasons)
    print(f"\n{'KIND':<20}{'CALLS':>6}{'CACHE':>8}{'SITE P50':>10}{'SGC P50':>9}{'DIFF':>6}  TOP PASS REASON")
    for r in rows:
        top = max(r["reasons"].items(), key=lambda kv: kv[1], default=("-", 0))
        print(f"{r['kind']:<20}{r['calls']:>6}{r['share']:>8.1%}{r['site_p50_ms']:>8.1f}ms{r['sgcache_p50_ms']:>7.1f}ms"
              f"{r['mismatches']:>6}  {top[0]}{f' ({top[1]})' if top[1] else ''}")
    share = total_cache / total_requests if total_requests else 0.0
    mismatches = sum(r["mismatches"] for r in rows)
    print(f"{'all':<20}{sum(r['calls'] for r in rows):>6}{share:>8.1%}{percentile(all_site, 50):>8.1f}ms"
          f"{percentile(all_sgcache, 50):>7.1f}ms{mismatches:>6}  {dict(reasons.most_common(5))}")
    for r in rows:
        if r["first_difference"]:
            print(f"\nDIFFERENCE in {r['kind']}:\n{r['first_difference']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"benchmark": "workload", "scale": args.scale, "calls": args.calls, "seed": args.seed,
                       "share_from_cache": share, "mismatches": mismatches, "kinds": rows,
                       "results": [asdict(r) | {"site_ms": None, "sgcache_ms": None} for r in results]}, f, indent=1)
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
