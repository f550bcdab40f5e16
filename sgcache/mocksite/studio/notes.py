"""Planning what is said and logged about the work: notes (on versions and shots) with their
replies, and time logs on tasks."""

from __future__ import annotations

import datetime as dt

from sgcache.mocksite.studio.model import _at, _by, _Owner, _Person, _Project, _Ref, _Task, _Version, _weekday
from sgcache.mocksite.studio.names import NOTE_TEXTS, REPLY_TEXTS, TIME_LOG_TEXTS
from sgcache.mocksite.studio.planner import _Planner


class _NotePlanner(_Planner):
    """Notes, replies and time logs."""

    def plan_notes(self, project: _Project, versions: list[_Version], shots: list[_Owner]) -> None:
        rng = self.rng
        for v in versions:
            if v.reviewed and rng.random() < (0.45 if v.playlist is not None else 0.2):
                lead = self.person(v.task.step.department, project, lead=True)
                if lead is v.user:  # the lead's own work is reviewed by a producer
                    lead = self.person("Production", project)
                links = [v.ref, v.task.owner.ref]
                # Notes on a version in a playlist are written in that review.
                after = max(v.created, v.playlist.data["sg_date_and_time"]) if v.playlist else v.created
                self.plan_note(project, lead, v.user, links, [v.task.ref], after, v.playlist, v.code)
        for shot in shots:
            if shot.ref is not None and rng.random() < 0.05:
                # A client note on the shot itself (its edit, its brief), not on a version.
                producer = self.person("Production", project)
                after = shot.created + dt.timedelta(days=rng.randint(2, 60))
                self.plan_note(project, producer, None, [shot.ref], [], after, None, shot.code, client=True)

    def plan_note(self, project: _Project, author: _Person | None, to: _Person | None, links: list, tasks: list,
                  after: dt.datetime, playlist: _Ref | None, about: str, client: bool = False) -> None:
        rng = self.rng
        latest = project.now - dt.timedelta(minutes=5)
        if after + dt.timedelta(hours=1) >= latest:
            return  # what it is about only just happened: no note yet
        created = min(self.moment(after + dt.timedelta(hours=1), after + dt.timedelta(days=3)), latest)
        author_name = author.name if author else "Production"
        subject = f"{author_name}'s Note on {about}"
        recent = (project.now - created).days < 14
        status = ("opn" if rng.random() < 0.6 else "ip") if recent else ("clsd" if rng.random() < 0.85 else "opn")
        note_type = self.prefer("Note", "sg_note_type", "Client" if client or rng.random() < 0.15 else "Internal")
        producer = self.person("Production", project) if rng.random() < 0.2 else None
        cc = [producer.ref] if producer else []
        ref = self.add("Note", {
            "subject": subject, "content": rng.choice(NOTE_TEXTS), "project": project.ref,
            "note_links": links, "tasks": tasks, "addressings_to": [to.ref] if to else [],
            "addressings_cc": cc, "user": author.ref if author else None, "sg_note_type": note_type,
            "sg_status_list": self.status("Note", "sg_status_list", status), "playlist": playlist,
        }, created, _by(author), rng.random() < 0.03)
        replies = rng.choices((0, 1, 2, 3), (0.35, 0.4, 0.2, 0.05))[0]
        when = created
        for i in range(replies):
            who = (to if i % 2 == 0 else author) or author
            when = self.moment(when + dt.timedelta(minutes=20), when + dt.timedelta(days=2))
            if when >= project.now:
                break
            self.add("Reply", {"entity": ref, "content": rng.choice(REPLY_TEXTS), "user": who.ref if who else None},
                     when, _by(who))

    def plan_time_logs(self, task: _Task) -> None:
        if task.ref is None or task.ref.retired or task.status in ("wtg", "rdy"):
            return
        end = min(task.due, task.owner.project.now.date() - dt.timedelta(days=1))
        people = [a for a in task.assignees if isinstance(a, _Person)]
        if end < task.start or not people:
            return
        count = self.rng.randint(1, 3) if task.status == "fin" else self.rng.randint(0, 2)
        span = (end - task.start).days
        for _ in range(count):
            day = _weekday(task.start + dt.timedelta(days=self.rng.randint(0, span)))
            who = self.rng.choice(people)
            if day > end:
                continue
            self.add("TimeLog", {
                "date": day.isoformat(), "duration": self.rng.choice((60, 120, 180, 240, 240, 360, 480, 480)),
                "entity": task.ref, "user": who.ref, "project": task.owner.project.ref,
                "description": self.rng.choice(TIME_LOG_TEXTS),
            }, _at(day, 18, self.rng.randint(0, 59)), _by(who))
