"""``sgcache validate``: the cache checked against the site, by counts or field by field, gently.

Both checks allow for events in flight: a difference may only be a change the watcher has not
applied yet. So before reporting, the site's newest event id is noted, the cache's event cursor
is given up to ``wait`` seconds to reach it (every event up to that id applied or given up on),
and what differed is counted or compared again; only what still differs is reported.

Every request to the site goes through one :class:`~sgcache.sync.remote.Remote`, paged and
rate limited by it. With only some projects cached, the site side of every check is the site
within those projects (the scanner's rule, :meth:`Scanner.project_filter`).
"""

from __future__ import annotations

import concurrent.futures
import heapq
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from shotgun_api3.shotgun import _translate_filters

from sgcache.config import ScannerConfig
from sgcache.errors import SgcacheError
from sgcache.query import Uncertain
from sgcache.query.filters import group
from sgcache.query.paths import Context, Scope
from sgcache.store.reader import read_entities
from sgcache.store.readstate import load_state
from sgcache.store.tables import EntityTable, Tables
from sgcache.sync import cursor as cursors
from sgcache.sync.compare import Difference, SiteRows, compare_rows
from sgcache.sync.progress import Progress
from sgcache.sync.remote import Remote
from sgcache.sync.scanner import Scanner

T = TypeVar("T")

log = logging.getLogger(__name__)

#: ids read from the cache per query while walking a table by id
_CACHE_BATCH = 1000
#: the site's largest page; used for id-only reads, which are cheap
_ID_PAGE = 500


class BadInput(SgcacheError):
    """A type, field or filter given to ``sgcache validate`` that cannot be used; ``param``
    names the argument or option it came from."""

    exit_code = 2

    def __init__(self, message: str, param: str):
        super().__init__(f"{param}: {message}")
        self.message = message
        self.param = param


# --- input ---------------------------------------------------------------------------------------


def check_types(tables: Tables, names: list[str]) -> list[str]:
    """``names`` without repeats (every cached type, sorted, when empty); each must be cached."""
    for name in names:
        if name not in tables:
            raise BadInput(f"entity type {name!r} is not in the cached schema", "TYPE")
    return list(dict.fromkeys(names)) if names else sorted(et.name for et in tables)


def check_fields(tables: Tables, types: list[str], names: list[str] | None) -> list[str] | None:
    """The fields to compare (None: every cached field); each must be cached in every type."""
    if not names:
        return None
    for type_name in types:
        et = tables[type_name]
        for name in names:
            handler = et.fields.get(name)
            if handler is None:
                raise BadInput(f"{type_name} has no field {name!r} in the schema", "--fields")
            if not handler.cached:
                reason = getattr(handler, "reason", "not cached")
                raise BadInput(f"{type_name}.{name} is not cached ({reason})", "--fields")
    return [name for name in dict.fromkeys(names) if name != "id"]


def parse_filters(text: str | None) -> list:
    """A filter list in JSON, as ``find`` takes it: ``[["code", "is", "SH010"], ...]``."""
    if text is None:
        return []
    try:
        filters = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadInput(f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno})", "--filters") from None
    if not isinstance(filters, list):
        raise BadInput(f"expected a JSON list of filters, got {type(filters).__name__}", "--filters")
    _check_filter_list(filters)
    return filters


def _check_filter_list(filters: list) -> None:
    for item in filters:
        if isinstance(item, dict):
            if item.get("filter_operator") not in ("all", "any", "and", "or") or not isinstance(
                    item.get("filters"), list):
                raise BadInput(f"a filter group must be {{\"filter_operator\": \"all\" or \"any\", "
                               f"\"filters\": [...]}}, got {json.dumps(item)}", "--filters")
            _check_filter_list(item["filters"])
        elif not (isinstance(item, list) and len(item) >= 3 and isinstance(item[0], str)
                  and isinstance(item[1], str)):
            raise BadInput(f"a filter must be [field, relation, value...], got {json.dumps(item)}", "--filters")


# --- results -------------------------------------------------------------------------------------


@dataclass
class CountRow:
    entity_type: str
    site_active: int
    cache_active: int
    site_retired: int
    cache_retired: int
    #: ok, ok after wait (a difference the watcher's events resolved), differs, not imported
    status: str = "ok"

    @property
    def same(self) -> bool:
        return (self.site_active, self.site_retired) == (self.cache_active, self.cache_retired)

    @property
    def failed(self) -> bool:
        return self.status in ("differs", "not imported")


@dataclass
class DataReport:
    differences: list[Difference] = field(default_factory=list)
    #: entities looked at (on either side), and field values compared (entities on both sides x fields)
    entities: int = 0
    values: int = 0
    types: int = 0
    not_imported: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.differences or self.not_imported)


def _plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {words or word + 's'}"


def format_counts(rows: list[CountRow]) -> str:
    lines = [f"{'TYPE':<26}{'SITE ACTIVE':>12}{'CACHE ACTIVE':>14}{'SITE RETIRED':>14}{'CACHE RETIRED':>15}  STATUS"]
    for r in rows:
        lines.append(f"{r.entity_type:<26}{r.site_active:>12}{r.cache_active:>14}{r.site_retired:>14}"
                     f"{r.cache_retired:>15}  {r.status}")
    failed = sum(r.failed for r in rows)
    lines.append(f"counts differ for {failed} of {_plural(len(rows), 'type')}" if failed
                 else f"counts match for {_plural(len(rows), 'type')}")
    return "\n".join(lines)


def format_data(report: DataReport) -> str:
    lines = [str(d) for d in report.differences]
    lines += [f"{name}: never fully imported (run sgcache scan --full): not compared" for name in report.not_imported]
    lines.append(f"compared {_plural(report.entities, 'entity', 'entities')} "
                 f"({_plural(report.values, 'field value')}) of {_plural(report.types, 'type')}: "
                 f"{_plural(len(report.differences), 'difference')}")
    return "\n".join(lines)


# --- the checks ----------------------------------------------------------------------------------


@dataclass(eq=False)
class Validator:
    """Counts and field values of the cache checked against the site.

    ``note`` receives what an operator should see while it works (waits for events in flight,
    filters the cache cannot evaluate); ``progress`` is as for :class:`Progress`.
    """

    engine: sa.Engine
    tables: Tables
    remote: Remote
    _: KW_ONLY
    wait: float = 10.0
    page_size: int = 500
    progress: bool | None = None
    poll: float = 0.2
    note: Callable[[str], None] = log.info
    #: types checked at once, each over its own connection (sharing ``remote``'s rate limit)
    concurrency: int = 1
    # The scanner decides which rows a project set holds: ask it rather than repeat its rule.
    _scope: Scanner = field(init=False, repr=False)
    _projects: list[int] | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        self._scope = Scanner(self.engine, self.tables, self.remote, ScannerConfig(), progress=False)
        self._local = threading.local()
        self._report_lock = threading.Lock()

    def _site(self) -> Remote:
        """This thread's connection to the site (each worker of a parallel check has its own)."""
        remote = getattr(self._local, "remote", None)
        return remote if remote is not None else self.remote

    def _each(self, work: Callable[[str], T], names: list[str]) -> list[T]:
        """``work(name)`` for each type, ``concurrency`` types at a time; the results in order."""
        if self.concurrency <= 1 or len(names) <= 1:
            return [work(name) for name in names]

        def run(name: str) -> T:
            if getattr(self._local, "remote", None) is None:
                self._local.remote = self.remote.sibling()
            return work(name)

        with concurrent.futures.ThreadPoolExecutor(min(self.concurrency, len(names)),
                                                   thread_name_prefix="validate") as pool:
            return list(pool.map(run, names))

    # --- shared --------------------------------------------------------------------------------

    def scope_filters(self, et: EntityTable) -> list:
        """The site filters that limit ``et`` to the cached projects (none when all are cached)."""
        if self._projects is None:
            self._projects = self._scope.recorded_projects() or []
        return self._scope.project_filter(et, self._projects)

    def imported(self) -> set[str]:
        t = self.tables.state.types
        with self.engine.connect() as conn:
            return set(conn.execute(sa.select(t.c.entity_type).where(t.c.full_scan_at.is_not(None))).scalars())

    def wait_for_events(self, what: str) -> None:
        """Give the cache up to ``wait`` seconds to apply every event up to the site's newest."""
        newest = self.remote.newest_event_id()
        cursor = self._cursor()
        if self._complete(cursor, newest):
            return
        self.note(f"{what}: waiting up to {self.wait:g} s for the cache to apply the site's events up to {newest}")
        deadline = time.monotonic() + self.wait
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(self.poll, left))
            cursor = self._cursor()
            if self._complete(cursor, newest):
                return
        self.note(f"the cache has not applied them all after {self.wait:g} s (applied up to "
                  f"{cursor.max_applied_id if cursor else 'nothing'}); checking again anyway")

    def _cursor(self) -> cursors.Cursor | None:
        with self.engine.connect() as conn:
            return cursors.load(conn, self.tables.state)

    @staticmethod
    def _complete(cursor: cursors.Cursor | None, newest: int) -> bool:
        # Complete, not just applied, up to it: a late event below it may be the difference.
        return cursor is not None and cursor.last_complete_id >= newest

    # --- counts --------------------------------------------------------------------------------

    def counts(self, types: list[str]) -> list[CountRow]:
        imported = self.imported()
        rows = self._each(lambda name: self._count(self.tables[name]), types)
        for row in rows:
            if row.entity_type not in imported:
                row.status = "not imported"
        pending = [row.entity_type for row in rows if row.status == "ok" and not row.same]
        if pending:
            self.wait_for_events("counts differ for " + ", ".join(pending))
            again = dict(zip(pending, self._each(lambda name: self._count(self.tables[name]), pending), strict=True))
            for i, row in enumerate(rows):
                if row.entity_type in again:
                    row = rows[i] = again[row.entity_type]
                    row.status = "ok after wait" if row.same else "differs"
        return rows

    def _count(self, et: EntityTable) -> CountRow:
        filters = self.scope_filters(et)
        site_active = self._site().entity_count(et.name, filters)
        site_retired = self._site().entity_count(et.name, filters, retired=True)
        t = et.table
        with self.engine.connect() as conn:
            by_state = dict(conn.execute(sa.select(t.c._active, sa.func.count()).group_by(t.c._active)).all())
        return CountRow(et.name, site_active, by_state.get(True, 0), site_retired, by_state.get(False, 0))

    # --- data ----------------------------------------------------------------------------------

    def data(self, types: list[str], *, filters: list | None = None, fields: list[str] | None = None,
             limit: int | None = None, page: int = 1) -> DataReport:
        """Compare ``types`` entity by entity: those ``filters`` match on the site or in the cache,
        in id order, skipping ``page - 1`` pages of ``page_size`` and stopping after ``limit``."""
        report = DataReport()
        imported = self.imported()
        report.not_imported = [name for name in types if name not in imported]
        checked = [name for name in types if name in imported]
        report.types = len(checked)
        found_per_type = self._each(lambda name: self._data_type(
            self.tables[name], _compared(self.tables[name], fields), filters or [], limit, page, report), checked)
        suspects = {name: found for name, found in zip(checked, found_per_type, strict=True) if found}
        if suspects:
            count = sum(len({d.entity_id for d in found}) for found in suspects.values())
            self.wait_for_events(f"{_plural(count, 'entity', 'entities')} differ")
            for name, found in suspects.items():
                et = self.tables[name]
                report.differences.extend(self._compare_ids(et, _compared(et, fields),
                                                            sorted({d.entity_id for d in found})))
        return report

    def _data_type(self, et: EntityTable, fields: list[str], filters: list, limit: int | None, page: int,
                   report: DataReport) -> list[Difference]:
        site_filters = [*self.scope_filters(et), *filters]
        cache_match = self._cache_condition(et, filters)
        after = 0
        if page > 1:
            skip = (page - 1) * self.page_size
            last = None
            for n, (entity_id, _) in enumerate(self._union(et, [], site_filters, cache_match, 0, _ID_PAGE), 1):
                last = entity_id
                if n == skip:
                    break
            else:
                return []  # the type has no entities from that page on
            after = last
        total = self._cache_total(et, cache_match, after)
        if limit is not None:
            total = limit if total is None else min(total, limit)
        progress = Progress(f"{et.name} (compared)", total, bar=self.progress)
        found: list[Difference] = []
        union = self._union(et, fields, site_filters, cache_match, after, self.page_size)
        for chunk in _batches(itertools.islice(union, limit), self.page_size):
            site = {entity_id: row for entity_id, row in chunk if row is not None}
            missing = [entity_id for entity_id, row in chunk if row is None]
            site.update(self._site_by_id(et, fields, missing))
            found += self._compare(et, fields, [entity_id for entity_id, _ in chunk], site, report)
            progress.advance(len(chunk))
        progress.close()
        return found

    def _compare(self, et: EntityTable, fields: list[str], ids: list[int], site: SiteRows,
                 report: DataReport | None = None) -> list[Difference]:
        with self.engine.connect() as conn:
            cached = {e["id"]: e for e in read_entities(conn, self.tables, et.name, ids=ids, fields=fields,
                                                         include_meta=True)}
            found = compare_rows(conn, self.tables, et.name, fields, site, cached)
        if report is not None:
            with self._report_lock:  # types may be compared in parallel
                report.entities += len(ids)
                report.values += len(set(site) & set(cached)) * len(fields)
        return found

    def _compare_ids(self, et: EntityTable, fields: list[str], ids: list[int]) -> list[Difference]:
        out = []
        for chunk in _batches(iter(ids), self.page_size):
            out += self._compare(et, fields, chunk, self._site_by_id(et, fields, chunk))
        return out

    def _site_by_id(self, et: EntityTable, fields: list[str], ids: list[int]) -> dict[int, tuple[dict, bool]]:
        """The entities with ``ids`` (active or retired) in the cached projects, as the site has them now."""
        out: dict[int, tuple[dict, bool]] = {}
        if not ids:
            return out
        filters = [["id", "in", ids], *self.scope_filters(et)]
        for retired in (False, True):
            for page in self._site().pages(et.name, fields, filters, retired=retired, page_size=len(ids)):
                out.update((e["id"], (e, not retired)) for e in page)
        return out

    def _cache_condition(self, et: EntityTable, filters: list) -> tuple[sa.FromClause, sa.ColumnElement] | None:
        """The cache rows ``filters`` match, as the read compiler evaluates them (None: it cannot)."""
        if not filters:
            return et.table, sa.true()
        with self.engine.connect() as conn:
            state = load_state(conn, self.tables)
        ctx = Context(self.tables, state, self.engine.dialect.name, tz=ZoneInfo(self.remote.site.timezone))
        scope = Scope(ctx, et)
        try:
            # The compiler reads filters as the proxy receives them: in the wire form shotgun_api3 sends.
            condition = group(scope, _translate_filters(filters, None))
        except Uncertain as u:
            self.note(f"{et.name}: the cache cannot evaluate --filters ({u}): only the entities the site "
                      "matches are compared")
            return None
        return scope.from_clause(), condition

    def _cache_total(self, et: EntityTable, match: tuple[sa.FromClause, sa.ColumnElement] | None,
                     after: int) -> int | None:
        """About how many entities there are to compare (for progress): the cache's matching rows."""
        if match is None:
            return None
        source, condition = match
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(source)
                                .where(condition, et.table.c.id > after)).scalar_one()

    def _union(self, et: EntityTable, fields: list[str], site_filters: list,
               cache_match: tuple[sa.FromClause, sa.ColumnElement] | None, after: int,
               page_size: int) -> Iterator[tuple[int, tuple[dict, bool] | None]]:
        """Every id the site matches (active or retired) or the cache matches, once each, in id
        order, with the site's entity when the site listed it. Lazy: pages are read as needed."""
        streams = [self._site_stream(et, fields, site_filters, retired, after, page_size) for retired in (False, True)]
        if cache_match is not None:
            streams.append(self._cache_stream(et, cache_match, after))
        merged = heapq.merge(*streams, key=lambda item: item[0])
        for entity_id, items in itertools.groupby(merged, key=lambda item: item[0]):
            rows = [row for _, row in items if row is not None]
            yield entity_id, rows[-1] if rows else None

    def _site_stream(self, et: EntityTable, fields: list[str], filters: list, retired: bool, after: int,
                     page_size: int) -> Iterator[tuple[int, tuple[dict, bool] | None]]:
        for page in self._site().pages(et.name, fields, filters, retired=retired, page_size=page_size,
                                       after_id=after):
            for entity in page:
                yield entity["id"], (entity, not retired)

    def _cache_stream(self, et: EntityTable, match: tuple[sa.FromClause, sa.ColumnElement],
                      after: int) -> Iterator[tuple[int, None]]:
        source, condition = match
        t = et.table
        while True:
            # A short query per batch: no transaction stays open while the site is read.
            with self.engine.connect() as conn:
                ids = list(conn.execute(sa.select(t.c.id).select_from(source).where(condition, t.c.id > after)
                                        .order_by(t.c.id).limit(_CACHE_BATCH)).scalars())
            yield from ((entity_id, None) for entity_id in ids)
            if len(ids) < _CACHE_BATCH:
                return
            after = ids[-1]


def _compared(et: EntityTable, fields: list[str] | None) -> list[str]:
    """The fields to compare: ``fields``, else every cached field but id."""
    return fields if fields is not None else [name for name in et.cached_fields() if name != "id"]


def _batches(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    while batch := list(itertools.islice(items, size)):
        yield batch
