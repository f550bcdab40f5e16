"""Entity types and fields the cache knows: the model, its YAML files, and tools to make them."""

from sgcache.schema.model import EntityType, Field, Schema
from sgcache.schema.yamlio import dump, dumps, load, loads

__all__ = ["EntityType", "Field", "Schema", "dump", "dumps", "load", "loads"]
