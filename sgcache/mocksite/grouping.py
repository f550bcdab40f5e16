"""The group of one value under a summarize ``grouping`` type, written from the client's
documented rules (not from the proxy's implementation: the differential tests compare the two).

Each grouping gives a value a ``(sort key, group_value, group_name)``; rows whose value is empty
(None, ``[]``, ``""``) form the group ``(None, None, "")``. The rules:

- ``exact``: the value itself (a link: named, sorted by its name);
- ``tens`` ... ``millions``: the multiple of 10**n at or below the value, named ``"low - high"``;
- ``day`` / ``oneday``: the date (a date_time's date in the site's time zone), ISO;
- ``fivedays``: the start of its run of five days (days counted from 0001-01-01 as day 1), ISO;
- ``week``: the Sunday on or before it, ISO;
- ``month``: ``YYYY-MM``, named ``"<month name> YYYY"``; ``quarter``: ``"YYYY Qn"``, named
  ``"Qn YYYY"``; ``year``: ``"YYYY"``;
- ``entitytype``: the linked entity's type; ``firstletter``: the first letter, upper case.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

from sgcache.mocksite.emulator import FilterError

Group = tuple[Any, Any, str]
EMPTY: Group = (None, None, "")

#: grouping -> the power of ten that is its buckets' width
NUMBER_WIDTHS = {"tens": 1, "hundreds": 2, "thousands": 3, "tensofthousands": 4, "hundredsofthousands": 5,
                 "millions": 6}


def number_group(value: Any, kind: str) -> Group:
    width = 10 ** NUMBER_WIDTHS[kind]
    whole, _ = divmod(value, width)
    low = whole * width
    return low, low, f"{low} - {low + width - 1}"


def _iso_day(start: dt.date) -> Group:
    """A group named by its first day (sorted by its day number)."""
    return start.toordinal(), start.isoformat(), start.isoformat()


def _fivedays(day: dt.date) -> Group:
    number = day.toordinal()
    return _iso_day(dt.date.fromordinal(number - number % 5))


def _week(day: dt.date) -> Group:
    # Day 7 (0001-01-07) is a Sunday, so a day number modulo 7 counts the days since Sunday.
    return _iso_day(day - dt.timedelta(days=day.toordinal() % 7))


def _month(day: dt.date) -> Group:
    return day.year * 12 + day.month - 1, f"{day.year}-{day.month:02d}", \
        f"{calendar.month_name[day.month]} {day.year}"


def _quarter(day: dt.date) -> Group:
    number = (day.month + 2) // 3
    return day.year * 4 + number, f"{day.year} Q{number}", f"Q{number} {day.year}"


def _year(day: dt.date) -> Group:
    return day.year, str(day.year), str(day.year)


#: date grouping -> the group of a day
DATE_GROUPS: dict[str, Callable[[dt.date], Group]] = {
    "day": _iso_day, "oneday": _iso_day, "fivedays": _fivedays, "week": _week,
    "month": _month, "quarter": _quarter, "year": _year,
}


def date_group(value: Any, kind: str, tz: ZoneInfo) -> Group:
    """``value``: an aware datetime (grouped by its date in ``tz``) or a ``YYYY-MM-DD`` string."""
    day = value.astimezone(tz).date() if isinstance(value, dt.datetime) else dt.date.fromisoformat(value)
    return DATE_GROUPS[kind](day)


class Grouper:
    """Groups one type's rows by a path: ``link_name`` names links, ``to_wire`` gives wire values."""

    def __init__(self, link_name: Callable[[dict], Any], to_wire: Callable[[str, str, Any], Any], tz: ZoneInfo):
        self.link_name = link_name
        self.to_wire = to_wire
        self.tz = tz

    def group(self, entity_type: str, path: str, data_type: str, kind: str, value: Any) -> Group:
        if value is None or value == [] or value == "":
            return EMPTY
        if kind == "exact":
            return self._exact(entity_type, path, data_type, value)
        if kind in NUMBER_WIDTHS:
            return number_group(value, kind)
        if kind in DATE_GROUPS:
            return date_group(value, kind, self.tz)
        if kind == "entitytype":
            if not isinstance(value, dict):
                raise FilterError(f"entitytype grouping needs an entity field, {path} is {data_type}")
            return value["type"], value["type"], value["type"]
        if kind == "firstletter":
            if isinstance(value, str):
                text = value
            else:
                text = str(self.link_name(value) if isinstance(value, dict) else value)
            letter = text[:1].upper()
            return letter, letter, letter
        raise FilterError(f"unknown grouping type {kind!r}")

    def _exact(self, entity_type: str, path: str, data_type: str, value: Any) -> Group:
        if data_type == "multi_entity":
            raise FilterError(f"can't group by the multi-entity field {path}")
        wire = self.to_wire(entity_type, path, value)
        if data_type != "entity":
            return value, wire, str(wire)
        name = self.link_name(value)
        return ((name or "").lower(), value["type"], value["id"]), wire, name or ""
