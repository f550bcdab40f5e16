"""Applies the permission groups to callers: each user's group, the view of the data a restricted
caller has, and the faults for reads and writes it may not make (the rules are in
:mod:`sgcache.mocksite.permissions`).
"""

from __future__ import annotations

from typing import Any

from sgcache.mocksite.accounts import Caller
from sgcache.mocksite.emulator import Emulator
from sgcache.mocksite.faults import Fault
from sgcache.mocksite.ledger import Ledger
from sgcache.mocksite.permissions import DEFAULT_GROUPS, GROUPS, Group, View, hidden_hop
from sgcache.schema.model import Schema

#: argument -> the key naming a field in each of its items, for the paths a read names
_READ_PATH_KEYS = (("sorts", "field_name"), ("summaries", "field"), ("grouping", "field"))


def _refused(what: str, group: Group) -> Fault:
    return Fault(f"{what} can not be accessed by this user. Rule: {group.display_name}")


def _filter_paths(filters: Any, paths: list[str]) -> None:
    """Add the path of every condition of wire ``filters`` (nested groups too) to ``paths``."""
    if isinstance(filters, dict):
        for cond in filters.get("conditions") or ():
            if isinstance(cond, dict) and "conditions" in cond:
                _filter_paths(cond, paths)
            elif isinstance(cond, dict) and isinstance(cond.get("path"), str):
                paths.append(cond["path"])


class Access:
    """Permission checks on one site's schema and rows; views are remade when ``ledger.version`` moves."""

    def __init__(self, schema: Schema, emu: Emulator, ledger: Ledger):
        self.schema = schema
        self.emu = emu
        self.ledger = ledger
        #: (person type, id, group code) -> (data version, what that person sees)
        self._views: dict[tuple[str, int, str], tuple[int, View]] = {}

    def rule_set(self, code: str) -> dict | None:
        """The link to the permission group with this code (None when the schema has none)."""
        if code not in GROUPS:
            raise ValueError(f"unknown permission group {code!r} (known: {', '.join(GROUPS)})")
        rows = self.emu.table("PermissionRuleSet") if self.emu.has_table("PermissionRuleSet") else {}
        for rid, row in rows.items():
            if row.get("code") == code:
                return {"type": "PermissionRuleSet", "id": rid}
        return None

    def group_of(self, user: dict) -> Group | None:
        """The permission group of a HumanUser or ApiUser, read from its row now (its type's
        default when the field is empty); None when the schema has no permission groups."""
        if "PermissionRuleSet" not in self.schema or user["type"] not in self.schema \
                or "permission_rule_set" not in self.schema[user["type"]].fields:
            return None
        row = self.emu.table(user["type"]).get(user["id"]) or {}
        link = row.get("permission_rule_set")
        if not isinstance(link, dict):
            return GROUPS.get(DEFAULT_GROUPS.get(user["type"], ""))
        rule_set = self.emu.table("PermissionRuleSet").get(link.get("id"))
        return GROUPS.get(rule_set.get("code")) if rule_set else None

    def view(self, caller: Caller) -> View:
        """What a restricted caller sees, made once per person and data version."""
        key = (caller.user["type"], caller.user["id"], caller.group.code)
        held = self._views.get(key)
        if held is not None and held[0] == self.ledger.version:
            return held[1]
        view = View(self.schema, self.emu.tables, caller.group, caller.user)
        if len(self._views) > 16:
            self._views.clear()
        self._views[key] = (self.ledger.version, view)
        return view

    def check_type(self, caller: Caller, entity_type: str) -> None:
        """The fault for a type hidden from the caller's group (before any other check of the call)."""
        group = caller.group
        if group is not None and entity_type in group.hidden_types:
            raise _refused(f"Entity of type {entity_type}", group)

    def check_read(self, caller: Caller, method: str, args: Any) -> None:
        """Faults for a read a restricted caller may not make: a hidden type, a hidden field in
        filters, sorts, summaries or groupings."""
        group = caller.group
        if not isinstance(args, dict) or not isinstance(args.get("type"), str):
            return
        entity_type = args["type"]
        self.check_type(caller, entity_type)
        paths: list[str] = []
        _filter_paths(args.get("filters"), paths)
        for key, name in _READ_PATH_KEYS:
            for spec in args.get(key) or ():
                if isinstance(spec, dict) and isinstance(spec.get(name), str):
                    paths.append(spec[name])
        for path in paths:
            hidden = hidden_hop(self.schema, group, entity_type, path)
            if hidden is not None:
                raise _refused(f"API {method}() {hidden[0]}.{hidden[1]}", group)

    def check_write(self, caller: Caller, method: str, entity_type: str, entity_id: Any = None,
                    data: dict | None = None) -> None:
        """Faults for a write a restricted caller may not make (nothing is written)."""
        group = caller.group
        if group is None:
            return
        self.check_type(caller, entity_type)
        view = self.view(caller)
        if entity_id is not None and entity_id not in view.visible.get(entity_type, ()):
            raise _refused(f"API {method}() {entity_type} {entity_id}", group)
        for name, value in (data or {}).items():
            if (entity_type, name) in group.hidden_fields:
                raise _refused(f"API {method}() {entity_type}.{name}", group)
            if name == "project" and isinstance(value, dict) and value.get("id") not in view.projects:
                raise _refused(f"API {method}() project {value.get('id')}", group)
