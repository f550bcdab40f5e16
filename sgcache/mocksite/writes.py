"""Writes of the stand-in site: create (with task templates), update, delete, revive and batch, each
all or nothing, with the fields the site maintains itself (ids, created/updated at and by), reverse
links and the event log.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sgcache.mocksite.access import Access
from sgcache.mocksite.accounts import Caller
from sgcache.mocksite.emulator import Emulator
from sgcache.mocksite.events import EventLog
from sgcache.mocksite.faults import Fault
from sgcache.mocksite.ledger import Ledger
from sgcache.mocksite.links import ReverseLinks
from sgcache.mocksite.values import Values, require_type
from sgcache.schema.model import Schema

# Fields a write may never set; created_* may be set on create (imports do that).
SYSTEM_FIELDS = {"id", "type", "updated_at", "updated_by"}
CREATE_ONLY = {"created_at", "created_by"}
#: Fields the schema marks read-only that callers who see everything may still set (the site's
#: admins and admin scripts change people's permission groups).
ADMIN_WRITABLE = {("HumanUser", "permission_rule_set"), ("ApiUser", "permission_rule_set")}
#: Task fields a task template's tasks pass on to the copies an entity gets
TEMPLATE_TASK_FIELDS = ("content", "step", "sg_status_list", "duration", "est_in_mins")


def _link(entity_type: str, entity_id: int) -> dict:
    return {"type": entity_type, "id": entity_id}


@dataclass(eq=False)
class Writer:
    """Writes rows of one site. ``entity_dict`` shapes a row as a write answers it."""

    values: Values
    ledger: Ledger
    events: EventLog
    links: ReverseLinks
    access: Access
    entity_dict: Callable[[str, dict, list[str]], dict]
    #: the caller of the RPC in progress (set by the site around each call, under its lock)
    current: Caller | None = None
    #: called with each HumanUser row written and the password it was given (None: unchanged),
    #: so that people made through the API can log in (see MockSite._user_written)
    user_written: Callable[[dict, str | None], None] | None = None

    @property
    def schema(self) -> Schema:
        return self.values.schema

    @property
    def emu(self) -> Emulator:
        return self.values.emu

    # --- the RPCs ----------------------------------------------------------------------------------

    def _run(self, method: str, caller: Caller, args: Any, write: Callable[[Caller, dict], Any]) -> Any:
        if not isinstance(args, dict):
            raise Fault(f"API {method}() expects a mapping of arguments")
        return self.ledger.transaction(lambda: write(caller, args))

    def rpc_create(self, caller: Caller, args: Any) -> dict:
        return self._run("create", caller, args, self.create)

    def rpc_update(self, caller: Caller, args: Any) -> dict:
        return self._run("update", caller, args, self.update)

    def rpc_delete(self, caller: Caller, args: Any) -> bool:
        return self._run("delete", caller, args, self.retire)

    def rpc_revive(self, caller: Caller, args: Any) -> bool:
        return self._run("revive", caller, args, self.revive)

    def rpc_batch(self, caller: Caller, args: Any) -> list:
        if not isinstance(args, list) or not all(isinstance(r, dict) for r in args):
            raise Fault("API batch() expects a list of requests")
        kinds = {"create": self.create, "update": self.update, "delete": self.retire}

        def run():
            results = []
            for index, request in enumerate(args):
                kind = request.get("request_type")
                try:
                    write = kinds.get(kind) if isinstance(kind, str) else None
                    if write is None:
                        raise Fault(f"unknown request_type {kind!r}")
                    results.append(write(caller, request))
                except Fault as e:
                    raise Fault(f"API batch() request {index} ({kind}) failed, nothing was applied: "
                                f"{e.message}", e.code) from None
            return results

        return self.ledger.transaction(run)

    # --- checks ----------------------------------------------------------------------------------

    def _fields_arg(self, method: str, args: dict) -> list[dict]:
        items = args.get("fields", [])
        if not isinstance(items, list) or not all(isinstance(i, dict) and isinstance(i.get("field_name"), str)
                                                  for i in items):
            raise Fault(f"API {method}() fields must be [{{field_name, value}}]")
        return items

    def _check_writable(self, method: str, entity_type: str, field_name: str, creating: bool) -> None:
        f = self.schema[entity_type].fields.get(field_name)
        if f is None:
            raise Fault(f"API {method}() {entity_type}.{field_name} doesn't exist")
        if field_name in SYSTEM_FIELDS or (field_name in CREATE_ONLY and not creating):
            raise Fault(f"API {method}() {entity_type}.{field_name} is set by the site and can't be written")
        if not f.editable and field_name not in CREATE_ONLY and not (
                (entity_type, field_name) in ADMIN_WRITABLE and self.current is not None
                and self.current.group is None):
            raise Fault(f"API {method}() {entity_type}.{field_name} is not editable")

    def existing(self, method: str, entity_type: str, entity_id: Any, *, live: bool = True) -> dict:
        if isinstance(entity_id, bool) or not isinstance(entity_id, int):
            raise Fault(f"API {method}() id must be an integer, got {entity_id!r}")
        row = self.emu.table(entity_type).get(entity_id)
        if row is None or (live and row["__retired"]):
            raise Fault(f"API {method}() {entity_type} with id {entity_id} doesn't exist")
        return row

    # --- create ----------------------------------------------------------------------------------

    def _password(self, method: str, entity_type: str, items: list[dict]) -> tuple[list[dict], str | None]:
        """``password_proxy`` taken out of a write's fields: a site accepts it on HumanUser (from a
        caller with no restricted permission group) although its schema says it is not
        editable. It is never stored in the row, returned or logged."""
        given = [i for i in items if i["field_name"] == "password_proxy"]
        if not given or entity_type != "HumanUser":
            return items, None
        if self.current is not None and self.current.group is not None:
            raise Fault(f"API {method}() HumanUser.password_proxy is not editable")
        password = given[-1].get("value")
        if not isinstance(password, str) or not password:
            raise Fault(f"API {method}() HumanUser.password_proxy must be a non-empty string")
        return [i for i in items if i["field_name"] != "password_proxy"], password

    def create(self, caller: Caller, args: dict) -> dict:
        entity_type = require_type(self.schema, "create", args)
        self.access.check_type(caller, entity_type)
        data = {}
        items, password = self._password("create", entity_type, self._fields_arg("create", args))
        for item in items:
            name = item["field_name"]
            self._check_writable("create", entity_type, name, creating=True)
            data[name] = self.values.to_row_value("create", entity_type, name, item.get("value"))
        return_fields = args.get("return_fields") or ["id"]
        if not isinstance(return_fields, list) or not all(isinstance(f, str) for f in return_fields):
            raise Fault("API create() return_fields must be a list of field names")
        self.access.check_write(caller, "create", entity_type, None, data)
        entity_id = self.insert(entity_type, data, caller, emit=caller.generate_events)
        template = data.get("task_template")
        if isinstance(template, dict) and template.get("type") == "TaskTemplate" and entity_type != "Task":
            self._apply_task_template(caller, entity_type, entity_id, template["id"])
        row = self.emu.table(entity_type)[entity_id]
        if entity_type == "HumanUser" and self.user_written is not None:
            self.user_written(row, password)
        # The site answers with the fields that were set plus the ones asked for.
        wanted = list(dict.fromkeys([*data, *[f for f in return_fields if f not in ("type", "id")]]))
        return self.entity_dict(entity_type, row, wanted)

    def _apply_task_template(self, caller: Caller, entity_type: str, entity_id: int, template_id: int) -> None:
        """Like the site, an entity created with a task template gets a copy of each of the
        template's tasks (the Tasks whose task_template is it and that belong to no entity)."""
        if "Task" not in self.schema:
            return
        task_fields = self.schema["Task"].fields
        owner = self.emu.table(entity_type)[entity_id]
        for task in sorted(self.emu.table("Task").values(), key=lambda r: r["id"]):
            linked = task.get("task_template") or {}
            if task.get("__retired") or task.get("entity") or linked.get("type") != "TaskTemplate" \
                    or linked.get("id") != template_id:
                continue
            data = {name: task[name] for name in TEMPLATE_TASK_FIELDS
                    if name in task_fields and task.get(name) is not None}
            data["entity"] = _link(entity_type, entity_id)
            if "project" in task_fields and isinstance(owner.get("project"), dict):
                data["project"] = _link("Project", owner["project"]["id"])
            if "template_task" in task_fields:
                data["template_task"] = _link("Task", task["id"])
            self.insert("Task", data, caller, emit=caller.generate_events)

    def _new_row(self, entity_type: str, caller: Caller | None, created_at: dt.datetime | None,
                 retired: bool) -> dict:
        """A row with its id and the fields the site stamps (not yet stored)."""
        row = self.emu.new_row(entity_type)
        row["id"] = self.emu.next_id(entity_type)
        row["type"] = entity_type
        row["__retired"] = retired
        fields = self.schema[entity_type].fields
        stamp = created_at or self.ledger.now()
        for name in ("created_at", "updated_at"):
            if name in fields:
                row[name] = stamp
        if caller is not None:
            for name in ("created_by", "updated_by"):
                if name in fields:
                    row[name] = dict(caller.user)
        return row

    def insert(self, entity_type: str, data: dict, caller: Caller | None, *,
               created_at: dt.datetime | None = None, retired: bool = False, emit: bool = False) -> int:
        """Add a row; with ``emit``, log New, then one in_create Change per field set (links after
        their back references' source event is reserved, so ids run in the site's order)."""
        row = self._new_row(entity_type, caller, created_at, retired)
        fields = self.schema[entity_type].fields
        links = {}
        for name, value in data.items():
            data_type = fields[name].data_type
            if data_type in ("entity", "multi_entity") and self.links.has_reverse(entity_type, name):
                links[name] = value
            elif data_type == "multi_entity":
                row[name] = [dict(v) for v in value or []]
            elif data_type == "entity":
                row[name] = dict(value) if value else None
            else:
                # Plain fields and links without a reverse side (project, ...) are in place before
                # New is logged, so every entry of the create names the project.
                row[name] = value
        self.ledger.touch(entity_type, row["id"])
        self.emu.insert_row(entity_type, row)
        if emit:
            self.events.new_entity(caller, entity_type, row)
        for name, value in data.items():
            if name in links:
                event_id = self.events.reserve() if emit else None
                added, removed = self.links.set(entity_type, row, name, value, caller, event_id)
                if emit:
                    self.events.attribute_change(caller, entity_type, row, name, None, row.get(name),
                                                 in_create=True, event_id=event_id, added=added, removed=removed)
            elif emit:
                self.events.attribute_change(caller, entity_type, row, name, None, row.get(name), in_create=True)
        return row["id"]

    # --- update ----------------------------------------------------------------------------------

    def update(self, caller: Caller, args: dict) -> dict:
        entity_type = require_type(self.schema, "update", args)
        self.access.check_type(caller, entity_type)
        row = self.existing("update", entity_type, args.get("id"))
        fields = self.schema[entity_type].fields
        changes = []
        items, password = self._password("update", entity_type, self._fields_arg("update", args))
        for item in items:
            name = item["field_name"]
            self._check_writable("update", entity_type, name, creating=False)
            value = self.values.to_row_value("update", entity_type, name, item.get("value"))
            mode = item.get("multi_entity_update_mode", args.get("multi_entity_update_mode", "set"))
            if fields[name].data_type == "multi_entity":
                value = _multi_entity_value(row.get(name) or [], value, mode)
            changes.append((name, value))
        self.access.check_write(caller, "update", entity_type, row["id"], dict(changes))
        self.ledger.touch(entity_type, row["id"])
        for name, value in changes:
            self._change(caller, entity_type, row, name, value)
        self._stamp_write(entity_type, row, caller)
        if entity_type == "HumanUser" and self.user_written is not None:
            self.user_written(row, password)
        return self.entity_dict(entity_type, row, [name for name, _ in changes])

    def _change(self, caller: Caller, entity_type: str, row: dict, name: str, value: Any) -> None:
        """Set one field of a row (when it changes) and log it."""
        old = copy.deepcopy(row.get(name))
        data_type = self.schema[entity_type].fields[name].data_type
        if data_type not in ("entity", "multi_entity"):
            if old == value:
                return
            row[name] = value
            if caller.generate_events:
                self.events.attribute_change(caller, entity_type, row, name, old, value)
            return
        if old == value or (data_type == "multi_entity" and (old or []) == (value or [])):
            return
        event_id = self.events.reserve() if caller.generate_events else None
        added, removed = self.links.set(entity_type, row, name, value, caller, event_id)
        if event_id is not None:
            self.events.attribute_change(caller, entity_type, row, name, old, row.get(name),
                                         event_id=event_id, added=added, removed=removed)

    def _stamp_write(self, entity_type: str, row: dict, caller: Caller) -> None:
        """Every write moves updated_at and updated_by (retiring and reviving too)."""
        fields = self.schema[entity_type].fields
        if "updated_at" in fields:
            row["updated_at"] = self.ledger.now()
        if "updated_by" in fields:
            row["updated_by"] = dict(caller.user)

    # --- retire and revive -----------------------------------------------------------------------

    def retire(self, caller: Caller, args: dict) -> bool:
        return self._set_retired(caller, args, "delete", True)

    def revive(self, caller: Caller, args: dict) -> bool:
        return self._set_retired(caller, args, "revive", False)

    def _set_retired(self, caller: Caller, args: dict, method: str, retired: bool) -> bool:
        """Retire or revive a row; False when it already was."""
        entity_type = require_type(self.schema, method, args)
        self.access.check_type(caller, entity_type)
        row = self.existing(method, entity_type, args.get("id"), live=False)
        self.access.check_write(caller, method, entity_type, row["id"])
        if bool(row["__retired"]) == retired:
            return False
        self.ledger.touch(entity_type, row["id"])
        row["__retired"] = retired
        self._stamp_write(entity_type, row, caller)
        if caller.generate_events:
            log = self.events.retirement if retired else self.events.revival
            log(caller, entity_type, row)
        return True


def _multi_entity_value(current: list, value: list, mode: Any) -> list:
    """The new value of a multi-entity field under ``multi_entity_update_mode``."""
    if mode not in ("set", "add", "remove"):
        raise Fault(f"API update() unknown multi_entity_update_mode {mode!r}")
    if mode == "add":
        return [*current, *[v for v in value if v not in current]]
    if mode == "remove":
        return [v for v in current if v not in value]
    return value
