"""The commands of the cache's history: ``history [show] TYPE ID``, ``history import --since``
(a back-fill from the event log) and ``changes --since``."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import click

from sgcache.cli.common import State, cache_tables, cli, connected_engine, split_csv
from sgcache.errors import SgcacheError
from sgcache.wire import format_datetime


def parse_since(text: str) -> dt.datetime:
    from sgcache.api3.past import parse_since as parsed

    try:
        return parsed(text)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def _shown(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return _time(value)
    if isinstance(value, dict) and set(value) == {"type", "id"}:
        return f"{value['type']} {value['id']}"
    if isinstance(value, list) and all(isinstance(v, dict) and set(v) == {"type", "id"} for v in value):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    return json.dumps(value, default=str, ensure_ascii=False)


def _time(at: dt.datetime | None) -> str:
    return "-" if at is None else format_datetime(at)


def _default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return _time(value) if isinstance(value, dt.datetime) else value.isoformat()
    return str(value)


class _ShowByDefault(click.Group):
    """``sgcache history Shot 12`` is ``sgcache history show Shot 12``."""

    def resolve_command(self, ctx: click.Context, args: list[str]):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args.insert(0, "show")
        return super().resolve_command(ctx, args)


@cli.group(cls=_ShowByDefault)
def history() -> None:
    """An entity's changes as the cache kept them (``sgcache history Shot 1234``)."""


@history.command("show")
@click.argument("entity_type", metavar="TYPE")
@click.argument("entity_id", metavar="ID", type=int)
@click.option("--field", metavar="FIELD", help="Only this field (or 'retired' for retirements and revivals).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def history_show(state: State, entity_type: str, entity_id: int, field: str | None, as_json: bool) -> None:
    """The timeline of one entity: time, event, who, field, old -> new, oldest first."""
    from sgcache.store.timeline import UNKNOWN, entity_history

    config = state.config()
    tables = cache_tables(config)
    if entity_type not in tables:
        raise SgcacheError(f"{entity_type!r} is not a cached entity type (see sgcache schema show)")
    engine = connected_engine(config)
    try:
        with engine.connect() as conn:
            try:
                changes = entity_history(conn, tables, entity_type, entity_id, field)
            except KeyError:
                raise SgcacheError(f"{entity_type}.{field} is not a cached field (nor 'retired')") from None
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps([c.as_dict() for c in changes], indent=2, default=_default, ensure_ascii=False))
        return
    if not changes:
        click.echo(f"{entity_type} {entity_id}: no change kept")
        return
    for c in changes:
        event = f"event {c.event_id}" if c.event_id is not None else "no event"
        if c.field == UNKNOWN:
            click.echo(f"{_time(c.at)}  {event}  unknown until {_time(c.until)}: read from the site only after it "
                       "changed again (reads of the past in between are refused)")
            continue
        who = f"  by {_shown(c.by)}" if c.by else ""
        click.echo(f"{_time(c.at)}  {event}{who}  {c.field}: {_shown(c.old)} -> {_shown(c.new)}")


@history.command("import")
@click.option("--since", "since_text", required=True, metavar="TIME",
              help="How far back: ISO 8601 time with a zone, or a duration ago: 12h, 14d.")
@click.option("--types", metavar="A,B", help="Only these entity types (default: every cached type).")
@click.option("--trust-log", is_flag=True,
              help="Run even though the site has scripts whose writes make no events (you know they wrote "
                   "nothing to the cached types in the span).")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def history_import(state: State, since_text: str, types: str | None, trust_log: bool, progress: bool | None,
                   as_json: bool) -> None:
    """Rebuild the versions from before the cache's history began, from the site's event log.

    Reads the log back to --since and undoes each change on the oldest versions the cache keeps.
    A field's history begins earlier only as far back as the log proves its values; reads of the
    past touching it before that are still refused. See docs/history.rst.
    """
    from sgcache.cli.common import sync_parts
    from sgcache.store.history import pruned_until
    from sgcache.sync.backfill import backfill
    from sgcache.sync.progress import Progress

    since = parse_since(since_text)
    config, engine, remote = sync_parts(state)
    try:
        tables = cache_tables(config)
        keep = config.history.keep_seconds
        if keep and since < dt.datetime.now(dt.UTC) - dt.timedelta(seconds=keep):
            raise SgcacheError(f"{_time(since)} is older than history.keep ({config.history.keep}) allows: the "
                               "next pruning would remove what the back-fill keeps")
        with engine.connect() as conn:
            pruned = pruned_until(conn, tables)
        if pruned is not None and since < pruned:
            raise SgcacheError(f"{_time(since)} is before the history's pruning horizon {_time(pruned)}")
        bar = Progress("event-log entries read", None, bar=progress)
        shown = [bar]  # the bar under way: the log's, then each type's rebuild

        def rebuild(type_name: str, rows: int) -> Callable[[int], None]:
            """A bar of its own for each type's rebuild; none for an empty type."""
            if not rows:
                return lambda n: None
            shown[0].close()  # a closed bar stays as it ended
            shown[0] = Progress(f"{type_name}: rows rebuilt", rows, bar=progress)
            return shown[0].advance

        try:
            reports = backfill(engine, tables, remote, since, types=split_csv(types), trust_log=trust_log,
                               progress=bar.advance, rebuilding=rebuild)
        finally:
            seconds = bar.close()
            shown[0].close()
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps({"since": _time(since), "types": [r.as_dict() for r in reports]}, indent=2,
                              default=_default, ensure_ascii=False))
        return
    click.echo(f"read {bar.done} event-log entries in {seconds:.1f} s")
    for r in reports:
        click.echo(f"{r.entity_type}: {r.entries} entries on {r.entities} entities, {r.versions} earlier versions "
                   "kept")
        starts: dict[dt.datetime, list[str]] = {}
        for name, at in r.proven_from.items():
            starts.setdefault(at, []).append(name)
        for n, at in enumerate(sorted(starts)):
            names = sorted(starts[at])
            # The earliest start holds most fields: counted; the later ones are the news.
            shown = f"{len(names)} fields" if n == 0 and len(names) > 3 else ", ".join(names)
            click.echo(f"  from {_time(at)}: {shown}")
        if r.unmoved:
            click.echo(f"  still from {_time(r.began)}: {', '.join(r.unmoved)}")


@cli.command()
@click.option("--since", "since_text", required=True, metavar="TIME",
              help="ISO 8601 time with a zone, or a duration ago: 90m, 24h, 7d.")
@click.option("--types", metavar="A,B", help="Only these entity types.")
@click.option("--projects", metavar="ID,ID", help="Only entities of these project ids.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def changes(state: State, since_text: str, types: str | None, projects: str | None, as_json: bool) -> None:
    """What changed since a moment: each entity, the fields changed, when last and by whom."""
    from sgcache.store.timeline import changed_since

    since = parse_since(since_text)
    config = state.config()
    tables = cache_tables(config)
    wanted = split_csv(types)
    unknown = [t for t in wanted or [] if t not in tables]
    if unknown:
        raise SgcacheError(f"not a cached entity type: {', '.join(unknown)} (see sgcache schema show)")
    engine = connected_engine(config)
    try:
        with engine.connect() as conn:
            found = changed_since(conn, tables, since, wanted, split_csv(projects, int))
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps({"since": _time(since), "entities": found}, indent=2, default=_default,
                              ensure_ascii=False))
        return
    if not found:
        click.echo(f"no change since {_time(since)}")
        return
    for e in found:
        made = " (new)" if e["created"] else ""
        who = f"  by {_shown(e['by'])}" if e["by"] else ""
        click.echo(f"{_time(e['at'])}  {e['type']} {e['id']}{made}  {', '.join(e['fields']) or '-'}{who}")
