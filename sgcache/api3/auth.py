"""Callers' credentials: checked against the site before any cached answer, and remembered briefly.

The site is the only judge of credentials, so sgcache asks it: a successful answer (to a
credential check or to any request passed through) is remembered for ``auth.verify_ttl``
seconds, a rejection (the site's error_code 102) for ``auth.failure_ttl`` seconds, so that a
flood of bad keys does not become a flood of calls to the site. The memory is keyed by an HMAC
of the whole credentials mapping (sudo_as_login and session_uuid included) under a random
per-process salt: no secret is kept, logged or written anywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from sgcache.api3.memory import Flights
from sgcache.api3.protocol import AUTH_FAULT, Fault
from sgcache.config import AuthConfig
from sgcache.upstream import SiteUnavailable, Upstream

#: Credentials remembered at most (the oldest are forgotten first).
MAX_ENTRIES = 10_000


@dataclass
class Verdict:
    ok: bool
    expires: float
    fault: dict | None = None


class Verifier:
    """Remembers what the site said about each set of credentials, for a short time."""

    def __init__(self, config: AuthConfig, upstream: Upstream | None, clock=time.monotonic):
        self.config = config
        self.upstream = upstream
        self.clock = clock
        self._salt = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._verdicts: OrderedDict[str, Verdict] = OrderedDict()
        self._flights: Flights[str, bool] = Flights()
        self.checks = 0  # calls made to the site to check credentials

    def key(self, auth: dict) -> str:
        canonical = json.dumps(auth, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")
        return hmac.new(self._salt, canonical, hashlib.sha256).hexdigest()

    def remembered(self, auth: dict) -> Verdict | None:
        """The verdict still in memory for these credentials, if any."""
        key = self.key(auth)
        with self._lock:
            verdict = self._verdicts.get(key)
            if verdict is None:
                return None
            if verdict.expires <= self.clock():
                del self._verdicts[key]
                return None
            return verdict

    def remember(self, auth: dict, ok: bool, fault: dict | None = None) -> None:
        ttl = self.config.verify_ttl if ok else self.config.failure_ttl
        if ttl <= 0:
            return
        key = self.key(auth)
        with self._lock:
            self._verdicts[key] = Verdict(ok, self.clock() + ttl, fault)
            self._verdicts.move_to_end(key)
            while len(self._verdicts) > MAX_ENTRIES:
                self._verdicts.popitem(last=False)

    def remembered_fault(self, auth: dict) -> Fault | None:
        """The site's own fault for credentials it rejected a moment ago."""
        verdict = self.remembered(auth)
        if verdict is None or verdict.ok:
            return None
        fault = verdict.fault or {}
        return Fault(str(fault.get("message") or "Authentication failed"), fault.get("error_code", AUTH_FAULT))

    def verify(self, auth: dict, entity_type: str) -> bool:
        """Are these credentials good (the site says so, now or a moment ago)?

        Raises the site's :class:`Fault` when it rejects them, and
        :class:`~sgcache.upstream.SiteUnavailable` when it cannot be asked and nothing is
        remembered. False means the site gave another answer: pass the request through.
        """
        verdict = self.remembered(auth)
        if verdict is not None:
            if verdict.ok:
                return True
            raise self.remembered_fault(auth)
        if self.upstream is None:
            return False
        return self._flights.run(self.key(auth), lambda: self._ask(auth, entity_type))

    def _ask(self, auth: dict, entity_type: str) -> bool:
        """verify's question to the site (one at a time per set of credentials)."""
        # The smallest request that needs the same rights as reading this type.
        self.checks += 1
        reply = self.upstream.call("read", [auth, {
            "type": entity_type, "return_fields": ["id"],
            "filters": {"logical_operator": "and", "conditions": [{"path": "id", "relation": "is", "values": [0]}]},
            "return_only": "active", "paging": {"entities_per_page": 1, "current_page": 1},
            "return_paging_info_without_counts": True}])
        if reply.status != 200:
            return False
        fault = reply.fault()
        if fault is None:
            try:
                reply.read_results()
            except ValueError:
                # HTTP 200 but not a read's answer (a login page, a proxy's error page): not a yes.
                return False
            self.remember(auth, True)
            return True
        if fault.get("error_code") == AUTH_FAULT:
            self.remember(auth, False, fault)
            raise Fault(str(fault.get("message") or "Authentication failed"), AUTH_FAULT)
        return False

    def forget_all(self) -> None:
        """Drop every remembered verdict (people or scripts changed on the site)."""
        with self._lock:
            self._verdicts.clear()

    def learn(self, auth: dict | None, reply, fault: dict | None) -> None:
        """Take note of what the site answered to a request passed through with these credentials:
        only a JSON answer with ``results`` counts as accepting them."""
        if not auth or reply.status != 200:
            return
        if fault is None:
            if _has_results(reply):
                self.remember(auth, True)
        elif fault.get("error_code") == AUTH_FAULT:
            self.remember(auth, False, fault)


def _has_results(reply) -> bool:
    body = reply.text().lstrip()
    if body.startswith(b'{"results"'):
        return True
    try:
        payload = json.loads(body)
    except ValueError:
        return False
    return isinstance(payload, dict) and "results" in payload


__all__ = ["Verifier", "Verdict", "SiteUnavailable"]
