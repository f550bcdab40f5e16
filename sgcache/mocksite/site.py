"""The stand-in site's behaviour, independent of HTTP: one JSON-RPC call in, one result (or Fault) out.

:class:`MockSite` puts the parts together and dispatches calls. It authenticates callers
(:mod:`~sgcache.mocksite.accounts`), applies their permission groups (:mod:`~sgcache.mocksite.access`),
translates wire values (:mod:`~sgcache.mocksite.values`), lets the :class:`Emulator` (mockgun)
store and filter, and adds what a hosted site maintains itself: ids, timestamps, created_by /
updated_by, link names, reverse links, retirement (:mod:`~sgcache.mocksite.writes`) and the event
log (:mod:`~sgcache.mocksite.events`).
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sgcache.mocksite.access import Access
from sgcache.mocksite.accounts import DEFAULT_HUMANS, DEFAULT_SCRIPTS, Accounts, Caller, Human, Script
from sgcache.mocksite.emulator import Emulator, FilterError
from sgcache.mocksite.events import EventLog
from sgcache.mocksite.faults import AUTH_FAULT, Fault
from sgcache.mocksite.files import FileStore, StoredFile, Upload
from sgcache.mocksite.filters import FilterTranslator
from sgcache.mocksite.ledger import Ledger
from sgcache.mocksite.links import REVERSE_FIELDS, ReverseLinks, reverse_fields
from sgcache.mocksite.permissions import GROUPS, Group, View
from sgcache.mocksite.reads import PAGE_SIZE, Reader
from sgcache.mocksite.schema_edits import SchemaEditor
from sgcache.mocksite.state import STATE_VERSION, pack_state, read_state, write_atomically
from sgcache.mocksite.thumbnails import Thumbnails
from sgcache.mocksite.values import Values, parse_wire_datetime, wire_datetime
from sgcache.mocksite.writes import Writer
from sgcache.schema.model import Schema
from sgcache.schema.site import schema_to_site

# Names other modules (and pickled state files: Script, Human, StoredFile) find here.
__all__ = ["AUTH_FAULT", "DEFAULT_HUMANS", "DEFAULT_SCRIPTS", "PAGE_SIZE", "REVERSE_FIELDS", "Caller", "Fault",
           "Human", "MockSite", "Script", "StoredFile", "parse_wire_datetime", "reverse_fields", "wire_datetime"]

log = logging.getLogger(__name__)

class _Forward:
    """An attribute that one of the site's parts keeps, read and set through the site."""

    def __init__(self, part: str, name: str):
        self.part = part
        self.name = name

    def __get__(self, site: Any, owner: type | None = None) -> Any:
        return self if site is None else getattr(getattr(site, self.part), self.name)

    def __set__(self, site: Any, value: Any) -> None:
        setattr(getattr(site, self.part), self.name, value)


class MockSite:
    """A small hosted Shotgun site, in memory (optionally saved to a state file)."""

    STATE_VERSION = STATE_VERSION

    def __init__(self, schema: Schema, *, timezone: str = "UTC", late_events: float = 0.0, seed: int = 0,
                 scripts: list[Script] | None = None, humans: list[Human] | None = None,
                 file_dir: str | Path | None = None, clock=None, thumbnail_ttl: int | None = None,
                 thumbnail_pending: float = 0.0):
        """``thumbnail_ttl``: seconds a signed thumbnail URL lives (None: plain URLs, as the tests that
        compare answers need); ``thumbnail_pending``: seconds a new thumbnail reads as the placeholder
        (see :mod:`sgcache.mocksite.thumbnails`)."""
        self.schema = schema
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        fields, entities = schema_to_site(schema)
        identifiers = {t.name: t.identifier for t in schema}
        self.emu = Emulator(fields, entities, identifiers, timezone=timezone, clock=self.clock)
        self.lock = threading.RLock()
        self.rng = random.Random(seed)
        self.calls: Counter[str] = Counter()
        self._build_parts(late_events, file_dir, Thumbnails(self.clock, ttl=thumbnail_ttl, pending=thumbnail_pending))
        if "PermissionRuleSet" in schema:
            for group in GROUPS.values():
                self.load_entity("PermissionRuleSet", self._only_known("PermissionRuleSet", {
                    "code": group.code, "display_name": group.display_name, "entity_type": group.entity_type}))
        for script in scripts if scripts is not None else DEFAULT_SCRIPTS:
            self.add_script(script)
        for human in humans if humans is not None else DEFAULT_HUMANS:
            self.add_human(human)

    def _build_parts(self, late_events: float, file_dir: str | Path | None, thumbnails: Thumbnails) -> None:
        schema, emu = self.schema, self.emu
        self.ledger = Ledger(emu, self.clock, late_events=late_events, rng=self.rng)
        self.thumbnails = thumbnails
        self.values = Values(schema, emu, self.thumbnails)
        self.access = Access(schema, emu, self.ledger)
        self.accounts = Accounts(self.clock, self.access.group_of)
        self.events = EventLog(schema, emu, self.ledger, self.values.to_wire)
        self.filters = FilterTranslator(emu)
        self.reader = Reader(self.values, self.filters, self.ledger)
        self.ledger.listeners.append(self.reader.cache.clear)
        self.links = ReverseLinks(schema, emu, self.ledger, self.events)
        self.writer = Writer(self.values, self.ledger, self.events, self.links, self.access, self.reader.entity_dict)
        self.writer.user_written = self.accounts.user_written
        self.accounts.may_log_in = self._may_log_in
        self.schema_editor = SchemaEditor(schema, emu, self.ledger, self.events)
        self.file_store = FileStore(self.writer, file_dir, thumbnails)
        self.handlers = self._handlers()

    def _handlers(self) -> dict[str, Callable[[Caller, Any], Any]]:
        """method name -> handler(caller, args)."""
        editor, writer = self.schema_editor, self.writer
        return {
            "read": lambda caller, args: self.reader.read(args),
            "summarize": lambda caller, args: self.reader.summarize(args),
            "create": writer.rpc_create, "update": writer.rpc_update, "delete": writer.rpc_delete,
            "revive": writer.rpc_revive, "batch": writer.rpc_batch,
            "schema_read": editor.rpc_schema_read, "schema_entity_read": editor.rpc_schema_entity_read,
            "schema_field_read": editor.rpc_schema_field_read,
            "schema_field_create": editor.rpc_schema_field_create,
            "schema_field_update": editor.rpc_schema_field_update,
            "schema_field_delete": editor.rpc_schema_field_delete,
            "get_session_token": lambda caller, args: self.accounts.new_session(caller),
        }

    # --- state the parts hold, reachable (and settable) as the site's own attributes --------------

    #: the data version: it moves with every change
    version = _Forward("ledger", "version")
    #: the share of writes whose event-log entries are readable only seconds later
    late_events = _Forward("ledger", "late_events")
    reverse = _Forward("links", "reverse")
    scripts = _Forward("accounts", "scripts")
    humans = _Forward("accounts", "humans")
    sessions = _Forward("accounts", "sessions")
    files = _Forward("file_store", "files")
    file_dir = _Forward("file_store", "file_dir")
    #: the sorted rows of recent reads (clear it after changing rows behind the site's back)
    _read_cache = _Forward("reader", "cache")

    # --- users --------------------------------------------------------------------------------

    def add_script(self, script: Script) -> Script:
        with self.lock:
            if "ApiUser" in self.schema:
                script.id = self.load_entity("ApiUser", self._only_known("ApiUser", {
                    "firstname": script.name, "generate_event_log_entries": script.generate_events,
                    "permission_rule_set": self.rule_set(script.group)}))
            self.accounts.scripts[script.name] = script
            return script

    def add_human(self, human: Human) -> Human:
        with self.lock:
            first, _, last = human.name.partition(" ")
            human.id = self.load_entity("HumanUser", self._only_known("HumanUser", {
                "login": human.login, "name": human.name, "firstname": first, "lastname": last,
                "email": f"{human.login}@studio.example", "sg_status_list": "act",
                "permission_rule_set": self.rule_set(human.group)}))
            self.accounts.humans[human.login] = human
            return human

    def _may_log_in(self, user_id: int) -> bool:
        """A person logs in unless retired or disabled (``sg_status_list`` ``dis``)."""
        row = self.emu.table("HumanUser").get(user_id) if "HumanUser" in self.schema else None
        return row is None or (not row.get("__retired") and row.get("sg_status_list") != "dis")

    def _only_known(self, entity_type: str, data: dict) -> dict:
        fields = self.schema[entity_type].fields
        return {k: v for k, v in data.items() if k in fields}

    def rule_set(self, code: str) -> dict | None:
        """The link to the permission group with this code (None when the schema has none)."""
        return self.access.rule_set(code)

    def group_of(self, user: dict) -> Group | None:
        return self.access.group_of(user)

    def view(self, caller: Caller) -> View:
        return self.access.view(caller)

    def check_type(self, caller: Caller, entity_type: str) -> None:
        self.access.check_type(caller, entity_type)

    def check_read(self, caller: Caller, method: str, args: Any) -> None:
        self.access.check_read(caller, method, args)

    def check_write(self, caller: Caller, method: str, entity_type: str, entity_id: Any = None,
                    data: dict | None = None) -> None:
        self.access.check_write(caller, method, entity_type, entity_id, data)

    def authenticate(self, auth: Any, method: str) -> Caller:
        return self.accounts.authenticate(auth, method)

    def expire_sessions(self) -> int:
        with self.lock:
            return self.accounts.expire_sessions()

    def session_user(self, token: str | None) -> bool:
        return self.accounts.session_user(token)

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
        handler = self.handlers.get(method)
        if handler is None:
            raise Fault(f"API {method}() doesn't exist: unknown method {method!r}")
        auth = params[0] if params else None
        args = params[1] if len(params) > 1 else None
        with self.lock:
            caller = self.authenticate(auth, method)
            self.writer.current = caller
            try:
                return self._handle(caller, method, handler, args)
            except FilterError as e:
                raise Fault(f"API {method}() {e}") from None
            except OverflowError:
                raise Fault(f"API {method}() a number or date in the request is out of range") from None
            except RecursionError:
                raise Fault(f"API {method}() the filters are nested too deeply") from None
            finally:
                self.writer.current = None

    def _handle(self, caller: Caller, method: str, handler: Callable[[Caller, Any], Any], args: Any) -> Any:
        if caller.group is not None and method in ("read", "summarize"):
            return self._read_as(caller, method, handler, args)
        result = handler(caller, args)
        if caller.group is not None and method in ("create", "update", "batch"):
            # A write's answer is built from all the data: show it as the caller sees it.
            view = self.access.view(caller)
            for entity in result if isinstance(result, list) else [result]:
                if isinstance(entity, dict):
                    view.scrub(self.schema, entity)
        return result

    def _read_as(self, caller: Caller, method: str, handler: Callable[[Caller, Any], Any], args: Any) -> Any:
        """A read by a restricted caller, over the rows it may see (see permissions.View)."""
        self.access.check_read(caller, method, args)
        view = self.access.view(caller)
        self.reader.viewing = (caller.user["type"], caller.user["id"], caller.group.code)
        try:
            with self.emu.showing(view.db, view.ids):
                result = handler(caller, args)
        finally:
            self.reader.viewing = None
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

    # --- values, reads and loading ---------------------------------------------------------------

    def to_row_value(self, method: str, entity_type: str, field_name: str, value: Any) -> Any:
        """A wire value -> how the emulator stores it; Fault for a value of the wrong shape."""
        return self.values.to_row_value(method, entity_type, field_name, value)

    def to_wire(self, entity_type: str, field_name: str, value: Any) -> Any:
        """A stored value -> the wire: datetimes as strings, links with their names."""
        return self.values.to_wire(entity_type, field_name, value)

    def translate_filters(self, entity_type: str, group: Any) -> tuple[list, str]:
        """Wire filters -> (mockgun list filters, logical operator)."""
        return self.filters.translate(entity_type, group)

    def entity_dict(self, entity_type: str, row: dict, fields: list[str]) -> dict:
        return self.reader.entity_dict(entity_type, row, fields)

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
                converted[name] = self.values.to_row_value("load", entity_type, name, value)
            if isinstance(created_at, str):
                created_at = parse_wire_datetime(created_at)
            caller = Caller(created_by, None, False, None, "loader") if created_by else None
            entity_id = self.writer.insert(entity_type, converted, caller, created_at=created_at, retired=retired)
            self.ledger.changed()
            return entity_id

    # --- files -----------------------------------------------------------------------------------

    def store_file(self, caller: Caller, entity_type: str, entity_id: int, field_name: str | None,
                   display_name: str, content_type: str, content: bytes, thumbnail: bool, base_url: str) -> int:
        """Keep an uploaded file, as an Attachment, and link it from the entity; return its id."""
        with self.lock:
            return self.file_store.store(caller, Upload(entity_type, entity_id, field_name, display_name,
                                                        content_type, content, thumbnail, base_url))

    # --- persistence ----------------------------------------------------------------------------

    def packed(self) -> bytes:
        """Everything the site holds, as :meth:`save` writes it and :meth:`take_state` reads it."""
        with self.lock:
            return pack_state({
                **self.emu.dump(), "schema": self.schema, "sessions": self.accounts.sessions,
                "files": self.file_store.files, "scripts": self.accounts.scripts, "humans": self.accounts.humans,
                "display_columns": self.schema_editor.display_columns,
            })

    def save(self, path: str | Path) -> None:
        """Write everything to ``path`` (atomically: a temporary file, then a rename)."""
        write_atomically(path, self.packed())

    @classmethod
    def restore(cls, path: str | Path, **kwargs) -> MockSite:
        state = read_state(path)
        site = cls(state["schema"], scripts=[], humans=[], **kwargs)
        site.take_state(state)
        return site

    def take_state(self, state: dict) -> None:
        """Hold what a saved state holds instead of what the site held (the same schema's)."""
        with self.lock:
            self.emu.load(state)
            self.accounts.sessions = state["sessions"]
            self.file_store.files = state["files"]
            self.accounts.scripts = state["scripts"]
            self.accounts.humans = state["humans"]
            self.schema_editor.display_columns = state["display_columns"]
            self.ledger.changed()
