"""Planning what a project makes: assets, sequences and shots (with cut data and the assets they
use), and the folders made for them (disk locations)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from sgcache.mocksite.studio.model import _at, _by, _Owner, _Project, _Ref, _slug, _weekday
from sgcache.mocksite.studio.names import ACTIONS, ASSET_NAMES, ASSET_WEIGHTS, FRAMINGS, SHOT_TAGS
from sgcache.mocksite.studio.planner import _Planner
from sgcache.mocksite.studio.specs import STORAGES


class _ShotPlanner(_Planner):
    """A project's assets, sequences and shots, scheduled over its production period."""

    def schedule(self, project: _Project, share: float, lead_days: float = 56) -> dt.date:
        """When work begins on something at ``share`` (0 to 1) of the project's production period."""
        period = max(0, (project.delivery - project.work_start).days - lead_days)
        return _weekday(project.work_start + dt.timedelta(days=period * share))

    def arrival(self, project: _Project, begin: dt.date) -> dt.datetime:
        """When something whose work begins on ``begin`` was created: weeks before, and never after "now"."""
        day = begin - dt.timedelta(days=self.rng.randint(5, 30))
        day = min(day, (project.now - dt.timedelta(days=self.rng.randint(1, 12))).date())
        day = max(_weekday(day), project.start.date())
        t = _at(day, 9) + dt.timedelta(seconds=self.rng.randint(0, 9 * 3600))
        return min(max(t, project.start + dt.timedelta(hours=1)), project.now - dt.timedelta(hours=1))

    def plan_assets(self, project: _Project, count: int) -> list[_Owner]:
        kinds = self.choices("Asset", "sg_asset_type") or [None]
        weights = [ASSET_WEIGHTS.get((k or "other").lower(), 1.0) for k in kinds]
        coordinator = self.person("Production", project)
        used: Counter[str] = Counter()
        assets = []
        for _ in range(count):
            kind = self.rng.choices(kinds, weights)[0]
            keyword = (kind or "other").lower() if (kind or "other").lower() in ASSET_NAMES else "other"
            base = self.rng.choice(ASSET_NAMES[keyword])
            used[base] += 1
            code = base if used[base] == 1 else f"{base}_{used[base]:02d}"
            # Assets are built in the first half of production, before the shots that use them.
            begin = self.schedule(project, self.rng.uniform(0, 0.45), lead_days=30)
            created = self.arrival(project, begin)
            ref = self.add("Asset", {
                "code": code, "project": project.ref, "sg_asset_type": kind,
                "description": f"{kind or 'Asset'} {code} for {project.name}",
            }, created, coordinator.ref if coordinator else None)
            folder = f"{project.tank}/assets/{_slug(kind or 'asset')}/{code}"
            assets.append(_Owner(ref, code, "Asset", project, folder, created, begin, asset_kind=keyword))
        return assets

    def plan_shots(self, project: _Project, count: int,
                   assets: list[_Owner]) -> tuple[list[tuple[_Ref | None, list[_Owner]]], list[_Owner]]:
        """Sequences of 12 to 22 shots on average, turned over one after the other; (sequences, shots)."""
        rng = self.rng
        seq_count = max(1, round(count / rng.uniform(12, 22)))
        sizes = [1] * seq_count
        for _ in range(count - seq_count):
            sizes[rng.randrange(seq_count)] += 1
        by = self.import_script or _by(self.person("Editorial", project))
        sequences: list[tuple[_Ref | None, list[_Owner]]] = []
        shots: list[_Owner] = []
        order = 0
        for k, size in enumerate(sizes):
            code = f"SQ{(k + 1) * 10:03d}"
            # Sequences go through the pipeline one after the other, turned over a few weeks ahead.
            begin = self.schedule(project, (k + rng.uniform(0, 0.5)) / seq_count)
            created = self.arrival(project, begin)
            cast = self.sequence_cast(assets)
            place = cast.get("environment", [None])[0]
            description = f"{place.code if place else 'Opening'} sequence"
            seq = self.add("Sequence", {"code": code, "project": project.ref, "description": description}, created, by)
            members = []
            for n in range(size):
                order += 1
                # The turnover script makes a sequence's shots in cut order, a few seconds apart.
                shot_created = created + dt.timedelta(seconds=20 * (n + 1) + rng.randint(0, 15))
                shot_begin = begin + dt.timedelta(days=rng.randint(0, 10))
                members.append(self.plan_shot(project, seq, code, n, order, shot_created, shot_begin, cast, by))
            sequences.append((seq, members))
            shots += members
            self.link_sequence_assets(seq, cast)
        return sequences, shots

    def sequence_cast(self, assets: list[_Owner]) -> dict[str, list[_Owner]]:
        """The assets a sequence uses, by kind: a few characters, one or two sets, some props and vehicles."""
        by_kind: dict[str, list[_Owner]] = {}
        for asset in assets:
            by_kind.setdefault(asset.asset_kind, []).append(asset)
        limits = {"character": 3, "environment": 2, "prop": 4, "vehicle": 1, "matte painting": 1, "other": 2}
        return {kind: self.rng.sample(pool, min(len(pool), self.rng.randint(1, limits.get(kind, 2))))
                for kind, pool in by_kind.items()}

    def link_sequence_assets(self, seq: _Ref | None, cast: dict[str, list[_Owner]]) -> None:
        # Asset.sequences is set on the asset; the site fills Sequence.assets back.
        if seq is None:
            return
        for pool in cast.values():
            for asset in pool:
                if asset.ref is not None:
                    asset.ref.data.setdefault("sequences", []).append(seq)

    def plan_shot(self, project: _Project, seq: _Ref | None, seq_code: str, n: int, order: int,
                  created: dt.datetime, begin: dt.date, cast: dict[str, list[_Owner]], by: Any) -> _Owner:
        rng = self.rng
        number = (n + 1) * 10 if rng.random() > 0.05 else (n + 1) * 10 - 5  # an inserted shot now and then
        code = f"{seq_code}_SH{number:04d}"
        cut = self.cut_data()
        linked = self.shot_assets(cast)
        character = next((a.code for a in linked if a.asset_kind == "character"), "the crowd")
        place = next((a.code for a in linked if a.asset_kind == "environment"), None)
        description = f"{rng.choice(FRAMINGS)} of {character} {rng.choice(ACTIONS)}" + (f" in the {place}" if place
                                                                                          else "")
        tags = rng.sample(SHOT_TAGS, rng.randint(1, 2)) if rng.random() < 0.25 else None
        retired = rng.random() < 0.03
        ref = self.add("Shot", {
            "code": code, "project": project.ref, "sg_sequence": seq, "description": description, "tag_list": tags,
            "sg_cut_order": order, "assets": [a.ref for a in linked], **cut,
        }, created, by, retired)
        working = (cut["sg_head_in"], cut["sg_tail_out"])
        return _Owner(ref, code, "Shot", project, f"{project.tank}/sequences/{seq_code}/{code}", created, begin,
                      (cut["sg_cut_in"], cut["sg_cut_out"]), working,
                      characters=any(a.asset_kind == "character" for a in linked), retired=retired)

    def cut_data(self) -> dict[str, int]:
        """Cut, head and tail frames that agree with each other (in at 1001, 8 frame handles mostly)."""
        duration = self.rng.randint(24, 240)
        handles = self.rng.choice((8, 8, 8, 12, 16))
        cut_in = 1001
        cut_out = cut_in + duration - 1
        head_in, tail_out = cut_in - handles, cut_out + handles
        return {
            "sg_cut_in": cut_in, "sg_cut_out": cut_out, "sg_cut_duration": duration,
            "sg_head_in": head_in, "sg_tail_out": tail_out, "sg_working_duration": tail_out - head_in + 1,
            "cut_in": cut_in, "cut_out": cut_out, "cut_duration": duration,
            "head_in": head_in, "head_out": cut_in - 1, "head_duration": handles,
            "tail_in": cut_out + 1, "tail_out": tail_out, "tail_duration": handles,
        }

    def shot_assets(self, cast: dict[str, list[_Owner]]) -> list[_Owner]:
        rng = self.rng
        wanted = {"character": (0.85, 2), "environment": (0.9, 1), "prop": (0.5, 2), "vehicle": (0.15, 1),
                  "matte painting": (0.2, 1), "other": (0.2, 1)}
        out = []
        for kind, pool in cast.items():
            chance, most = wanted.get(kind, (0.2, 1))
            if pool and rng.random() < chance:
                out += rng.sample(pool, min(len(pool), rng.randint(1, most)))
        return out

    def plan_disk_locations(self, project: _Project, assets: list[_Owner],
                            sequences: list[tuple[_Ref | None, list[_Owner]]]) -> None:
        """CustomEntity01 ("Disk Location" on the demo site): the folders made for sequences and assets."""
        if not self.has("CustomEntity01", "project"):
            return
        storage_ref, storage = self.storages.get(project.storage, (None, STORAGES[0]))
        folders = [(a.ref, a.folder, a.created) for a in assets]
        folders += [(seq, f"{project.tank}/sequences/{seq.data['code']}", seq.created_at)
                    for seq, _ in sequences if seq is not None]
        for ref, folder, created in folders:
            if ref is None:
                continue
            name = folder.rsplit("/", 1)[-1]
            self.add("CustomEntity01", {
                "code": folder, "project": project.ref, "sg_entity": ref, "description": f"Folder of {name}",
                "sg_path": {"url": f"file://{storage[1]}/{folder}", "name": name, "link_type": "local",
                            "local_path": f"{storage[1]}/{folder}", "local_storage": storage_ref,
                            "content_type": None},
                "sg_relative_path": folder, "sg_root": project.storage, "sg_entity_type_1": ref.type,
                "sg_name_at_creation": name, "sg_type_at_creation": ref.type,
                "sg_status_list": self.status("CustomEntity01", "sg_status_list", "cmpt"),
            }, created + dt.timedelta(minutes=self.rng.randint(5, 600)), self.import_script)
