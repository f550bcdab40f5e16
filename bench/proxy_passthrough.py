"""Benchmark: requests per second and p50/p95 latency of ``info`` and a passthrough ``read``, through
``sgcache web`` and made directly to the stand-in site.

    .venv/bin/python bench/proxy_passthrough.py [--info-requests 2000] [--read-requests 1000]
        [--clients 1,8] [--workers 2] [--threads 8] [--latency-ms 0] [--scale 1] [--json FILE]

Starts ``sgcache mock-site`` (studio data at ``--scale``, ``--latency-ms`` added to every request)
in a process of its own, migrates a scratch SQLite cache in a temporary directory with
schema/demo.yml, and starts ``sgcache web`` (gunicorn gthread, ``--workers`` x ``--threads``) in
front of the stand-in. Then, with the real shotgun_api3 client (one Shotgun instance per client
thread, connected before the clock starts), it makes the calls with each number of concurrent
clients against the proxy and against the stand-in directly:

- ``info``: ``sg.info()``; the proxy answers it from its copy of the site's info (refreshed every
  ``site.info_ttl`` seconds, per worker process);
- ``read``: ``sg.find("Shot", [["sg_status_list", "is_not", "omt"]], ["code", "sg_sequence",
  "sg_status_list"], limit=50)``, which this version of the proxy passes through to the site.

Every process runs on this machine, so the client threads, the proxy and the stand-in share its
CPUs; the "client cpu" column (CPU time of this process over the wall time, 100% = one core) shows
when the client itself is the limit. Subprocesses run in the temporary directory with the
SGCACHE_* environment removed, so no sgcache.yml or setting from the caller leaks in. Run by hand;
the figures go in issue notes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

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
    tail,
    wait_for_info,
)

READ_ARGS: tuple[str, list, list[str]] = ("Shot", [["sg_status_list", "is_not", "omt"]],
                                          ["code", "sg_sequence", "sg_status_list"])
READ_LIMIT = 50


# --- subprocesses -----------------------------------------------------------------------------------


def request_outcomes(log_path: Path) -> dict[str, int]:
    """Counts of "method outcome status" in the proxy's request log lines (empty below log level info)."""
    counts: dict[str, int] = {}
    try:
        with open(log_path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if "event=request " not in line:
                    continue
                fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
                key = f"{fields.get('method', '-')} {fields.get('outcome', '-')} {fields.get('status', '-')}"
                counts[key] = counts.get(key, 0) + 1
    except OSError:
        pass
    return counts


# --- measuring --------------------------------------------------------------------------------------


@dataclass
class Result:
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
    first_errors: list[str] = field(default_factory=list)


def call_info(sg: shotgun_api3.Shotgun) -> Any:
    return sg.info()


def call_read(sg: shotgun_api3.Shotgun) -> Any:
    entity_type, filters, fields = READ_ARGS
    return sg.find(entity_type, filters, fields, limit=READ_LIMIT)


#: Set when the run is abandoned (Ctrl-C, an error): client threads stop at their next call.
STOP = threading.Event()

CALLS: dict[str, Callable[[shotgun_api3.Shotgun], Any]] = {"info": call_info, "read": call_read}


def measure(target: str, call: str, sgs: list[shotgun_api3.Shotgun], requests: int) -> Result:
    """``requests`` calls shared by ``len(sgs)`` threads, one Shotgun each, started together."""
    fn = CALLS[call]
    clients = len(sgs)
    shares = [requests // clients + (1 if i < requests % clients else 0) for i in range(clients)]
    latencies: list[list[float]] = [[] for _ in sgs]
    errors: list[list[str]] = [[] for _ in sgs]
    ready = threading.Barrier(clients + 1)

    def worker(i: int) -> None:
        sg, mine, errs = sgs[i], latencies[i], errors[i]
        try:
            fn(sg)  # warm: this call kind on this connection, untimed
        except Exception as e:  # counted below
            errs.append(f"warm-up: {type(e).__name__}: {e}")
        ready.wait()
        clock = time.perf_counter
        for _ in range(shares[i]):
            if STOP.is_set():
                return
            started = clock()
            try:
                fn(sg)
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
    ordered = sorted(x for lat in latencies for x in lat)
    all_errors = [e for errs in errors for e in errs]
    timed_errors = sum(1 for e in all_errors if not e.startswith("warm-up"))
    return Result(target, call, clients, requests, timed_errors, seconds, len(ordered) / seconds,
                  percentile(ordered, 50) * 1000, percentile(ordered, 95) * 1000,
                  (ordered[-1] if ordered else float("nan")) * 1000, cpu / seconds, all_errors[:5])


# --- output -----------------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform(),
           "cpus": str(os.cpu_count())}
    for dist in ("sgcache", "shotgun_api3", "gunicorn", "flask", "werkzeug", "requests", "sqlalchemy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
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


def print_table(results: list[Result]) -> None:
    header = (f"{'target':<9} {'call':<5} {'clients':>7} {'requests':>8} {'errors':>6} {'rps':>8} {'p50 ms':>8} "
              f"{'p95 ms':>8} {'max ms':>8} {'client cpu':>10}")
    print(header)
    print("-" * len(header))
    previous = None
    for r in results:
        if previous is not None and (r.call, r.clients) != previous:
            print()
        previous = (r.call, r.clients)
        print(f"{r.target:<9} {r.call:<5} {r.clients:>7} {r.requests:>8} {r.errors:>6} {r.rps:>8.0f} "
              f"{r.p50_ms:>8.2f} {r.p95_ms:>8.2f} {r.max_ms:>8.1f} {r.client_cpu:>9.0%}")


# --- main ---------------------------------------------------------------------------------------------


@contextmanager
def scratch_dir(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="sgcache-bench-proxy-"))
    try:
        yield path
    finally:
        if keep:
            print(f"kept {path} (logs of the stand-in and the proxy, the cache database)")
        else:
            shutil.rmtree(path, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--info-requests", type=at_least(), default=2000, help="info calls per run")
    parser.add_argument("--read-requests", type=at_least(), default=1000, help="read (find) calls per run")
    parser.add_argument("--clients", type=parse_clients, default=[1, 8], metavar="N,N",
                        help="numbers of concurrent client threads")
    parser.add_argument("--calls", default="info,read", help="which calls to measure (info, read)")
    parser.add_argument("--workers", type=at_least(), default=2, help="gunicorn workers of sgcache web")
    parser.add_argument("--threads", type=at_least(), default=8, help="threads per worker of sgcache web")
    parser.add_argument("--latency-ms", type=duration(zero=True), default=0.0,
                        help="delay the stand-in adds to every request (mock-site --latency-ms)")
    parser.add_argument("--scale", type=at_least(), default=1, help="stand-in studio size (mock-site --scale)")
    parser.add_argument("--seed", type=int, default=0, help="stand-in data seed (mock-site --seed)")
    parser.add_argument("--proxy-set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="extra --set for sgcache web, e.g. log.level=warning (repeatable)")
    parser.add_argument("--timeout", type=duration(), default=60.0, help="client timeout per call, seconds")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results here as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory and its logs")
    args = parser.parse_args()
    calls = [c.strip() for c in args.calls.split(",") if c.strip()]
    if not calls or set(calls) - set(CALLS):
        parser.error(f"--calls: choose from {', '.join(CALLS)}")
    if args.workers < 1 or args.threads < 1 or args.scale < 1:
        parser.error("--workers, --threads and --scale must be at least 1")
    requests = {"info": args.info_requests, "read": args.read_requests}

    # Ctrl-C (even when started in the background, where SIGINT is inherited as ignored) and SIGTERM
    # unwind through the cleanup below, which stops the stand-in and the proxy.
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
    with ExitStack() as stack:
        tmp = stack.enter_context(scratch_dir(args.keep))

        def stop_children(exc_type: type[BaseException] | None, exc: BaseException | None, _tb: Any) -> None:
            STOP.set()
            # (our own SystemExit messages already carry the end of the relevant output)
            if exc_type is not None and not (isinstance(exc, SystemExit) and isinstance(exc.code, str)):
                print(f"\nstopped by {exc_type.__name__}: {exc}", file=sys.stderr)
                for child in children:
                    print(f"the end of {child.name}'s output:\n{tail(child.log_path, 20)}", file=sys.stderr)
            for child in reversed(children):
                status = child.stop()
                if status not in (0, -signal.SIGTERM):
                    print(f"  {child.name} exited with status {status}; the end of its output:\n"
                          f"{tail(child.log_path, 20)}", file=sys.stderr)

        stack.push(stop_children)

        site_port, proxy_port = free_port(), free_port()
        site_url, proxy_url = f"http://127.0.0.1:{site_port}", f"http://127.0.0.1:{proxy_port}"
        site = Child("mock-site", [*sgcache, "-q", "mock-site", "--bind", f"127.0.0.1:{site_port}",
                                   "--schema", str(ROOT / "schema" / "demo-site.yml"), "--data", "demo",
                                   "--scale", str(args.scale), "--seed", str(args.seed),
                                   "--latency-ms", str(args.latency_ms)], tmp, env)
        children.append(site)

        database = f"sqlite:///{tmp / 'cache.sqlite'}"
        settings = ["--database", database, "--schema", str(ROOT / "schema" / "demo.yml"),
                    "--set", f"site.base_url={site_url}", "--set", f"site.script_name={SCRIPT_NAME}"]
        for item in args.proxy_set:
            settings += ["--set", item]
        migrate = subprocess.run([*sgcache, *settings, "schema", "migrate"], cwd=tmp, env=env, capture_output=True,
                                 text=True, timeout=300)
        if migrate.returncode != 0:
            raise SystemExit(f"schema migrate failed ({migrate.returncode}):\n{migrate.stdout}{migrate.stderr}")
        print(f"cache: {migrate.stdout.strip()}")

        seconds = wait_for_info(site, site_url, 300)
        print(f"stand-in: {site_url}, scale {args.scale}, latency {args.latency_ms:g} ms, ready in {seconds:.1f} s")

        proxy_env = dict(env, SGCACHE_SITE_API_KEY=API_KEY)
        proxy_argv = [*sgcache, *settings, "web", "--bind", f"127.0.0.1:{proxy_port}", "--workers",
                      str(args.workers), "--threads", str(args.threads)]
        proxy = Child("sgcache-web", proxy_argv, tmp, proxy_env)
        children.append(proxy)

        def is_proxy(answer: Any) -> bool:
            body = answer.get("results", answer) if isinstance(answer, dict) else None
            return isinstance(body, dict) and "sgcache" in body

        seconds = wait_for_info(proxy, proxy_url, 120, is_proxy)
        print(f"sgcache web: {proxy_url}, {args.workers} workers x {args.threads} threads, ready in {seconds:.1f} s")
        print(f"  started as: {shlex.join(proxy_argv)}  (SGCACHE_SITE_API_KEY in the environment)")

        most = max(args.clients)
        targets = {"stand-in": site_url, "sgcache": proxy_url}
        pools = {name: [connect(url, args.timeout) for _ in range(most)] for name, url in targets.items()}
        spread = connections_per_worker(proxy.proc.pid, proxy_port)
        if spread is not None:
            print(f"client connections per sgcache web worker (pid: count): {spread}")
        direct, proxied = (call_read(pools[name][0]) for name in ("stand-in", "sgcache"))
        if direct != proxied:
            raise SystemExit(f"the proxy's read answer differs from the stand-in's:\n{direct!r:.500}\n"
                             f"{proxied!r:.500}")
        print(f"read: {READ_ARGS[0]} {READ_ARGS[1]} {READ_ARGS[2]} limit={READ_LIMIT} -> {len(direct)} rows, "
              "the same through the proxy")
        print()

        for call in calls:
            for clients in args.clients:
                for target in ("stand-in", "sgcache"):
                    proxy.check_alive()
                    site.check_alive()
                    result = measure(target, call, pools[target][:clients], requests[call])
                    results.append(result)
                    print(f"  {target:<9} {call:<5} {clients:>2} clients: {result.rps:7.0f} rps, "
                          f"p50 {result.p50_ms:7.2f} ms, p95 {result.p95_ms:7.2f} ms, {result.errors} errors",
                          flush=True)
                    for error in result.first_errors:
                        print(f"    error: {error:.300}")

        for sg in (sg for pool in pools.values() for sg in pool):
            sg.close()
        outcomes = request_outcomes(proxy.log_path)
        if outcomes:
            print("\nthe proxy's request log, method outcome status: "
                  + ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items())))
        failed = [r for r in results if r.errors]
        if failed:
            print(f"\nthe proxy's log (end):\n{tail(proxy.log_path)}")

    print()
    print_table(results)
    wall = time.monotonic() - wall_started
    print(f"\nwall time {wall:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({
            "command": command, "versions": info, "wall_seconds": round(wall, 1),
            "settings": {"workers": args.workers, "threads": args.threads, "latency_ms": args.latency_ms,
                         "scale": args.scale, "seed": args.seed, "proxy_set": args.proxy_set,
                         "read": {"entity_type": READ_ARGS[0], "filters": READ_ARGS[1], "fields": READ_ARGS[2],
                                  "limit": READ_LIMIT}},
            "results": [asdict(r) for r in results]}, indent=2) + "\n", encoding="utf-8")
        print(f"results written to {args.json}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
