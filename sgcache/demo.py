"""``sgcache demo``: the whole product on one machine, in one command.

It starts the stand-in site (studio data, a hosted site's delay), imports it into a cache
(SQLite under the demo folder unless told otherwise) with a progress bar, then starts the
watcher and the periodic scanner (``sgcache auto``) and the proxy (``sgcache web``). It prints
what to paste to try it, the status page's address, and the same few calls timed against the
site and through sgcache; then it waits for Ctrl-C and stops everything, proxy first.

Each part runs as its own process, in its own session (so Ctrl-C reaches only the demo, which
stops the others in order), with its log in the demo folder. A part also stops when the demo
dies without stopping it (SIGKILL, a crash): see :func:`sgcache.sync.supervise.start_child`.
"""

from __future__ import annotations

import logging
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from sgcache.config import Config, env_name
from sgcache.errors import SgcacheError
from sgcache.sync.supervise import start_child

log = logging.getLogger(__name__)

#: The stand-in's credentials the demo uses and prints (see docs/mocksite.rst).
SCRIPT_NAME, SCRIPT_KEY = "sgcache", "sgcache-demo-key"


@dataclass
class DemoOptions:
    folder: Path
    database_url: str
    proxy_bind: str
    site_bind: str
    latency_ms: float
    scale: int
    seed: int
    site_schema: Path
    fresh: bool
    compare: bool = True
    progress: bool | None = None


class Child:
    """One process of the demo, its output in ``<folder>/<name>.log``."""

    def __init__(self, name: str, command: list[str], folder: Path, env: dict[str, str]):
        self.name = name
        self.log_path = folder / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        self.process = start_child(command, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                   stdin=subprocess.DEVNULL, start_new_session=True)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._log.close()
        return self.process.returncode

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _url(bind: str) -> str:
    host, _, port = bind.rpartition(":")
    if host in ("0.0.0.0", "", "[::]"):
        host = "127.0.0.1"
    return f"http://{host}:{port}"


def _port_free(bind: str) -> bool:
    import socket

    host, _, port = bind.rpartition(":")
    with socket.socket(socket.AF_INET6 if host.startswith("[") else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host.strip("[]") or "127.0.0.1", int(port)))
        except OSError:
            return False
    return True


class Demo:
    """Runs the demo; :meth:`run` returns when ``stop`` is set (or a part fails)."""

    def __init__(self, config: Config, options: DemoOptions, *, echo: Callable[[str], None] = print,
                 config_path: str | None = None):
        self.config = config
        self.options = options
        self.echo = echo
        self.config_path = config_path
        self.children: list[Child] = []
        self.site_url = _url(options.site_bind)
        self.proxy_url = _url(options.proxy_bind)

    # --- the parts ------------------------------------------------------------------------------

    def _settings(self) -> dict[str, str]:
        o = self.options
        return {"site.base_url": self.site_url, "site.script_name": SCRIPT_NAME, "database.url": o.database_url,
                "schema.path": str(self.config.schema.path), "web.bind": o.proxy_bind}

    def _command(self, *args: str) -> list[str]:
        base = [sys.executable, "-m", "sgcache"]
        if self.config_path:
            base += ["--config", self.config_path]
        return base + list(args)

    def _env(self) -> dict[str, str]:
        # Settings go to the children in their environment, never on their command lines: a
        # database URL may hold a password, and anyone on the host can read arguments (ps).
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        for dotted, value in self._settings().items():
            section, _, key = dotted.partition(".")
            env[env_name(section, key)] = value
        env["SGCACHE_SITE_API_KEY"] = SCRIPT_KEY
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _start(self, name: str, command: list[str]) -> Child:
        child = Child(name, command, self.options.folder, self._env())
        self.children.append(child)
        return child

    def _wait_until(self, child: Child, ready: Callable[[], bool], what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not child.alive():
                raise SgcacheError(f"{what} stopped while starting (status {child.process.returncode}); the end of "
                                   f"{child.log_path}:\n{child.tail()}")
            try:
                if ready():
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise SgcacheError(f"{what} did not start within {timeout:.0f} s; the end of {child.log_path}:\n"
                                   f"{child.tail()}")
            time.sleep(0.2)

    def start_site(self) -> None:
        o = self.options
        state_file = o.folder / "site.json"
        self.echo(f"starting the stand-in site on {self.site_url} (studio scale {o.scale}, {o.latency_ms:g} ms a "
                  f"request, like a hosted site; its data is kept in {state_file})")
        child = self._start("site", [sys.executable, "-m", "sgcache", "-q", "mock-site", "--bind", o.site_bind,
                                     "--schema", str(o.site_schema), "--scale", str(o.scale), "--seed", str(o.seed),
                                     "--latency-ms", str(o.latency_ms), "--state", str(state_file)])
        body = {"method_name": "info", "params": []}
        self._wait_until(child, lambda: requests.post(self.site_url + "/api3/json", json=body, timeout=5).ok,
                         "the stand-in site", 120)

    def import_all(self) -> None:
        from sgcache.schema import load
        from sgcache.store.db import check_connection, create_engine, safe_url
        from sgcache.store.migrate import migrate
        from sgcache.store.tables import Tables
        from sgcache.sync import cursor as cursors
        from sgcache.sync.remote import Remote
        from sgcache.sync.scanner import Scanner

        config = self.site_config()
        tables = Tables(load(self.config.schema.path))
        engine = create_engine(self.options.database_url)
        try:
            check_connection(engine)
            migrate(engine, tables)
            remote = Remote(config.site)
            with engine.connect() as conn:
                cursor = cursors.load(conn, tables.state)
            newest = remote.newest_event_id()
            if cursor is not None and cursor.max_applied_id > newest:
                raise SgcacheError(f"the cache {safe_url(engine.url)} has followed another site (it has applied "
                                   f"event {cursor.max_applied_id}, this site's newest is {newest}); run the demo "
                                   "with --fresh, or give it an empty database")
            self.echo(f"importing the site into {safe_url(engine.url)} (types imported before are kept and "
                      "brought up to date by the watcher)")
            started = time.monotonic()
            report = Scanner(engine, tables, remote, config.scanner, progress=self.options.progress) \
                .full_where_needed()
            if report.types:
                self.echo(f"imported {report.written} entities of {len(report.types)} types in "
                          f"{time.monotonic() - started:.1f} s")
            else:
                self.echo("every type was imported by an earlier run")
        finally:
            engine.dispose()

    def site_config(self) -> Config:
        import dataclasses

        from sgcache.config import Secret

        site = dataclasses.replace(self.config.site, base_url=self.site_url, script_name=SCRIPT_NAME,
                                   api_key=Secret(SCRIPT_KEY))
        return dataclasses.replace(self.config, site=site)

    def start_sync_and_proxy(self) -> None:
        self.echo("starting the watcher and the periodic scanner (sgcache auto), and the proxy (sgcache web)")
        self._start("sync", self._command("auto"))
        web = self._start("web", self._command("web", "--bind", self.options.proxy_bind))
        self._wait_until(web, lambda: requests.get(self.proxy_url + "/_sgcache/health", timeout=5).ok,
                         "the proxy", 60)

    # --- what the user sees -----------------------------------------------------------------------

    def instructions(self) -> str:
        return "\n".join([
            "",
            f"sgcache is answering on {self.proxy_url} in front of the stand-in site {self.site_url}.",
            "",
            "Try it (Python, with shotgun_api3 installed; .venv/bin/python has it):",
            "",
            "    import shotgun_api3",
            f"    sg = shotgun_api3.Shotgun({self.proxy_url!r}, script_name={SCRIPT_NAME!r}, "
            f"api_key={SCRIPT_KEY!r})",
            "    sg.find('Shot', [['sg_status_list', 'is', 'ip']], ['code', 'sg_sequence'], limit=5)",
            "",
            f"Point the same line at {self.site_url} to ask the site directly. As a person, login='artist',",
            "password='artist-password' sees only the artist's projects, from the cache too; 'vendor' always goes to",
            "the site (auth.groups in sgcache.yml; people: docs/mocksite.rst).",
            f"Status page: {self.proxy_url}/_sgcache/   (JSON: /_sgcache/status, Prometheus: /_sgcache/metrics)",
            f"Logs: {self.options.folder}/site.log, sync.log, web.log",
        ])

    def comparison(self, repeats: int = 5) -> list[tuple[str, float, float, bool]]:
        """(call, site p50 ms, sgcache p50 ms, same answer) for a few typical finds."""
        import shotgun_api3

        site = shotgun_api3.Shotgun(self.site_url, script_name=SCRIPT_NAME, api_key=SCRIPT_KEY)
        proxy = shotgun_api3.Shotgun(self.proxy_url, script_name=SCRIPT_NAME, api_key=SCRIPT_KEY)
        shot = site.find_one("Shot", [["sg_sequence", "is_not", None]], ["sg_sequence", "project"])
        if shot is None:
            return []
        sequence = site.find_one("Sequence", [["id", "is", shot["sg_sequence"]["id"]]], ["code"])
        calls: list[tuple[str, Callable[[Any], Any]]] = [
            ("find_one Shot by id", lambda sg: sg.find_one("Shot", [["id", "is", shot["id"]]],
                                                            ["code", "sg_status_list", "sg_sequence"])),
            ("find the Shots of a Sequence", lambda sg: sg.find("Shot", [["sg_sequence", "is", shot["sg_sequence"]]],
                                                                 ["code", "sg_status_list"])),
            ("find Versions through a deep link", lambda sg: sg.find(
                "Version", [["project", "is", shot["project"]],
                            ["entity.Shot.sg_sequence.Sequence.code", "is", sequence["code"]]],
                ["code", "entity", "created_at"])),
            ("summarize Tasks by status", lambda sg: sg.summarize(
                "Task", [["project", "is", shot["project"]]], [{"field": "id", "type": "count"}],
                grouping=[{"field": "sg_status_list", "type": "exact", "direction": "asc"}])),
        ]
        rows = []
        for label, call in calls:
            call(proxy)  # the first call checks the credentials with the site once
            timings = {}
            answers = {}
            for name, sg in (("site", site), ("sgcache", proxy)):
                spent = []
                for _ in range(repeats):
                    started = time.perf_counter()
                    answers[name] = call(sg)
                    spent.append((time.perf_counter() - started) * 1000)
                timings[name] = statistics.median(spent)
            rows.append((label, timings["site"], timings["sgcache"], answers["site"] == answers["sgcache"]))
        return rows

    def print_comparison(self) -> None:
        rows = self.comparison()
        if not rows:
            return
        self.echo("\nThe same calls, directly to the site and through sgcache (median of 5, real shotgun_api3):\n")
        self.echo(f"    {'call':<36}{'site':>10}{'sgcache':>11}  answer")
        for label, site_ms, proxy_ms, same in rows:
            self.echo(f"    {label:<36}{site_ms:>7.1f} ms{proxy_ms:>8.1f} ms  {'same' if same else 'DIFFERENT'}")

    # --- the whole run ----------------------------------------------------------------------------

    def check_ports(self) -> None:
        for bind, option in ((self.options.site_bind, "--site-bind"), (self.options.proxy_bind, "--bind")):
            if not _port_free(bind):
                raise SgcacheError(f"{bind} is already in use (another demo or proxy?): stop it, or choose another "
                                   f"address with {option}")

    def run(self, stop: threading.Event) -> None:
        o = self.options
        if o.fresh:
            self.clear()
        o.folder.mkdir(parents=True, exist_ok=True)
        self.check_ports()
        try:
            self.start_site()
            self.import_all()
            self.start_sync_and_proxy()
            self.echo(self.instructions())
            if o.compare:
                self.print_comparison()
            self.echo(f"\nsgcache demo ready: {self.proxy_url}  (Ctrl-C stops it)")
            while not stop.wait(0.5):
                for child in self.children:
                    if not child.alive():
                        raise SgcacheError(f"the demo's {child.name} process stopped (status "
                                           f"{child.process.returncode}); the end of {child.log_path}:\n"
                                           f"{child.tail()}")
        finally:
            self.shutdown()

    def _say(self, text: str) -> None:
        """Echo, unless whoever reads our output has gone (``make demo | tee``, then Ctrl-C): the
        children must be stopped whatever happens to the terminal."""
        try:
            self.echo(text)
        except OSError:  # BrokenPipeError among them
            pass

    def shutdown(self) -> None:
        if not self.children:
            return
        self._say("\nstopping: " + ", ".join(c.name for c in reversed(self.children)))
        try:
            for child in reversed(self.children):  # the proxy first, the site last
                try:
                    child.stop()
                except Exception:  # one child refusing to stop must not leave the others running
                    log.exception("event=child_stop_failed name=%s", child.name)
                    child.process.kill()
        finally:
            self.children.clear()
        self._say("stopped")

    def clear(self) -> None:
        """--fresh: forget the stand-in's saved data and the demo's own SQLite cache."""
        import shutil

        from sgcache.store.db import sqlite_path

        folder = self.options.folder
        (folder / "site.json").unlink(missing_ok=True)
        shutil.rmtree(folder / "site.files", ignore_errors=True)
        path = sqlite_path(self.options.database_url)
        if path is not None and path.parent.resolve() == folder.resolve():
            for suffix in ("", "-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)
        elif path is None or path.exists():
            self.echo(f"--fresh: {self.options.database_url} is not the demo's own file and is left as it is")
