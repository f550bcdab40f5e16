"""Thumbnails as a hosted site serves them: signed URLs that expire, and a placeholder while a new
upload is processed.

Off unless the site is given a lifetime (``MockSite.thumbnails.ttl``, ``sgcache mock-site
--thumbnail-ttl``). Then every ``image`` value that points at a file of this stand-in
(``/file_serve/attachment/<id>``) reads as that URL with ``Expires=<unix time>`` (now plus the
lifetime) and a ``Signature`` over both, signed afresh at each read as S3 and CloudFront URLs
are; ``file_serve`` refuses (403) a URL whose signature is wrong or whose time has passed. For
``pending`` seconds after a thumbnail upload, the field reads as the site's placeholder,
``<site>/images/status/transient/thumbnail_pending.png``, and then turns into the signed URL
without any event, as on a hosted site. Other image values (a studio's sample URLs) are left as
they are.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

#: The path of the placeholder a hosted site shows while it processes a thumbnail.
PLACEHOLDER_PATH = "/images/status/transient/thumbnail_pending.png"
SERVED = "/file_serve/attachment/"


class Thumbnails:
    def __init__(self, clock: Callable[[], dt.datetime], *, ttl: float | None = None, pending: float = 0.0):
        self.clock = clock
        #: seconds a signed URL lives (None: image values are not signed)
        self.ttl = ttl
        #: seconds an upload reads as the placeholder
        self.pending = pending
        self._key = secrets.token_bytes(32)
        #: unsigned URL -> when the placeholder phase of its upload ends
        self._ready_at: dict[str, dt.datetime] = {}

    def _now(self) -> float:
        return self.clock().timestamp()

    def _signature(self, path: str, expires: int) -> str:
        return hmac.new(self._key, f"{path}:{expires}".encode(), hashlib.sha256).hexdigest()[:32]

    def uploaded(self, url: str) -> None:
        """A thumbnail was uploaded to ``url``: it is being processed for ``pending`` seconds."""
        if self.pending > 0:
            self._ready_at[url] = self.clock() + dt.timedelta(seconds=self.pending)

    def wire(self, url: str) -> str:
        """How a stored image URL reads now."""
        if self.ttl is None or SERVED not in url:
            return url
        ready = self._ready_at.get(url)
        if ready is not None:
            if self.clock() < ready:
                parts = urlsplit(url)
                return f"{parts.scheme}://{parts.netloc}{PLACEHOLDER_PATH}"
            del self._ready_at[url]
        expires = int(self._now() + self.ttl)
        return f"{url}?Expires={expires}&Signature={self._signature(urlsplit(url).path, expires)}"

    def refusal(self, path: str, query: str) -> str | None:
        """Why a request for a served file is refused (None: it may be served). Unsigned
        requests are served only while signing is off."""
        if self.ttl is None:
            return None
        args = parse_qs(query)
        try:
            expires = int(args["Expires"][0])
            signature = args["Signature"][0]
        except (KeyError, ValueError, IndexError):
            return "this URL is not signed"
        if not hmac.compare_digest(signature, self._signature(path, expires)):
            return "the signature does not match"
        if expires <= self._now():
            return "this URL has expired"
        return None
