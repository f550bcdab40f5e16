"""Benchmark: the back-fill of history from the site's event log (``sgcache history import``).

    .venv/bin/python bench/backfill_speed.py [--scale 5] [--changes 20000] [--database sqlite|postgresql]
                                             [--json FILE]

In one run: the stand-in site with the demo studio at ``--scale`` (5 is about 25,000 entities) in
a process of its own; ``--changes`` updates through the real shotgun_api3 client, in batches of
100 (status and description of random Versions, and a tenth as many Shots), spread over
``--moments`` distinct seconds of the site's clock (60 by default: the stand-in dates its log by
the real clock, so a month cannot be made in a run, and changes within one second make one
version); then a cache made after them (``sgcache schema migrate`` and ``sgcache scan --full`` into a
scratch SQLite file, or a scratch PostgreSQL database), so its history begins after every
change; then ``sgcache history import --since <before the changes> --trust-log --json`` (the
stand-in has a script that writes without events, which the import refuses to overlook unless
told) in a process of its own.

Printed: the changes' time on the site, the import's, and the back-fill's wall time, entries read
and versions written per second, and its peak resident memory (``wait4``'s ``ru_maxrss``: the
whole process, Python included). The back-fill reads every entry of the span before it writes, so
its memory grows with the span's entries: this is the figure to watch for a month of a large
studio. Run by hand; the figures go in issue notes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import (
    API_KEY,
    ROOT,
    Child,
    at_least,
    child_env,
    connect,
    free_port,
    on_sigterm,
    run_context,
    scratch_postgres,
    wait_for_info,
)

BATCH = 100


def make_changes(site_url: str, changes: int, seed: int, moments: int) -> float:
    """``changes`` updates of random Versions (nine in ten) and Shots, spread over ``moments``
    seconds of the site's clock (an entity changed twice within one second has one version in
    between, as on the site); the seconds they took."""
    rng = random.Random(seed)
    sg = connect(site_url, 120)
    versions = [v["id"] for v in sg.find("Version", [], ["id"])]
    shots = [s["id"] for s in sg.find("Shot", [], ["id"])]
    statuses = {kind: sg.schema_field_read(kind, "sg_status_list")["sg_status_list"]["properties"]["valid_values"]
                ["value"] for kind in ("Version", "Shot")}
    started = time.perf_counter()
    done = 0
    per_moment = -(-changes // max(1, moments))
    moment_ends = per_moment
    while done < changes:
        if done >= moment_ends:  # on to the next second of the site's clock
            time.sleep(1.0 - time.time() % 1.0 + 0.01)
            moment_ends += per_moment
        requests = []
        for k in range(min(BATCH, changes - done, moment_ends - done)):
            kind, pool = ("Shot", shots) if rng.random() < 0.1 else ("Version", versions)
            requests.append({"request_type": "update", "entity_type": kind, "entity_id": rng.choice(pool),
                             "data": {"sg_status_list": rng.choice(statuses[kind]),
                                      "description": f"change {done + k}"}})
        sg.batch(requests)
        done += len(requests)
        if done % 5000 < BATCH:
            print(f"  {done} changes", flush=True)
    sg.close()
    return time.perf_counter() - started


def run_measured(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str, str, float, int]:
    """Run ``argv``: (exit code, stdout, stderr, wall seconds, peak resident memory in KiB)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return (proc.returncode, out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace"),
                seconds, usage.ru_maxrss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--scale", type=at_least(), default=5, help="stand-in studio size (mock-site --scale)")
    parser.add_argument("--changes", type=at_least(), default=20_000, help="updates made on the site before the cache")
    parser.add_argument("--moments", type=at_least(), default=60,
                        help="distinct seconds of the site's clock the changes are spread over")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite",
                        help="the cache's database: a scratch SQLite file or PostgreSQL database")
    parser.add_argument("--seed", type=int, default=0, help="stand-in data seed, and the changes'")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results here as JSON")
    parser.add_argument("--profile", type=Path, metavar="FILE",
                        help="run the back-fill under cProfile and write its profile here (slower)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, on_sigterm)
    tmp = Path(tempfile.mkdtemp(prefix="sgcache-bench-backfill-"))
    env = child_env()
    env["SGCACHE_SITE_API_KEY"] = API_KEY
    site_port = free_port()
    site_url = f"http://127.0.0.1:{site_port}"
    drop = None
    site = None
    try:
        if args.database == "postgresql":
            database, drop = scratch_postgres()
        else:
            database = f"sqlite:///{tmp / 'cache.sqlite'}"
        sgcache = [sys.executable, "-m", "sgcache", "--config", "/dev/null"]
        settings = ["--database", database, "--schema", str(ROOT / "schema" / "demo.yml"),
                    "--set", f"site.base_url={site_url}", "--set", "site.script_name=sgcache"]
        site = Child("site", [*sgcache, "mock-site", "--bind", f"127.0.0.1:{site_port}", "--data", "demo",
                              "--scale", str(args.scale), "--seed", str(args.seed),
                              "--schema", str(ROOT / "schema" / "demo-site.yml")], tmp, env)
        print(f"stand-in: {site_url}, scale {args.scale}, ready in {wait_for_info(site, site_url, 180):.1f} s",
              flush=True)
        since = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(seconds=1)
        time.sleep(1.1)
        print(f"making {args.changes} changes on the site (batches of {BATCH}, over {args.moments} seconds)",
              flush=True)
        change_seconds = make_changes(site_url, args.changes, args.seed, args.moments)
        print(f"made {args.changes} changes in {change_seconds:.1f} s", flush=True)
        time.sleep(1.1)  # the cache's history begins after the last of them
        Child("migrate", [*sgcache, *settings, "schema", "migrate"], tmp, env).wait(300)
        code, _, err, import_seconds, _ = run_measured([*sgcache, *settings, "scan", "--full", "--no-progress"],
                                                       tmp, env)
        if code:
            raise SystemExit(f"scan --full failed ({code}):\n{err[-3000:]}")
        print(f"cache imported ({args.database}) in {import_seconds:.1f} s", flush=True)
        since_text = since.isoformat().replace("+00:00", "Z")
        if args.profile:
            sgcache = [sys.executable, "-m", "cProfile", "-o", str(args.profile.resolve()), "-m", "sgcache",
                       "--config", "/dev/null"]
        argv = [*sgcache, *settings, "history", "import", "--since", since_text, "--trust-log", "--json",
                "--no-progress"]
        print(f"back-fill: sgcache history import --since {since_text} --trust-log --json", flush=True)
        code, out, err, seconds, peak_kib = run_measured(argv, tmp, env)
        if code:
            raise SystemExit(f"history import failed ({code}):\n{err[-3000:]}")
        reports = json.loads(out)["types"]
        entries = sum(r["entries"] for r in reports)
        versions = sum(r["versions"] for r in reports)
        entities = sum(r["entities"] for r in reports)
        print(f"\nback-fill of {args.changes} changes at scale {args.scale} ({args.database}): "
              f"{seconds:.1f} s, {entries} entries on {entities} entities ({entries / seconds:.0f} entries/s), "
              f"{versions} earlier versions written, peak memory {peak_kib / 1024:.0f} MiB")
        for r in reports:
            if r["entries"]:
                print(f"  {r['entity_type']}: {r['entries']} entries, {r['entities']} entities, "
                      f"{r['versions']} versions")
        if args.json:
            args.json.write_text(json.dumps({
                "command": " ".join([".venv/bin/python", "bench/backfill_speed.py", *sys.argv[1:]]),
                "versions": run_context(),
                "settings": {"scale": args.scale, "changes": args.changes, "moments": args.moments,
                             "database": args.database, "seed": args.seed},
                "changes_seconds": round(change_seconds, 1), "import_seconds": round(import_seconds, 1),
                "backfill": {"seconds": round(seconds, 2), "entries": entries, "entities": entities,
                             "versions": versions, "entries_per_s": round(entries / seconds),
                             "peak_rss_mib": round(peak_kib / 1024)},
                "types": reports}, indent=2) + "\n")
            print(f"results written to {args.json}")
    finally:
        if site is not None:
            site.stop(grace=10)
        if drop is not None:
            drop()


if __name__ == "__main__":
    main()
