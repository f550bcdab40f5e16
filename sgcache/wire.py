"""The site's wire formats for dates and times: the one place that knows them.

The JSON the site speaks carries a ``date`` as ``YYYY-MM-DD`` and a ``date_time`` as
``YYYY-MM-DDTHH:MM:SSZ`` in UTC (shotgun_api3 turns any string of exactly that shape into a
``datetime``, text fields included). The field classes, the read compiler, the summaries and the
sync engine all read and write them through these functions.
"""

from __future__ import annotations

import datetime as dt
import re

#: strftime format of a wire date_time
DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def is_datetime_text(value: object) -> bool:
    """Whether ``value`` is a string of the wire date_time shape (its fields may still be out of range)."""
    return isinstance(value, str) and _DATETIME.match(value) is not None


def is_date_text(value: object) -> bool:
    """Whether ``value`` is a string of the wire date shape (its fields may still be out of range)."""
    return isinstance(value, str) and _DATE.match(value) is not None


def parse_datetime(value: str) -> dt.datetime | None:
    """A wire date_time as an aware UTC datetime; None when it is not one (wrong shape or out of range)."""
    if not is_datetime_text(value):
        return None
    try:
        # The shape is checked, so fromisoformat (C code, far cheaper than strptime in bulk) reads
        # exactly it: the trailing Z gives UTC.
        return dt.datetime.fromisoformat(value)
    except ValueError:
        return None


def parse_date(value: str) -> dt.date | None:
    """A wire date; None when it is not one (wrong shape or out of range)."""
    if not is_date_text(value):
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


def format_datetime(value: dt.datetime) -> str:
    """A datetime as a wire date_time: converted to UTC; a naive one is taken as UTC already."""
    if value.tzinfo is not None and value.tzinfo is not dt.UTC:
        value = value.astimezone(dt.UTC)
    if value.year < 1000:
        return value.strftime(DATETIME_FORMAT)  # as it always was (strftime does not pad such years)
    # Half strftime's time (and faster than an f-string): every date_time of every cached answer
    # comes through here.
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (  # noqa: UP031
        value.year, value.month, value.day, value.hour, value.minute, value.second)
