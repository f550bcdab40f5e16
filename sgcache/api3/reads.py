"""Reads answered from the cache tables (``read``, ``summarize``, the ``schema_*`` methods), for
callers the site accepts, within what each may see; anything else says why it passes through.

Every answer goes through the same gates, in order: the cache database is usable, the type is
cached and imported, the site accepts the caller's credentials, the caller's permission group may
be answered from the cache (and with which visibility), the request compiles to an exact query,
and the query runs. A gate that fails gives a :class:`~sgcache.api3.answers.PassReason` (the
request goes to the site) or, when the site cannot say who is calling, a fault.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from sgcache.api3.answers import Answer, PassReason, busy_answer, fault_answer, first_line
from sgcache.api3.auth import Verifier
from sgcache.api3.cache import CacheDatabase, connection_lost
from sgcache.api3.identity import IdentityBook
from sgcache.api3.memory import Flights
from sgcache.api3.plans import PlanCache
from sgcache.api3.policy import Decision, Policy
from sgcache.api3.protocol import Fault, RpcRequest
from sgcache.logs import loggable
from sgcache.query import Uncertain
from sgcache.query.paths import Context
from sgcache.query.read import compile_read
from sgcache.query.site_schema import SiteSchema
from sgcache.query.summarize import compile_summarize
from sgcache.store import history
from sgcache.store import state as store_state
from sgcache.store.readstate import ReadState, load_state
from sgcache.upstream import SiteBusy, SiteUnavailable
from sgcache.wire import format_datetime

log = logging.getLogger(__name__)



#: a compiled read or summarize: ``plan.run(conn)`` gives its results
Compiler = Callable[[Context, Any], Any]
COMPILERS: dict[str, Compiler] = {"read": compile_read, "summarize": compile_summarize}


def site_failed(question: str, error: SiteUnavailable) -> Answer:
    """The answer to a cached read whose ``question`` to the site first (the caller's credentials,
    who it is, what it may see) failed: the busy site's 503 when no turn came in time (nothing of
    the request was sent, as for a passthrough past the limit), else a fault naming the problem."""
    if isinstance(error, SiteBusy):
        return busy_answer(f"{question}: {error.message}")
    return fault_answer(Fault(f"sgcache: {question}: {error.message}"), "site unavailable")


@dataclass(eq=False)
class CacheReads:
    """The cache's answers to reads; one per process, shared by its threads."""

    #: Seconds the proxy reuses what it read of the state tables (imported types, backfill marks).
    STATE_TTL: ClassVar[float] = 0.5

    #: the cache database (None: none configured; everything passes through)
    cache: CacheDatabase | None
    verifier: Verifier
    identities: IdentityBook
    policy: Policy
    #: the shared copy of the site's schema, for schema_* reads
    site_schema: SiteSchema | None
    #: the site's time zone (relative dates and date groupings count in it)
    tz: ZoneInfo
    _: KW_ONLY
    clock: Callable[[], float] = time.monotonic
    #: compiled reads kept for identical requests (reads.plan_cache)
    plans: PlanCache = field(default_factory=lambda: PlanCache(256))
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    #: the one thread reading the state tables at a time (the others wait for its state)
    _loads: Flights = field(init=False, default_factory=Flights)
    _state: tuple[float, ReadState] | None = field(init=False, default=None)
    _auth_epoch: str | None = field(init=False, default=None)

    def read_state(self) -> ReadState:
        """What the cache holds completely now (reused for STATE_TTL seconds). When people, scripts,
        projects or permission groups changed on the site, what was learned of callers is dropped."""
        held = self._fresh_state()
        if held is not None:
            return held
        # One thread reads the tables when the state is due; the threads arriving meanwhile take
        # its state, or its failure, instead of each reading its own (8 threads did, at every
        # expiry: 8% of a busy process's time) or each waiting out a dead database in turn.
        return self._loads.run("state", self._load_state)

    def _load_state(self) -> ReadState:
        with self.cache.read_engine.connect() as conn:  # the state of the data the reads will see
            state = load_state(conn, self.cache.tables)
        with self._lock:
            self._state = (self.clock(), state)
            changed = self._auth_epoch is not None and state.auth_epoch != self._auth_epoch
            self._auth_epoch = state.auth_epoch
        if changed:
            self.verifier.forget_all()
            self.identities.forget_all()
            self.policy.forget_all()
            log.info("event=auth_memory_dropped why=%r", state.auth_epoch.partition(" ")[2])
        return state

    def _fresh_state(self) -> ReadState | None:
        with self._lock:
            held = self._state
        return held[1] if held is not None and self.clock() - held[0] < self.STATE_TTL else None

    def unusable(self) -> str | None:
        """The pass reason when the cache database cannot be used now, else None."""
        if self.cache is None or not self.cache.is_usable():
            return "database_down"
        return None

    # --- the gates -----------------------------------------------------------------------------------

    def _state_or_reason(self) -> ReadState | PassReason:
        try:
            return self.read_state()
        except sa.exc.SQLAlchemyError as e:
            self.cache.failed(e)
            return PassReason("database_down")

    def _verified(self, req: RpcRequest, entity_type: str) -> PassReason | Answer | None:
        """None when the site accepts the caller's credentials; else a fault to answer with, or
        why the request passes through (the site could not say)."""
        try:
            if self.verifier.verify(req.auth, entity_type):
                return None
        except Fault as fault:
            return fault_answer(fault, "credentials rejected")
        except SiteUnavailable as e:
            return site_failed("cannot check your credentials", e)
        return PassReason("credentials_not_verified")

    def _decided(self, req: RpcRequest, state: ReadState, entity_type: str) -> Decision | PassReason | Answer:
        """What this caller may get from the cache: verified first, then its group's decision."""
        refused = self._verified(req, entity_type)
        if refused is not None:
            return refused
        try:
            decision = self.policy.decide(req.auth, state.tripped)
        except SiteUnavailable as e:
            return site_failed("cannot learn who you are from the site", e)
        return PassReason(decision.reason) if decision.mode == "passthrough" else decision

    # --- schema ----------------------------------------------------------------------------------------

    def schema(self, req: RpcRequest, localized: bool) -> Any | PassReason | Answer:
        """schema_read / schema_entity_read / schema_field_read from the copy of the site's schema."""
        if self.unusable():
            return PassReason("database_down")
        if localized:
            return PassReason("localized")
        state = self._state_or_reason()
        if isinstance(state, PassReason):
            return state
        # Schemas are the same for every group on the site, but deny by default all the same.
        decision = self._decided(req, state, "Project")
        if not isinstance(decision, Decision):
            return decision
        try:
            return self.site_schema.answer(req.method, req.args)
        except Uncertain as u:
            return PassReason(u.reason, u.detail)
        except sa.exc.SQLAlchemyError as e:
            self.cache.failed(e)
            return PassReason("database_down")

    # --- read and summarize ----------------------------------------------------------------------------

    def answer(self, req: RpcRequest, as_of: dt.datetime | None = None) -> tuple[Any, Decision] | PassReason | Answer:
        """(results, the caller's decision) from the cache tables; else why not (passthrough), or a
        fault to answer with. ``as_of``: answer as the site would have at that moment (from the
        history the cache keeps; see sgcache.store.history)."""
        why = self.unusable()
        if why:
            return PassReason(why)
        entity_type = req.entity_type
        if entity_type is None or entity_type not in self.cache.tables:
            return PassReason("uncached_type", str(entity_type)[:80])
        state = self._state_or_reason()
        if isinstance(state, PassReason):
            return state
        if entity_type not in state.ready:  # cheap, and the site need not be asked who is calling
            return PassReason("type_rebuilding" if entity_type in state.rebuilding else "type_not_imported",
                              entity_type)
        # Who is asking comes first: nothing is compiled or learned for credentials the site refuses.
        decision = self._decided(req, state, entity_type)
        if not isinstance(decision, Decision):
            return decision
        if as_of is not None and (state.history_until is None or as_of > state.history_until):
            until = "not yet known" if state.history_until is None else format_datetime(state.history_until)
            return PassReason("history_not_yet", f"the watcher has applied the site's changes up to {until}",
                              decision=decision)
        plan = self._compiled(req, state, decision, as_of)
        if isinstance(plan, PassReason):
            return dataclasses.replace(plan, decision=decision)
        if isinstance(plan, Answer):
            return plan
        if as_of is not None:
            with history.reading_as_of(as_of):
                result = self._run(req, plan)
        else:
            result = self._run(req, plan)
        return dataclasses.replace(result, decision=decision) if isinstance(result, PassReason) else (result, decision)

    def _compiled(self, req: RpcRequest, state: ReadState, decision: Decision,
                  as_of: dt.datetime | None = None) -> Any | PassReason | Answer:
        tables = self.cache.tables
        key = None
        if req.method == "read":
            # Kept for identical requests: reads by callers who see everything, of the present
            # (see sgcache.api3.plans); the others are counted as compiled (key None).
            if as_of is None and decision.mode == "all":
                key = self.plans.key(req.method, req.args, state)
            plan = self.plans.get(key, tables)
            if plan is not None:
                if self.cache.prepared is not None:
                    plan.prepare()  # asked again: worth keeping parsed and planned (sgcache.store.prepared)
                return plan
        try:
            visibility = None
            if decision.mode == "visible_projects":
                visibility = self.policy.visibility(req.auth, decision.identity,
                                                    sorted(state.ready & set(tables.entities)))
            unsure = None
            if as_of is not None:
                with self.cache.read_engine.connect() as conn:
                    unsure = history.unsure_at(conn, tables, as_of)
            ctx = Context(tables, state, self.cache.read_engine.dialect.name, tz=self.tz,
                          visibility=visibility, as_of=as_of, unsure=unsure)
            plan = COMPILERS[req.method](ctx, req.args)
            if key is not None and not ctx.used_now:
                self.plans.put(key, tables, plan)
            return plan
        except Uncertain as u:
            return PassReason(u.reason, u.detail)
        except SiteUnavailable as e:
            return site_failed("cannot learn what you may see from the site", e)
        except sa.exc.SQLAlchemyError as e:
            return self._database_failed(e)
        except (OverflowError, RecursionError, ValueError) as e:
            # A request too large or too deep to compile (a huge number, 200 levels of nesting):
            # the site judges it.
            log.warning("event=compile_failed method=%s type=%s error=%r", loggable(req.method),
                        loggable(req.entity_type), type(e).__name__)
            return PassReason("unsupported_value", type(e).__name__)

    def _database_failed(self, error: sa.exc.SQLAlchemyError) -> PassReason:
        if connection_lost(error):
            self.cache.failed(error)
            return PassReason("database_down")
        return PassReason("query_error", first_line(error)[:120])

    def _run(self, req: RpcRequest, plan: Any) -> Any | PassReason:
        try:
            return self._on_cache(plan.run)
        except Uncertain as u:
            return PassReason(u.reason, u.detail)
        except sa.exc.DataError as e:
            # A value the database cannot hold (a number too large, say): the site judges it.
            return PassReason("unsupported_value", str(e.orig)[:120])
        except sa.exc.SQLAlchemyError as e:
            # One statement failed (timed out, too large, too deep): this request alone goes to the
            # site; the cache stays on for everyone else.
            if not connection_lost(e):
                log.warning("event=query_failed method=%s type=%s error=%r", loggable(req.method),
                            loggable(req.entity_type), first_line(e))
            return self._database_failed(e)
        except (OverflowError, RecursionError, MemoryError) as e:
            log.warning("event=query_failed method=%s type=%s error=%r", loggable(req.method),
                        loggable(req.entity_type), type(e).__name__)
            return PassReason("query_error", type(e).__name__)

    def _on_cache(self, work):
        """``work(conn)``; once more if the pooled connection had died (the database restarted
        since it was opened: a fresh one is used) or did not hold the prepared statements recorded
        for it (see sgcache.store.prepared)."""
        for attempt in (1, 2):
            try:
                with self.cache.read_engine.connect() as conn:
                    return work(conn)
            except sa.exc.DBAPIError as e:
                prepared = self.cache.prepared
                if attempt == 2 or not (e.connection_invalidated or (prepared is not None and prepared.retry(e))):
                    raise
        raise AssertionError("unreachable")

    def recompute(self, req: RpcRequest) -> Any:
        """The cached answer's results for this request now (None: it would not come from the cache)."""
        found = self.answer(req)
        return found[0] if isinstance(found, tuple) else None

    def trip_group(self, group: str, detail: dict) -> None:
        """Switch a permission group to passthrough in every proxy process (a failed shadow check)."""
        with self.cache.engine.begin() as conn:
            store_state.trip_group(conn, self.cache.tables.state, group, detail)
        with self._lock:
            self._state = None  # read the switch at once in this process
