"""The commands that look at the cache: ``status``, ``validate counts|data`` and ``auth check|clear``."""

from __future__ import annotations

import sys

import click

from sgcache.cli.common import State, cache_tables, cli, connected_engine, split_csv
from sgcache.config import Config
from sgcache.errors import SgcacheError


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def status(state: State, as_json: bool) -> None:
    """What the cache holds and how far behind it is: cursor, gaps, dead letters, scans, backfill."""
    import json as jsonlib

    from sgcache.store.db import is_set_up, safe_url
    from sgcache.sync import report

    config = state.config()
    tables = cache_tables(config)
    engine = connected_engine(config)
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
def auth_check(state: State, login: str, count: int, mode: str | None, seed: int) -> None:
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
def auth_clear(state: State, groups: tuple[str, ...], everything: bool) -> None:
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

    return create_engine(config.database.url), cache_tables(config)


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


def _validate_schema(state: State):
    config = state.config("site.base_url", "site.script_name", "site.api_key")
    return config, cache_tables(config)


def _validator(config: Config, tables, *, wait: float, rate: float, page_size: int = 500,
               progress: bool | None = None):
    from sgcache.store.db import is_set_up, safe_url
    from sgcache.store.migrate import migrate
    from sgcache.sync.remote import Remote
    from sgcache.sync.validate import Validator

    engine = connected_engine(config)
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
    # Types are checked scanner.concurrency at a time; --rate holds for all their requests together.
    return Validator(engine, tables, Remote(config.site, rate=rate), wait=wait, page_size=page_size,
                     progress=progress, note=lambda text: click.echo(text, err=True),
                     concurrency=config.scanner.concurrency)


@validate.command("counts")
@click.argument("type_names", metavar="[TYPE]...", nargs=-1)
@_validate_options
@click.pass_obj
def validate_counts(state: State, type_names: tuple[str, ...], wait: float, rate: float) -> None:
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
def validate_data(state: State, type_names: tuple[str, ...], filters: str | None, fields: str | None,
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
    field_list = _checked(checks.check_fields, tables, types, split_csv(fields))
    validator = _validator(config, tables, wait=wait, rate=rate, progress=progress,
                           page_size=page_size or min(config.scanner.page_size, 500))
    try:
        report = validator.data(types, filters=filter_list, fields=field_list, limit=limit, page=page)
    finally:
        validator.engine.dispose()
    click.echo(checks.format_data(report))
    if report.failed:
        sys.exit(1)
