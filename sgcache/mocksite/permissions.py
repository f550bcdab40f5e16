"""The stand-in's permission groups: which projects, rows, types and fields each caller sees.

What is certain (the site's documentation and measurements of a live site; SITE-FACTS section 2,
docs/mocksite.rst): every person and script has one permission group (``permission_rule_set``,
a link to a ``PermissionRuleSet`` with a ``code``); the default groups are Admin, Manager,
Artist, Vendor and, for scripts, API Admin; an Artist sees only the projects it is assigned to,
yet a measured Artist with no assignment still read the template projects; a Vendor sees, in
its projects, only the Tasks assigned to it, the Shots and Assets of those Tasks, the Notes
addressed to it (To or CC) or written by it and the Versions it created; a refused type is
answered with a message naming the rule; ``sudo_as_login`` applies the impersonated person's
permissions; schemas are the same for every group ("rows collapse, fields do not").

Our reading, where the sources are silent: assignment is ``Project.users`` (not
``HumanUser.projects``); a template project is one whose name starts with "Template" (the demo
schema has no template flag); for an Artist a row whose ``project`` is None is visible, for a
Vendor such a row follows the Vendor's conditional rule like any other; a Vendor's Task counts
when the person itself (not one of its groups) is an assignee; which types and fields are
hidden (ApiUser and PermissionRuleSet; VENDOR_HIDDEN_FIELDS); a link to a row the caller cannot
see reads as no link everywhere (returned values, filters, deep paths: the caller's reads run
over a view of the data with those rows and links removed); a hidden field is left out of
returned entities and is a fault in filters, sorts and summaries; a person or script whose
``permission_rule_set`` is empty has its type's default group (DEFAULT_GROUPS).
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

#: The group of a person or script whose permission_rule_set is empty.
DEFAULT_GROUPS = {"HumanUser": "artist", "ApiUser": "api_admin"}


def is_template(project: dict) -> bool:
    return str(project.get("name") or "").startswith("Template")


def _names(links: Any, person: dict) -> bool:
    """Whether a link or a list of links points at ``person`` (type and id: a Group may share its id)."""
    links = links if isinstance(links, list) else [links]
    return any(isinstance(v, dict) and v.get("type") == person["type"] and v.get("id") == person["id"]
               for v in links)


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
        return {i for i, p in projects.items() if _names(p.get("users"), self.person) or is_template(p)}

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
        """The Vendor's conditional rule, for a row whose project it sees (or that has none)."""
        me = self.person
        if entity_type == "Task":
            return _names(row.get("task_assignees"), me)
        if entity_type in ("Shot", "Asset"):
            return row["id"] in self._assigned_entities(db).get(entity_type, set())
        if entity_type == "Note":
            return _names(row.get("addressings_to"), me) or _names(row.get("addressings_cc"), me) or \
                _names(row.get("created_by"), me)
        if entity_type == "Version":
            return _names(row.get("created_by"), me)
        return False

    def _assigned_entities(self, db: dict) -> dict[str, set[int]]:
        """type -> ids of the entities of the live Tasks the person sees (assigned, in its projects)."""
        if not hasattr(self, "_entities"):
            out: dict[str, set[int]] = {}
            for task in db.get("Task", {}).values():
                entity, project = task.get("entity"), task.get("project")
                if task.get("__retired") or not isinstance(entity, dict) or not _names(task.get("task_assignees"),
                                                                                       self.person):
                    continue
                if project is None or (isinstance(project, dict) and project.get("id") in self.projects):
                    out.setdefault(entity.get("type"), set()).add(entity.get("id"))
            self._entities = out
        return self._entities

    def scrub(self, schema: Schema, entity: dict) -> dict:
        """A returned entity as this caller may see it: hidden fields left out, links to rows it
        cannot see None (entity) or left out (multi-entity). Reads need only the first (they run
        over the view); a write's answer is built from the full data and needs both."""
        for name in [n for n in entity if n not in ("type", "id")]:
            value = entity[name]
            if hidden_hop(schema, self.group, entity["type"], name) is not None:
                del entity[name]
            elif _link_path(schema, entity["type"], name):
                if isinstance(value, dict) and not self.sees_link(value):
                    entity[name] = None
                elif isinstance(value, list):
                    entity[name] = [v for v in value if not isinstance(v, dict) or self.sees_link(v)]
        return entity


def _link_path(schema: Schema, entity_type: str, path: str) -> bool:
    """Whether ``path`` (``a`` or ``a.T.b``...) ends on an entity or multi-entity field."""
    parts = path.split(".")
    while len(parts) >= 3 and parts[1] in schema:
        entity_type, parts = parts[1], parts[2:]
    f = schema[entity_type].fields.get(parts[0]) if entity_type in schema and len(parts) == 1 else None
    return f is not None and f.data_type in ("entity", "multi_entity")


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
