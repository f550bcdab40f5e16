"""Dispatch of one JSON-RPC request: answer it here, or pass it to the site and relay the answer.

The order of decisions for every request:

1. a body that is not a JSON-RPC request gets a fault naming the problem;
2. ``info`` is answered from the site's own info (reused for ``site.info_ttl`` seconds), plus an
   ``sgcache`` key;
3. a request without credentials gets the authentication fault (error_code 102), and credentials
   the site rejected a moment ago get the site's own fault again;
4. a write (create, update, delete, revive, batch) goes to the site exactly once; when the site
   confirms it, the entities it touched are read again into the cache before the answer returns;
5. everything else passes through: the body is sent as it came and the site's answer (status,
   headers, body, faults included) is relayed as it came.
"""

from __future__ import annotations

import concurrent.futures
import copy
import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

import sgcache
from sgcache.api3 import protocol, writes
from sgcache.api3.auth import Verifier
from sgcache.api3.cache import CacheDatabase, connection_lost
from sgcache.api3.identity import IdentityBook, SessionBook, claim
from sgcache.api3.policy import Decision, Policy
from sgcache.api3.protocol import AUTH_FAULT, Fault, RpcRequest
from sgcache.api3.shadow import ShadowChecker
from sgcache.config import Config
from sgcache.errors import SgcacheError
from sgcache.logs import loggable
from sgcache.query import Uncertain
from sgcache.query.paths import Context
from sgcache.query.read import compile_read
from sgcache.query.site_schema import METHODS as SCHEMA_METHODS
from sgcache.query.site_schema import SiteSchema
from sgcache.query.summarize import compile_summarize
from sgcache.store.readstate import ReadState, load_state
from sgcache.sync.refresh import Refresher
from sgcache.upstream import FORWARDED_HEADERS, SiteBusy, SiteUnavailable, Upstream

log = logging.getLogger(__name__)

NO_CREDENTIALS = ("authentication required: send script_name and script_key, user_login and user_password, "
                  "or session_token (only info may be called without credentials)")


@dataclass
class Answer:
    """What goes back to the caller, and how it was decided (for the request log)."""

    status: int
    body: bytes
    outcome: str  # cache | passthrough | fault
    headers: list[tuple[str, str]] = field(default_factory=list)
    #: the body is relayed from the site as it came (possibly compressed already)
    relayed: bool = False
    detail: str = ""


def fault_answer(fault: Fault, detail: str = "") -> Answer:
    return Answer(200, protocol.dumps(fault.envelope()), "fault",
                  [("Content-Type", "application/json; charset=utf-8")], detail=detail)


def json_answer(payload: Any, outcome: str) -> Answer:
    return Answer(200, protocol.dumps(payload), outcome, [("Content-Type", "application/json; charset=utf-8")])


def forwarded(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in ((name, headers.get(name)) for name in FORWARDED_HEADERS) if v is not None}


def _first_line(error: BaseException) -> str:
    orig = getattr(error, "orig", None)
    text = str(orig if orig is not None else error).strip()
    return (text.splitlines() or [type(error).__name__])[0]


@dataclass(frozen=True)
class _Pass:
    """Why a request is passed through instead of answered from the cache."""

    reason: str
    detail: str = ""


class _Relay(Exception):
    """Answer with the site's own reply as it came."""

    def __init__(self, reply: Any):
        self.reply = reply


class Service:
    """The proxy's request handling; one per process, shared by its threads."""

    def __init__(self, config: Config, upstream: Upstream, cache: CacheDatabase | None,
                 refresher: Refresher | None, *, clock=time.monotonic):
        self.config = config
        self.upstream = upstream
        self.cache = cache
        self.refresher = refresher
        self.verifier = Verifier(config.auth, upstream)
        self.clock = clock
        site = config.site
        own_auth = {"script_name": site.script_name, "script_key": site.api_key.reveal() if site.api_key else ""}
        self.sessions = SessionBook(cache.engine, cache.tables.state) if cache is not None else None
        self.identities = IdentityBook(upstream, own_auth, self.sessions, config.auth.verify_ttl, clock=clock)
        self.policy = Policy(config.auth, self.identities, upstream, cache.tables if cache else None,
                             site.script_name or "", clock=clock)
        self._auth_epoch: str | None = None
        log.info("event=auth_policy policy=%r", self.policy.describe())
        self.shadow = ShadowChecker(config.auth, upstream, recompute=self._recompute, trip=self.trip_group,
                                    on_result=self._shadow_result)
        self._info_lock = threading.Lock()
        self._info: tuple[float, Any] | None = None  # (fetched at, the site's payload)
        self._info_fetch = threading.Lock()
        self.tz = ZoneInfo(config.site.timezone)
        self._state_lock = threading.Lock()
        self._state: tuple[float, ReadState] | None = None
        #: passthrough reason -> count, for status and metrics
        self.reasons: Counter[str] = Counter()
        #: Prometheus counters (sgcache.metrics.Metrics), set by the web app
        self.metrics = None
        #: called by close() (the web app's background threads)
        self.on_close: list = []
        self.cache_answers = 0
        self.site_schema = SiteSchema(cache.engine, cache.tables, self._fetch_site_schema) if cache else None
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=config.web.threads,
                                                           thread_name_prefix="sgcache-asof")

    def close(self) -> None:
        for stop in self.on_close:
            stop()
        self._pool.shutdown(wait=False)
        self.shadow.close()
        self.upstream.close()

    # --- entry point -----------------------------------------------------------------------------

    def handle(self, body: bytes, headers: Mapping[str, str]) -> tuple[Answer, RpcRequest | None]:
        try:
            req = protocol.parse(body)
        except Fault as fault:
            return fault_answer(fault, "bad request"), None
        if req.method == "info":
            return self.info(headers), req
        if not protocol.has_credentials(req.auth):
            return fault_answer(Fault(f"sgcache: {NO_CREDENTIALS}", AUTH_FAULT), "no credentials"), req
        rejected = self.verifier.remembered_fault(req.auth)
        if rejected is not None:
            return fault_answer(rejected, "credentials rejected a moment ago"), req
        if req.method in writes.WRITE_METHODS:
            return self.write(req, headers), req
        if req.method == "read":
            return self.read(req, headers), req
        if req.method == "summarize":
            return self.summarize(req, headers), req
        if req.method in SCHEMA_METHODS:
            return self.schema(req, headers), req
        if req.method == "get_session_token":
            return self.session_token(req, headers), req
        return self.passthrough(req, headers), req

    # --- answers from the cache ------------------------------------------------------------------

    #: Seconds the proxy reuses what it read of the state tables (imported types, backfill marks).
    STATE_TTL = 0.5

    def read_state(self) -> ReadState:
        with self._state_lock:
            held = self._state
        if held is not None and self.clock() - held[0] < self.STATE_TTL:
            return held[1]
        with self.cache.read_engine.connect() as conn:  # the state of the data the reads will see
            state = load_state(conn, self.cache.tables)
        with self._state_lock:
            self._state = (self.clock(), state)
            changed = self._auth_epoch is not None and state.auth_epoch != self._auth_epoch
            self._auth_epoch = state.auth_epoch
        if changed:
            # People, scripts, projects or permission groups changed on the site.
            self.verifier.forget_all()
            self.identities.forget_all()
            self.policy.forget_all()
            log.info("event=auth_memory_dropped why=%r", state.auth_epoch.partition(" ")[2])
        return state

    def _passthrough_because(self, req: RpcRequest, headers: Mapping[str, str], reason: str,
                             detail: str = "") -> Answer:
        with self._state_lock:
            self.reasons[reason] += 1
        if self.metrics is not None:
            self.metrics.passthrough(reason)
        log.debug("event=passthrough method=%s type=%s reason=%s detail=%r", loggable(req.method),
                  loggable(req.entity_type), reason, detail)
        answer = self.passthrough(req, headers)
        answer.detail = f"passthrough: {reason}" + (f" ({detail})" if detail else "")
        return answer

    def _fetch_site_schema(self) -> tuple[dict, dict]:
        """The site's schema_read and schema_entity_read answers, asked as sgcache's own script."""
        site = self.config.site
        auth = {"script_name": site.script_name, "script_key": site.api_key.reveal() if site.api_key else ""}
        answers = []
        for method in ("schema_read", "schema_entity_read"):
            try:
                reply = self.upstream.call(method, [auth])
                payload = reply.json() if reply.status == 200 else None
            except (SiteUnavailable, ValueError):
                payload = None
            if not isinstance(payload, dict) or not isinstance(payload.get("results"), dict):
                raise Uncertain("site_schema_unavailable", method)
            answers.append(payload["results"])
        return answers[0], answers[1]

    def _cache_unusable(self) -> str | None:
        """The passthrough reason when the cache database cannot be used now, else None."""
        if self.cache is None or not self.cache.usable:
            return "database_down"
        return None

    def _verified(self, req: RpcRequest, entity_type: str) -> _Pass | Answer | None:
        """None when the site accepts the caller's credentials; else a fault to answer with, or
        why the request passes through (the site could not say)."""
        try:
            if self.verifier.verify(req.auth, entity_type):
                return None
        except Fault as fault:
            return fault_answer(fault, "credentials rejected")
        except SiteUnavailable as e:
            return fault_answer(Fault(f"sgcache: cannot check your credentials: {e.message}"), "site unavailable")
        return _Pass("credentials_not_verified")

    def _decided(self, req: RpcRequest, state: ReadState) -> Decision | Answer:
        """What this (verified) caller may get from the cache, or the answer to give instead."""
        try:
            return self.policy.decide(req.auth, state.tripped)
        except SiteUnavailable as e:
            return fault_answer(Fault(f"sgcache: cannot learn who you are from the site: {e.message}"),
                                "site unavailable")

    def schema(self, req: RpcRequest, headers: Mapping[str, str]) -> Answer:
        """schema_read / schema_entity_read / schema_field_read from the copy of the site's schema."""
        why = self._cache_unusable()
        if why:
            return self._passthrough_because(req, headers, why)
        if headers.get("locale"):
            return self._passthrough_because(req, headers, "localized")
        try:
            state = self.read_state()
        except sa.exc.SQLAlchemyError as e:
            self.cache.failed(e)
            return self._passthrough_because(req, headers, "database_down")
        refused = self._verified(req, "Project")
        if isinstance(refused, _Pass):
            return self._passthrough_because(req, headers, refused.reason)
        if refused is not None:
            return refused
        decision = self._decided(req, state)
        if isinstance(decision, Answer):
            return decision
        if decision.mode == "passthrough":
            # Schemas are the same for every group on the site, but deny by default all the same.
            return self._passthrough_because(req, headers, decision.reason)
        try:
            result = self.site_schema.answer(req.method, req.args)
        except Uncertain as u:
            return self._passthrough_because(req, headers, u.reason, u.detail)
        except sa.exc.SQLAlchemyError as e:
            self.cache.failed(e)
            return self._passthrough_because(req, headers, "database_down")
        with self._state_lock:
            self.cache_answers += 1
        return json_answer({"results": result}, "cache")

    def read(self, req: RpcRequest, headers: Mapping[str, str]) -> Answer:
        """Answer a read from the cache when it can be answered exactly; else pass it through."""
        return self._from_tables(req, headers, compile_read)

    def summarize(self, req: RpcRequest, headers: Mapping[str, str]) -> Answer:
        return self._from_tables(req, headers, compile_summarize)

    def _run_on_cache(self, work):
        """``work(conn)``; once more on a fresh connection if the pooled one had died (the
        database restarted since it was opened)."""
        for attempt in (1, 2):
            try:
                with self.cache.read_engine.connect() as conn:
                    return work(conn)
            except sa.exc.DBAPIError as e:
                if attempt == 2 or not e.connection_invalidated:
                    raise
        raise AssertionError("unreachable")

    def _from_tables(self, req: RpcRequest, headers: Mapping[str, str], compile_request) -> Answer:
        found = self._table_answer(req, compile_request)
        if isinstance(found, Answer):
            return found
        if isinstance(found, _Pass):
            return self._passthrough_because(req, headers, found.reason, found.detail)
        result, decision = found
        with self._state_lock:
            self.cache_answers += 1
        answer = json_answer({"results": result}, "cache")
        answer.detail = f"group {decision.group} ({decision.mode})"
        self.shadow.sample(req, decision, result)
        return answer

    def _table_answer(self, req: RpcRequest, compile_request) -> tuple[Any, Decision] | _Pass | Answer:
        """(results, the caller's decision) from the cache tables; else why not (passthrough), or a
        fault to answer with."""
        why = self._cache_unusable()
        if why:
            return _Pass(why)
        entity_type = req.entity_type
        if entity_type is None or entity_type not in self.cache.tables:
            return _Pass("uncached_type", str(entity_type)[:80])
        try:
            state = self.read_state()
        except sa.exc.SQLAlchemyError as e:
            self.cache.failed(e)
            return _Pass("database_down")
        if entity_type not in state.ready:  # cheap, and the site need not be asked who is calling
            return _Pass("type_rebuilding" if entity_type in state.rebuilding else "type_not_imported", entity_type)
        # Who is asking comes first: nothing is compiled or learned for credentials the site refuses.
        refused = self._verified(req, entity_type)
        if refused is not None:
            return refused
        decision = self._decided(req, state)
        if isinstance(decision, Answer):
            return decision
        if decision.mode == "passthrough":
            return _Pass(decision.reason)
        visibility = None
        try:
            if decision.mode == "visible_projects":
                visibility = self.policy.visibility(req.auth, decision.identity,
                                                    sorted(state.ready & set(self.cache.tables.entities)))
            ctx = Context(self.cache.tables, state, self.cache.read_engine.dialect.name, tz=self.tz,
                          visibility=visibility)
            plan = compile_request(ctx, req.args)
        except Uncertain as u:
            return _Pass(u.reason, u.detail)
        except SiteUnavailable as e:
            return fault_answer(Fault(f"sgcache: cannot learn what you may see from the site: {e.message}"),
                                "site unavailable")
        except sa.exc.SQLAlchemyError as e:
            if connection_lost(e):
                self.cache.failed(e)
                return _Pass("database_down")
            return _Pass("query_error", _first_line(e)[:120])
        except (OverflowError, RecursionError, ValueError) as e:
            # A request too large or too deep to compile (a huge number, 200 levels of nesting):
            # the site judges it.
            log.warning("event=compile_failed method=%s type=%s error=%r", loggable(req.method),
                        loggable(req.entity_type), type(e).__name__)
            return _Pass("unsupported_value", type(e).__name__)
        try:
            return self._run_on_cache(plan.run), decision
        except Uncertain as u:
            return _Pass(u.reason, u.detail)
        except sa.exc.DataError as e:
            # A value the database cannot hold (a number too large, say): the site judges it.
            return _Pass("unsupported_value", str(e.orig)[:120])
        except sa.exc.SQLAlchemyError as e:
            if connection_lost(e):
                self.cache.failed(e)
                return _Pass("database_down")
            # One statement failed (timed out, too large, too deep): this request alone goes to the
            # site; the cache stays on for everyone else.
            log.warning("event=query_failed method=%s type=%s error=%r", loggable(req.method),
                        loggable(req.entity_type), _first_line(e))
            return _Pass("query_error", _first_line(e)[:120])
        except (OverflowError, RecursionError, MemoryError) as e:
            log.warning("event=query_failed method=%s type=%s error=%r", loggable(req.method),
                        loggable(req.entity_type), type(e).__name__)
            return _Pass("query_error", type(e).__name__)

    def _recompute(self, req: RpcRequest) -> Any:
        """The cached answer's results for this request now (None: it would not come from the cache)."""
        found = self._table_answer(req, compile_read if req.method == "read" else compile_summarize)
        return found[0] if isinstance(found, tuple) else None

    def _shadow_result(self, group: str, result: str) -> None:
        if self.metrics is not None:
            self.metrics.shadow(group, result)

    def trip_group(self, group: str, detail: dict) -> None:
        """Switch a permission group to passthrough in every proxy process (a failed shadow check)."""
        from sgcache.store import state as store_state

        with self.cache.engine.begin() as conn:
            store_state.trip_group(conn, self.cache.tables.state, group, detail)
        with self._state_lock:
            self._state = None  # read the switch at once in this process

    # --- passthrough -------------------------------------------------------------------------------

    def _relay(self, req: RpcRequest, headers: Mapping[str, str]) -> tuple[Answer, Any]:
        """Send the request as it came; return the answer to relay and the site's decoded fault."""
        try:
            reply = self.upstream.rpc(req.body, forwarded(headers), method=req.method)
        except SiteBusy as e:
            # As a busy site answers: shotgun_api3 reports a 503 as the site being too busy.
            return Answer(503, f"sgcache: {e.message}; try again shortly\n".encode(), "fault",
                          [("Content-Type", "text/plain; charset=utf-8"), ("Retry-After", "1")],
                          detail="site busy"), None
        except SiteUnavailable as e:
            message = f"sgcache: {e.message}"
            if e.maybe_applied and req.method not in ("read",):
                message += (f"; the {req.method} request may or may not have reached the site: check before "
                            "sending it again")
            return fault_answer(Fault(message), "site unavailable"), None
        fault = reply.fault()
        self.verifier.learn(req.auth, reply, fault)
        outcome = "fault" if fault is not None or reply.status != 200 else "passthrough"
        answer = Answer(reply.status, reply.raw, outcome, reply.headers, relayed=True)
        if fault is not None:
            answer.detail = "site fault"
        return answer, reply

    def passthrough(self, req: RpcRequest, headers: Mapping[str, str]) -> Answer:
        return self._relay(req, headers)[0]

    def session_token(self, req: RpcRequest, headers: Mapping[str, str]) -> Answer:
        """get_session_token passes through; a token the site mints is remembered as its owner's, so
        that later calls with it have a known identity."""
        answer, reply = self._relay(req, headers)
        if reply is None or answer.outcome != "passthrough" or self.sessions is None:
            return answer
        try:
            token = (reply.json().get("results") or {}).get("session_id")
        except (ValueError, AttributeError):
            return answer
        owner = claim(req.auth)
        try:
            if owner is not None and owner.kind == "session":
                owner = self.sessions.owner(owner.name)
            if isinstance(token, str) and owner is not None:
                self.sessions.record(token, owner)
        except sa.exc.SQLAlchemyError as e:
            log.warning("event=session_not_recorded error=%r", type(e).__name__)
        return answer

    # --- writes --------------------------------------------------------------------------------------

    def _cache_ready(self) -> bool:
        return self.cache is not None and self.refresher is not None and self.cache.usable

    def _writes_cached_type(self, req: RpcRequest) -> bool:
        if self.cache is None:
            return False
        if req.method == "batch":
            items = req.args if isinstance(req.args, list) else []
            return any(isinstance(i, dict) and isinstance(i.get("type"), str) and i["type"] in self.cache.tables
                       for i in items)
        return req.entity_type is not None and req.entity_type in self.cache.tables

    def write(self, req: RpcRequest, headers: Mapping[str, str]) -> Answer:
        if not (self._writes_cached_type(req) and self._cache_ready()):
            return self.passthrough(req, headers)
        # The newest event id before the entities are read back: every event up to it is older
        # than what the cache will hold, so the watcher must not apply it over the fresh rows.
        as_of = self._pool.submit(self.refresher.newest_event_id)
        answer, reply = self._relay(req, headers)
        if reply is None or reply.status != 200 or answer.outcome != "passthrough":
            as_of.cancel()
            return answer
        try:
            result = reply.json().get("results")
        except (ValueError, AttributeError):
            return answer
        answer.detail = self.read_back(req.method, writes.touched(req.method, req.args, result), as_of)
        return answer

    def before_write(self) -> concurrent.futures.Future | None:
        """Start asking the newest event id before a write is sent (None: nothing will be read back).

        Every event up to it is older than what the read-back will hold, so the watcher must
        not apply it over the fresh rows."""
        if not self._cache_ready():
            return None
        return self._pool.submit(self.refresher.newest_event_id)

    def read_back(self, what: str, targets: dict[str, set[int]], as_of: concurrent.futures.Future | None) -> str:
        """After the site confirmed a write (or an upload), read what it touched into the cache
        before the caller's answer goes back; say what happened (for the request log)."""
        if as_of is None or not any(t in self.cache.tables for t in targets):
            return "not cached (type not held)"
        try:
            newest = as_of.result(timeout=self.config.site.timeout)
        except Exception as e:  # the write stands; the rows just go in without an event stamp
            log.warning("event=write_as_of_failed method=%s error=%r", loggable(what), f"{type(e).__name__}: {e}")
            newest = None
        try:
            written = self.refresher.refresh(targets, newest)
        except sa.exc.SQLAlchemyError as e:
            self.cache.failed(e)
            return "written on the site; not cached (database down)"
        except SgcacheError as e:
            log.warning("event=write_not_cached method=%s error=%r hint='the watcher will bring it'",
                        loggable(what), str(e))
            return "written on the site; not cached (site read failed)"
        except Exception:
            # The site applied the write: whatever went wrong here, the caller gets the site's answer.
            log.exception("event=write_not_cached method=%s hint='the watcher will bring it'", loggable(what))
            return "written on the site; not cached (internal error)"
        return f"cached {written}"

    # --- info --------------------------------------------------------------------------------------

    def _site_info(self) -> tuple[Any, str, bool]:
        """(the site's info payload, "ok" or why it is an old copy, whether it was fetched just now);
        raises Fault when there is none."""
        with self._info_lock:
            cached = self._info
        if cached is not None and self.clock() - cached[0] < self.config.site.info_ttl:
            return cached[1], "ok", False
        # One thread asks the site; while it does, the others use the copy they have (or, with
        # no copy at all, wait for that one answer instead of each asking the site).
        if not self._info_fetch.acquire(blocking=cached is None):
            return cached[1], "ok", False
        try:
            with self._info_lock:
                latest = self._info
            if latest is not None and latest is not cached and self.clock() - latest[0] < self.config.site.info_ttl:
                return latest[1], "ok", False
            return self._fetch_info(cached)
        finally:
            self._info_fetch.release()

    def _fetch_info(self, cached: tuple[float, Any] | None) -> tuple[Any, str, bool]:
        problem = None
        failed = None
        try:
            reply = self.upstream.call("info", [])
            if reply.status == 200 and reply.fault() is None:
                payload = reply.json()
                with self._info_lock:
                    self._info = (self.clock(), payload)
                if cached is None or cached[1] != payload:
                    if self.cache is not None:
                        self.cache.save_info(payload)
                return payload, "ok", True
            problem = f"the site answered info with HTTP {reply.status}"
            failed = reply
        except SiteUnavailable as e:
            problem = e.message
        except ValueError:
            problem = "the site's answer to info is not JSON"
        if cached is None and self.cache is not None:
            saved = self.cache.saved_info()
            if saved is not None:
                with self._info_lock:
                    # Kept as if fetched long ago, so the next call asks the site again.
                    self._info = cached = (float("-inf"), saved)
        if cached is None:
            if failed is not None and failed.status != 200:
                raise _Relay(failed)  # nothing better to say than the site's own answer
            raise Fault(f"sgcache: {problem}, and sgcache has no earlier copy of the site's info")
        return cached[1], problem or "unknown", False

    def info(self, headers: Mapping[str, str]) -> Answer:
        try:
            payload, site_state, fetched = self._site_info()
        except Fault as fault:
            return fault_answer(fault, "site unavailable")
        except _Relay as relay:
            return Answer(relay.reply.status, relay.reply.raw, "fault", relay.reply.headers, relayed=True,
                          detail="site unavailable")
        payload = copy.deepcopy(payload)
        body = payload["results"] if isinstance(payload, dict) and isinstance(payload.get("results"), dict) \
            else payload
        if isinstance(body, dict):
            body["sgcache"] = self.status()
            if site_state != "ok":
                body["sgcache"]["site_problem"] = site_state
        return json_answer(payload, "passthrough" if fetched else "cache")

    def status(self) -> dict:
        """The proxy's own state, as shown in ``info``."""
        if self.cache is not None:
            self.cache.usable  # noqa: B018 - checks a failed database again when it is due
        database = self.cache.state_name if self.cache is not None else "none"
        out = {
            "version": sgcache.__version__,
            "site": {"closed": "ok", "half-open": "recovering", "open": "unavailable"}[self.upstream.breaker.state],
            "database": database,
            "answers": "cache" if database == "ok" else "passthrough",
        }
        return out
