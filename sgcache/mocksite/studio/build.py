"""Building a studio: :class:`_Studio` (every planner in one) plans it all in order, then the plan is
loaded into the site and the demo logins are added."""

from __future__ import annotations

import random

from sgcache.mocksite.site import MockSite
from sgcache.mocksite.studio.load import load
from sgcache.mocksite.studio.logins import assign_demo_people
from sgcache.mocksite.studio.model import _Owner, _Project
from sgcache.mocksite.studio.notes import _NotePlanner
from sgcache.mocksite.studio.projects import _ProjectPlanner
from sgcache.mocksite.studio.reviews import _ReviewPlanner
from sgcache.mocksite.studio.shots import _ShotPlanner
from sgcache.mocksite.studio.staff import _StaffPlanner
from sgcache.mocksite.studio.tasks import _TaskPlanner


def build_studio(site: MockSite, scale: int = 1, seed: int = 0) -> dict[str, int]:
    """Load a studio into ``site`` (no events); return how many entities of each type were created.

    ``scale`` 1 is about 5,000 entities, 20 about 100,000; the same ``seed`` gives the same data.
    """
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    studio = _Studio(site, scale, random.Random(seed))
    studio.plan()
    counts = load(site, studio.refs)
    for entity_type, n in assign_demo_people(site, random.Random(seed + 1)).items():
        counts[entity_type] = counts.get(entity_type, 0) + n
    return counts


class _Studio(_StaffPlanner, _ProjectPlanner, _ShotPlanner, _TaskPlanner, _ReviewPlanner, _NotePlanner):
    """Plans every entity of the studio, in an order that keeps the random draws the same."""

    def plan(self) -> None:
        self.plan_import_script()
        self.plan_departments()
        self.plan_people()
        self.plan_permission_groups()
        self.plan_groups()
        self.plan_steps()
        self.plan_file_types()
        self.plan_storages()
        for project, shots, assets in self.plan_projects():
            self.plan_production(project, shots, assets)

    def plan_production(self, project: _Project, shot_count: int, asset_count: int) -> None:
        assets = self.plan_assets(project, asset_count)
        sequences, shots = self.plan_shots(project, shot_count, assets)
        owners = [*assets, *shots, _Owner(project.ref, project.tank, "Project", project, f"{project.tank}/editorial",
                                          project.start, project.work_start)]
        for owner in owners:
            self.plan_tasks(owner)
        self.settle_statuses(assets, sequences, shots)
        versions = [v for owner in owners for task in owner.tasks for v in self.plan_versions(task)]
        self.plan_playlists(project, versions)
        self.plan_notes(project, versions, shots)
        for owner in owners:
            for task in owner.tasks:
                self.plan_time_logs(task)
        self.plan_disk_locations(project, assets, sequences)
