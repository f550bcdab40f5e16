"""The checks a setting's value must pass once it has its type: each says why a value is wrong, or None.

Every check carries ``describe``: what it accepts, as the settings reference's type column shows
it (reStructuredText).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

#: What a permission group may get from the cache (auth.groups).
GROUP_MODES = ("all", "visible_projects", "passthrough")


class Check:
    """A check made of a test and the one reason given when the test fails."""

    def __init__(self, describe: str, test: Callable[[Any], bool], problem: str, doc: str | None = None):
        self.describe = describe
        self.test = test
        self.problem = problem
        self.__doc__ = doc

    def __call__(self, value: Any) -> str | None:
        return None if self.test(value) else self.problem

    def __repr__(self) -> str:
        return f"Check({self.describe!r})"


def described(text: str):
    """Give a check whose reasons name the value it refused its ``describe``."""
    def mark(check):
        check.describe = text
        return check
    return mark


def _matches(pattern: str) -> Callable[[str], bool]:
    return lambda value: re.match(pattern, value) is not None


url = Check("URL", _matches(r"^https?://[^/\s]+"), "expected an http:// or https:// URL")
database_url = Check("``postgresql://`` or ``sqlite:///`` URL", _matches(r"^(sqlite|postgresql)(\+\w+)?://"),
                     "expected a sqlite:/// or postgresql:// URL")
check_bind = Check("``HOST:PORT`` or ``unix:PATH``",
                   lambda value: value.startswith("unix:")
                   or _matches(r"^(\[[0-9a-fA-F:]+\]|[^:\s]+):\d{1,5}$")(value),
                   "expected HOST:PORT (or unix:PATH)",
                   doc="Why ``value`` is not a gunicorn bind address, or None when it is one.")
positive = Check("number, greater than 0", lambda value: value > 0, "expected a number greater than 0")
at_least_one = Check("integer, at least 1", lambda value: value >= 1, "expected an integer of at least 1")
not_negative = Check("number, at least 0", lambda value: value >= 0, "expected a number of at least 0")
connections = Check("integer, 1 to 32", lambda value: 1 <= value <= 32, "expected an integer from 1 to 32",
                    doc="Connections to the site opened at once by one command: more than 32 only gets a "
                        "site's throttling sooner.")
#: ``90d``, ``12h``, ``30m``, ``3600s``; ``0``: for ever.
DURATION = re.compile(r"(0|[1-9]\d*[smhd])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(value: str) -> float:
    """Seconds of a checked duration (``0``: 0)."""
    return 0.0 if value == "0" else float(int(value[:-1]) * _SECONDS[value[-1]])


duration = Check("duration: ``N`` then ``s``, ``m``, ``h`` or ``d`` (``90d``), or ``0``",
                 lambda value: DURATION.fullmatch(value) is not None,
                 "expected a duration such as 90d, 12h, 30m or 3600s (or 0)")
share = Check("number from 0 to 1", lambda value: 0 <= value <= 1, "expected a number from 0 to 1")


@described("IANA time zone name")
def timezone(value: str) -> str | None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return "expected an IANA time zone name such as UTC or America/Los_Angeles"
    return None


@described("mapping of group codes to ``all``, ``visible_projects`` or ``passthrough``")
def group_modes(value: dict[str, str]) -> str | None:
    for code, mode in value.items():
        if mode not in GROUP_MODES:
            return f"each group's mode must be all, visible_projects or passthrough (see {code!r})"
    return None


@described("list of networks (``10.0.0.0/8``, ``127.0.0.1``)")
def networks(value: list[str]) -> str | None:
    import ipaddress

    for item in value:
        try:
            ipaddress.ip_network(str(item), strict=False)
        except ValueError:
            return f"expected networks such as 10.0.0.0/8 or 127.0.0.1, got {item!r}"
    return None
