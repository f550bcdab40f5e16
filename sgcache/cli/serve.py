"""The commands that serve: ``web`` (the proxy), ``mock-site`` (a stand-in site) and ``demo``."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from sgcache.cli.common import State, cli, stop_on_signals
from sgcache.errors import SgcacheError


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
@click.option("--thumbnail-ttl", type=click.IntRange(min=0), default=900, show_default=True, metavar="SECONDS",
              help="Uploaded thumbnails read as presigned URLs that expire after this many seconds, as a hosted "
                   "site's do (0: plain URLs).")
@click.option("--thumbnail-pending", type=click.FloatRange(min=0), default=0, show_default=True, metavar="SECONDS",
              help="Seconds a new thumbnail reads as the site's placeholder before its signed URL.")
@click.option("--webhook", "webhook_url", metavar="URL",
              help="Post each new event-log entry here, as a hosted site's webhook does (no retries).")
@click.option("--webhook-secret", envvar="SGCACHE_MOCK_WEBHOOK_SECRET", metavar="TOKEN",
              help="Sign deliveries with this token (X-SG-SIGNATURE); also SGCACHE_MOCK_WEBHOOK_SECRET.")
@click.option("--webhook-batched", is_flag=True, help="Deliver in batches of up to 50 (data.deliveries).")
@click.pass_obj
def mock_site(state: State, bind: str, schema_path: Path, data: str, scale: int, seed: int, latency_ms: float,
              late_events: float, state_file: Path | None, users_path: Path | None, timezone: str,
              no_admin: bool, thumbnail_ttl: int, thumbnail_pending: float, webhook_url: str | None,
              webhook_secret: str | None, webhook_batched: bool) -> None:
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
                             state_file=state_file, late_events=late_events, timezone=timezone,
                             thumbnail_ttl=thumbnail_ttl or None, thumbnail_pending=thumbnail_pending)
    if webhook_url is not None and not webhook_url.startswith(("http://", "https://")):
        raise click.BadParameter("expected an http:// or https:// URL", param_hint="--webhook")
    webhook = None
    if webhook_url is not None:
        from sgcache.mocksite.webhooks import WebhookSender

        webhook = WebhookSender(site, webhook_url, webhook_secret, batched=webhook_batched)
    try:
        launch.serve(site, host, int(port), latency_ms=latency_ms, state_file=state_file, admin=not no_admin,
                     announce=lambda text: click.echo(text, err=True), webhook=webhook)
    except OSError as e:
        raise SgcacheError(f"cannot listen on {bind}: {e.strerror}") from None


@cli.command()
@click.option("--bind", metavar="HOST:PORT", help="Listen here (default: web.bind).")
@click.option("--workers", type=click.IntRange(min=1), help="gunicorn worker processes (default: web.workers).")
@click.option("--threads", type=click.IntRange(min=1), help="Threads per worker (default: web.threads).")
@click.option("--dev", is_flag=True, help="Flask's development server in one process (not for production).")
@click.pass_obj
def web(state: State, bind: str | None, workers: int | None, threads: int | None, dev: bool) -> None:
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
def demo(state: State, database_url: str | None, folder: Path, bind: str, site_bind: str, latency_ms: float,
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
    Demo(config, options, echo=click.echo, config_path=state.config_path).run(stop_on_signals())


def _safe_db(url: str) -> str:
    from sgcache.store.db import safe_url

    return safe_url(url)
