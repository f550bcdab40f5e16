"""Thumbnail URLs in cached answers are never stale.

A hosted site returns ``image`` fields as signed URLs that expire (``X-Amz-Date`` plus
``X-Amz-Expires`` seconds, or ``Expires=<unix time>``), and as a placeholder
(``.../images/status/transient/...``) while a new thumbnail is processed; the placeholder turns
into the real URL with no event. So before a cached ``read`` answer goes back, the image values it
returns (its own image fields, and deep ones such as ``entity.Shot.image``) are checked. When one
is a placeholder, or a URL that expires within ``reads.url_margin`` seconds, the image values of
those entities are read from the site in one call (as sgcache's script), answered, and stored in
the rows that hold them, stamped with the newest event id taken before the read so that the
writer's guard never lets them replace a newer event's value.

If the site cannot be reached, a URL that has not expired yet is answered as it is; an expired one
or a placeholder never is: the request passes through (``url_refresh_failed``). So does a request
whose expired entity the site no longer shows.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import sqlalchemy as sa

from sgcache.api3.answers import PassReason, first_line
from sgcache.api3.cache import CacheDatabase
from sgcache.api3.protocol import RpcRequest
from sgcache.errors import SgcacheError
from sgcache.store.tables import Tables
from sgcache.store.writer import OTHER_SIDES_NONE
from sgcache.sync.refresh import Refresher

log = logging.getLogger(__name__)

#: The path prefix of a hosted site's placeholder thumbnails (the client's docs advise the prefix).
PLACEHOLDER = "/images/status/transient/"


def expires_at(url: str) -> float | None:
    """When a signed URL expires (unix seconds); None when it says nothing."""
    query = parse_qs(urlsplit(url).query)
    try:
        if "X-Amz-Expires" in query and "X-Amz-Date" in query:
            signed = dt.datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
            return signed.timestamp() + float(query["X-Amz-Expires"][0])
        if "Expires" in query:
            return float(query["Expires"][0])
    except (ValueError, IndexError, OverflowError):
        return 0.0  # a signature sgcache cannot read: as good as expired
    return None


def is_placeholder(url: str) -> bool:
    return PLACEHOLDER in urlsplit(url).path


@dataclass(frozen=True)
class ImagePath:
    """One return field whose value is an image: the field ``field`` of ``holder`` type, reached
    from the read's entities through the link at ``link`` (None: the entity's own field)."""

    name: str
    holder: str
    field: str
    link: str | None


def image_paths(tables: Tables, entity_type: str, return_fields: Iterable[Any]) -> list[ImagePath]:
    """The return fields of a read of ``entity_type`` that are cached image fields, own or deep."""
    paths = []
    for name in dict.fromkeys(f for f in return_fields if isinstance(f, str)):
        parts = name.split(".")
        if len(parts) % 2 == 0:
            continue
        holder, field, link = (entity_type, name, None) if len(parts) == 1 else \
            (parts[-2], parts[-1], ".".join(parts[:-2]))
        if holder in tables and tables[holder].cached(field) \
                and tables[holder].fields[field].field.data_type == "image":
            paths.append(ImagePath(name, holder, field, link))
    return paths


class FreshThumbnails:
    """Checks and refreshes the image values of cached answers; one per process."""

    def __init__(self, cache: CacheDatabase | None, refresher: Refresher | None, *, margin: float,
                 on_refreshed: Callable[[int], None] = lambda n: None, clock: Callable[[], float] = time.time):
        self.cache = cache
        self.refresher = refresher
        self.margin = margin
        self.on_refreshed = on_refreshed
        self.clock = clock

    def _state(self, value: Any, now: float) -> str | None:
        """"unusable" (a placeholder, or expired), "expiring" (within the margin) or None."""
        if not isinstance(value, str):
            return None
        if is_placeholder(value):
            return "unusable"
        expires = expires_at(value)
        if expires is None or expires - now > self.margin:
            return None
        return "unusable" if expires <= now else "expiring"

    def _stale(self, entities: list[dict], paths: list[ImagePath]) -> tuple[set[int], set[int]]:
        """(ids of entities holding a stale value, ids of those holding one that must not be
        answered); a deep value through a multi-entity link is a list."""
        now = self.clock()
        stale: set[int] = set()
        unusable: set[int] = set()
        for entity in entities:
            for path in paths:
                value = entity.get(path.name)
                for state in {self._state(v, now) for v in (value if isinstance(value, list) else [value])}:
                    if state is not None:
                        stale.add(entity["id"])
                    if state == "unusable":
                        unusable.add(entity["id"])
        return stale, unusable

    def fresh(self, req: RpcRequest, result: Any) -> Any | PassReason:
        """``result`` with fresh image values (changed in place), or why it must pass through."""
        if req.method != "read" or self.cache is None or self.refresher is None or not isinstance(result, dict):
            return result
        args = req.args if isinstance(req.args, dict) else {}
        paths = image_paths(self.cache.tables, req.entity_type, args.get("return_fields") or [])
        entities = result.get("entities") or []
        if not paths or not entities:
            return result
        stale, unusable = self._stale(entities, paths)
        if not stale:
            return result
        retired = args.get("return_only") == "retired"
        try:
            newest, found = self._read(req.entity_type, sorted(stale), paths, retired)
        except Exception as e:  # whatever failed, the cached answer stands only while its URLs do
            why = str(e) if isinstance(e, SgcacheError) else f"{type(e).__name__}: {e}"
            log.warning("event=thumbnail_refresh_failed type=%s entities=%d error=%r", req.entity_type, len(stale),
                        why[:200])
            if unusable:
                return PassReason("url_refresh_failed", f"{req.entity_type}: {why[:80]}")
            return result
        gone = unusable - set(found)
        if gone:
            return PassReason("url_refresh_failed", f"{req.entity_type} {sorted(gone)[:5]}: not found on the site")
        self._store(newest, found, paths)
        for entity in entities:
            fresh = found.get(entity["id"])
            if fresh is not None:
                for path in paths:
                    if path.name in entity:
                        entity[path.name] = fresh.get(path.name)
        self.on_refreshed(len(found))
        log.debug("event=thumbnails_refreshed type=%s entities=%d", req.entity_type, len(found))
        return result

    def _read(self, entity_type: str, ids: list[int], paths: list[ImagePath],
              retired: bool) -> tuple[int, dict[int, dict]]:
        """(the newest event id, then the image values of ``ids`` as the site shows them now, with
        the links to their holders); one read, since a page holds at most 500 entities."""
        newest = self.refresher.newest_event_id()
        remote = self.refresher.remote
        fields = sorted({"id", *(p.name for p in paths), *(p.link for p in paths if p.link)})
        found = remote.call(f"read {entity_type}", lambda: remote.sg.find(
            entity_type, [["id", "in", ids]], fields, limit=len(ids), retired_only=retired))
        return newest, {e["id"]: e for e in found}

    def _store(self, newest: int, found: dict[int, dict], paths: list[ImagePath]) -> None:
        """Write the values read into the rows that hold them (only rows the cache holds: a row
        is never made from one field). A database failure leaves the answer fresh all the same."""
        rows: dict[str, dict[int, dict]] = {}
        for entity in found.values():
            for path in paths:
                holder = entity if path.link is None else entity.get(path.link)
                if not (isinstance(holder, dict) and isinstance(holder.get("id"), int)
                        and (path.link is None or holder.get("type") == path.holder)):
                    continue  # through a multi-entity link, or no link: nothing to store
                row = rows.setdefault(path.holder, {}).setdefault(holder["id"], {"id": holder["id"]})
                row[path.field] = entity.get(path.name)
        tables = self.cache.tables
        try:
            with self.cache.engine.begin() as conn:
                for holder_type, by_id in sorted(rows.items()):
                    t = tables[holder_type].table
                    held = set(conn.execute(sa.select(t.c.id).where(t.c.id.in_(sorted(by_id)))).scalars())
                    if held:
                        self.refresher.writer.upsert(holder_type, [by_id[i] for i in sorted(held)], event_id=newest,
                                                     conn=conn, other_sides=OTHER_SIDES_NONE)
        except sa.exc.SQLAlchemyError as e:
            self.cache.failed(e)
            log.warning("event=thumbnails_not_stored error=%r", first_line(e))
