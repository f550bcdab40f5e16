"""Reads compiled to SQL over the cache tables: filters, deep paths, sorts, paging, return values.

A request the cache cannot answer with certainty raises :class:`Uncertain`, and the proxy
passes it through to the site instead.
"""

from __future__ import annotations


class Uncertain(Exception):
    """The cache cannot answer this exactly; ``reason`` is a short key counted by the proxy."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
