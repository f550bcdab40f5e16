"""Dispatch of one JSON-RPC request: answer it here, or pass it to the site and relay the answer.

The order of decisions for every request:

1. a body that is not a JSON-RPC request gets a fault naming the problem;
2. ``info`` is answered from the site's own info (reused for ``site.info_ttl`` seconds), plus an
   ``sgcache`` key;
3. a request without credentials gets the authentication fault (error_code 102), and credentials
   the site rejected a moment ago get the site's own fault again;
4. a write (create, update, delete, revive, batch) goes to the site exactly once; when the site
   confirms it, the entities it touched are read again into the cache before the answer returns
   (:mod:`sgcache.api3.readback`);
5. reads, summaries and schema reads are answered from the cache when it can answer them exactly
   (:mod:`sgcache.api3.reads`);
6. everything else passes through: the body is sent as it came and the site's answer (status,
   headers, body, faults included) is relayed as it came.

The parts are built and wired in one place, :func:`sgcache.web.build_service`.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa

import sgcache
from sgcache.api3 import past, protocol, writes
from sgcache.api3.answers import Answer, PassReason, busy_answer, fault_answer, forwarded, json_answer
from sgcache.api3.auth import Verifier
from sgcache.api3.cache import CacheDatabase
from sgcache.api3.harvest import Harvest
from sgcache.api3.identity import SessionBook, claim
from sgcache.api3.protocol import AUTH_FAULT, Fault, RpcRequest
from sgcache.api3.readback import ReadBack
from sgcache.api3.reads import CacheReads
from sgcache.api3.shadow import ShadowChecker
from sgcache.api3.siteinfo import SiteInfo, SiteReplied
from sgcache.api3.thumbnails import FreshThumbnails
from sgcache.config import Config
from sgcache.logs import loggable
from sgcache.metrics import Metrics
from sgcache.query.site_schema import METHODS as SCHEMA_METHODS
from sgcache.store.readstate import ReadState
from sgcache.upstream import SiteBusy, SiteUnavailable, Upstream

log = logging.getLogger(__name__)

NO_CREDENTIALS = ("authentication required: send script_name and script_key, user_login and user_password, "
                  "or session_token (only info may be called without credentials)")

__all__ = ["Answer", "Service", "fault_answer"]


class Service:
    """The proxy's request handling; one per process, shared by its threads."""

    #: Seconds the proxy reuses what it read of the state tables (see CacheReads).
    STATE_TTL = CacheReads.STATE_TTL

    def __init__(self, config: Config, upstream: Upstream, cache: CacheDatabase | None, *, verifier: Verifier,
                 reads: CacheReads, readback: ReadBack, site_info: SiteInfo, shadow: ShadowChecker,
                 sessions: SessionBook | None, metrics: Metrics, harvest: Harvest | None = None,
                 thumbnails: FreshThumbnails | None = None):
        self.config = config
        self.upstream = upstream
        self.cache = cache
        self.verifier = verifier
        self.reads = reads
        self.policy = reads.policy
        self.readback = readback
        self.refresher = readback.refresher
        self.site_info = site_info
        self.sessions = sessions
        self.metrics = metrics
        self.shadow = shadow
        self.harvest = harvest
        self.thumbnails = thumbnails
        self._lock = threading.Lock()
        #: passthrough reason -> count, for status and metrics
        self.reasons: Counter[str] = Counter()
        self.cache_answers = 0
        #: called by close() (background threads that use the service)
        self.on_close: list[Callable[[], None]] = []
        log.info("event=auth_policy policy=%r", reads.policy.describe())

    def close(self) -> None:
        for stop in self.on_close:
            stop()
        self.readback.close()
        if self.harvest is not None:
            self.harvest.close()
        self.shadow.close()
        self.upstream.close()

    def read_state(self) -> ReadState:
        return self.reads.read_state()

    def trip_group(self, group: str, detail: dict) -> None:
        self.reads.trip_group(group, detail)

    # --- entry point -----------------------------------------------------------------------------

    def handle(self, body: bytes, headers: Mapping[str, str],
               as_of: dt.datetime | None = None) -> tuple[Answer, RpcRequest | None]:
        """Answer one RPC request; ``as_of``: a read of the past (sgcache.api3.past)."""
        try:
            req = protocol.parse(body)
        except Fault as fault:
            return fault_answer(fault, "bad request"), None
        if req.method == "info":
            return self.info(), req
        if not protocol.has_credentials(req.auth):
            return fault_answer(Fault(f"sgcache: {NO_CREDENTIALS}", AUTH_FAULT), "no credentials"), req
        rejected = self.verifier.remembered_fault(req.auth)
        if rejected is not None:
            return fault_answer(rejected, "credentials rejected a moment ago"), req
        if as_of is not None and req.method not in SCHEMA_METHODS:
            return self.from_history(req, as_of), req
        if req.method in writes.WRITE_METHODS:
            return self.write(req, headers), req
        if req.method in ("read", "summarize"):
            return self.from_tables(req, headers), req
        if req.method in SCHEMA_METHODS:
            return self._decided(req, headers, self.reads.schema(req, bool(headers.get("locale")))), req
        if req.method == "get_session_token":
            return self.session_token(req, headers), req
        return self.passthrough(req, headers), req

    # --- answers from the cache ------------------------------------------------------------------

    def from_tables(self, req: RpcRequest, headers: Mapping[str, str]) -> Answer:
        """A read or summarize from the cache when it can be answered exactly; else passed through."""
        found = self.reads.answer(req)
        if not isinstance(found, tuple):
            return self._decided(req, headers, found)
        result, decision = found
        if self.thumbnails is not None:
            result = self.thumbnails.fresh(req, result)
            if isinstance(result, PassReason):
                return self._passthrough_because(req, headers, result)
        answer = self._cached(result)
        answer.detail = f"group {decision.group} ({decision.mode})"
        self.shadow.sample(req, decision, result)
        return answer

    def from_history(self, req: RpcRequest, as_of: dt.datetime) -> Answer:
        """A read or summarize as the site would have answered at ``as_of``, or a fault saying
        why not (the past cannot be asked of the site)."""
        if req.method not in past.PAST_METHODS:
            return fault_answer(past.not_a_read(req.method, as_of), "as-of: not a read")
        found = self.reads.answer(req, as_of)
        if isinstance(found, Answer):
            return found
        if isinstance(found, PassReason):
            return fault_answer(past.refusal(req.method, as_of, found), f"as-of: {found.reason}")
        result, decision = found
        answer = self._cached(result)
        answer.detail = f"as of {past.iso(as_of)}, group {decision.group} ({decision.mode})"
        return answer

    def _cached(self, result: Any) -> Answer:
        with self._lock:
            self.cache_answers += 1
        return json_answer({"results": result}, "cache")

    def _decided(self, req: RpcRequest, headers: Mapping[str, str], found: Any) -> Answer:
        """The answer for what the cache found: a fault, a passthrough (counted), or the results."""
        if isinstance(found, Answer):
            return found
        if isinstance(found, PassReason):
            return self._passthrough_because(req, headers, found)
        return self._cached(found)

    def _passthrough_because(self, req: RpcRequest, headers: Mapping[str, str], why: PassReason) -> Answer:
        with self._lock:
            self.reasons[why.reason] += 1
        self.metrics.passthrough(why.reason)
        log.debug("event=passthrough method=%s type=%s reason=%s detail=%r", loggable(req.method),
                  loggable(req.entity_type), why.reason, why.detail)
        if self.harvest is not None and self.harvest.wanted(req, why.decision):
            # The site's answer is also a fresh copy of what it lists (sgcache.api3.harvest).
            as_of = self.readback.as_of()
            answer, reply = self._relay(req, headers)
            if reply is not None and answer.outcome == "passthrough":
                self.harvest.keep(req, reply.results, as_of)
            else:
                as_of.cancel()
        else:
            answer = self.passthrough(req, headers)
        answer.detail = f"passthrough: {why.reason}" + (f" ({why.detail})" if why.detail else "")
        return answer

    # --- passthrough -------------------------------------------------------------------------------

    def _relay(self, req: RpcRequest, headers: Mapping[str, str]) -> tuple[Answer, Any]:
        """Send the request as it came; return the answer to relay and the site's decoded fault."""
        try:
            reply = self.upstream.rpc(req.body, forwarded(headers), method=req.method)
        except SiteBusy as e:
            return busy_answer(e.message), None
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

    def write(self, req: RpcRequest, headers: Mapping[str, str]) -> Answer:
        if not self.readback.wanted(req):
            return self.passthrough(req, headers)
        # The newest event id before the entities are read back: every event up to it is older
        # than what the cache will hold, so the watcher must not apply it over the fresh rows.
        as_of = self.readback.as_of()
        answer, reply = self._relay(req, headers)
        if reply is None or reply.status != 200 or answer.outcome != "passthrough":
            as_of.cancel()
            return answer
        try:
            result = reply.json().get("results")
        except (ValueError, AttributeError):
            return answer
        answer.detail = self.readback.read_back(req.method, writes.touched(req.method, req.args, result), as_of)
        return answer

    # --- info --------------------------------------------------------------------------------------

    def info(self) -> Answer:
        try:
            payload, site_state, fetched = self.site_info.get()
        except Fault as fault:
            return fault_answer(fault, "site unavailable")
        except SiteReplied as relay:
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
            self.cache.is_usable()  # checks a failed database again when it is due
        database = self.cache.state_name if self.cache is not None else "none"
        return {
            "version": sgcache.__version__,
            "site": {"closed": "ok", "half-open": "recovering", "open": "unavailable"}[self.upstream.breaker.state],
            "database": database,
            "answers": "cache" if database == "ok" else "passthrough",
        }
