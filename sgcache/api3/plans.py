"""Compiled reads kept for the next identical request.

Compiling a ``read`` (checking every name against the schema and building its SQLAlchemy
statement) costs more than running it for most reads: a third of a cached ``find_one`` and half
of a deep-link find. Pipelines ask the same questions over and over (a tool's start-up, a farm of
identical jobs, a polling loop), so the plan of each request is kept, in a bounded LRU, under
everything its compilation depended on:

- the request itself (method and arguments, as canonical JSON);
- the tables of the schema in force (a followed schema change compiles afresh);
- the parts of the read state the compiler checks (imported, rebuilding, suspect or
  backfilling types and fields, the cached projects, slim records: ``ReadState.plan_key``).

Only reads whose answer does not depend on the caller or the moment are kept: callers who see
everything (not ``visible_projects``), reads of the present (not ``/as-of/``), and filters without
relative dates (``in_last``..., which count from now). The plan holds statements, never
results: every request still runs its queries against the tables as they are.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from sgcache.store.readstate import ReadState
from sgcache.store.tables import Tables

#: Requests whose canonical JSON is longer than this are compiled each time (a filter listing
#: thousands of ids would hold memory for a plan unlikely to be asked for again).
MAX_KEY_CHARS = 4096


class PlanCache:
    """At most ``size`` compiled plans, least recently used dropped first; shared by the threads."""

    def __init__(self, size: int, on_lookup: Callable[[bool], None] | None = None):
        self.size = size
        self._plans: OrderedDict[tuple, tuple[Tables, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.on_lookup = on_lookup  # called with whether a plan was found (metrics)
        #: (the plan key of the read state last seen, the equal key the kept plans were stored under)
        self._state_key: tuple[tuple, tuple] | None = None

    def key(self, method: str, args: Any, state: ReadState) -> tuple | None:
        """The key of a request's plan, or None when it is not to be kept."""
        if self.size <= 0:
            return None
        try:
            text = json.dumps(args, sort_keys=True, separators=(",", ":"))
        except (RecursionError, ValueError, TypeError):
            return None  # too deep to write out again here: compiled, and judged there, as any other
        if len(text) > MAX_KEY_CHARS:
            return None
        return method, text, self._same_key(state.plan_key)

    def _same_key(self, plan_key: tuple) -> tuple:
        """``plan_key``, or the equal key already in use: each request's key then holds the very
        object the kept plans' keys hold, and looking a plan up compares it by identity instead
        of comparing every slim type of two equal states (the state is read again every half
        second, equal to the last most of the time)."""
        last = self._state_key
        if last is not None and last[0] is plan_key:
            return last[1]
        same = last[1] if last is not None and last[1] == plan_key else plan_key
        self._state_key = (plan_key, same)  # one assignment: threads see one pair or the other
        return same

    def get(self, key: tuple | None, tables: Tables) -> Any | None:
        """The plan kept under ``key`` for ``tables``, or None (always for a key of None: a read
        not to be kept, counted all the same)."""
        with self._lock:
            found = self._plans.get(key) if key is not None else None
            kept = found is not None and found[0] is tables
            if kept:
                self._plans.move_to_end(key)
                self.hits += 1
            else:
                self.misses += 1
        if self.on_lookup is not None:
            self.on_lookup(kept)
        return found[1] if kept else None

    def put(self, key: tuple, tables: Tables, plan: Any) -> None:
        with self._lock:
            self._plans[key] = (tables, plan)
            self._plans.move_to_end(key)
            while len(self._plans) > self.size:
                self._plans.popitem(last=False)

    def __len__(self) -> int:
        return len(self._plans)
