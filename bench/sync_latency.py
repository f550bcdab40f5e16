"""Benchmark: full-import rate, and delay from a write on the site to its row in the cache.

    .venv/bin/python bench/sync_latency.py [--scale 20] [--writes 200] [--database URL]

Builds the stand-in studio at ``--scale``, imports it with ``Scanner.full`` into a fresh
database (PostgreSQL made on the local server unless ``--database`` is given), reports the
import rate, then runs the watcher with its default settings while ``--writes`` updates are
made through shotgun_api3 at random moments, and reports the median and 95th percentile of
the time from each ``update`` returning to the new value being readable in the cache table.
"""

from __future__ import annotations

import argparse
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import shotgun_api3
import sqlalchemy as sa
from benchlib import at_least, scratch_postgres

from sgcache.config import load_config
from sgcache.mocksite.server import MockServer
from sgcache.mocksite.site import MockSite
from sgcache.mocksite.studio import build_studio
from sgcache.schema import load
from sgcache.store.db import create_engine, safe_url
from sgcache.store.migrate import migrate
from sgcache.store.tables import Tables
from sgcache.sync.remote import Remote
from sgcache.sync.scanner import Scanner
from sgcache.sync.watcher import Watcher

ROOT = Path(__file__).resolve().parent.parent


class SiteProcess:
    """``sgcache mock-site`` in a process of its own, on a free port."""

    def __init__(self, scale: int):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.scale = scale
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-m", "sgcache", "-q", "mock-site", "--data", "demo",
                                      "--scale", str(self.scale), "--bind", f"127.0.0.1:{self.port}",
                                      "--schema", str(ROOT / "schema" / "demo-site.yml")],
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.2)
        raise SystemExit("the stand-in did not start")

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=at_least(), default=20)
    parser.add_argument("--writes", type=at_least(), default=200)
    parser.add_argument("--database", help="cache database URL (its tables are replaced)")
    parser.add_argument("--in-process", action="store_true",
                        help="serve the stand-in from a thread of this process (it then competes for the GIL)")
    args = parser.parse_args()

    cleanup = None
    url = args.database
    if url is None:
        url, cleanup = scratch_postgres()

    try:
        if args.in_process:
            site = MockSite(load(ROOT / "schema" / "demo-site.yml"))
            counts = build_studio(site, scale=args.scale)
            print(f"stand-in (in this process): scale {args.scale}, {sum(counts.values())} entities")
            context = MockServer(site)
        else:
            context = SiteProcess(args.scale)
            print(f"stand-in (its own process, like a remote site): scale {args.scale}")
        with context as server:
            config = load_config(env={}, overrides={
                "site.base_url": server.url, "site.script_name": "sgcache", "site.api_key": "sgcache-demo-key",
                "database.url": url})
            engine = create_engine(config.database.url)
            tables = Tables(load(ROOT / "schema" / "demo.yml"))
            migrate(engine, tables)
            remote = Remote(config.site)
            started = time.perf_counter()
            report = Scanner(engine, tables, remote, config.scanner, progress=False).full()
            seconds = time.perf_counter() - started
            print(f"full import into {safe_url(url)}: {report.written} entities in {seconds:.1f} s "
                  f"({report.written / seconds:.0f} entities/s)")

            watcher = Watcher(engine, tables, remote, config.watcher)
            stop = threading.Event()
            thread = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
            thread.start()
            sg = shotgun_api3.Shotgun(server.url, script_name="sgcache", api_key="sgcache-demo-key")
            shots = [s["id"] for s in sg.find("Shot", [], ["id"])]
            rng = random.Random(7)
            shot_table = tables["Shot"].table
            delays = []
            with engine.connect() as conn:
                for i in range(args.writes):
                    time.sleep(rng.uniform(0, 0.3))
                    shot_id = rng.choice(shots)
                    marker = f"bench-{i}"
                    sg.update("Shot", shot_id, {"description": marker})
                    written = time.perf_counter()
                    while True:
                        value = conn.execute(sa.select(shot_table.c.description)
                                             .where(shot_table.c.id == shot_id)).scalar()
                        conn.rollback()
                        if value == marker:
                            delays.append(time.perf_counter() - written)
                            break
                        if time.perf_counter() - written > 30:
                            raise SystemExit(f"write {i} never reached the cache")
                        time.sleep(0.002)
            stop.set()
            thread.join()
            delays.sort()
            p95 = delays[int(0.95 * (len(delays) - 1))]
            print(f"write -> cache delay over {len(delays)} writes: median {statistics.median(delays) * 1000:.0f} ms, "
                  f"p95 {p95 * 1000:.0f} ms, max {delays[-1] * 1000:.0f} ms")
            engine.dispose()
    finally:
        if cleanup:
            cleanup()


if __name__ == "__main__":
    main()
