"""After the site confirms a write or an upload, the entities it touched are read back into the
cache before the caller's answer goes back, so that the caller's next read sees its own write."""

from __future__ import annotations

import concurrent.futures
import logging

import sqlalchemy as sa

from sgcache.api3.cache import CacheDatabase
from sgcache.api3.protocol import RpcRequest
from sgcache.errors import SgcacheError
from sgcache.logs import loggable
from sgcache.sync.refresh import Refresher

log = logging.getLogger(__name__)


class ReadBack:
    """Reads what writes touched into the cache; one per process, shared by its threads."""

    def __init__(self, cache: CacheDatabase | None, refresher: Refresher | None, *, timeout: float, threads: int):
        self.cache = cache
        self.refresher = refresher
        self.timeout = timeout
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sgcache-asof")

    def close(self) -> None:
        self._pool.shutdown(wait=False)

    def wanted(self, req: RpcRequest) -> bool:
        """Whether this write touches a cached type and the cache can take what it changes now."""
        if self.cache is None or self.refresher is None:
            return False
        if req.method == "batch":
            items = req.args if isinstance(req.args, list) else []
            touched = any(isinstance(i, dict) and isinstance(i.get("type"), str) and i["type"] in self.cache.tables
                          for i in items)
        else:
            touched = req.entity_type is not None and req.entity_type in self.cache.tables
        return touched and self.cache.is_usable()

    def before_write(self) -> concurrent.futures.Future | None:
        """Start asking the newest event id before a write is sent (None: nothing will be read back).

        Every event up to it is older than what the read-back will hold, so the watcher must
        not apply it over the fresh rows."""
        if self.cache is None or self.refresher is None or not self.cache.is_usable():
            return None
        return self.as_of()

    def as_of(self) -> concurrent.futures.Future:
        """Ask the newest event id now, in the background (see :meth:`before_write`)."""
        return self._pool.submit(self.refresher.newest_event_id)

    def read_back(self, what: str, targets: dict[str, set[int]], as_of: concurrent.futures.Future | None) -> str:
        """Read what a confirmed write touched into the cache; say what happened (for the request log)."""
        if as_of is None or not any(t in self.cache.tables for t in targets):
            return "not cached (type not held)"
        try:
            newest = as_of.result(timeout=self.timeout)
        except Exception as e:  # the write stands; the rows just go in without an event stamp
            log.warning("event=write_as_of_failed method=%s error=%r", loggable(what), f"{type(e).__name__}: {e}")
            newest = None
        try:
            written = self.refresher.refresh(targets, newest)
        except sa.exc.SQLAlchemyError as e:
            self.cache.failed(e)
            return "written on the site; not cached (database down)"
        except SgcacheError as e:
            log.warning("event=write_not_cached method=%s error=%r hint='the watcher will bring it'",
                        loggable(what), str(e))
            return "written on the site; not cached (site read failed)"
        except Exception:
            # The site applied the write: whatever went wrong here, the caller gets the site's answer.
            log.exception("event=write_not_cached method=%s hint='the watcher will bring it'", loggable(what))
            return "written on the site; not cached (internal error)"
        return f"cached {written}"
