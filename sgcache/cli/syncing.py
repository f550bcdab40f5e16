"""The commands that fill the cache from the site: ``scan``, ``rebuild``, ``watch`` and ``auto``.

With ``schema.follow: follow`` each of them writes with the schema in use (the followed one
recorded in the cache database, else the file), held under the schema lock; when a followed
change replaces it, the work at hand stops between two pages and starts again with the new
schema, in the same process (see :mod:`sgcache.schema.follow`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

import click

from sgcache.cli.common import State, cache_tables, cli, split_csv, stop_on_signals, sync_parts
from sgcache.errors import SgcacheError

log = logging.getLogger("sgcache")


@cli.command()
@click.option("--full", is_flag=True, help="Import every entity (active and retired), then reconcile.")
@click.option("--types", metavar="A,B", help="Only these entity types (default: scanner.types, else all cached).")
@click.option("--projects", metavar="ID,ID", help="With --full: only these projects (default: scanner.projects).")
@click.option("--interval", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Keep scanning incrementally every SECONDS (one leader per database).")
@click.option("--progress/--no-progress", default=None, help="Progress bars (default: on a terminal).")
@click.pass_obj
def scan(state: State, full: bool, types: str | None, projects: str | None, interval: float | None,
         progress: bool | None) -> None:
    """Import entities from the site: in full, or what changed since the last scan."""
    from sgcache.sync.leader import Leadership
    from sgcache.sync.remote import Stopped
    from sgcache.sync.scanner import Scanner

    config, engine, remote = sync_parts(state)
    # SIGTERM or Ctrl-C stops it between two pages (or during a pause between tries of the site).
    stop = stop_on_signals()
    type_list = split_csv(types)
    project_list = split_csv(projects, int)
    leader = None
    if interval:
        leader = Leadership(engine, "scan")
        if not leader.acquire(stop):
            return
    def scanner(tables, round_stop):
        found = Scanner(engine, tables, remote, config.scanner, progress=progress, stop=round_stop)
        found.history_keep = config.history.keep_seconds  # pruned with the periodic scans
        return found

    try:
        _with_schema(config, engine, "scan", stop, lambda tables, round_stop: _scan(
            scanner(tables, round_stop), full, interval, type_list, project_list, round_stop))
    except Stopped:
        # A service asked to stop is a clean exit; a one-off scan left unfinished is not.
        click.echo("sgcache scan: stopped before the scan finished; an unfinished full import is done "
                   "again at the next start", err=True)
        if not interval:
            raise SystemExit(1) from None
    finally:
        if leader is not None:
            leader.release()


def _scan(scanner, full: bool, interval: float | None, type_list: list | None, project_list: list | None,
          stop) -> None:
    if full:
        report = scanner.full(type_list, project_list)
        click.echo(f"full import: {report.written} entities, {len(report.types)} types, "
                   f"{sum(t.retired_missing for t in report.types)} retired as missing upstream", err=True)
    elif not interval:
        report = scanner.incremental(type_list)
        click.echo(f"incremental scan: {report.written} entities read (changed since the last scan, "
                   f"with overlap); {report.other_sides} read again as the other side of changed links",
                   err=True)
    if interval:
        scanner.full_where_needed(type_list, project_list)
        scanner.run_forever(interval, stop, type_list)


@cli.command()
@click.argument("type_names", metavar="TYPE...", nargs=-1, required=True)
@click.option("--progress/--no-progress", default=None, help="Progress bars (default: on a terminal).")
@click.pass_obj
def rebuild(state: State, type_names: tuple[str, ...], progress: bool | None) -> None:
    """Import entity types again from nothing while the proxy keeps serving.

    Reads touching these types pass through to the site from the start of the rebuild until
    every one of them is imported again, then all switch back to the cache at once.
    """
    import time

    from sgcache.schema.follow.record import follows
    from sgcache.sync.rebuild import Rebuilder
    from sgcache.sync.scanner import Scanner

    config, engine, remote = sync_parts(state)

    def run(tables, stop):
        unknown = [t for t in type_names if t not in tables]
        if unknown:
            raise click.BadParameter(f"not a cached entity type: {', '.join(unknown)} (see sgcache schema show)",
                                     param_hint="TYPE")
        # Following the site, a schema change stops the import between two pages (see _with_schema).
        scanner = Scanner(engine, tables, remote, config.scanner, progress=progress,
                          stop=stop if follows(config) else None)
        return Rebuilder(engine, tables, scanner).rebuild(sorted(set(type_names)), stop)

    started = time.monotonic()
    report = _with_schema(config, engine, "rebuild", stop_on_signals(), run)
    click.echo(f"rebuilt {', '.join(t.entity_type for t in report.types)}: {report.written} entities in "
               f"{time.monotonic() - started:.1f} s; reads of them are answered from the cache again",
               err=True)


@cli.command()
@click.option("--once", is_flag=True, help="Apply what is waiting, then exit.")
@click.pass_obj
def watch(state: State, once: bool) -> None:
    """Follow the site's event log and apply every change to the cache (one leader per database)."""
    from sgcache.schema.follow.record import follows
    from sgcache.sync.leader import Leadership
    from sgcache.sync.watcher import Watcher

    if follows(state.config()):
        _watch_following(state, once)
        return
    from sgcache.store.migrate import migrate

    config, engine, remote = sync_parts(state)
    tables = cache_tables(config)
    migrate(engine, tables)
    watcher = Watcher(engine, tables, remote, config.watcher)
    watcher.keep_events = bool(config.triggers.paths)  # the entries event plugins are handed
    watcher.webhooks = config.site.webhook_secret is not None  # deliveries wake it
    if once:
        _apply_waiting(watcher)
        return
    stop = stop_on_signals()
    leader = Leadership(engine, "watch")
    if not leader.acquire(stop):
        return
    try:
        cursor = watcher.start()
        log.info("event=watch_started after_id=%d gaps=%d", cursor.max_applied_id, len(cursor.gaps))
        watcher.run(stop)
    finally:
        leader.release()


def _apply_waiting(watcher) -> None:
    """``watch --once``: poll until a poll reads less than a full batch."""
    while watcher.poll_once() >= watcher.config.batch_size:
        pass
    click.echo(f"applied {watcher.applied} events", err=True)


def _watch_following(state: State, once: bool) -> None:
    """``watch`` with ``schema.follow: follow``: the leader holds the schema in use and, on each
    schema change the site announces, follows it (see sgcache.schema.follow.follower)."""
    from sgcache.schema.follow.follower import Follower, WatcherFollow
    from sgcache.schema.follow.held import HeldSchema
    from sgcache.store.migrate import migrate
    from sgcache.sync.leader import Leadership
    from sgcache.sync.remote import Stopped
    from sgcache.sync.watcher import Watcher

    config, engine, remote = sync_parts(state)
    stop = None if once else stop_on_signals()
    leader = None
    if not once:
        leader = Leadership(engine, "watch")
        if not leader.acquire(stop):
            return
    # A standby loads the schema once it leads: by then another leader may have changed it.
    held = HeldSchema(engine, config, name="watch")
    try:
        tables = held.acquire(stop)
        migrate(engine, tables)
        follow = WatcherFollow(held, Follower(engine, config, remote, stop=stop))
        watcher = Watcher(engine, tables, remote, config.watcher, schema_follow=follow)
        watcher.keep_events = bool(config.triggers.paths)
        watcher.webhooks = config.site.webhook_secret is not None
        if once:
            _apply_waiting(watcher)
            return
        cursor = watcher.start()
        log.info("event=watch_started after_id=%d gaps=%d schema=%s", cursor.max_applied_id, len(cursor.gaps),
                 held.digest or config.schema.path)
        watcher.run(stop)
    except Stopped:
        return  # asked to stop while waiting for the schema
    finally:
        held.release()
        if leader is not None:
            leader.release()


@cli.command()
@click.option("--scan-interval", type=click.FloatRange(min=1), help="Seconds between incremental scans "
              "(default: scanner.interval).")
@click.pass_obj
def auto(state: State, scan_interval: float | None) -> None:
    """Run the watcher and the periodic scanner together, restarting either if it dies.

    A type never fully imported is imported first. For small sites and the demo; larger sites
    run `sgcache watch` and `sgcache scan --interval` as separate services.
    """
    from sgcache.sync.remote import Stopped
    from sgcache.sync.supervise import Supervisor, sync_children

    # Before the migration: SIGTERM or Ctrl-C during it lets it finish, then ends auto cleanly.
    stop = stop_on_signals()
    config, engine, _ = sync_parts(state)
    # (Stopped: asked to stop while it waited for a followed schema change, schema.follow: follow.)
    with contextlib.suppress(Stopped):
        _with_schema(config, engine, "auto", stop, lambda tables, _stop: None)  # migrated to the schema in use
    engine.dispose()
    if stop.is_set():
        log.info("event=stopped process=auto reason='asked to stop before its children started'")
        return
    interval = scan_interval if scan_interval is not None else config.scanner.interval
    if not interval:
        log.warning(
            "event=auto_without_scans reason='scanner.interval is 0' note='run sgcache scan --full for types "
            "never imported'")
    # The settings given here reach the children in their environment, never their arguments.
    commands, env = sync_children(state.config_path, state.overrides, interval,
                                  triggers=bool(config.triggers.paths))
    Supervisor(commands, env=env).run(stop)


# --- the schema the sync commands write with -----------------------------------------------------


def _with_schema(config, engine, name: str, stop: threading.Event | None,
                 work: Callable[[Any, threading.Event | None], Any]) -> Any:
    """``work(tables, stop)`` with the cache migrated to the schema in use; its result.

    ``schema.follow: manual``: once, with the schema file's tables and ``stop``, as ever.
    ``follow``: with the schema in use held under the schema lock, and a stop of its own that is
    also set when a followed change is waiting for this process to let go: ``work`` then stops
    (between two pages, as on SIGTERM) and runs again from the start with the new schema.
    """
    from sgcache.schema.follow.held import HeldSchema
    from sgcache.schema.follow.record import follows
    from sgcache.store.migrate import migrate

    if not follows(config):
        tables = cache_tables(config)
        migrate(engine, tables)
        return work(tables, stop)
    held = HeldSchema(engine, config, name=name)
    result = None
    while True:
        tables = held.acquire(stop)
        this_round, reload = threading.Event(), threading.Event()
        guard = threading.Thread(target=_guard, args=(held, stop, this_round, reload), name="schema-guard",
                                 daemon=True)
        try:
            migrate(engine, tables)  # under the lock: never with a schema a follower is replacing
            guard.start()
            try:
                result = work(tables, this_round)
            except SgcacheError:  # Stopped, or a rebuild interrupted in its grace period
                if not reload.is_set():
                    raise
        finally:
            this_round.set()
            if guard.is_alive():
                guard.join()
            held.release()
        if not reload.is_set() or (stop is not None and stop.is_set()):
            return result
        log.info("event=schema_reload process=%s reason='the schema in use changed: starting again with it'",
                 name)


def _guard(held, stop: threading.Event | None, this_round: threading.Event, reload: threading.Event) -> None:
    """Until ``this_round`` ends: pass ``stop`` on to it, and end it when the schema must be let go."""
    import sqlalchemy as sa

    while not this_round.wait(0.5):
        if stop is not None and stop.is_set():
            this_round.set()
            return
        try:
            stale = held.stale()
        except sa.exc.SQLAlchemyError:
            continue  # the database is down: the work fails or waits on its own
        if stale:
            reload.set()
            this_round.set()
            return
