"""What every ``sgcache`` command shares: the top-level group and its options, the settings
loaded on first use, and the helpers that open the cache's tables and database."""

from __future__ import annotations

import sys
from typing import Any

import click

from sgcache import __version__
from sgcache.config import Config, load_config
from sgcache.logs import register_secret, setup_logging


class State:
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
    ctx.obj = State(config_path, verbose, quiet, overrides)


@cli.command()
def version() -> None:
    """Print the versions of sgcache and what it runs on."""
    import shotgun_api3
    import sqlalchemy

    click.echo(f"sgcache {__version__} (shotgun_api3 {shotgun_api3.__version__}, SQLAlchemy "
               f"{sqlalchemy.__version__}, Python {sys.version.split()[0]})")


def stop_on_signals():
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


def cache_tables(config: Config):
    """The cache's tables: the schema file's, or following the site (``schema.follow: follow``)
    the schema recorded in the cache database when there is one."""
    from sgcache.schema.follow import record
    from sgcache.store.db import create_engine
    from sgcache.store.tables import Tables

    if not record.follows(config):
        return Tables(record.from_file(config).schema)
    engine = create_engine(config.database.url)
    try:
        return Tables(record.schema_at_start(config, engine).schema)
    finally:
        engine.dispose()


def connected_engine(config: Config):
    """An engine for the configured database, its connection checked (a clear error if not)."""
    from sgcache.store.db import check_connection, create_engine

    engine = create_engine(config.database.url)
    check_connection(engine)
    return engine


def sync_parts(state: State):
    """(config, engine, remote) for the sync commands, the site's settings checked (and, when
    the cache follows the site's schema, its rules). The tables come from the schema in use:
    see ``sgcache.cli.syncing``."""
    from sgcache.schema.follow.follower import require_rules
    from sgcache.schema.follow.record import follows
    from sgcache.sync.remote import Remote

    config = state.config("site.base_url", "site.script_name", "site.api_key")
    if follows(config):
        require_rules(config)
    return config, connected_engine(config), Remote(config.site)


def split_csv(value: str | None, kind=str) -> list | None:
    if not value:
        return None
    try:
        return [kind(v.strip()) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected a comma-separated list, got {value!r}") from None
