"""Planning tasks: which steps a shot, asset or project gets, their dates, bids, statuses and
assignees; then the shot, asset and sequence statuses that follow from them."""

from __future__ import annotations

import datetime as dt

from sgcache.mocksite.studio.model import (
    _add_workdays,
    _by,
    _GroupPick,
    _Owner,
    _Person,
    _Project,
    _Ref,
    _Task,
    _weekday,
    _workdays,
)
from sgcache.mocksite.studio.planner import _Planner
from sgcache.mocksite.studio.specs import ASSET_STEP_CHANCE, SHOT_STEP_CHANCE, STEPS, _StepSpec


class _TaskPlanner(_Planner):
    """The tasks of each owner, walking the pipeline steps in order."""

    def plan_tasks(self, owner: _Owner) -> None:
        if owner.ref is None:
            return
        rng = self.rng
        if owner.kind == "Shot":
            chances = dict(SHOT_STEP_CHANCE)
            if not owner.characters:
                chances["Anm"] = 0.2
        elif owner.kind == "Asset":
            chances = ASSET_STEP_CHANCE.get(owner.asset_kind, ASSET_STEP_CHANCE["other"])
        else:
            chances = {"Editorial": 1.0}
        cursor = max(owner.begin, owner.project.work_start)
        for step in STEPS:
            if step.entity_type != owner.kind or rng.random() >= chances.get(step.code, 0.0):
                continue
            start = _weekday(cursor)
            days = rng.randint(*step.days)
            owner.tasks.append(self.plan_task(owner, step, rng.choice(step.tasks), start, days, owner.retired))
            # The next step starts before this one is done (the pipeline overlaps).
            cursor = _add_workdays(start, max(1, round(days * rng.uniform(0.4, 0.8))))
        if rng.random() < 0.03 and owner.tasks:
            # A duplicate made by mistake and deleted: retired, with no versions.
            first = owner.tasks[0]
            self.plan_task(owner, first.step, first.step.tasks[0], first.start, 3, True)

    def plan_task(self, owner: _Owner, step: _StepSpec, content: str, start: dt.date, days: int,
                  retired: bool) -> _Task:
        due = _add_workdays(start, days - 1)
        status = self.task_status(start, due, owner.project.now.date())
        if owner.project.archived and status != "fin":
            status = "hld"  # never finished: left on hold when the project closed
        assignees = self.assignees(owner.project, step, status)
        bid = max(60, round(days * 480 * self.rng.uniform(0.7, 1.2) / 60) * 60)
        # Made with the shot or asset, from the task template.
        created = min(self.moment(owner.created, owner.created + dt.timedelta(days=2)), owner.project.now)
        ref = self.add("Task", {
            "content": content, "entity": owner.ref, "step": self.steps.get(step.code), "project": owner.project.ref,
            "sg_status_list": self.status("Task", "sg_status_list", status),
            "task_assignees": [a.ref for a in assignees], "start_date": start.isoformat(),
            "due_date": due.isoformat(), "est_in_mins": bid, "duration": _workdays(start, due) * 480,
        }, created, _by(self.person("Production", owner.project)), retired)
        return _Task(ref, owner, step, start, due, status, assignees)

    def task_status(self, start: dt.date, due: dt.date, today: dt.date) -> str:
        r = self.rng.random()
        if due < today:
            return "fin" if r < 0.93 else "ip"  # a few run late
        if start <= today:
            return "ip" if r < 0.7 else "rdy" if r < 0.8 else "hld" if r < 0.87 else "fin"
        return "wtg" if r < 0.85 else "rdy"

    def assignees(self, project: _Project, step: _StepSpec, status: str) -> list[_Person | _GroupPick]:
        """One artist of the step's department (active, unless the work is done), two sometimes, or the team."""
        rng = self.rng
        if rng.random() < 0.04 and self.team_groups.get(step.department) is not None:
            return [_GroupPick(self.team_groups[step.department])]
        pool = [p for p in project.people if p.department == step.department and (p.active or status == "fin")]
        pool = pool or [p for p in self.people if p.department == step.department and p.active]
        if not pool:
            return []
        return rng.sample(pool, min(len(pool), 2 if rng.random() < 0.08 else 1))

    def settle_statuses(self, assets: list[_Owner], sequences: list[tuple[_Ref | None, list[_Owner]]],
                        shots: list[_Owner]) -> None:
        """Shot, asset and sequence statuses follow their tasks (and a few shots are omitted or on hold)."""
        for owner in [*assets, *shots]:
            status = self.owner_status([t.status for t in owner.tasks])
            r = self.rng.random()
            if owner.kind == "Shot" and (owner.retired or r < 0.03):
                status = "omt"
                for task in owner.tasks:
                    if task.status != "fin":
                        self.set_task_status(task, "hld")
            elif r < 0.05 and status != "fin":
                status = "hld"
            elif owner.kind == "Shot" and status == "fin" and r < 0.1:
                status = "cbb"
            owner.status = status
            if owner.ref is not None:
                owner.ref.data["sg_status_list"] = self.status(owner.ref.type, "sg_status_list", status)
        for seq, members in sequences:
            if seq is not None:
                seq_status = self.owner_status([shot.status for shot in members])
                seq.data["sg_status_list"] = self.status("Sequence", "sg_status_list", seq_status)

    def set_task_status(self, task: _Task, status: str) -> None:
        task.status = status
        if task.ref is not None:
            task.ref.data["sg_status_list"] = self.status("Task", "sg_status_list", status)

    @staticmethod
    def owner_status(statuses: list[str]) -> str:
        live = [s for s in statuses if s not in ("omt",)]
        if not live:
            return "wtg"
        if all(s in ("fin", "cbb") for s in live):
            return "fin"
        if any(s in ("ip", "fin", "cbb") for s in live):
            return "ip"
        return "rdy" if any(s == "rdy" for s in live) else "wtg"
