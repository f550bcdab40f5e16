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

    def __init__(self, remote: Remote):
        self.remote = remote
        self._known: dict[tuple, Any] = {}
        self._asked: dict[tuple, Any] = {}  # key -> call, in the order noted
        self._times: dict[tuple, dt.datetime] = {}  # key -> when it was asked
        self._versions: dict[tuple[str, int], Any] = {}  # this round's: (type, id) -> version
        self.written: set[tuple[str, int]] = set()  # this round's: rows the round itself wrote

    def new_round(self) -> None:
        self._versions = {}
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
        return self._answer(key, lambda: self.remote.fetch(entity_type, entity_id, fields), (None, False))

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
            self._times[key] = _now()
            self._known[key] = call()
        return len(asked)


def in_rounds(engine: sa.Engine, remote: Remote, work: Callable[[sa.Connection, SiteAnswers], T]) -> T:
    """Run ``work(conn, site)`` in a transaction, again after each round of questions to the site."""
    site = SiteAnswers(remote)
    for _ in range(MAX_SITE_ROUNDS):
        site.new_round()
        try:
            with engine.begin() as conn:
                return work(conn, site)
        except NeedSite:
            site.ask()
    raise RuntimeError(f"still needed the site after {MAX_SITE_ROUNDS} rounds")
