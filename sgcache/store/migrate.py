"""Make the database agree with the schema file: create, alter and drop storage; idempotent.

The state table ``_sgcache_fields`` remembers which storage was made for each field. A field
whose storage is new or was remade is marked ``needs_backfill``: its columns hold no trustworthy
data until a full import of its type clears the mark. Tables of types sgcache never made are
never touched.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.schema import CreateColumn, CreateIndex, CreateTable

from sgcache.errors import SchemaError
from sgcache.fields import FieldHandler, make_field, names
from sgcache.fields.base import storage_has_association
from sgcache.schema.model import Field
from sgcache.store import history, state
from sgcache.store.tables import EntityTable, Tables

log = logging.getLogger(__name__)

#: advisory-lock key serializing migrations of one PostgreSQL database
MIGRATION_LOCK = 0x5C_CAC4E_0001


@dataclass
class MigrationReport:
    """What a migration did (or, in a dry run, would do), one line per action."""

    actions: list[str] = field(default_factory=list)
    backfill: list[tuple[str, str, str]] = field(default_factory=list)
    dry_run: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.actions)

    def add(self, action: str) -> None:
        self.actions.append(action)
        log.info("event=migrate dry_run=%s action=%r", str(self.dry_run).lower(), action)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class _Migration:
    def __init__(self, conn: sa.Connection, tables: Tables, dry_run: bool):
        self.conn = conn
        self.tables = tables
        self.dry_run = dry_run
        self.report = MigrationReport(dry_run=dry_run)
        self.preparer = conn.dialect.identifier_preparer
        self.inspector = sa.inspect(conn)
        self.existing_tables = set(self.inspector.get_table_names())
        # What a dry run would have done, so later steps plan against it: tables it would have
        # made (they exist for planning, not for inspection) and columns it would have dropped
        # or added.
        self.planned: set[str] = set()
        self.dropped_columns: set[tuple[str, str]] = set()
        self.added_columns: set[tuple[str, str]] = set()
        self.inspected_before: set[str] = set()
        # Tables sgcache made (from its state table): the only ones it may alter or drop.
        self.owned: set[str] = set()
        # CREATE statements not sent yet (see flush)
        self.pending: list[str] = []
        # What the database holds, read for all tables at once (a few queries instead of several
        # per table) and read again after any change (see _reflect).
        self._columns: dict[str, set[str]] | None = None
        self._indexes: dict[str, dict[str, list[str]]] | None = None

    # --- DDL helpers --------------------------------------------------------------------------

    def q(self, name: str) -> str:
        return self.preparer.quote(name)

    def ddl(self, action: str, statement) -> None:
        self.report.add(action)
        self.flush()
        if not self.dry_run:
            if isinstance(statement, str):
                self.conn.execute(sa.text(statement))
            else:
                statement()
            self._changed()

    def exists(self, table_name: str) -> bool:
        return table_name in self.existing_tables or table_name in self.planned

    def flush(self) -> None:
        """Send the CREATE statements held back (PostgreSQL: in one round trip)."""
        if self.pending:
            self.conn.exec_driver_sql(";\n".join(self.pending))
            self.pending.clear()
            self._changed()

    def _changed(self) -> None:
        self.inspector.clear_cache()
        self._columns = self._indexes = None

    def _reflect(self) -> None:
        """Read the columns and indexes of every existing table in one go."""
        self.flush()
        if self._columns is None:
            names_ = sorted(self.existing_tables)
            columns = self.inspector.get_multi_columns(filter_names=names_) if names_ else {}
            indexes = self.inspector.get_multi_indexes(filter_names=names_) if names_ else {}
            self._columns = {key[1]: {c["name"] for c in cols} for key, cols in columns.items()}
            self._indexes = {key[1]: {ix["name"]: ix["column_names"] for ix in ixs} for key, ixs in indexes.items()}

    def columns_of(self, table_name: str) -> set[str]:
        real = set()
        if table_name in self.existing_tables:
            self._reflect()
            real = self._columns.get(table_name, set())
        return (real - {c for t, c in self.dropped_columns if t == table_name}) | \
            {c for t, c in self.added_columns if t == table_name}

    def claim(self, table_name: str) -> None:
        """Refuse to build on a table of the same name that sgcache did not make."""
        if table_name in self.existing_tables and table_name not in self.owned:
            raise SchemaError(f"table {table_name} already exists in the database but was not made by "
                              "sgcache; drop or rename it, or use another database")

    def indexes_of(self, table_name: str) -> dict[str, list[str]]:
        if table_name not in self.existing_tables:
            return {}
        self._reflect()
        return dict(self._indexes.get(table_name, {}))

    def create_table(self, table: sa.Table) -> None:
        if self.conn.dialect.name == "postgresql" and not self.dry_run:
            # A new database makes hundreds of tables and indexes: held back and sent together
            # (see flush), each still reported.
            self.report.add(f"create table {table.name}")
            dialect = self.conn.dialect
            self.pending.append(str(CreateTable(table).compile(dialect=dialect)).strip())
            self.pending += [str(CreateIndex(ix).compile(dialect=dialect)).strip() for ix in table.indexes]
            self.existing_tables.add(table.name)
            return
        self.ddl(f"create table {table.name}", lambda: table.create(self.conn))
        (self.planned if self.dry_run else self.existing_tables).add(table.name)

    def drop_table(self, table_name: str) -> None:
        if self.exists(table_name):
            self.ddl(f"drop table {table_name}", f"DROP TABLE {self.q(table_name)}")
            self.existing_tables.discard(table_name)
            self.planned.discard(table_name)

    def add_missing_columns(self, table: sa.Table) -> None:
        """Bring a bookkeeping table made by an older sgcache up to date (its new columns are
        nullable or have a default, so the rows it holds stay valid)."""
        present = self.columns_of(table.name)
        for column in table.columns:
            if column.name in present:
                continue
            spec = CreateColumn(column).compile(dialect=self.conn.dialect)
            self.ddl(f"add column {table.name}.{column.name}", f"ALTER TABLE {self.q(table.name)} ADD COLUMN {spec}")
            if self.dry_run:
                self.added_columns.add((table.name, column.name))

    # --- one field ----------------------------------------------------------------------------

    def drop_field_storage(self, et: EntityTable, field_name: str, data_types: list[str]) -> None:
        """Remove whatever storage a field has (columns, their indexes, association table).

        ``data_types``: the types the field may have been stored as (previous and current).
        """
        table_name = et.table.name
        assoc = names.association_table(et.name, field_name)
        if assoc in self.owned or assoc in self.planned:
            self.drop_table(assoc)
            self._forget_links(et.name, field_name)
        possible = {field_name}
        for data_type in data_types:
            possible.update(c.name for c in make_field(et.name, Field(field_name, data_type)).columns())
        present = self.columns_of(table_name)
        doomed = sorted(present & possible)
        if not doomed:
            return
        for ix_name, ix_columns in self.indexes_of(table_name).items():
            if set(ix_columns) & set(doomed):
                self.ddl(f"drop index {ix_name}", f"DROP INDEX {self.q(ix_name)}")
        for column in doomed:
            self.ddl(f"drop column {table_name}.{column}",
                     f"ALTER TABLE {self.q(table_name)} DROP COLUMN {self.q(column)}")
            if self.dry_run:
                self.dropped_columns.add((table_name, column))
                self.added_columns.discard((table_name, column))

    def create_field_storage(self, et: EntityTable, handler: FieldHandler) -> None:
        table_name = et.table.name
        present = self.columns_of(table_name)
        for column in handler.columns():
            if column.name in present:
                continue
            spec = CreateColumn(et.table.c[column.name]).compile(dialect=self.conn.dialect)
            self.ddl(f"add column {table_name}.{column.name}",
                     f"ALTER TABLE {self.q(table_name)} ADD COLUMN {spec}")
            if self.dry_run:
                self.added_columns.add((table_name, column.name))
                self.dropped_columns.discard((table_name, column.name))
        if handler.association:
            assoc = et.associations[handler.name]
            self.claim(assoc.name)
            if not self.exists(assoc.name):
                self.create_table(assoc)

    def ensure_indexes(self, et: EntityTable) -> None:
        for table in (et.table, *et.associations.values()):
            if table.name not in self.inspected_before or not self.exists(table.name):
                continue  # made in this run, with its indexes
            existing = self.indexes_of(table.name)
            for ix in table.indexes:
                self._index_as_defined(ix, existing)

    def _index_as_defined(self, ix: sa.Index, existing: dict[str, list[str]], *, makeable: bool = True) -> None:
        """Make ``ix`` if ``existing`` (the table's indexes) lacks it (and ``makeable``: its columns
        are there); one an older sgcache made with other columns is made again as this one defines it."""
        columns = [c.name for c in ix.columns]
        if ix.name in existing and existing[ix.name] != columns:
            self.ddl(f"drop index {ix.name} ({', '.join(existing[ix.name])})", f"DROP INDEX {self.q(ix.name)}")
            del existing[ix.name]
        if ix.name not in existing and makeable:
            self.ddl(f"create index {ix.name}", lambda: ix.create(self.conn))

    def ensure_history(self, et: EntityTable, remade: set[str]) -> None:
        """Each of the type's tables has its ``_valid_from`` column, and the type a history table
        with the same columns. Columns of fields whose storage was (re)made start empty in history too:
        the versions kept before hold nothing trustworthy for them (reads of the past touching
        them are refused until the field's history begins, see docs/history.rst)."""
        tables = [et.table, *et.associations.values()]
        for table in tables:
            # Tables made in this run have it; only an older sgcache's need a look.
            if table.name in self.inspected_before and history.VALID_FROM not in self.columns_of(table.name):
                self._add_column(table, table.c[history.VALID_FROM])
        remade_columns = {c.name for name in remade if name in et.fields for c in et.fields[name].columns()}
        name = et.history.name
        self.claim(name)
        if not self.exists(name):
            self.create_table(history.history_table(sa.MetaData(), et.table, "id"))
            return
        present = self.columns_of(name)
        wanted = {c.name for c in et.history.columns}
        doomed = sorted((present - wanted) | (present & remade_columns))
        for ix_name, ix_columns in self.indexes_of(name).items() if doomed else ():
            if set(ix_columns) & set(doomed):  # made again below, once the columns are back
                self.ddl(f"drop index {ix_name}", f"DROP INDEX {self.q(ix_name)}")
        for column in doomed:
            self.ddl(f"drop column {name}.{column}", f"ALTER TABLE {self.q(name)} DROP COLUMN {self.q(column)}")
            if self.dry_run:
                self.dropped_columns.add((name, column))
        present = self.columns_of(name)
        versions = history.history_table(sa.MetaData(), et.table, "id")  # the full table, for its DDL
        if wanted - present:
            for column in versions.columns:
                if column.name not in present:
                    self._add_column(versions, column)
        existing = self.indexes_of(name)
        for ix in versions.indexes:
            self._index_as_defined(ix, existing, makeable=all(c.name in self.columns_of(name) for c in ix.columns))
        for field_name in sorted(remade & set(et.associations)):
            self._forget_links(et.name, field_name)  # the list's earlier rows hold nothing trustworthy

    def _add_column(self, table: sa.Table, column: sa.Column) -> None:
        spec = CreateColumn(column).compile(dialect=self.conn.dialect)
        self.ddl(f"add column {table.name}.{column.name}", f"ALTER TABLE {self.q(table.name)} ADD COLUMN {spec}")
        if self.dry_run:
            self.added_columns.add((table.name, column.name))
            self.dropped_columns.discard((table.name, column.name))

    # --- the whole database ---------------------------------------------------------------------

    def run(self) -> MigrationReport:
        st = self.tables.state
        known = state.read_field_states(self.conn, st) if st.fields.name in self.existing_tables else {}
        self.owned = {t.name for t in st.all()}
        for (type_name, field_name), previous in known.items():
            self.owned.add(names.entity_table(type_name))
            if storage_has_association(previous.storage):
                self.owned.add(names.association_table(type_name, field_name))
        self.owned |= {history.history_name(names.entity_table(t)) for t, _ in known}
        history_from_added = st.fields.name in self.existing_tables and \
            "history_from" not in self.columns_of(st.fields.name)
        # Tables created in this run already carry their indexes.
        self.inspected_before = set(self.existing_tables)
        for t in st.all():
            if not self.exists(t.name):
                self.create_table(t)
            else:
                self.add_missing_columns(t)
        now = _now()
        if history_from_added and not self.dry_run:
            # History begins now for what an older sgcache had already filled.
            self.conn.execute(sa.update(st.fields).where(st.fields.c.needs_backfill.is_(False))
                              .values(history_from=now))
        upserts: list[dict] = []
        remade: dict[str, set[str]] = {}
        starts = state.history_starts(self.conn, st) if known and not (self.dry_run and history_from_added) else {}

        def record(et: EntityTable, handler: FieldHandler, backfill_reason: str | None,
                   previous: state.FieldState | None) -> None:
            needs = backfill_reason is not None or bool(previous and previous.needs_backfill and handler.cached)
            reason = backfill_reason or (previous.backfill_reason if needs and previous else None)
            if not handler.cached:
                needs, reason = False, None
            if needs:
                self.report.backfill.append((et.name, handler.name, reason or ""))
            if backfill_reason is not None:
                remade.setdefault(et.name, set()).add(handler.name)
            row = {"entity_type": et.name, "field_name": handler.name, "data_type": handler.field.data_type,
                   "storage": handler.storage, "needs_backfill": needs, "backfill_reason": reason,
                   "updated_at": now, "created_at": now,
                   # a field whose storage stays keeps its history; one (re)made starts again
                   "history_from": None if needs else starts.get((et.name, handler.name))}
            if previous is None or (previous.data_type, previous.storage, previous.needs_backfill,
                                    previous.backfill_reason) != (row["data_type"], row["storage"], needs,
                                                                  reason):
                upserts.append(row)

        for et in self.tables:
            table_name = et.table.name
            self.claim(table_name)
            if not self.exists(table_name):
                self.create_table(et.table)
                for assoc in et.associations.values():
                    self.claim(assoc.name)
                    if not self.exists(assoc.name):
                        self.create_table(assoc)
                for handler in et.fields.values():
                    record(et, handler, "new entity type" if handler.cached else None,
                           known.get((et.name, handler.name)))
            else:
                for name, handler in et.fields.items():
                    previous = known.get((et.name, name))
                    reason = self._migrate_field(et, handler, previous)
                    record(et, handler, reason, previous)
            # Fields that left the schema (or the cached subset).
            for (type_name, field_name), previous in known.items():
                if type_name != et.name or field_name in et.fields:
                    continue
                if previous.storage != "uncached":
                    self.drop_field_storage(et, field_name, [previous.data_type])
                self.report.add(f"forget field {type_name}.{field_name}")
                self._forget(type_name, field_name)
            self.ensure_indexes(et)
            self.ensure_history(et, remade.get(et.name, set()))

        # Types that left the schema: drop what sgcache made for them, nothing else.
        for type_name in sorted({t for t, _ in known} - set(self.tables.entities)):
            fields = [f for t, f in known if t == type_name]
            for field_name in fields:
                if storage_has_association(known[type_name, field_name].storage):
                    self.drop_table(names.association_table(type_name, field_name))
            self._forget_links(type_name)
            self.drop_table(names.entity_table(type_name))
            self.drop_table(history.history_name(names.entity_table(type_name)))
            self.report.add(f"forget entity type {type_name}")
            self._forget(type_name)

        self.flush()
        if upserts and not self.dry_run:
            self._write_states(upserts)
        if not self.dry_run:
            self._set_meta("state_version", str(state.STATE_VERSION))
        return self.report

    def _migrate_field(self, et: EntityTable, handler: FieldHandler,
                       previous: state.FieldState | None) -> str | None:
        """Bring one field's storage in line; return a backfill reason if it was (re)made."""
        if handler.name == "id":
            return None
        if not handler.cached:
            if previous is not None and previous.storage != "uncached":
                self.drop_field_storage(et, handler.name, [previous.data_type])
            return None
        if previous is None or previous.storage == "uncached":
            # New to the cache; anything already there has unknown provenance, so start clean.
            self.drop_field_storage(et, handler.name, [handler.field.data_type])
            self.create_field_storage(et, handler)
            return "new field"
        if previous.storage != handler.storage or previous.data_type != handler.field.data_type:
            self.drop_field_storage(et, handler.name, [previous.data_type, handler.field.data_type])
            self.create_field_storage(et, handler)
            return f"data type changed from {previous.data_type} to {handler.field.data_type}"
        missing = {c.name for c in handler.columns()} - self.columns_of(et.table.name)
        assoc = et.associations.get(handler.name)
        if missing or (assoc is not None and not self.exists(assoc.name)):
            self.create_field_storage(et, handler)
            return "storage was missing"
        return None

    def _forget_links(self, type_name: str, field_name: str | None = None) -> None:
        """Drop the kept list rows of a type (or of one of its fields) whose storage goes."""
        links = self.tables.state.link_history
        if self.dry_run or not self.exists(links.name) or links.name in self.planned:
            return
        self.flush()
        stmt = sa.delete(links).where(links.c.entity_type == type_name)
        if field_name is not None:
            stmt = stmt.where(links.c.field == field_name)
        self.conn.execute(stmt)

    def _forget(self, type_name: str, field_name: str | None = None) -> None:
        if self.dry_run:
            return
        f = self.tables.state.fields
        stmt = sa.delete(f).where(f.c.entity_type == type_name)
        if field_name is not None:
            stmt = stmt.where(f.c.field_name == field_name)
        self.conn.execute(stmt)

    def _write_states(self, rows: list[dict]) -> None:
        f = self.tables.state.fields
        keys = [(r["entity_type"], r["field_name"]) for r in rows]
        for type_name in {k[0] for k in keys}:
            self.conn.execute(sa.delete(f).where(f.c.entity_type == type_name)
                              .where(f.c.field_name.in_([k[1] for k in keys if k[0] == type_name])))
        self.conn.execute(sa.insert(f), rows)

    def _set_meta(self, key: str, value: str) -> None:
        state.set_meta(self.conn, self.tables.state, key, value)


def migrate(engine: sa.Engine, tables: Tables, *, dry_run: bool = False) -> MigrationReport:
    """Compare ``tables`` (from the schema) with the database and make them agree, in one transaction."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Daemons starting together each migrate: one at a time (released at commit).
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
        return _Migration(conn, tables, dry_run).run()
