"""What the cache holds completely, read from the state tables: the types a read may use.

The proxy reads it once per request (and ``sgcache validate`` once per check); the query
compiler refuses (passes through) anything it does not vouch for.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from dataclasses import dataclass, field

import sqlalchemy as sa

from sgcache.store import slim
from sgcache.store.slim import SlimType
from sgcache.store.state import AUTH_EPOCH, AUTH_TRIPPED, HISTORY_PRUNED, HISTORY_UNTIL, PROJECTS, decode_projects
from sgcache.store.tables import Tables


@dataclass(frozen=True)
class ReadState:
    """What the cache holds completely, read from the state tables (see :func:`load_state`)."""

    #: types whose full import completed
    ready: frozenset[str]
    #: type -> fields whose data is not trustworthy yet
    backfill: dict[str, frozenset[str]] = field(default_factory=dict)
    #: the cached project ids, or None when every project is cached
    projects: frozenset[int] | None = None
    #: types being rebuilt (sgcache rebuild): not ready, whatever their last import says
    rebuilding: frozenset[str] = frozenset()
    #: type -> fields whose storage in the database is not what this process's schema expects
    #: (a schema file or an sgcache version newer or older than the last migration)
    mismatched: dict[str, frozenset[str]] = field(default_factory=dict)
    #: changes whenever the watcher sees people, scripts, projects or permission groups change:
    #: remembered identities, verdicts and visibilities are then dropped
    auth_epoch: str = ""
    #: permission groups a failed shadow check switched to passthrough (see sgcache.api3.shadow)
    tripped: frozenset[str] = frozenset()
    #: types with an unresolved dead letter since their last full import: rows may be stale
    suspect: frozenset[str] = frozenset()
    #: types the schema leaves out whose slim records are complete (links to them are named
    #: from those records; see sgcache.store.slim)
    slim: dict[str, SlimType] = field(default_factory=dict)
    #: with only some projects cached: the cached project-scoped types whose entities outside
    #: those projects are listed as slim records (links to them are named from those records)
    outside: dict[str, SlimType] = field(default_factory=dict)
    #: (type, field) -> when the cache's history of it begins (None or absent: not yet; see
    #: sgcache.store.history)
    history_from: dict[tuple[str, str], dt.datetime | None] = field(default_factory=dict)
    #: every change on the site up to this moment has been applied (the watcher found no more)
    history_until: dt.datetime | None = None
    #: versions that ended before this moment were pruned (history.keep)
    history_pruned: dt.datetime | None = None

    @functools.cached_property
    def plan_key(self) -> tuple:
        """What a read of the present compiles against (PLAN_FIELDS), hashable: two states with
        the same key give every such read the same plan (see sgcache.api3.plans)."""
        return tuple(frozenset(v.items()) if isinstance(v, dict) else v
                     for v in (getattr(self, name) for name in PLAN_FIELDS))


#: The fields of ReadState the query compiler reads for the present (the others are about callers,
#: handled before it, or about the past, whose reads are compiled each time).
PLAN_FIELDS = ("ready", "backfill", "projects", "rebuilding", "mismatched", "suspect", "slim", "outside")


@functools.lru_cache(maxsize=8)
def _expected_storage(tables: Tables) -> dict[tuple[str, str], tuple[str, str]]:
    """(type, field) -> (data type, storage) that this process's schema and version store."""
    return {(et.name, name): (handler.field.data_type, handler.storage)
            for et in tables for name, handler in et.fields.items() if handler.cached}


def load_state(conn: sa.Connection, tables: Tables) -> ReadState:
    """What the cache holds completely now, from the state tables (one read per request)."""
    st = tables.state
    ready = frozenset(conn.execute(sa.select(st.types.c.entity_type)
                                   .where(st.types.c.full_scan_at.is_not(None))).scalars())
    backfill: dict[str, set[str]] = {}
    stored: dict[tuple[str, str], tuple[str, str]] = {}
    starts: dict[tuple[str, str], dt.datetime | None] = {}
    for type_name, field_name, data_type, storage, needs, start in conn.execute(sa.select(
            st.fields.c.entity_type, st.fields.c.field_name, st.fields.c.data_type, st.fields.c.storage,
            st.fields.c.needs_backfill, st.fields.c.history_from)):
        stored[(type_name, field_name)] = (data_type, storage)
        starts[(type_name, field_name)] = start
        if needs:
            backfill.setdefault(type_name, set()).add(field_name)
    mismatched: dict[str, set[str]] = {}
    for key, expected in _expected_storage(tables).items():
        if stored.get(key) != expected:
            mismatched.setdefault(key[0], set()).add(key[1])
    meta = dict(conn.execute(sa.select(st.meta.c.key, st.meta.c.value)
                             .where(st.meta.c.key.in_([PROJECTS, "rebuilding", AUTH_EPOCH, AUTH_TRIPPED,
                                                       HISTORY_UNTIL, HISTORY_PRUNED]))).all())
    cached_projects = decode_projects(meta.get(PROJECTS))
    projects = frozenset(cached_projects) if cached_projects else None
    marked = json.loads(meta["rebuilding"]) if meta.get("rebuilding") else None
    rebuilding = frozenset(marked.get("types", ())) if isinstance(marked, dict) else frozenset()
    tripped = json.loads(meta[AUTH_TRIPPED]) if meta.get(AUTH_TRIPPED) else {}
    dead, types = st.dead_letters, st.types
    suspect = frozenset(conn.execute(
        sa.select(dead.c.entity_type).distinct()
        .select_from(dead.join(types, types.c.entity_type == dead.c.entity_type))
        .where(dead.c.resolved_at.is_(None))
        .where(sa.or_(types.c.full_scan_at.is_(None), dead.c.failed_at > types.c.full_scan_at))).scalars())
    listed = slim.ready_types(conn, st.slim_types)
    return ReadState(ready - rebuilding, {k: frozenset(v) for k, v in backfill.items()}, projects, rebuilding,
                     {k: frozenset(v) for k, v in mismatched.items()}, meta.get(AUTH_EPOCH, ""),
                     frozenset(tripped) if isinstance(tripped, dict) else frozenset(), suspect,
                     {name: t for name, t in listed.items() if name not in tables},
                     {name: t for name, t in listed.items() if name in tables and projects is not None},
                     starts, _moment(meta.get(HISTORY_UNTIL)), _moment(meta.get(HISTORY_PRUNED)))


def _moment(raw: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(raw) if raw else None
