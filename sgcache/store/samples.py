"""Time series the status page charts, kept in ``_sgcache_samples`` for a few hours.

Every proxy process saves one request-latency sample a minute (a histogram, so samples from
several processes and hosts add up exactly), and the watcher saves its event lag every few
seconds. Anything older than :data:`KEEP` is deleted when a new sample is saved.
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
import os
import socket
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from sgcache.store.state import StateTables

#: How long samples are kept.
KEEP = dt.timedelta(hours=2)

#: Upper bounds, in milliseconds, of the latency histogram's buckets (the last is unbounded):
#: steps of 25% from 0.5 ms to about a minute, so a quantile read from them is within 25%.
LATENCY_BOUNDS_MS: tuple[float, ...] = tuple(round(0.5 * 1.25 ** i, 3) for i in range(53))


def source_name() -> str:
    """This process, as ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def save(conn: sa.Connection, st: StateTables, kind: str, data: dict[str, Any], *,
         at: dt.datetime | None = None, source: str | None = None) -> None:
    at = at or dt.datetime.now(dt.UTC)
    conn.execute(sa.insert(st.samples).values(at=at, kind=kind, source=source or source_name(),
                                              data=json.dumps(data, separators=(",", ":"))))
    conn.execute(sa.delete(st.samples).where(st.samples.c.kind == kind, st.samples.c.at < at - KEEP))


Sample = tuple[dt.datetime, str, dict[str, Any]]


def since(conn: sa.Connection, st: StateTables, kind: str, start: dt.datetime) -> Iterator[Sample]:
    """(at, source, data) of the ``kind`` samples saved at or after ``start``, oldest first."""
    rows = conn.execute(sa.select(st.samples.c.at, st.samples.c.source, st.samples.c.data)
                        .where(st.samples.c.kind == kind, st.samples.c.at >= start)
                        .order_by(st.samples.c.at, st.samples.c.id))
    for at, source, data in rows:
        yield at, source, json.loads(data)


def latest(conn: sa.Connection, st: StateTables, kind: str) -> tuple[dt.datetime, dict[str, Any]] | None:
    row = conn.execute(sa.select(st.samples.c.at, st.samples.c.data).where(st.samples.c.kind == kind)
                       .order_by(st.samples.c.at.desc(), st.samples.c.id.desc()).limit(1)).first()
    return None if row is None else (row[0], json.loads(row[1]))


class LatencyHistogram:
    """Request counts by latency bucket (see :data:`LATENCY_BOUNDS_MS`) and by outcome."""

    def __init__(self, buckets: list[int] | None = None, outcomes: dict[str, int] | None = None):
        self.buckets = list(buckets) if buckets else [0] * (len(LATENCY_BOUNDS_MS) + 1)
        self.outcomes: dict[str, int] = dict(outcomes or {})

    @property
    def count(self) -> int:
        return sum(self.buckets)

    def add(self, ms: float, outcome: str) -> None:
        # The first bucket whose bound is at least ms (the unbounded last one past them all).
        self.buckets[bisect.bisect_left(LATENCY_BOUNDS_MS, ms)] += 1
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def merge(self, other: LatencyHistogram) -> None:
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets, strict=True)]
        for outcome, n in other.outcomes.items():
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + n

    def quantile(self, q: float) -> float | None:
        """The upper bound of the bucket holding the ``q`` quantile (None when empty)."""
        total = self.count
        if not total:
            return None
        wanted, seen = q * total, 0
        for index, n in enumerate(self.buckets):
            seen += n
            if seen >= wanted and n:
                return LATENCY_BOUNDS_MS[index] if index < len(LATENCY_BOUNDS_MS) else float("inf")
        return float("inf")

    def to_data(self) -> dict[str, Any]:
        return {"buckets": self.buckets, "outcomes": self.outcomes}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> LatencyHistogram:
        buckets = data.get("buckets") or None
        if buckets is not None and len(buckets) != len(LATENCY_BOUNDS_MS) + 1:
            buckets = None  # saved by a version with other bounds: not comparable
        return cls(buckets, data.get("outcomes"))
