"""Reads of the past: ``/as-of/<time>/api3/json`` answers ``read`` and ``summarize`` as the site
would have answered at that moment, from the versions the cache keeps (sgcache.store.history).

Nothing about the past can be asked of the site, so a read the cache cannot answer exactly gets a
fault that says why (and, when the history does not reach back far enough, the earliest time it
can answer); it is never passed through. Writes and other methods get a fault too.
"""

from __future__ import annotations

import datetime as dt
import re

from sgcache.api3.answers import PassReason
from sgcache.api3.protocol import Fault

#: ``2026-12-01T18:00:00Z``, ``2026-12-01T18:00:00.250+01:00``: a date, a time, a zone.
#: Case does not matter: shotgun_api3 lowercases its base URL.
_MOMENT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})", re.IGNORECASE)

#: The methods a past time answers (the schema methods answer the schema of now).
PAST_METHODS = frozenset({"read", "summarize"})


def parse_moment(text: str) -> dt.datetime:
    """The moment of an as-of path segment (UTC), or a Fault naming what is wrong with it."""
    shown = text[:40]
    if not _MOMENT.fullmatch(text):
        raise Fault(f"sgcache: as-of time {shown!r} is not an ISO 8601 time with a zone, such as "
                    "2026-12-01T18:00:00Z or 2026-12-01T19:00:00+01:00")
    try:
        return dt.datetime.fromisoformat(text.upper().replace("Z", "+00:00")).astimezone(dt.UTC)
    except (ValueError, OverflowError) as e:  # OverflowError: before year 1 or after 9999 in UTC
        raise Fault(f"sgcache: as-of time {shown!r} is not a valid time: {e}") from None


#: ``90m``, ``24h``, ``7d``: that long ago.
_AGO = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """An ISO 8601 time with a zone, or a duration ago (``90m``, ``24h``, ``7d``); ValueError if
    it is neither (``sgcache changes --since`` and ``/_sgcache/changes?since=``)."""
    found = _AGO.fullmatch(text.strip())
    try:
        if found:
            return (now or dt.datetime.now(dt.UTC)) - dt.timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})
        return parse_moment(text.strip())
    except (Fault, OverflowError):
        raise ValueError(f"expected an ISO 8601 time with a zone (2026-12-01T18:00:00Z) or a duration ago "
                         f"(90m, 24h, 7d), got {text[:40]!r}") from None


def iso(moment: dt.datetime) -> str:
    text = moment.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    return text.replace(".000000Z", "Z")


def refusal(method: str, moment: dt.datetime, why: PassReason) -> Fault:
    """The fault for a read of the past the cache cannot answer exactly."""
    detail = f" ({why.detail})" if why.detail else ""
    return Fault(f"sgcache: cannot answer this {method} as of {iso(moment)} exactly: {why.reason}{detail}. "
                 "Reads of the past are answered from the cache's history only, never by the site")


def not_a_read(method: str, moment: dt.datetime) -> Fault:
    return Fault(f"sgcache: {method[:40]} cannot be sent through an as-of URL (as of {iso(moment)}): only "
                 "read (find, find_one) and summarize are answered as of a past time; send writes to the "
                 "URL without /as-of/")
