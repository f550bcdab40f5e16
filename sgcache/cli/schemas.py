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

    config = state.config()
    tables = cache_tables(config)
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
    """Make the cache database agree with the schema file (safe to run again)."""
    from sgcache.store.db import safe_url
    from sgcache.store.migrate import migrate

    config = state.config()
    tables = cache_tables(config)
    engine = connected_engine(config)
    report = migrate(engine, tables, dry_run=dry_run)
    verb = "would make" if dry_run else "made"
    if state.verbose or dry_run:
        for action in report.actions:
            click.echo(f"  {action}")
    click.echo(f"{safe_url(engine.url)}: {verb} {len(report.actions)} changes for {len(tables.entities)} "
               f"entity types; {len(report.backfill)} fields await a full import")


def _write(text: str, output: Path | None) -> None:
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
    except OSError as e:
        raise SgcacheError(f"{output}: cannot write: {e.strerror}") from None
