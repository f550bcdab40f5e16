"""Planning the projects: how many, their share of the work, their dates, status and people."""

from __future__ import annotations

import datetime as dt

from sgcache.mocksite.studio.model import _Person, _Project, _slug, _weekday
from sgcache.mocksite.studio.names import PROJECT_NAMES
from sgcache.mocksite.studio.planner import _Planner
from sgcache.mocksite.studio.specs import ANCHOR, ASSETS_PER_SCALE, HISTORY_START, SHOTS_PER_SCALE


class _ProjectPlanner(_Planner):
    """Projects: the first archived, the second still bidding, the others mid-production."""

    def plan_projects(self) -> list[tuple[_Project, int, int]]:
        """Projects with their share of shots and assets: the first is archived, the second still bidding."""
        count = 3 + (self.scale + 1) // 2
        kinds = ["archived", "bidding", *["active"] * (count - 2)]
        weights = [0.7, 0.2, *[self.rng.uniform(0.7, 1.4) for _ in range(count - 2)]]
        total = sum(weights)
        out = []
        for i, (kind, weight) in enumerate(zip(kinds, weights, strict=True)):
            name = PROJECT_NAMES[i % len(PROJECT_NAMES)]
            if i >= len(PROJECT_NAMES):
                name = f"{name} {i // len(PROJECT_NAMES) + 1}"
            shots = max(3, round(SHOTS_PER_SCALE * self.scale * weight / total))
            assets = max(2, round(ASSETS_PER_SCALE * self.scale * weight / total))
            # Active projects at evenly spread stages (jittered), so the studio's size varies little by seed.
            stage = (i - 2 + self.rng.uniform(0.2, 0.8)) / (count - 2)
            out.append((self.plan_project(name, kind, shots, stage), shots, assets))
        return out

    def plan_project(self, name: str, kind: str, shots: int, stage: float) -> _Project:
        """One project; ``stage`` (0 to 1): how far into production an active project is."""
        rng = self.rng
        # Active projects are caught mid-production: some work done, some under way, some ahead.
        if kind == "archived":
            start = HISTORY_START + dt.timedelta(days=rng.uniform(25, 60))
            now = start + dt.timedelta(days=rng.uniform(330, 420))
            work_start = (start + dt.timedelta(days=14)).date()
            delivery = (now - dt.timedelta(days=10)).date()
        elif kind == "bidding":
            start = ANCHOR - dt.timedelta(days=rng.uniform(30, 75))
            now, work_start = ANCHOR, (ANCHOR + dt.timedelta(days=rng.uniform(14, 45))).date()
            delivery = work_start + dt.timedelta(days=rng.uniform(150, 300))
        else:
            start = ANCHOR - dt.timedelta(days=120 + 440 * stage)
            now, work_start = ANCHOR, (start + dt.timedelta(days=rng.uniform(14, 40))).date()
            delivery = (ANCHOR + dt.timedelta(days=300 - 240 * stage)).date()
        project = _Project(None, name, _slug(name), self.moment(start, start + dt.timedelta(hours=8)), now,
                           _weekday(work_start), delivery, kind == "archived",
                           "archive" if kind == "archived" else "primary")
        project.people = self.project_people(project)
        status = {"archived": ("Hold", "Active"), "bidding": ("Bidding",), "active": ("Active",)}[kind]
        project_type = rng.choice(self.choices("Project", "sg_type") or [None])
        lead = self.person("Production", project, lead=True)
        project.ref = self.add("Project", {
            "name": name, "tank_name": project.tank, "archived": project.archived,
            "sg_status": self.prefer("Project", "sg_status", *status), "sg_type": project_type,
            "sg_description": f"{project_type or 'Project'}, about {shots} shots.",
            "color": f"{rng.randint(40, 220)},{rng.randint(40, 220)},{rng.randint(40, 220)}",
            "users": [p.ref for p in project.people],
        }, project.start, lead.ref if lead else None)
        return project

    def project_people(self, project: _Project) -> list[_Person]:
        """Who works on a project: leads and production always, most others who had joined by then."""
        joined_by = project.start + dt.timedelta(days=45)
        return [p for p in self.people if p.joined <= joined_by and
                (p.lead or p.department == "Production" or self.rng.random() < (0.75 if p.active else 0.3))]
