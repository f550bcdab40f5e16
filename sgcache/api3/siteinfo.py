"""The site's ``info`` answer, reused for ``site.info_ttl`` seconds and kept for when the site is down."""

from __future__ import annotations

import threading
import time
from typing import Any

from sgcache.api3.cache import CacheDatabase
from sgcache.api3.protocol import Fault
from sgcache.upstream import Reply, SiteUnavailable, Upstream


class SiteReplied(Exception):
    """There is no copy of the info to answer with: relay the site's own (failed) reply as it came."""

    def __init__(self, reply: Reply):
        super().__init__(f"HTTP {reply.status}")
        self.reply = reply


class SiteInfo:
    """The site's info payload: one thread asks the site when the copy is older than ``ttl``,
    the others use the copy meanwhile; the last good copy is saved in the cache database so that a
    restarted proxy can answer while the site is down."""

    def __init__(self, upstream: Upstream, cache: CacheDatabase | None, ttl: float, *, clock=time.monotonic):
        self.upstream = upstream
        self.cache = cache
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._held: tuple[float, Any] | None = None  # (fetched at, the site's payload)
        self._fetching = threading.Lock()

    def get(self) -> tuple[Any, str, bool]:
        """(the site's info payload, "ok" or why it is an old copy, whether it was fetched just now);
        raises Fault, or SiteReplied, when there is none."""
        with self._lock:
            held = self._held
        if held is not None and self.clock() - held[0] < self.ttl:
            return held[1], "ok", False
        # One thread asks the site; while it does, the others use the copy they have (or, with
        # no copy at all, wait for that one answer instead of each asking the site).
        if not self._fetching.acquire(blocking=held is None):
            return held[1], "ok", False
        try:
            with self._lock:
                latest = self._held
            if latest is not None and latest is not held and self.clock() - latest[0] < self.ttl:
                return latest[1], "ok", False
            return self._fetch(held)
        finally:
            self._fetching.release()

    def _fetch(self, held: tuple[float, Any] | None) -> tuple[Any, str, bool]:
        failed = None
        try:
            reply = self.upstream.call("info", [])
            if reply.status == 200 and reply.fault() is None:
                payload = reply.json()
                with self._lock:
                    self._held = (self.clock(), payload)
                if (held is None or held[1] != payload) and self.cache is not None:
                    self.cache.save_info(payload)
                return payload, "ok", True
            problem = f"the site answered info with HTTP {reply.status}"
            failed = reply
        except SiteUnavailable as e:
            problem = e.message
        except ValueError:
            problem = "the site's answer to info is not JSON"
        if held is None and self.cache is not None:
            saved = self.cache.saved_info()
            if saved is not None:
                with self._lock:
                    # Kept as if fetched long ago, so the next call asks the site again.
                    self._held = held = (float("-inf"), saved)
        if held is None:
            if failed is not None and failed.status != 200:
                raise SiteReplied(failed)  # nothing better to say than the site's own answer
            raise Fault(f"sgcache: {problem}, and sgcache has no earlier copy of the site's info")
        return held[1], problem, False
