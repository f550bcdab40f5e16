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
