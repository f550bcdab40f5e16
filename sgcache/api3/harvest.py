"""What a passed-through read brings back, kept: the site's answer to a ``read`` that passed
through is also a fresh copy of the entities it lists.

Only answers given to callers who see what sgcache's own script sees (a permission group
mapped to ``all``) are used, and only the fields the cache stores of the type read. For each
listed entity the cache holds, the returned values are written, stamped with the newest event
id the site had logged *before* the request went out, so the writer's guard never lets them
overwrite a value a newer event wrote. Entities the cache lacks, and those it held otherwise
than the site showed, are read again whole by sgcache's script (never inserted from a partial
answer); the second kind is counted (``sgcache_passthrough_refreshed_total``): each is a change
the event log did not bring yet, often a script writing with events off.

All of it runs in the background, after the caller has its answer, in a small pool whose queue
is bounded: when it is full, answers go unused (they are a bonus, never a duty).
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from sgcache.api3.cache import CacheDatabase
from sgcache.api3.policy import Decision
from sgcache.api3.protocol import RpcRequest
from sgcache.errors import SgcacheError
from sgcache.store.reader import read_entities
from sgcache.store.readstate import ReadState
from sgcache.store.writer import OTHER_SIDES_CHANGED, Writer
from sgcache.sync.compare import compare_rows
from sgcache.sync.refresh import Refresher

log = logging.getLogger(__name__)

#: Entities of one answer looked at, at most (a page).
MAX_ENTITIES = 500
#: Answers waiting for the pool, at most; more go unused.
MAX_WAITING = 8


class Harvest:
    """Keeps what passed-through reads bring back; one per process, shared by its threads."""

    def __init__(self, cache: CacheDatabase | None, refresher: Refresher | None,
                 as_of: Callable[[], concurrent.futures.Future], *, on_corrected: Callable[[int], None],
                 read_state: Callable[[], ReadState], threads: int = 1):
        self.cache = cache
        self.refresher = refresher
        self.as_of = as_of
        self.read_state = read_state
        self.on_corrected = on_corrected
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sgcache-harvest")
        self._waiting = 0
        self._lock = threading.Lock()
        self.corrected = 0
        self.fetched = 0

    def close(self) -> None:
        """Drop what waits; let the answer being kept finish (it may hold a database connection)."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def wanted(self, req: RpcRequest, decision: Decision | None) -> bool:
        """Whether the answer to this passed-through request will be kept. Not in a cache of some
        projects: most entities such answers list lie outside them, and would be read for nothing."""
        if not (req.method == "read" and decision is not None and decision.mode == "all"
                and isinstance(req.args, dict) and req.args.get("return_only", "active") == "active"
                and self.cache is not None and self.refresher is not None
                and req.entity_type is not None and req.entity_type in self.cache.tables
                and self.cache.is_usable()):
            return False
        try:
            return self.read_state().projects is None
        except sa.exc.SQLAlchemyError:
            return False

    def keep(self, req: RpcRequest, results: Callable[[], Any],
             as_of: concurrent.futures.Future) -> concurrent.futures.Future | None:
        """Queue the site's answer to this read (``results`` decodes it, in the pool: not on the
        caller's time); None: not queued, the pool is full."""
        with self._lock:
            if self._waiting >= MAX_WAITING:
                as_of.cancel()
                return None
            self._waiting += 1
        return self._pool.submit(self._run, req.entity_type, results, as_of)

    def _run(self, entity_type: str, results: Callable[[], Any], as_of: concurrent.futures.Future) -> None:
        try:
            found = results()
            entities = found.get("entities") if isinstance(found, dict) else None
            if isinstance(entities, list) and entities:
                self._keep(entity_type, entities[:MAX_ENTITIES], as_of)
            else:
                as_of.cancel()
        except ValueError as e:  # not JSON after all
            log.info("event=passthrough_not_kept type=%s error=%r", entity_type, str(e)[:200])
        except sa.exc.SQLAlchemyError as e:
            self.cache.failed(e)
        except SgcacheError as e:
            log.info("event=passthrough_not_kept type=%s error=%r", entity_type, str(e)[:200])
        except Exception:
            log.exception("event=passthrough_not_kept type=%s", entity_type)
        finally:
            with self._lock:
                self._waiting -= 1

    def _keep(self, entity_type: str, entities: list, as_of: concurrent.futures.Future) -> None:
        newest = as_of.result(timeout=30)
        tables = self.cache.tables
        et = tables[entity_type]
        listed = [e for e in entities if isinstance(e, dict) and e.get("type") == entity_type
                  and type(e.get("id")) is int]
        if not listed:
            return
        # Not image fields: the site signs their URLs afresh at every read (see docs/reads.rst).
        fields = sorted({k for e in listed for k in e if k != "id" and "." not in k and et.cached(k)
                         and et.fields[k].field.data_type != "image"})
        ids = sorted({e["id"] for e in listed})
        with self.cache.engine.connect() as conn:
            cached = {row["id"]: row for row in read_entities(conn, tables, entity_type, ids, include_meta=True)}
            # Only active rows are listed by a read (return_only retired aside): compare those.
            site = {e["id"]: (e, True) for e in listed if e["id"] in cached and cached[e["id"]]["_active"]}
            differences = compare_rows(conn, tables, entity_type, fields, site, {i: cached[i] for i in site}) \
                if fields else []
        differing = {d.entity_id for d in differences if d.field not in ("(row)", "_active")}
        held = [{k: v for k, v in e.items() if k == "type" or k == "id" or k in fields}
                for e in listed if e["id"] in site and e["id"] in differing]
        if held:
            # The returned values, as of the newest event before the request: never over a newer one.
            Writer(self.cache.engine, tables).upsert(entity_type, held, event_id=newest,
                                                     other_sides=OTHER_SIDES_CHANGED)
        lacking = [i for i in ids if i not in cached]
        again = sorted(set(lacking) | differing)
        if again:
            # Whole, by sgcache's script: the other fields of a row the events missed may be stale too.
            self.refresher.refresh({entity_type: set(again)}, newest)
        if differing:
            with self._lock:
                self.corrected += len(differing)
            self.on_corrected(len(differing))
            log.info("event=passthrough_corrected type=%s ids=%s fields=%s", entity_type, sorted(differing)[:20],
                     sorted({d.field for d in differences})[:20])
        with self._lock:
            self.fetched += len(lacking)
