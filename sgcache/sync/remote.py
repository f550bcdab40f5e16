"""What the scanner and watcher ask of the site, through shotgun_api3, with timeouts and retries."""

from __future__ import annotations

import email.utils
import http.client
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import shotgun_api3
from shotgun_api3.shotgun import _translate_filters

from sgcache.config import SiteConfig
from sgcache.errors import SgcacheError, SiteFailure

log = logging.getLogger(__name__)
T = TypeVar("T")

# Failures worth another try: the site or the network, not the request.
TRANSIENT = (shotgun_api3.ProtocolError, OSError, socket.timeout, http.client.HTTPException, TimeoutError)


class SiteError(SiteFailure):
    """The site could not be reached (after retries) or refused our credentials: nothing can
    proceed until it is back, so the watcher pauses instead of skipping anything."""


class Stopped(SiteError):
    """The process was asked to stop (SIGTERM, Ctrl-C) while it waited on the site: nothing was
    skipped, the work at hand is left undone and done again at the next start."""


def wait(stop: threading.Event | None, seconds: float, what: str) -> None:
    """Sleep ``seconds``, or raise Stopped as soon as ``stop`` is set (when there is one)."""
    if stop is None:
        time.sleep(seconds)
    elif stop.wait(seconds):
        raise Stopped(f"{what}: stopping")


class SiteRefused(SgcacheError):
    """The site answered this one request with a Fault: a problem of the request, not an outage
    (the watcher retries it, then records it as a dead letter and goes on)."""


class RateLimit:
    """At most ``per_second`` requests a second, evenly spaced: :meth:`wait` sleeps until the
    next slot is due. Shared by the Remotes of one process's threads (see Remote.sibling): each
    thread takes the next free slot."""

    def __init__(self, per_second: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.interval = 1.0 / per_second
        self.clock = clock
        self.sleep = sleep
        self.next_at: float | None = None
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = self.clock()
            slot = now if self.next_at is None or now >= self.next_at else self.next_at
            self.next_at = slot + self.interval
        if slot > now:
            self.sleep(slot - now)


#: HTTP statuses of a site asking its callers to slow down (a 503 only with a Retry-After).
THROTTLED = (429, 503)
#: Longest pause a Retry-After header is followed for, in seconds (a longer one is cut to this).
MAX_RETRY_AFTER = 300.0
#: Longest a single call waits on a throttling site, over all its pauses, before it fails.
MAX_THROTTLED = 1800.0


def retry_after(headers: Any, *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds a ``Retry-After`` header asks for (a number of seconds, or an HTTP date), at most
    MAX_RETRY_AFTER; None when there is none or it cannot be read."""
    if not isinstance(headers, dict):
        return None
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        try:
            seconds = email.utils.parsedate_to_datetime(str(value)).timestamp() - now()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


class Throttle:
    """A pause every connection of one sync process respects: when the site throttles one of
    them (429, or 503, with its Retry-After), all of them wait it out instead of each being
    refused in turn. Thread-safe."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._lock = threading.Lock()
        self._until = 0.0
        self.pauses = 0  # how many times the site asked to wait (tests, logs)

    def hold(self, seconds: float) -> None:
        with self._lock:
            self._until = max(self._until, self.clock() + seconds)
            self.pauses += 1

    def remaining(self) -> float:
        with self._lock:
            return max(0.0, self._until - self.clock())


class Remote:
    """The site, as the sync engine sees it. ``rate`` caps the requests per second (each try
    of a retried request counts). Once ``stop`` (an Event) is set, a call between tries, or about
    to start one, raises Stopped instead of waiting out its pauses.

    A site that throttles (HTTP 429, or 503 with a ``Retry-After``) is waited out as that header
    asks (else with growing pauses); such answers do not use up the call's tries, but one
    call waits MAX_THROTTLED seconds at most. ``throttle`` is shared with :meth:`sibling` Remotes,
    so one connection told to wait makes them all wait."""

    def __init__(self, site: SiteConfig, *, attempts: int = 5, backoff: float = 0.5, sg: Any = None,
                 rate: float | RateLimit | None = None, stop: threading.Event | None = None,
                 throttle: Throttle | None = None):
        self.site = site
        self.attempts = attempts
        self.backoff = backoff
        self._sg = sg
        #: a client handed in (tests): it is the only one; else each thread may make its own Remote
        self.given_client = sg is not None
        self.rate_limit = rate if isinstance(rate, RateLimit) else RateLimit(rate) if rate else None
        self.stop = stop
        self.throttle = throttle or Throttle()

    def sibling(self) -> Remote:
        """Another Remote to the same site, for another thread (shotgun_api3's client holds one
        connection), sharing this one's throttle, rate limit and stop."""
        return Remote(self.site, attempts=self.attempts, backoff=self.backoff, stop=self.stop, throttle=self.throttle,
                      rate=self.rate_limit)

    @property
    def sg(self) -> shotgun_api3.Shotgun:
        if self._sg is None:
            self._sg = shotgun_api3.Shotgun(
                self.site.base_url, script_name=self.site.script_name,
                api_key=self.site.api_key.reveal() if self.site.api_key else None, connect=False)
            self._sg.config.timeout_secs = self.site.timeout
        return self._sg

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` against the site, retrying transient failures with growing pauses."""
        attempt = 0
        throttled = 0.0
        while True:
            if self.stop is not None and self.stop.is_set():
                raise Stopped(f"{what}: stopping")
            held = self.throttle.remaining()
            if held:
                wait(self.stop, held, what)
            if self.rate_limit is not None:
                self.rate_limit.wait()
            attempt += 1
            try:
                return fn()
            except shotgun_api3.AuthenticationFault:
                raise SiteError(f"the site refused script {self.site.script_name!r} "
                                "(check site.script_name and site.api_key)") from None
            except shotgun_api3.Fault as e:
                raise SiteRefused(f"{what}: the site answered: {e}") from None
            except TRANSIENT as e:
                error = f"{type(e).__name__}: {e}"
                code = getattr(e, "errcode", None)
                asked = retry_after(getattr(e, "headers", None)) if code in THROTTLED else None
                # 429, or 503 with a Retry-After: throttled. A bare 503 is the site down: a failed try.
                if (code == 429 or asked is not None) and throttled < MAX_THROTTLED:
                    # The site asks to slow down: not a failed try, and every connection waits.
                    attempt -= 1
                    pause = asked if asked is not None else min(self.backoff * 2 ** min(attempt + 3, 10),
                                                                MAX_RETRY_AFTER)
                    throttled += pause
                    self.throttle.hold(pause)
                    log.warning("event=site_throttled what=%s status=%s retry_after=%s pause=%.1f", what, code,
                                "-" if asked is None else f"{asked:.1f}", pause)
                    continue
                if attempt >= self.attempts:
                    raise SiteError(f"{what}: the site did not answer after {attempt} tries: {error}") from None
                pause = self.backoff * 2 ** (attempt - 1)
                log.warning("event=site_retry what=%s attempt=%d error=%r pause=%.1f", what, attempt, error, pause)
                self._sg = None  # a fresh connection after a network failure
                wait(self.stop, pause, what)

    # --- entities ------------------------------------------------------------------------------

    def count(self, entity_type: str, filters: list) -> int:
        """How many active entities match (for progress bars)."""
        result = self.call(f"count {entity_type}", lambda: self.sg.summarize(
            entity_type, filters, [{"field": "id", "type": "record_count"}]))
        return int(result["summaries"]["id"])

    def entity_count(self, entity_type: str, filters: list, *, retired: bool = False) -> int:
        """How many entities match, active or retired: one read of a one-entity page with the
        site's paging counts (summarize counts active entities only)."""
        # shotgun_api3's find never returns the paging counts, so the read goes out as it is.
        params = {"type": entity_type, "return_fields": ["id"], "filters": _translate_filters(filters, None),
                  "return_only": "retired" if retired else "active",
                  "paging": {"entities_per_page": 1, "current_page": 1}, "return_paging_info": True}
        result = self.call(f"count {entity_type}", lambda: self.sg._call_rpc("read", params))
        return int(result["paging_info"]["entity_count"])

    def highest_id(self, entity_type: str, filters: list) -> int:
        """The highest id among the active entities that match (0: none)."""
        found = self.call(f"read {entity_type}", lambda: self.sg.find_one(
            entity_type, filters, ["id"], order=[{"field_name": "id", "direction": "desc"}]))
        return found["id"] if found else 0

    def pages(self, entity_type: str, fields: list[str], filters: list, *, retired: bool = False,
              page_size: int = 500, after_id: int = 0) -> Iterator[list[dict]]:
        """Every matching entity, a page at a time, by increasing id (stable while others write)."""
        last = after_id
        while True:
            page = self.call(f"read {entity_type}", lambda last=last: self.sg.find(
                entity_type, [["id", "greater_than", last], *filters], fields,
                order=[{"field_name": "id", "direction": "asc"}], limit=page_size, retired_only=retired))
            if not page:
                return
            yield page
            if len(page) < page_size:
                return
            last = page[-1]["id"]

    def fetch(self, entity_type: str, entity_id: int, fields: list[str]) -> tuple[dict | None, bool]:
        """(the entity with ``fields``, whether it is active); (None, False) if the site has none."""
        for retired in (False, True):
            found = self.call(f"read {entity_type} {entity_id}", lambda retired=retired: self.sg.find_one(
                entity_type, [["id", "is", entity_id]], fields, retired_only=retired))
            if found:
                return found, not retired
        return None, False

    def fetch_many(self, entity_type: str, ids: list[int], fields: list[str], *,
                   chunk: int = 500) -> dict[int, tuple[dict | None, bool]]:
        """What :meth:`fetch` answers for each of ``ids``, in one find per ``chunk`` ids (and one
        more for those not found active, among the retired)."""
        found: dict[int, tuple[dict | None, bool]] = {}
        for retired in (False, True):
            wanted = sorted(set(ids) - set(found))
            for start in range(0, len(wanted), chunk):
                part = wanted[start:start + chunk]
                for entity in self.call(f"read {entity_type} ({len(part)} ids)",
                                        lambda part=part, retired=retired: self.sg.find(
                                            entity_type, [["id", "in", part]], fields, retired_only=retired)):
                    found[entity["id"]] = (entity, not retired)
        return {i: found.get(i, (None, False)) for i in ids}

    # --- events --------------------------------------------------------------------------------

    #: what the watcher reads of each entry (the fields the event daemon hands its plugins)
    EVENT_FIELDS = ["id", "event_type", "attribute_name", "meta", "entity", "project", "user", "session_uuid",
                    "created_at"]

    def events_after(self, after_id: int, limit: int) -> list[dict]:
        """Event-log entries with id above ``after_id``, oldest first."""
        return self.call("read EventLogEntry", lambda: self.sg.find(
            "EventLogEntry", [["id", "greater_than", after_id]], self.EVENT_FIELDS,
            order=[{"field_name": "id", "direction": "asc"}], limit=limit))

    def events_by_id(self, ids: list[int]) -> list[dict]:
        if not ids:
            return []
        return self.call("read EventLogEntry", lambda: self.sg.find(
            "EventLogEntry", [["id", "in", ids]], self.EVENT_FIELDS,
            order=[{"field_name": "id", "direction": "asc"}]))

    def event_ids_after(self, after_id: int, limit: int = 500) -> list[int]:
        """Ids of the visible entries above ``after_id`` (one page)."""
        found = self.call("read EventLogEntry", lambda: self.sg.find(
            "EventLogEntry", [["id", "greater_than", after_id]], ["id"],
            order=[{"field_name": "id", "direction": "asc"}], limit=limit))
        return [e["id"] for e in found]

    def newest_event_id(self) -> int:
        found = self.call("read EventLogEntry", lambda: self.sg.find_one(
            "EventLogEntry", [], ["id"], order=[{"field_name": "id", "direction": "desc"}]))
        return found["id"] if found else 0

    def schema_read(self) -> dict:
        return self.call("schema_read", lambda: self.sg.schema_read())
