"""SQL identifiers derived from schema names, short enough for PostgreSQL (63 bytes)."""

from __future__ import annotations

import hashlib

# PostgreSQL truncates identifiers past 63 bytes; two long names could then collide.
MAX_IDENTIFIER = 63


def fit(name: str) -> str:
    """``name`` if it fits, else a prefix plus a short hash of the whole name."""
    if len(name.encode("utf-8")) <= MAX_IDENTIFIER:
        return name
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
    return f"{name[:MAX_IDENTIFIER - 9]}_{digest}"


def entity_table(type_name: str) -> str:
    """``Shot`` -> ``shot``."""
    return fit(type_name.lower())


def association_table(type_name: str, field_name: str) -> str:
    """``Shot.assets`` -> ``shot_assets`` (type names have no underscore, so no clash)."""
    return fit(f"{type_name.lower()}_{field_name}")


def index(table: str, what: str) -> str:
    return fit(f"ix_{table}_{what}")


def constraint(table: str, what: str) -> str:
    return fit(f"{table}_{what}")
