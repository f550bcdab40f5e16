"""Benchmark: how fast a watcher catches up on a burst of events it did not see.

    .venv/bin/python bench/watcher_burst.py [--scale 1] [--writes 800] [--database URL] [--profile FILE]

Builds the stand-in studio at ``--scale`` in its own process, imports it into a fresh database
(PostgreSQL made on the local server unless ``--database`` is given, ``sqlite`` for a file in a
scratch folder), then makes ``--writes`` changes through shotgun_api3 with the watcher stopped:
updates of text and links, multi-entity edits, creations, retirements and revivals, the mix of
``tests/test_sync_crash.py``. Then one watcher starts and the time until it has applied every
event is reported as events per second (its own CPU time too). ``--profile FILE`` writes a
cProfile of the catch-up (``python -m pstats FILE``).

This is the wait after a watcher restart, a site outage or a big publish: while it lasts, reads
of the changed entities pass through to the site.
"""

from __future__ import annotations

import argparse
import cProfile
import random
import tempfile
import time
from pathlib import Path

import shotgun_api3
from benchlib import API_KEY, SCRIPT_NAME, at_least, scratch_postgres
from sync_latency import SiteProcess

from sgcache.config import load_config
from sgcache.schema import load
from sgcache.store.db import create_engine, safe_url
from sgcache.store.migrate import migrate
from sgcache.store.tables import Tables
from sgcache.sync import cursor as cursors
from sgcache.sync.remote import Remote
from sgcache.sync.scanner import Scanner
from sgcache.sync.watcher import Watcher

ROOT = Path(__file__).resolve().parent.parent


def burst(sg: shotgun_api3.Shotgun, writes: int, seed: int = 5) -> int:
    """Make ``writes`` changes; return the newest event id."""
    rng = random.Random(seed)
    project = sg.find_one("Project", [], ["id"])
    shots = [s["id"] for s in sg.find("Shot", [["project", "is", project]], ["id"])]
    assets = [{"type": "Asset", "id": a["id"]} for a in sg.find("Asset", [["project", "is", project]], ["id"])]
    sequences = [{"type": "Sequence", "id": s["id"]} for s in sg.find("Sequence", [], ["id"])]
    retired: list[int] = []
    for i in range(writes):
        shot = rng.choice(shots)
        r = rng.random()
        if r < 0.45:
            sg.update("Shot", shot, {"description": f"burst {i}", "sg_cut_in": i})
        elif r < 0.6:
            sg.update("Shot", shot, {"assets": rng.sample(assets, min(3, len(assets)))})
        elif r < 0.7:
            sg.update("Shot", shot, {"sg_sequence": rng.choice(sequences)})
        elif r < 0.8:
            created = sg.create("Shot", {"code": f"burst_{i}", "project": project,
                                         "sg_sequence": rng.choice(sequences)})
            shots.append(created["id"])
        elif r < 0.9 and len(shots) > 10:
            shots.remove(shot)
            sg.delete("Shot", shot)
            retired.append(shot)
        elif retired:
            back = retired.pop()
            sg.revive("Shot", back)
            shots.append(back)
        else:
            sg.update("Shot", shot, {"description": f"burst {i}"})
    return sg.find_one("EventLogEntry", [], ["id"], order=[{"field_name": "id", "direction": "desc"}])["id"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=at_least(), default=1)
    parser.add_argument("--writes", type=at_least(), default=800)
    parser.add_argument("--database", help="cache database URL (its tables are replaced); 'sqlite' for a scratch file")
    parser.add_argument("--profile", help="write a cProfile of the catch-up to this file")
    args = parser.parse_args()

    cleanup = None
    url = args.database
    if url is None:
        url, cleanup = scratch_postgres()
    elif url == "sqlite":
        url = f"sqlite:///{Path(tempfile.mkdtemp()) / 'cache.sqlite'}"
    try:
        with SiteProcess(args.scale) as site:
            config = load_config(env={}, overrides={
                "site.base_url": site.url, "site.script_name": SCRIPT_NAME, "site.api_key": API_KEY,
                "database.url": url, "scanner.slim_records": "none"})
            engine = create_engine(config.database.url)
            tables = Tables(load(ROOT / "schema" / "demo.yml"))
            migrate(engine, tables)
            remote = Remote(config.site)
            Scanner(engine, tables, remote, config.scanner, progress=False).full()
            sg = shotgun_api3.Shotgun(site.url, script_name=SCRIPT_NAME, api_key=API_KEY)
            newest = burst(sg, args.writes)
            with engine.connect() as conn:
                start = cursors.load(conn, tables.state).max_applied_id
            events = newest - start
            print(f"{safe_url(url)}: scale {args.scale}, {args.writes} changes made "
                  f"({events} events) while no watcher ran")

            watcher = Watcher(engine, tables, remote, config.watcher)
            profiler = cProfile.Profile() if args.profile else None
            began, cpu = time.perf_counter(), time.thread_time()
            if profiler:
                profiler.enable()
            while True:
                watcher.poll_once()
                with engine.connect() as conn:
                    cursor = cursors.load(conn, tables.state)
                if cursor.max_applied_id >= newest and not cursor.gaps:
                    break
                if time.perf_counter() - began > 600:
                    raise SystemExit("the watcher did not catch up in 10 minutes")
            if profiler:
                profiler.disable()
                profiler.dump_stats(args.profile)
            seconds, cpu = time.perf_counter() - began, time.thread_time() - cpu
            print(f"caught up on {events} events in {seconds:.2f} s: {events / seconds:.0f} events/s, "
                  f"{cpu / events * 1000:.1f} ms of the watcher's CPU per event")
            engine.dispose()
    finally:
        if cleanup:
            cleanup()


if __name__ == "__main__":
    main()
