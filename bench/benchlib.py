"""What the benchmarks share: child processes, free ports, the stand-in's credentials, timing helpers.

Imported by the scripts in this folder (run as ``python bench/NAME.py``, which puts this folder
on ``sys.path``); not part of the sgcache package.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import shotgun_api3

ROOT = Path(__file__).resolve().parent.parent
SCRIPT_NAME = "sgcache"
API_KEY = "sgcache-demo-key"  # the stand-in's default script key (demo only)


def scratch_postgres() -> tuple[str, Callable[[], None]]:
    """(URL of a new, empty database on the local PostgreSQL server, how to drop it). The server
    is ``SGCACHE_TEST_DATABASE_URL``, else postgresql://postgres@127.0.0.1/postgres (trust auth)."""
    import uuid

    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    server = make_url(os.environ.get("SGCACHE_TEST_DATABASE_URL") or "postgresql://postgres@127.0.0.1/postgres")
    server = server.set(drivername="postgresql+psycopg2")
    name = f"sgcache_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return server.set(database=name).render_as_string(hide_password=False), drop


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env() -> dict[str, str]:
    """This environment without any SGCACHE_* setting, with the repository first on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGCACHE_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no output)"
    return "\n".join(text[-lines:]) or "(empty)"


class Child:
    """One subprocess in a session of its own (Ctrl-C reaches only us), output to a log file."""

    def __init__(self, name: str, argv: list[str], cwd: Path, env: dict[str, str]):
        self.name = name
        self.argv = argv
        self.log_path = cwd / f"{name}.log"
        self._log = open(self.log_path, "wb")  # closed in stop()
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise SystemExit(f"{self.name} exited with status {self.proc.returncode}; its output:\n"
                             f"{tail(self.log_path)}")

    def wait(self, seconds: float) -> int:
        """Wait for the process to end by itself; its exit status."""
        try:
            return self.proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            raise SystemExit(f"{self.name} did not finish within {seconds:.0f} s; its output:\n"
                             f"{tail(self.log_path)}") from None

    def stop(self, grace: float = 40.0) -> int | None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL; the exit status."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    print(f"  {self.name} did not stop within {grace:.0f} s of SIGTERM: killed", file=sys.stderr)
                    self.proc.kill()
                    self.proc.wait(timeout=10)
        finally:
            self._log.close()
        return self.proc.returncode


def rpc(url: str, method: str, params: list | None = None, timeout: float = 5.0) -> Any:
    """One JSON-RPC call with urllib (no environment proxies), for readiness checks."""
    body = json.dumps({"method_name": method, "params": params or []}).encode()
    request = urllib.request.Request(f"{url}/api3/json", data=body,
                                     headers={"Content-Type": "application/json; charset=utf-8"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=timeout) as response:
        return json.loads(response.read())


def wait_for_info(child: Child, url: str, seconds: float, check: Callable[[Any], bool] = lambda _: True) -> float:
    """Poll ``info`` until it answers (and ``check`` agrees); the seconds it took."""
    started = time.monotonic()
    last_error = "no answer"
    while time.monotonic() - started < seconds:
        child.check_alive()
        try:
            answer = rpc(url, "info")
            if check(answer):
                return time.monotonic() - started
            last_error = f"unexpected answer {answer!r:.300}"
        except (OSError, ValueError) as e:
            last_error = str(e)
        time.sleep(0.2)
    raise SystemExit(f"{child.name} did not answer info at {url} within {seconds:.0f} s ({last_error}); its "
                     f"output:\n{tail(child.log_path)}")


def connections_per_worker(master_pid: int, port: int) -> dict[int, int] | None:
    """Established connections on ``port`` held by each child of ``master_pid`` (Linux /proc; None elsewhere)."""
    try:
        established = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as fh:
                next(fh)
                for line in fh:
                    parts = line.split()
                    if parts[3] == "01" and int(parts[1].rsplit(":", 1)[1], 16) == port:  # 01: ESTABLISHED
                        established.add(parts[9])
        out = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) != master_pid:
                    continue
                inodes = {os.readlink(fd)[8:-1] for fd in (entry / "fd").iterdir()
                          if os.readlink(fd).startswith("socket:[")}
            except OSError:
                continue
            out[int(entry.name)] = len(inodes & established)
        return out
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return float("nan")
    rank = max(1, -(-len(ordered) * p // 100))  # ceil(n * p / 100)
    return ordered[int(rank) - 1]


def connect(url: str, timeout: float) -> shotgun_api3.Shotgun:
    sg = shotgun_api3.Shotgun(url, script_name=SCRIPT_NAME, api_key=API_KEY, connect=False)
    sg.config.timeout_secs = timeout
    sg.config.max_rpc_attempts = 1  # an error is counted, not retried behind our back
    sg.info()  # opens the connection and fills server_caps (find needs them)
    return sg


def spread_clients(url: str, timeout: float, count: int, master_pid: int, port: int,
                   tries: int = 200) -> list[shotgun_api3.Shotgun]:
    """``count`` connected clients of the gunicorn server ``master_pid`` listening on ``port``,
    spread evenly over its workers. A keep-alive connection stays with the worker that accepted
    it, and which worker accepts is chance: eight clients could land seven on one worker, which
    then serves them on one core while the other idles, and a throughput measured so says more
    about that draw than about the server. A connection landing on a worker that already has its
    share is closed and made again (at most ``tries`` times in all; then the spread is left as it
    fell, and the caller prints it). Where /proc cannot say, the clients are connected as they come."""
    if connections_per_worker(master_pid, port) is None:
        return [connect(url, timeout) for _ in range(count)]
    clients: list[shotgun_api3.Shotgun] = []
    mine: dict[int, int] = {}
    spare = tries
    while len(clients) < count:
        before = connections_per_worker(master_pid, port) or {}
        sg = connect(url, timeout)
        after = connections_per_worker(master_pid, port) or {}
        share = -(-count // max(1, len(after)))  # ceil(count / workers)
        grew = [pid for pid, n in after.items() if n > before.get(pid, 0)]
        if spare > 0 and (len(grew) != 1 or mine.get(grew[0], 0) >= share):
            sg.close()
            spare -= 1
            continue
        if len(grew) == 1:
            mine[grew[0]] = mine.get(grew[0], 0) + 1
        clients.append(sg)
    return clients


def at_least(low: int = 1) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``low`` (a count of 0 or less would make a
    run that measures nothing, or fails halfway with a less clear error)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value
    return parse


def duration(*, zero: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number above 0 (at least 0 with ``zero``)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
            raise argparse.ArgumentTypeError(f"must be {'at least' if zero else 'above'} 0, got {text}")
        return value
    return parse


def parse_clients(value: str) -> list[int]:
    try:
        out = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of integers, got {value!r}") from None
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError("client counts must be at least 1")
    return out


def on_sigterm(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


class CachedProxy:
    """``sgcache mock-site`` with the demo studio at ``scale``, a scratch SQLite cache filled by a
    full import, and ``sgcache web`` (gunicorn, ``workers`` x ``threads``) in front of it; all
    child processes, stopped by ``stop()``. ``site_url`` and ``proxy_url`` are where they answer."""

    def __init__(self, prefix: str, *, scale: int = 1, workers: int = 2, threads: int = 8,
                 settings: tuple[str, ...] = (), latency_ms: float = 0.0, database: str | None = None):
        import tempfile

        self.tmp = Path(tempfile.mkdtemp(prefix=prefix))
        env = child_env()
        env["SGCACHE_SITE_API_KEY"] = API_KEY
        site_port, proxy_port = free_port(), free_port()
        self.site_url, self.proxy_url = f"http://127.0.0.1:{site_port}", f"http://127.0.0.1:{proxy_port}"
        # ``database``: a URL of an empty database to fill instead of the scratch SQLite file.
        settings = ["--database", database or f"sqlite:///{self.tmp / 'cache.sqlite'}", "--schema",
                    str(ROOT / "schema" / "demo.yml"), "--set", f"site.base_url={self.site_url}", "--set",
                    f"site.script_name={SCRIPT_NAME}", *(a for s in settings for a in ("--set", s))]
        sgcache = [sys.executable, "-m", "sgcache", "--config", "/dev/null"]
        self.children: list[Child] = []
        try:
            self.site = Child("site", [*sgcache, "mock-site", "--bind", f"127.0.0.1:{site_port}", "--data", "demo",
                                       "--scale", str(scale), "--schema", str(ROOT / "schema" / "demo-site.yml"),
                                       "--latency-ms", str(latency_ms)],
                              self.tmp, env)
            self.children.append(self.site)
            wait_for_info(self.site, self.site_url, 120)
            Child("migrate", [*sgcache, *settings, "schema", "migrate"], self.tmp, env).wait(120)
            Child("scan", [*sgcache, *settings, "scan", "--full", "--no-progress"], self.tmp, env).wait(600)
            self.web = Child("web", [*sgcache, *settings, "web", "--bind", f"127.0.0.1:{proxy_port}", "--workers",
                                     str(workers), "--threads", str(threads)], self.tmp, env)
            self.children.append(self.web)
            wait_for_info(self.web, self.proxy_url, 60)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop(grace=10)


# --- sgcache's own counters and the run's context -------------------------------------------------

Sample = tuple[str, tuple[tuple[str, str], ...]]  # (sample name, sorted (label, value) pairs)


def read_counters(proxy_url: str, names: tuple[str, ...] = ("sgcache_requests_total", "sgcache_passthrough_total"),
                  timeout: float = 10.0) -> dict[Sample, float]:
    """The samples called ``names`` from ``/_sgcache/metrics`` (Prometheus text, every worker added
    up): (name, labels) -> value. Subtract two readings to count what happened in between."""
    from prometheus_client.parser import text_string_to_metric_families

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{proxy_url}/_sgcache/metrics", timeout=timeout) as response:
        text = response.read().decode("utf-8")
    out: dict[Sample, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in names:
                key = (s.name, tuple(sorted(s.labels.items())))
                out[key] = out.get(key, 0.0) + s.value
    return out


def counter_delta(before: dict[Sample, float], after: dict[Sample, float]) -> dict[Sample, float]:
    """What each counter gained between two :func:`read_counters` readings (only those that moved)."""
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0) > 0}


def run_context() -> dict[str, str]:
    """Where and on what a run happened, for a benchmark's JSON: date, git commit, CPUs, versions."""
    import datetime as dt
    import platform
    from importlib import metadata

    out = {"date": dt.date.today().isoformat(), "python": platform.python_version(), "cpus": str(os.cpu_count())}
    for dist in ("sgcache", "shotgun_api3"):
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
