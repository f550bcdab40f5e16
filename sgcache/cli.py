"""The ``sgcache`` command. Thin: it parses arguments, loads the config and calls the library."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click
import sqlalchemy

from sgcache import __version__
from sgcache.config import Config, load_config
from sgcache.errors import SgcacheError
from sgcache.logs import register_secret, setup_logging


class _State:
    """What the top-level options say; the config is loaded on first use."""

    def __init__(self, config_path: str | None, verbose: int, quiet: bool, overrides: dict[str, Any]):
        self.config_path = config_path
        self.verbose = verbose
        self.quiet = quiet
        self.overrides = overrides
        self._config: Config | None = None

    def config(self, *require: str) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path, overrides=self.overrides)
            if self._config.site.api_key is not None:
                register_secret(self._config.site.api_key.reveal())
            level = "debug" if self.verbose else "warning" if self.quiet else self._config.log.level
            setup_logging(level, self._config.log.format)
        self._config.require(*require)
        return self._config


def _parse_set(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise click.BadParameter(f"expected SECTION.KEY=VALUE, got {item!r}", param_hint="--set")
        out[key.strip()] = value
    return out


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--config", "config_path", metavar="PATH", envvar="SGCACHE_CONFIG",
              help="Settings file (default: $SGCACHE_CONFIG, else ./sgcache.yml if present).")
@click.option("--database", metavar="URL", help="Cache database URL (database.url).")
@click.option("--schema", "schema_path", metavar="FILE", help="Schema file (schema.path).")
@click.option("--set", "settings", metavar="SECTION.KEY=VALUE", multiple=True,
              help="Override any setting, e.g. --set web.workers=4. Repeatable.")
@click.option("-v", "--verbose", count=True, help="Log more (debug).")
@click.option("-q", "--quiet", is_flag=True, help="Log warnings and errors only.")
@click.pass_context
def cli(ctx: click.Context, config_path, database, schema_path, settings, verbose, quiet) -> None:
    """sgcache: a caching proxy for the Shotgun API.

    Settings come from built-in defaults, then the YAML file, then SGCACHE_<SECTION>_<KEY>
    environment variables, then these flags. See docs/configuration.rst.
    """
    from sgcache.sync.supervise import exit_with_parent

    exit_with_parent()  # a child of `sgcache auto` or the demo stops when its parent is gone
    overrides: dict[str, Any] = _parse_set(settings)
    if database:
        overrides["database.url"] = database
    if schema_path:
        overrides["schema.path"] = schema_path
    ctx.obj = _State(config_path, verbose, quiet, overrides)


@cli.command()
def version() -> None:
    """Print the versions of sgcache and what it runs on."""
    import shotgun_api3
    import sqlalchemy

    click.echo(f"sgcache {__version__} (shotgun_api3 {shotgun_api3.__version__}, SQLAlchemy "
               f"{sqlalchemy.__version__}, Python {sys.version.split()[0]})")


@cli.group()
def schema() -> None:
    """Make, filter, inspect and apply schema files."""


@schema.command("dump")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write here instead of standard output.")
@click.option("--from-json", "from_json", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Convert a saved schema_read answer (JSON) instead of asking the site.")
@click.option("--entities-json", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="With --from-json: a saved schema_entity_read answer, for type labels.")
@click.pass_obj
def schema_dump(state: _State, output: Path | None, from_json: Path | None, entities_json: Path | None) -> None:
    """Write the site's full schema as YAML.

    Reads schema_read and schema_entity_read from the site in the settings (site.base_url,
    site.script_name, site.api_key), or converts answers saved as JSON with --from-json.
    """
    from sgcache.schema import dumps, fetch

    if entities_json is not None and from_json is None:
        raise click.UsageError("--entities-json goes with --from-json")
    if from_json is not None:
        schema_ = fetch.from_json_files(from_json, entities_json)
    else:
        schema_ = fetch.from_site(state.config("site.base_url", "site.script_name", "site.api_key").site)
    _write(dumps(schema_), output)
    click.echo(f"{len(schema_)} entity types, {sum(len(t.fields) for t in schema_)} fields", err=True)


@schema.command("filter")
@click.option("--rules", "-r", "rules_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Rules file: one [+|-]TypeGlob[.fieldGlob][:data_type] a line, first match wins.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write here instead of standard output.")
@click.argument("input_path", metavar="IN.yml", type=click.Path(dir_okay=False, path_type=Path))
def schema_filter(rules_path: Path, output: Path | None, input_path: Path) -> None:
    """Keep the subset of a schema file that the rules select."""
    from sgcache.schema import dumps, load
    from sgcache.schema.rules import filter_schema, load_rules

    full = load(input_path)
    rules = load_rules(rules_path)
    header = (f"Made by `sgcache schema filter --rules {rules_path.name} {input_path.name}`.\n"
              f"Source header:\n" + "\n".join(f"  {line}" for line in full.header.splitlines()))
    kept = filter_schema(full, rules, header=header)
    _write(dumps(kept), output)
    click.echo(f"kept {len(kept)} of {len(full)} entity types, "
               f"{sum(len(t.fields) for t in kept)} of {sum(len(t.fields) for t in full)} fields", err=True)


@schema.command("show")
@click.argument("type_names", metavar="[TYPE]...", nargs=-1)
@click.option("--dialect", type=click.Choice(["postgresql", "sqlite"]),
              help="Show column types for this database (default: the configured one).")
@click.pass_obj
def schema_show(state: _State, type_names: tuple[str, ...], dialect: str | None) -> None:
    """Print what the cache will store, table by table (every type when none is named)."""
    from sgcache.store import show

    config = state.config()
    tables = _tables(config)
    dialect = dialect or ("sqlite" if config.database.url.startswith("sqlite") else "postgresql")
    if type_names:
        for name in type_names:
            click.echo(show.describe_type(tables[name], dialect))
    else:
        click.echo(show.summarize(tables))


@schema.command("migrate")
@click.option("--dry-run", is_flag=True, help="Print what would change; change nothing.")
@click.pass_obj
def schema_migrate(state: _State, dry_run: bool) -> None:
    """Make the cache database agree with the schema file (safe to run again)."""
    from sgcache.store.db import safe_url
    from sgcache.store.migrate import migrate

    config = state.config()
    tables = _tables(config)
    engine = _connected(config)
    report = migrate(engine, tables, dry_run=dry_run)
    verb = "would make" if dry_run else "made"
    if state.verbose or dry_run:
        for action in report.actions:
            click.echo(f"  {action}")
    click.echo(f"{safe_url(engine.url)}: {verb} {len(report.actions)} changes for {len(tables.entities)} "
               f"entity types; {len(report.backfill)} fields await a full import")


@cli.command("mock-site")
@click.option("--bind", default="127.0.0.1:8020", show_default=True, metavar="HOST:PORT",
              help="Where the stand-in site listens.")
@click.option("--schema", "schema_path", default="schema/demo-site.yml", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="The site's schema file.")
@click.option("--data", type=click.Choice(["demo", "empty"]), default="demo", show_default=True,
              help="Start with a generated studio, or with users only.")
@click.option("--scale", type=click.IntRange(min=1), default=1, show_default=True,
              help="Size of the demo studio: 1 is about 5,000 entities, 20 about 100,000.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the demo data (same seed, same data).")
@click.option("--latency-ms", type=click.FloatRange(min=0), default=0, show_default=True,
              help="Delay added to every request, like a hosted site's round trip.")
@click.option("--late-events", type=click.FloatRange(0, 1), default=0, show_default=True,
              help="Share of writes whose event-log entries become readable a few seconds late.")
@click.option("--state", "state_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Keep the site in this file across restarts (saved every 2 s and on exit).")
@click.option("--users", "users_path", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML file of more scripts and users (see docs/mocksite.rst).")
@click.option("--timezone", default="UTC", show_default=True, help="The site's time zone, for relative dates.")
@click.option("--no-admin", is_flag=True, help="Turn off the /_mock/ admin routes (failure injection).")
@click.pass_obj
def mock_site(state: _State, bind: str, schema_path: Path, data: str, scale: int, seed: int, latency_ms: float,
              late_events: float, state_file: Path | None, users_path: Path | None, timezone: str,
              no_admin: bool) -> None:
    """Run a local stand-in Shotgun site, for tests, the demo and benchmarks.

    It speaks the same wire protocol as a hosted site, writes an event log, and serves until
    interrupted. The credentials it accepts are printed at start.
    """
    import zoneinfo

    from sgcache.mocksite import launch

    state.config()  # logging
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit():
        raise click.BadParameter("expected HOST:PORT", param_hint="--bind")
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise click.BadParameter(f"unknown time zone {timezone!r}", param_hint="--timezone") from None
    site = launch.build_site(schema_path, data=data, scale=scale, seed=seed, users_path=users_path,
                             state_file=state_file, late_events=late_events, timezone=timezone)
    try:
        launch.serve(site, host, int(port), latency_ms=latency_ms, state_file=state_file, admin=not no_admin,
                     announce=lambda text: click.echo(text, err=True))
    except OSError as e:
        raise SgcacheError(f"cannot listen on {bind}: {e.strerror}") from None


def _stop_on_signals():
    """An Event set by SIGINT, SIGTERM or SIGHUP (the terminal closed), so daemons finish the event
    at hand, stop their children and exit cleanly."""
    import signal
    import threading

    stop = threading.Event()

    def handle(signum, _frame):
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            signal.signal(sig, handle)
    return stop


def _tables(config: Config):
    """The cache's tables for the configured schema file."""
    from sgcache.schema import load
    from sgcache.store.tables import Tables

    return Tables(load(config.schema.path))


def _connected(config: Config):
    """An engine for the configured database, its connection checked (a clear error if not)."""
    from sgcache.store.db import check_connection, create_engine

    engine = create_engine(config.database.url)
    check_connection(engine)
    return engine


def _sync_parts(state: _State):
    """(config, engine, tables, remote) for the sync commands, with the database migrated."""
    from sgcache.store.migrate import migrate
    from sgcache.sync.remote import Remote

    config = state.config("site.base_url", "site.script_name", "site.api_key")
    tables = _tables(config)
    engine = _connected(config)
    migrate(engine, tables)
    return config, engine, tables, Remote(config.site)


def _csv(value: str | None, kind=str) -> list | None:
    if not value:
        return None
    try:
        return [kind(v.strip()) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected a comma-separated list, got {value!r}") from None


@cli.command()
@click.option("--full", is_flag=True, help="Import every entity (active and retired), then reconcile.")
@click.option("--types", metavar="A,B", help="Only these entity types (default: scanner.types, else all cached).")
@click.option("--projects", metavar="ID,ID", help="With --full: only these projects (default: scanner.projects).")
@click.option("--interval", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Keep scanning incrementally every SECONDS (one leader per database).")
@click.option("--progress/--no-progress", default=None, help="Progress bars (default: on a terminal).")
@click.pass_obj
def scan(state: _State, full: bool, types: str | None, projects: str | None, interval: float | None,
         progress: bool | None) -> None:
    """Import entities from the site: in full, or what changed since the last scan."""
    from sgcache.sync.leader import Leadership
    from sgcache.sync.remote import Stopped
    from sgcache.sync.scanner import Scanner

    config, engine, tables, remote = _sync_parts(state)
    # SIGTERM or Ctrl-C stops it between two pages (or during a pause between tries of the site).
    stop = _stop_on_signals()
    scanner = Scanner(engine, tables, remote, config.scanner, progress=progress, stop=stop)
    type_list = _csv(types)
    project_list = _csv(projects, int)
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
def rebuild(state: _State, type_names: tuple[str, ...], progress: bool | None) -> None:
    """Import entity types again from nothing while the proxy keeps serving.

    Reads touching these types pass through to the site from the start of the rebuild until
    every one of them is imported again, then all switch back to the cache at once.
    """
    import time

    from sgcache.sync.rebuild import Rebuilder
    from sgcache.sync.scanner import Scanner

    config, engine, tables, remote = _sync_parts(state)
    unknown = [t for t in type_names if t not in tables]
    if unknown:
        raise click.BadParameter(f"not a cached entity type: {', '.join(unknown)} (see sgcache schema show)",
                                 param_hint="TYPE")
    scanner = Scanner(engine, tables, remote, config.scanner, progress=progress)
    started = time.monotonic()
    report = Rebuilder(engine, tables, scanner).rebuild(sorted(set(type_names)), _stop_on_signals())
    click.echo(f"rebuilt {', '.join(t.entity_type for t in report.types)}: {report.written} entities in "
               f"{time.monotonic() - started:.1f} s; reads of them are answered from the cache again",
               err=True)


@cli.command()
@click.option("--once", is_flag=True, help="Apply what is waiting, then exit.")
@click.pass_obj
def watch(state: _State, once: bool) -> None:
    """Follow the site's event log and apply every change to the cache (one leader per database)."""
    from sgcache.sync.leader import Leadership
    from sgcache.sync.watcher import Watcher

    config, engine, tables, remote = _sync_parts(state)
    watcher = Watcher(engine, tables, remote, config.watcher)
    if once:
        while watcher.poll_once() >= config.watcher.batch_size:
            pass
        click.echo(f"applied {watcher.applied} events", err=True)
        return
    stop = _stop_on_signals()
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
def auto(state: _State, scan_interval: float | None) -> None:
    """Run the watcher and the periodic scanner together, restarting either if it dies.

    A type never fully imported is imported first. For small sites and the demo; larger sites
    run `sgcache watch` and `sgcache scan --interval` as separate services.
    """
    from sgcache.sync.supervise import Supervisor, sync_children

    config, engine, tables, remote = _sync_parts(state)
    engine.dispose()
    interval = scan_interval if scan_interval is not None else config.scanner.interval
    if not interval:
        logging.getLogger("sgcache").warning(
            "event=auto_without_scans reason='scanner.interval is 0' note='run sgcache scan --full for types "
            "never imported'")
    # The settings given here reach the children in their environment, never their arguments.
    commands, env = sync_children(state.config_path, state.overrides, interval)
    Supervisor(commands, env=env).run(_stop_on_signals())


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def status(state: _State, as_json: bool) -> None:
    """What the cache holds and how far behind it is: cursor, gaps, dead letters, scans, backfill."""
    import json as jsonlib

    from sgcache.store.db import is_set_up, safe_url
    from sgcache.sync import report

    config = state.config()
    tables = _tables(config)
    engine = _connected(config)
    if not is_set_up(engine):
        click.echo(f"event log: not started ({safe_url(engine.url)} is not set up yet: run "
                   "`sgcache scan --full`)")
        return
    data = report.status(engine, tables)
    if as_json:
        click.echo(jsonlib.dumps(data, indent=2, default=str))
    else:
        click.echo(report.format_status(data))


@cli.group()
def auth() -> None:
    """Who gets answers from the cache: prove a group's policy, clear switched-off groups."""


@auth.command("check")
@click.option("--login", required=True, metavar="LOGIN", help="The person (HumanUser login) to check as.")
@click.option("--n", "count", type=click.IntRange(min=1), default=200, show_default=True,
              help="Random reads to ask.")
@click.option("--mode", type=click.Choice(["all", "visible_projects"]),
              help="Check this mode for the person's group (default: what auth.groups gives it).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random reads.")
@click.pass_obj
def auth_check(state: _State, login: str, count: int, mode: str | None, seed: int) -> None:
    """Ask random reads as LOGIN from the cache and from the site, and compare.

    Each read is asked through sgcache's own request handling with the person's permission group
    in the mode being checked, and straight to the site as the person (sudo_as_login through
    site.script_name). Exits 1 if any answer from the cache differs from the site's.
    """
    from sgcache.api3.audit import check_person

    config = state.config("site.base_url", "site.script_name", "site.api_key")
    report = check_person(config, login, n=count, mode=mode, seed=seed)
    if report.mode == "passthrough":
        click.echo(f"login {login} (group {report.group or '-'}) passes through under auth.groups: nothing to "
                   "compare; use --mode all or --mode visible_projects to check a mode before turning it on")
        return
    click.echo(report.text())
    if not report.ok:
        sys.exit(1)


@auth.command("clear")
@click.argument("groups", metavar="[GROUP]...", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Clear every switched-off group.")
@click.pass_obj
def auth_clear(state: _State, groups: tuple[str, ...], everything: bool) -> None:
    """Let permission groups a failed shadow check switched to passthrough have cached answers again.

    Fix auth.groups first (or prove the group with sgcache auth check): a group that still
    differs from the site is switched off again by the next failed shadow check.
    """
    from sgcache.store import state as store_state

    if not groups and not everything:
        raise click.UsageError("name the groups to clear, or --all")
    config = state.config()
    engine, tables = _engine_and_tables(config)
    with engine.begin() as conn:
        tripped = store_state.tripped_groups(conn, tables.state)
        cleared = store_state.clear_tripped(conn, tables.state, None if everything else list(groups))
    for code in cleared:
        click.echo(f"cleared {code} (switched off {tripped[code].get('at', '?')} by a {tripped[code].get('method')} "
                   f"of {tripped[code].get('type')})")
    unknown = sorted(set(groups) - set(cleared))
    if unknown:
        click.echo(f"not switched off: {', '.join(unknown)}")
    if not cleared and not unknown:
        click.echo("no group is switched off")


def _engine_and_tables(config: Config):
    from sgcache.store.db import create_engine

    return create_engine(config.database.url), _tables(config)


@cli.group()
def validate() -> None:
    """Check the cache against the site: counts per type, or entities field by field."""


def _validate_options(command):
    """--wait and --rate, shared by the validate commands."""
    command = click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=5.0, show_default=True,
                           metavar="N", help="At most N requests a second to the site.")(command)
    return click.option("--wait", type=click.FloatRange(min=0), default=10.0, show_default=True, metavar="SECONDS",
                        help="How long the cache may take to apply events in flight before a difference "
                        "counts.")(command)


def _checked(check, *args):
    """``check(*args)``, a BadInput from it turned into click's usage error (exit status 2)."""
    from sgcache.sync.validate import BadInput

    try:
        return check(*args)
    except BadInput as e:
        raise click.BadParameter(e.message, param_hint=e.param) from None


def _validate_schema(state: _State):
    config = state.config("site.base_url", "site.script_name", "site.api_key")
    return config, _tables(config)


def _validator(config: Config, tables, *, wait: float, rate: float, page_size: int = 500,
               progress: bool | None = None):
    from sgcache.store.db import is_set_up, safe_url
    from sgcache.store.migrate import migrate
    from sgcache.sync.remote import Remote
    from sgcache.sync.validate import Validator

    engine = _connected(config)
    # Validating only reads: a database behind the schema file is reported, not migrated.
    if not is_set_up(engine):
        engine.dispose()
        raise SgcacheError(f"{safe_url(engine.url)} is not set up yet: run `sgcache scan --full`")
    pending = migrate(engine, tables, dry_run=True).actions
    if pending:
        engine.dispose()
        changes = f"{len(pending)} change" + ("s" if len(pending) != 1 else "")
        raise SgcacheError(f"{safe_url(engine.url)} does not match the schema file ({changes} pending): "
                           "run `sgcache schema migrate`")
    return Validator(engine, tables, Remote(config.site, rate=rate), wait=wait, page_size=page_size,
                     progress=progress, note=lambda text: click.echo(text, err=True))


@validate.command("counts")
@click.argument("type_names", metavar="[TYPE]...", nargs=-1)
@_validate_options
@click.pass_obj
def validate_counts(state: _State, type_names: tuple[str, ...], wait: float, rate: float) -> None:
    """Compare the active and retired entities per type (every cached type when none is named).

    A count that differs is counted again once the cache has applied the site's events in
    flight (up to --wait seconds). Exit status 1 when a count still differs.
    """
    from sgcache.sync import validate as checks

    config, tables = _validate_schema(state)
    types = _checked(checks.check_types, tables, list(type_names))
    validator = _validator(config, tables, wait=wait, rate=rate)
    try:
        rows = validator.counts(types)
    finally:
        validator.engine.dispose()
    click.echo(checks.format_counts(rows))
    if any(row.failed for row in rows):
        sys.exit(1)


@validate.command("data")
@click.argument("type_names", metavar="[TYPE]...", nargs=-1)
@click.option("--filters", metavar="JSON", help="Only the entities this filter list matches on the site or in "
              """the cache, e.g. '[["sg_status_list", "is", "ip"]]'.""")
@click.option("--fields", metavar="A,B", help="Compare only these fields (default: every cached field).")
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="At most N entities of each type.")
@click.option("--page", type=click.IntRange(min=1), default=1, show_default=True, metavar="P",
              help="Start at page P (pages of --page-size entities, in id order).")
@click.option("--page-size", type=click.IntRange(1, 500), metavar="N",
              help="Entities per page and per request to the site (default: scanner.page_size, at most 500).")
@click.option("--progress/--no-progress", default=None, help="Progress bars (default: on a terminal).")
@_validate_options
@click.pass_obj
def validate_data(state: _State, type_names: tuple[str, ...], filters: str | None, fields: str | None,
                  limit: int | None, page: int, page_size: int | None, progress: bool | None, wait: float,
                  rate: float) -> None:
    """Compare entities field by field (every cached type when none is named).

    Prints one line per difference: TYPE ID FIELD: site=VALUE cache=VALUE (values in JSON), then a
    summary. What differs is compared again once the cache has applied the site's events in
    flight (up to --wait seconds). Exit status 1 when anything still differs.
    """
    from sgcache.sync import validate as checks

    filter_list = _checked(checks.parse_filters, filters)
    config, tables = _validate_schema(state)
    types = _checked(checks.check_types, tables, list(type_names))
    field_list = _checked(checks.check_fields, tables, types, _csv(fields))
    validator = _validator(config, tables, wait=wait, rate=rate, progress=progress,
                           page_size=page_size or min(config.scanner.page_size, 500))
    try:
        report = validator.data(types, filters=filter_list, fields=field_list, limit=limit, page=page)
    finally:
        validator.engine.dispose()
    click.echo(checks.format_data(report))
    if report.failed:
        sys.exit(1)


@cli.command()
@click.option("--bind", metavar="HOST:PORT", help="Listen here (default: web.bind).")
@click.option("--workers", type=click.IntRange(min=1), help="gunicorn worker processes (default: web.workers).")
@click.option("--threads", type=click.IntRange(min=1), help="Threads per worker (default: web.threads).")
@click.option("--dev", is_flag=True, help="Flask's development server in one process (not for production).")
@click.pass_obj
def web(state: _State, bind: str | None, workers: int | None, threads: int | None, dev: bool) -> None:
    """Run the proxy: shotgun_api3 clients point their base URL here.

    Uses gunicorn with threaded workers and the settings in web.*; the cache database should be
    migrated first (`sgcache schema migrate`). If the database is down the proxy still starts and
    passes every request through to the site.
    """
    import dataclasses

    from sgcache.config import check_bind
    from sgcache.web import create_app, run_gunicorn

    config = state.config("site.base_url", "site.script_name", "site.api_key")
    if bind is not None and check_bind(bind):
        raise click.BadParameter(check_bind(bind), param_hint="--bind")
    changes = {k: v for k, v in (("bind", bind), ("workers", workers), ("threads", threads)) if v is not None}
    config = dataclasses.replace(config, web=dataclasses.replace(config.web, **changes))
    log = logging.getLogger("sgcache")
    log.info("event=web_starting bind=%s workers=%d threads=%d site=%s database=%s", config.web.bind,
             1 if dev else config.web.workers, config.web.threads, config.site.base_url,
             _safe_db(config.database.url))
    if not dev:
        run_gunicorn(config)
        return
    host, _, port = config.web.bind.rpartition(":")
    app = create_app(config)
    try:
        app.run(host=host.strip("[]") or "127.0.0.1", port=int(port), threaded=True, use_reloader=False)
    except OSError as e:
        raise SgcacheError(f"cannot listen on {config.web.bind}: {e.strerror}") from None


@cli.command()
@click.option("--database", "database_url", metavar="URL",
              help="Cache database (default: SQLite in the demo folder); postgresql://... runs the demo on "
                   "PostgreSQL.")
@click.option("--dir", "folder", type=click.Path(file_okay=False, path_type=Path), default=Path("var/demo"),
              show_default=True, help="Where the demo keeps the stand-in's data, the SQLite cache and the logs.")
@click.option("--bind", default="127.0.0.1:8010", show_default=True, metavar="HOST:PORT",
              help="Where the proxy listens.")
@click.option("--site-bind", default="127.0.0.1:8020", show_default=True, metavar="HOST:PORT",
              help="Where the stand-in site listens.")
@click.option("--latency-ms", type=click.FloatRange(min=0), default=150, show_default=True,
              help="Delay the stand-in adds to every request, like a hosted site.")
@click.option("--scale", type=click.IntRange(min=1), default=1, show_default=True,
              help="Size of the stand-in's studio (1: about 5,000 entities).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the studio data.")
@click.option("--site-schema", type=click.Path(dir_okay=False, path_type=Path),
              help="The stand-in's schema (default: demo-site.yml next to schema.path).")
@click.option("--fresh", is_flag=True, help="Forget the stand-in's saved data and the demo's SQLite cache first.")
@click.option("--no-compare", is_flag=True, help="Skip the timed comparison of a few calls.")
@click.option("--progress/--no-progress", default=None, help="Progress bars (default: on a terminal).")
@click.pass_obj
def demo(state: _State, database_url: str | None, folder: Path, bind: str, site_bind: str, latency_ms: float,
         scale: int, seed: int, site_schema: Path | None, fresh: bool, no_compare: bool,
         progress: bool | None) -> None:
    """Run the stand-in site, a full import, the watcher, the scanner and the proxy, until Ctrl-C.

    Prints a shotgun_api3 snippet to try, the status page's address, and a few calls timed
    directly against the site and through sgcache. Nothing here touches a real site: the demo
    always talks to its own stand-in.
    """
    from sgcache.config import check_bind
    from sgcache.demo import Demo, DemoOptions

    for value, name in ((bind, "--bind"), (site_bind, "--site-bind")):
        if check_bind(value) or value.startswith("unix:"):
            raise click.BadParameter("expected HOST:PORT", param_hint=name)
    if bind == site_bind:
        raise click.BadParameter("the proxy and the stand-in need different addresses", param_hint="--site-bind")
    config = state.config()
    if not state.verbose:
        # The demo's own output is the story; its parts log to their files in --dir.
        logging.getLogger("sgcache").setLevel(logging.WARNING)
    folder = folder.resolve()
    url = database_url or state.overrides.get("database.url") or f"sqlite:///{folder / 'cache.sqlite'}"
    schema_file = site_schema or Path(config.schema.path).with_name("demo-site.yml")
    if not schema_file.exists():
        raise click.BadParameter(f"{schema_file} does not exist", param_hint="--site-schema")
    options = DemoOptions(folder=folder, database_url=url, proxy_bind=bind, site_bind=site_bind,
                          latency_ms=latency_ms, scale=scale, seed=seed, site_schema=schema_file, fresh=fresh,
                          compare=not no_compare, progress=progress)
    Demo(config, options, echo=click.echo, config_path=state.config_path).run(_stop_on_signals())


def _safe_db(url: str) -> str:
    from sgcache.store.db import safe_url

    return safe_url(url)


def _write(text: str, output: Path | None) -> None:
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
    except OSError as e:
        raise SgcacheError(f"{output}: cannot write: {e.strerror}") from None


def main(argv: list[str] | None = None) -> None:
    """Entry point: expected failures are one line on stderr and an exit status, never a traceback."""
    try:
        cli.main(args=argv, prog_name="sgcache", standalone_mode=False)
    except SgcacheError as e:
        click.echo(f"sgcache: error: {e}", err=True)
        sys.exit(e.exit_code)
    except sqlalchemy.exc.DBAPIError as e:
        # The database refused something: one line with its own words (-v logs the traceback).
        logging.getLogger("sgcache").debug("database error", exc_info=True)
        reason = str(e.orig).strip().splitlines()[0] if e.orig is not None else type(e).__name__
        click.echo(f"sgcache: error: database: {reason}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("sgcache: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("sgcache: interrupted", err=True)
        sys.exit(130)
