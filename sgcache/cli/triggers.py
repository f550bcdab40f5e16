"""The command that runs event plugins on the watcher's events: ``sgcache triggers``."""

from __future__ import annotations

import logging

import click
import sqlalchemy as sa

from sgcache.cli.common import State, cache_tables, cli, connected_engine, stop_on_signals
from sgcache.errors import SgcacheError

log = logging.getLogger(__name__)


def proxy_url(config) -> str:
    """Where callbacks' connections go: ``triggers.proxy_url``, else ``web.bind`` on this host."""
    if config.triggers.proxy_url:
        return config.triggers.proxy_url.rstrip("/")
    host, _, port = config.web.bind.rpartition(":")
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    return f"http://{host}:{port}"


def _plugins(config):
    from sgcache.triggers.plugins import load_plugins

    if not config.triggers.paths:
        raise SgcacheError("no event plugins: set triggers.paths (files or folders of shotgunEvents plugins)")
    plugins, failed = load_plugins(config.triggers.paths)
    for why in failed.values():
        click.echo(f"sgcache: plugin not loaded: {why}", err=True)
    if not plugins:
        raise SgcacheError("no plugin loaded (see the errors above)")
    return plugins


def _runner(config, *, migrated: bool):
    """The runner of the plugins in ``triggers.paths`` on the configured cache (its tables
    brought up to date first with ``migrated``)."""
    from sgcache.store.migrate import migrate
    from sgcache.triggers.runner import Runner

    plugins = _plugins(config)
    tables = cache_tables(config)
    engine = connected_engine(config)
    if migrated:
        migrate(engine, tables)
    return Runner(engine, tables, plugins, config.triggers, proxy_url(config))


def _known(runner, callback_key: str | None) -> None:
    """Refuse a ``--callback`` that names none of the loaded callbacks."""
    keys = {c.key for c in runner.callbacks}
    if callback_key is not None and callback_key not in keys:
        raise SgcacheError(f"no callback {callback_key!r} (loaded: {', '.join(sorted(keys)) or 'none'})")


@cli.group(invoke_without_command=True)
@click.option("--once", is_flag=True, help="Hand out what is waiting, then exit.")
@click.pass_context
def triggers(ctx: click.Context, once: bool) -> None:
    """Run shotgunEvents plugins on the events the watcher applies (one runner per database).

    Each callback gets every matching event once, in event-id order, after the cache holds its
    change; its cursor is kept in the cache database. See docs/triggers.rst.
    """
    if ctx.invoked_subcommand is not None:
        return
    from sgcache.sync.leader import Leadership

    state: State = ctx.obj
    runner = _runner(state.config(), migrated=True)
    names = ", ".join(c.key for c in runner.callbacks) or "none"
    click.echo(f"sgcache triggers: {len(runner.plugins)} plugins, callbacks: {names}; through {runner.proxy_url}",
               err=True)
    if once:
        runner.start()
        while runner.run_once():
            pass
        click.echo(f"ran {runner.handled} callbacks", err=True)
        return
    stop = stop_on_signals()
    leader = Leadership(runner.engine, "triggers")
    if not leader.acquire(stop):
        return
    try:
        runner.run(stop)
    finally:
        leader.release()


@triggers.command("retry")
@click.option("--callback", "callback_key", metavar="PLUGIN.CALLBACK", help="Only this callback.")
@click.pass_obj
def triggers_retry(state: State, callback_key: str | None) -> None:
    """Start stopped callbacks again (stopOnError) and hand their dead letters to them once more."""
    runner = _runner(state.config(), migrated=False)
    _known(runner, callback_key)
    st = runner.tables.state
    with runner.engine.begin() as conn:
        chosen = [callback_key] if callback_key else sorted(c.key for c in runner.callbacks)
        resumed = conn.execute(sa.update(st.trigger_cursors).where(st.trigger_cursors.c.callback.in_(chosen),
                                                                   st.trigger_cursors.c.stopped_at.is_not(None))
                               .values(stopped_at=None, failures=0)).rowcount
    replayed, still = runner.retry_dead(chosen)
    click.echo(f"{resumed} callbacks started again; dead letters: {replayed} handled, {still} failed again")


@triggers.command("rewind")
@click.option("--callback", "callback_key", metavar="PLUGIN.CALLBACK", required=True,
              help="The callback to move (loaded from triggers.paths).")
@click.option("--after", "after_id", type=click.IntRange(min=0), required=True, metavar="EVENT_ID",
              help="Hand the callback every matching event with a greater id, again or for the first time.")
@click.pass_obj
def triggers_rewind(state: State, callback_key: str, after_id: int) -> None:
    """Move a callback's cursor back: a new plugin catching up on the recent past, or a fixed one
    handling again what it got wrong. Only events the watcher kept (with ``triggers.paths`` set)
    can be handed out; ``sgcache triggers`` must not be running meanwhile."""
    from sgcache.sync.leader import Leadership

    runner = _runner(state.config(), migrated=True)
    _known(runner, callback_key)
    leader = Leadership(runner.engine, "triggers")
    if not leader.try_acquire():
        raise SgcacheError("sgcache triggers is running on this database: stop it (or sgcache auto) first, "
                           "then rewind")
    try:
        moved = _rewind(runner.engine, runner.tables.state, callback_key, after_id)
    finally:
        leader.release()
    click.echo(f"{callback_key}: {moved} kept events above {after_id} will be handed to it "
               "(those that match) when sgcache triggers runs")


def _rewind(engine: sa.Engine, st, key: str, after_id: int) -> int:
    """Set the cursor of ``key`` to ``after_id``; return how many kept events lie above it."""
    import datetime as dt

    c, done, dead, applied = st.trigger_cursors, st.trigger_done, st.trigger_dead, st.applied
    with engine.begin() as conn:
        newest = conn.execute(sa.select(sa.func.max(applied.c.event_id))).scalar() or 0
        if after_id > newest:
            raise SgcacheError(f"event {after_id} is beyond the newest event the watcher applied ({newest})")
        row = conn.execute(sa.select(c).where(c.c.callback == key)).mappings().first()
        if row is not None and after_id > row["watermark"]:
            raise SgcacheError(f"{key} has handled everything up to event {row['watermark']}: rewind moves a "
                               f"cursor back, never past events it has not handled")
        above = applied.c.event_id > after_id
        oldest = conn.execute(sa.select(sa.func.min(applied.c.event_id))).scalar()
        first_above = conn.execute(sa.select(sa.func.min(applied.c.event_id)).where(above)).scalar()
        if oldest is not None and oldest > after_id + 1 and first_above is not None:
            raise SgcacheError(f"the watcher's ledger begins at event {oldest} (it holds nothing older): "
                               f"rewind --after {oldest - 1} or later")
        missing = conn.execute(sa.select(sa.func.count()).where(above, applied.c.event.is_(None))).scalar()
        if missing:
            raise SgcacheError(f"{missing} events above {after_id} were applied by a watcher that kept no entries "
                               "(triggers.paths unset in its settings): they cannot be handed out")
        values = {"watermark": after_id, "failures": 0, "last_error": None, "stopped_at": None}
        if row is None:
            conn.execute(sa.insert(c).values(callback=key, started_at=dt.datetime.now(dt.UTC), **values))
        else:
            conn.execute(sa.update(c).where(c.c.callback == key).values(**values))
        conn.execute(sa.delete(done).where(done.c.callback == key, done.c.event_id > after_id))
        conn.execute(sa.delete(dead).where(dead.c.callback == key, dead.c.event_id > after_id))
        kept = conn.execute(sa.select(sa.func.count()).where(above)).scalar()
    log.info("event=trigger_rewound callback=%s after_id=%d kept_events=%d", key, after_id, kept)
    return kept
