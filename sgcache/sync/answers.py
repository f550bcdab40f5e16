"""The site's answers for one event, asked with no database transaction open.

Applying an event runs against :class:`SiteAnswers` instead of the site; :func:`in_rounds` runs
the application in a transaction, rolls it back when it needed a question not yet asked
(:class:`NeedSite`), asks, and runs it again with the answers.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa

from sgcache.sync.remote import Remote

T = TypeVar("T")

#: Most rounds of questions to the site one event may need: the entity, the rows that link to
#: it (a revival), those rows; more rounds mean the rows kept changing while the watcher asked.
MAX_SITE_ROUNDS = 10


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class NeedSite(Exception):
    """Raised inside an event's transaction when applying it needs answers the site has not given
    yet: the transaction rolls back, the questions are asked with no transaction open, and the
    event is applied again with the answers."""


class Prefetched:
    """The site's answers about the entities of one batch of events, asked before the batch is
    applied, in one find per type (instead of one find_one per event, each after a try that was
    rolled back to ask it).

    An answer stands in for asking again while the entity's cached row is as it was when the
    answer was asked, or as this watcher itself last wrote it since (:meth:`note_written`):
    then no one else wrote a newer read over it, and the answer is used with the time that
    version was made as its "asked at" (the write's guard leaves alone a row written after it).
    Any other version, and the event asks the site as before.
    """

    def __init__(self) -> None:
        # (type, id, fields) -> (answer, asked at, the row's version before asking)
        self._answers: dict[tuple, tuple[Any, dt.datetime, Any]] = {}
        self._own: dict[tuple[str, int], dt.datetime] = {}  # (type, id) -> version this watcher wrote

    def has(self, entity_type: str, entity_id: int, fields: list[str]) -> bool:
        return (entity_type, entity_id, tuple(fields)) in self._answers

    def ask(self, remote: Remote, entity_type: str, versions: dict[int, Any], fields: list[str]) -> None:
        """Ask the site about the entities ``versions`` holds the rows' versions of (read before)."""
        asked_at = _now()
        for entity_id, answer in remote.fetch_many(entity_type, sorted(versions), fields).items():
            self._add(entity_type, entity_id, fields, answer, asked_at, versions[entity_id])

    def _add(self, entity_type: str, entity_id: int, fields: list[str], answer: Any, asked_at: dt.datetime,
            version: Any) -> None:
        self._answers[entity_type, entity_id, tuple(fields)] = (answer, asked_at, version)

    def answer(self, entity_type: str, entity_id: int, fields: list[str],
               version: Any) -> tuple[Any, dt.datetime] | None:
        """(the answer, the time to guard its write with) when it still stands for the row now at
        ``version``; else None."""
        found = self._answers.get((entity_type, entity_id, tuple(fields)))
        if found is None:
            return None
        answer, asked_at, before = found
        own = self._own.get((entity_type, entity_id))
        if own is not None and version == own:
            since = own
        elif own is None and version == before:
            since = asked_at
        else:
            return None
        return answer, since

    def discard(self, entity_type: str, entity_id: int) -> None:
        """Forget the answer about an entity the site was asked about again: rows written from the
        newer answer must not be followed by the older one."""
        for key in [k for k in self._answers if k[:2] == (entity_type, entity_id)]:
            del self._answers[key]

    def note_written(self, stamps: dict[tuple[str, int], dt.datetime]) -> None:
        """Rows this watcher wrote (``_cache_updated_at`` of each) in a committed transaction."""
        self._own.update(stamps)


class SiteAnswers:
    """The site's answers for one event, asked outside any database transaction.

    Applying an event runs against this object instead of the site: a question it already has the
    answer to is answered from memory; a new one is noted and answered "nothing yet" (no entity,
    no pages), and the application is rolled back (``NeedSite``) and made again once every noted
    question has been asked. So the watcher never holds a transaction, its locks or its
    connection while it waits for the site, and the transaction that applies an event with its
    cursor move and ledger row stays short.

    An entity's answer is only used for the cached row it was asked about: the question names
    the row's ``_cache_updated_at`` as the watcher found it before asking, and when a scan or a
    proxy's read-back has written the row since, the answer may be older than the row and the
    question is asked again. (A row's version is taken once per round, before the round's own
    writes change it.) A write from another process that lands between that and the round's own
    write is caught by the write itself: it leaves alone a row written after the answer was
    asked (``asked_at``), and the question is asked again (``ask_again``).
    """

    def __init__(self, remote: Remote, prefetched: Prefetched | None = None):
        self.remote = remote
        self.prefetched = prefetched
        self._known: dict[tuple, Any] = {}
        self._asked: dict[tuple, Any] = {}  # key -> call, in the order noted
        self._times: dict[tuple, dt.datetime] = {}  # key -> when it was asked
        self._versions: dict[tuple[str, int], Any] = {}  # this round's: (type, id) -> version
        self._many: set[tuple[str, int]] = set()  # entities a noted fetch_many asks about
        self.written: set[tuple[str, int]] = set()  # this round's: rows the round itself wrote

    def new_round(self) -> None:
        self._versions = {}
        self._many = set()
        self.written = set()

    def _answer(self, key: tuple, call, unknown: Any) -> Any:
        if key in self._known:
            return self._known[key]
        self._asked.setdefault(key, call)
        return unknown

    def _fetch_key(self, entity_type: str, entity_id: int, fields: list[str]) -> tuple:
        return ("fetch", entity_type, entity_id, tuple(fields), self._versions.get((entity_type, entity_id)))

    def fetch(self, entity_type: str, entity_id: int, fields: list[str], *,
              row_version: Callable[[], Any] = lambda: None) -> tuple[dict | None, bool]:
        if (entity_type, entity_id) not in self._versions:
            self._versions[entity_type, entity_id] = row_version()
        key = self._fetch_key(entity_type, entity_id, fields)
        if key not in self._known and key not in self._asked and self.prefetched is not None:
            found = self.prefetched.answer(entity_type, entity_id, fields, self._versions[entity_type, entity_id])
            if found is not None:
                self._known[key], self._times[key] = found
            elif (entity_type, entity_id) in self._many:
                return None, False  # the noted fetch_many asks about it
        return self._answer(key, lambda: self.remote.fetch(entity_type, entity_id, fields), (None, False))

    def fetch_many(self, entity_type: str, versions: dict[int, Any], fields: list[str]) -> None:
        """Note one question about several entities (``versions``: their rows' versions, read
        now): their answers come to :meth:`fetch` through Prefetched, asked in one find."""
        if self.prefetched is None:
            self.prefetched = Prefetched()
        todo = {i: v for i, v in versions.items() if not self.prefetched.has(entity_type, i, fields)}
        if not todo:
            return
        key = ("many", entity_type, tuple(sorted(todo)), tuple(fields))
        if key in self._known:
            return  # asked already; what the answers no longer stand for, each fetch asks about
        self._many.update((entity_type, i) for i in todo)
        prefetched = self.prefetched
        self._asked.setdefault(key, lambda: prefetched.ask(self.remote, entity_type, todo, fields))

    def asked_at(self, entity_type: str, entity_id: int, fields: list[str]) -> dt.datetime | None:
        """When the answer ``fetch`` gives now was asked of the site."""
        return self._times.get(self._fetch_key(entity_type, entity_id, fields))

    def ask_again(self, entity_type: str, entity_id: int, fields: list[str]) -> None:
        """Forget the answer ``fetch`` gives now: the next round asks the site again."""
        key = self._fetch_key(entity_type, entity_id, fields)
        self._known.pop(key, None)
        self._asked.setdefault(key, lambda: self.remote.fetch(entity_type, entity_id, fields))

    def pages(self, entity_type: str, fields: list[str], filters: list, *, retired: bool = False) -> list[list[dict]]:
        key = ("pages", entity_type, tuple(fields), json.dumps(filters, sort_keys=True, default=str), retired)
        return self._answer(key, lambda: list(self.remote.pages(entity_type, fields, filters, retired=retired)), [])

    @property
    def pending(self) -> bool:
        return bool(self._asked)

    def ask(self) -> int:
        """Ask the site every question noted since the last call; return how many."""
        asked, self._asked = self._asked, {}
        for key, call in asked.items():
            if key[0] == "fetch" and self.prefetched is not None:
                self.prefetched.discard(key[1], key[2])
            self._times[key] = _now()
            self._known[key] = call()
        return len(asked)


def in_rounds(engine: sa.Engine, remote: Remote, work: Callable[[sa.Connection, SiteAnswers], T], *,
              prefetched: Prefetched | None = None) -> T:
    """Run ``work(conn, site)`` in a transaction, again after each round of questions to the site
    (``prefetched``: answers asked before, see Prefetched)."""
    site = SiteAnswers(remote, prefetched)
    for _ in range(MAX_SITE_ROUNDS):
        site.new_round()
        try:
            with engine.begin() as conn:
                return work(conn, site)
        except NeedSite:
            site.ask()
    raise RuntimeError(f"still needed the site after {MAX_SITE_ROUNDS} rounds")
