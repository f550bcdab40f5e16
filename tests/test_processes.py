"""No child outlives ``sgcache auto`` or the demo, even when they are killed outright (SIGKILL)
and run no code on the way out. Real processes, found through /proc (Linux).

The ends that do run code (Ctrl-C, SIGTERM, SIGHUP, a broken output pipe) are in test_demo.py
and test_sync_crash.py.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
from conftest import ROOT
from test_demo import free_port, listening

from sgcache.mocksite.server import MockServer
from sgcache.sync.supervise import _die_with, _prctl

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

KEY = "sgcache-demo-key"


def stat(pid: int) -> tuple[int, int, str, int] | None:
    """(parent pid, session id, state, start time) of a process, None if there is none."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the name, in parentheses, may hold spaces
    return int(fields[1]), int(fields[3]), fields[0], int(fields[19])


def all_processes() -> dict[int, tuple[int, int, str, int]]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (info := stat(int(entry.name))) is not None:
            found[int(entry.name)] = info
    return found


def descendants(root: int) -> dict[int, int]:
    """Every process below ``root`` (children, grandchildren...): pid -> start time."""
    processes = all_processes()
    found: dict[int, int] = {}
    parents = [root]
    while parents:
        parent = parents.pop()
        for pid, (ppid, _sid, _state, started) in processes.items():
            if ppid == parent and pid not in found:
                found[pid] = started
                parents.append(pid)
    return found


def running(pid: int, started: int) -> bool:
    """The same process (not a later one given its pid) is there and not a zombie."""
    info = stat(pid)
    return info is not None and info[3] == started and info[2] != "Z"


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "(gone)"


def signal_state(pid: int) -> str:
    """Why a process may not have stopped: its signal masks, and each thread's state and wait."""
    lines = []
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        lines.append("  ".join(line for line in status.splitlines()
                               if line.split(":")[0] in ("PPid", "SigPnd", "ShdPnd", "SigBlk", "SigCgt")))
        for task in sorted(Path(f"/proc/{pid}/task").iterdir(), key=lambda t: int(t.name)):
            name = (task / "comm").read_text().strip()
            state = (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
            blocked = next((line for line in (task / "status").read_text().splitlines()
                            if line.startswith(("SigPnd", "SigBlk"))), "")
            lines.append(f"    thread {task.name} {name} {state} wchan={(task / 'wchan').read_text()} {blocked}")
    except OSError as e:
        lines.append(f"  ({e})")
    return "\n".join(lines)


def part(pid: int) -> str:
    """Which sgcache command a process runs (a gunicorn worker runs its master's)."""
    words = command_line(pid).split()
    return next((w for w in words if w in ("auto", "watch", "scan", "web", "mock-site")), " ".join(words))


def wait_for(predicate, timeout: float, what: str, details=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} within {timeout:.0f} s\n{details()}"
        time.sleep(0.1)


class Tree:
    """A process started by the test, and whatever it starts; :meth:`kill_all` leaves nothing behind."""

    def __init__(self, command: list[str], log: Path, env: dict[str, str], cwd: Path):
        self.log = log
        with open(log, "wb") as out:
            self.root = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        self.started = stat(self.root.pid)[3]
        self.seen: dict[int, int] = {}
        self.sessions = {self.root.pid}

    def below(self) -> dict[int, int]:
        """The processes below the root now; remembered for :meth:`kill_all`."""
        found = descendants(self.root.pid)
        self.seen.update(found)
        self.sessions.update(pid for pid in found if (stat(pid) or (0, 0))[1] == pid)
        return found

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill_all(self) -> None:
        """SIGKILL the root, every process seen below it, and every process of their sessions (the
        demo starts each part in a session of its own; a part may have started more since)."""
        if self.root.poll() is None:
            self.root.kill()
        self.root.wait(10)
        for _ in range(3):
            left = [pid for pid, info in all_processes().items()
                    if info[2] != "Z" and info[3] >= self.started
                    and (info[1] in self.sessions or self.seen.get(pid) == info[3])]
            if not left:
                return
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)


@pytest.fixture
def trees():
    started: list[Tree] = []
    yield started
    for tree in started:
        tree.kill_all()


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGCACHE_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def assert_all_stop(tree: Tree, processes: dict[int, int], timeout: float) -> float:
    """Wait until none of ``processes`` runs; how long it took."""
    killed = time.monotonic()
    wait_for(lambda: not any(running(pid, started) for pid, started in processes.items()), timeout,
             "every child and grandchild stopped",
             lambda: "still running:\n" + "\n".join(f"  {pid} {command_line(pid)}\n{signal_state(pid)}"
                                                   for pid, started in processes.items() if running(pid, started))
             + "\n" + tree.output())
    return time.monotonic() - killed


def test_the_children_of_auto_stop_when_auto_is_killed(trees, mock_site, tmp_path):
    server = MockServer(mock_site).start()
    try:
        env = clean_env()
        env["SGCACHE_SITE_API_KEY"] = KEY
        auto = Tree([sys.executable, "-m", "sgcache", "--config", str(ROOT / "sgcache.yml"), "--database",
                     f"sqlite:///{tmp_path / 'cache.sqlite'}", "--set", f"site.base_url={server.url}", "--set",
                     "site.script_name=sgcache", "--set", "log.level=info", "auto", "--scan-interval", "1"],
                    tmp_path / "auto.log", env, tmp_path)
        trees.append(auto)
        # Both children lead (the watcher follows the event log, the scanner scans): well past
        # their start, with their SIGTERM handlers in place.
        wait_for(lambda: "event=leader name=watch" in auto.output() and "event=leader name=scan" in auto.output(),
                 60, "auto's watcher and scanner started", auto.output)
        children = auto.below()
        assert sorted(part(pid) for pid in children) == ["scan", "watch"]

        auto.root.send_signal(signal.SIGKILL)
        assert auto.root.wait(10) == -signal.SIGKILL
        assert_all_stop(auto, children, 10)
    finally:
        server.stop()


def test_auto_asked_to_stop_while_it_migrates_finishes_the_migration_and_exits_cleanly(trees, mock_site, db_url,
                                                                                        tmp_path):
    """SIGTERM while ``sgcache auto`` migrates the cache (here: waiting for the migration lock, or
    for SQLite's write lock, which the test holds): the migration finishes, no child is started,
    and auto exits with 0, as a process manager expects; before, the signal killed it (-15)."""
    import sqlalchemy as sa

    from sgcache.store.db import create_engine
    from sgcache.store.migrate import MIGRATION_LOCK

    postgres = db_url.startswith("postgresql")
    server = MockServer(mock_site).start()
    engine = create_engine(db_url)
    try:
        with engine.connect() as held:
            if postgres:
                held.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK})
            else:
                held.exec_driver_sql("BEGIN EXCLUSIVE")
            env = clean_env()
            env["SGCACHE_SITE_API_KEY"] = KEY
            auto = Tree([sys.executable, "-m", "sgcache", "--config", str(ROOT / "sgcache.yml"), "--database", db_url,
                         "--set", f"site.base_url={server.url}", "--set", "site.script_name=sgcache", "--set",
                         "log.level=info", "auto", "--scan-interval", "1"], tmp_path / "auto.log", env, tmp_path)
            trees.append(auto)
            if postgres:
                def waiting() -> bool:  # on this database's migration lock (another test's may be waited for)
                    with engine.connect() as conn:
                        return conn.execute(sa.text(
                            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                            "AND ((classid::bigint << 32) | objid::bigint) = :k"), {"k": MIGRATION_LOCK}).scalar() > 0
            else:
                cache = str(Path(db_url.removeprefix("sqlite:///")).resolve())

                def waiting() -> bool:  # the cache file is open: past start-up, into the migration
                    try:
                        return any(os.path.realpath(fd) == cache for fd in
                                   (str(p) for p in Path(f"/proc/{auto.root.pid}/fd").iterdir()))
                    except OSError:
                        return False
            wait_for(waiting, 60, "auto waiting to migrate", auto.output)
            auto.root.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            assert auto.root.poll() is None, auto.output()  # not killed: it finishes the migration first
            held.rollback()
            if postgres:
                held.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK})
        assert auto.root.wait(30) == 0, auto.output()
        assert "event=child_started" not in auto.output()
        assert not auto.below()
        with engine.connect() as conn:
            assert "_sgcache_fields" in sa.inspect(conn).get_table_names()
            assert conn.execute(sa.text("SELECT count(*) FROM _sgcache_fields")).scalar() > 0
    finally:
        engine.dispose()
        server.stop()


def first_scan_done(database: Path) -> bool:
    """Every type scanned once: the scanner waits for its next round (scanner.interval, 300 s)."""
    with closing(sqlite3.connect(database)) as conn:
        return (conn.execute("SELECT min(incremental_scans) FROM _sgcache_types").fetchone()[0] or 0) >= 1


def test_every_process_of_the_demo_stops_when_the_demo_is_killed(trees, tmp_path):
    proxy_port, site_port = free_port(), free_port()
    demo = Tree([sys.executable, "-m", "sgcache", "--config", str(ROOT / "sgcache.yml"), "demo", "--dir",
                 str(tmp_path / "demo"), "--bind", f"127.0.0.1:{proxy_port}", "--site-bind",
                 f"127.0.0.1:{site_port}", "--latency-ms", "0", "--no-compare", "--no-progress"],
                tmp_path / "demo.out", clean_env(), ROOT)
    trees.append(demo)
    wait_for(lambda: "sgcache demo ready" in demo.output(), 120, "the demo ready", demo.output)
    logs = tmp_path / "demo"
    # Every process up: auto's watcher leads, its scanner has made its first round (a scanner
    # killed mid-round, its site gone too, stops only after its retries: up to 8 s more), and
    # gunicorn's master has its 2 workers.
    wait_for(lambda: "event=leader name=watch" in (logs / "sync.log").read_text() and first_scan_done(
        logs / "cache.sqlite"), 30, "the demo's watcher and scanner", lambda: (logs / "sync.log").read_text())
    expected = ["auto", "mock-site", "scan", "watch", "web", "web", "web"]
    wait_for(lambda: sorted(part(pid) for pid in demo.below()) == expected, 30, "the demo's processes",
             lambda: str(sorted(part(pid) for pid in demo.below())))
    processes = demo.below()
    assert sorted(part(pid) for pid in processes) == expected

    demo.root.send_signal(signal.SIGKILL)
    assert demo.root.wait(10) == -signal.SIGKILL
    try:
        assert_all_stop(demo, processes, 15)
    except AssertionError as e:  # where a part hangs: a stand-in still running prints its stacks there
        site = next((pid for pid, started in processes.items() if part(pid) == "mock-site" and running(pid, started)),
                    None)
        if site is not None:  # its stacks now, if it never took the SIGTERM
            os.kill(site, signal.SIGUSR1)
            time.sleep(1)
        raise AssertionError(f"{e}\nsite.log (end):\n{(logs / 'site.log').read_text()[-6000:]}") from None
    assert not listening(proxy_port) and not listening(site_port)
    # Each part stopped as on any SIGTERM: auto stopped its children, gunicorn its workers.
    sync_log = (logs / "sync.log").read_text()
    assert "event=child_stopped name=watch code=0" in sync_log
    assert "event=child_stopped name=scan code=0" in sync_log
    assert "Shutting down: Master" in (logs / "web.log").read_text()


def send_to_thread(pid: int, thread: int, signum: int) -> None:
    """tgkill(2): ``signum`` to one thread of ``pid``, as the kernel may pick any thread for a
    process's signal."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(234, pid, thread, signum) != 0:  # SYS_tgkill on x86-64
        raise OSError(ctypes.get_errno(), "tgkill")


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the tgkill system call number is x86-64's")
def test_the_stand_in_stops_on_a_sigterm_the_kernel_gave_to_another_of_its_threads(trees, tmp_path):
    # Python runs the handler in the main thread; a main thread asleep in a wait with no timeout
    # never woke for a signal taken by the server's thread (this stand-in ran on).
    port = free_port()
    site = Tree([sys.executable, "-m", "sgcache", "-q", "mock-site", "--bind", f"127.0.0.1:{port}", "--data",
                 "empty"], tmp_path / "site.log", clean_env(), ROOT)
    trees.append(site)
    wait_for(lambda: "Credentials" in site.output(), 30, "the stand-in listening", site.output)
    other = next(int(task.name) for task in Path(f"/proc/{site.root.pid}/task").iterdir()
                 if int(task.name) != site.root.pid)
    send_to_thread(site.root.pid, other, signal.SIGTERM)
    assert site.root.wait(10) == 0
    assert not listening(port)


@pytest.mark.skipif(_prctl() is None, reason="no prctl")
def test_a_child_whose_parent_died_before_it_asked_for_the_death_signal_exits_at_once():
    # The race start_child closes: the parent dies between fork and prctl, so the kernel will
    # never send the signal. Here the "parent" it checks for is simply not its parent.
    not_the_parent = os.getppid()
    child = subprocess.Popen([sys.executable, "-c", "print('ran')"], stdout=subprocess.PIPE,
                             preexec_fn=_die_with(not_the_parent, _prctl()))
    out, _ = child.communicate(timeout=10)
    assert (child.returncode, out) == (1, b"")


def test_without_the_death_signal_a_child_stops_when_its_parent_is_gone(trees, tmp_path):
    # The fallback where prctl does not exist (macOS): a thread in the child watches its parent.
    # The parent here starts the child with plain Popen, no death signal, then waits forever.
    child_code = ("import sys, time\nfrom sgcache.sync.supervise import follow_parent\n"
                  "follow_parent(int(sys.argv[1]), interval=0.1)\nprint('following', flush=True)\ntime.sleep(60)\n")
    parent_code = ("import os, subprocess, sys, time\n"
                   f"subprocess.Popen([sys.executable, '-c', {child_code!r}, str(os.getpid())])\ntime.sleep(60)\n")
    parent = Tree([sys.executable, "-c", parent_code], tmp_path / "parent.log", clean_env(), ROOT)
    trees.append(parent)
    wait_for(lambda: "following" in parent.output(), 20, "the child started", parent.output)
    child = parent.below()
    assert len(child) == 1

    parent.root.send_signal(signal.SIGKILL)
    parent.root.wait(10)
    assert_all_stop(parent, child, 5)


def supervise_until_deaths(deaths: int, **settings) -> list[str]:
    """Run a Supervisor of one child that lives 0.3 s until it has logged ``deaths`` deaths (30 s at
    most); return those log lines. (A fixed wait was too short on a loaded machine, where each
    start of the child takes longer than its 0.3 s of life.)"""
    import logging
    import threading

    from sgcache.sync.supervise import Supervisor

    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger = logging.getLogger("sgcache.sync.supervise")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    stop = threading.Event()
    supervisor = Supervisor({"brief": [sys.executable, "-c", "import time; time.sleep(0.3)"]}, **settings)
    runner = threading.Thread(target=supervisor.run, args=(stop,))
    runner.start()

    def died() -> list[str]:
        return [r for r in list(records) if r.startswith("event=child_died")]

    try:
        deadline = time.monotonic() + 30
        while len(died()) < deaths and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        runner.join(15)
        logger.removeHandler(handler)
        logger.setLevel(previous)
    return died()


def test_a_child_that_keeps_dying_waits_twice_as_long_each_time():
    deaths = supervise_until_deaths(2, healthy_after=60)
    assert [d.rsplit("restart_in_s=", 1)[1] for d in deaths[:2]] == ["2", "4"]


def test_a_child_that_ran_well_before_it_died_is_started_again_after_the_shortest_pause():
    deaths = supervise_until_deaths(2, healthy_after=0.2)
    assert [d.rsplit("restart_in_s=", 1)[1] for d in deaths[:2]] == ["2", "2"]
