"""Data types the cache cannot hold faithfully: reads touching them always pass through."""

from __future__ import annotations

from sgcache.fields.base import UncachedField, register


@register("password")
class PasswordField(UncachedField):
    reason = "passwords are never cached"


@register("pivot_column")
class PivotColumnField(UncachedField):
    reason = "pivot columns are computed per query by the site"


@register("summary", "query", "calculated")
class CalculatedField(UncachedField):
    reason = "calculated (query, summary or formula) fields are computed by the site"


class UnknownField(UncachedField):
    """A data type sgcache has no class for: treated as uncached, with a warning."""

    reason = "unknown data type"
