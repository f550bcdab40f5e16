"""sgcache's own bookkeeping tables (``_sgcache_*``): what storage exists and what needs a backfill."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from sgcache.fields.types import UTCDateTime
from sgcache.store import history, triggerstate
from sgcache.store import slim as slim_records

#: Bumped when the layout of the state tables themselves changes.
STATE_VERSION = 8

#: ``_sgcache_meta`` keys: a value that changes whenever people, scripts, projects or permission
#: groups change on the site (proxies then forget who their callers are and what they may see),
#: and the permission groups a failed shadow check switched to passthrough (JSON {code: why}).
AUTH_EPOCH = "auth_epoch"
AUTH_TRIPPED = "auth_tripped"
#: ``_sgcache_meta`` key: the watcher found every change on the site up to this time (ISO) applied;
#: reads of the past are answered up to it.
HISTORY_UNTIL = "history_until"
#: ``_sgcache_meta`` key: versions that ended before this time (ISO) were pruned (history.keep).
HISTORY_PRUNED = "history_pruned"


@dataclass
class StateTables:
    meta: sa.Table
    fields: sa.Table
    types: sa.Table
    cursor: sa.Table
    applied: sa.Table
    dead_letters: sa.Table
    samples: sa.Table
    sessions: sa.Table
    other_sides: sa.Table
    #: slim records of the types the schema leaves out (see sgcache.store.slim)
    slim: sa.Table
    slim_types: sa.Table
    #: the earlier versions of every multi-entity list (see sgcache.store.history)
    link_history: sa.Table
    #: spans in which the cache holds no exact version of an entity (history.mark_unsure)
    history_unsure: sa.Table
    #: event plugins' cursors, out-of-order events handled, dead letters (sgcache.store.triggerstate)
    trigger_cursors: sa.Table
    trigger_done: sa.Table
    trigger_dead: sa.Table

    def all(self) -> list[sa.Table]:
        return [self.meta, self.fields, self.types, self.cursor, self.applied, self.dead_letters, self.samples,
                self.sessions, self.other_sides, self.slim, self.slim_types, self.link_history, self.history_unsure,
                self.trigger_cursors, self.trigger_done, self.trigger_dead]


def define(metadata: sa.MetaData) -> StateTables:
    meta = sa.Table(
        "_sgcache_meta", metadata,
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    fields = sa.Table(
        "_sgcache_fields", metadata,
        sa.Column("entity_type", sa.Text, primary_key=True),
        sa.Column("field_name", sa.Text, primary_key=True),
        sa.Column("data_type", sa.Text, nullable=False),
        # what the storage was made for (see FieldHandler.storage); "uncached" when there is none
        sa.Column("storage", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        # the storage was (re)made and holds no trustworthy data until a full import fills it
        sa.Column("needs_backfill", sa.Boolean, nullable=False),
        sa.Column("backfill_reason", sa.Text),
        # when the cache's history of the field begins (its first complete import; see
        # sgcache.store.history): reads of the past before then are refused
        sa.Column("history_from", UTCDateTime),
    )
    types = sa.Table(
        "_sgcache_types", metadata,
        sa.Column("entity_type", sa.Text, primary_key=True),
        # a full import of the type completed (the read path trusts only such types)
        sa.Column("full_scan_at", UTCDateTime),
        sa.Column("full_scan_seconds", sa.Float),
        # the newest updated_at an incremental scan has seen
        sa.Column("watermark", UTCDateTime),
        sa.Column("incremental_scans", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_scan_at", UTCDateTime),
        sa.Column("last_scan_seconds", sa.Float),
        # a schema change upstream: the type needs a full import again
        sa.Column("needs_rescan", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    cursor = sa.Table(
        "_sgcache_cursor", metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        # highest event id applied (or given up on); every id below it not in ``gaps`` is done
        sa.Column("max_applied_id", sa.BigInteger, nullable=False),
        # JSON {event id: first seen missing, ISO time}: ids below max_applied_id still awaited
        sa.Column("gaps", sa.Text, nullable=False, server_default="{}"),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    applied = sa.Table(
        "_sgcache_applied_events", metadata,
        # one row per applied event, written with it: applying one twice would break the key
        sa.Column("event_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("applied_at", UTCDateTime, nullable=False),
        # the entry as the site gave it (JSON), kept while event plugins run (triggers.paths)
        sa.Column("event", sa.Text),
    )
    dead_letters = sa.Table(
        "_sgcache_dead_letters", metadata,
        sa.Column("event_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("event_type", sa.Text),
        sa.Column("entity_type", sa.Text),
        sa.Column("entity_id", sa.BigInteger),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("failed_at", UTCDateTime, nullable=False),
        sa.Column("event", sa.Text, nullable=False),
        # later tries, minutes apart (watcher.dead_letter_retry), until one applies the event or
        # reads its entity again; a resolved dead letter stays as a record and no longer makes
        # its type suspect
        sa.Column("retries", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_retry_at", UTCDateTime),
        sa.Column("resolved_at", UTCDateTime),
        sa.Column("resolution", sa.Text),
    )
    samples = sa.Table(
        "_sgcache_samples", metadata,
        # what the status page charts: request latency per proxy process, event lag from the watcher
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Index("ix_sgcache_samples_kind_at", "kind", "at"),
    )
    sessions = sa.Table(
        "_sgcache_sessions", metadata,
        # session tokens minted through the proxy (get_session_token), tied to the person or script
        # that asked; the token itself is never stored, only its SHA-256
        sa.Column("token_sha256", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),  # person | script
        sa.Column("name", sa.Text, nullable=False),  # login or script name
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Index("ix_sgcache_sessions_created_at", "created_at"),
    )
    other_sides = sa.Table(
        "_sgcache_other_sides", metadata,
        # cached entities to read again from the site because a write changed a link to them (the
        # reverse field, Shot.tasks for Task.entity, changed on the site with no event and no
        # updated_at of its own); queued in the transaction of that write, removed in the
        # transaction that writes a read made after ``queued_at`` (see sgcache.sync.refresh)
        sa.Column("entity_type", sa.Text, primary_key=True),
        sa.Column("entity_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("queued_at", UTCDateTime, nullable=False),
        sa.Column("because", sa.Text, nullable=False),  # the write's entity, "Task 120.entity"
        sa.Index("ix_sgcache_other_sides_queued_at", "queued_at"),
    )
    slim, slim_types = slim_records.define(metadata)
    trigger_cursors, trigger_done, trigger_dead = triggerstate.define(metadata)
    return StateTables(meta=meta, fields=fields, types=types, cursor=cursor, applied=applied,
                       dead_letters=dead_letters, samples=samples, sessions=sessions, other_sides=other_sides,
                       slim=slim, slim_types=slim_types, link_history=history.links_table(metadata),
                       history_unsure=history.unsure_table(metadata),
                       trigger_cursors=trigger_cursors, trigger_done=trigger_done, trigger_dead=trigger_dead)


@dataclass(frozen=True)
class FieldState:
    entity_type: str
    field_name: str
    data_type: str
    storage: str
    needs_backfill: bool
    backfill_reason: str | None


def read_field_states(conn: sa.Connection, st: StateTables) -> dict[tuple[str, str], FieldState]:
    f = st.fields
    # Only the columns every layout has: a migration reads them before it adds newer ones.
    rows = conn.execute(sa.select(f.c.entity_type, f.c.field_name, f.c.data_type, f.c.storage, f.c.needs_backfill,
                                  f.c.backfill_reason)).mappings()
    return {(r["entity_type"], r["field_name"]): FieldState(
        r["entity_type"], r["field_name"], r["data_type"], r["storage"], r["needs_backfill"],
        r["backfill_reason"]) for r in rows}


def backfill_marks(conn: sa.Connection, st: StateTables) -> dict[str, dict[str, str]]:
    """{entity type: {field: reason}} for every field whose data is not yet trustworthy."""
    out: dict[str, dict[str, str]] = {}
    rows = conn.execute(sa.select(st.fields.c.entity_type, st.fields.c.field_name, st.fields.c.backfill_reason)
                        .where(st.fields.c.needs_backfill.is_(True))
                        .order_by(st.fields.c.entity_type, st.fields.c.field_name))
    for type_name, field_name, reason in rows:
        out.setdefault(type_name, {})[field_name] = reason or ""
    return out


def clear_backfill(conn: sa.Connection, st: StateTables, entity_type: str,
                   fields: list[str] | None = None) -> int:
    """Mark a type's fields (all, or those listed) as filled by a complete import."""
    stmt = sa.update(st.fields).where(st.fields.c.entity_type == entity_type)
    if fields is not None:
        stmt = stmt.where(st.fields.c.field_name.in_(fields))
    # The history of a field just filled (or filled again after a rebuild) begins now.
    starts = stmt.where(sa.or_(st.fields.c.needs_backfill.is_(True), st.fields.c.history_from.is_(None)))
    conn.execute(starts.values(history_from=dt.datetime.now(dt.UTC)))
    return conn.execute(stmt.values(needs_backfill=False, backfill_reason=None)).rowcount


def history_starts(conn: sa.Connection, st: StateTables) -> dict[tuple[str, str], dt.datetime | None]:
    """{(entity type, field): when the cache's history of it begins (None: not yet)}."""
    rows = conn.execute(sa.select(st.fields.c.entity_type, st.fields.c.field_name, st.fields.c.history_from))
    return {(t, f): at for t, f, at in rows}


#: ``_sgcache_meta`` keys of webhook deliveries (sgcache.webhooks): the highest event id a
#: delivery named, and when the last delivery came (ISO).
WEBHOOK_WAKE = "webhook_wake_id"
WEBHOOK_LAST = "webhook_last_at"


def webhook_marks(conn: sa.Connection, st: StateTables) -> tuple[int, dt.datetime | None]:
    """(the highest event id a webhook delivery named, 0 if none; when the last one came)."""
    found = dict(conn.execute(sa.select(st.meta.c.key, st.meta.c.value)
                              .where(st.meta.c.key.in_([WEBHOOK_WAKE, WEBHOOK_LAST]))).all())
    wake = int(found[WEBHOOK_WAKE]) if found.get(WEBHOOK_WAKE, "").isdigit() else 0
    last = dt.datetime.fromisoformat(found[WEBHOOK_LAST]) if found.get(WEBHOOK_LAST) else None
    return wake, last


#: ``_sgcache_meta`` key of the cached project set (see read_projects).
PROJECTS = "projects"


def decode_projects(raw: str | None) -> list[int] | None:
    """The cached project set as stored: None before any import, [] when every project is
    cached, else the project ids."""
    if raw is None:
        return None
    value = json.loads(raw)
    return sorted(value) if isinstance(value, list) else []


def read_projects(conn: sa.Connection, st: StateTables) -> list[int] | None:
    """The cached project set (see decode_projects)."""
    return decode_projects(conn.execute(sa.select(st.meta.c.value).where(st.meta.c.key == PROJECTS)).scalar())


def write_projects(conn: sa.Connection, st: StateTables, projects: list[int]) -> None:
    """Record the cached project set ([] for every project)."""
    set_meta(conn, st, PROJECTS, json.dumps(sorted(projects) or "all"))


def set_meta(conn: sa.Connection, st: StateTables, key: str, value: str) -> None:
    """Set one ``_sgcache_meta`` key in a single statement (safe when two processes do it at once)."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(st.meta).values(key=key, value=value)
    conn.execute(stmt.on_conflict_do_update(index_elements=[st.meta.c.key], set_={"value": stmt.excluded.value}))


def bump_auth_epoch(conn: sa.Connection, st: StateTables, why: str) -> None:
    """Tell every proxy to forget remembered identities, verdicts and visibilities."""
    import uuid

    set_meta(conn, st, AUTH_EPOCH, f"{uuid.uuid4().hex} {why}"[:200])


def tripped_groups(conn: sa.Connection, st: StateTables) -> dict[str, dict]:
    """{group code: what tripped it} for the groups switched to passthrough by a shadow check."""
    value = conn.execute(sa.select(st.meta.c.value).where(st.meta.c.key == AUTH_TRIPPED)).scalar()
    data = json.loads(value) if value else {}
    return data if isinstance(data, dict) else {}


def trip_group(conn: sa.Connection, st: StateTables, group: str, detail: dict) -> None:
    tripped = tripped_groups(conn, st)
    tripped.setdefault(group, detail)
    set_meta(conn, st, AUTH_TRIPPED, json.dumps(tripped, sort_keys=True))


def clear_tripped(conn: sa.Connection, st: StateTables, groups: list[str] | None = None) -> list[str]:
    """Let these groups (None: all) have cached answers again; return the codes cleared."""
    tripped = tripped_groups(conn, st)
    cleared = sorted(tripped if groups is None else [g for g in groups if g in tripped])
    for code in cleared:
        del tripped[code]
    set_meta(conn, st, AUTH_TRIPPED, json.dumps(tripped, sort_keys=True))
    return cleared
