"""A deterministic, realistic VFX / animation studio for the stand-in site.

:func:`build_studio` fills a :class:`~sgcache.mocksite.site.MockSite` with two years of a studio's
history: departments, people, groups, pipeline steps, published file types and storages; several
projects (one archived, one still bidding) with sequences, shots (with cut data), assets of several
types linked to shots, tasks with assignees, dates and bids, versions with frame ranges, published
files with local paths, playlists, notes with replies, time logs and disk locations; and a few
percent of retired shots, tasks, versions and notes.

Why: the tests, the demo (``--data demo``) and the benchmarks need a site that looks like a real
one, at sizes from about 5,000 entities (scale 1) to 100,000 (scale 20) and beyond, and exactly
the same every time for one seed. Nothing depends on the clock or the global random generator:
every date is placed before :data:`ANCHOR`.

How: everything is planned first (so, for example, a shot's status can follow its tasks), then
loaded type by type in :data:`LOAD_ORDER`, each type sorted by creation time, so ids grow with
``created_at`` as on a real site. Loading goes through ``MockSite.load_entity``: no events, and the
site keeps reverse links (``Sequence.shots``, ``Version.playlists``, ``Shot.notes``...) in step, so
only one side of each pair is set here. Any type, field or list value the schema lacks is skipped,
so a smaller schema gets a smaller studio rather than an error.

The parts, each importing only those listed before it: ``specs`` (dates, sizes, load order,
departments, steps, file types, storages) and ``names`` (names and texts); ``model`` (the planned
entities and the date helpers); ``planner`` (the base every planner derives from); one planner per
kind of entity: ``staff``, ``projects``, ``shots``, ``tasks``, ``reviews``, ``notes``; ``load`` (the
plan into the site); ``logins`` (the demo people); ``build`` (:func:`build_studio`).
"""

from __future__ import annotations

from sgcache.mocksite.studio.build import build_studio
from sgcache.mocksite.studio.logins import DEMO_PEOPLE, assign_demo_people
from sgcache.mocksite.studio.specs import (
    ANCHOR,
    ASSETS_PER_SCALE,
    HISTORY_START,
    LOAD_ORDER,
    SHOTS_PER_SCALE,
    USERS,
    USERS_PER_SCALE,
)

__all__ = [
    "ANCHOR", "ASSETS_PER_SCALE", "DEMO_PEOPLE", "HISTORY_START", "LOAD_ORDER", "SHOTS_PER_SCALE", "USERS",
    "USERS_PER_SCALE", "assign_demo_people", "build_studio",
]
