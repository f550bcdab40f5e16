"""Benchmark: reads answered from the cache by ``sgcache web``, against the stand-in site and a hand-written floor.

    .venv/bin/python bench/read_speed.py [--scale 20] [--versions 1000000] [--json FILE]

In one run: makes a scratch PostgreSQL database on the local server (``--server``, trust auth;
``sgcache_bench_read_<pid>``, dropped at the end), starts the stand-in site (``sgcache
mock-site --scale``; 20 is about 100,000 entities), fills the cache with ``sgcache scan --full``,
then starts ``sgcache web`` (gunicorn gthread, ``--workers`` x ``--threads``, log level warning)
and the *floor*: a minimal Flask + psycopg2 application written by this script, served by
gunicorn with the same workers and threads, that answers ``info`` with the stand-in's info and
the ``find_one`` below with one hard-coded SQL query (no credential check, no query compiler).

With the real shotgun_api3 client (one Shotgun per client thread, connected before the clock
starts), each call is timed with 1 and 8 concurrent clients against sgcache, the stand-in and
(``find_one`` and ``page500``) the floor, which answers a page with one query too (the same
rows, by id, with the link names joined). The targets take turns: each call's requests are
split over ``--rounds`` rounds (default 5), every target runs its share in each round, and each
round starts with the next target along; percentiles and throughput are then taken over all the
rounds. A machine whose speed drifts during the run (another process, the CPU's clock, the disk
cache) so slows every target alike, and the ratios compare like with like. Each sgcache figure
is also printed as a ratio to its floor (``x floor``: p50 over the floor's p50 for the same
call; ``deep50`` over find_one's).

- ``find_one``: ``find_one("Version", [["id", "is", ID]], ["code", "entity", "sg_status_list"])``,
  ID cycling over 200 random active Versions;
- ``deep50``: ``find("Version", [project is P, entity.Shot.sg_sequence.Sequence.code is X,
  sg_status_list is_not na], [code, entity, sg_status_list, created_at])``, P and X picked from
  the data so that it returns about 50 entities (the count is printed);
- ``page500``: ``find("Version", [], [code, entity, created_at, sg_status_list], limit=500,
  page=k)``, k cycling over every page of the stand-in's Versions;
- ``summarize``: ``summarize("Version", [], [id count], grouping=[sg_status_list exact asc])``.

The outcome column is the proxy's ``X-Sgcache-Outcome`` header (cache or passthrough) for that
call, read once by replaying the client's own request body with ``requests``.

``--versions N`` then loads N more Version rows straight into the cache through
``sgcache.store.writer.Writer.upsert`` (batches of 5,000, realistic values, linked to existing
Shots outside the deep50 sequence so that call still returns the same entities), runs VACUUM
(ANALYZE) and CHECKPOINT (as after the import), and times find_one (sgcache and floor), deep50
and page500 again (same ids, filters and pages) for
a second table. Only the cache gets these rows; the stand-in does not. As the Shots stay the same,
each Shot gets many more Versions (1,000,000 over the ~2,500 Shots of scale 20: ~400 each), which
is what a deep-link find that reaches Versions through Shots pays for.

Targets (from the issue), as ratios that hold on any machine: with one client, find_one p50 at
most 1.25x its floor, page500 at most 1.3x its floor, deep50 at most 3x the find_one floor; with
8 clients, find_one throughput at least 0.85x the floor's; no regression with 1,000,000 Versions.
Every process runs on this machine, so the client threads, the proxy, PostgreSQL and the
stand-in share its CPUs; the "client cpu"
column (CPU of this process over wall time, 100% = one core) shows when the client itself is a
limit. Run by hand; the figures go in issue notes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import shlex
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import psycopg2
import requests
import shotgun_api3
from benchlib import (
    API_KEY,
    ROOT,
    SCRIPT_NAME,
    Child,
    at_least,
    child_env,
    connect,
    connections_per_worker,
    duration,
    free_port,
    on_sigterm,
    parse_clients,
    percentile,
    rpc,
    spread_clients,
    tail,
    wait_for_info,
)

SITE_SCHEMA = ROOT / "schema" / "demo-site.yml"
CACHE_SCHEMA = ROOT / "schema" / "demo.yml"

FIND_ONE_FIELDS = ["code", "entity", "sg_status_list"]
DEEP_FIELDS = ["code", "entity", "sg_status_list", "created_at"]
PAGE_FIELDS = ["code", "entity", "created_at", "sg_status_list"]
PAGE_SIZE = 500
DEEP_PATH = "entity.Shot.sg_sequence.Sequence.code"
SUMMARIES = [{"field": "id", "type": "count"}]
GROUPING = [{"field": "sg_status_list", "type": "exact", "direction": "asc"}]
FIND_ONE_IDS = 200
EXTRA_ID_START = 10_000_001
LOAD_BATCH = 5000

#: Version.entity may link these types; the floor joins each table for the link's name.
LINK_TABLES = {"Asset": ("asset", "code"), "Shot": ("shot", "code"), "Sequence": ("sequence", "code"),
               "Scene": ("scene", "code"), "Project": ("project", "name")}


# --- subprocesses (as in bench/proxy_passthrough.py) ----------------------------------------------


# --- the scratch database ---------------------------------------------------------------------------


@contextmanager
def scratch_database(server: str, name: str, keep: bool) -> Iterator[str]:
    """CREATE DATABASE ``name`` on ``server`` (a postgresql:// URL); DROP it at the end."""
    admin = psycopg2.connect(f"{server.rstrip('/')}/postgres")
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            cur.execute(f'CREATE DATABASE "{name}"')
        yield f"{server.rstrip('/')}/{name}"
    finally:
        try:
            if keep:
                print(f"kept the database {name}")
            else:
                with admin.cursor() as cur:
                    cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            admin.close()


# --- the floor: one hand-written endpoint -------------------------------------------------------------


def _floor_select(source: str = "version v") -> str:
    """A Version's fields with its entity link's name (a retired link target reads as no link),
    from ``source`` (the table, or a subquery named ``v``)."""
    joins, ids, names = [], [], []
    for i, (type_name, (table, ident)) in enumerate(LINK_TABLES.items()):
        joins.append(f"LEFT JOIN {table} l{i} ON v.entity__type = '{type_name}' AND l{i}.id = v.entity__id "
                     f"AND l{i}._active")
        ids.append(f"l{i}.id")
        names.append(f"l{i}.{ident}")
    return (f"SELECT v.id, v.code, v.entity__type, COALESCE({', '.join(ids)}) AS entity_id, "
            f"COALESCE({', '.join(names)}) AS entity_name, v.sg_status_list, v.created_at FROM {source} "
            f"{' '.join(joins)}")


def floor_sql() -> str:
    """find_one's query: a Version by id."""
    return f"{_floor_select()} WHERE v.id = %s AND v._active"


def floor_page_sql() -> str:
    """page500's query: a page of active Versions by id, then their links' names (the page is
    taken first, as one would write it by hand: joined first, PostgreSQL may join whole tables)."""
    page = "(SELECT * FROM version WHERE _active ORDER BY id LIMIT %s OFFSET %s) v"
    return f"{_floor_select(page)} ORDER BY v.id"


FLOOR_MODULE = '''\
"""The floor of bench/read_speed.py: find_one of a Version by id, and a page of Versions, one SQL
query each, nothing else."""

import json
import os
import threading
from datetime import timezone

from flask import Flask, Response, request
from psycopg2.pool import ThreadedConnectionPool

DSN = os.environ["FLOOR_DSN"]
INFO = json.loads(os.environ["FLOOR_INFO"])
THREADS = int(os.environ["FLOOR_THREADS"])
SQL = {sql!r}
PAGE_SQL = {page_sql!r}

app = Flask(__name__)
_pool = None
_pool_lock = threading.Lock()


def pool():
    global _pool
    if _pool is None:  # made in the worker, after gunicorn's fork
        with _pool_lock:
            if _pool is None:
                # min = max: psycopg2 closes a returned connection above the minimum.
                _pool = ThreadedConnectionPool(THREADS, THREADS, DSN)
    return _pool


def answer(payload):
    return Response(json.dumps(payload, separators=(",", ":")), content_type="application/json; charset=utf-8")


@app.post("/api3/json")
def api3():
    req = json.loads(request.get_data())
    method = req.get("method_name")
    if method == "info":
        return answer(INFO)
    if method != "read":
        return answer({{"exception": True, "message": f"floor: no {{method}}", "error_code": 1}})
    args = req["params"][1]
    conditions = args["filters"]["conditions"]
    conn = pool().getconn()
    try:
        with conn.cursor() as cur:
            if conditions:  # find_one by id
                cur.execute(SQL, (conditions[0]["values"][0],))
            else:  # a page
                paging = args["paging"]
                size = paging["entities_per_page"]
                cur.execute(PAGE_SQL, (size, (paging["current_page"] - 1) * size))
            rows = cur.fetchall()
        conn.rollback()
    finally:
        pool().putconn(conn)
    entities = []
    for row in rows:
        link = {{"type": row[2], "id": row[3], "name": row[4]}} if row[3] is not None else None
        entity = {{"type": "Version", "id": row[0], "code": row[1], "entity": link, "sg_status_list": row[5]}}
        if not conditions:
            entity["created_at"] = row[6].astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        entities.append(entity)
    return answer({{"results": {{"entities": entities}}}})
'''


# --- measuring ------------------------------------------------------------------------------------------


@dataclass
class Result:
    phase: str
    target: str
    call: str
    clients: int
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p95_ms: float
    max_ms: float
    client_cpu: float  # CPU time of this process / wall time (1.0 = one core)
    outcome: str = "-"
    first_errors: list[str] = field(default_factory=list)


#: Set when the run is abandoned (Ctrl-C, an error): client threads stop at their next call.
STOP = threading.Event()

#: One call kind: fn(sg, n) makes the n-th call (n cycles ids or pages).
CallFn = Callable[[shotgun_api3.Shotgun, int], Any]


@dataclass
class Sample:
    """One timed round of one call against one target."""

    latencies: list[float]  # seconds, of the calls that succeeded
    errors: list[str]  # warm-up failures start with "warm-up"
    seconds: float
    cpu: float  # CPU seconds of this process (the clients) during the round


def measure(fn: CallFn, sgs: list[shotgun_api3.Shotgun], requests_: int, warmup: int, offset: int = 0) -> Sample:
    """``requests_`` calls shared by ``len(sgs)`` threads, one Shotgun each, started together after
    ``warmup`` untimed calls per thread (``offset``: where this round's ids and pages start)."""
    clients = len(sgs)
    shares = [requests_ // clients + (1 if i < requests_ % clients else 0) for i in range(clients)]
    latencies: list[list[float]] = [[] for _ in sgs]
    errors: list[list[str]] = [[] for _ in sgs]
    ready = threading.Barrier(clients + 1)

    def worker(i: int) -> None:
        sg, mine, errs = sgs[i], latencies[i], errors[i]
        for w in range(warmup):
            for attempt in (1, 2):  # once more: the server may have closed a connection idle for a while
                try:
                    fn(sg, 7919 * (i + 1) + w)  # untimed, other ids/pages than the timed ones start with
                    break
                except Exception as e:  # counted below
                    if attempt == 2:
                        errs.append(f"warm-up: {type(e).__name__}: {e}")
        ready.wait()
        clock = time.perf_counter
        for k in range(shares[i]):
            if STOP.is_set():
                return
            n = offset + i + k * clients
            started = clock()
            try:
                fn(sg, n)
            except Exception as e:  # a benchmark counts failures and goes on
                errs.append(f"{type(e).__name__}: {e}")
                continue
            mine.append(clock() - started)

    threads = [threading.Thread(target=worker, args=(i,), name=f"client-{i}", daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    ready.wait()
    cpu0, started = os.times(), time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    cpu1 = os.times()
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return Sample([x for lat in latencies for x in lat], [e for errs in errors for e in errs], seconds, cpu)


def combine(phase: str, target: str, call: str, clients: int, samples: list[Sample]) -> Result:
    """One result from a target's rounds: percentiles over every call of every round, throughput
    as all the calls over all the rounds' time."""
    ordered = sorted(x for s in samples for x in s.latencies)
    all_errors = [e for s in samples for e in s.errors]
    timed_errors = sum(1 for e in all_errors if not e.startswith("warm-up"))
    seconds = sum(s.seconds for s in samples)
    requests_ = len(ordered) + timed_errors
    return Result(phase, target, call, clients, requests_, timed_errors, seconds, len(ordered) / seconds,
                  percentile(ordered, 50) * 1000, percentile(ordered, 95) * 1000,
                  (ordered[-1] if ordered else float("nan")) * 1000, sum(s.cpu for s in samples) / seconds,
                  first_errors=all_errors[:5])


class Probe:
    """Records the body and headers of the last request a Shotgun instance sends."""

    def __init__(self, sg: shotgun_api3.Shotgun):
        self.sg = sg
        self.last: tuple[str, Any, dict[str, Any], dict[str, Any]] | None = None
        original = sg._http_request

        def recording(verb: str, path: str, body: Any, headers: dict[str, Any]) -> Any:
            status, resp_headers, resp_body = original(verb, path, body, headers)
            self.last = (path, body, dict(headers), resp_headers)
            return status, resp_headers, resp_body

        sg._http_request = recording  # type: ignore[method-assign]

    def outcome(self, base_url: str, fn: CallFn) -> str:
        """Make one call with the client, replay its body with ``requests``; X-Sgcache-Outcome."""
        fn(self.sg, 0)
        assert self.last is not None
        path, body, headers, resp_headers = self.last
        headers = {k: v for k, v in headers.items() if k.lower() not in ("connection", "content-length")}
        reply = requests.post(base_url + path, data=body, headers=headers, timeout=60)
        replayed = reply.headers.get("X-Sgcache-Outcome", "-")
        client_saw = resp_headers.get("x-sgcache-outcome", "-")
        return replayed if replayed == client_saw else f"{replayed} (client saw {client_saw})"


# --- picking the data ---------------------------------------------------------------------------------------


@dataclass
class Choices:
    version_ids: list[int]
    project_id: int
    project_name: str
    sequence_code: str
    deep_expected: int
    pages: list[int]
    active_versions: int

    def deep_filters(self) -> list:
        return [["project", "is", {"type": "Project", "id": self.project_id}],
                [DEEP_PATH, "is", self.sequence_code],
                ["sg_status_list", "is_not", "na"]]


def pick(dsn: str, seed: int) -> Choices:
    """find_one ids, the deep50 project and sequence code, and the pages, from the cached data."""
    rng = random.Random(seed)
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM version WHERE _active ORDER BY id")
        ids = [r[0] for r in cur.fetchall()]
        cur.execute("""
            SELECT v.project__id, p.name, sq.code, count(*) FROM version v
            JOIN shot s ON v.entity__type = 'Shot' AND s.id = v.entity__id AND s._active
            JOIN sequence sq ON sq.id = s.sg_sequence__id AND sq._active
            JOIN project p ON p.id = v.project__id AND p._active
            WHERE v._active AND v.project__type = 'Project' AND v.sg_status_list IS DISTINCT FROM 'na'
            GROUP BY 1, 2, 3 ORDER BY abs(count(*) - 50), 1, 3 LIMIT 1""")
        found = cur.fetchone()
    conn.close()
    if not ids or found is None:
        raise SystemExit("the cache holds no active Version linked to a Shot in a Sequence: nothing to measure")
    pages = list(range(1, (len(ids) + PAGE_SIZE - 1) // PAGE_SIZE + 1))
    return Choices(rng.sample(ids, min(FIND_ONE_IDS, len(ids))), found[0], found[1], found[2], found[3], pages,
                   len(ids))


def make_calls(choices: Choices) -> dict[str, CallFn]:
    ids, pages, deep = choices.version_ids, choices.pages, choices.deep_filters()

    def find_one(sg: shotgun_api3.Shotgun, n: int) -> Any:
        return sg.find_one("Version", [["id", "is", ids[n % len(ids)]]], FIND_ONE_FIELDS)

    def deep50(sg: shotgun_api3.Shotgun, n: int) -> Any:
        return sg.find("Version", deep, DEEP_FIELDS)

    def page500(sg: shotgun_api3.Shotgun, n: int) -> Any:
        return sg.find("Version", [], PAGE_FIELDS, limit=PAGE_SIZE, page=pages[n % len(pages)])

    def summarize(sg: shotgun_api3.Shotgun, n: int) -> Any:
        return sg.summarize("Version", [], SUMMARIES, grouping=GROUPING)

    return {"find_one": find_one, "deep50": deep50, "page500": page500, "summarize": summarize}


def check_answers(calls: dict[str, CallFn], choices: Choices, pools: dict[str, list[shotgun_api3.Shotgun]]) -> None:
    """The proxy (and, for find_one and page500, the floor) answer as the stand-in does; else stop."""
    site = pools["stand-in"][0]
    checks: list[tuple[str, int]] = [("find_one", n) for n in range(0, len(choices.version_ids), 4)]
    checks += [("deep50", 0), ("page500", 0), ("page500", len(choices.pages) - 1), ("summarize", 0)]
    for call, n in checks:
        expected = calls[call](site, n)
        for target in ("sgcache", "floor"):
            if target == "floor" and call not in FLOOR_OF.values():
                continue
            got = calls[call](pools[target][0], n)
            if got != expected:
                raise SystemExit(f"{target} answers {call} #{n} differently from the stand-in:\n"
                                 f"  stand-in: {expected!r:.600}\n  {target}: {got!r:.600}")
    print(f"answers checked against the stand-in: {len(checks)} calls through sgcache, "
          f"{sum(1 for c, _ in checks if c in FLOOR_OF.values())} find_one and page500 through the floor: the same")


# --- the --versions load ------------------------------------------------------------------------------------


def load_versions(dsn: str, count: int, choices: Choices, seed: int) -> tuple[int, float]:
    """``count`` more Versions through the writer, linked to Shots outside the deep50 sequence; (rows, seconds)."""
    from sgcache.schema import load
    from sgcache.store.db import create_engine
    from sgcache.store.tables import Tables
    from sgcache.store.writer import Writer

    rng = random.Random(seed)
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("""
            SELECT s.id, s.code, s.project__id, lower(replace(p.name, ' ', '_')), coalesce(sq.code, 'SQ000')
            FROM shot s JOIN project p ON p.id = s.project__id
            LEFT JOIN sequence sq ON sq.id = s.sg_sequence__id
            WHERE s._active AND NOT (s.project__id = %s AND sq.code IS NOT DISTINCT FROM %s)
            ORDER BY s.id""", (choices.project_id, choices.sequence_code))
        shots = cur.fetchall()
        cur.execute("SELECT entity__id, id FROM task WHERE entity__type = 'Shot' AND _active ORDER BY id")
        tasks: dict[int, list[int]] = {}
        for shot_id, task_id in cur.fetchall():
            tasks.setdefault(shot_id, []).append(task_id)
        cur.execute("SELECT id FROM humanuser WHERE _active ORDER BY id")
        users = [r[0] for r in cur.fetchall()]
        cur.execute("SELECT coalesce(max(id), 0) FROM version")
        start = max(EXTRA_ID_START, cur.fetchone()[0] + 1)
    conn.close()
    if not shots or not users:
        raise SystemExit("--versions: the cache holds no Shot or HumanUser to link the extra Versions to")
    print(f"  linked to {len(shots)} Shots (about {count / len(shots):.0f} more Versions per Shot; the stand-in has "
          f"{choices.active_versions} in all)", flush=True)
    steps = [("lay", "Layout", "First layout pass"), ("anm", "Animation", "Blocking"),
             ("fx", "FX", "Sim update"), ("lgt", "Lighting", "Lighting pass"),
             ("cmp", "Compositing", "Addressed notes from dailies")]
    history = dt.datetime(2022, 2, 1, tzinfo=dt.UTC)
    engine = create_engine(dsn)
    writer = Writer(engine, Tables(load(CACHE_SCHEMA)))
    written = 0
    started = time.perf_counter()
    try:
        for first in range(0, count, LOAD_BATCH):
            batch = []
            for k in range(first, min(first + LOAD_BATCH, count)):
                shot_id, shot_code, project_id, project_dir, seq_code = shots[rng.randrange(len(shots))]
                step, department, description = steps[rng.randrange(len(steps))]
                version = f"v{k // len(shots) + 100:03d}"
                name = f"{shot_code}_{step}_{version}"
                first_frame, frames = 1001, rng.randint(40, 240)
                created = history + dt.timedelta(seconds=rng.randrange(700 * 86400))
                user = {"type": "HumanUser", "id": users[rng.randrange(len(users))]}
                shot_tasks = tasks.get(shot_id)
                base = f"/archive/{project_dir}/sequences/{seq_code}/{shot_code}/{step}"
                batch.append({
                    "type": "Version", "id": start + k, "code": name, "description": description,
                    "entity": {"type": "Shot", "id": shot_id}, "project": {"type": "Project", "id": project_id},
                    "sg_task": {"type": "Task", "id": rng.choice(shot_tasks)} if shot_tasks else None,
                    "sg_status_list": rng.choices(["vwd", "na", "rev"], weights=[82, 14, 4])[0],
                    "sg_department": department, "sg_first_frame": first_frame,
                    "sg_last_frame": first_frame + frames - 1, "frame_count": frames,
                    "frame_range": f"{first_frame}-{first_frame + frames - 1}",
                    "sg_path_to_frames": f"{base}/images/{version}/{name}.%04d.exr",
                    "sg_path_to_movie": f"{base}/review/{name}.mov",
                    "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "updated_at": (created + dt.timedelta(hours=rng.randint(0, 72))).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "created_by": user, "updated_by": user, "user": user,
                })
            written += writer.upsert("Version", batch)
            if (first // LOAD_BATCH) % 40 == 39:
                rate = written / (time.perf_counter() - started)
                print(f"  {written} rows ({rate:.0f} rows/s)", flush=True)
        seconds = time.perf_counter() - started
    finally:
        engine.dispose()
    return written, seconds


def settle(dsn: str) -> float:
    """VACUUM (ANALYZE) the cache's database, then CHECKPOINT: the timings that follow see its
    steady state, with no autovacuum of the rows just loaded and no checkpoint of their writes
    running under one call's clock and not under another's (sgcache and the floor are timed one
    after the other)."""
    started = time.perf_counter()
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("VACUUM (ANALYZE)")
            cur.execute("CHECKPOINT")
    finally:
        conn.close()
    return time.perf_counter() - started


# --- output -------------------------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    out = {"date": dt.date.today().isoformat(), "python": platform.python_version(), "platform": platform.platform(),
           "cpus": str(os.cpu_count())}
    for dist in ("sgcache", "shotgun_api3", "gunicorn", "flask", "werkzeug", "psycopg2-binary", "sqlalchemy",
                 "requests"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    try:
        server = subprocess.run(["psql", "--version"], capture_output=True, text=True, timeout=10)
        if server.returncode == 0:
            out["psql"] = server.stdout.split()[2]  # "psql (PostgreSQL) 15.20 (Debian ...)"
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        if head.returncode == 0:
            out["git"] = head.stdout.strip() + (" (modified files)" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return out


#: Each call's floor: the floor's own answer to the same call, or (deep50) to find_one. The floor
#: is timed in the call's own rounds and recorded under the call (deep50's "floor" row is the
#: floor's find_one, timed alongside deep50), so a ratio never divides figures from different
#: moments of the run.
FLOOR_OF = {"find_one": "find_one", "page500": "page500", "deep50": "find_one"}


def floor_ratio(results: list[Result], r: Result) -> float | None:
    """p50 of ``r`` over the p50 of its floor (same phase and clients), if it has one."""
    floor = find(results, r.phase, "floor", r.call, r.clients) if r.call in FLOOR_OF else None
    return r.p50_ms / floor.p50_ms if floor and r.target != "floor" and floor.p50_ms else None


def print_table(title: str, results: list[Result]) -> None:
    print(title)
    header = (f"{'call':<9} {'clients':>7} {'target':<9} {'outcome':<11} {'requests':>8} {'errors':>6} {'rps':>7} "
              f"{'p50 ms':>8} {'x floor':>7} {'p95 ms':>8} {'max ms':>8} {'client cpu':>10}")
    print(header)
    print("-" * len(header))
    previous = None
    for r in results:
        if previous is not None and (r.call, r.clients) != previous:
            print()
        previous = (r.call, r.clients)
        ratio = floor_ratio(results, r)
        print(f"{r.call:<9} {r.clients:>7} {r.target:<9} {r.outcome:<11} {r.requests:>8} {r.errors:>6} "
              f"{r.rps:>7.0f} {r.p50_ms:>8.2f} {f'{ratio:.2f}' if ratio else '-':>7} {r.p95_ms:>8.2f} "
              f"{r.max_ms:>8.1f} {r.client_cpu:>9.0%}")


def find(results: list[Result], phase: str, target: str, call: str, clients: int) -> Result | None:
    for r in results:
        if (r.phase, r.target, r.call, r.clients) == (phase, target, call, clients):
            return r
    return None


#: The targets, as ratios to the floor that hold on any machine: (call, limit of p50 / its floor's p50).
RATIO_TARGETS = (("find_one", 1.25), ("page500", 1.3), ("deep50", 3.0))
#: Throughput with this many clients or more: sgcache's requests per second / the floor's, at least.
THROUGHPUT_TARGET = (8, 0.85)


def targets_report(results: list[Result], phase: str, clients: list[int]) -> list[dict[str, Any]]:
    """The issue's targets, per number of clients: (name, value, limit, met)."""
    out = []
    for n in clients:
        for call, limit in RATIO_TARGETS:
            proxy = find(results, phase, "sgcache", call, n)
            floor = find(results, phase, "floor", call, n)
            if n > 1:
                continue  # latency targets are for one client; many clients have the throughput target
            if proxy and floor:
                ratio = proxy.p50_ms / floor.p50_ms
                out.append({"target": f"{call} p50 / {FLOOR_OF[call]} floor p50", "clients": n,
                            "value": round(ratio, 2), "limit": limit, "met": ratio <= limit,
                            "detail": f"{proxy.p50_ms:.2f} ms / {floor.p50_ms:.2f} ms"})
        proxy, floor = find(results, phase, "sgcache", "find_one", n), find(results, phase, "floor", "find_one", n)
        if n >= THROUGHPUT_TARGET[0] and proxy and floor:
            ratio = proxy.rps / floor.rps
            out.append({"target": "find_one rps / floor rps", "clients": n, "value": round(ratio, 2),
                        "limit": f">= {THROUGHPUT_TARGET[1]}", "met": ratio >= THROUGHPUT_TARGET[1],
                        "detail": f"{proxy.rps:.0f} / {floor.rps:.0f}"})
    return out


def print_targets(checks: list[dict[str, Any]]) -> None:
    for c in checks:
        verdict = "met" if c["met"] else "NOT MET"
        detail = f" ({c['detail']})" if c["detail"] else ""
        print(f"  {c['target']:<26} {c['clients']} clients: {c['value']:>7} (limit {c['limit']}){detail}: {verdict}")


# --- main -------------------------------------------------------------------------------------------------


@contextmanager
def scratch_dir(keep: bool) -> Iterator[Path]:
    import shutil

    path = Path(tempfile.mkdtemp(prefix="sgcache-bench-read-"))
    try:
        yield path
    finally:
        if keep:
            print(f"kept {path} (logs of the stand-in, the scan, the proxy and the floor)")
        else:
            shutil.rmtree(path, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--scale", type=at_least(), default=20, help="stand-in studio size (mock-site --scale)")
    parser.add_argument("--seed", type=int, default=0, help="stand-in data seed (mock-site --seed), and ours")
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432",
                        help="PostgreSQL server for the scratch database (trust auth, may CREATE DATABASE)")
    parser.add_argument("--workers", type=at_least(), default=2,
                        help="gunicorn workers of sgcache web and of the floor")
    parser.add_argument("--threads", type=at_least(), default=8,
                        help="threads per worker of sgcache web and of the floor")
    parser.add_argument("--clients", type=parse_clients, default=[1, 8], metavar="N,N",
                        help="numbers of concurrent client threads")
    parser.add_argument("--find-one-requests", type=at_least(), default=1000, help="find_one calls per run")
    parser.add_argument("--requests", type=at_least(), default=300, help="deep50, page500 and summarize calls per run")
    parser.add_argument("--warmup", type=at_least(0), default=5, help="untimed calls per client thread before each run")
    parser.add_argument("--rounds", type=at_least(), default=5,
                        help="rounds each call's requests are split over, the targets taking turns in each")
    parser.add_argument("--versions", type=at_least(0), default=0, metavar="N",
                        help="then load N more Versions through the writer and measure again")
    parser.add_argument("--proxy-set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="extra --set for sgcache web (repeatable)")
    parser.add_argument("--timeout", type=duration(), default=60.0, help="client timeout per call, seconds")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results here as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory and database")
    args = parser.parse_args()
    if min(args.workers, args.threads, args.scale, args.find_one_requests, args.requests) < 1 or args.warmup < 0 \
            or args.versions < 0:
        parser.error("--workers, --threads, --scale and the request counts must be at least 1")

    # Ctrl-C (even when started in the background, where SIGINT is inherited as ignored) and SIGTERM
    # unwind through the cleanup below, which stops every subprocess and drops the database.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_sigterm)
    wall_started = time.monotonic()
    command = shlex.join(sys.orig_argv)
    info = versions()
    print(f"command: {command}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info.items()))

    env = child_env()
    sgcache = [sys.executable, "-m", "sgcache"]
    children: list[Child] = []
    results: list[Result] = []
    outcomes: dict[str, str] = {}
    notes: dict[str, Any] = {}
    with ExitStack() as stack:
        tmp = stack.enter_context(scratch_dir(args.keep))
        dsn = stack.enter_context(scratch_database(args.server, f"sgcache_bench_read_{os.getpid()}", args.keep))

        def stop_children(exc_type: type[BaseException] | None, exc: BaseException | None, _tb: Any) -> None:
            STOP.set()
            if exc_type is not None and not (isinstance(exc, SystemExit) and isinstance(exc.code, str)):
                print(f"\nstopped by {exc_type.__name__}: {exc}", file=sys.stderr)
                for child in children:
                    print(f"the end of {child.name}'s output:\n{tail(child.log_path, 20)}", file=sys.stderr)
            for child in reversed(children):
                status = child.stop()
                if status not in (0, -signal.SIGTERM) and child.name != "scan":
                    print(f"  {child.name} exited with status {status}; the end of its output:\n"
                          f"{tail(child.log_path, 20)}", file=sys.stderr)

        stack.push(stop_children)

        site_port, proxy_port, floor_port = free_port(), free_port(), free_port()
        site_url = f"http://127.0.0.1:{site_port}"
        proxy_url, floor_url = f"http://127.0.0.1:{proxy_port}", f"http://127.0.0.1:{floor_port}"
        site = Child("mock-site", [*sgcache, "-q", "mock-site", "--bind", f"127.0.0.1:{site_port}",
                                   "--schema", str(SITE_SCHEMA), "--data", "demo", "--scale", str(args.scale),
                                   "--seed", str(args.seed)], tmp, env)
        children.append(site)
        seconds = wait_for_info(site, site_url, 600)
        print(f"stand-in: {site_url}, scale {args.scale}, seed {args.seed}, ready in {seconds:.1f} s")

        settings = ["--database", dsn, "--schema", str(CACHE_SCHEMA), "--set", f"site.base_url={site_url}",
                    "--set", f"site.script_name={SCRIPT_NAME}"]
        sync_env = dict(env, SGCACHE_SITE_API_KEY=API_KEY)
        started = time.monotonic()
        scan = Child("scan", [*sgcache, *settings, "scan", "--full", "--no-progress"], tmp, sync_env)
        children.append(scan)
        status = scan.wait(3600)
        seconds = time.monotonic() - started
        if status != 0:
            raise SystemExit(f"sgcache scan --full failed ({status}):\n{tail(scan.log_path)}")
        summary = [line for line in tail(scan.log_path, 5).splitlines() if "full import:" in line]
        print(f"cache: {dsn}, {summary[-1].strip() if summary else 'imported'} in {seconds:.1f} s "
              "(sgcache scan --full)")
        notes["import_seconds"] = round(seconds, 1)
        seconds = settle(dsn)
        print(f"VACUUM (ANALYZE) and CHECKPOINT: {seconds:.1f} s")

        choices = pick(dsn, args.seed)
        calls = make_calls(choices)
        print(f"find_one: {len(choices.version_ids)} random active Version ids of {choices.active_versions}; "
              f"page500: pages 1-{len(choices.pages)}")

        proxy_argv = [*sgcache, *settings, "--set", "log.level=warning", *sum((["--set", s] for s in args.proxy_set),
                                                                              []),
                      "web", "--bind", f"127.0.0.1:{proxy_port}", "--workers", str(args.workers),
                      "--threads", str(args.threads)]
        proxy = Child("sgcache-web", proxy_argv, tmp, sync_env)
        children.append(proxy)

        site_info = rpc(site_url, "info")
        (tmp / "read_floor.py").write_text(FLOOR_MODULE.format(sql=floor_sql(), page_sql=floor_page_sql()),
                                           encoding="utf-8")
        floor_env = dict(env, FLOOR_DSN=dsn, FLOOR_INFO=json.dumps(site_info), FLOOR_THREADS=str(args.threads))
        floor_argv = [sys.executable, "-m", "gunicorn", "--workers", str(args.workers), "--threads",
                      str(args.threads), "--worker-class", "gthread", "--bind", f"127.0.0.1:{floor_port}",
                      "--chdir", str(tmp), "--log-level", "warning", "--keep-alive", "75", "--no-control-socket",
                      "read_floor:app"]
        floor = Child("floor", floor_argv, tmp, floor_env)
        children.append(floor)

        def is_proxy(answer: Any) -> bool:
            body = answer.get("results", answer) if isinstance(answer, dict) else None
            return isinstance(body, dict) and "sgcache" in body

        seconds = wait_for_info(proxy, proxy_url, 120, is_proxy)
        proxy_state = rpc(proxy_url, "info")
        proxy_state = proxy_state.get("results", proxy_state)["sgcache"]
        print(f"sgcache web: {proxy_url}, {args.workers} workers x {args.threads} threads, ready in {seconds:.1f} s, "
              f"state {proxy_state}")
        print(f"  started as: {shlex.join(proxy_argv)}  (SGCACHE_SITE_API_KEY in the environment)")
        seconds = wait_for_info(floor, floor_url, 60)
        print(f"floor: {floor_url}, gunicorn gthread {args.workers} workers x {args.threads} threads, Flask + "
              f"psycopg2 pool, ready in {seconds:.1f} s; its one query:\n"
              + textwrap.indent(textwrap.fill(floor_sql(), 116), "    "))

        # A gunicorn worker still importing its app accepts no connection: let both finish, so the
        # client connections spread over the workers rather than all landing on the first one.
        time.sleep(3)
        most = max(args.clients)
        urls = {"sgcache": proxy_url, "stand-in": site_url, "floor": floor_url}

        def make_pools() -> dict[str, list[shotgun_api3.Shotgun]]:
            """Client connections to each target; those of the two gunicorn servers spread evenly
            over their workers (the stand-in is one process)."""
            servers = {"sgcache": (proxy, proxy_port), "floor": (floor, floor_port)}
            return {name: (spread_clients(url, args.timeout, most, servers[name][0].proc.pid, servers[name][1])
                           if name in servers else [connect(url, args.timeout) for _ in range(most)])
                    for name, url in urls.items()}

        pools = make_pools()
        for name, child, port in (("sgcache web", proxy, proxy_port), ("floor", floor, floor_port)):
            spread = connections_per_worker(child.proc.pid, port)
            if spread is not None:
                print(f"{name}: client connections per worker (pid: count): {spread}")
        deep_count = {name: len(calls["deep50"](pools[name][0], 0)) for name in ("stand-in", "sgcache")}
        notes["deep50_found"] = deep_count["sgcache"]
        print(f"deep50: filters {json.dumps(choices.deep_filters())} (project {choices.project_name!r}) -> "
              f"{deep_count['stand-in']} entities from the stand-in, {deep_count['sgcache']} from sgcache "
              f"(cache SQL count {choices.deep_expected})")
        check_answers(calls, choices, pools)
        probe = Probe(connect(proxy_url, args.timeout))
        for call, fn in calls.items():
            outcomes[call] = probe.outcome(proxy_url, fn)
        print("X-Sgcache-Outcome per call: " + ", ".join(f"{c} {o}" for c, o in outcomes.items()))
        print()

        def run(phase: str, plan: list[tuple[str, list[str]]]) -> list[Result]:
            """Each call with each number of clients: the targets take turns, ``--rounds`` times
            (each round's first target the next one along), so a drift in the machine's speed
            falls on every target alike rather than on whichever ran last."""
            out = []
            for call, targets in plan:
                count = args.find_one_requests if call == "find_one" else args.requests
                for clients in args.clients:
                    samples: dict[str, list[Sample]] = {target: [] for target in targets}
                    done = 0
                    for r in range(args.rounds):
                        share = count // args.rounds + (1 if r < count % args.rounds else 0)
                        for k in range(len(targets)):
                            target = targets[(r + k) % len(targets)]
                            for child in (site, proxy, floor):
                                child.check_alive()
                            fn = calls[FLOOR_OF[call]] if target == "floor" else calls[call]
                            samples[target].append(measure(fn, pools[target][:clients], share,
                                                           args.warmup if r == 0 else 0, offset=done))
                        done += share
                    for target in targets:
                        result = combine(phase, target, call, clients, samples[target])
                        key = call if phase == "base" else f"{call}+versions"
                        result.outcome = outcomes[key] if target == "sgcache" else "-"
                        out.append(result)
                        print(f"  {call:<9} {clients:>2} clients {target:<9}: {result.rps:7.0f} rps, "
                              f"p50 {result.p50_ms:7.2f} ms, p95 {result.p95_ms:7.2f} ms, {result.errors} errors",
                              flush=True)
                        for error in result.first_errors:
                            print(f"    error: {error:.300}")
            return out

        floored = ["sgcache", "floor", "stand-in"]  # deep50's floor: the floor's find_one, in deep50's rounds
        base = run("base", [("find_one", floored), ("deep50", floored), ("page500", floored),
                            ("summarize", ["sgcache", "stand-in"])])
        results += base
        extra: list[Result] = []
        if args.versions:
            print(f"\nloading {args.versions} more Versions straight into the cache through Writer.upsert "
                  f"(batches of {LOAD_BATCH}; the stand-in does not get them)", flush=True)
            written, seconds = load_versions(dsn, args.versions, choices, args.seed)
            notes["load"] = {"rows": written, "seconds": round(seconds, 1), "rows_per_s": round(written / seconds)}
            print(f"loaded {written} rows in {seconds:.1f} s ({written / seconds:.0f} rows/s)")
            seconds = settle(dsn)
            with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
                cur.execute("SELECT count(*), pg_size_pretty(pg_total_relation_size('version')) FROM version")
                rows, size = cur.fetchone()
            conn.close()
            print(f"VACUUM (ANALYZE) and CHECKPOINT: {seconds:.1f} s; the version table now holds {rows} rows "
                  f"({size} with indexes)")
            # The servers closed the connections left idle during the load (keep-alive 75 s): connect afresh.
            for sg in [probe.sg, *(sg for pool in pools.values() for sg in pool)]:
                sg.close()
            pools = make_pools()
            probe = Probe(connect(proxy_url, args.timeout))
            for name, child, port in (("sgcache web", proxy, proxy_port), ("floor", floor, floor_port)):
                spread = connections_per_worker(child.proc.pid, port)
                if spread is not None:
                    print(f"{name}: client connections per worker (pid: count): {spread}")
            again = len(calls["deep50"](pools["sgcache"][0], 0))
            print(f"deep50 through sgcache now returns {again} entities (before: {deep_count['sgcache']})")
            started = time.perf_counter()
            calls["summarize"](pools["sgcache"][0], 0)
            notes["summarize_once_ms"] = round((time.perf_counter() - started) * 1000, 1)
            print(f"summarize through sgcache, one call: {notes['summarize_once_ms']:.0f} ms (not in the table)")
            for call in ("find_one", "deep50", "page500"):
                outcomes[f"{call}+versions"] = probe.outcome(proxy_url, calls[call])
            print("X-Sgcache-Outcome per call: " + ", ".join(f"{c} {outcomes[c + '+versions']}"
                                                           for c in ("find_one", "deep50", "page500")))
            print()
            extra = run("versions", [("find_one", ["sgcache", "floor"]), ("deep50", ["sgcache", "floor"]),
                                     ("page500", ["sgcache", "floor"])])
            results += extra

        for sg in [probe.sg, *(sg for pool in pools.values() for sg in pool)]:
            sg.close()
        failed = [r for r in results if r.errors]
        if failed:
            print(f"\nthe proxy's log (end):\n{tail(proxy.log_path)}")
        warnings = [line for line in tail(proxy.log_path, 200).splitlines() if "WARNING" in line or "ERROR" in line]
        if warnings:
            print(f"\nthe proxy logged {len(warnings)} warnings or errors; the last:\n" + "\n".join(warnings[-5:]))

    print()
    print_table(f"reads at scale {args.scale} ({choices.active_versions} active Versions), sgcache web "
                f"{args.workers}x{args.threads}, floor {args.workers}x{args.threads}:", base)
    checks = targets_report(results, "base", args.clients)
    print("\ntargets:")
    print_targets(checks)
    if extra:
        print()
        print_table(f"with {args.versions} more Versions in the cache only (the stand-in does not have them; "
                    f"{args.versions + choices.active_versions} active Versions in the cache):", extra)
        extra_checks = targets_report(results, "versions", args.clients)
        print("\ntargets with the extra Versions:")
        print_targets(extra_checks)
        print("\nchange of sgcache p50 with the extra Versions (after / before):")
        for r in extra:
            before = find(results, "base", r.target, r.call, r.clients)
            if before:
                print(f"  {r.call:<9} {r.clients} clients {r.target:<8}: {before.p50_ms:7.2f} ms -> "
                      f"{r.p50_ms:7.2f} ms ({r.p50_ms / before.p50_ms:.2f}x)")
        checks += [dict(c, phase="versions") for c in extra_checks]
    wall = time.monotonic() - wall_started
    print(f"\nwall time {wall:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({
            "command": command, "versions": info, "wall_seconds": round(wall, 1), "notes": notes,
            "settings": {"scale": args.scale, "seed": args.seed, "workers": args.workers, "threads": args.threads,
                         "clients": args.clients, "find_one_requests": args.find_one_requests,
                         "requests": args.requests, "warmup": args.warmup, "rounds": args.rounds,
                         "extra_versions": args.versions, "proxy_set": args.proxy_set},
            "choices": asdict(choices), "deep_filters": choices.deep_filters(), "outcomes": outcomes,
            "floor_sql": floor_sql(), "floor_page_sql": floor_page_sql(), "targets": checks,
            "results": [dict(asdict(r), floor_ratio=round(ratio, 3) if (ratio := floor_ratio(results, r)) else None)
                        for r in results]}, indent=2) + "\n", encoding="utf-8")
        print(f"results written to {args.json}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
