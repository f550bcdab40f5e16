"""Benchmark: a full import from a slow site, one connection against several.

    .venv/bin/python bench/import_speed.py [--scale 5] [--latency-ms 150] [--concurrency 1,4]
                                           [--database sqlite|postgresql|URL] [--json FILE]

Starts the stand-in studio (``sgcache mock-site --data demo``) in a process of its own, each
request answered after ``--latency-ms`` as a hosted site's are, then for each concurrency makes
an empty cache database and times ``Scanner.full()`` into it: every type the shipped rules
keep (schema/demo.yml) and the slim records of the others, as ``sgcache scan --full`` does.
Prints entities, seconds and the speed-up over the first concurrency listed, all measured in
the same run against the same site; ``--json`` also writes them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from benchlib import (
    API_KEY,
    ROOT,
    SCRIPT_NAME,
    Child,
    at_least,
    child_env,
    duration,
    free_port,
    rpc,
    run_context,
    scratch_postgres,
    wait_for_info,
)
from sqlalchemy.engine import make_url

from sgcache.config import load_config
from sgcache.schema import load
from sgcache.store.db import create_engine, safe_url
from sgcache.store.migrate import migrate
from sgcache.store.tables import Tables
from sgcache.sync.remote import Remote
from sgcache.sync.scanner import Scanner


def make_database(kind: str, workdir: Path) -> tuple[str, Callable[[], None]]:
    """(URL of an empty database, how to drop it)."""
    if kind == "sqlite":
        return f"sqlite:///{workdir / f'cache-{uuid.uuid4().hex[:8]}.sqlite'}", lambda: None
    if kind == "postgresql":
        return scratch_postgres()
    return kind, lambda: None


def import_once(site_url: str, database: str, workdir: Path, concurrency: int) -> dict:
    url, drop = make_database(database, workdir)
    try:
        config = load_config(env={}, overrides={
            "site.base_url": site_url, "site.script_name": SCRIPT_NAME, "site.api_key": API_KEY,
            "database.url": url, "scanner.concurrency": str(concurrency)})
        engine = create_engine(config.database.url)
        tables = Tables(load(ROOT / "schema" / "demo.yml"))
        migrate(engine, tables)
        started = time.perf_counter()
        report = Scanner(engine, tables, Remote(config.site), config.scanner, progress=False).full()
        seconds = time.perf_counter() - started
        engine.dispose()
        return {"concurrency": concurrency, "database": safe_url(make_url(url)).split(":")[0],
                "entities": report.written, "types": len(report.types), "seconds": round(seconds, 2),
                "entities_per_second": round(report.written / seconds)}
    finally:
        drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=at_least(), default=5)
    parser.add_argument("--latency-ms", type=duration(zero=True), default=150.0)
    parser.add_argument("--concurrency", default="1,4", help="comma-separated (the first is the baseline)")
    parser.add_argument("--database", default="sqlite", help="sqlite, postgresql (a new database on the local "
                        "server) or a URL (its tables are replaced)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]

    with tempfile.TemporaryDirectory(prefix="sgcache-import-") as tmp:
        workdir = Path(tmp)
        port = free_port()
        site_url = f"http://127.0.0.1:{port}"
        site = Child("site", [sys.executable, "-m", "sgcache", "-q", "mock-site", "--data", "demo", "--scale",
                              str(args.scale), "--bind", f"127.0.0.1:{port}", "--latency-ms", str(args.latency_ms),
                              "--schema", str(ROOT / "schema" / "demo-site.yml")], workdir, child_env())
        try:
            wait_for_info(site, site_url, 180)
            stats = rpc(site_url, "info")
            print(f"stand-in: scale {args.scale}, {args.latency_ms:.0f} ms a request, version {stats.get('version')}",
                  file=sys.stderr)
            runs = []
            for level in levels:
                run = import_once(site_url, args.database, workdir, level)
                runs.append(run)
                base = runs[0]["seconds"]
                print(f"concurrency {level}: {run['entities']} entities of {run['types']} types into "
                      f"{run['database']} in {run['seconds']:.1f} s ({run['entities_per_second']}/s), "
                      f"{base / run['seconds']:.2f}x concurrency {levels[0]}")
        finally:
            site.stop()
    if args.json:
        args.json.write_text(json.dumps({"benchmark": "import_speed", "scale": args.scale,
                                         "latency_ms": args.latency_ms, "runs": runs, **run_context()}, indent=2))


if __name__ == "__main__":
    main()
