"""Thumbnail URLs in cached answers are never stale.

A hosted site returns ``image`` fields as signed URLs that expire (``Expires=<unix time>``, or
``X-Amz-Date`` plus ``X-Amz-Expires`` seconds), and as a placeholder
(``.../images/status/transient/...``) while a new thumbnail is processed; the placeholder turns
into the real URL with no event. So before a cached ``read`` answer goes back, the image fields it
returns are checked: when one holds a placeholder, or a URL that expires within
``reads.url_margin`` seconds, those fields of those entities are read from the site in one call
(as sgcache's script), stored (stamped with the newest event id taken before the read, so the
writer's guard never lets them replace a newer event's value) and answered. If the site cannot be
reached, a URL that has not expired yet is answered as it is; an expired one or a placeholder
never is: the request passes through (``url_refresh_failed``).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import sqlalchemy as sa

from sgcache.api3.answers import PassReason
from sgcache.api3.cache import CacheDatabase
from sgcache.api3.protocol import RpcRequest
from sgcache.errors import SgcacheError, SiteFailure
from sgcache.store.writer import OTHER_SIDES_NONE, Writer
from sgcache.sync.refresh import Refresher

log = logging.getLogger(__name__)

#: The path prefix of a hosted site's placeholder thumbnails (the client's docs advise the prefix).
PLACEHOLDER = "/images/status/transient/"


def expires_at(url: str) -> float | None:
    """When a signed URL expires (unix seconds); None when it says nothing."""
    query = parse_qs(urlsplit(url).query)
    try:
        if "Expires" in query:
            return float(query["Expires"][0])
        if "X-Amz-Expires" in query and "X-Amz-Date" in query:
            signed = dt.datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
            return signed.timestamp() + float(query["X-Amz-Expires"][0])
    except (ValueError, IndexError, OverflowError):
        return 0.0  # a signature sgcache cannot read: as good as expired
    return None


def is_placeholder(url: str) -> bool:
    return PLACEHOLDER in urlsplit(url).path


class FreshThumbnails:
    """Checks and refreshes the image fields of cached answers; one per process."""

    def __init__(self, cache: CacheDatabase | None, refresher: Refresher | None, *, margin: float,
                 on_refreshed: Callable[[int], None] = lambda n: None, clock: Callable[[], float] = time.time):
        self.cache = cache
        self.refresher = refresher
        self.margin = margin
        self.on_refreshed = on_refreshed
        self.clock = clock

    def _stale(self, value: Any, now: float) -> str | None:
        """"placeholder", "expired", "expiring" or None (fresh enough, or not a URL)."""
        if not isinstance(value, str):
            return None
        if is_placeholder(value):
            return "placeholder"
        expires = expires_at(value)
        if expires is None:
            return None
        if expires <= now:
            return "expired"
        return "expiring" if expires - now <= self.margin else None

    def fresh(self, req: RpcRequest, result: Any) -> Any | PassReason:
        """``result`` with fresh image values (changed in place), or why it must pass through."""
        if req.method != "read" or self.cache is None or self.refresher is None or not isinstance(result, dict):
            return result
        et = self.cache.tables[req.entity_type]
        wanted = (req.args or {}).get("return_fields") or []
        fields = sorted({f for f in wanted if isinstance(f, str) and et.cached(f)
                         and et.fields[f].field.data_type == "image"})
        entities = result.get("entities") or []
        if not fields or not entities:
            return result
        now = self.clock()
        stale: dict[int, set[str]] = {}
        unusable = False
        for entity in entities:
            for f in fields:
                why = self._stale(entity.get(f), now)
                if why is not None:
                    stale.setdefault(entity["id"], set()).add(f)
                    unusable = unusable or why != "expiring"
        if not stale:
            return result
        try:
            found = self._read(req.entity_type, sorted(stale), fields)
        except (SgcacheError, SiteFailure, sa.exc.SQLAlchemyError) as e:
            if isinstance(e, sa.exc.SQLAlchemyError):
                self.cache.failed(e)
            log.warning("event=thumbnail_refresh_failed type=%s ids=%d error=%r", req.entity_type, len(stale),
                        str(e)[:200])
            if unusable:
                return PassReason("url_refresh_failed", f"{req.entity_type}: {str(e)[:80]}")
            return result
        for entity in entities:
            fresh = found.get(entity["id"])
            if fresh is not None:
                for f in fields:
                    if f in entity:
                        entity[f] = fresh.get(f)
        self.on_refreshed(len(found))
        return result

    def _read(self, entity_type: str, ids: list[int], fields: list[str]) -> dict[int, dict]:
        """The image fields of ``ids`` as the site shows them now, stored; one call (per 500)."""
        newest = self.refresher.newest_event_id()
        found: dict[int, dict] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            for page in self.refresher.remote.pages(entity_type, ["id", *fields], [["id", "in", chunk]],
                                                    page_size=500):
                found.update((e["id"], e) for e in page)
        if found:
            rows = [{"type": entity_type, "id": i, **{f: e.get(f) for f in fields}} for i, e in found.items()]
            Writer(self.cache.engine, self.cache.tables).upsert(entity_type, rows, event_id=newest,
                                                                other_sides=OTHER_SIDES_NONE)
        return found
