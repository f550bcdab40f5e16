"""Transactions of the stand-in site: all-or-nothing writes (an undo log), the data version, one
timestamp per transaction, and late commits of event-log rows (``late_events``).
"""

from __future__ import annotations

import copy
import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from sgcache.mocksite.emulator import Emulator

T = TypeVar("T")


@dataclass
class Undo:
    """What one transaction changed: each row's state before its first change."""

    rows: list[tuple[str, int, dict | None]] = field(default_factory=list)
    seen: set[tuple[str, int]] = field(default_factory=set)
    # the transaction's time: every row and event one write stamps carries it, as the site's own
    # database gives one now() to a whole transaction
    now: dt.datetime | None = None


class Ledger:
    """Runs writes all or nothing and counts changes (``version``): whatever was made of the
    data before a change (a read's cached rows, a caller's view) is stale once it moves."""

    def __init__(self, emu: Emulator, clock: Callable[[], dt.datetime], *, late_events: float = 0.0,
                 rng: random.Random | None = None):
        self.emu = emu
        self.clock = clock
        self.late_events = late_events
        self.rng = rng or random.Random(0)
        self.version = 0
        self.undo: Undo | None = None
        #: called after every committed change (to drop what was made of the old data)
        self.listeners: list[Callable[[], None]] = []

    def now(self) -> dt.datetime:
        """Now, in whole seconds; within a transaction, its one time."""
        if self.undo is None:
            return self.clock().replace(microsecond=0)
        if self.undo.now is None:
            self.undo.now = self.clock().replace(microsecond=0)
        return self.undo.now

    def changed(self) -> None:
        """The data changed outside a transaction (loading, schema edits)."""
        self.version += 1
        for listener in self.listeners:
            listener()

    def touch(self, entity_type: str, entity_id: int) -> None:
        """Remember a row's state before a change, so a failed batch can be undone."""
        # Every change passes here: what was made of the data before it (a caller's view) is stale.
        self.version += 1
        undo = self.undo
        if undo is None or (entity_type, entity_id) in undo.seen:
            return
        undo.seen.add((entity_type, entity_id))
        row = self.emu.row(entity_type, entity_id)
        undo.rows.append((entity_type, entity_id, copy.deepcopy(row) if row is not None else None))

    def transaction(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` all or nothing (nested calls join the outer transaction)."""
        if self.undo is not None:
            return fn()
        self.undo = Undo()
        try:
            result = fn()
        except BaseException:
            self._rollback(self.undo)
            raise
        finally:
            undo, self.undo = self.undo, None
        self.changed()
        self._commit_late(undo)
        return result

    def _rollback(self, undo: Undo) -> None:
        for entity_type, entity_id, before in reversed(undo.rows):
            if before is None:
                self.emu.remove_row(entity_type, entity_id)
                self.emu.hidden_until.pop((entity_type, entity_id), None)
            else:
                self.emu.put_row(entity_type, entity_id, before)

    def _commit_late(self, undo: Undo) -> None:
        """Late commits: a share of writes make their events readable only a few seconds later."""
        if not self.late_events or self.rng.random() >= self.late_events:
            return
        until = self.clock() + dt.timedelta(seconds=self.rng.uniform(2.0, 5.0))
        for entity_type, entity_id, before in undo.rows:
            if entity_type == "EventLogEntry" and before is None:
                self.emu.hidden_until[(entity_type, entity_id)] = until
