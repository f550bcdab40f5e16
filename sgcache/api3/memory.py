"""A bounded memory whose entries expire: what the proxy learned of callers from the site."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Expiring(Generic[K, V]):
    """At most ``size`` entries, each kept ``ttl`` seconds; past the size the least recently
    stored goes first. Safe to share between threads. A remembered value may be None (the site
    said "nobody"), so :meth:`get` says whether anything is held."""

    def __init__(self, size: int, ttl: float, *, clock: Callable[[], float] = time.monotonic):
        self.size = size
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> tuple[bool, V | None]:
        """(held, value): held is False when nothing is remembered or it expired."""
        now = self.clock()
        with self._lock:
            held = self._entries.get(key)
        if held is None or held[0] <= now:
            return False, None
        return True, held[1]

    def put(self, key: K, value: V, *, since: float | None = None) -> None:
        """Remember ``value`` for ``ttl`` seconds from ``since`` (when the site was asked; now by default)."""
        start = self.clock() if since is None else since
        with self._lock:
            self._entries[key] = (start + self.ttl, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


class _Flight:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.value = None
        self.error: BaseException | None = None


class Flights(Generic[K, V]):
    """Calls that share a key run one at a time: a caller arriving while one runs waits for it
    and takes its result, or its exception, instead of asking the site again. When what was
    learned of a caller expires, the requests it has in flight (a farm job's eight threads, say)
    then cost the site one call, not one each, and do not fill ``site.max_concurrent`` between
    them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[K, _Flight] = {}

    def run(self, key: K, call: Callable[[], V]) -> V:
        with self._lock:
            flight = self._running.get(key)
            leads = flight is None
            if leads:
                flight = self._running[key] = _Flight()
        if not leads:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return flight.value
        try:
            flight.value = call()
        except BaseException as e:
            flight.error = e
            raise
        finally:
            with self._lock:
                del self._running[key]
            flight.done.set()
        return flight.value
