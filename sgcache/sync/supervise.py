"""Run several sgcache processes as one group; restart any that dies, with growing pauses."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping

from sgcache.config import env_name

log = logging.getLogger(__name__)


def sync_children(config_path: str | None, overrides: Mapping[str, str], scan_interval: float, *,
                  environ: Mapping[str, str] = os.environ) -> tuple[dict[str, list[str]], dict[str, str]]:
    """The commands and the environment of ``sgcache auto``'s children: ``watch``, and ``scan
    --interval`` unless ``scan_interval`` is 0.

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
    env = dict(environ)
    for dotted, value in overrides.items():
        section, _, key = dotted.partition(".")
        env[env_name(section, key)] = str(value)
    return commands, env


class Supervisor:
    def __init__(self, commands: dict[str, list[str]], *, env: Mapping[str, str] | None = None,
                 max_backoff: float = 60.0):
        self.commands = commands
        self.env = dict(env) if env is not None else None
        self.max_backoff = max_backoff
        self.procs: dict[str, subprocess.Popen] = {}
        self.restarts: dict[str, int] = {name: 0 for name in commands}
        self.next_start: dict[str, float] = {name: 0.0 for name in commands}

    def _start(self, name: str) -> None:
        self.procs[name] = subprocess.Popen(self.commands[name], env=self.env)
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
