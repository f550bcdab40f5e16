"""What a plan is made of: :class:`_Ref` (one planned entity) and the records the planners pass
around (people, projects, owners of tasks, tasks, versions), with the date and path helpers."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from sgcache.mocksite.studio.specs import _StepSpec


class _Ref:
    """One planned entity; ``id`` is set when it is loaded."""

    __slots__ = ("type", "data", "created_at", "created_by", "retired", "id")

    def __init__(self, entity_type: str, data: dict, created_at: dt.datetime, created_by: Any, retired: bool):
        self.type = entity_type
        self.data = data
        self.created_at = created_at
        self.created_by = created_by
        self.retired = retired
        self.id: int | None = None


@dataclass
class _Person:
    ref: _Ref | None
    name: str
    department: str
    active: bool
    lead: bool
    joined: dt.datetime


@dataclass
class _Project:
    ref: _Ref | None
    name: str
    tank: str
    start: dt.datetime
    now: dt.datetime  # the anchor, or the day an archived project ended
    work_start: dt.date  # when tasks begin (a bidding project's are in the future)
    delivery: dt.date  # when the last shot is due (past for the archived one)
    archived: bool
    storage: str
    people: list[_Person] = field(default_factory=list)


@dataclass
class _Owner:
    """What tasks hang off: a shot, an asset or a project."""

    ref: _Ref | None
    code: str
    kind: str
    project: _Project
    folder: str
    created: dt.datetime
    begin: dt.date  # when its first task starts
    frames: tuple[int, int] = (1, 120)  # cut range (shots) or a turntable
    working: tuple[int, int] = (1, 120)  # head in to tail out
    asset_kind: str = "other"  # assets: the keyword of their type
    characters: bool = False  # shots: a character is in it (so it needs animation)
    retired: bool = False
    status: str = "wtg"  # canonical, once the tasks are planned
    tasks: list[_Task] = field(default_factory=list)


@dataclass
class _GroupPick:
    """A task assigned to a whole team (a Group) rather than to people."""

    ref: _Ref | None


@dataclass
class _Task:
    ref: _Ref | None
    owner: _Owner
    step: _StepSpec
    start: dt.date
    due: dt.date
    status: str
    assignees: list[_Person | _GroupPick]


@dataclass
class _Version:
    ref: _Ref | None
    task: _Task
    code: str
    created: dt.datetime
    user: _Person | None
    reviewed: bool
    playlist: _Ref | None = None


# --- dates, folder names, authors --------------------------------------------------------------


def _weekday(day: dt.date) -> dt.date:
    """The day, or the Monday after it if it falls on a weekend."""
    return day + dt.timedelta(days=max(0, 7 - day.weekday())) if day.weekday() >= 5 else day


def _add_workdays(day: dt.date, count: int) -> dt.date:
    weeks, rest = divmod(count, 5)
    day += dt.timedelta(weeks=weeks)
    for _ in range(rest):
        day = _weekday(day + dt.timedelta(days=1))
    return day


def _workdays(start: dt.date, end: dt.date) -> int:
    """Working days from ``start`` to ``end``, both included."""
    days = (end - start).days + 1
    if days <= 0:
        return 0
    weeks, rest = divmod(days, 7)
    extra = sum(1 for i in range(rest) if (start.weekday() + i) % 7 < 5)
    return weeks * 5 + extra


def _at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=dt.UTC)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _by(person: _Person | None) -> _Ref | None:
    """created_by for something a person made."""
    return person.ref if person else None
