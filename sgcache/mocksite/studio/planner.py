"""The base of every planner: the plan's state, the schema helpers, ``add`` (plan one entity),
``moment`` (a random working time) and ``person`` (someone of a department)."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from sgcache.mocksite.site import MockSite
from sgcache.mocksite.studio.model import _Person, _Project, _Ref
from sgcache.mocksite.studio.specs import ANCHOR, STATUS_ALIASES


class _Planner:
    """The state every part of the plan shares; the planners of each kind of entity derive from it."""

    def __init__(self, site: MockSite, scale: int, rng: random.Random):
        self.site = site
        self.scale = scale
        self.rng = rng
        self.refs: list[_Ref] = []
        self.people: list[_Person] = []
        self.departments: dict[str, _Ref | None] = {}
        self.team_groups: dict[str, _Ref | None] = {}  # department name -> its team's Group
        self.steps: dict[str, _Ref | None] = {}
        self.file_types: dict[str, _Ref | None] = {}
        self.storages: dict[str, tuple[_Ref | None, tuple]] = {}
        self.import_script: _Ref | None = None
        self._status_cache: dict[tuple[str, str, str], str | None] = {}

    def has(self, entity_type: str, field_name: str | None = None) -> bool:
        schema = self.site.schema
        return entity_type in schema and (field_name is None or field_name in schema[entity_type].fields)

    def choices(self, entity_type: str, field_name: str) -> list[str]:
        """The field's valid values, without the placeholders sites ship ("(this list can be customized)")."""
        if not self.has(entity_type, field_name):
            return []
        return [v for v in self.site.schema[entity_type].fields[field_name].valid_values
                if isinstance(v, str) and "(" not in v and "..." not in v and not v.lower().startswith("this list")]

    def status(self, entity_type: str, field_name: str, canonical: str) -> str | None:
        """The field's code for a canonical status (None: leave the field at its default)."""
        key = (entity_type, field_name, canonical)
        if key not in self._status_cache:
            valid = self.choices(entity_type, field_name)
            self._status_cache[key] = next((c for c in STATUS_ALIASES.get(canonical, (canonical,)) if c in valid),
                                           None)
        return self._status_cache[key]

    def prefer(self, entity_type: str, field_name: str, *wanted: str) -> str | None:
        valid = self.choices(entity_type, field_name)
        return next((w for w in wanted if w in valid), None)

    def add(self, entity_type: str, data: dict, at: dt.datetime, by: Any = None, retired: bool = False) -> _Ref | None:
        """Plan one entity (None if the schema has no such type); nothing is created after the anchor."""
        if entity_type not in self.site.schema:
            return None
        ref = _Ref(entity_type, data, min(at, ANCHOR - dt.timedelta(minutes=1)), by, retired)
        self.refs.append(ref)
        return ref

    def moment(self, lo: dt.datetime, hi: dt.datetime) -> dt.datetime:
        """A random time between ``lo`` and ``hi``, moved into working hours when there is room."""
        if hi <= lo:
            return lo
        t = lo + (hi - lo) * self.rng.random()
        if not 8 <= t.hour < 20:
            t = t.replace(hour=self.rng.randint(9, 18))
        return min(max(t, lo), hi).replace(microsecond=0)

    def person(self, department: str, project: _Project, *, lead: bool = False) -> _Person | None:
        """Someone (the lead) of ``department`` on the project, else anywhere in the studio."""
        for pool in (project.people, self.people):
            found = [p for p in pool if p.department == department and (p.lead or not lead)]
            if found:
                return self.rng.choice(found)
        return None
