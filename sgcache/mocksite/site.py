"""The stand-in site's behaviour, independent of HTTP: one JSON-RPC call in, one result (or Fault) out.

It authenticates callers, translates wire values, lets the :class:`Emulator` (mockgun) store
and filter, and adds what a hosted site maintains itself: ids, timestamps, created_by /
updated_by, link names, reverse links, retirement, and the event log.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import pickle
import random
import re
import secrets
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sgcache.mocksite import events
from sgcache.mocksite.emulator import Emulator, FilterError
from sgcache.mocksite.permissions import DEFAULT_GROUPS, GROUPS, Group, View, hidden_hop
from sgcache.mocksite.summarize import summarize
from sgcache.schema.model import Field, Schema
from sgcache.schema.site import field_to_site, schema_to_site

log = logging.getLogger(__name__)

WIRE_DATETIME = "%Y-%m-%dT%H:%M:%SZ"
PAGE_SIZE = 500
SESSION_LIFETIME = dt.timedelta(hours=1)
RELATIONS = {
    "is", "is_not", "less_than", "greater_than", "contains", "not_contains", "starts_with", "ends_with",
    "between", "not_between", "in", "not_in", "in_last", "not_in_last", "in_next", "not_in_next",
    "in_calendar_day", "in_calendar_week", "in_calendar_month", "in_calendar_year", "type_is", "type_is_not",
    "name_contains", "name_not_contains", "name_is", "name_starts_with", "name_ends_with",
}
# Relations whose values are one list (the others take one value, or two for between).
LIST_RELATIONS = {"in", "not_in"}
PAIR_RELATIONS = {"between", "not_between", "in_last", "not_in_last", "in_next", "not_in_next"}
# Relations whose values are dates (relative ones take [count, unit] or an offset instead).
DATE_VALUE_RELATIONS = {"is", "is_not", "less_than", "greater_than", "between", "not_between", "in", "not_in"}
# Fields a write may never set; created_* may be set on create (imports do that).
SYSTEM_FIELDS = {"id", "type", "updated_at", "updated_by"}
CREATE_ONLY = {"created_at", "created_by"}
#: Fields the schema marks read-only that callers who see everything may still set (the site's
#: admins and admin scripts change people's permission groups).
ADMIN_WRITABLE = {("HumanUser", "permission_rule_set"), ("ApiUser", "permission_rule_set")}

#: Type.field -> the field on the linked entity that lists it back (the site keeps both in step).
REVERSE_FIELDS = {
    ("Task", "entity"): "tasks",
    ("Shot", "assets"): "shots", ("Asset", "shots"): "assets",
    ("Version", "playlists"): "versions", ("Playlist", "versions"): "playlists",
    ("Shot", "sg_sequence"): "shots",
    ("Asset", "sequences"): "assets", ("Sequence", "assets"): "sequences",
    ("PublishedFile", "version"): "published_files",
    ("Group", "users"): "groups", ("HumanUser", "groups"): "users",
    ("Project", "users"): "projects", ("HumanUser", "projects"): "users",
    ("Reply", "entity"): "replies",
    ("Shot", "parent_shots"): "shots", ("Shot", "shots"): "parent_shots",
    ("Note", "note_links"): "notes",
    ("Note", "tasks"): "notes", ("Task", "notes"): "tasks",
    ("Asset", "parents"): "assets", ("Asset", "assets"): "parents",
    ("HumanUser", "department"): "users",
}


def reverse_fields(schema: Schema) -> dict[tuple[str, str], str]:
    """REVERSE_FIELDS for this schema, both ways: editing ``Sequence.shots`` sets ``Shot.sg_sequence``."""
    out = {}
    for (type_name, field_name), reverse in REVERSE_FIELDS.items():
        if type_name not in schema or field_name not in schema[type_name].fields:
            continue
        out[(type_name, field_name)] = reverse
        for target in schema[type_name].fields[field_name].entity_types:
            if target in schema and reverse in schema[target].fields:
                out.setdefault((target, reverse), field_name)
    return out


class Fault(Exception):
    """An error the site reports in Shotgun's envelope (HTTP 200, ``exception: true``)."""

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.message = message
        self.code = code

    def envelope(self) -> dict:
        out: dict[str, Any] = {"exception": True, "message": self.message}
        if self.code is not None:
            out["error_code"] = self.code
        return out


AUTH_FAULT = 102


@dataclass
class Script:
    name: str
    key: str
    generate_events: bool = True
    id: int = 0
    group: str = "api_admin"  # the code of its permission group (see permissions.GROUPS)


@dataclass
class Human:
    login: str
    password: str
    name: str
    id: int = 0
    group: str = "artist"


@dataclass
class Caller:
    """Who is calling: the user written to created_by/updated_by and events, and who really is."""

    user: dict  # link to the HumanUser or ApiUser that acts
    actual: dict | None  # the script behind a sudo_as_login call
    generate_events: bool
    session_uuid: str | None
    name: str
    #: the effective user's permission group when it limits what it sees (set for each call)
    group: Group | None = None


DEFAULT_SCRIPTS = [Script("sgcache", "sgcache-demo-key"), Script("quiet-script", "quiet-demo-key", False)]
DEFAULT_HUMANS = [Human("artist", "artist-password", "Ann Artist")]


def wire_datetime(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime(WIRE_DATETIME)


def parse_wire_datetime(value: str) -> dt.datetime:
    return dt.datetime.strptime(value, WIRE_DATETIME).replace(tzinfo=dt.UTC)


def _same_secret(given: Any, expected: str) -> bool:
    """Constant-time comparison of a secret the caller sent (any JSON value) with the real one."""
    if not isinstance(given, str):
        return False
    return secrets.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8"))


def _snake(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_") or "field"


@dataclass
class StoredFile:
    name: str
    content_type: str
    path: str


@dataclass
class _Undo:
    rows: list[tuple[str, int, dict | None]] = field(default_factory=list)
    seen: set[tuple[str, int]] = field(default_factory=set)
    # the transaction's time: every row and event one write stamps carries it, as the site's own
    # database gives one now() to a whole transaction
    now: dt.datetime | None = None


class MockSite:
    """A small hosted Shotgun site, in memory (optionally saved to a state file)."""

    def __init__(self, schema: Schema, *, timezone: str = "UTC", late_events: float = 0.0, seed: int = 0,
                 scripts: list[Script] | None = None, humans: list[Human] | None = None,
                 file_dir: str | Path | None = None, clock=None):
        self.schema = schema
        self.reverse = reverse_fields(schema)
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        fields, entities = schema_to_site(schema)
        identifiers = {t.name: t.identifier for t in schema}
        self.emu = Emulator(fields, entities, identifiers, timezone=timezone, clock=self.clock)
        self.lock = threading.RLock()
        self.late_events = late_events
        self.rng = random.Random(seed)
        self.scripts: dict[str, Script] = {}
        self.humans: dict[str, Human] = {}
        self.sessions: dict[str, tuple[str, str, dt.datetime]] = {}
        self.files: dict[int, StoredFile] = {}
        self.file_dir = Path(file_dir) if file_dir else None
        self.calls: Counter[str] = Counter()
        self.version = 0
        self._read_cache: OrderedDict = OrderedDict()
        self._undo: _Undo | None = None
        #: (entity type, field) -> the id of its DisplayColumn, for schema events
        self._display_columns: dict[tuple[str, str], int] = {}
        #: (person, group code) -> (data version, what that person sees)
        self._views: dict[tuple[str, int, str], tuple[int, View]] = {}
        self._viewing: tuple | None = None
        self._current: Caller | None = None  # the caller of the call in progress (under self.lock)
        if "PermissionRuleSet" in schema:
            for group in GROUPS.values():
                self.load_entity("PermissionRuleSet", self._only_known("PermissionRuleSet", {
                    "code": group.code, "display_name": group.display_name, "entity_type": group.entity_type}))
        for script in scripts if scripts is not None else DEFAULT_SCRIPTS:
            self.add_script(script)
        for human in humans if humans is not None else DEFAULT_HUMANS:
            self.add_human(human)

    # --- users --------------------------------------------------------------------------------

    def add_script(self, script: Script) -> Script:
        with self.lock:
            if "ApiUser" in self.schema:
                script.id = self.load_entity("ApiUser", self._only_known("ApiUser", {
                    "firstname": script.name, "generate_event_log_entries": script.generate_events,
                    "permission_rule_set": self.rule_set(script.group)}))
            self.scripts[script.name] = script
            return script

    def add_human(self, human: Human) -> Human:
        with self.lock:
            first, _, last = human.name.partition(" ")
            human.id = self.load_entity("HumanUser", self._only_known("HumanUser", {
                "login": human.login, "name": human.name, "firstname": first, "lastname": last,
                "email": f"{human.login}@studio.example", "sg_status_list": "act",
                "permission_rule_set": self.rule_set(human.group)}))
            self.humans[human.login] = human
            return human

    def rule_set(self, code: str) -> dict | None:
        """The link to the permission group with this code (None when the schema has none)."""
        if code not in GROUPS:
            raise ValueError(f"unknown permission group {code!r} (known: {', '.join(GROUPS)})")
        for rid, row in self.emu._db.get("PermissionRuleSet", {}).items():
            if row.get("code") == code:
                return {"type": "PermissionRuleSet", "id": rid}
        return None

    def group_of(self, user: dict) -> Group | None:
        """The permission group of a HumanUser or ApiUser, read from its row now (its type's
        default when the field is empty); None when the schema has no permission groups."""
        if "PermissionRuleSet" not in self.schema or user["type"] not in self.schema \
                or "permission_rule_set" not in self.schema[user["type"]].fields:
            return None
        row = self.emu._db[user["type"]].get(user["id"]) or {}
        link = row.get("permission_rule_set")
        if not isinstance(link, dict):
            return GROUPS.get(DEFAULT_GROUPS.get(user["type"], ""))
        rule_set = self.emu._db["PermissionRuleSet"].get(link.get("id"))
        return GROUPS.get(rule_set.get("code")) if rule_set else None

    def view(self, caller: Caller) -> View:
        """What a restricted caller sees, made once per person and data version."""
        key = (caller.user["type"], caller.user["id"], caller.group.code)
        held = self._views.get(key)
        if held is not None and held[0] == self.version:
            return held[1]
        view = View(self.schema, self.emu._db, caller.group, caller.user)
        if len(self._views) > 16:
            self._views.clear()
        self._views[key] = (self.version, view)
        return view

    def check_type(self, caller: Caller, entity_type: str) -> None:
        """The fault for a type hidden from the caller's group (before any other check of the call)."""
        group = caller.group
        if group is not None and entity_type in group.hidden_types:
            raise Fault(f"Entity of type {entity_type} can not be accessed by this user. "
                        f"Rule: {group.display_name}")

    def check_read(self, caller: Caller, method: str, args: Any) -> None:
        """Faults for a read a restricted caller may not make: a hidden type, a hidden field in
        filters, sorts, summaries or groupings."""
        group = caller.group
        if not isinstance(args, dict) or not isinstance(args.get("type"), str):
            return
        entity_type = args["type"]
        self.check_type(caller, entity_type)
        paths: list[str] = []

        def walk(filters: Any) -> None:
            if isinstance(filters, dict):
                for cond in filters.get("conditions") or ():
                    if isinstance(cond, dict) and "conditions" in cond:
                        walk(cond)
                    elif isinstance(cond, dict) and isinstance(cond.get("path"), str):
                        paths.append(cond["path"])

        walk(args.get("filters"))
        for key, name in (("sorts", "field_name"), ("summaries", "field"), ("grouping", "field")):
            for spec in args.get(key) or ():
                if isinstance(spec, dict) and isinstance(spec.get(name), str):
                    paths.append(spec[name])
        for path in paths:
            hidden = hidden_hop(self.schema, group, entity_type, path)
            if hidden is not None:
                raise Fault(f"API {method}() {hidden[0]}.{hidden[1]} can not be accessed by this user. "
                            f"Rule: {group.display_name}")

    def check_write(self, caller: Caller, method: str, entity_type: str, entity_id: Any = None,
                    data: dict | None = None) -> None:
        """Faults for a write a restricted caller may not make (nothing is written)."""
        group = caller.group
        if group is None:
            return
        self.check_type(caller, entity_type)
        view = self.view(caller)
        if entity_id is not None and entity_id not in view.visible.get(entity_type, ()):
            raise Fault(f"API {method}() {entity_type} {entity_id} can not be accessed by this user. "
                        f"Rule: {group.display_name}")
        for name, value in (data or {}).items():
            if (entity_type, name) in group.hidden_fields:
                raise Fault(f"API {method}() {entity_type}.{name} can not be accessed by this user. "
                            f"Rule: {group.display_name}")
            if name == "project" and isinstance(value, dict) and value.get("id") not in view.projects:
                raise Fault(f"API {method}() project {value.get('id')} can not be accessed by this user. "
                            f"Rule: {group.display_name}")

    def _only_known(self, entity_type: str, data: dict) -> dict:
        fields = self.schema[entity_type].fields
        return {k: v for k, v in data.items() if k in fields}

    def _link(self, entity_type: str, entity_id: int) -> dict:
        return {"type": entity_type, "id": entity_id}

    def authenticate(self, auth: Any, method: str) -> Caller:
        if not isinstance(auth, dict):
            raise Fault("Authentication required: send script_name and script_key, user_login and "
                        "user_password, or session_token", AUTH_FAULT)
        session_uuid = auth.get("session_uuid")
        if auth.get("script_name") is not None or auth.get("script_key") is not None:
            script = self.scripts.get(auth.get("script_name"))
            if script is None or not _same_secret(auth.get("script_key"), script.key):
                raise Fault(f"Can't authenticate script '{auth.get('script_name')}'", AUTH_FAULT)
            caller = Caller(self._link("ApiUser", script.id), None, script.generate_events, session_uuid,
                            f"script:{script.name}")
        elif auth.get("user_login") is not None:
            human = self.humans.get(auth.get("user_login"))
            if human is None or not _same_secret(auth.get("user_password"), human.password):
                raise Fault(f"Can't authenticate user '{auth.get('user_login')}'", AUTH_FAULT)
            caller = Caller(self._link("HumanUser", human.id), None, True, session_uuid, f"user:{human.login}")
        elif auth.get("session_token") is not None:
            session = self.sessions.get(str(auth["session_token"]))
            if session is None:
                raise Fault("Can't authenticate session token: unknown or revoked", AUTH_FAULT)
            kind, name, expires = session
            if expires <= self.clock():
                raise Fault("Can't authenticate session token: it has expired", AUTH_FAULT)
            if kind == "script":
                script = self.scripts[name]
                caller = Caller(self._link("ApiUser", script.id), None, script.generate_events, session_uuid,
                                f"script:{name}")
            else:
                caller = Caller(self._link("HumanUser", self.humans[name].id), None, True, session_uuid,
                                f"user:{name}")
        else:
            raise Fault("Authentication required: send script_name and script_key, user_login and "
                        "user_password, or session_token", AUTH_FAULT)
        sudo = auth.get("sudo_as_login")
        if sudo is not None and not isinstance(sudo, str):
            raise Fault("Can't sudo: sudo_as_login must be a login name", AUTH_FAULT)
        if sudo:
            human = self.humans.get(sudo)
            if human is None:
                raise Fault(f"Can't sudo as '{sudo}': no such user", AUTH_FAULT)
            caller = Caller(self._link("HumanUser", human.id), caller.user, caller.generate_events, session_uuid,
                            f"{caller.name} as user:{sudo}")
        group = self.group_of(caller.user)
        caller.group = group if group is not None and group.restricted else None
        return caller

    # --- dispatch -----------------------------------------------------------------------------

    def call(self, method: Any, params: Any) -> Any:
        """One JSON-RPC call: ``params`` is the wire ``[AUTH, ARGS]`` list (``[]`` for info)."""
        if not isinstance(method, str):
            raise Fault("method_name is missing or not a string")
        self.calls[method] = self.calls[method] + 1
        if method == "info":
            return self.info()
        if not isinstance(params, list):
            raise Fault(f"API {method}() expects params to be [auth, args]")
        handler = getattr(self, f"rpc_{method}", None)
        if handler is None:
            raise Fault(f"API {method}() doesn't exist: unknown method {method!r}")
        auth = params[0] if params else None
        args = params[1] if len(params) > 1 else None
        with self.lock:
            caller = self.authenticate(auth, method)
            self._current = caller
            try:
                if caller.group is not None and method in ("read", "summarize"):
                    return self._read_as(caller, method, handler, args)
                result = handler(caller, args)
                if caller.group is not None and method in ("create", "update", "batch"):
                    # A write's answer is built from all the data: show it as the caller sees it.
                    view = self.view(caller)
                    for entity in result if isinstance(result, list) else [result]:
                        if isinstance(entity, dict):
                            view.scrub(self.schema, entity)
                return result
            except FilterError as e:
                raise Fault(f"API {method}() {e}") from None
            except OverflowError:
                raise Fault(f"API {method}() a number or date in the request is out of range") from None
            except RecursionError:
                raise Fault(f"API {method}() the filters are nested too deeply") from None
            finally:
                self._current = None

    def _read_as(self, caller: Caller, method: str, handler, args: Any) -> Any:
        """A read by a restricted caller, over the rows it may see (see permissions.View)."""
        self.check_read(caller, method, args)
        view = self.view(caller)
        saved = self.emu._db, self.emu._ids
        self.emu._db, self.emu._ids = view.db, view.ids
        self._viewing = (caller.user["type"], caller.user["id"], caller.group.code)
        try:
            result = handler(caller, args)
        finally:
            self.emu._db, self.emu._ids = saved
            self._viewing = None
        if method == "read" and caller.group.hidden_fields:
            for entity in result.get("entities", ()):
                view.scrub(self.schema, entity)
        return result

    def info(self) -> dict:
        return {
            "version": [8, 50, 0],
            "full_version": [8, 50, 0, 0],
            "api_max_entities_per_page": PAGE_SIZE,
            "s3_direct_uploads_enabled": False,
            "s3_enabled_upload_types": {"Thumbnail": "always", "Attachment": False},
            "totango_site_id": None,
            "user_authentication_method": "default",
            "stand_in": "sgcache mock-site",
        }

    # --- values ---------------------------------------------------------------------------------

    def _type(self, method: str, args: dict, key: str = "type") -> str:
        entity_type = args.get(key) if isinstance(args, dict) else None
        if not isinstance(entity_type, str) or entity_type not in self.schema:
            raise Fault(f"API {method}() entity type {entity_type!r} doesn't exist")
        return entity_type

    def _data_type(self, entity_type: str, field_name: str) -> str:
        return self.emu.field_type(entity_type, field_name)

    def to_row_value(self, method: str, entity_type: str, field_name: str, value: Any) -> Any:
        """A wire value -> how the emulator stores it; Fault for a value of the wrong shape."""
        if field_name not in self.schema[entity_type].fields:
            raise Fault(f"API {method}() {entity_type}.{field_name} doesn't exist")
        f = self.schema[entity_type].fields[field_name]
        data_type = f.data_type
        if value is None:
            return [] if data_type == "multi_entity" else None

        def bad(expected: str) -> Fault:
            return Fault(f"API {method}() {entity_type}.{field_name} ({data_type}) expects {expected}, "
                         f"got {json.dumps(value, default=str)[:80]}")

        def link(v: Any) -> dict:
            if not isinstance(v, dict) or not isinstance(v.get("type"), str) or isinstance(v.get("id"), bool) \
                    or not isinstance(v.get("id"), int):
                raise bad("an entity link {type, id}")
            if f.entity_types and v["type"] not in f.entity_types:
                raise Fault(f"API {method}() {entity_type}.{field_name} can't link to {v['type']} "
                            f"(valid types: {', '.join(f.entity_types)})")
            if v["type"] in self.emu._db and v["id"] not in self.emu._db[v["type"]]:
                raise Fault(f"API {method}() {v['type']} with id {v['id']} doesn't exist")
            return {"type": v["type"], "id": v["id"]}

        if data_type == "entity":
            return link(value)
        if data_type == "multi_entity":
            if not isinstance(value, list):
                raise bad("a list of entity links")
            out = []
            for v in value:
                item = link(v)
                if item not in out:
                    out.append(item)
            return out
        if data_type == "date_time":
            if isinstance(value, str):
                try:
                    return parse_wire_datetime(value)
                except ValueError:
                    pass
            raise bad("a YYYY-MM-DDTHH:MM:SSZ string")
        if data_type == "date":
            if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
                try:
                    dt.date.fromisoformat(value)
                    return value
                except ValueError:
                    pass
            raise bad("a YYYY-MM-DD string")
        checks = {
            "number": (int,), "duration": (int,), "percent": (int,), "timecode": (int,),
            "float": (int, float), "currency": (int, float), "checkbox": (bool,),
            "url": (dict,), "serializable": (dict, list), "tag_list": (list,), "image": (str,),
        }
        if data_type in checks:
            kinds = checks[data_type]
            if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
                raise bad(" or ".join(k.__name__ for k in kinds))
            if data_type in ("float", "currency"):
                return float(value)
            return copy.deepcopy(value)
        if data_type in ("password", "pivot_column", "summary", "query", "calculated"):
            raise Fault(f"API {method}() {entity_type}.{field_name} can't be set ({data_type})")
        if not isinstance(value, str):
            raise bad("a string")
        if data_type in ("list", "status_list") and f.valid_values and value not in f.valid_values:
            raise Fault(f"API {method}() {entity_type}.{field_name}: {value!r} is not a valid value "
                        f"(valid values: {', '.join(f.valid_values)})")
        return value

    def to_wire(self, entity_type: str, field_name: str, value: Any) -> Any:
        """A stored value -> the wire: datetimes as strings, links with their names."""
        if isinstance(value, dt.datetime):
            return wire_datetime(value)
        if isinstance(value, list):
            return [self.to_wire(entity_type, field_name, v) for v in value]
        if isinstance(value, dict) and isinstance(value.get("type"), str) and "id" in value and \
                value["type"] in self.emu._db and set(value) <= {"type", "id", "name"}:
            return {"type": value["type"], "id": value["id"], "name": self.emu.link_name(value)}
        return value

    def _filter_value(self, entity_type: str, path: str, relation: str, value: Any) -> Any:
        try:
            data_type = self._data_type(entity_type, path)
        except FilterError as e:
            raise Fault(f"API read() {e}") from None
        if data_type == "date_time" and isinstance(value, str) and relation in DATE_VALUE_RELATIONS:
            try:
                return parse_wire_datetime(value)
            except ValueError:
                raise Fault(f"API read() {path}: {value!r} is not a YYYY-MM-DDTHH:MM:SSZ date and time") from None
        if isinstance(value, dict) and "type" in value and "id" in value:
            return {"type": value["type"], "id": value["id"]}
        return value

    def translate_filters(self, entity_type: str, group: Any) -> tuple[list, str]:
        """Wire filters -> (mockgun list filters, logical operator)."""
        if group is None:
            return [], "all"
        if not isinstance(group, dict) or "conditions" not in group:
            raise Fault("API read() filters must be {logical_operator, conditions}")
        operator = group.get("logical_operator", "and")
        if operator not in ("and", "or"):
            raise Fault(f"API read() unknown logical_operator {operator!r} (use 'and' or 'or')")
        conditions = group["conditions"]
        if not isinstance(conditions, list):
            raise Fault("API read() conditions must be a list")
        out = []
        for cond in conditions:
            if isinstance(cond, dict) and "conditions" in cond:
                sub, sub_op = self.translate_filters(entity_type, cond)
                out.append({"filter_operator": "all" if sub_op == "all" else "any", "filters": sub})
                continue
            if not isinstance(cond, dict) or not isinstance(cond.get("path"), str) \
                    or not isinstance(cond.get("relation"), str) or not isinstance(cond.get("values"), list):
                raise Fault(f"API read() malformed condition {json.dumps(cond, default=str)[:120]}")
            path, relation, values = cond["path"], cond["relation"], cond["values"]
            if relation not in RELATIONS:
                raise Fault(f"API read() unknown relation {relation!r} in condition on {path}")
            values = [self._filter_value(entity_type, path, relation, v) for v in values]
            if relation in LIST_RELATIONS:
                value: Any = values[0] if len(values) == 1 and isinstance(values[0], list) else values
            elif relation in PAIR_RELATIONS:
                value = values[0] if len(values) == 1 and isinstance(values[0], list) else values
            else:
                if len(values) != 1:
                    raise Fault(f"API read() the {relation} relation on {path} takes one value, got {len(values)}")
                value = values[0]
            # Check the condition once, without a row: a bad filter is a Fault even on an empty table.
            try:
                self.emu.compare(self._data_type(entity_type, path), None, relation, value)
            except FilterError as e:
                raise Fault(f"API read() {path}: {e}") from None
            out.append([path, relation, value])
        return out, "all" if operator == "and" else "any"

    # --- read ------------------------------------------------------------------------------------

    def _visible(self, entity_type: str, include_archived: bool):
        now = self.clock()
        hidden = self.emu.hidden_until
        archived = set()
        if not include_archived and "Project" in self.emu._db:
            archived = {pid for pid, row in self.emu._db["Project"].items() if row.get("archived")}

        def visible(row: dict) -> bool:
            if hidden and (entity_type, row["id"]) in hidden and hidden[(entity_type, row["id"])] > now:
                return False
            if archived:
                if entity_type == "Project":
                    return row["id"] not in archived
                project = row.get("project")
                if isinstance(project, dict) and project.get("type") == "Project" and project["id"] in archived:
                    return False
            return True

        if not hidden and not archived:
            return None
        return visible

    def _sort_key(self, entity_type: str, path: str):
        try:
            data_type = self._data_type(entity_type, path)
        except FilterError as e:
            raise Fault(f"API read() sorting: {e}") from None
        if data_type in ("multi_entity", "url", "serializable", "tag_list", "password", "pivot_column"):
            raise Fault(f"API read() can't sort by {path} ({data_type})")

        def key(row: dict):
            value = self.emu._get_field_from_row(entity_type, row, path)
            if data_type == "entity":
                value = None if value is None else ((self.emu.link_name(value) or "").lower(), value["type"],
                                                    value["id"])
            elif isinstance(value, str):
                value = (value.lower(), value)
            return value

        return key

    def _sorted(self, entity_type: str, rows: list[dict], sorts: list) -> list[dict]:
        """Sort by every key in order (None last ascending, first descending), then by id."""
        rows = sorted(rows, key=lambda r: r["id"])
        for spec in reversed(sorts):
            if not isinstance(spec, dict) or not isinstance(spec.get("field_name"), str):
                raise Fault("API read() sorts must be [{field_name, direction}]")
            direction = spec.get("direction", "asc")
            if direction not in ("asc", "desc"):
                raise Fault(f"API read() unknown sort direction {direction!r}")
            key = self._sort_key(entity_type, spec["field_name"])
            present = [(key(r), r) for r in rows]
            nulls = [r for k, r in present if k is None]
            values = [(k, r) for k, r in present if k is not None]
            values.sort(key=lambda kr: kr[0], reverse=direction == "desc")
            ordered = [r for _, r in values]
            rows = ordered + nulls if direction == "asc" else nulls + ordered
        return rows

    def entity_dict(self, entity_type: str, row: dict, fields: list[str]) -> dict:
        out = {"type": entity_type, "id": row["id"]}
        for name in fields:
            if name in ("type", "id"):
                continue
            try:
                value = self.emu._get_field_from_row(entity_type, row, name)
            except FilterError:
                value = None
            out[name] = self.to_wire(entity_type, name, value)
        return out

    def rpc_read(self, caller: Caller, args: Any) -> dict:
        if not isinstance(args, dict):
            raise Fault("API read() expects a mapping of arguments")
        entity_type = self._type("read", args)
        if args.get("additional_filter_presets"):
            raise Fault("API read() additional_filter_presets are not supported by this site")
        fields = args.get("return_fields") or ["id"]
        if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
            raise Fault("API read() return_fields must be a list of field names")
        filters, operator = self.translate_filters(entity_type, args.get("filters"))
        return_only = args.get("return_only", "active")
        if return_only not in ("active", "retired"):
            raise Fault(f"API read() return_only must be 'active' or 'retired', got {return_only!r}")
        paging = args.get("paging") or {}
        if not isinstance(paging, dict):
            raise Fault("API read() paging must be a mapping {entities_per_page, current_page}")
        per_page = paging.get("entities_per_page", PAGE_SIZE)
        page = paging.get("current_page", 1)
        if isinstance(per_page, bool) or not isinstance(per_page, int) or not 1 <= per_page <= PAGE_SIZE:
            raise Fault(f"API read() entities_per_page must be 1 to {PAGE_SIZE}")
        if isinstance(page, bool) or not isinstance(page, int) or page < 1:
            raise Fault("API read() current_page must be a positive integer")
        sorts = args.get("sorts") or []
        if not isinstance(sorts, list):
            raise Fault("API read() sorts must be a list")
        include_archived = args.get("include_archived_projects", True) is not False
        retired = return_only == "retired"
        offset = (page - 1) * per_page
        by_id = all(s.get("field_name") == "id" and s.get("direction", "asc") == "asc"
                    for s in sorts if isinstance(s, dict))
        extra = self._visible(entity_type, include_archived)
        with_counts = bool(args.get("return_paging_info"))
        if by_id and not with_counts:
            # Ordered by id: evaluation can stop after this page (and one more row to know if
            # there is a next page); paging by id stays fast on big tables.
            rows = self.emu.matching(entity_type, filters, operator, retired, stop_after=offset + per_page + 1,
                                     extra=extra)
            total = None
        else:
            rows = self._all_matching(entity_type, filters, operator, retired, sorts, include_archived, extra)
            total = len(rows)
        page_rows = rows[offset:offset + per_page]
        result: dict[str, Any] = {"entities": [self.entity_dict(entity_type, r, fields) for r in page_rows]}
        if args.get("return_paging_info_without_counts"):
            result["paging_info"] = {"has_next_page": len(rows) > offset + per_page}
        elif with_counts:
            result["paging_info"] = {"entity_count": total, "current_page": page,
                                     "page_count": (total + per_page - 1) // per_page}
        return result

    def _all_matching(self, entity_type, filters, operator, retired, sorts, include_archived, extra) -> list[dict]:
        """Every matching row in order; kept for the next pages until the data changes."""
        key = (entity_type, json.dumps([filters, operator, retired, sorts, include_archived], default=str,
                                       sort_keys=True), self.version, self._viewing)
        cached = self._read_cache.get(key)
        if cached is not None and extra is None:
            self._read_cache.move_to_end(key)
            return cached
        rows = self.emu.matching(entity_type, filters, operator, retired, extra=extra)
        rows = self._sorted(entity_type, rows, sorts)
        if extra is None:
            self._read_cache[key] = rows
            while len(self._read_cache) > 16:
                self._read_cache.popitem(last=False)
        return rows

    def rpc_summarize(self, caller: Caller, args: Any) -> dict:
        if not isinstance(args, dict):
            raise Fault("API summarize() expects a mapping of arguments")
        entity_type = self._type("summarize", args)
        summaries, grouping = args.get("summaries") or [], args.get("grouping")
        if not isinstance(summaries, list) or not all(
                isinstance(x, dict) and isinstance(x.get("field"), str) and isinstance(x.get("type"), str)
                for x in summaries):
            raise Fault("API summarize() summaries must be a list of {field, type}")
        if grouping is not None and (not isinstance(grouping, list) or not all(
                isinstance(x, dict) and isinstance(x.get("field"), str) for x in grouping)):
            raise Fault("API summarize() grouping must be a list of {field, type, direction}")
        filters, operator = self.translate_filters(entity_type, args.get("filters"))
        include_archived = args.get("include_archived_projects", True) is not False
        rows = self.emu.matching(entity_type, filters, operator, False,
                                 extra=self._visible(entity_type, include_archived))
        try:
            return summarize(self, entity_type, rows, summaries, grouping)
        except FilterError as e:
            raise Fault(f"API summarize() {e}") from None

    # --- writes ------------------------------------------------------------------------------------

    def _now(self) -> dt.datetime:
        if self._undo is not None:
            if self._undo.now is None:
                self._undo.now = self.clock().replace(microsecond=0)
            return self._undo.now
        return self.clock().replace(microsecond=0)

    def _touch(self, entity_type: str, entity_id: int) -> None:
        """Remember a row's state before a change, so a failed batch can be undone."""
        # Every change passes here: what was made of the data before it (a caller's view) is stale.
        self.version += 1
        undo = self._undo
        if undo is None or (entity_type, entity_id) in undo.seen:
            return
        undo.seen.add((entity_type, entity_id))
        row = self.emu._db[entity_type].get(entity_id)
        undo.rows.append((entity_type, entity_id, copy.deepcopy(row) if row is not None else None))

    def _rollback(self, undo: _Undo) -> None:
        for entity_type, entity_id, before in reversed(undo.rows):
            table = self.emu._db[entity_type]
            if before is None:
                table.pop(entity_id, None)
                ids = self.emu._ids[entity_type]
                if entity_id in ids:
                    ids.remove(entity_id)
                self.emu.hidden_until.pop((entity_type, entity_id), None)
            else:
                table[entity_id] = before

    def _transaction(self, fn):
        """Run ``fn`` all or nothing (nested calls join the outer transaction)."""
        if self._undo is not None:
            return fn()
        self._undo = _Undo()
        try:
            result = fn()
        except BaseException:
            self._rollback(self._undo)
            raise
        finally:
            undo, self._undo = self._undo, None
        self.version += 1
        self._read_cache.clear()
        self._commit_events(undo)
        return result

    def _commit_events(self, undo: _Undo) -> None:
        """Late commits: a share of writes make their events readable only a few seconds later."""
        if not self.late_events or self.rng.random() >= self.late_events:
            return
        until = self.clock() + dt.timedelta(seconds=self.rng.uniform(2.0, 5.0))
        for entity_type, entity_id, before in undo.rows:
            if entity_type == "EventLogEntry" and before is None:
                self.emu.hidden_until[(entity_type, entity_id)] = until

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
                (entity_type, field_name) in ADMIN_WRITABLE and self._current is not None
                and self._current.group is None):
            raise Fault(f"API {method}() {entity_type}.{field_name} is not editable")

    def rpc_create(self, caller: Caller, args: Any) -> dict:
        if not isinstance(args, dict):
            raise Fault("API create() expects a mapping of arguments")
        return self._transaction(lambda: self._create(caller, args))

    def _create(self, caller: Caller, args: dict) -> dict:
        entity_type = self._type("create", args)
        self.check_type(caller, entity_type)
        items = self._fields_arg("create", args)
        data = {}
        for item in items:
            name = item["field_name"]
            self._check_writable("create", entity_type, name, creating=True)
            data[name] = self.to_row_value("create", entity_type, name, item.get("value"))
        return_fields = args.get("return_fields") or ["id"]
        if not isinstance(return_fields, list) or not all(isinstance(f, str) for f in return_fields):
            raise Fault("API create() return_fields must be a list of field names")
        self.check_write(caller, "create", entity_type, None, data)
        entity_id = self._insert(entity_type, data, caller, emit=caller.generate_events)
        template = data.get("task_template")
        if isinstance(template, dict) and template.get("type") == "TaskTemplate" and entity_type != "Task":
            self._apply_task_template(caller, entity_type, entity_id, template["id"])
        row = self.emu._db[entity_type][entity_id]
        # The site answers with the fields that were set plus the ones asked for.
        wanted = list(dict.fromkeys([*data, *[f for f in return_fields if f not in ("type", "id")]]))
        return self.entity_dict(entity_type, row, wanted)

    def _apply_task_template(self, caller: Caller, entity_type: str, entity_id: int, template_id: int) -> None:
        """Like the site, an entity created with a task template gets a copy of each of the
        template's tasks (the Tasks whose task_template is it and that belong to no entity)."""
        if "Task" not in self.schema:
            return
        task_fields = self.schema["Task"].fields
        owner = self.emu._db[entity_type][entity_id]
        for task in sorted(self.emu._db["Task"].values(), key=lambda r: r["id"]):
            linked = task.get("task_template") or {}
            if task.get("__retired") or task.get("entity") or linked.get("type") != "TaskTemplate" \
                    or linked.get("id") != template_id:
                continue
            data = {name: task[name] for name in ("content", "step", "sg_status_list", "duration", "est_in_mins")
                    if name in task_fields and task.get(name) is not None}
            data["entity"] = self._link(entity_type, entity_id)
            if "project" in task_fields and isinstance(owner.get("project"), dict):
                data["project"] = self._link("Project", owner["project"]["id"])
            if "template_task" in task_fields:
                data["template_task"] = self._link("Task", task["id"])
            self._insert("Task", data, caller, emit=caller.generate_events)

    def _insert(self, entity_type: str, data: dict, caller: Caller | None, *,
                created_at: dt.datetime | None = None, retired: bool = False, emit: bool = False) -> int:
        """Add a row; with ``emit``, log New, then one in_create Change per field set (links after
        their back references' source event is reserved, so ids run in the site's order)."""
        row = self.emu.new_row(entity_type)
        entity_id = self.emu.next_id(entity_type)
        row["id"] = entity_id
        row["type"] = entity_type
        row["__retired"] = retired
        fields = self.schema[entity_type].fields
        stamp = created_at or self._now()
        if "created_at" in fields:
            row["created_at"] = stamp
        if "updated_at" in fields:
            row["updated_at"] = stamp
        if caller is not None:
            for name in ("created_by", "updated_by"):
                if name in fields:
                    row[name] = dict(caller.user)
        links = {}
        for name, value in data.items():
            if fields[name].data_type in ("entity", "multi_entity") and (entity_type, name) in self.reverse:
                links[name] = value
            elif fields[name].data_type == "multi_entity":
                row[name] = [dict(v) for v in value or []]
            elif fields[name].data_type == "entity":
                row[name] = dict(value) if value else None
            else:
                # Plain fields and links without a reverse side (project, ...) are in place before
                # New is logged, so every entry of the create names the project.
                row[name] = value
        self._touch(entity_type, entity_id)
        self.emu.insert_row(entity_type, row)
        if emit:
            events.new_entity(self, caller, entity_type, row)
        for name, value in data.items():
            if name in links:
                event_id = events.reserve(self) if emit else None
                added, removed = self._set_links(entity_type, row, name, value, caller, event_id)
                if emit:
                    events.attribute_change(self, caller, entity_type, row, name, None, row.get(name),
                                            in_create=True, event_id=event_id, added=added, removed=removed)
            elif emit:
                events.attribute_change(self, caller, entity_type, row, name, None, row.get(name), in_create=True)
        return entity_id

    def load_entity(self, entity_type: str, data: dict, *, created_at: dt.datetime | str | None = None,
                    created_by: dict | None = None, retired: bool = False) -> int:
        """Add an entity directly, without events (for studio data and users).

        ``data`` is wire-shaped (links as {type, id}; date_time as strings or aware datetimes);
        reverse links are kept in step as for any write.
        """
        with self.lock:
            converted = {}
            for name, value in data.items():
                if isinstance(value, dt.datetime):
                    value = wire_datetime(value)
                converted[name] = self.to_row_value("load", entity_type, name, value)
            if isinstance(created_at, str):
                created_at = parse_wire_datetime(created_at)
            caller = Caller(created_by, None, False, None, "loader") if created_by else None
            entity_id = self._insert(entity_type, converted, caller, created_at=created_at, retired=retired)
            self.version += 1
            self._read_cache.clear()
            return entity_id

    def _set_links(self, entity_type: str, row: dict, name: str, value: Any, caller: Caller | None,
                   source_event: int | None) -> tuple[list, list]:
        """Set an entity / multi-entity field and keep reverse fields in step; return (added, removed)."""
        data_type = self.schema[entity_type].fields[name].data_type
        old = row.get(name)
        old_links = (old or []) if data_type == "multi_entity" else ([old] if old else [])
        new_links = (value or []) if data_type == "multi_entity" else ([value] if value else [])
        removed = [link for link in old_links if link not in new_links]
        added = [link for link in new_links if link not in old_links]
        row[name] = [dict(v) for v in new_links] if data_type == "multi_entity" else \
            (dict(value) if value else None)
        reverse = self.reverse.get((entity_type, name))
        if reverse:
            me = {"type": entity_type, "id": row["id"]}
            for link in removed:
                self._reverse_edit(link, reverse, me, remove=True, caller=caller, source=(entity_type, name),
                                   source_event=source_event)
            for link in added:
                self._reverse_edit(link, reverse, me, remove=False, caller=caller, source=(entity_type, name),
                                   source_event=source_event)
        return added, removed

    def _reverse_edit(self, target: dict, field_name: str, me: dict, *, remove: bool, caller: Caller | None,
                      source: tuple[str, str], source_event: int | None) -> None:
        target_type = target["type"]
        if target_type not in self.schema or field_name not in self.schema[target_type].fields:
            return
        other = self.emu._db[target_type].get(target["id"])
        if other is None:
            return
        self._touch(target_type, target["id"])
        data_type = self.schema[target_type].fields[field_name].data_type
        if data_type == "multi_entity":
            current = other.get(field_name) or []
            if remove:
                if me not in current:
                    return
                other[field_name] = [v for v in current if v != me]
            else:
                if me in current:
                    return
                other[field_name] = [*current, dict(me)]
        else:
            current = other.get(field_name)
            if remove:
                if current != me:
                    return
                other[field_name] = None
            else:
                if current == me:
                    return
                if current:
                    # The other side pointed elsewhere: that entity loses it from its own list.
                    back = self.reverse.get((target_type, field_name))
                    if back:
                        self._reverse_edit(current, back, {"type": target_type, "id": target["id"]}, remove=True,
                                           caller=caller, source=(target_type, field_name),
                                           source_event=source_event)
                other[field_name] = dict(me)
        if caller is not None and caller.generate_events and source_event is not None:
            events.back_reference(self, caller, other, field_name, me, remove, source, source_event)

    def rpc_update(self, caller: Caller, args: Any) -> dict:
        if not isinstance(args, dict):
            raise Fault("API update() expects a mapping of arguments")
        return self._transaction(lambda: self._update(caller, args))

    def _existing(self, method: str, entity_type: str, entity_id: Any, *, live: bool = True) -> dict:
        if isinstance(entity_id, bool) or not isinstance(entity_id, int):
            raise Fault(f"API {method}() id must be an integer, got {entity_id!r}")
        row = self.emu._db[entity_type].get(entity_id)
        if row is None or (live and row["__retired"]):
            raise Fault(f"API {method}() {entity_type} with id {entity_id} doesn't exist")
        return row

    def _update(self, caller: Caller, args: dict) -> dict:
        entity_type = self._type("update", args)
        self.check_type(caller, entity_type)
        row = self._existing("update", entity_type, args.get("id"))
        items = self._fields_arg("update", args)
        fields = self.schema[entity_type].fields
        changes = []
        for item in items:
            name = item["field_name"]
            self._check_writable("update", entity_type, name, creating=False)
            value = self.to_row_value("update", entity_type, name, item.get("value"))
            mode = item.get("multi_entity_update_mode", args.get("multi_entity_update_mode", "set"))
            if fields[name].data_type == "multi_entity":
                if mode not in ("set", "add", "remove"):
                    raise Fault(f"API update() unknown multi_entity_update_mode {mode!r}")
                current = row.get(name) or []
                if mode == "add":
                    value = [*current, *[v for v in value if v not in current]]
                elif mode == "remove":
                    value = [v for v in current if v not in value]
            changes.append((name, value))
        self.check_write(caller, "update", entity_type, row["id"], dict(changes))
        self._touch(entity_type, row["id"])
        for name, value in changes:
            old = copy.deepcopy(row.get(name))
            data_type = fields[name].data_type
            if data_type in ("entity", "multi_entity"):
                if old == value or (data_type == "multi_entity" and (old or []) == (value or [])):
                    continue
                event_id = None
                if caller.generate_events:
                    event_id = events.reserve(self)
                added, removed = self._set_links(entity_type, row, name, value, caller, event_id)
                if event_id is not None:
                    events.attribute_change(self, caller, entity_type, row, name, old, row.get(name),
                                            event_id=event_id, added=added, removed=removed)
            else:
                if old == value:
                    continue
                row[name] = value
                if caller.generate_events:
                    events.attribute_change(self, caller, entity_type, row, name, old, value)
        if "updated_at" in fields:
            row["updated_at"] = self._now()
        if "updated_by" in fields:
            row["updated_by"] = dict(caller.user)
        return self.entity_dict(entity_type, row, [name for name, _ in changes])

    def rpc_delete(self, caller: Caller, args: Any) -> bool:
        if not isinstance(args, dict):
            raise Fault("API delete() expects a mapping of arguments")
        return self._transaction(lambda: self._retire(caller, args))

    def _retire(self, caller: Caller, args: dict) -> bool:
        entity_type = self._type("delete", args)
        self.check_type(caller, entity_type)
        row = self._existing("delete", entity_type, args.get("id"), live=False)
        self.check_write(caller, "delete", entity_type, row["id"])
        if row["__retired"]:
            return False
        self._touch(entity_type, row["id"])
        row["__retired"] = True
        self._stamp_write(entity_type, row, caller)
        if caller.generate_events:
            events.retirement(self, caller, entity_type, row)
        return True

    def _stamp_write(self, entity_type: str, row: dict, caller: Caller) -> None:
        """Retiring and reviving are writes: they move updated_at and updated_by."""
        fields = self.schema[entity_type].fields
        if "updated_at" in fields:
            row["updated_at"] = self._now()
        if "updated_by" in fields:
            row["updated_by"] = dict(caller.user)

    def rpc_revive(self, caller: Caller, args: Any) -> bool:
        if not isinstance(args, dict):
            raise Fault("API revive() expects a mapping of arguments")
        return self._transaction(lambda: self._revive(caller, args))

    def _revive(self, caller: Caller, args: dict) -> bool:
        entity_type = self._type("revive", args)
        self.check_type(caller, entity_type)
        row = self._existing("revive", entity_type, args.get("id"), live=False)
        self.check_write(caller, "revive", entity_type, row["id"])
        if not row["__retired"]:
            return False
        self._touch(entity_type, row["id"])
        row["__retired"] = False
        self._stamp_write(entity_type, row, caller)
        if caller.generate_events:
            events.revival(self, caller, entity_type, row)
        return True

    def rpc_batch(self, caller: Caller, args: Any) -> list:
        if not isinstance(args, list) or not all(isinstance(r, dict) for r in args):
            raise Fault("API batch() expects a list of requests")

        def run():
            results = []
            for index, request in enumerate(args):
                kind = request.get("request_type")
                try:
                    if kind == "create":
                        results.append(self._create(caller, request))
                    elif kind == "update":
                        results.append(self._update(caller, request))
                    elif kind == "delete":
                        results.append(self._retire(caller, request))
                    else:
                        raise Fault(f"unknown request_type {kind!r}")
                except Fault as e:
                    raise Fault(f"API batch() request {index} ({kind}) failed, nothing was applied: "
                                f"{e.message}", e.code) from None
            return results

        return self._transaction(run)

    # --- schema --------------------------------------------------------------------------------

    def rpc_schema_read(self, caller: Caller, args: Any) -> dict:
        return copy.deepcopy(self.emu._schema)

    def rpc_schema_entity_read(self, caller: Caller, args: Any) -> dict:
        return copy.deepcopy(self.emu._schema_entity)

    def rpc_schema_field_read(self, caller: Caller, args: Any) -> dict:
        if not isinstance(args, dict):
            raise Fault("API schema_field_read() expects a mapping of arguments")
        entity_type = self._type("schema_field_read", args)
        name = args.get("field_name")
        if name is not None and not isinstance(name, str):
            raise Fault("API schema_field_read() field_name must be a string")
        fields = self.emu._schema[entity_type]
        if name is None:
            return copy.deepcopy(fields)
        if name not in fields:
            raise Fault(f"API schema_field_read() {entity_type}.{name} doesn't exist")
        return {name: copy.deepcopy(fields[name])}

    def _properties(self, method: str, args: dict) -> dict:
        props = args.get("properties") or []
        if not isinstance(props, list) or not all(isinstance(p, dict) and "property_name" in p for p in props):
            raise Fault(f"API {method}() properties must be [{{property_name, value}}]")
        return {p["property_name"]: p.get("value") for p in props}

    def _apply_properties(self, f: Field, props: dict) -> None:
        for key, value in props.items():
            if key == "name":
                f.label = value
            elif key == "description":
                f.description = value or ""
            elif key == "valid_values":
                f.valid_values = list(value or [])
            elif key == "valid_types":
                f.entity_types = list(value or [])
            elif key == "default_value":
                f.default = value
            elif key == "summary_default":
                f.summary_default = value
            else:
                f.properties[key] = value

    def rpc_schema_field_create(self, caller: Caller, args: Any) -> str:
        if not isinstance(args, dict):
            raise Fault("API schema_field_create() expects a mapping of arguments")
        entity_type = self._type("schema_field_create", args)
        data_type = args.get("data_type")
        from sgcache.fields import REGISTRY
        if not isinstance(data_type, str) or data_type not in REGISTRY:
            raise Fault(f"API schema_field_create() unknown data type {data_type!r}")
        props = self._properties("schema_field_create", args)
        label = props.get("name")
        if not isinstance(label, str) or not label.strip():
            raise Fault("API schema_field_create() the field needs a display name")
        name = "sg_" + _snake(label)
        if name in self.schema[entity_type].fields:
            raise Fault(f"API schema_field_create() {entity_type}.{name} already exists")
        f = Field(name=name, data_type=data_type)
        self._apply_properties(f, props)
        self.schema[entity_type].fields[name] = f
        self.emu._schema[entity_type][name] = field_to_site(entity_type, f)
        default = [] if data_type == "multi_entity" else f.default
        for row in self.emu._db[entity_type].values():
            row[name] = copy.deepcopy(default)
        self._schema_changed(caller, "New", entity_type, name, {"data_type": data_type, "human_name": label})
        return name

    def rpc_schema_field_update(self, caller: Caller, args: Any) -> bool:
        if not isinstance(args, dict):
            raise Fault("API schema_field_update() expects a mapping of arguments")
        entity_type = self._type("schema_field_update", args)
        name = args.get("field_name")
        if not isinstance(name, str):
            raise Fault("API schema_field_update() field_name must be a string")
        f = self.schema[entity_type].fields.get(name)
        if f is None:
            raise Fault(f"API schema_field_update() {entity_type}.{name} doesn't exist")
        props = self._properties("schema_field_update", args)
        self._apply_properties(f, props)
        self.emu._schema[entity_type][name] = field_to_site(entity_type, f)
        self._schema_changed(caller, "Change", entity_type, name, props)
        return True

    def rpc_schema_field_delete(self, caller: Caller, args: Any) -> bool:
        if not isinstance(args, dict):
            raise Fault("API schema_field_delete() expects a mapping of arguments")
        entity_type = self._type("schema_field_delete", args)
        name = args.get("field_name")
        if not isinstance(name, str):
            raise Fault("API schema_field_delete() field_name must be a string")
        if name not in self.schema[entity_type].fields or name in ("id", "created_at", "updated_at"):
            raise Fault(f"API schema_field_delete() {entity_type}.{name} doesn't exist or can't be deleted")
        del self.schema[entity_type].fields[name]
        del self.emu._schema[entity_type][name]
        for row in self.emu._db[entity_type].values():
            row.pop(name, None)
        self._schema_changed(caller, "Delete", entity_type, name, {})
        return True

    def _schema_changed(self, caller: Caller, action: str, entity_type: str, field_name: str, changes: dict):
        self.version += 1
        self._read_cache.clear()
        key = (entity_type, field_name)
        if key not in self._display_columns:
            self._display_columns[key] = len(self._display_columns) + 1
        column_id = self._display_columns[key]
        if caller.generate_events:
            self._transaction(lambda: events.display_column(self, caller, action, entity_type, field_name,
                                                            changes, column_id))

    def rpc_get_session_token(self, caller: Caller, args: Any) -> dict:
        token = secrets.token_hex(16)
        kind, _, name = caller.name.partition(":")
        if " as " in caller.name:  # sudo: the session is the impersonated user's
            kind, name = "user", caller.name.rsplit(":", 1)[1]
        self.sessions[token] = (kind, name, self.clock() + SESSION_LIFETIME)
        return {"session_id": token}

    def expire_sessions(self) -> int:
        with self.lock:
            past = self.clock() - dt.timedelta(seconds=1)
            for token, (kind, name, _) in list(self.sessions.items()):
                self.sessions[token] = (kind, name, past)
            return len(self.sessions)

    # --- files -----------------------------------------------------------------------------------

    def store_file(self, caller: Caller, entity_type: str, entity_id: int, field_name: str | None,
                   display_name: str, content_type: str, content: bytes, thumbnail: bool, base_url: str) -> int:
        """Keep an uploaded file, as an Attachment, and link it from the entity; return its id."""
        with self.lock:
            if entity_type not in self.schema:
                raise Fault(f"upload: entity type {entity_type!r} doesn't exist")
            self._existing("upload", entity_type, entity_id)
            self.check_write(caller, "upload", entity_type, entity_id)
            if self.file_dir is None:
                raise Fault("upload: this site has no folder for files (start it with a state file or file dir)")
            self.file_dir.mkdir(parents=True, exist_ok=True)

            def run():
                data = {}
                if "Attachment" in self.schema:
                    attachment_fields = self.schema["Attachment"].fields
                    if "description" in attachment_fields:
                        data["description"] = display_name
                    attachment_id = self._insert("Attachment", data, caller, emit=caller.generate_events)
                else:
                    attachment_id = max(self.files, default=0) + 1
                path = self.file_dir / f"attachment-{attachment_id}"
                path.write_bytes(content)
                self.files[attachment_id] = StoredFile(display_name, content_type, str(path))
                url = f"{base_url.rstrip('/')}/file_serve/attachment/{attachment_id}"
                if thumbnail:
                    target = field_name if field_name in self.schema[entity_type].fields else "image"
                    value: Any = url
                else:
                    target = field_name
                    value = {"url": url, "name": display_name, "content_type": content_type,
                             "link_type": "upload", "type": "Attachment", "id": attachment_id}
                if "Attachment" in self.schema and "this_file" in self.schema["Attachment"].fields:
                    self.emu._db["Attachment"][attachment_id]["this_file"] = {
                        "url": url, "name": display_name, "content_type": content_type, "link_type": "upload",
                        "type": "Attachment", "id": attachment_id}
                if thumbnail and target in self.schema[entity_type].fields and caller.generate_events:
                    # A hosted site first logs a transient image (the upload being processed).
                    row = self.emu._db[entity_type][entity_id]
                    events.attribute_change(self, caller, entity_type, row, target, row.get(target), url,
                                            extra={"is_transient": True})
                if target and target in self.schema[entity_type].fields:
                    self._update(caller, {"type": entity_type, "id": entity_id,
                                          "fields": [{"field_name": target, "value": value}]})
                return attachment_id

            return self._transaction(run)

    def session_user(self, token: str | None) -> bool:
        session = self.sessions.get(token or "")
        return session is not None and session[2] > self.clock()

    # --- persistence ----------------------------------------------------------------------------

    STATE_VERSION = 3  # 3: permission groups

    def save(self, path: str | Path) -> None:
        """Write everything to ``path`` (atomically: a temporary file, then a rename)."""
        path = Path(path)
        with self.lock:
            state = {
                "version": self.STATE_VERSION, "db": self.emu._db, "ids": self.emu._ids,
                "schema_fields": self.emu._schema, "schema_entities": self.emu._schema_entity,
                "schema": self.schema, "hidden": self.emu.hidden_until, "sessions": self.sessions,
                "files": self.files, "scripts": self.scripts, "humans": self.humans,
                "display_columns": self._display_columns,
                "high_water": self.emu.high_water,
            }
            data = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)

    @classmethod
    def restore(cls, path: str | Path, **kwargs) -> MockSite:
        state = pickle.loads(Path(path).read_bytes())
        if state.get("version") != cls.STATE_VERSION:
            raise ValueError(f"{path}: state file version {state.get('version')} is not {cls.STATE_VERSION}")
        site = cls(state["schema"], scripts=[], humans=[], **kwargs)
        site.emu._db = state["db"]
        site.emu._ids = state["ids"]
        site.emu._schema = state["schema_fields"]
        site.emu._schema_entity = state["schema_entities"]
        site.emu.hidden_until = state["hidden"]
        site.sessions = state["sessions"]
        site.files = state["files"]
        site.scripts = state["scripts"]
        site.humans = state["humans"]
        site._display_columns = state["display_columns"]
        site.emu.high_water = state["high_water"]
        return site
