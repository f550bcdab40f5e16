"""Progress of long work: a bar on a terminal, a log line every few seconds otherwise."""

from __future__ import annotations

import logging
import sys
import time

from tqdm import tqdm

log = logging.getLogger(__name__)


class Progress:
    """Counts done out of an optional total; ``bar=None`` picks a bar when stderr is a terminal."""

    def __init__(self, label: str, total: int | None, *, bar: bool | None = None, every: float = 10.0):
        self.label = label
        self.total = total
        self.done = 0
        self.started = time.monotonic()
        self.every = every
        self.last_log = self.started
        self.ended: float | None = None
        use_bar = sys.stderr.isatty() if bar is None else bar
        self.bar = tqdm(total=total, desc=label, unit=" entities", leave=True, dynamic_ncols=True) if use_bar else None

    def advance(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        if now - self.last_log >= self.every:
            self.last_log = now
            rate = self.done / max(now - self.started, 1e-9)
            eta = f"{(self.total - self.done) / rate:.0f}" if self.total and rate else "?"
            log.info("event=progress what=%r done=%d total=%s rate=%.0f/s eta_s=%s", self.label, self.done,
                     self.total if self.total is not None else "?", rate, eta)

    def grow(self, n: int) -> None:
        """More to do than the total said (work counted while it is under way)."""
        self.total = (self.total or 0) + n
        if self.bar is not None:
            self.bar.total = self.total
            self.bar.refresh()

    def describe(self, label: str) -> None:
        """A new label (the bar's description, the log lines' ``what``)."""
        self.label = label
        if self.bar is not None:
            self.bar.set_description(label)

    def close(self) -> float:
        """Seconds from the start to the first close (closing again changes nothing)."""
        if self.ended is None:
            self.ended = time.monotonic()
            if self.bar is not None:
                self.bar.close()
        return self.ended - self.started
