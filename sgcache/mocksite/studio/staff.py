"""Planning the studio itself: the import script, departments, people and their permission
groups, teams, pipeline steps, published file types and storages."""

from __future__ import annotations

import datetime as dt
import re

from sgcache.mocksite.studio.model import _Person
from sgcache.mocksite.studio.names import FIRST_NAMES, LAST_NAMES
from sgcache.mocksite.studio.planner import _Planner
from sgcache.mocksite.studio.specs import (
    DEPARTMENTS,
    FILE_TYPES,
    HISTORY_START,
    STEPS,
    STORAGES,
    USERS,
    USERS_PER_SCALE,
)


class _StaffPlanner(_Planner):
    """The studio-wide entities, planned before any project."""

    def plan_import_script(self) -> None:
        # Shots and sequences come in from editorial through a script, as at most studios.
        self.import_script = self.add("ApiUser", {
            "firstname": "editorial-import", "lastname": "2.3", "description": "EDL / XML turnover importer",
            "email": "pipeline@studio.example", "generate_event_log_entries": True,
            **self.permission_group("ApiUser", "api_admin")}, HISTORY_START)

    def plan_departments(self) -> None:
        for i, spec in enumerate(DEPARTMENTS):
            self.departments[spec.name] = self.add("Department", {
                "name": spec.name, "code": spec.code, "color": spec.color, "list_order": i + 1,
                "sg_status_list": self.status("Department", "sg_status_list", "act"),
            }, HISTORY_START + dt.timedelta(hours=i))

    def plan_people(self) -> None:
        count = USERS + USERS_PER_SCALE * (self.scale - 1)
        combinations = len(FIRST_NAMES) * len(LAST_NAMES)
        pairs = self.rng.sample(range(combinations), min(count, combinations))
        logins: set[str] = set()
        weights = [d.weight for d in DEPARTMENTS]
        for i in range(count):
            pair = pairs[i % len(pairs)]
            first, last = FIRST_NAMES[pair % len(FIRST_NAMES)], LAST_NAMES[pair // len(FIRST_NAMES)]
            if i >= len(pairs):
                last = f"{last} {i // len(pairs) + 1}"
            # The first of each department is its lead; everyone else by department size.
            dept = DEPARTMENTS[i] if i < len(DEPARTMENTS) else self.rng.choices(DEPARTMENTS, weights)[0]
            self.people.append(self.plan_person(first, last, dept.name, i < len(DEPARTMENTS), logins, i < 0.7 * count))

    def plan_person(self, first: str, last: str, department: str, lead: bool, logins: set[str],
                    founder: bool) -> _Person:
        login = re.sub(r"[^a-z0-9]", "", (first[0] + last).lower())
        while login in logins:
            login += "2"
        logins.add(login)
        # Most people were there from the start; the others joined over the two years.
        joined = HISTORY_START + (dt.timedelta(days=self.rng.uniform(0, 20)) if founder else
                                  dt.timedelta(days=self.rng.uniform(20, 700)))
        joined = self.moment(joined, joined + dt.timedelta(hours=8))
        active = lead or self.rng.random() > 0.07
        name = f"{first} {last}"
        ref = self.add("HumanUser", {
            "login": login, "name": name, "firstname": first, "lastname": last, "email": f"{login}@studio.example",
            "department": self.departments.get(department),
            "sg_status_list": self.status("HumanUser", "sg_status_list", "act" if active else "dis"),
        }, joined)
        return _Person(ref, name, department, active, lead, joined)

    def permission_group(self, entity_type: str, code: str) -> dict:
        """``{"permission_rule_set": link}`` when the schema has permission groups, else nothing."""
        if entity_type not in self.site.schema or "permission_rule_set" not in self.site.schema[entity_type].fields:
            return {}
        link = self.site.rule_set(code)
        return {"permission_rule_set": link} if link else {}

    def plan_permission_groups(self) -> None:
        """Production and the Animation and Compositing leads are managers; the last FX and
        Compositing hires are vendors (freelancers); everyone else is an artist."""
        vendors = []
        for department in ("FX", "Compositing"):
            hires = [p for p in self.people if p.department == department and not p.lead]
            if hires:
                vendors.append(max(hires, key=lambda p: p.joined))
        for person in self.people:
            if person.ref is None:
                continue
            if person.department == "Production" or (person.lead and person.department in ("Animation",
                                                                                              "Compositing")):
                code = "manager"
            elif any(person is v for v in vendors):
                code = "vendor"
            else:
                code = "artist"
            person.ref.data.update(self.permission_group("HumanUser", code))

    def plan_groups(self) -> None:
        at = HISTORY_START + dt.timedelta(days=21)
        for spec in DEPARTMENTS:
            members = [p.ref for p in self.people if p.department == spec.name]
            if spec.name in ("Production", "Editorial", "Pipeline") or not members:
                continue
            self.team_groups[spec.name] = self.add("Group", {"code": f"{spec.name} Team", "users": members}, at)
        leads = [p.ref for p in self.people if p.lead and p.department not in ("Production", "Pipeline")]
        self.add("Group", {"code": "Supervisors", "users": leads}, at)
        office = [p.ref for p in self.people if p.department in ("Production", "Editorial")]
        self.add("Group", {"code": "Production", "users": office}, at)

    def plan_steps(self) -> None:
        for i, spec in enumerate(STEPS):
            self.steps[spec.code] = self.add("Step", {
                "code": spec.code, "short_name": spec.short, "entity_type": spec.entity_type, "color": spec.color,
                "list_order": i + 1, "description": f"{spec.department} ({spec.entity_type} step)",
            }, HISTORY_START + dt.timedelta(days=1, minutes=i))

    def plan_file_types(self) -> None:
        for i, (code, short, ext, _, _) in enumerate(FILE_TYPES):
            self.file_types[code] = self.add("PublishedFileType", {
                "code": code, "short_name": short, "description": f"*.{ext} files",
                "sg_status_list": self.status("PublishedFileType", "sg_status_list", "cmpt"),
            }, HISTORY_START + dt.timedelta(days=1, hours=1, minutes=i))

    def plan_storages(self) -> None:
        for i, spec in enumerate(STORAGES):
            code, linux, mac, windows, description = spec
            ref = self.add("LocalStorage", {"code": code, "linux_path": linux, "mac_path": mac,
                                            "windows_path": windows + "\\", "description": description},
                           HISTORY_START + dt.timedelta(days=1, hours=2, minutes=i))
            self.storages[code] = (ref, spec)
