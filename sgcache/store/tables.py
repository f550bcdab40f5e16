"""The cache's tables as SQLAlchemy Core objects, built from the schema (nothing is created here)."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field

import sqlalchemy as sa

from sgcache.errors import UnknownEntityType
from sgcache.fields import FieldHandler, make_field, names
from sgcache.fields.entity import EntityField, MultiEntityField
from sgcache.fields.types import UTCDateTime
from sgcache.schema.model import EntityType, Schema
from sgcache.store import history, state

#: Cache metadata columns on every entity table; ``_`` never starts a Shotgun field name.
META_COLUMNS = ("_active", "_cache_created_at", "_cache_updated_at", "_last_event_id", history.VALID_FROM)


def meta_columns() -> list[sa.Column]:
    return [
        sa.Column("_active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("_cache_created_at", UTCDateTime, nullable=False),
        sa.Column("_cache_updated_at", UTCDateTime, nullable=False),
        sa.Column("_last_event_id", sa.BigInteger),
        # the site's time of the change that made this version of the row (see sgcache.store.history)
        history.valid_from_column(),
    ]


@dataclass
class EntityTable:
    """One entity type's storage: its table, its field handlers and its association tables."""

    entity_type: EntityType
    table: sa.Table
    #: every field of the type, cached or not, by name
    fields: dict[str, FieldHandler]
    #: multi-entity field name -> its association table
    associations: dict[str, sa.Table] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.entity_type.name

    @functools.cached_property
    def history(self) -> sa.TableClause:
        """Where the earlier versions of ``table``'s rows are kept (see sgcache.store.history; the
        association tables' are in the state table ``_history_links``); made on first use."""
        return history.history_clause(self.table)

    def cached_fields(self) -> list[str]:
        """Names of the fields the cache stores, sorted (id included)."""
        return sorted(name for name, handler in self.fields.items() if handler.cached)

    def cached(self, field_name: str) -> bool:
        handler = self.fields.get(field_name)
        return handler is not None and handler.cached

    def field_indexes(self, handler: FieldHandler) -> list[sa.Index]:
        """Indexes that belong to one field (dropped and made again with it)."""
        return [ix for ix in self.table.indexes if ix.info.get("field") == handler.name]


def _build_entity_table(metadata: sa.MetaData, entity_type: EntityType) -> EntityTable:
    table_name = names.entity_table(entity_type.name)
    handlers = {name: make_field(entity_type.name, f) for name, f in entity_type.fields.items()}
    columns: list[sa.Column] = [sa.Column("id", sa.Integer, primary_key=True, autoincrement=False)]
    for name, handler in handlers.items():
        if name == "id" or not handler.cached:
            continue
        columns.extend(handler.columns())
    table = sa.Table(table_name, metadata, *columns, *meta_columns(),
                     sa.PrimaryKeyConstraint("id", name=names.constraint(table_name, "pkey")))
    associations = {}
    project = handlers.get("project")
    if not (isinstance(project, EntityField) and project.cached):
        project = None
    for name, handler in handlers.items():
        if not handler.cached:
            continue
        if isinstance(handler, EntityField):
            # Pipeline reads nearly always name a project: with it in the index, "the Versions of
            # these Shots in project P" is answered from the index without visiting other
            # projects' rows (see docs/storage.rst).
            extra = [table.c[project.id_column]] if project is not None and name != "project" else []
            sa.Index(names.index(table_name, name), table.c[handler.id_column], table.c[handler.type_column],
                     *extra, info={"field": name})
        elif name == "updated_at" and name in table.c:
            sa.Index(names.index(table_name, name), table.c[name], info={"field": name})
        if isinstance(handler, MultiEntityField):
            assoc = handler.association_table(metadata, names.association_table(entity_type.name, name))
            assoc.append_column(history.valid_from_column())
            assoc.info["field"] = name
            associations[name] = assoc
    return EntityTable(entity_type=entity_type, table=table, fields=handlers, associations=associations)


class Tables:
    """Every table of one cache database, for one schema."""

    def __init__(self, schema: Schema):
        self.schema = schema
        self.metadata = sa.MetaData()
        self.state = state.define(self.metadata)
        self.entities: dict[str, EntityTable] = {
            t.name: _build_entity_table(self.metadata, t) for t in schema
        }
        self._past: dict[str, EntityTable] = {}

    def past(self, et: EntityTable) -> EntityTable:
        """``et`` with its tables as they were at the moment of ``history.reading_as_of`` (views with
        the same names and columns; see sgcache.store.history), made once per type."""
        found = self._past.get(et.name)
        if found is None:
            links = self.state.link_history
            found = self._past[et.name] = dataclasses.replace(
                et, table=history.as_of(et.table, et.history),
                associations={name: history.links_as_of(assoc, links, et.name, name)
                              for name, assoc in et.associations.items()})
        return found

    def __getitem__(self, type_name: str) -> EntityTable:
        try:
            return self.entities[type_name]
        except KeyError:
            raise UnknownEntityType(type_name) from None

    def __contains__(self, type_name: object) -> bool:
        return type_name in self.entities

    def __iter__(self):
        return iter(self.entities.values())
