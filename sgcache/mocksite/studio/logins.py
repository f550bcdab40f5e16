"""The demo logins: one person per permission group, with what they are assigned to."""

from __future__ import annotations

import datetime as dt
import random

from sgcache.mocksite.site import MockSite
from sgcache.mocksite.studio.specs import ANCHOR

#: The people of the demo studio who can log in, one per permission group (docs/mocksite.rst).
DEMO_PEOPLE = (("admin", "admin-password", "Ada Admin", "admin"),
               ("manager", "manager-password", "Max Manager", "manager"),
               ("artist", "artist-password", "Ann Artist", "artist"),
               ("vendor", "vendor-password", "Vic Vendor", "vendor"))


def _link_both(site: MockSite, project: dict, person: dict) -> None:
    """Add ``person`` to ``project``'s users, and the project to the person's projects (no events)."""
    db = site.emu.tables
    users = db["Project"][project["id"]].setdefault("users", [])
    if all(u["id"] != person["id"] for u in users):
        users.append({"type": "HumanUser", "id": person["id"]})
    if "projects" in site.schema["HumanUser"].fields:
        projects = db["HumanUser"][person["id"]].setdefault("projects", []) or []
        db["HumanUser"][person["id"]]["projects"] = projects
        if all(p["id"] != project["id"] for p in projects):
            projects.append({"type": "Project", "id": project["id"]})


def assign_demo_people(site: MockSite, rng: random.Random) -> dict[str, int]:
    """Add the demo logins (one per permission group) and what they work on.

    ``artist`` is on two of the active projects, ``vendor`` on one, with six tasks assigned
    (shot and asset tasks), notes addressed to it and versions it made; a "Template Project"
    nobody is assigned to shows the template rule.
    """
    added: dict[str, int] = {}
    if "PermissionRuleSet" not in site.schema or not site.emu.has_table("Project"):
        return added
    from sgcache.mocksite.site import Human

    db = site.emu.tables
    logins = {h.login for h in site.humans.values()}
    people = {}
    for k, (login, password, name, group) in enumerate(DEMO_PEOPLE):
        if login not in logins:
            human = site.add_human(Human(login, password, name, group=group))
            # Dated just before the anchor, as the studio's last hires: nothing depends on the clock.
            row = db["HumanUser"][human.id]
            row["created_at"] = row["updated_at"] = ANCHOR - dt.timedelta(minutes=30 - k)
            added["HumanUser"] = added.get("HumanUser", 0) + 1
        people[login] = {"type": "HumanUser", "id": site.humans[login].id}
    template = site.load_entity("Project", {"name": "Template Project"}, created_at=ANCHOR - dt.timedelta(minutes=20))
    added["Project"] = 1
    active = sorted(i for i, p in db["Project"].items() if not p.get("archived") and i != template
                    and p.get("sg_status") in (None, "Active") and not p["__retired"])
    if not active:
        return added
    for project_id in active[:2]:
        _link_both(site, {"id": project_id}, people["artist"])
    vendor_project = active[-1]
    _link_both(site, {"id": vendor_project}, people["vendor"])

    def in_project(entity_type: str) -> list[dict]:
        rows = db.get(entity_type, {}).values()
        return [r for r in rows if not r["__retired"] and (r.get("project") or {}).get("id") == vendor_project]

    vendor = {"type": "HumanUser", "id": people["vendor"]["id"]}
    tasks = in_project("Task")
    on_assets = [t for t in tasks if (t.get("entity") or {}).get("type") == "Asset"]
    on_shots = [t for t in tasks if (t.get("entity") or {}).get("type") == "Shot"]
    picked = rng.sample(on_assets, min(2, len(on_assets)))
    for task in picked + rng.sample(on_shots, min(6 - len(picked), len(on_shots))):
        task["task_assignees"] = [*(task.get("task_assignees") or []), vendor]
    notes = in_project("Note")
    for note in rng.sample(notes, min(3, len(notes))):
        note["addressings_to"] = [*(note.get("addressings_to") or []), vendor]
    versions = in_project("Version")
    for version in rng.sample(versions, min(2, len(versions))):
        version["created_by"] = vendor
    site.version += 1
    return added
