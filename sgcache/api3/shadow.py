"""Shadow checks: proof, in production, that cached answers are what the site shows each caller.

For a sample of the answers given from the cache (``auth.shadow_rate``, at most
``auth.shadow_per_minute`` a process), the same request is sent to the site, as the caller and in
the background, and the two results compared. A difference may be a change in flight (the site
changed, the watcher has not applied it yet), so both are asked again after
:data:`RECHECK_DELAY` seconds; a difference that holds is a policy the site does not share: it
is logged (method, type, group; never values), counted, and the caller's permission group is
switched to passthrough in the cache database, for every proxy process, until an operator clears
it (``sgcache auth clear``).
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import json
import logging
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from sgcache import wire
from sgcache.api3.policy import Decision
from sgcache.api3.protocol import RpcRequest
from sgcache.config import AuthConfig
from sgcache.logs import loggable
from sgcache.upstream import SiteUnavailable, Upstream

log = logging.getLogger(__name__)

#: Seconds between a first difference and asking both sides again.
RECHECK_DELAY = 2.0
#: Checks waiting at most; more are skipped (a check never holds a request).
MAX_PENDING = 8


#: Query parameters of signed storage URLs (thumbnails): the site signs each read afresh.
_SIGNING = re.compile(r"[?&](Signature|X-Amz-Signature|Expires|X-Amz-Expires|X-Amz-Date)=")


def _unsigned(value: Any) -> Any:
    """The value with the signing of its signed URLs left out (the rest compared as it is)."""
    if isinstance(value, str):
        return value.split("?", 1)[0] if _SIGNING.search(value) else value
    if isinstance(value, list):
        return [_unsigned(v) for v in value]
    if isinstance(value, dict):
        return {k: _unsigned(v) for k, v in value.items()}
    return value


def same_results(ours: Any, theirs: Any) -> bool:
    """Do the two results say the same (as JSON values)? A signed URL (a thumbnail) is the same
    URL whenever it was signed: a hosted site signs it afresh at each read."""
    return (json.dumps(_unsigned(ours), sort_keys=True, default=str)
            == json.dumps(_unsigned(theirs), sort_keys=True, default=str))


class ShadowChecker:
    """Samples cached answers and checks them against the site (see the module docstring)."""

    def __init__(self, config: AuthConfig, upstream: Upstream, *, recompute: Callable[[RpcRequest], Any],
                 trip: Callable[[str, dict], None], on_result: Callable[[str, str], None] | None = None,
                 rng: random.Random | None = None,
                 clock=time.monotonic, sleep=time.sleep, recheck_delay: float = RECHECK_DELAY):
        self.config = config
        self.upstream = upstream
        self.recompute = recompute
        self.trip = trip
        self.on_result = on_result
        self.rng = rng or random.Random()
        self.clock = clock
        self.sleep = sleep
        self.recheck_delay = recheck_delay
        self._lock = threading.Lock()
        self._window: tuple[float, int] = (clock(), 0)  # (minute started, checks in it)
        self._pending = 0
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="sgcache-shadow")
        #: (group, result) -> count, for the status page
        self.counts: Counter[tuple[str, str]] = Counter()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _admit(self) -> bool:
        if self.config.shadow_rate <= 0 or self.config.shadow_per_minute <= 0:
            return False
        if self.rng.random() >= self.config.shadow_rate:
            return False
        now = self.clock()
        with self._lock:
            started, used = self._window
            if now - started >= 60:
                started, used = now, 0
            if used >= self.config.shadow_per_minute or self._pending >= MAX_PENDING:
                self._window = (started, used)
                return False
            self._window = (started, used + 1)
            self._pending += 1
            return True

    def sample(self, req: RpcRequest, decision: Decision, result: Any) -> concurrent.futures.Future | None:
        """Maybe check this cached answer in the background; the future is for tests."""
        if not self._admit():
            return None
        return self._pool.submit(self._run, req, decision, result)

    def _run(self, req: RpcRequest, decision: Decision, result: Any) -> str:
        try:
            return self.check(req, decision, result)
        except Exception:  # a check must never take anything else down
            log.exception("event=shadow_check_failed method=%s type=%s", loggable(req.method),
                          loggable(req.entity_type))
            return "failed"
        finally:
            with self._lock:
                self._pending -= 1

    def _site_result(self, req: RpcRequest) -> tuple[bool, Any]:
        """(answered, results) of the same request sent to the site as the caller."""
        try:
            reply = self.upstream.rpc(req.body, {"content-type": "application/json; charset=utf-8"},
                                      method=req.method)
        except SiteUnavailable:
            return False, None
        try:
            return True, reply.results()
        except ValueError:
            return False, None

    def check(self, req: RpcRequest, decision: Decision, ours: Any) -> str:
        """same | different | failed: compare one cached answer with the site's, now and again."""
        group = decision.group
        answered, theirs = self._site_result(req)
        if answered and not same_results(ours, theirs):
            self.sleep(self.recheck_delay)  # maybe a change in flight: ask both sides again
            ours = self.recompute(req)
            answered, theirs = self._site_result(req)
            if ours is None:
                answered = False  # no longer answered from the cache: nothing to compare
        if not answered:
            result = "failed"
        elif same_results(ours, theirs):
            result = "same"
        else:
            result = "different"
        if result == "different":
            who = decision.identity.label if decision.identity is not None else "-"
            log.error("event=shadow_mismatch group=%s mode=%s method=%s type=%s caller=%s action='group switched "
                      "to passthrough; fix auth.groups, then sgcache auth clear %s'", loggable(group), decision.mode,
                      loggable(req.method), loggable(req.entity_type), loggable(who), loggable(group))
            self.trip(group, {"method": req.method, "type": req.entity_type, "mode": decision.mode,
                              "at": wire.format_datetime(dt.datetime.now(dt.UTC))})
        # Counted once the group is switched off, so whoever sees the count sees the switch too.
        with self._lock:
            self.counts[(group, result)] += 1
        if self.on_result is not None:
            self.on_result(group, result)
        return result

    def stats(self) -> dict:
        with self._lock:
            out: dict[str, dict[str, int]] = {}
            for (group, result), n in self.counts.items():
                out.setdefault(group, {})[result] = n
            return out
