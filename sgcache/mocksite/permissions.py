"""The stand-in's permission groups: which projects, rows, types and fields each caller sees.

What is certain (the site's documentation and measurements of a live site, see docs/mocksite.rst):
every person and script has one permission group (``permission_rule_set``, a
``PermissionRuleSet`` with a ``code``); the default groups are Admin, Manager, Artist, Vendor and,
for scripts, API Admin; an Artist sees only the projects it is assigned to, yet a measured Artist
with no assignment still read the template projects; a Vendor sees, in its projects, only the
Tasks assigned to it, the Shots and Assets of those Tasks, the Notes addressed to it or written
by it and the Versions it created; a refused type is answered with a message naming the rule;
``sudo_as_login`` applies the impersonated person's permissions; schemas are the same for every
group ("rows collapse, fields do not").

Our reading, where the sources are silent: a row whose ``project`` is None is visible to
project-limited groups; a link to a row the caller cannot see reads as no link everywhere
(returned values, filters, deep paths: the caller's reads run over a view of the data with
those rows and links removed); a hidden field is left out of returned entities and is a fault
in filters, sorts and summaries; a template project is one whose name starts with "Template".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sgcache.schema.model import Schema


@dataclass(frozen=True)
class Group:
    """One permission group's rules."""

    code: str
    display_name: str
    entity_type: str  # HumanUser or ApiUser
    #: "all", or "assigned": projects the person is in (Project.users) plus template projects
    projects: str = "all"
    hidden_types: frozenset[str] = frozenset()
    #: (entity type, field) pairs the group is not shown
    hidden_fields: frozenset[tuple[str, str]] = frozenset()
    #: the Vendor rule: in its projects, only what is assigned to the person
    assigned_only: bool = False

    @property
    def restricted(self) -> bool:
        return self.projects != "all" or bool(self.hidden_types) or bool(self.hidden_fields) or self.assigned_only


_HIDDEN_TYPES = frozenset({"ApiUser", "PermissionRuleSet"})
#: The fields the Vendor group is not shown.
VENDOR_HIDDEN_FIELDS = frozenset({("Task", "est_in_mins"), ("Shot", "sg_cut_duration"), ("Version", "sg_status_list"),
                                  ("HumanUser", "email")})

GROUPS: dict[str, Group] = {g.code: g for g in (
    Group("admin", "Admin", "HumanUser"),
    Group("manager", "Manager", "HumanUser"),
    Group("artist", "Artist", "HumanUser", projects="assigned", hidden_types=_HIDDEN_TYPES),
    Group("vendor", "Vendor", "HumanUser", projects="assigned", hidden_types=_HIDDEN_TYPES,
          hidden_fields=VENDOR_HIDDEN_FIELDS, assigned_only=True),
    Group("api_admin", "API Admin", "ApiUser"),
)}

#: Types a Vendor sees in its projects, and how: the rest of the project types show nothing.
_VENDOR_TYPES = ("Task", "Shot", "Asset", "Note", "Version", "Project")


def is_template(project: dict) -> bool:
    return str(project.get("name") or "").startswith("Template")


def _ids(links: Any) -> set[int]:
    return {v["id"] for v in links or () if isinstance(v, dict) and isinstance(v.get("id"), int)}


def _has(schema: Schema, entity_type: str, field: str) -> bool:
    return entity_type in schema and field in schema[entity_type].fields


class View:
    """What one restricted person sees of the site's rows: ``db`` and ``ids`` in the emulator's
    own shapes, with invisible rows left out and links to them removed."""

    def __init__(self, schema: Schema, db: dict[str, dict[int, dict]], group: Group, person: dict):
        self.group = group
        self.person = person
        self.visible: dict[str, set[int]] = {}
        self.projects = self._projects(db)
        for entity_type, rows in db.items():
            self.visible[entity_type] = {i for i, row in rows.items() if self._sees(schema, db, entity_type, row)}
        self.db: dict[str, dict[int, dict]] = {}
        self.ids: dict[str, list[int]] = {}
        links = {t: [(n, f.data_type) for n, f in schema[t].fields.items() if f.data_type in ("entity",
                                                                                          "multi_entity")]
                 for t in db if t in schema}
        for entity_type, rows in db.items():
            kept = {}
            for i in sorted(self.visible[entity_type]):
                kept[i] = self._without_hidden_links(rows[i], links.get(entity_type, ()))
            self.db[entity_type] = kept
            self.ids[entity_type] = sorted(kept)

    def sees_link(self, link: Any) -> bool:
        return isinstance(link, dict) and link.get("id") in self.visible.get(link.get("type"), ())

    def _without_hidden_links(self, row: dict, links: list[tuple[str, str]]) -> dict:
        changed: dict[str, Any] = {}
        for name, data_type in links:
            value = row.get(name)
            if data_type == "entity":
                if value is not None and not self.sees_link(value):
                    changed[name] = None
            elif value:
                kept = [v for v in value if self.sees_link(v)]
                if len(kept) != len(value):
                    changed[name] = kept
        return {**row, **changed} if changed else row

    def _projects(self, db: dict[str, dict[int, dict]]) -> set[int]:
        projects = db.get("Project", {})
        if self.group.projects == "all":
            return set(projects)
        me = self.person["id"]
        return {i for i, p in projects.items() if me in _ids(p.get("users")) or is_template(p)}

    def _sees(self, schema: Schema, db: dict, entity_type: str, row: dict) -> bool:
        group = self.group
        if entity_type in group.hidden_types:
            return False
        if entity_type == "Project":
            return row["id"] in self.projects
        if not _has(schema, entity_type, "project"):
            return True
        project = row.get("project")
        if project is not None and (not isinstance(project, dict) or project.get("id") not in self.projects):
            return False
        if not group.assigned_only:
            return True
        return self._assigned(db, entity_type, row)

    def _assigned(self, db: dict, entity_type: str, row: dict) -> bool:
        me = self.person["id"]
        if entity_type == "Task":
            return me in _ids(row.get("task_assignees"))
        if entity_type in ("Shot", "Asset"):
            return row["id"] in self._assigned_entities(db).get(entity_type, set())
        if entity_type == "Note":
            created_by = row.get("created_by") or {}
            return me in _ids(row.get("addressings_to")) | _ids(row.get("addressings_cc")) or \
                (created_by.get("type") == "HumanUser" and created_by.get("id") == me)
        if entity_type == "Version":
            created_by = row.get("created_by") or {}
            return created_by.get("type") == "HumanUser" and created_by.get("id") == me
        return False

    def _assigned_entities(self, db: dict) -> dict[str, set[int]]:
        if not hasattr(self, "_entities"):
            me = self.person["id"]
            out: dict[str, set[int]] = {}
            for task in db.get("Task", {}).values():
                entity = task.get("entity")
                if me in _ids(task.get("task_assignees")) and isinstance(entity, dict):
                    out.setdefault(entity.get("type"), set()).add(entity.get("id"))
            self._entities = out
        return self._entities


def hidden_hop(schema: Schema, group: Group, entity_type: str, path: str) -> tuple[str, str] | None:
    """The first (type, field) of ``path`` (``a`` or ``a.T.b``...) hidden from ``group``, if any."""
    parts = path.split(".")
    while parts:
        if (entity_type, parts[0]) in group.hidden_fields:
            return entity_type, parts[0]
        if len(parts) < 3:
            return None
        entity_type, parts = parts[1], parts[2:]
    return None
