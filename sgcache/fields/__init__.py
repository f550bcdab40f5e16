"""One class per Shotgun data type: its columns, its wire <-> database conversions, and whether
it is cached. Adding a data type is adding a class to the registry."""

from sgcache.fields import entity, scalar, uncached  # noqa: F401  (fill the registry)
from sgcache.fields.base import REGISTRY, FieldHandler, UncachedField
from sgcache.fields.factory import is_calculated, make_field
from sgcache.fields.uncached import UnknownField

__all__ = ["REGISTRY", "FieldHandler", "UncachedField", "UnknownField", "is_calculated", "make_field"]
