"""The tables of event plugins run on the watcher (``sgcache triggers``, see sgcache.triggers):
one cursor per callback, the events handled above it, and the events that kept failing.

A callback's ``watermark`` is an event id: every event the watcher applied up to it has been
handled by the callback (or did not match it). Events above it that were handled out of order
(a late event filled a gap below) are rows of ``_sgcache_trigger_done`` until the watermark
passes them.
"""

from __future__ import annotations

import sqlalchemy as sa

from sgcache.fields.types import UTCDateTime


def define(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table, sa.Table]:
    cursors = sa.Table(
        "_sgcache_trigger_cursors", metadata,
        sa.Column("callback", sa.Text, primary_key=True),  # plugin.callback
        sa.Column("watermark", sa.BigInteger, nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("last_event_id", sa.BigInteger),  # the last event it handled
        sa.Column("last_success_at", UTCDateTime),
        sa.Column("failures", sa.Integer, nullable=False, server_default="0"),  # in a row, on one event
        sa.Column("last_error", sa.Text),
        sa.Column("stopped_at", UTCDateTime),  # stopOnError: stopped on ``last_error``
    )
    done = sa.Table(
        "_sgcache_trigger_done", metadata,
        sa.Column("callback", sa.Text, primary_key=True),
        sa.Column("event_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("done_at", UTCDateTime, nullable=False),
    )
    dead = sa.Table(
        "_sgcache_trigger_dead", metadata,
        sa.Column("callback", sa.Text, primary_key=True),
        sa.Column("event_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("failed_at", UTCDateTime, nullable=False),
        sa.Column("resolved_at", UTCDateTime),  # replayed by ``sgcache triggers retry``
    )
    return cursors, done, dead
