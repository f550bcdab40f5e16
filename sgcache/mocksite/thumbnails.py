"""Thumbnails as a hosted site serves them: presigned storage URLs that expire, and a placeholder while
a new upload is processed.

Off unless the site is given a lifetime (``MockSite(thumbnail_ttl=...)``; ``sgcache mock-site
--thumbnail-ttl``, 900 seconds there, as the ``X-Amz-Expires`` of hosted sites' URLs). Then every
``image`` value that points at a file of this stand-in (``/file_serve/attachment/<id>``) reads as
that URL presigned the way S3 presigns: ``X-Amz-Date`` (when it was signed, whole UTC seconds),
``X-Amz-Expires`` (the lifetime in seconds) and ``X-Amz-Signature`` (an HMAC over the path and
both), signed afresh at each read. The file route refuses (403) a URL whose signature is wrong or
whose time has passed; a request without signing parameters is the site's own route, as before.
For ``pending`` seconds after a thumbnail upload, the field reads as the site's placeholder,
``<site>/images/status/transient/thumbnail_pending.png`` (the form the client's documentation
gives), then as the signed URL, with no event in between, as on a hosted site. Other image values
(a studio's sample URLs) are left as they are.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import struct
import zlib
from collections.abc import Callable
from urllib.parse import parse_qs, urlencode, urlsplit

#: The path of the placeholder a hosted site shows while it processes a thumbnail.
PLACEHOLDER_PATH = "/images/status/transient/thumbnail_pending.png"
SERVED = "/file_serve/attachment/"
SIGNING = ("X-Amz-Date", "X-Amz-Expires", "X-Amz-Signature")
AMZ_DATE = "%Y%m%dT%H%M%SZ"


def _one_pixel_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)  # 1x1, 8-bit greyscale
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\x80"))
            + chunk(b"IEND", b""))


#: What the placeholder URL serves.
PLACEHOLDER_PNG = _one_pixel_png()


class Thumbnails:
    """How the image values of one site read, and which signed URLs its file route accepts."""

    def __init__(self, clock: Callable[[], dt.datetime], *, ttl: int | None = None, pending: float = 0.0):
        self.clock = clock
        #: seconds a signed URL lives (None: image values are not signed)
        self.ttl = ttl
        #: seconds an upload reads as the placeholder
        self.pending = pending
        self._key = secrets.token_bytes(32)
        #: unsigned URL -> when the placeholder phase of its upload ends
        self._ready_at: dict[str, dt.datetime] = {}

    def _signature(self, path: str, signed: str, ttl: str) -> str:
        return hmac.new(self._key, f"{path}\n{signed}\n{ttl}".encode(), hashlib.sha256).hexdigest()

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
        signed = self.clock().astimezone(dt.UTC).strftime(AMZ_DATE)
        ttl = str(int(self.ttl))
        query = urlencode({"X-Amz-Date": signed, "X-Amz-Expires": ttl,
                           "X-Amz-Signature": self._signature(urlsplit(url).path, signed, ttl)})
        return f"{url}?{query}"

    def refusal(self, path: str, query: str) -> str | None:
        """Why a request for a served file is refused; None: it may be served (no signing
        parameters: the site's own route, which checks the session instead)."""
        args = parse_qs(query)
        if not any(name in args for name in SIGNING):
            return None
        try:
            signed, ttl, signature = (args[name][0] for name in SIGNING)
            expires = dt.datetime.strptime(signed, AMZ_DATE).replace(tzinfo=dt.UTC) + dt.timedelta(seconds=int(ttl))
        except (KeyError, ValueError, OverflowError):
            return "the URL's signing parameters are incomplete or malformed"
        if not hmac.compare_digest(signature, self._signature(path, signed, ttl)):
            return "the signature does not match"
        if expires <= self.clock():
            return "this URL has expired"
        return None
