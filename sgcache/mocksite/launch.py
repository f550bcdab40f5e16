"""Build a stand-in site from options (schema, data, users, state file) and serve it until interrupted."""

from __future__ import annotations

import faulthandler
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from sgcache.errors import SgcacheError
from sgcache.mocksite.accounts import DEFAULT_HUMANS, DEFAULT_SCRIPTS, Human, Script
from sgcache.mocksite.permissions import GROUPS
from sgcache.mocksite.server import MockServer
from sgcache.mocksite.site import MockSite
from sgcache.schema import load

log = logging.getLogger(__name__)


def load_users(path: str | Path) -> tuple[list[Script], list[Human]]:
    """Scripts and human users from a YAML file::

        scripts:
          - {name: pipeline, key: pipeline-key, generate_events: false}
        humans:
          - {login: lead, password: lead-password, name: Lee Lead, group: manager}

    ``group`` is a permission group's code (see :mod:`sgcache.mocksite.permissions`); scripts
    default to api_admin, people to artist.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise SgcacheError(f"{path}: users file not found") from None
    except yaml.YAMLError as e:
        raise SgcacheError(f"{path}: not valid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(data, dict) or set(data) - {"scripts", "humans"}:
        raise SgcacheError(f"{path}: expected the keys 'scripts' and 'humans'")
    scripts, humans = [], []
    for i, item in enumerate(data.get("scripts") or []):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not isinstance(item.get("key"), str):
            raise SgcacheError(f"{path}: scripts[{i}] needs a name and a key")
        scripts.append(Script(item["name"], item["key"], bool(item.get("generate_events", True)),
                              group=_group(path, f"scripts[{i}]", item.get("group", "api_admin"))))
    for i, item in enumerate(data.get("humans") or []):
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in ("login", "password")):
            raise SgcacheError(f"{path}: humans[{i}] needs a login and a password")
        humans.append(Human(item["login"], item["password"], item.get("name") or item["login"],
                            group=_group(path, f"humans[{i}]", item.get("group", "artist"))))
    return scripts, humans


def _group(path: Path, where: str, code: object) -> str:
    if code not in GROUPS:
        raise SgcacheError(f"{path}: {where}: group must be one of {', '.join(GROUPS)}, got {code!r}")
    return str(code)


def build_site(schema_path: str | Path, *, data: str = "empty", scale: int = 1, seed: int = 0,
               users_path: str | Path | None = None, state_file: str | Path | None = None,
               late_events: float = 0.0, timezone: str = "UTC", file_dir: str | Path | None = None,
               thumbnail_ttl: int | None = None, thumbnail_pending: float = 0.0) -> MockSite:
    """A site restored from ``state_file`` when it exists, else new (with demo data if asked).
    ``thumbnail_ttl`` and ``thumbnail_pending``: see :mod:`sgcache.mocksite.thumbnails`."""
    if file_dir is None:
        file_dir = Path(state_file).with_suffix(".files") if state_file else Path("var/mock-site-files")
    thumbnails = {"thumbnail_ttl": thumbnail_ttl, "thumbnail_pending": thumbnail_pending}
    if state_file and Path(state_file).exists():
        try:
            site = MockSite.restore(state_file, late_events=late_events, timezone=timezone, seed=seed,
                                    file_dir=file_dir, **thumbnails)
        except ValueError as e:
            raise SgcacheError(f"{e}: it was saved by another version of the stand-in; delete it (sgcache demo "
                               "--fresh does) to start a new site") from None
        log.info("event=mock_site_restored path=%s entities=%d", state_file,
                 sum(len(rows) for rows in site.emu.tables.values()))
        return site
    scripts, humans = list(DEFAULT_SCRIPTS), list(DEFAULT_HUMANS)
    if users_path:
        more_scripts, more_humans = load_users(users_path)
        scripts += more_scripts
        humans += more_humans
    # Fresh copies: a site changes the ids of the users it holds.
    scripts = [Script(s.name, s.key, s.generate_events, group=s.group) for s in scripts]
    humans = [Human(h.login, h.password, h.name, group=h.group) for h in humans]
    site = MockSite(load(schema_path), scripts=scripts, humans=humans, late_events=late_events,
                    timezone=timezone, seed=seed, file_dir=file_dir, **thumbnails)
    if data == "demo":
        from sgcache.mocksite.studio import build_studio

        started = time.perf_counter()
        counts = build_studio(site, scale=scale, seed=seed)
        log.info("event=mock_site_data scale=%d entities=%d seconds=%.1f", scale, sum(counts.values()),
                 time.perf_counter() - started)
    elif data != "empty":
        raise SgcacheError(f"--data must be demo or empty, got {data!r}")
    return site


def credentials_text(site: MockSite, url: str) -> str:
    lines = [f"Stand-in Shotgun site at {url}", "Credentials (for tests and the demo only):"]
    for script in site.scripts.values():
        events = "" if script.generate_events else ", writes make no events"
        lines.append(f"  script {script.name!r} key {script.key!r}  (group {script.group}{events})")
    for human in site.humans.values():
        lines.append(f"  user {human.login!r} password {human.password!r}  (group {human.group})")
    return "\n".join(lines)


#: Seconds after SIGINT or SIGTERM before a stand-in still running prints its threads' stacks.
STOP_REPORT_SECONDS = 8.0


def serve(site: MockSite, host: str, port: int, *, latency_ms: float = 0, state_file: str | Path | None = None,
          admin: bool = True, announce=print, webhook: Any = None) -> None:
    """Serve until SIGINT or SIGTERM; save the state file on the way out. ``webhook``: a
    :class:`~sgcache.mocksite.webhooks.WebhookSender` to run meanwhile."""
    server = MockServer(site, host, port, latency_ms=latency_ms, admin=admin, state_file=state_file).start()
    announce(credentials_text(site, server.url))
    if webhook is not None:
        webhook.start()
        announce(f"webhook: each new event-log entry is posted to {webhook.url}"
                 + (" in batches" if webhook.batched else "") + (", signed" if webhook.secret else ", unsigned"))
    stop = threading.Event()

    def handle(signum, _frame):
        stop.set()
        # A stand-in that does not stop says why: every thread's stack, on stderr, if it is still
        # here in STOP_REPORT_SECONDS (the demo and the tests keep that output in its log).
        faulthandler.dump_traceback_later(STOP_REPORT_SECONDS, exit=False)

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    # SIGUSR1 prints every thread's stack at once, without stopping (for a stand-in that seems stuck).
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        # Python runs a signal's handler in the main thread, and only once that thread runs again:
        # a wait without a timeout may sleep through a signal the kernel gave another thread.
        while not stop.wait(0.25):
            pass
    finally:
        faulthandler.unregister(signal.SIGUSR1)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if webhook is not None:
            webhook.stop()
        server.stop()
        faulthandler.cancel_dump_traceback_later()
        log.info("event=mock_site_stopped")
