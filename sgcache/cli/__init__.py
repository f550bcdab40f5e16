"""The ``sgcache`` command. Thin: it parses arguments, loads the config and calls the library.

The group and what every command shares are in :mod:`~sgcache.cli.common`; the commands, by
job, in :mod:`~sgcache.cli.schemas`, :mod:`~sgcache.cli.syncing`, :mod:`~sgcache.cli.checks`,
:mod:`~sgcache.cli.history`, :mod:`~sgcache.cli.triggers` and :mod:`~sgcache.cli.serve`.
:func:`main` is the installed ``sgcache``.
"""

from __future__ import annotations

import logging
import sys

import click
import sqlalchemy

from sgcache.cli.checks import auth, status, validate
from sgcache.cli.common import cli, version
from sgcache.cli.history import changes, history
from sgcache.cli.schemas import schema
from sgcache.cli.serve import demo, mock_site, web
from sgcache.cli.syncing import auto, rebuild, scan, watch
from sgcache.cli.triggers import triggers
from sgcache.errors import SgcacheError

__all__ = ["auth", "auto", "changes", "cli", "demo", "history", "main", "mock_site", "rebuild", "scan", "schema",
           "status", "triggers", "validate", "version", "watch", "web"]


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
