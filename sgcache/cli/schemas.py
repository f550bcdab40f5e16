"""``sgcache schema``: make, filter, inspect and apply schema files."""

from __future__ import annotations

from pathlib import Path

import click

from sgcache.cli.common import State, cache_tables, cli, connected_engine
from sgcache.errors import SgcacheError


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
def schema_dump(state: State, output: Path | None, from_json: Path | None, entities_json: Path | None) -> None:
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
def schema_show(state: State, type_names: tuple[str, ...], dialect: str | None) -> None:
    """Print what the cache will store, table by table (every type when none is named)."""
    from sgcache.store import show
    from sgcache.store.tables import Tables

    config = state.config()
    tables = Tables(_schema_in_use(config).schema)
    dialect = dialect or ("sqlite" if config.database.url.startswith("sqlite") else "postgresql")
    if type_names:
        for name in type_names:
            click.echo(show.describe_type(tables[name], dialect))
    else:
        click.echo(show.summarize(tables))


@schema.command("migrate")
@click.option("--dry-run", is_flag=True, help="Print what would change; change nothing.")
@click.pass_obj
def schema_migrate(state: State, dry_run: bool) -> None:
    """Make the cache database agree with the schema file (safe to run again).

    Following the site (schema.follow: follow), with the followed schema recorded in the cache
    database, if any. Else (manual) a followed schema recorded there is forgotten: the file is
    the schema again.
    """
    from sgcache.schema.follow import record
    from sgcache.schema.follow.held import HeldSchema
    from sgcache.store.db import safe_url
    from sgcache.store.migrate import migrate

    config = state.config()
    engine = connected_engine(config)
    if record.follows(config):
        # Under the schema lock: never with a schema a follower is replacing at this moment.
        held = HeldSchema(engine, config, name="schema migrate")
        tables = held.acquire()
        try:
            report = migrate(engine, tables, dry_run=dry_run)
        finally:
            held.release()
        if held.digest:
            click.echo(f"schema: {record.WHERE} ({held.digest[:19]})", err=True)
    else:
        tables = cache_tables(config)
        report = migrate(engine, tables, dry_run=dry_run)
        if not dry_run:
            with engine.begin() as conn:
                if record.forget(conn):
                    click.echo(f"forgot {record.WHERE}: the schema file is in use again", err=True)
    verb = "would make" if dry_run else "made"
    if state.verbose or dry_run:
        for action in report.actions:
            click.echo(f"  {action}")
    click.echo(f"{safe_url(engine.url)}: {verb} {len(report.actions)} changes for {len(tables.entities)} "
               f"entity types; {len(report.backfill)} fields await a full import")


@schema.command("sync")
@click.option("--dry-run", is_flag=True, help="Print what would change; change nothing.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the site's schema, as schema.rules selects it, to this file (YAML).")
@click.pass_obj
def schema_sync(state: State, dry_run: bool, output: Path | None) -> None:
    """Make the cache's schema the site's, as schema.rules selects it.

    Reads the site's schema, keeps what the rules select, prints what differs from the schema
    in use (one change a line), migrates the cache and records the new schema in the cache
    database, where every sgcache process takes it from (needs schema.follow: follow). The
    scanner then imports what changed. --dry-run only prints.
    """
    from sgcache.errors import ConfigError
    from sgcache.schema import dumps
    from sgcache.schema.follow import record
    from sgcache.schema.follow.follower import Follower
    from sgcache.store.db import safe_url
    from sgcache.sync.remote import Remote

    config = state.config("site.base_url", "site.script_name", "site.api_key")
    if not dry_run and not record.follows(config):
        where = str(config.source) if config.source else "the configuration"
        raise ConfigError(f"{where}: schema sync records the schema in the cache database, which sgcache uses only "
                          "with schema.follow: follow (set it; or see the changes with --dry-run, write the schema "
                          "with --output and make that file schema.path)")
    engine = connected_engine(config)
    follower = Follower(engine, config, Remote(config.site))
    result = follower.compare() if dry_run else follower.follow()
    for change in result.changes:
        click.echo(f"  {change.describe()}")
    if output is not None:
        _write(dumps(result.wanted), output)
    where = f"{safe_url(engine.url)}: schema in use: {result.in_use.source}"
    if not result.changes:
        click.echo(f"{where}: already the site's as the rules select it ({len(result.wanted)} entity types)")
    elif dry_run:
        click.echo(f"{where}: would make {len(result.changes)} changes")
    else:
        click.echo(f"{where}: made {len(result.changes)} changes; recorded the new schema ({result.digest}); "
                   f"the scanner imports {', '.join(result.to_import) or 'nothing'} in full "
                   "(reads of what changed pass through until then)")


def _schema_in_use(config):
    """The schema in use; following the site, the recorded one is read from the cache database."""
    from sgcache.schema.follow import record

    if not record.follows(config):
        return record.from_file(config)
    engine = connected_engine(config)
    try:
        with engine.connect() as conn:
            in_use = record.schema_in_use(config, conn)
    finally:
        engine.dispose()
    click.echo(f"schema: {in_use.source}" + (f" ({in_use.digest[:19]})" if in_use.digest else ""), err=True)
    return in_use


def _write(text: str, output: Path | None) -> None:
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
    except OSError as e:
        raise SgcacheError(f"{output}: cannot write: {e.strerror}") from None
