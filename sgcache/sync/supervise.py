"""Run several sgcache processes as one group; restart any that dies, with growing pauses."""

from __future__ import annotations

import logging
import subprocess
import threading
import time

log = logging.getLogger(__name__)


class Supervisor:
    def __init__(self, commands: dict[str, list[str]], *, max_backoff: float = 60.0):
        self.commands = commands
        self.max_backoff = max_backoff
        self.procs: dict[str, subprocess.Popen] = {}
        self.restarts: dict[str, int] = {name: 0 for name in commands}
        self.next_start: dict[str, float] = {name: 0.0 for name in commands}

    def _start(self, name: str) -> None:
        self.procs[name] = subprocess.Popen(self.commands[name])
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
