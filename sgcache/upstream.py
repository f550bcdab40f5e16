"""The one HTTP client the proxy uses to reach the real site: pooled, timed out, behind a breaker.

Callers' requests are relayed byte for byte; nothing here retries a request that may have
changed data (a write is sent at most once). A read-only request is sent again only when the
connection failed before any answer came back. Repeated failures open a circuit breaker, so a
dead site is answered at once instead of by a timeout per request.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import requests.adapters
import urllib3

from sgcache.config import SiteConfig
from sgcache.errors import SiteFailure

log = logging.getLogger(__name__)

#: Methods that change nothing on the site: safe to send again when the connection failed.
READ_ONLY = frozenset({
    "info", "read", "summarize", "schema_read", "schema_entity_read", "schema_field_read",
    "query_display_name_cache", "note_thread_contents", "activity_stream", "preferences_read",
    "work_schedule_read", "followers", "following", "entity_types_read",
})

#: Request headers of a JSON-RPC call passed on to the site. Credentials travel in the body;
#: ``Authorization`` and cookies were meant for sgcache's host (or the nginx in front of it), and the
#: rest describe the hop to sgcache.
FORWARDED_HEADERS = ("user-agent", "locale", "accept-encoding", "content-type", "accept", "accept-language")

#: Request headers of a file upload or download passed on to the site, besides the session cookie
#: (see :func:`file_headers`).
FILE_HEADERS = ("user-agent", "accept", "accept-encoding", "accept-language", "content-type",
                "content-disposition", "range", "if-range", "if-none-match", "if-modified-since")

#: The one cookie the site reads on file routes: shotgun_api3 sends its session token in it.
SESSION_COOKIE = "_session_id"

#: What a session token looks like; anything else could smuggle a second cookie into the header.
_SESSION_TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]{1,512}")

#: Response headers that describe one hop and must not be relayed.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                        "trailer", "transfer-encoding", "upgrade", "content-length"})

#: HTTP statuses that mean "the site is not well", not "this request is wrong".
UNWELL = frozenset({502, 503, 504})


def api_path(base_url: str) -> str:
    """The JSON-RPC path shotgun_api3 computes from a base URL (``/sg/`` -> ``/sg/api3/json``)."""
    return urljoin(urljoin(urlsplit(base_url).path or "/", "api3/"), "json")


class SiteUnavailable(SiteFailure):
    """No answer from the site: it could not be reached, timed out, or the breaker is open.

    ``maybe_applied`` is true when the request may have reached the site before the failure.
    """

    def __init__(self, message: str, *, maybe_applied: bool = False):
        super().__init__(message)
        self.message = message
        self.maybe_applied = maybe_applied


class SiteBusy(SiteUnavailable):
    """Too many requests of this process are already waiting on the site (site.max_concurrent)."""


class Breaker:
    """A circuit breaker: closed (calls go through), open (calls fail at once), half-open (one try)."""

    def __init__(self, failures: int, cooldown: float, clock=time.monotonic, *,
                 on_failure: Callable[[str], None] | None = None):
        self.threshold = failures
        self.cooldown = cooldown
        self.clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False
        self.last_error: str | None = None
        #: called with each failure's description (metrics)
        #: told of every failure (the metrics count them)
        self.on_failure = on_failure

    @property
    def state(self) -> str:
        with self._lock:
            if self._opened_at is None:
                return "closed"
            return "half-open" if self.clock() - self._opened_at >= self.cooldown else "open"

    def retry_in(self) -> float:
        with self._lock:
            if self._opened_at is None:
                return 0.0
            return max(0.0, self.cooldown - (self.clock() - self._opened_at))

    def allow(self) -> bool:
        """May a request go to the site now? In half-open state only one request at a time may."""
        with self._lock:
            if self._opened_at is None:
                return True
            if self.clock() - self._opened_at < self.cooldown or self._probing:
                return False
            self._probing = True
            return True

    def success(self) -> None:
        with self._lock:
            if self._opened_at is not None:
                log.info("event=breaker_closed site=ok")
            self._failures = 0
            self._opened_at = None
            self._probing = False
            self.last_error = None

    def failure(self, error: str) -> None:
        if self.on_failure is not None:
            self.on_failure(error)
        with self._lock:
            self._failures += 1
            self.last_error = error
            if self._probing or (self._opened_at is None and self._failures >= self.threshold):
                if self._opened_at is None:
                    log.warning("event=breaker_open failures=%d error=%r cooldown=%.1f", self._failures, error,
                                self.cooldown)
                self._opened_at = self.clock()
            self._probing = False

    def release(self) -> None:
        """A half-open probe ended without a verdict on the site's health (a bad request, say)."""
        with self._lock:
            self._probing = False


@dataclass
class Reply:
    """The site's answer to one JSON-RPC request, body kept exactly as it came (maybe gzipped)."""

    status: int
    headers: list[tuple[str, str]]
    raw: bytes
    content_encoding: str | None

    def text(self) -> bytes:
        """The body, decompressed."""
        if self.content_encoding == "gzip":
            return gzip.decompress(self.raw)
        if self.content_encoding == "deflate":
            try:
                return zlib.decompress(self.raw)
            except zlib.error:
                return zlib.decompress(self.raw, -zlib.MAX_WBITS)
        return self.raw

    def json(self) -> Any:
        """The decoded JSON body; ValueError when it is not JSON."""
        return json.loads(self.text())

    def results(self) -> Any:
        """The ``results`` of an answer; ValueError when the answer is not HTTP 200 JSON with
        ``results`` (a fault, an HTML page, an error status)."""
        if self.status != 200:
            raise ValueError(f"HTTP {self.status}")
        payload = self.json()
        if not isinstance(payload, dict) or "results" not in payload or payload.get("exception"):
            raise ValueError("not an answer with results")
        return payload["results"]

    def read_results(self) -> dict:
        """The results of a ``read`` answer (``entities`` a list of objects); ValueError otherwise."""
        results = self.results()
        entities = results.get("entities") if isinstance(results, dict) else None
        if not isinstance(entities, list) or not all(isinstance(e, dict) for e in entities):
            raise ValueError("not a read's results")
        return results

    def fault(self) -> dict | None:
        """The fault envelope when the site answered with one (HTTP 200 and ``exception``)."""
        if self.status != 200:
            return None
        body = self.text().lstrip()
        if body.startswith(b'{"results"'):
            return None  # the common case, decided without parsing a big answer
        try:
            payload = json.loads(body)
        except ValueError:
            return None
        if isinstance(payload, dict) and payload.get("exception"):
            return payload
        return None


class Upstream:
    """The site, as the proxy sees it: one pooled session shared by every thread of a process."""

    def __init__(self, site: SiteConfig, *, max_concurrent: int | None = None, max_queued: int = 1,
                 on_failure: Callable[[str], None] | None = None):
        if not site.base_url:
            raise ValueError("site.base_url is not set")
        self.site = site
        limit = max_concurrent if max_concurrent is not None else site.max_concurrent
        #: how many requests of this process may wait on the site at once (None: no limit) ...
        self.turns: int | None = limit or None
        #: ... the bulkhead that holds them to it ...
        self._turns = threading.BoundedSemaphore(limit) if limit else None
        #: ... and requests waiting for a turn (each holds a thread too)
        self.max_queued = max_queued
        self._queued = 0
        self._queue_lock = threading.Lock()
        parts = urlsplit(site.base_url)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.rpc_url = self.origin + api_path(site.base_url)
        self.breaker = Breaker(site.breaker_failures, site.breaker_cooldown, on_failure=on_failure)
        self.session = requests.Session()
        self.session.trust_env = False  # the site's address is the configured one, not a proxy's
        # No retries at this level: a write must never be sent twice.
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=site.pool_size,
                                                max_retries=0, pool_block=False)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.timeout = (site.connect_timeout, site.timeout)

    def close(self) -> None:
        self.session.close()

    # --- JSON-RPC --------------------------------------------------------------------------------

    def _refuse_if_open(self) -> None:
        if not self.breaker.allow():
            raise SiteUnavailable(
                f"the Shotgun site {self.origin} is unavailable ({self.breaker.last_error}); sgcache will try "
                f"it again in {self.breaker.retry_in():.0f} s")

    def rpc(self, body: bytes, headers: Mapping[str, str], *, method: str) -> Reply:
        """Send one JSON-RPC body as it is; resend only a read-only one whose connection failed.

        Raises :class:`SiteBusy` when this process already has its most requests waiting on the
        site and no turn comes within ``site.busy_wait`` seconds (nothing was sent).
        """
        if self._turns is None:
            return self._rpc(body, headers, method=method)
        if not self._turns.acquire(blocking=False):
            with self._queue_lock:
                queue = self._queued < self.max_queued
                if queue:
                    self._queued += 1
            try:
                got = queue and self._turns.acquire(timeout=self.site.busy_wait)
            finally:
                if queue:
                    with self._queue_lock:
                        self._queued -= 1
            if not got:
                raise SiteBusy(f"the Shotgun site {self.origin} is busy: this sgcache process already has "
                               "site.max_concurrent requests waiting on it")
        try:
            return self._rpc(body, headers, method=method)
        finally:
            self._turns.release()

    def _rpc(self, body: bytes, headers: Mapping[str, str], *, method: str) -> Reply:
        attempts = 2 if method in READ_ONLY else 1
        for attempt in range(1, attempts + 1):
            self._refuse_if_open()
            try:
                response = self.session.post(self.rpc_url, data=body, headers=dict(headers), timeout=self.timeout,
                                             stream=True, allow_redirects=False)
                raw = response.raw.read(decode_content=False)
            except requests.exceptions.ConnectTimeout:
                self.breaker.failure("connection timed out")
                if attempt < attempts:
                    continue
                raise SiteUnavailable(f"could not connect to the Shotgun site {self.origin} within "
                                      f"{self.site.connect_timeout:g} s") from None
            except (requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError, TimeoutError):
                self.breaker.failure("no answer in time")
                raise SiteUnavailable(f"the Shotgun site {self.origin} did not answer within {self.site.timeout:g} s",
                                      maybe_applied=True) from None
            except (requests.exceptions.ConnectionError, urllib3.exceptions.HTTPError, OSError) as e:
                self.breaker.failure(_reason(e))
                if attempt < attempts:
                    continue
                raise SiteUnavailable(f"could not reach the Shotgun site {self.origin}: {_reason(e)}",
                                      maybe_applied=method not in READ_ONLY) from None
            except requests.exceptions.RequestException as e:
                self.breaker.release()
                raise SiteUnavailable(f"the request to the Shotgun site {self.origin} failed: {_reason(e)}",
                                      maybe_applied=method not in READ_ONLY) from None
            if response.status_code in UNWELL:
                self.breaker.failure(f"HTTP {response.status_code}")
            else:
                self.breaker.success()
            return Reply(response.status_code, _relayable(response.headers), raw,
                         response.headers.get("content-encoding"))
        raise AssertionError("unreachable")

    def call(self, method: str, params: list, *, headers: Mapping[str, str] | None = None) -> Reply:
        """Send a JSON-RPC request sgcache builds itself (credential checks, info)."""
        # ASCII escapes: a caller's credentials may hold a lone surrogate, which UTF-8 cannot encode.
        body = json.dumps({"method_name": method, "params": params}).encode("ascii")
        sent = {"content-type": "application/json; charset=utf-8", "accept-encoding": "gzip",
                "user-agent": "sgcache"}
        sent.update(headers or {})
        return self.rpc(body, sent, method=method)

    # --- files -----------------------------------------------------------------------------------

    def stream(self, verb: str, path: str, query: str, headers: Mapping[str, str], body: Any,
               content_length: int | None) -> requests.Response:
        """Relay a plain HTTP request (uploads, downloads) without holding the body in memory.

        The caller iterates the returned response's ``raw`` stream and closes it.
        """
        self._refuse_if_open()
        url = self.origin + path + (f"?{query}" if query else "")
        sent = dict(headers)
        if body is not None and content_length is not None:
            body = _SizedStream(body, content_length)  # sent with its length, read a block at a time
        try:
            response = self.session.request(verb, url, data=body, headers=sent,
                                            timeout=self.timeout, stream=True, allow_redirects=False)
        except requests.exceptions.ConnectTimeout:
            self.breaker.failure("connection timed out")
            raise SiteUnavailable(f"could not connect to the Shotgun site {self.origin}") from None
        except requests.exceptions.ReadTimeout:
            self.breaker.failure("no answer in time")
            raise SiteUnavailable(f"the Shotgun site {self.origin} did not answer within {self.site.timeout:g} s",
                                  maybe_applied=verb != "GET") from None
        except (requests.exceptions.ConnectionError, OSError) as e:
            self.breaker.failure(_reason(e))
            raise SiteUnavailable(f"could not reach the Shotgun site {self.origin}: {_reason(e)}",
                                  maybe_applied=verb != "GET") from None
        if response.status_code in UNWELL:
            self.breaker.failure(f"HTTP {response.status_code}")
        else:
            self.breaker.success()
        return response


class _SizedStream:
    """A request body stream that tells requests its length (so it is not sent chunked)."""

    def __init__(self, stream: Any, length: int):
        self.stream = stream
        self.length = length

    def __len__(self) -> int:
        return self.length

    def read(self, size: int = -1) -> bytes:
        return self.stream.read(size)


def file_headers(headers: Mapping[str, str], cookies: Mapping[str, str]) -> dict[str, str]:
    """The headers to send the site for a file route: :data:`FILE_HEADERS` as the caller sent them,
    and the ``_session_id`` cookie alone; never ``Authorization``, other cookies or hop-by-hop headers."""
    sent = {name: headers[name] for name in FILE_HEADERS if headers.get(name) is not None}
    token = cookies.get(SESSION_COOKIE)
    if token is not None and _SESSION_TOKEN.fullmatch(token):
        sent["cookie"] = f"{SESSION_COOKIE}={token}"
    return sent


def relay_headers(headers: Mapping[str, str], *, keep_length: bool = False) -> list[tuple[str, str]]:
    """The site's response headers worth relaying (a streamed body keeps its length)."""
    return [(k, v) for k, v in headers.items()
            if k.lower() not in HOP_BY_HOP or (keep_length and k.lower() == "content-length")]


def _relayable(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    return relay_headers(headers)


def chunks(response: requests.Response, size: int = 64 * 1024) -> Iterator[bytes]:
    """The raw (still encoded) body of a streamed response, closing it when done or abandoned."""
    try:
        yield from response.raw.stream(size, decode_content=False)
    finally:
        response.close()


def _reason(error: BaseException) -> str:
    """A short reason for a network failure (requests nests urllib3's; the innermost is clearest)."""
    text = str(error)
    for marker in ("Connection refused", "Name or service not known", "timed out", "Connection reset",
                   "Remote end closed connection", "Connection aborted", "Max retries exceeded"):
        if marker in text:
            return {"Max retries exceeded": "connection failed"}.get(marker, marker.lower())
    return type(error).__name__
