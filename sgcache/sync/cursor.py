"""The watcher's position in the event log, kept in the database next to the data it covers.

``max_applied_id`` is the highest event id applied (or given up on); ``gaps`` are the ids below
it that were missing when seen (late commits), each with when it was first missed. Every id at
or below ``max_applied_id`` that is not a gap is done. The cursor is always written in the same
transaction as the changes of the events it moves past, so a crash at any point neither loses
nor repeats an event.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from sgcache.store.state import StateTables

CURSOR_ROW = 1


@dataclass
class Cursor:
    max_applied_id: int
    gaps: dict[int, dt.datetime] = field(default_factory=dict)

    @property
    def last_complete_id(self) -> int:
        """Every event up to this id is done."""
        return min(self.gaps) - 1 if self.gaps else self.max_applied_id

    def is_done(self, event_id: int) -> bool:
        return event_id <= self.max_applied_id and event_id not in self.gaps

    def copy(self) -> Cursor:
        return Cursor(self.max_applied_id, dict(self.gaps))


def load(conn: sa.Connection, st: StateTables) -> Cursor | None:
    row = conn.execute(sa.select(st.cursor).where(st.cursor.c.id == CURSOR_ROW)).mappings().first()
    if row is None:
        return None
    gaps = {int(k): dt.datetime.fromisoformat(v) for k, v in json.loads(row["gaps"] or "{}").items()}
    return Cursor(int(row["max_applied_id"]), gaps)


def save(conn: sa.Connection, st: StateTables, cursor: Cursor) -> None:
    values = {"max_applied_id": cursor.max_applied_id,
              "gaps": json.dumps({str(k): v.isoformat() for k, v in sorted(cursor.gaps.items())}),
              "updated_at": dt.datetime.now(dt.UTC)}
    changed = conn.execute(sa.update(st.cursor).where(st.cursor.c.id == CURSOR_ROW).values(**values)).rowcount
    if not changed:
        conn.execute(sa.insert(st.cursor).values(id=CURSOR_ROW, **values))


#: how far below the starting point to look for ids not yet committed
LOOKBACK = 500


def ensure(conn: sa.Connection, st: StateTables, newest_event_id: Callable[[], int],
           event_ids_after: Callable[[int], list[int]] | None = None) -> Cursor:
    """The cursor; on first use, start it at the site's newest visible event (before any import).

    Ids just below that start which are not visible yet (late commits) become gaps at once, so
    they are applied when they appear instead of being taken as done.
    """
    cursor = load(conn, st)
    if cursor is None:
        newest = newest_event_id()
        cursor = Cursor(newest)
        if event_ids_after is not None and newest > 0:
            low = max(0, newest - LOOKBACK)
            visible = set(event_ids_after(low))
            now = dt.datetime.now(dt.UTC)
            cursor.gaps = {i: now for i in range(low + 1, newest + 1) if i not in visible}
        # The watcher and a scanner may start together on a new database: the first row wins.
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        conn.execute(insert(st.cursor).values(
            id=CURSOR_ROW, max_applied_id=cursor.max_applied_id, updated_at=dt.datetime.now(dt.UTC),
            gaps=json.dumps({str(k): v.isoformat() for k, v in sorted(cursor.gaps.items())}))
            .on_conflict_do_nothing(index_elements=[st.cursor.c.id]))
        cursor = load(conn, st)
    return cursor
