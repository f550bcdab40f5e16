"""The base field class and the registry mapping each Shotgun data type to its class."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ClassVar

import sqlalchemy as sa

from sgcache.errors import ConversionError
from sgcache.schema.model import Field

#: data type name -> field class
REGISTRY: dict[str, type[FieldHandler]] = {}
#: storage key -> field class (see FieldHandler.storage_key)
STORAGE: dict[str, type[FieldHandler]] = {}


def register(*data_types: str):
    """Class decorator: this class handles these Shotgun data types. A class that stores its
    field names its storage itself (``storage_key``, unique, never inherited)."""
    def wrap(cls: type[FieldHandler]) -> type[FieldHandler]:
        if cls.cached:
            key = vars(cls).get("storage_key")
            if not key or STORAGE.get(key, cls) is not cls:
                raise TypeError(f"{cls.__name__} needs a storage_key of its own, not {key!r}")
            STORAGE[key] = cls
        for name in data_types:
            REGISTRY[name] = cls
        return cls
    return wrap


def storage_has_association(storage: str) -> bool:
    """Whether the storage recorded for a field (``_sgcache_fields.storage``) is an association
    table rather than columns."""
    cls = STORAGE.get(storage.split(":", 1)[0])
    return cls is not None and cls.association


class FieldHandler:
    """The handler of one field of one entity type: how it is stored (its storage and, in the two
    kinds of storing class below, the conversions between wire and database values) and, by its
    ``family``, how reads treat it.

    Wire values are what the site's JSON carries (``"2024-01-31T12:00:00Z"`` for a date_time);
    database values are what SQLAlchemy binds and returns for the column types below. A field is
    stored either in columns of its entity's table (:class:`ColumnField`: ``to_db`` / ``from_db``
    over one row) or in an association table of its own (:class:`AssociationField`:
    ``to_rows`` / ``from_rows`` over the rows of one entity); ``association`` says which.
    """

    #: False when the cache cannot hold this field faithfully; reads of it pass through.
    cached: ClassVar[bool] = True
    #: The stable name of the storage this class makes, recorded with ``storage_version`` in
    #: ``_sgcache_fields.storage`` (``TextField:1``): set on each storing class, never derived
    #: from its Python name, so renaming a class remakes no one's tables.
    storage_key: ClassVar[str] = ""
    #: Bump when the storage layout of a class changes, so migrations rebuild the field.
    storage_version: ClassVar[int] = 1
    #: Whether the storage is an association table of its own (else columns of the entity table).
    association: ClassVar[bool] = False
    #: The one column ``column`` holds the wire value as it is (None for none): readers take it
    #: without calling :meth:`from_db` (a page of 500 entities reads thousands of such values).
    #: Set per handler by the kinds it can be true of (sgcache.fields.scalar).
    read_as_is: bool = False
    #: Which filter relations and sorts the read compiler offers for it (sgcache.query.filters):
    #: text, number, checkbox, date, date_time, entity, multi_entity; "none" passes through.
    family: ClassVar[str] = "none"

    def __init__(self, type_name: str, field: Field):
        self.type_name = type_name
        self.field = field
        self.name = field.name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.type_name}.{self.name}>"

    @property
    def storage(self) -> str:
        """What the storage depends on; a change means drop and recreate."""
        if not self.cached:
            return "uncached"
        return f"{self.storage_key}:{self.storage_version}"

    def columns(self) -> list[sa.Column]:
        """Columns this field adds to its entity's table."""
        return []

    @functools.cached_property
    def column_names(self) -> tuple[str, ...]:
        """The names of :meth:`columns`, worked out once."""
        return tuple(c.name for c in self.columns())

    def association_table(self, metadata: sa.MetaData, name: str) -> sa.Table | None:
        """A separate table holding this field's values, if it has one."""
        return None

    def error(self, value: Any, expected: str) -> ConversionError:
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        return ConversionError(f"{self.type_name}.{self.name} ({self.field.data_type}): "
                               f"expected {expected}, got {shown}")


class ColumnField(FieldHandler):
    """A field stored in columns of its entity's table."""

    #: A wire value of exactly this type is stored as it is, in the one column ``column``: the
    #: writer sets it without calling :meth:`put` (most values of a page are such text and
    #: numbers). None: every value goes through :meth:`put`.
    stored_as_is: ClassVar[type | None] = None

    #: A text value's stored form (in ``column``), or None when the text is not one: the writer
    #: calls this one function for a ``str`` value instead of :meth:`put`, and calls :meth:`put`
    #: (which gives the error) when it returns None. None: text goes through :meth:`put` too.
    parse_text: ClassVar[Callable[[str], Any] | None] = None

    #: (type column, id column) of a link field: the writer stores a plain ``{"type": str, "id":
    #: int}`` mapping in them without calling :meth:`put`. None for every other field.
    link_columns: tuple[str, str] | None = None

    def to_db(self, value: Any) -> dict[str, Any]:
        """Wire value -> {column name: database value}."""
        raise NotImplementedError

    def put(self, row: dict[str, Any], value: Any) -> None:
        """Set this field's columns of ``row`` from a wire value (what ``to_db`` gives, written in
        place: the writer converts every value of every page this way)."""
        row.update(self.to_db(value))

    def from_db(self, row: Any) -> Any:
        """A row (mapping by column name) -> wire value."""
        raise NotImplementedError


class AssociationField(FieldHandler):
    """A field stored in an association table of its own, several rows per entity."""

    association = True

    def to_rows(self, value: Any) -> list[dict[str, Any]]:
        """Wire value -> the association rows of one entity (without its id)."""
        raise NotImplementedError

    def from_rows(self, rows: Any) -> Any:
        """The association rows of one entity (mappings by column name), in any order -> wire value."""
        raise NotImplementedError


class UncachedField(FieldHandler):
    """A field the cache does not store; every read touching it passes through."""

    cached = False
    reason = "not cached"
