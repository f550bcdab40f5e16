"""Benchmark: memory and time of a summarize counted row by row (not totalled in SQL), by number of rows.

    .venv/bin/python bench/summarize_memory.py [--rows 10000,100000] [--server URL] [--database URL]

Loads N Versions straight into a scratch cache through ``sgcache.store.writer.Writer`` (a
temporary SQLite file, and a scratch database ``sgcache_bench_summarize_<pid>`` on the local
PostgreSQL server when it answers, dropped at the end; ``--database`` instead: only that
database, which must be empty), then runs one summarize that the database cannot total
(``status_list``, a float ``sum``, ``latest``, grouped by status then month), compiled and run
as the proxy does (``compile_summarize`` then ``SummarizePlan.run``), in two ways:

- ``batches``: as sgcache runs it, ``BATCH_ROWS`` (5,000) rows held at a time;
- ``one batch``: ``BATCH_ROWS`` set above N, so every matching row is held at once, as before
  issue 13 (the code then also kept each row's values as a dict: it held somewhat more).

For each: the best wall time of ``--repeat`` runs, without tracing; the peak of Python's memory
during one more run (``tracemalloc``: the rows, the totals, the driver's Python objects); and,
in a fresh child process, how much its peak resident memory grows during one run (Linux; it also
counts what libpq holds, which tracemalloc does not see: on PostgreSQL a server-side cursor
keeps the rows on the server). Run by hand; the figures go in issue notes.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import shlex
import sys
import tempfile
import time
import tracemalloc
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from benchlib import at_least
from sqlalchemy.engine import make_url

from sgcache.query import summarize
from sgcache.query.paths import Context
from sgcache.schema import loads
from sgcache.store.db import create_engine, safe_url
from sgcache.store.migrate import migrate
from sgcache.store.readstate import ReadState
from sgcache.store.tables import Tables
from sgcache.store.writer import Writer

SCHEMA = """\
Project:
  identifier: name
  fields:
    id: number
    name: text
Version:
  identifier: code
  fields:
    id: number
    code: text
    sg_status_list: {type: status_list, valid_values: [rev, apr, fin, na]}
    project: {type: entity, entity_types: [Project]}
    sg_frames_aspect_ratio: float
    sg_first_frame: number
    created_at: date_time
"""
SUMMARIES = [{"field": "sg_status_list", "type": "status_list"}, {"field": "sg_frames_aspect_ratio", "type": "sum"},
             {"field": "created_at", "type": "latest"}, {"field": "id", "type": "record_count"}]
GROUPING = [{"field": "sg_status_list", "type": "exact", "direction": "asc"},
            {"field": "created_at", "type": "month", "direction": "desc"}]


def versions(first: int, count: int) -> list[dict]:
    rng = random.Random(first)
    return [{"type": "Version", "id": i, "code": f"sh{i % 997:04d}_comp_v{i % 50:03d}",
             "sg_status_list": rng.choice(["rev", "apr", "fin", "na", None]),
             "project": {"type": "Project", "id": rng.randint(1, 5)},
             "sg_frames_aspect_ratio": rng.choice([None, 1.85, 2.39, rng.uniform(1, 3)]),
             "sg_first_frame": rng.randint(1001, 1100),
             "created_at": f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:00:00Z"}
            for i in range(first, first + count)]


def load(writer: Writer, first: int, count: int) -> None:
    for at in range(first, first + count, 5000):
        writer.upsert("Version", versions(at, min(5000, first + count - at)))


def summarize_once(engine: sa.Engine, tables: Tables) -> dict:
    ctx = Context(tables, ReadState(ready=frozenset(tables.entities)), engine.dialect.name, tz=ZoneInfo("UTC"))
    plan = summarize.compile_summarize(ctx, {"type": "Version", "filters": {"logical_operator": "and",
                                                                            "conditions": []},
                                             "summaries": SUMMARIES, "grouping": GROUPING})
    assert plan.aggregate is None, "the benchmark's summarize must be counted row by row"
    with engine.connect() as conn:
        return plan.run(conn)


def peak_rss_reset() -> bool:
    """Reset the process's peak resident memory (Linux 4.0+); False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def rss_kib(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def measure(engine: sa.Engine, tables: Tables, repeat: int) -> tuple[float, int, int]:
    """(best seconds, tracemalloc peak bytes, rows counted) of the summarize in this process."""
    answer = summarize_once(engine, tables)  # warm: statements compiled, caches filled
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        summarize_once(engine, tables)
        best = min(best, time.perf_counter() - started)
    tracemalloc.start()
    try:
        summarize_once(engine, tables)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return best, peak, answer["summaries"]["id"]


def rss_growth(url: str, batch: int) -> int | None:
    """Bytes the peak resident memory of a fresh process grows by during one summarize (None
    where Linux's /proc cannot tell); run in a child, whose memory nothing else has used yet."""
    engine = create_engine(url)
    tables = Tables(loads(SCHEMA, where="bench/summarize_memory.py"))
    summarize.BATCH_ROWS = batch
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))  # the connection and driver ready
    if not peak_rss_reset():
        return None
    before = rss_kib("VmRSS")
    summarize_once(engine, tables)
    return (rss_kib("VmHWM") - before) * 1024


def run(url: str, counts: list[int], repeat: int) -> None:
    engine = create_engine(url)
    tables = Tables(loads(SCHEMA, where="bench/summarize_memory.py"))
    migrate(engine, tables)
    writer = Writer(engine, tables)
    writer.upsert("Project", [{"type": "Project", "id": i, "name": f"P{i}"} for i in range(1, 6)])
    backend = make_url(url).get_backend_name()
    loaded = 0
    default = summarize.BATCH_ROWS
    for count in counts:
        started = time.perf_counter()
        load(writer, loaded + 1, count - loaded)
        loaded = count
        with engine.begin() as conn:
            conn.execute(sa.text("ANALYZE"))
        print(f"  {backend}: {count:,} Versions loaded in {time.perf_counter() - started:.1f} s")
        for label, batch in (("batches", default), ("one batch", count + 1)):
            summarize.BATCH_ROWS = batch
            try:
                best, peak, rows = measure(engine, tables, repeat)
            finally:
                summarize.BATCH_ROWS = default
            assert rows == count, (rows, count)
            with multiprocessing.get_context("spawn").Pool(1) as child:
                rss = child.apply(rss_growth, (url, batch))
            rss_text = f"{rss / 2**20:7.1f} MiB" if rss is not None else "    n/a"
            print(f"  {backend:<10} {count:>8,} rows  {label:<9} (BATCH_ROWS {batch:>7,})  {best:6.2f} s  "
                  f"{best / count * 1e6:5.1f} us/row  tracemalloc peak {peak / 2**20:7.1f} MiB  "
                  f"peak RSS growth {rss_text}")
    engine.dispose()


def parse_counts(value: str) -> list[int]:
    try:
        out = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of integers, got {value!r}") from None
    if not out or min(out) < 1 or out != sorted(out):
        raise argparse.ArgumentTypeError("row counts must be at least 1, in ascending order")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--rows", type=parse_counts, default=[10_000, 100_000], metavar="N,N",
                        help="numbers of rows to measure at, ascending (rows are added between measures)")
    parser.add_argument("--repeat", type=at_least(), default=3, help="timed runs per measure (the best is shown)")
    parser.add_argument("--server", default=os.environ.get("SGCACHE_TEST_DATABASE_URL")
                        or "postgresql://postgres@127.0.0.1:5432/postgres",
                        help="PostgreSQL server for the scratch database (skipped when it does not answer)")
    parser.add_argument("--database", help="run only against this database URL (an empty database)")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    print(f"command: {shlex.join(sys.orig_argv)}")
    print(f"summarize Version: {SUMMARIES}, grouping {GROUPING}")
    if args.database:
        run(args.database, args.rows, args.repeat)
        return
    with tempfile.TemporaryDirectory() as tmp:
        run(f"sqlite:///{tmp}/bench.sqlite", args.rows, args.repeat)
    server = make_url(args.server).set(drivername="postgresql+psycopg2")
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    name = f"sgcache_bench_summarize_{os.getpid()}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.DBAPIError as e:
        print(f"  postgresql: skipped, {safe_url(server)} did not answer ({str(e.orig).strip().splitlines()[0]})")
        return
    try:
        run(server.set(database=name).render_as_string(hide_password=False), args.rows, args.repeat)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
