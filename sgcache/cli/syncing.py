"""The commands that fill the cache from the site: ``scan``, ``rebuild``, ``watch`` and ``auto``."""

from __future__ import annotations

import logging

import click

from sgcache.cli.common import State, cli, split_csv, stop_on_signals, sync_parts


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

    config, engine, tables, remote = sync_parts(state)
    # SIGTERM or Ctrl-C stops it between two pages (or during a pause between tries of the site).
    stop = stop_on_signals()
    scanner = Scanner(engine, tables, remote, config.scanner, progress=progress, stop=stop)
    type_list = split_csv(types)
    project_list = split_csv(projects, int)
    leader = None
    if interval:
        leader = Leadership(engine, "scan")
        if not leader.acquire(stop):
            return
    try:
        _scan(scanner, full, interval, type_list, project_list, stop)
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

    from sgcache.sync.rebuild import Rebuilder
    from sgcache.sync.scanner import Scanner

    config, engine, tables, remote = sync_parts(state)
    unknown = [t for t in type_names if t not in tables]
    if unknown:
        raise click.BadParameter(f"not a cached entity type: {', '.join(unknown)} (see sgcache schema show)",
                                 param_hint="TYPE")
    scanner = Scanner(engine, tables, remote, config.scanner, progress=progress)
    started = time.monotonic()
    report = Rebuilder(engine, tables, scanner).rebuild(sorted(set(type_names)), stop_on_signals())
    click.echo(f"rebuilt {', '.join(t.entity_type for t in report.types)}: {report.written} entities in "
               f"{time.monotonic() - started:.1f} s; reads of them are answered from the cache again",
               err=True)


@cli.command()
@click.option("--once", is_flag=True, help="Apply what is waiting, then exit.")
@click.pass_obj
def watch(state: State, once: bool) -> None:
    """Follow the site's event log and apply every change to the cache (one leader per database)."""
    from sgcache.sync.leader import Leadership
    from sgcache.sync.watcher import Watcher

    config, engine, tables, remote = sync_parts(state)
    watcher = Watcher(engine, tables, remote, config.watcher)
    if once:
        while watcher.poll_once() >= config.watcher.batch_size:
            pass
        click.echo(f"applied {watcher.applied} events", err=True)
        return
    stop = stop_on_signals()
    leader = Leadership(engine, "watch")
    if not leader.acquire(stop):
        return
    try:
        cursor = watcher.start()
        logging.getLogger("sgcache").info("event=watch_started after_id=%d gaps=%d", cursor.max_applied_id,
                                          len(cursor.gaps))
        watcher.run(stop)
    finally:
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
    from sgcache.sync.supervise import Supervisor, sync_children

    config, engine, tables, remote = sync_parts(state)
    engine.dispose()
    interval = scan_interval if scan_interval is not None else config.scanner.interval
    if not interval:
        logging.getLogger("sgcache").warning(
            "event=auto_without_scans reason='scanner.interval is 0' note='run sgcache scan --full for types "
            "never imported'")
    # The settings given here reach the children in their environment, never their arguments.
    commands, env = sync_children(state.config_path, state.overrides, interval)
    Supervisor(commands, env=env).run(stop_on_signals())
