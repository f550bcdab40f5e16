"""Relative date relations (in_last, in_next, in_calendar_*): their bounds in the site's time zone.

``in_last N UNIT`` is [now - N units, now] and ``in_next`` is [now, now + N units], both ends
included; months and years move by calendar months (the 31st becomes the last day of a
shorter month). ``in_calendar_UNIT K`` is the whole day, week (Sunday first), month or year K
units from the current one, end excluded.
"""

from __future__ import annotations

import calendar
import datetime as dt

from sgcache.query import Uncertain

UNITS = ("HOUR", "DAY", "WEEK", "MONTH", "YEAR")
CALENDAR_UNITS = {"in_calendar_day": "day", "in_calendar_week": "week", "in_calendar_month": "month",
                  "in_calendar_year": "year"}
SPAN_RELATIONS = ("in_last", "not_in_last", "in_next", "not_in_next")


def _months_later(moment: dt.datetime, months: int) -> dt.datetime:
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


def moved(moment: dt.datetime, count: int, unit: str) -> dt.datetime:
    """``moment`` moved by ``count`` units, on the wall clock of its time zone."""
    if unit in ("HOUR", "DAY", "WEEK"):
        return moment + dt.timedelta(**{unit.lower() + "s": count})
    return _months_later(moment, count if unit == "MONTH" else 12 * count)


def span(now: dt.datetime, relation: str, value) -> tuple[dt.datetime, dt.datetime]:
    """[start, end] of in_last / in_next ``[count, unit]`` around ``now`` (aware, site time zone)."""
    if not isinstance(value, list) or len(value) != 2:
        raise Uncertain("unsupported_value", f"{relation} needs [count, unit]")
    count, unit = value
    if isinstance(count, bool) or not isinstance(count, int) or unit not in UNITS:
        raise Uncertain("unsupported_value", f"{relation} needs [count, {'|'.join(UNITS)}]")
    if relation.endswith("in_last"):
        return moved(now, -count, unit), now
    return now, moved(now, count, unit)


def calendar_span(now: dt.datetime, relation: str, offset) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of the calendar unit ``offset`` units from the one holding ``now``."""
    if isinstance(offset, bool) or not isinstance(offset, int):
        raise Uncertain("unsupported_value", f"{relation} needs an integer offset")
    unit = CALENDAR_UNITS[relation]
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "day":
        start = midnight + dt.timedelta(days=offset)
        return start, start + dt.timedelta(days=1)
    if unit == "week":
        sunday = midnight - dt.timedelta(days=(midnight.weekday() + 1) % 7)
        start = sunday + dt.timedelta(weeks=offset)
        return start, start + dt.timedelta(weeks=1)
    if unit == "month":
        start = _months_later(midnight.replace(day=1), offset)
        return start, _months_later(start, 1)
    start = midnight.replace(month=1, day=1, year=midnight.year + offset)
    return start, start.replace(year=start.year + 1)
