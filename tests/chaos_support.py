"""The chaos harness shared by ``tests/test_chaos.py`` (a short run) and ``bench/chaos.py`` (minutes).

It runs the product as a user does: ``sgcache mock-site`` (late events on), ``sgcache auto`` (the
watcher and the scanner) and ``sgcache web`` (gunicorn) as processes of their own on a scratch
PostgreSQL database. While a writer makes random creates, updates, link changes, retirements and
revivals (through the proxy, straight to the site, and as a script whose writes make no events)
and a reader compares finds through the proxy with the same finds on the site, a chaos thread
SIGKILLs the watcher, the scanner and gunicorn workers, terminates their PostgreSQL backends,
stalls and fails the site, and sends hostile requests through the proxy. Then it stops the
writes, lets the watcher catch up, runs one incremental ``sgcache scan`` and checks that
``sgcache validate data`` finds nothing, that every site event was applied exactly once, that
nothing answered HTTP 500, and that every reader mismatch is explained by event lag.

Every random choice comes from one seed (printed), so a failing run can be replayed (timing
still varies). Not part of the sgcache package; ``bench/chaos.py`` loads this file by path.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
import shotgun_api3
import sqlalchemy as sa
import yaml
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = {"script_name": "sgcache", "api_key": "sgcache-demo-key"}
QUIET = {"script_name": "quiet-script", "api_key": "quiet-demo-key"}  # writes make no events
#: The cached slice of schema/demo.yml: small enough to import and validate in seconds, with
#: entity links, multi-entity links and their reverse fields (Shot.tasks, Sequence.shots, Asset.shots);
#: Group, Element and Scene because Task's links may point there (a read of a link into an uncached type
#: passes through).
CACHED_TYPES = ["Project", "Sequence", "Shot", "Asset", "Task", "Step", "HumanUser", "Group", "Element", "Scene"]
SHOT_STATUSES = ["cbb", "fin", "ip", "omt", "hld", "rdy", "wtg"]
TASK_STATUSES = ["fin", "ip", "hld", "rdy", "wtg"]
FIELDS = {
    "Shot": ["code", "description", "sg_status_list", "sg_cut_in", "sg_sequence", "assets", "tasks", "project"],
    "Task": ["content", "sg_status_list", "entity", "task_assignees", "project", "step", "entity.Shot.code"],
    "Asset": ["code", "description", "sg_status_list", "shots", "tasks", "project"],
    "Sequence": ["code", "description", "shots", "project"],
}
BY_ID = [{"field_name": "id", "direction": "asc"}]


@dataclasses.dataclass
class ChaosOptions:
    seconds: float  # of chaos (writes, reads and faults together)
    seed: int
    database_server: str  # a PostgreSQL URL; a scratch database is made next to it and dropped
    workdir: Path  # logs, config and schema files
    late_events: float = 0.2
    scan_interval: float = 3.0
    writers: int = 3  # threads
    readers: int = 2
    write_pause: float = 0.2  # mean seconds between two writes of one writer
    read_pause: float = 0.05  # mean seconds between two checked reads
    fault_pause: float = 2.0  # mean seconds between two chaos actions
    max_sync_kills: int = 2  # per child of `sgcache auto`: its restart pause doubles with every death
    catch_up_seconds: float = 90.0
    log: Callable[[str], None] = print


# --- processes --------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Child:
    """A process in a session (and process group) of its own, its output in ``<workdir>/<name>.log``."""

    def __init__(self, name: str, argv: list[str], workdir: Path, env: dict[str, str]):
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no output)"

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM to the process, then SIGKILL to its whole group (children included)."""
        try:
            if self.alive():
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    pass
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # whatever is left of the group
            except (ProcessLookupError, PermissionError):
                pass
            if self.alive():
                self.proc.wait(timeout=10)
        finally:
            self._log.close()


def children_of(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the live children of ``pid``, from /proc."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) != pid or fields[0] == "Z":
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        out.append((int(entry.name), cmdline))
    return sorted(out)


def postgres_client_ports(pid: int, server_port: int) -> set[int]:
    """Local ports of the TCP connections ``pid`` holds to ``server_port`` (its PostgreSQL sessions)."""
    try:
        inodes = {os.readlink(fd)[8:-1] for fd in Path(f"/proc/{pid}/fd").iterdir()
                  if os.readlink(fd).startswith("socket:[")}
    except OSError:
        return set()
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[9] in inodes and int(parts[2].rsplit(":", 1)[1], 16) == server_port:
                ports.add(int(parts[1].rsplit(":", 1)[1], 16))
    return ports


# --- the scratch database ---------------------------------------------------------------------------------


@contextmanager
def scratch_database(server: str) -> Iterator[str]:
    """A fresh database on the server of ``server`` (or, without the right to create one, a
    schema of its own in that database), dropped afterwards; yields its URL."""
    url = make_url(server)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg2")
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    name = f"sgcache_chaos_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        kind = "database"
        result = url.set(database=name)
    except sa.exc.ProgrammingError:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
        kind = "schema"
        result = url.update_query_dict({"options": f"-csearch_path={name}"})
    try:
        yield result.render_as_string(hide_password=False)
    finally:
        if os.environ.get("SGCACHE_CHAOS_KEEP_DATABASE"):  # to look into a failed run
            print(f"chaos: kept the scratch {kind} {name}")
        else:
            with admin.connect() as conn:
                if kind == "database":
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                else:
                    conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        admin.dispose()


# --- figures --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Write:
    started: float  # wall clock, seconds
    ended: float
    path: str  # proxy | site | quiet
    kind: str
    entity_type: str
    entity_id: int | None
    touched: set[tuple[str, int]]
    outcome: str  # ok | fault | error


@dataclasses.dataclass
class Mismatch:
    started: float
    label: str
    outcome: str  # the proxy's X-Sgcache-Outcome
    unapplied_after: int  # the cursor at the start: every id above it is unapplied
    gaps: set[int]
    scans: dict[str, float]  # entity type -> wall time of the start of its last completed scan
    differing: dict[tuple[str, int], set[tuple[str, int]]]  # entity -> the entities it links to, both sides
    example: str
    versions: dict[tuple[str, int], tuple[Any, Any]]  # entity -> (the proxy's, the site's)
    explained_by: str = ""
    unexplained: str = ""  # the first entity no rule explains, with both versions


class Figures:
    """What the run counts and prints."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.writes: Counter[str] = Counter()  # "kind path outcome"
        self.kills: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.hostile: Counter[str] = Counter()
        self.reads: Counter[str] = Counter()
        self.http_errors: Counter[str] = Counter()  # "client status"
        self.problems: list[str] = []  # hostile requests answered badly, unexpected errors
        self.journal: list[Write] = []
        self.mismatches: list[Mismatch] = []

    def add(self, counter: str, key: str, n: int = 1) -> None:
        with self.lock:
            getattr(self, counter)[key] += n

    def problem(self, text: str) -> None:
        with self.lock:
            self.problems.append(text)


# --- clients ----------------------------------------------------------------------------------------------


class Client(shotgun_api3.Shotgun):
    """shotgun_api3 that remembers, per thread, the HTTP status and sgcache outcome of its last answer."""

    def __init__(self, url: str, auth: dict, timeout: float = 20.0):
        super().__init__(url, connect=False, **auth)
        self.config.timeout_secs = timeout
        self.config.max_rpc_attempts = 1  # a failure is counted, never retried behind our back
        self.last = threading.local()

    def _http_request(self, verb, path, body, headers):
        status, resp_headers, resp_body = super()._http_request(verb, path, body, headers)
        self.last.status = status[0]
        self.last.outcome = resp_headers.get("x-sgcache-outcome", "-")
        return status, resp_headers, resp_body


def where(error: BaseException) -> str:
    """An unexpected error with the place it was raised, in one line."""
    import traceback

    frames = traceback.extract_tb(error.__traceback__)
    place = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    return f"{type(error).__name__}: {error!s:.300}{place}"


def links_in(value: Any) -> set[tuple[str, int]]:
    """Every (type, id) an entity value holds, however deep."""
    out: set[tuple[str, int]] = set()
    if isinstance(value, dict):
        if isinstance(value.get("type"), str) and isinstance(value.get("id"), int):
            out.add((value["type"], value["id"]))
        for v in value.values():
            out |= links_in(v)
    elif isinstance(value, list):
        for v in value:
            out |= links_in(v)
    return out


# --- the run ---------------------------------------------------------------------------------------------


class ChaosRun:
    def __init__(self, options: ChaosOptions):
        self.o = options
        self.rng = random.Random(options.seed)
        self.figures = Figures()
        self.children: list[Child] = []
        self.stop_chaos = threading.Event()
        self.failures: list[str] = []
        self.site_port, self.proxy_port = free_port(), free_port()
        self.site_url = f"http://127.0.0.1:{self.site_port}"
        self.proxy_url = f"http://127.0.0.1:{self.proxy_port}"
        self.pools: dict[str, list[int]] = {}
        self.retired: dict[str, list[int]] = {}
        self.pool_lock = threading.Lock()
        self.local = threading.local()  # each thread's own random.Random, from the run's seed
        self.thread_errors: list[str] = []
        self.sync_kills: Counter[str] = Counter()
        self.summary = ""
        self.phases: dict[str, float] = {}

    # --- setup ---

    def log(self, text: str) -> None:
        self.o.log(f"chaos: {text}")

    def sgcache(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "sgcache", "--config", str(self.config_path), *args]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SGCACHE_") and k != "PROMETHEUS_MULTIPROC_DIR"}
        env["SGCACHE_SITE_API_KEY"] = SCRIPT["api_key"]
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def start(self, name: str, *args: str) -> Child:
        child = Child(name, self.sgcache(*args), self.o.workdir, self.env())
        self.children.append(child)
        return child

    def run_command(self, name: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run(self.sgcache(*args), cwd=ROOT, env=self.env(), capture_output=True, text=True,
                                timeout=timeout, stdin=subprocess.DEVNULL)
        (self.o.workdir / f"{name}.log").write_text(result.stdout + result.stderr)
        return result

    def write_files(self, database_url: str) -> None:
        from sgcache.schema import load
        from sgcache.schema.model import Schema
        from sgcache.schema.yamlio import dumps

        full = load(ROOT / "schema" / "demo.yml")
        schema_path = self.o.workdir / "cache-schema.yml"
        schema_path.write_text(dumps(Schema(types={n: full.types[n] for n in CACHED_TYPES}, header="chaos")))
        self.max_body = 1024 * 1024
        settings = {
            "site": {"base_url": self.site_url, "script_name": SCRIPT["script_name"], "timeout": 10,
                     "connect_timeout": 3, "breaker_cooldown": 2},
            "database": {"url": database_url},
            "schema": {"path": str(schema_path)},
            "web": {"bind": f"127.0.0.1:{self.proxy_port}", "workers": 2, "threads": 8, "max_body": self.max_body},
            "auth": {"shadow_rate": 0},
            "watcher": {"poll_interval": 0.5},
            "scanner": {"interval": self.o.scan_interval},
            "log": {"level": "info", "format": "text"},
        }
        self.config_path = self.o.workdir / "sgcache.yml"
        self.config_path.write_text(yaml.safe_dump(settings))

    def wait_until(self, child: Child, ready: Callable[[], bool], what: str, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            if not child.alive():
                raise RuntimeError(f"{what} stopped while starting; the end of {child.log_path}:\n{child.tail()}")
            try:
                if ready():
                    return
            except (requests.RequestException, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start within {seconds:.0f} s; the end of {child.log_path}:\n"
                                   f"{child.tail()}")
            time.sleep(0.2)

    def setup(self, database_url: str) -> None:
        self.database_url = database_url
        self.write_files(database_url)
        self.engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg2://", 1),
                                       pool_size=2, connect_args={"application_name": "sgcache-chaos-harness"})
        self.db_port = make_url(database_url).port or 5432
        site = self.start("site", "mock-site", "--bind", f"127.0.0.1:{self.site_port}", "--data", "demo",
                          "--scale", "1", "--seed", str(self.o.seed % 1000), "--late-events",
                          str(self.o.late_events))
        self.wait_until(site, lambda: requests.post(self.site_url + "/api3/json", timeout=3,
                                                    json={"method_name": "info", "params": []}).ok,
                        "the stand-in site", 60)
        result = self.run_command("import", "scan", "--full", "--no-progress")
        if result.returncode != 0:
            raise RuntimeError(f"sgcache scan --full failed:\n{result.stdout}{result.stderr}")
        with self.engine.connect() as conn:
            self.start_cursor = conn.execute(sa.text("SELECT max_applied_id FROM _sgcache_cursor")).scalar()
        self.auto = self.start("auto", "auto", "--scan-interval", str(self.o.scan_interval))
        self.web = self.start("web", "web")
        self.wait_until(self.web, lambda: requests.get(self.proxy_url + "/_sgcache/health", timeout=3).ok,
                        "the proxy", 60)
        self.wait_until(self.auto, lambda: len(self.sync_children()) == 2, "sgcache auto's children", 30)
        self.local.rng = random.Random(self.rng.random())
        self.load_pools()

    @property
    def site(self) -> Client:
        return self.client("site")

    @property
    def quiet(self) -> Client:
        return self.client("quiet")

    @property
    def proxy(self) -> Client:
        return self.client("proxy")

    def client(self, name: str) -> Client:
        """This thread's client (shotgun_api3 is not safe to share between threads)."""
        clients = self.local.__dict__.setdefault("clients", {})
        if name not in clients:
            url, auth = {"site": (self.site_url, SCRIPT), "quiet": (self.site_url, QUIET),
                         "proxy": (self.proxy_url, SCRIPT)}[name]
            clients[name] = Client(url, auth)
        return clients[name]

    def load_pools(self) -> None:
        for entity_type in ("Project", "Sequence", "Shot", "Asset", "Task", "HumanUser", "Step"):
            self.pools[entity_type] = [e["id"] for e in self.site.find(entity_type, [], ["id"], order=BY_ID)]
            self.retired[entity_type] = [e["id"] for e in self.site.find(entity_type, [], ["id"], retired_only=True)]
        self.pools["Project"] = [e["id"] for e in self.site.find("Project", [["archived", "is_not", True]], ["id"])]

    def sync_children(self) -> dict[str, int]:
        """{"watch": pid, "scan": pid} of the live children of `sgcache auto`."""
        out = {}
        for pid, cmdline in children_of(self.auto.proc.pid):
            for name in ("watch", "scan"):
                if f" {name}" in cmdline:
                    out[name] = pid
        return out

    # --- the writer ---

    def pick(self, entity_type: str) -> int | None:
        with self.pool_lock:
            pool = self.pools.get(entity_type) or []
            return self.local.rng.choice(pool) if pool else None

    def link(self, entity_type: str) -> dict | None:
        entity_id = self.pick(entity_type)
        return None if entity_id is None else {"type": entity_type, "id": entity_id}

    def write_once(self) -> None:
        r = self.local.rng
        path = r.choices(["proxy", "site", "quiet"], [40, 35, 25])[0]
        client = {"proxy": self.proxy, "site": self.site, "quiet": self.quiet}[path]
        kind = r.choices(["create", "update", "link", "multi_link", "delete", "revive"], [14, 30, 16, 14, 6, 5])[0]
        tag = f"chaos {r.randrange(10**6)}"
        call: Callable[[], Any]
        entity_type: str
        entity_id: int | None = None
        data: dict = {}
        if kind == "create":
            entity_type = r.choice(["Shot", "Shot", "Task", "Asset"])
            project = self.link("Project")
            if entity_type == "Shot":
                data = {"code": f"CH{r.randrange(10**6)}", "project": project, "sg_sequence": self.link("Sequence"),
                        "sg_status_list": r.choice(SHOT_STATUSES), "description": tag}
            elif entity_type == "Task":
                data = {"content": tag, "project": project, "entity": self.link(r.choice(["Shot", "Asset"])),
                        "task_assignees": [u for u in (self.link("HumanUser") for _ in range(r.randrange(3))) if u],
                        "sg_status_list": r.choice(TASK_STATUSES)}
            else:
                data = {"code": f"AS{r.randrange(10**6)}", "project": project, "description": tag}
            call = lambda: client.create(entity_type, data)  # noqa: E731
        elif kind in ("update", "link", "multi_link"):
            if kind == "update":
                entity_type = r.choice(["Shot", "Shot", "Task", "Asset", "Sequence"])
                data = {"Shot": lambda: r.choice([{"description": tag}, {"sg_status_list": r.choice(SHOT_STATUSES)},
                                                  {"sg_cut_in": r.randrange(1000, 2000)}, {"code": f"CH{tag[6:]}"}]),
                        "Task": lambda: r.choice([{"content": tag}, {"sg_status_list": r.choice(TASK_STATUSES)}]),
                        "Asset": lambda: {"description": tag},
                        "Sequence": lambda: r.choice([{"description": tag}, {"code": f"SQ{tag[6:]}"}])}[entity_type]()
            elif kind == "link":
                entity_type = r.choice(["Shot", "Task"])
                if entity_type == "Shot":
                    data = {"sg_sequence": None if r.random() < 0.15 else self.link("Sequence")}
                else:
                    data = {"entity": None if r.random() < 0.1 else self.link(r.choice(["Shot", "Asset"]))}
            else:
                entity_type = r.choice(["Shot", "Task", "Sequence"])
                if entity_type == "Shot":
                    data = {"assets": [a for a in (self.link("Asset") for _ in range(r.randrange(4))) if a]}
                elif entity_type == "Task":
                    data = {"task_assignees": [u for u in (self.link("HumanUser") for _ in range(r.randrange(4))) if u]}
                else:
                    data = {"shots": [s for s in (self.link("Shot") for _ in range(r.randrange(3))) if s]}
            entity_id = self.pick(entity_type)
            if entity_id is None:
                return
            call = lambda: client.update(entity_type, entity_id, data)  # noqa: E731
        elif kind == "delete":
            entity_type = r.choice(["Shot", "Task", "Asset"])
            entity_id = self.pick(entity_type)
            if entity_id is None:
                return
            call = lambda: client.delete(entity_type, entity_id)  # noqa: E731
        else:
            entity_type = r.choice(["Shot", "Task", "Asset"])
            with self.pool_lock:
                retired = self.retired.get(entity_type) or []
                entity_id = r.choice(retired) if retired else None
            if entity_id is None:
                return
            call = lambda: client.revive(entity_type, entity_id)  # noqa: E731
        touched = links_in(data)
        if entity_id is not None:
            touched.add((entity_type, entity_id))
            if kind != "update":
                # The entities it unlinks change too (their reverse fields), and a retirement or a
                # revival shows or hides the links to it: what it links to before the write.
                touched |= self.linked_now(entity_type, entity_id, retired=kind == "revive")
        started = time.time()
        outcome = "ok"
        try:
            result = call()
        except shotgun_api3.Fault as e:
            outcome, result = "fault", None
            if "internal error" in str(e):
                self.figures.problem(f"{path} {kind} {entity_type}: {e}")
        except shotgun_api3.ProtocolError as e:
            outcome, result = "error", None
            self.figures.add("http_errors", f"writer via {path}: HTTP {e.errcode}")
        except Exception as e:  # a dropped connection shows as many kinds of error in shotgun_api3
            outcome, result = "error", None
            if not isinstance(e, (OSError, http.client.HTTPException, shotgun_api3.ShotgunError)):
                self.figures.problem(f"{path} {kind} {entity_type}: unexpected {where(e)}")
            self.figures.add("http_errors", f"writer via {path}: {type(e).__name__}")
        ended = time.time()
        if kind == "create" and outcome == "ok":
            if not (isinstance(result, dict) and isinstance(result.get("id"), int)):
                self.figures.problem(f"{path} create {entity_type} answered without an id: {result!r:.300}")
                return
            entity_id = result["id"]
            touched.add((entity_type, entity_id))
        self.figures.add("writes", f"{kind} {path} {outcome}")
        with self.figures.lock:
            self.figures.journal.append(Write(started, ended, path, kind, entity_type, entity_id, touched, outcome))
        if outcome == "ok" and entity_id is not None:
            with self.pool_lock:
                live, retired = self.pools.setdefault(entity_type, []), self.retired.setdefault(entity_type, [])
                if kind == "create":
                    live.append(entity_id)
                elif kind == "delete" and result:
                    live.remove(entity_id) if entity_id in live else None
                    retired.append(entity_id)
                elif kind == "revive" and result:
                    retired.remove(entity_id) if entity_id in retired else None
                    live.append(entity_id)

    def linked_now(self, entity_type: str, entity_id: int, retired: bool) -> set[tuple[str, int]]:
        """What an entity links to on the site now (for the journal: best effort, races and all)."""
        fields = [f for f in FIELDS[entity_type] if "." not in f]
        try:
            found = self.site.find(entity_type, [["id", "is", entity_id]], fields, retired_only=retired)
        except Exception:  # the site is being failed on purpose now and then
            return set()
        return links_in(found)

    def writer(self, seed: float) -> None:
        self.local.rng = random.Random(seed)
        while not self.stop_chaos.is_set():
            try:
                self.write_once()
            except Exception as e:  # the harness's own bug: stop the run loudly
                self.thread_errors.append(f"writer: {type(e).__name__}: {e}")
                return
            self.stop_chaos.wait(self.local.rng.expovariate(1 / self.o.write_pause))

    # --- the reader ---

    def query(self) -> tuple[str, str, list, list[str]]:
        r = self.local.rng
        shot, seq, asset, user = self.link("Shot"), self.link("Sequence"), self.link("Asset"), self.link("HumanUser")
        choices = [
            ("Shot status", "Shot", [["sg_status_list", "is", r.choice(SHOT_STATUSES)]]),
            ("Shot of a sequence", "Shot", [["sg_sequence", "is", seq]]),
            ("Shot ids", "Shot", [["id", "in", [self.pick("Shot") or 1 for _ in range(5)]]]),
            ("Shot with an asset", "Shot", [["assets", "is", asset]]),
            ("Shot code", "Shot", [["code", "starts_with", "CH"]]),
            ("Task of a shot", "Task", [["entity", "is", shot]]),
            ("Task deep", "Task", [["entity.Shot.sg_sequence", "is", seq]]),
            ("Task assignee", "Task", [["task_assignees", "is", user]]),
            ("Task any", "Task", [{"filter_operator": "any", "filters": [
                ["sg_status_list", "is", r.choice(TASK_STATUSES)], ["content", "contains", "chaos 1"]]}]),
            ("Asset of a project", "Asset", [["project", "is", self.link("Project")]]),
            ("Sequence all", "Sequence", []),
        ]
        label, entity_type, filters = r.choice(choices)
        return label, entity_type, filters, FIELDS[entity_type]

    def snapshot(self) -> tuple[int, set[int], dict[str, float]]:
        """The watcher's cursor and each type's last scan start, as the cache database holds them now."""
        with self.engine.connect() as conn:
            max_applied, gaps = conn.execute(sa.text("SELECT max_applied_id, gaps FROM _sgcache_cursor")).one()
            scans = {t: (at.timestamp() if at else 0.0) for t, at in conn.execute(
                sa.text("SELECT entity_type, last_scan_at FROM _sgcache_types"))}
        return max_applied, {int(i) for i in json.loads(gaps or "{}")}, scans

    def read_once(self) -> None:
        label, entity_type, filters, fields = self.query()
        try:
            cursor = self.snapshot()
        except sa.exc.SQLAlchemyError:
            self.figures.add("reads", "skipped: harness database connection lost")
            return
        started = time.time()
        try:
            ours = self.proxy.find(entity_type, filters, fields, order=BY_ID)
        except shotgun_api3.Fault as e:
            self.figures.add("reads", "proxy fault")
            if "internal error" in str(e):
                self.figures.problem(f"reader {label}: {e}")
            return
        except shotgun_api3.ProtocolError as e:
            self.figures.add("http_errors", f"reader via proxy: HTTP {e.errcode}")
            self.figures.add("reads", "proxy HTTP error")
            return
        except Exception as e:
            self.figures.add("http_errors", f"reader via proxy: {type(e).__name__}")
            if not isinstance(e, (OSError, http.client.HTTPException, shotgun_api3.ShotgunError)):
                self.figures.problem(f"reader {label} via proxy: unexpected {where(e)}")
            self.figures.add("reads", "proxy error")
            return
        outcome = getattr(self.proxy.last, "outcome", "-")
        try:
            theirs = self.site.find(entity_type, filters, fields, order=BY_ID)
        except Exception:
            self.figures.add("reads", "site unavailable (not compared)")
            return
        if ours == theirs:
            self.figures.add("reads", f"{outcome} equal")
            return
        mine, site = {e["id"]: e for e in ours}, {e["id"]: e for e in theirs}
        differing = {}
        for i in set(mine) | set(site):
            if mine.get(i) != site.get(i):
                differing[(entity_type, i)] = links_in(mine.get(i)) | links_in(site.get(i)) | {(entity_type, i)}
        example = next(iter(sorted(differing)))
        text = (f"{label} {filters!r:.200}: {example}: proxy={mine.get(example[1])!r:.300} "
                f"site={site.get(example[1])!r:.300}")
        with self.figures.lock:
            self.figures.mismatches.append(Mismatch(started, label, outcome, cursor[0], cursor[1], cursor[2],
                                                    differing, text, {k: (mine.get(k[1]), site.get(k[1]))
                                                                      for k in differing}))
        self.figures.add("reads", f"{outcome} different")

    def reader(self, seed: float) -> None:
        self.local.rng = random.Random(seed)
        while not self.stop_chaos.is_set():
            try:
                self.read_once()
            except Exception as e:
                self.thread_errors.append(f"reader: {type(e).__name__}: {e}")
                return
            self.stop_chaos.wait(self.local.rng.expovariate(1 / self.o.read_pause))

    # --- chaos ---

    def kill_sync_child(self, name: str) -> None:
        if self.sync_kills[name] >= self.o.max_sync_kills:
            return
        pid = self.sync_children().get(name)
        if pid is None:
            return
        os.kill(pid, signal.SIGKILL)
        self.sync_kills[name] += 1
        self.figures.add("kills", "watcher" if name == "watch" else "scanner")

    def kill_web_worker(self) -> None:
        workers = children_of(self.web.proc.pid)
        if workers:
            os.kill(self.rng_c.choice(workers)[0], signal.SIGKILL)
            self.figures.add("kills", "web worker")

    def terminate_backends(self, target: str) -> None:
        if target == "watcher":
            pids = [p for n, p in self.sync_children().items() if n == "watch"]
        else:
            pids = [p for p, _ in children_of(self.web.proc.pid)]
        ports = set().union(*(postgres_client_ports(p, self.db_port) for p in pids)) if pids else set()
        if not ports:
            return
        with self.engine.connect() as conn:
            n = conn.execute(sa.text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND client_port = ANY(:ports)"), {"ports": sorted(ports)}).scalar()
            conn.commit()
        self.figures.add("faults", f"backends terminated ({target})", n or 0)

    def site_failure(self) -> None:
        r = self.rng_c
        mode = r.choice(["stall", "502", "503", "504", "drop", "down"])
        body: dict[str, Any] = {"mode": mode}
        if mode == "stall":
            body.update(count=r.randint(1, 6), stall_seconds=round(r.uniform(0.5, 2.5), 2))
        elif mode == "drop":
            body.update(count=r.randint(1, 3))
        elif mode == "down":
            body.update(seconds=round(r.uniform(0.5, 2.0), 2))
        else:
            body.update(seconds=round(r.uniform(0.3, 1.5), 2))
        try:
            requests.post(self.site_url + "/_mock/failure", json=body, timeout=5).raise_for_status()
            self.figures.add("faults", f"site {mode}")
        except requests.RequestException:
            pass  # the site is down: the failure in force is enough

    HOSTILE = ["entity in 20000 bogus key", "200 nested levels", "in_last 10**12 DAY", "body over max_body",
               "5000 return fields", "huge page"]

    def hostile(self, kind: str) -> None:
        auth = {"script_name": SCRIPT["script_name"], "script_key": SCRIPT["api_key"]}
        conditions: list = [{"path": "code", "relation": "is", "values": ["SH001"]}]
        args: dict[str, Any] = {"type": "Shot", "return_fields": ["code"],
                                "filters": {"logical_operator": "and", "conditions": conditions}}
        if kind == "entity in 20000 bogus key":
            auth = {"script_name": SCRIPT["script_name"], "script_key": "not-the-key"}
            args["filters"]["conditions"] = [{"path": "sg_sequence", "relation": "in",
                                              "values": [{"type": "Sequence", "id": i} for i in range(1, 20_001)]}]
        elif kind == "200 nested levels":
            group: dict = {"logical_operator": "and", "conditions": conditions}
            for _ in range(200):
                group = {"logical_operator": "or", "conditions": [group]}
            args["filters"] = group
        elif kind == "in_last 10**12 DAY":
            args["filters"]["conditions"] = [{"path": "created_at", "relation": "in_last", "values": [10**12, "DAY"]}]
        elif kind == "5000 return fields":
            args["return_fields"] = ["code", *["sg_sequence.Sequence.code"] * 5000]
            args["filters"]["conditions"] = []
        elif kind == "huge page":
            args["paging"] = {"entities_per_page": 50, "current_page": 2**62}
        body = json.dumps({"method_name": "read", "params": [auth, args]})
        if kind == "body over max_body":
            body = body[:-2] + ', "padding": "' + "x" * (self.max_body + 10) + '"}]}'
        try:
            answer = requests.post(self.proxy_url + "/api3/json", data=body, timeout=30,
                                   headers={"Content-Type": "application/json"})
        except requests.RequestException as e:
            self.figures.add("hostile", f"{kind}: {type(e).__name__}")
            return
        self.figures.add("hostile", kind)
        text = answer.text[:300]
        if answer.status_code == 500:
            self.figures.add("http_errors", f"hostile via proxy: HTTP {answer.status_code}")
            self.figures.problem(f"hostile '{kind}': HTTP {answer.status_code}: {text}")
        elif answer.status_code == 200 and "internal error" in text:
            self.figures.problem(f"hostile '{kind}': {text}")
        elif kind == "entity in 20000 bogus key" and not self.refused_unchecked(answer.status_code, text):
            self.figures.problem(f"hostile '{kind}': expected the site's authentication fault, got {text}")
        elif kind == "body over max_body" and "web.max_body" not in text:
            self.figures.problem(f"hostile '{kind}': expected a fault naming web.max_body, got {text}")

    @staticmethod
    def refused_unchecked(status: int, text: str) -> bool:
        """Whether a request with a bogus key got no data: the site's authentication fault, or, with
        the site down or failing (a fault in force), sgcache's fault that it cannot check the key or
        cannot reach the site (a request it passes through), or the site's own 5xx relayed."""
        return ('"error_code": 102' in text.replace('":102', '": 102') or "cannot check your credentials" in text
                or ("sgcache: the Shotgun site" in text and "is unavailable" in text) or status in (502, 503, 504))

    def chaos(self, seed: float) -> None:
        self.rng_c = r = random.Random(seed)
        actions = [("watcher", 2), ("scanner", 2), ("web worker", 3), ("backends web", 3), ("backends watcher", 3),
                   ("site", 5), ("hostile", 5)]
        hostile = r.sample(self.HOSTILE, len(self.HOSTILE))  # each kind once, then at random
        first = r.sample([a for a, _ in actions], len(actions))  # each action once, then at random
        while not self.stop_chaos.wait(r.expovariate(1 / self.o.fault_pause)):
            action = first.pop() if first else r.choices([a for a, _ in actions], [w for _, w in actions])[0]
            try:
                if action == "watcher":
                    self.kill_sync_child("watch")
                elif action == "scanner":
                    self.kill_sync_child("scan")
                elif action == "web worker":
                    self.kill_web_worker()
                elif action.startswith("backends"):
                    self.terminate_backends(action.split()[1])
                elif action == "site":
                    self.site_failure()
                else:
                    self.hostile(hostile.pop() if hostile else r.choice(self.HOSTILE))
            except ProcessLookupError:
                pass  # it died meanwhile
            except Exception as e:
                self.thread_errors.append(f"chaos ({action}): {type(e).__name__}: {e}")
                return
        for kind in hostile:  # a short run may not have drawn them all
            self.hostile(kind)

    # --- the end ---

    def clear_failures(self) -> None:
        deadline = time.monotonic() + 15
        while True:
            try:
                requests.post(self.site_url + "/_mock/failure", json={"mode": "off"}, timeout=5).raise_for_status()
                return
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)  # "down": the site listens again in a moment

    def site_events(self) -> list[dict]:
        out, after = [], self.start_cursor
        while True:
            page = self.site.find("EventLogEntry", [["id", "greater_than", after]],
                                  ["id", "event_type", "entity", "meta", "created_at"], order=BY_ID, limit=500)
            if not page:
                return out
            out += page
            after = page[-1]["id"]

    def applied(self) -> tuple[set[int], set[int], int]:
        with self.engine.connect() as conn:
            applied = {r[0] for r in conn.execute(sa.text("SELECT event_id FROM _sgcache_applied_events"))}
            dead = {r[0] for r in conn.execute(sa.text("SELECT event_id FROM _sgcache_dead_letters"))}
            duplicates = conn.execute(sa.text(
                "SELECT count(*) FROM (SELECT event_id FROM _sgcache_applied_events GROUP BY event_id "
                "HAVING count(*) > 1) d")).scalar()
        return applied, dead, duplicates

    #: Seconds after its write within which a late event can still appear (the stand-in hides up to 5).
    LATE_EVENT_SECONDS = 5.5

    def catch_up(self) -> tuple[list[dict], float]:
        """Wait until every event the site logged is applied (or dead), and no late event of the
        last writes can still appear; the site's events, seconds taken."""
        started = time.monotonic()
        last_write = max((w.ended for w in self.figures.journal), default=0.0)
        while True:
            events = self.site_events()
            applied, dead, _ = self.applied()
            missing = [e["id"] for e in events if e["id"] not in applied]
            settled = time.time() > last_write + self.LATE_EVENT_SECONDS
            if (not missing and settled) or time.monotonic() - started > self.o.catch_up_seconds:
                return events, time.monotonic() - started
            time.sleep(0.5)

    def explain(self, events: list[dict]) -> None:
        """Decide for each reader mismatch whether event lag (or a write made meanwhile) explains it."""
        touched_by_event: list[tuple[int, set[tuple[str, int]]]] = []
        for e in events:
            meta = e.get("meta") if isinstance(e.get("meta"), dict) else {}
            touched = links_in(e.get("entity")) | links_in(meta.get("old_value")) | links_in(meta.get("new_value"))
            touched |= links_in(meta.get("added")) | links_in(meta.get("removed"))
            if isinstance(meta.get("entity_type"), str) and isinstance(meta.get("entity_id"), int):
                touched.add((meta["entity_type"], meta["entity_id"]))
            touched_by_event.append((e["id"], touched))
        for m in self.figures.mismatches:
            unapplied = {t for i, touched in touched_by_event
                         if i > m.unapplied_after or i in m.gaps for t in touched}
            reasons = []
            for entity, related in m.differing.items():
                if related & unapplied:
                    reasons.append("event lag")
                    continue
                later = [w for w in self.figures.journal if w.ended >= m.started - 0.05 and w.touched & related]
                if later:
                    reasons.append("written meanwhile")
                    continue
                unscanned = [w for w in self.figures.journal if w.path == "quiet" and w.touched & related
                             and w.ended + 1.0 > m.scans.get(w.entity_type, 0.0)]
                if unscanned:
                    reasons.append("quiet write not yet scanned")
                    continue
                reasons = []
                proxy, site = m.versions[entity]
                m.unexplained = f"{entity}: proxy={proxy!r:.400} site={site!r:.400}"
                break
            m.explained_by = ", ".join(sorted(set(reasons)))

    def save_records(self, events: list[dict]) -> None:
        """The writes, the site's events and the mismatches, as JSON lines in the work folder (for replays)."""
        def line(item: Any) -> str:
            return json.dumps(item, default=lambda v: sorted(v) if isinstance(v, set) else str(v))

        with open(self.o.workdir / "writes.jsonl", "w") as fh:
            fh.writelines(line(dataclasses.asdict(w)) + "\n" for w in self.figures.journal)
        with open(self.o.workdir / "events.jsonl", "w") as fh:
            fh.writelines(line(e) + "\n" for e in events)

    def web_log_errors(self) -> tuple[int, int]:
        text = self.web.log_path.read_text(errors="replace")
        return len(re.findall(r" status=500 ", text)), text.count("event=internal_error")

    def finish(self) -> None:
        f = self.figures
        self.clear_failures()
        events, waited = self.catch_up()
        self.phases["catch-up"] = waited
        self.log(f"watcher caught up in {waited:.1f} s ({len(events)} site events since the import)")
        mark = time.monotonic()
        scan = self.run_command("final-scan", "scan", "--no-progress")
        if scan.returncode != 0:
            self.failures.append(f"sgcache scan failed (status {scan.returncode}): {scan.stderr.strip()[-500:]}")
        validate = self.run_command("validate", "validate", "data", "--rate", "500", "--wait", "20",
                                    "--no-progress", timeout=300)
        self.phases["scan and validate"] = time.monotonic() - mark
        summary_line = (validate.stdout.strip().splitlines() or ["(no output)"])[-1]
        found = re.search(r": (\d+|no) differences?$", summary_line)
        differences = int(found.group(1)) if found and found.group(1) != "no" else (0 if found else -1)
        if validate.returncode != 0 or differences != 0:
            self.failures.append(f"sgcache validate data: status {validate.returncode}:\n"
                                 + "\n".join(validate.stdout.strip().splitlines()[:40]) + validate.stderr[-1000:])
        events = self.site_events()
        self.save_records(events)
        applied, dead, duplicates = self.applied()
        missing = sorted(e["id"] for e in events if e["id"] not in applied)
        given_up = sorted(int(i) for line in (self.o.workdir / "auto.log").read_text(errors="replace").splitlines()
                          if "event=gave_up_on_event_ids" in line
                          for i in re.findall(r"\d+", line.split("ids=", 1)[1].split(" waited_s", 1)[0]))
        real_given_up = sorted(set(given_up) & {e["id"] for e in events})
        if duplicates:
            self.failures.append(f"{duplicates} event ids applied more than once")
        if missing:
            self.failures.append(f"{len(missing)} site events never applied: {missing[:20]}")
        if dead:
            self.failures.append(f"{len(dead)} dead letters: {sorted(dead)[:20]} (see sgcache status)")
        if real_given_up:
            self.failures.append(f"the watcher gave up on {len(real_given_up)} events the site has: "
                                 f"{real_given_up[:20]}")
        self.explain(events)
        with open(self.o.workdir / "mismatches.jsonl", "w") as fh:
            for m in f.mismatches:
                record = {**dataclasses.asdict(m), "gaps": sorted(m.gaps),
                          "differing": [[list(k), sorted(v)] for k, v in m.differing.items()],
                          "versions": [[list(k), v] for k, v in m.versions.items()]}
                fh.write(json.dumps(record, default=str) + "\n")
        unexplained = [m for m in f.mismatches if not m.explained_by]
        if unexplained:
            first = "\n  ".join(f"at {m.started:.2f} ({m.outcome}) {m.label} {m.unexplained}" for m in unexplained[:5])
            self.failures.append(f"{len(unexplained)} reader mismatches not explained by event lag:\n  {first}")
        web_5xx, internal = self.web_log_errors()
        http_500 = sum(n for k, n in f.http_errors.items() if "HTTP 500" in k)
        if http_500 or web_5xx or internal:
            self.failures.append(f"HTTP 500 or internal errors: {http_500} seen by the clients, {web_5xx} HTTP 500 "
                                 f"and {internal} internal errors in the proxy's log")
        if f.problems:
            self.failures.append("problems:\n  " + "\n  ".join(f.problems[:20]))
        if self.thread_errors:
            self.failures.append("harness threads failed: " + "; ".join(self.thread_errors))
        for child in (self.auto, self.web, self.children[0]):
            if not child.alive():
                self.failures.append(f"{child.name} died: {child.tail(10)}")
        try:
            status = requests.get(self.proxy_url + "/_sgcache/status", timeout=10).json()["proxy"]
        except (requests.RequestException, ValueError, KeyError):
            status = {}
        self.stats = {"events": len(events), "applied": len(applied), "dead": len(dead), "given_up": len(given_up),
                      "validate": summary_line, "hit_ratio": status.get("hit_ratio"),
                      "passthrough": status.get("passthrough_reasons"), "web_5xx": web_5xx, "internal": internal}

    def format_summary(self, duration: float) -> str:
        f, s = self.figures, self.stats

        def counts(counter: Counter) -> str:
            return ", ".join(f"{k} {v}" for k, v in sorted(counter.items())) or "none"

        by_kind: Counter[str] = Counter()
        by_path: Counter[str] = Counter()
        for key, n in f.writes.items():
            kind, path, outcome = key.split()
            by_kind[kind] += n
            by_path[f"{path} {outcome}"] += n
        explained = [m for m in f.mismatches if m.explained_by]
        reasons = Counter(m.explained_by for m in explained)
        checked = sum(n for k, n in f.reads.items() if k.endswith(("equal", "different")))
        lines = [
            f"chaos summary (seed {self.o.seed}, {self.o.seconds:.0f} s of chaos, {duration:.1f} s in all)",
            f"  writes: {sum(by_kind.values())}; by kind: {counts(by_kind)}",
            f"          by path and outcome: {counts(by_path)}",
            f"  kills: {counts(f.kills)}",
            f"  faults injected: {counts(f.faults)}",
            f"  hostile requests: {counts(f.hostile)}",
            f"  reads checked: {checked}; {counts(f.reads)}",
            f"  mismatches: {len(f.mismatches)} ({len(explained)} explained: {counts(reasons)}; "
            f"{len(f.mismatches) - len(explained)} unexplained)",
            f"  client HTTP errors: {counts(f.http_errors)}; proxy log: {s['web_5xx']} HTTP 500, "
            f"{s['internal']} internal errors",
            f"  events: {s['events']} on the site since the import, {s['applied']} in the ledger, {s['dead']} dead "
            f"letters, {s['given_up']} ids given up",
            f"  validate data: {s['validate']}",
            f"  proxy: hit ratio {s['hit_ratio']}, passthrough reasons {s['passthrough']}",
            "  seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in self.phases.items()),
            f"  result: {'FAILED' if self.failures else 'ok'}",
        ]
        return "\n".join(lines + [f"  FAILURE: {x}" for x in self.failures])

    def run(self) -> bool:
        started = time.monotonic()
        self.log(f"seed {self.o.seed}; logs in {self.o.workdir}")
        self.o.workdir.mkdir(parents=True, exist_ok=True)
        try:
            with scratch_database(self.o.database_server) as url:
                try:
                    self.setup(url)
                    self.phases["setup"] = time.monotonic() - started
                    self.log(f"ready in {self.phases['setup']:.1f} s; {self.o.seconds:.0f} s of chaos")
                    jobs = [self.writer] * self.o.writers + [self.reader] * self.o.readers + [self.chaos]
                    threads = [threading.Thread(target=job, args=(self.rng.random(),), name=job.__name__, daemon=True)
                               for job in jobs]
                    for t in threads:
                        t.start()
                    self.stop_chaos.wait(self.o.seconds)
                    self.stop_chaos.set()
                    for t in threads:
                        t.join(60)
                    self.phases["chaos"] = time.monotonic() - started - self.phases["setup"]
                    self.finish()
                finally:
                    self.teardown()
        except Exception as e:
            self.failures.append(f"the run could not complete: {type(e).__name__}: {e}")
            self.stats = getattr(self, "stats", None) or {k: "-" for k in (
                "events", "applied", "dead", "given_up", "validate", "hit_ratio", "passthrough", "web_5xx",
                "internal")}
        self.summary = self.format_summary(time.monotonic() - started)
        self.o.log(self.summary)
        return not self.failures

    def teardown(self) -> None:
        self.stop_chaos.set()
        if getattr(self, "engine", None) is not None:
            self.engine.dispose()
        for child in reversed(self.children):  # the proxy, the sync processes, the site
            try:
                child.stop()
            except Exception as e:  # one child refusing to stop must not leave the others running
                self.failures.append(f"stopping {child.name}: {e}")
        self.children.clear()


def run_chaos(options: ChaosOptions) -> ChaosRun:
    """One whole run; ``.failures`` is empty when everything held, ``.summary`` has the figures."""
    run = ChaosRun(options)
    run.run()
    return run


def keep_or_remove(workdir: Path, failed: bool) -> None:
    if not failed:
        shutil.rmtree(workdir, ignore_errors=True)
