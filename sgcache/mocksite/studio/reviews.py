"""Planning the work done on tasks and its review: versions (with frame ranges and paths), the
files published with them, and weekly dailies and client review playlists."""

from __future__ import annotations

import datetime as dt

from sgcache.mocksite.studio.model import _at, _by, _Person, _Project, _slug, _Task, _Version, _weekday
from sgcache.mocksite.studio.names import VERSION_NOTES
from sgcache.mocksite.studio.planner import _Planner
from sgcache.mocksite.studio.specs import FILE_TYPES, STORAGE_ROOTS, STORAGES


class _ReviewPlanner(_Planner):
    """Versions, published files and playlists."""

    def plan_versions(self, task: _Task) -> list[_Version]:
        owner, rng = task.owner, self.rng
        # The tasks of a retired shot keep their versions (links may point at retired entities).
        if task.ref is None or task.status in ("wtg", "rdy"):
            return []
        lo = _at(task.start, 9)
        hi = min(_at(task.due, 19), owner.project.now - dt.timedelta(hours=1))
        if hi <= lo:
            return []
        low, high = task.step.versions
        count = {"fin": rng.randint(low, high), "ip": rng.randint(1, max(1, high - 1)),
                 "hld": rng.randint(0, 1)}.get(task.status, 0)
        times = sorted(self.moment(lo, hi) for _ in range(count))
        out = []
        for number, created in enumerate(times, start=1):
            last = number == count
            out.append(self.plan_version(task, number, created, last))
        return out

    def plan_version(self, task: _Task, number: int, created: dt.datetime, last: bool) -> _Version:
        owner, step, rng = task.owner, task.step, self.rng
        user = self.artist(task)
        code = f"{owner.code}_{step.short.lower()}_v{number:03d}"
        reviewed = not last or task.status == "fin"
        status = "rev" if not reviewed else ("vwd" if rng.random() < 0.85 else "na")
        first, final = owner.working if step.code in ("FX", "Light", "Comp") else owner.frames
        prod_root = STORAGE_ROOTS.get(owner.project.storage, STORAGES[0][1])
        render_root = prod_root if owner.project.archived else STORAGE_ROOTS["renders"]
        folder = f"{owner.folder}/{step.short.lower()}"
        data = {
            "code": code, "entity": owner.ref, "sg_task": task.ref, "project": owner.project.ref,
            "user": user.ref if user else None, "sg_status_list": self.status("Version", "sg_status_list", status),
            "description": rng.choice(VERSION_NOTES) if number > 1 else "First pass",
            "sg_first_frame": first, "sg_last_frame": final, "frame_count": final - first + 1,
            "frame_range": f"{first}-{final}", "sg_department": step.department,
            "sg_path_to_frames": f"{render_root}/{folder}/images/v{number:03d}/{code}.%04d.exr",
            "sg_path_to_movie": f"{prod_root}/{folder}/review/{code}.mov", "sg_frames_aspect_ratio": 1.85,
            "sg_movie_aspect_ratio": 1.85, "sg_uploaded_movie_frame_rate": 24.0,
        }
        if owner.kind == "Project":  # an edit: no frame range of its own
            for name in ("sg_first_frame", "sg_last_frame", "frame_count", "frame_range", "sg_path_to_frames"):
                data.pop(name)
        retired = rng.random() < 0.03
        ref = self.add("Version", data, created, user.ref if user else None, retired)
        version = _Version(ref, task, code, created, user, reviewed and not retired)
        self.plan_publishes(version, number, retired)
        return version

    def artist(self, task: _Task) -> _Person | None:
        """Who did the work: an assignee, or someone of the assigned team."""
        people = [a for a in task.assignees if isinstance(a, _Person)]
        if people:
            return self.rng.choice(people)
        return self.person(task.step.department, task.owner.project)

    def plan_publishes(self, version: _Version, number: int, retired: bool) -> None:
        """The work file, and sometimes a cache or render, published just before the version."""
        step = version.task.step
        kinds = [step.work_type]
        if step.extra_type and self.rng.random() < 0.35:
            kinds.append(step.extra_type)
        for minutes, kind in enumerate(kinds, start=2):
            self.plan_publish(version, number, kind, version.created - dt.timedelta(minutes=minutes), retired)

    def plan_publish(self, version: _Version, number: int, kind: str, created: dt.datetime, retired: bool) -> None:
        task, owner = version.task, version.task.owner
        _, _, ext, content_type, storage_code = next(t for t in FILE_TYPES if t[0] == kind)
        if owner.project.archived:
            storage_code = "archive"
        storage_ref, storage = self.storages.get(storage_code, (None, STORAGES[0]))
        frames = ".%04d" if kind == "Rendered Image" else ""
        base = f"{owner.code}_{task.step.short.lower()}"
        filename = f"{base}_v{number:03d}{frames}.{ext}"
        rel = f"{owner.folder}/{task.step.short.lower()}/publish/{_slug(kind)}/{filename}"
        linux, mac, windows = storage[1], storage[2], storage[3]
        path = {
            "url": f"file://{linux}/{rel}", "name": filename, "link_type": "local", "local_path": f"{linux}/{rel}",
            "local_path_linux": f"{linux}/{rel}", "local_path_mac": f"{mac}/{rel}",
            "local_path_windows": windows + "\\" + rel.replace("/", "\\"), "local_storage": storage_ref,
            "content_type": content_type,
        }
        self.add("PublishedFile", {
            "code": filename, "name": f"{base}{frames}.{ext}", "entity": owner.ref, "task": task.ref,
            "version": version.ref, "published_file_type": self.file_types.get(kind), "path": path,
            "path_cache": rel, "path_cache_storage": storage_ref, "version_number": number,
            "project": owner.project.ref, "sg_status_list": self.status("PublishedFile", "sg_status_list", "cmpt"),
            "description": version.ref.data.get("description") if version.ref else None,
        }, created, version.user.ref if version.user else None, retired)

    def plan_playlists(self, project: _Project, versions: list[_Version]) -> None:
        """Weekly dailies (shots and assets apart) and, every fourth week, a client review."""
        if not versions:
            return
        weeks: dict[tuple[int, bool], list[_Version]] = {}
        first_day = min(v.created for v in versions).date()
        for v in versions:
            if v.ref is not None and not v.ref.retired and v.task.owner.kind != "Project":
                weeks.setdefault(((v.created.date() - first_day).days // 7, v.task.owner.kind == "Shot"), []).append(v)
        for (week, shots), pool in sorted(weeks.items()):
            day = _weekday(first_day + dt.timedelta(days=7 * week + 7))
            picked = self.rng.sample(pool, min(len(pool), 15))
            name = "Dailies" if shots else "Asset Review"
            self.plan_playlist(project, f"{day.isoformat()} {name}", day, picked)
            if shots and week % 4 == 3:
                finals = [v for v in pool if v.task.status == "fin"]
                if finals:
                    self.plan_playlist(project, f"{day.isoformat()} Client Review", day, finals[:10])

    def plan_playlist(self, project: _Project, code: str, day: dt.date, versions: list[_Version]) -> None:
        review = _at(day, 15)
        coordinator = self.person("Production", project)
        ref = self.add("Playlist", {
            "code": code, "project": project.ref, "sg_date_and_time": review,
            "description": f"{len(versions)} versions for review",
            "sg_status": self.status("Playlist", "sg_status", "clsd" if review < project.now else "opn"),
            "versions": [v.ref for v in versions],
        }, min(_at(day, 10), project.now - dt.timedelta(minutes=30)), _by(coordinator))
        for v in versions:
            if v.playlist is None:
                v.playlist = ref
