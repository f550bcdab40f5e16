"""Versioned rows: every value the cache replaces is kept, with the interval it was valid for.

The design is SQL:2011's system-versioned tables, written by the one writer instead of the
database: each cached table (entity table or association table) keeps its current rows as they
are, each stamped with ``_valid_from``, the site's time of the change that made it (NULL: from
before history began). An entity table's history table ``_history_<table>`` holds every earlier
version of its rows, a copy of the row as it was plus ``_valid_to`` (the time of the change that
replaced or removed it) and ``_to_event`` (that change's event id, when an event made it). The
association tables all have the same columns, so their earlier rows share one table,
``_history_links``, which also names the type and the field (a schema has several times more
multi-entity fields than types: one history table each would double the tables a database
holds). A row's versions never overlap, so "the table as it was at T" is the current rows valid
since T or before, plus the history rows valid at T (:func:`as_of`, :func:`links_as_of`); a
version with no ``_valid_from`` was there from before history began.
Present reads never look at history tables.

Why not one JSON history table, or database triggers: a typed copy lets the read compiler run
unchanged over a past view (same column names and types), and the writer knows the site's time of
each change (an event's time, an entity's ``updated_at``), which a trigger does not.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY

from sgcache.fields import names
from sgcache.fields.types import UTCDateTime
from sgcache.store import bulk

VALID_FROM = "_valid_from"
VALID_TO = "_valid_to"
TO_EVENT = "_to_event"
VERSION = "_version"
#: the shared history of every association table
LINKS = "_history_links"
#: The columns a history table adds to a copy of its table's columns.
HISTORY_ONLY = (VERSION, VALID_TO, TO_EVENT)
#: rows per statement for IN lists
CHUNK = 1000


def history_name(table_name: str) -> str:
    """``shot`` -> ``_history_shot`` (``_`` never starts a cached table's name)."""
    return names.fit(f"_history_{table_name}")


def valid_from_column() -> sa.Column:
    return sa.Column(VALID_FROM, UTCDateTime)


def history_clause(table: sa.Table) -> sa.TableClause:
    """The history table of ``table`` for reading and writing rows: a light clause with its
    columns (building the full :func:`history_table` for every table of a large schema would
    double what a process pays to load it; only migrations need that)."""
    columns = [sa.column(VERSION, sa.BigInteger)]
    columns += [sa.column(c.name, c.type) for c in table.columns]
    columns += [sa.column(VALID_TO, UTCDateTime), sa.column(TO_EVENT, sa.BigInteger)]
    return sa.table(history_name(table.name), *columns)


def history_table(metadata: sa.MetaData, table: sa.Table, key: str) -> sa.Table:
    """The history table of ``table`` as ``sgcache schema migrate`` makes it: its columns
    (nullable, no keys), then when each version ended. ``key``: the column naming the entity a
    row belongs to (``id``, or ``parent_id``)."""
    name = history_name(table.name)
    columns = [sa.Column(VERSION, sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                         autoincrement=True)]
    columns += [sa.Column(c.name, c.type, nullable=True) for c in table.columns]
    columns += [sa.Column(VALID_TO, UTCDateTime, nullable=False), sa.Column(TO_EVENT, sa.BigInteger)]
    # The table's own indexes too (links with their project, updated_at): a read of the past
    # filters and joins the history as a read of the present does the table. Each ends with when
    # the version ended, so the index itself leaves out the versions that ended before the moment
    # asked about (most of them, for any moment but the history's first days).
    mirrored = [sa.Index(names.index(name, ix.name), *[c.name for c in ix.columns], VALID_TO) for ix in table.indexes]
    # And one on the end alone: versions are kept as they end, so it follows the table's order,
    # and a read of every row as of a moment (a summary, a page) reads only the versions that
    # ended after it.
    history = sa.Table(name, metadata, *columns, sa.Index(names.index(name, "key"), key, VALID_TO),
                       sa.Index(names.index(name, "ended"), VALID_TO), *mirrored)
    return history


def links_table(metadata: sa.MetaData) -> sa.Table:
    """``_history_links``: the earlier rows of every association table, with the type and field
    they belong to."""
    return sa.Table(
        LINKS, metadata,
        sa.Column(VERSION, sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("entity_type", sa.Text, nullable=False),
        sa.Column("field", sa.Text, nullable=False),
        sa.Column("parent_id", sa.Integer, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("child_type", sa.Text, nullable=False),
        sa.Column("child_id", sa.Integer, nullable=False),
        sa.Column(VALID_FROM, UTCDateTime),
        sa.Column(VALID_TO, UTCDateTime, nullable=False),
        sa.Column(TO_EVENT, sa.BigInteger),
        sa.Index("ix_history_links_parent", "entity_type", "field", "parent_id", VALID_TO),
    )


#: the spans in which the cache does not know an entity's values (see :func:`mark_unsure`)
UNSURE = "_history_unsure"
#: How far an entity's ``updated_at`` may be from the event of the write that set it (the site
#: stamps both, not always in the same second).
SAME_MOMENT = dt.timedelta(seconds=1)


def unsure_table(metadata: sa.MetaData) -> sa.Table:
    """``_history_unsure``: spans of time in which the cache holds no exact version of an entity
    (:func:`mark_unsure`); a read of the past at a moment inside one, touching its type, is refused."""
    return sa.Table(
        UNSURE, metadata,
        sa.Column(VERSION, sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("entity_type", sa.Text, nullable=False),
        sa.Column("entity_id", sa.BigInteger, nullable=False),
        sa.Column(VALID_FROM, UTCDateTime, nullable=False),
        sa.Column(VALID_TO, UTCDateTime, nullable=False),
        sa.Column("event_id", sa.BigInteger),  # the event being applied when the span was found
        sa.Index("ix_history_unsure_type", "entity_type", VALID_TO),
        sa.Index("ix_history_unsure_ended", VALID_TO),
    )


def mark_unsure(conn: sa.Connection, tables: Any, entity_type: str, entity_id: int, start: dt.datetime,
                end: dt.datetime, event_id: int | None) -> bool:
    """Record that between ``start`` and ``end`` the cache does not know the entity's values
    (False: a span recorded before covers it).

    The watcher reads an entity from the site to apply some events (a creation, a list change, a
    value the event does not carry). When the entity changed again after the event (its
    ``updated_at`` is later), the read holds the later values: the versions in between are not
    seen, and the version written starts at that ``updated_at``. Between the event and it, what
    the site showed is not known, so reads of those moments are refused, never guessed."""
    t = tables.state.history_unsure
    covered = conn.execute(sa.select(sa.literal(1)).where(
        t.c.entity_type == entity_type, t.c.entity_id == entity_id, t.c[VALID_FROM] <= start, t.c[VALID_TO] >= end
    ).limit(1)).first()
    if covered is not None:  # (the other events of one write, read at the same moment, find the same span)
        return False
    conn.execute(sa.insert(t).values(entity_type=entity_type, entity_id=entity_id, **{VALID_FROM: start},
                                     **{VALID_TO: end}, event_id=event_id))
    return True


def unsure_at(conn: sa.Connection, tables: Any, when: dt.datetime) -> dict[str, dt.datetime]:
    """Type -> the latest end of its unsure spans that hold ``when`` (types with none are absent)."""
    t = tables.state.history_unsure
    rows = conn.execute(sa.select(t.c.entity_type, sa.func.max(t.c[VALID_TO]))
                        .where(t.c[VALID_FROM] <= when, t.c[VALID_TO] > when).group_by(t.c.entity_type))
    return {name: end for name, end in rows}


#: The moment the reads of this thread (or task) look at: see :func:`reading_as_of`.
_MOMENT: ContextVar[dt.datetime | None] = ContextVar("sgcache_as_of", default=None)


def _moment() -> dt.datetime:
    found = _MOMENT.get()
    if found is None:
        raise RuntimeError("a read of the past ran outside history.reading_as_of()")
    return found


#: The as-of moment as a bound parameter whose value is read when a statement runs: views built
#: with it once serve every moment, and SQLAlchemy compiles their statements once.
AS_OF = sa.bindparam("sgcache_as_of", type_=UTCDateTime, callable_=_moment)


@contextmanager
def reading_as_of(at: dt.datetime) -> Iterator[None]:
    """Run the statements of views built with :data:`AS_OF` as of ``at``."""
    token = _MOMENT.set(at)
    try:
        yield
    finally:
        _MOMENT.reset(token)


#: What a current row's version "ends" at in a view of the past: never (later than any moment asked).
FOREVER = dt.datetime(9999, 12, 31, tzinfo=dt.UTC)


def _valid(both: sa.Subquery, at: dt.datetime | sa.BindParameter) -> list[sa.ColumnElement]:
    return [sa.or_(both.c[VALID_FROM].is_(None), both.c[VALID_FROM] <= at), both.c[VALID_TO] > at]


# The views below filter the union of the current rows and the history *outside* it: PostgreSQL
# flattens a UNION ALL whose arms have no WHERE of their own into one append of the two tables,
# so a join into the view can probe each table's indexes row by row (a nested loop); with the
# conditions inside the arms, each arm stays a subquery that is read whole (hash joins over every
# version, several times slower for a deep-link find). The current rows' end is FOREVER, a
# constant the planner folds away.


def links_as_of(assoc: sa.Table, links: sa.Table, entity_type: str, field: str,
                at: dt.datetime | sa.BindParameter = AS_OF) -> sa.Subquery:
    """An association table as it was at ``at``: a subquery with its name and columns."""
    kind = [sa.literal(entity_type, sa.Text).label("_history_entity_type"),
            sa.literal(field, sa.Text).label("_history_field")]
    now = sa.select(*assoc.columns, *kind, sa.literal(FOREVER, UTCDateTime).label(VALID_TO))
    past = sa.select(*[links.c[c.name] for c in assoc.columns], links.c.entity_type, links.c.field, links.c[VALID_TO])
    both = sa.union_all(now, past).subquery()
    return (sa.select(*[both.c[c.name] for c in assoc.columns])
            .where(both.c._history_entity_type == entity_type, both.c._history_field == field, *_valid(both, at))
            .subquery(assoc.name))


def as_of(table: sa.Table, history: sa.TableClause, at: dt.datetime | sa.BindParameter = AS_OF) -> sa.Subquery:
    """``table`` as it was at ``at``: a subquery with the same name and columns."""
    now = sa.select(*table.columns, sa.literal(FOREVER, UTCDateTime).label(VALID_TO))
    past = sa.select(*[history.c[c.name] for c in table.columns], history.c[VALID_TO])
    both = sa.union_all(now, past).subquery()
    return sa.select(*[both.c[c.name] for c in table.columns]).where(*_valid(both, at)).subquery(table.name)


def snapshot(conn: sa.Connection, table: sa.Table, key: str, ids: Iterable[int], *,
             lock: bool = True) -> list[dict[str, Any]]:
    """The current rows of ``table`` whose ``key`` is in ``ids``, every column; locked until the
    transaction ends on PostgreSQL (so no other writer changes them before their versions are kept)."""
    ids = sorted(set(ids))
    out: list[dict[str, Any]] = []
    if not ids:
        return out
    postgres = conn.dialect.name == "postgresql"
    stmt = _snapshot_statement(table, key, lock and postgres, postgres)
    for start in range(0, len(ids), CHUNK):
        out.extend(dict(r) for r in conn.execute(stmt, {"ids": ids[start:start + CHUNK]}).mappings())
    return out


@functools.lru_cache(maxsize=4096)
def _snapshot_statement(table: sa.Table, key: str, lock: bool, array: bool) -> sa.Select:
    """The statement of :func:`snapshot`, made once per table: the watcher runs it for every
    event, and building it again (and its cache key) cost more than running it. With ``array``
    (PostgreSQL), the ids go as one array (``= ANY``): an IN list of a thousand parameters is
    written out again for every run."""
    if array:
        stmt = sa.select(table).where(table.c[key] == sa.any_(sa.bindparam("ids", type_=ARRAY(sa.BigInteger))))
    else:
        stmt = sa.select(table).where(table.c[key].in_(sa.bindparam("ids", expanding=True)))
    return stmt.with_for_update() if lock else stmt


def keep(conn: sa.Connection, history: sa.TableClause, rows: list[Mapping[str, Any]], **same: Any) -> None:
    """Insert ended versions (each a current row plus ``_valid_to`` and ``_to_event``; ``same``:
    values every row gets, such as the type and field of ``_history_links`` rows)."""
    if not rows:
        return
    columns = [c.name for c in history.columns if c.name != VERSION and c.name not in same]
    versions = [{**{c: r.get(c) for c in columns}, **same} for r in rows]
    if bulk.usable(conn, len(versions)):
        # A scan's page that changed many rows: COPY, as the rows themselves were written (the
        # insert statements took most of such a batch's time).
        bulk.copy_into(conn, history, versions)
    else:
        conn.execute(sa.insert(history), versions)


def ended(row: Mapping[str, Any], at: dt.datetime, event_id: int | None) -> dict[str, Any]:
    """``row`` as an ended version: valid until ``at``, replaced by event ``event_id``."""
    start = row.get(VALID_FROM)
    return {**row, VALID_TO: at if start is None else max(at, start), TO_EVENT: event_id}


def start_after(previous: dt.datetime | None, at: dt.datetime) -> dt.datetime:
    """When a new version starts: ``at``, never before the version it replaces (a late event or
    an older answer must not make versions overlap)."""
    return at if previous is None or at >= previous else previous


#: Versions removed per statement when pruning (each batch its own transaction).
PRUNE_BATCH = 5_000


def prune(engine: sa.Engine, tables: Any, horizon: dt.datetime, batch: int = PRUNE_BATCH) -> int:
    """Remove the versions that ended before ``horizon``, ``batch`` at a time, each batch in its
    own transaction (readers and writers are never held long); then record the horizon, before
    which reads of the past are refused. Return how many were removed."""
    from sgcache.store import state

    removed = 0
    for versions in [et.history for et in tables] + [tables.state.link_history, tables.state.history_unsure]:
        while True:
            doomed = sa.select(versions.c[VERSION]).where(versions.c[VALID_TO] < horizon).limit(batch)
            with engine.begin() as conn:
                count = conn.execute(sa.delete(versions).where(versions.c[VERSION].in_(doomed))).rowcount or 0
            removed += count
            if count < batch:
                break
    with engine.begin() as conn:
        held = pruned_until(conn, tables)
        if held is None or horizon > held:
            state.set_meta(conn, tables.state, state.HISTORY_PRUNED, horizon.isoformat())
    return removed


def pruned_until(conn: sa.Connection, tables: Any) -> dt.datetime | None:
    """The horizon of the last pruning (reads of the past before it are refused), if any."""
    from sgcache.store import state

    st = tables.state
    raw = conn.execute(sa.select(st.meta.c.value).where(st.meta.c.key == state.HISTORY_PRUNED)).scalar()
    return dt.datetime.fromisoformat(raw) if raw else None
