"""``schema_read``, ``schema_entity_read`` and ``schema_field_read`` answered from a copy of the site's schema.

The copy is the site's own answer to ``schema_read`` and ``schema_entity_read`` (the whole
site, not only the cached types), read with sgcache's own script and kept in the cache
database (``_sgcache_meta`` key ``site_schema``) so every proxy process shares it. When the
watcher sees a schema change in the event log it drops the copy and writes a new
``site_schema_stamp``; each proxy notices the new stamp and reads the schema again. The
per-project variant (``project``) and localized requests pass through.
"""

from __future__ import annotations

import copy
import json
import threading
import uuid
from typing import Any

import sqlalchemy as sa

from sgcache.query import Uncertain
from sgcache.store import state
from sgcache.store.tables import Tables

SCHEMA_KEY = "site_schema"
STAMP_KEY = "site_schema_stamp"
METHODS = frozenset({"schema_read", "schema_entity_read", "schema_field_read"})


def forget(conn: sa.Connection, tables: Tables) -> None:
    """Drop the copy (the site's schema changed); proxies read it again on their next request."""
    meta = tables.state.meta
    conn.execute(sa.delete(meta).where(meta.c.key == SCHEMA_KEY))
    state.set_meta(conn, tables.state, STAMP_KEY, uuid.uuid4().hex)


class SiteSchema:
    """One process's view of the copy, reloaded when the stamp in the database changes."""

    def __init__(self, engine: sa.Engine, tables: Tables, fetch):
        self.engine = engine
        self.tables = tables
        #: () -> (schema_read answer, schema_entity_read answer), asked of the site
        self.fetch = fetch
        self._lock = threading.Lock()
        self._held: tuple[str | None, dict, dict] | None = None

    def _stamp(self, conn: sa.Connection) -> str | None:
        meta = self.tables.state.meta
        return conn.execute(sa.select(meta.c.value).where(meta.c.key == STAMP_KEY)).scalar()

    def get(self) -> tuple[dict, dict]:
        meta = self.tables.state.meta
        with self.engine.connect() as conn:
            stamp = self._stamp(conn)
            held = self._held
            if held is not None and held[0] == stamp:
                return held[1], held[2]
            raw = conn.execute(sa.select(meta.c.value).where(meta.c.key == SCHEMA_KEY)).scalar()
        with self._lock:
            if raw:
                stored = json.loads(raw)
                fields, entities = stored["schema_read"], stored["schema_entity_read"]
            else:
                fields, entities = self.fetch()
                with self.engine.begin() as conn:
                    if self._stamp(conn) == stamp:  # no schema change while we were reading
                        state.set_meta(conn, self.tables.state, SCHEMA_KEY, json.dumps(
                            {"schema_read": fields, "schema_entity_read": entities}))
            self._held = (stamp, fields, entities)
            return fields, entities

    def answer(self, method: str, args: Any) -> Any:
        """The site's answer to ``method`` with ``args``, or :class:`Uncertain`."""
        if args is not None and not isinstance(args, dict):
            raise Uncertain("malformed", f"{method} arguments")
        args = args or {}
        if args.get("project") is not None:
            raise Uncertain("schema_project", "per-project schema visibility")
        fields, entities = self.get()
        if method == "schema_read":
            if set(args) - {"project"}:
                raise Uncertain("malformed", f"{method} arguments")
            return copy.deepcopy(fields)
        if method == "schema_entity_read":
            if set(args) - {"project"}:
                raise Uncertain("malformed", f"{method} arguments")
            return copy.deepcopy(entities)
        entity_type, field_name = args.get("type"), args.get("field_name")
        if set(args) - {"type", "field_name", "project"} or not isinstance(entity_type, str) \
                or not (field_name is None or isinstance(field_name, str)):
            raise Uncertain("malformed", f"{method} arguments")
        type_fields = fields.get(entity_type)
        if type_fields is None:
            raise Uncertain("unknown_type", entity_type)  # the site's own fault says it best
        if field_name is None:
            return copy.deepcopy(type_fields)
        if field_name not in type_fields:
            raise Uncertain("unknown_field", f"{entity_type}.{field_name}")
        return {field_name: copy.deepcopy(type_fields[field_name])}
