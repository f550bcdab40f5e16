"""Run several sgcache processes as one group; restart any that dies, with growing pauses. Every
child is started so that it does not outlive its parent, however the parent ends."""

from __future__ import annotations

import functools
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from sgcache.config import env_name

log = logging.getLogger(__name__)

#: In the environment of every child started by :func:`start_child`: the pid of its parent.
PARENT_PID_VARIABLE = "SGCACHE_PARENT_PID"
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@functools.cache
def _prctl() -> Callable[..., int] | None:
    """Linux's prctl(2), or None where there is none (macOS, the BSDs)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


def start_child(command: list[str], *, env: Mapping[str, str] | None = None, **popen: Any) -> subprocess.Popen:
    """``subprocess.Popen(command, env=env, **popen)`` for a child that must not outlive this process.

    Stopping the children on the way out (Ctrl-C, SIGTERM, SIGHUP, an exception) is the caller's
    job; this covers the ends that run no code at all: SIGKILL, the OOM killer, a crash. On Linux
    the kernel sends the child SIGTERM when this process dies (``PR_SET_PDEATHSIG``, set between
    fork and exec); elsewhere the child, an sgcache command, sends itself SIGTERM when it sees its
    parent gone (:func:`exit_with_parent`). Either way the child stops as on any SIGTERM: cleanly,
    stopping its own children in turn.

    The kernel sends the signal when the *thread* that started the child ends: call this from a
    thread that lives as long as the child (sgcache calls it from the main thread).
    """
    env = dict(os.environ if env is None else env)
    env[PARENT_PID_VARIABLE] = str(os.getpid())
    prctl = _prctl()
    preexec = _die_with(os.getpid(), prctl) if prctl is not None else None
    return subprocess.Popen(command, env=env, preexec_fn=preexec, **popen)


def _die_with(parent: int, prctl: Callable[..., int]) -> Callable[[], None]:
    """What the child runs between fork and exec: ask for SIGTERM when ``parent`` dies. Only a
    system call and ``os._exit``: nothing that takes a lock another thread of the parent may have
    held at the fork."""
    sigterm = int(signal.SIGTERM)

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, sigterm, 0, 0, 0)  # cannot fail with a valid signal
        if os.getppid() != parent:  # the parent died before the line above: no signal will come
            os._exit(1)

    return preexec


def exit_with_parent(environ: Mapping[str, str] = os.environ) -> None:
    """In a child started by :func:`start_child` on a system without Linux's death signal: send
    this process SIGTERM once its parent is gone. Does nothing in any other process."""
    try:
        parent = int(environ.get(PARENT_PID_VARIABLE, ""))
    except ValueError:
        return
    if _prctl() is None:
        follow_parent(parent)


def follow_parent(parent: int, interval: float = 0.5) -> threading.Thread:
    """A daemon thread that sends this process SIGTERM as soon as ``parent`` is no longer its
    parent (it died: orphans are adopted by init or a subreaper), checking every ``interval`` s."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        log.warning("event=parent_gone parent_pid=%d", parent)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="follow-parent", daemon=True)
    thread.start()
    return thread


def sync_children(config_path: str | None, overrides: Mapping[str, str], scan_interval: float, *,
                  triggers: bool = False,
                  environ: Mapping[str, str] = os.environ) -> tuple[dict[str, list[str]], dict[str, str]]:
    """The commands and the environment of ``sgcache auto``'s children: ``watch``, ``scan
    --interval`` unless ``scan_interval`` is 0, and ``triggers`` when event plugins are set.

    The settings ``auto`` was given on its command line (``--set``, ``--database``,
    ``--schema``) reach the children as ``SGCACHE_<SECTION>_<KEY>`` variables, never as
    arguments: any of them may be a secret (``site.api_key``, a database URL with a password),
    and any user of the host can read a process's arguments (``ps``), while its environment is
    readable only by its owner and root. A flag beats an environment variable, so each one
    replaces the variable ``auto`` inherited: the children load exactly the parent's settings.
    """
    base = [sys.executable, "-m", "sgcache"]
    if config_path:
        base += ["--config", str(config_path)]
    commands = {"watch": [*base, "watch"]}
    if scan_interval:
        commands["scan"] = [*base, "scan", "--interval", str(scan_interval), "--no-progress"]
    if triggers:
        commands["triggers"] = [*base, "triggers"]
    env = dict(environ)
    for dotted, value in overrides.items():
        section, _, key = dotted.partition(".")
        env[env_name(section, key)] = str(value)
    return commands, env


class Supervisor:
    """Start each command, and start it again whenever it dies: 2 s later, then twice as long
    after each death in a row, up to ``max_backoff``. A child that ran ``healthy_after`` seconds
    before dying starts a new series (2 s again): one crash a day must not cost a minute's pause."""

    def __init__(self, commands: dict[str, list[str]], *, env: Mapping[str, str] | None = None,
                 max_backoff: float = 60.0, healthy_after: float = 300.0):
        self.commands = commands
        self.env = dict(env) if env is not None else None
        self.max_backoff = max_backoff
        self.healthy_after = healthy_after
        self.procs: dict[str, subprocess.Popen] = {}
        self.restarts: dict[str, int] = {name: 0 for name in commands}
        self.next_start: dict[str, float] = {name: 0.0 for name in commands}
        self.started_at: dict[str, float] = {}

    def _start(self, name: str) -> None:
        self.started_at[name] = time.monotonic()
        self.procs[name] = start_child(self.commands[name], env=self.env)
        log.info("event=child_started name=%s pid=%d", name, self.procs[name].pid)

    def run(self, stop: threading.Event) -> None:
        for name in self.commands:
            self._start(name)
        try:
            while not stop.wait(0.5):
                for name, proc in list(self.procs.items()):
                    code = proc.poll()
                    if code is None:
                        continue
                    now = time.monotonic()
                    if self.next_start[name] == 0.0:
                        if now - self.started_at[name] >= self.healthy_after:
                            self.restarts[name] = 0  # it ran well: this death starts a new series
                        self.restarts[name] += 1
                        pause = min(self.max_backoff, 2 ** min(self.restarts[name], 6))
                        self.next_start[name] = now + pause
                        log.error("event=child_died name=%s code=%s restart_in_s=%.0f", name, code, pause)
                    elif now >= self.next_start[name]:
                        self.next_start[name] = 0.0
                        self._start(name)
        finally:
            self.stop()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.info("event=child_stopped name=%s code=%s", name, proc.returncode)
