"""Benchmark: reads of the past (``/as-of/<time>/``) against the same reads of the present.

    .venv/bin/python bench/history_speed.py [--scale 20] [--days 30] [--changes-per-day 5000] [--json FILE]

In one run: a scratch PostgreSQL database on the local server, the stand-in at ``--scale`` (20 is
about 100,000 entities), a full import and ``sgcache web`` (gunicorn, 2 workers x 8 threads), as
bench/read_speed.py sets them up (benchlib.CachedProxy). Then ``--days`` of history is written
straight into the cache through the project's Writer, as the watcher would have written it: every
row is dated to the start of the period, and each day ``--changes-per-day`` random Versions (and a
tenth as many Shots) change status and description, with that day's time. The fields' history is
made to begin before the period, the watcher's "applied up to" mark is set to now, and the
database is vacuumed, analyzed and checkpointed (read_speed.settle).

With the real shotgun_api3 client, one client at a time, bench/read_speed.py's calls (find_one,
deep50, page500, summarize; same ids, filters and pages) are timed through the present URL and
through ``/as-of/<the middle of the period>/``. The figure is each call's p50 as of the past over
its p50 of the present (target: at most 3x). Run by hand; the figures go in issue notes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

import shotgun_api3
import sqlalchemy as sa
from benchlib import API_KEY, ROOT, SCRIPT_NAME, CachedProxy, at_least, on_sigterm, run_context, scratch_postgres
from read_speed import combine, make_calls, measure, pick, settle

STATUSES = ["rev", "apr", "ip", "wtg", "fin"]
TARGET = 3.0


def write_history(url: str, days: int, per_day: int, seed: int) -> tuple[dt.datetime, int, float]:
    """Date every row to the period's start, then write ``days`` days of changes; return (the
    period's start, versions kept, seconds)."""
    from sgcache.schema import load
    from sgcache.store import history, state
    from sgcache.store.db import create_engine
    from sgcache.store.tables import Tables
    from sgcache.store.writer import OTHER_SIDES_NONE, Writer

    started = time.perf_counter()
    rng = random.Random(seed)
    engine = create_engine(url)
    tables = Tables(load(ROOT / "schema" / "demo.yml"))
    now = dt.datetime.now(dt.UTC)
    start = now - dt.timedelta(days=days + 1)
    with engine.begin() as conn:
        for et in tables:
            for table in (et.table, *et.associations.values()):
                conn.execute(sa.update(table).values({history.VALID_FROM: start}))
        conn.execute(sa.update(tables.state.fields).values(history_from=start - dt.timedelta(days=1)))
        ids = {name: list(conn.execute(sa.select(tables[name].table.c.id)).scalars()) for name in ("Version", "Shot")}
    writer = Writer(engine, tables)
    for day in range(days):
        at = start + dt.timedelta(days=day + 1)
        for name, count in (("Version", per_day), ("Shot", per_day // 10)):
            chosen = rng.sample(ids[name], min(count, len(ids[name])))
            batch = [{"type": name, "id": i, "sg_status_list": rng.choice(STATUSES), "description": f"day {day} {i}"}
                     for i in chosen]
            for k in range(0, len(batch), 1000):
                writer.upsert(name, batch[k:k + 1000], changed_at=at, other_sides=OTHER_SIDES_NONE)
        print(f"  day {day + 1}/{days} written", end="\r", flush=True)
    with engine.begin() as conn:
        state.set_meta(conn, tables.state, state.HISTORY_UNTIL, now.isoformat())
        kept = sum(conn.execute(sa.select(sa.func.count()).select_from(h)).scalar_one()
                   for h in [et.history for et in tables] + [tables.state.link_history])
    engine.dispose()
    settle(url.replace("+psycopg2", ""))
    return start, kept, time.perf_counter() - started


def explain(url: str, choices: Any, at: dt.datetime) -> None:
    """EXPLAIN ANALYZE of the first query of find_one and deep50 as of ``at``, as the read
    compiler builds them."""
    from zoneinfo import ZoneInfo

    from sgcache.query.paths import Context
    from sgcache.query.read import compile_read
    from sgcache.schema import load
    from sgcache.store import history
    from sgcache.store.db import create_engine
    from sgcache.store.readstate import load_state
    from sgcache.store.tables import Tables

    engine = create_engine(url)
    tables = Tables(load(ROOT / "schema" / "demo.yml"))
    with engine.connect() as conn:
        for name, conditions in (
                ("find_one", [{"path": "id", "relation": "is", "values": [choices.version_ids[0]]}]),
                ("deep50", [{"path": f[0], "relation": f[1], "values": [f[2]]} for f in choices.deep_filters()])):
            ctx = Context(tables, load_state(conn, tables), "postgresql", tz=ZoneInfo("UTC"), as_of=at)
            plan = compile_read(ctx, {"type": "Version", "return_fields": ["code", "entity", "sg_status_list"],
                                      "filters": {"logical_operator": "and", "conditions": conditions}})
            with history.reading_as_of(at):
                sql = str(plan.select_ids.limit(501).compile(engine, compile_kwargs={"literal_binds": True}))
                print(f"{name}:")
                for (line,) in conn.exec_driver_sql("EXPLAIN ANALYZE " + sql):
                    print("  " + line)
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=at_least(), default=20)
    parser.add_argument("--days", type=at_least(), default=30)
    parser.add_argument("--changes-per-day", type=at_least(), default=5000)
    parser.add_argument("--requests", type=at_least(), default=300, help="timed calls per call and URL")
    parser.add_argument("--warmup", type=at_least(0), default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--explain", action="store_true", help="print PostgreSQL's plan of find_one as of the past")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, on_sigterm)
    url, drop = scratch_postgres()
    proxy = None
    try:
        began = time.perf_counter()
        # No shadow checks: the month of history written below exists in the cache only, so the
        # site would disagree with today's cached answers and switch the group off.
        proxy = CachedProxy("sgcache-bench-history-", scale=args.scale, database=url,
                            settings=("auth.shadow_rate=0",))
        print(f"stand-in scale {args.scale} imported into PostgreSQL in {time.perf_counter() - began:.0f} s; "
              f"sgcache web at {proxy.proxy_url}")
        start, kept, seconds = write_history(url, args.days, args.changes_per_day, args.seed)
        print(f"history: {args.days} days of {args.changes_per_day} Version and {args.changes_per_day // 10} Shot "
              f"changes a day: {kept:,} versions kept, written in {seconds:.0f} s")
        choices = pick(url.replace("+psycopg2", ""), args.seed)
        calls = make_calls(choices)
        middle = start + dt.timedelta(days=args.days / 2)
        if args.explain:
            explain(url, choices, middle)
        stamp = middle.strftime("%Y-%m-%dT%H:%M:%SZ")
        clients = {"present": shotgun_api3.Shotgun(proxy.proxy_url, script_name=SCRIPT_NAME, api_key=API_KEY),
                   "as-of": shotgun_api3.Shotgun(f"{proxy.proxy_url}/as-of/{stamp}/", script_name=SCRIPT_NAME,
                                                 api_key=API_KEY)}
        rows = []
        print(f"\n{'call':<10} {'present p50 ms':>15} {'as-of p50 ms':>13} {'ratio':>6} {'as-of p95 ms':>13}  errors")
        for call, fn in calls.items():
            results = {name: combine("history", name, call, 1, [measure(fn, [sg], args.requests, args.warmup)])
                       for name, sg in clients.items()}
            now_r, past_r = results["present"], results["as-of"]
            ratio = past_r.p50_ms / now_r.p50_ms
            errors = now_r.errors + past_r.errors
            print(f"{call:<10} {now_r.p50_ms:>15.2f} {past_r.p50_ms:>13.2f} {ratio:>5.2f}x {past_r.p95_ms:>13.2f}  "
                  f"{errors}{'  ' + past_r.first_errors[0][:120] if past_r.first_errors else ''}")
            rows.append({"call": call, "present_p50_ms": round(now_r.p50_ms, 3),
                         "as_of_p50_ms": round(past_r.p50_ms, 3), "ratio": round(ratio, 2),
                         "as_of_p95_ms": round(past_r.p95_ms, 3), "errors": errors})
        worst = max(r["ratio"] for r in rows)
        print(f"\nworst ratio {worst:.2f}x (target at most {TARGET}x): {'met' if worst <= TARGET else 'NOT met'}")
        if args.json:
            args.json.write_text(json.dumps({
                "command": " ".join(["bench/history_speed.py", *sys.argv[1:]]), "versions": run_context(),
                "settings": vars(args) | {"json": str(args.json)}, "as_of": stamp, "versions_kept": kept,
                "deep50_found": choices.deep_expected, "results": rows}, indent=2, default=str) + "\n")
    finally:
        if proxy is not None:
            proxy.stop()
        drop()


if __name__ == "__main__":
    main()
