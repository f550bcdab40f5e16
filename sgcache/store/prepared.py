"""Prepared statements on PostgreSQL for the reads the proxy is asked again and again.

A read kept in the plan cache (:mod:`sgcache.api3.plans`) sends the same SQL text, values and
all, each time it is asked. Its page query is marked with the execution option :data:`OPTION`,
and on PostgreSQL :class:`Prepared` sends it as ``EXECUTE`` of a statement the connection
prepared the first time: the server parses, rewrites and plans it once per connection instead of
on every request (0.55 to 0.66 ms of the deep-link find's page query, which took 1.37 to 1.66 ms
a round trip unprepared; docs/benchmarks.rst).

Why this cannot change an answer:

- the values are written into the prepared text (it takes no parameters), so the plan
  PostgreSQL keeps is the plan for those very values, not a generic one guessed for any value;
- a statement's name is a digest of the database URL and of that text, so one name means one
  query wherever it is found, even on a server connection another client prepared statements on;
- PostgreSQL plans a prepared statement again when a table it reads changes or is analyzed;
- when the connection turns out not to hold what this module recorded (a pooler in transaction
  mode hands each transaction another server connection), preparing is switched off for the
  process, logged once, and the read is run again as plain SQL (:meth:`Prepared.retry`).

Each connection keeps at most ``limit`` statements (``database.prepared_statements``), the
least recently used deallocated first, in the same round trip as the next one prepared.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from typing import Any

import sqlalchemy as sa

log = logging.getLogger(__name__)

#: The execution option that asks for a statement to be prepared (true), set on a statement
#: whose bound text repeats (sgcache.query.read.ReadPlan.prepare).
OPTION = "sgcache_prepare"
#: Where a connection's prepared statements are listed: the pool's per-connection info, which
#: SQLAlchemy empties when the connection is replaced.
_HELD = "sgcache_prepared"
#: SQLSTATEs that say the server connection's prepared statements are not the ones recorded:
#: invalid_sql_statement_name, duplicate_prepared_statement.
POOLER_STATES = frozenset({"26000", "42P05"})
#: feature_not_supported: "cached plan must not change result type" (a column's type changed).
STALE_STATES = frozenset({"0A000"})


class Prepared:
    """Sends marked statements of ``engine`` (PostgreSQL, psycopg2) as prepared statements."""

    def __init__(self, engine: sa.Engine, limit: int):
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.on = True
        # One name, one text, for one database: the URL (password hidden) goes into the digest.
        self._salt = engine.url.render_as_string(hide_password=True).encode() + b"\0"
        sa.event.listen(engine, "do_execute", self._execute)

    def _execute(self, cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
        """The dialect's execute for one statement; True when it was sent here (prepared)."""
        if not self.on or not context.execution_options.get(OPTION) or getattr(cursor, "name", None):
            return False  # not asked for, or a server-side cursor (DECLARE ... CURSOR FOR takes no EXECUTE)
        text = cursor.mogrify(statement, parameters)
        name = "sgcache_" + hashlib.blake2b(self._salt + text, digest_size=12).hexdigest()
        info = context.root_connection.connection.info
        # Absent: nothing prepared yet; None: the list was lost with a failed statement.
        held: OrderedDict[str, None] | None = info.get(_HELD, OrderedDict())
        if held is not None and name in held:
            held.move_to_end(name)
            sql = f"EXECUTE {name}".encode()
        else:
            parts = [b"DEALLOCATE ALL"] if held is None else []  # start again from nothing
            held = OrderedDict() if held is None else held
            while len(held) >= self.limit:
                parts.append(f"DEALLOCATE {held.popitem(last=False)[0]}".encode())
            parts += [f"PREPARE {name} AS ".encode() + text, f"EXECUTE {name}".encode()]
            sql = b"; ".join(parts)
        info[_HELD] = None  # until the server has answered: a failure leaves the list unknown
        cursor.execute(sql)
        held[name] = None
        info[_HELD] = held
        return True

    def retry(self, error: BaseException) -> bool:
        """Whether a read that failed with ``error`` is to run once more: the failure came from
        the prepared statements themselves. A sign of a pooler switches them off for good."""
        code = getattr(getattr(error, "orig", None), "pgcode", None)
        if code in POOLER_STATES:
            if self.on:
                self.on = False
                why = (str(getattr(error, "orig", error)).strip().splitlines() or [code])[0][:200]
                log.warning("event=prepared_statements_off why=%r hint=%r", why, "the connections' prepared "
                            "statements are not the ones sent (a pooler in transaction mode?): set "
                            "database.prepared_statements: 0")
            return True
        return code in STALE_STATES
