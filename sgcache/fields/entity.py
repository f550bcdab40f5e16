"""Links: entity fields in two columns, multi-entity fields in an ordered association table."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from sgcache.fields import names
from sgcache.fields.base import AssociationField, ColumnField, FieldHandler, register


def _link(field: FieldHandler, value: Any) -> tuple[str, int]:
    """Validate one wire link ``{"type": T, "id": N, ...}``; return (T, N)."""
    if not isinstance(value, dict):
        raise field.error(value, "an entity link {type, id}")
    link_type, link_id = value.get("type"), value.get("id")
    if not isinstance(link_type, str) or isinstance(link_id, bool) or not isinstance(link_id, int):
        raise field.error(value, "an entity link with a string type and an integer id")
    return link_type, link_id


@register("entity")
class EntityField(ColumnField):
    """``<field>__type`` and ``<field>__id``; read back as ``{"type", "id"}`` (the read path adds
    ``name`` from the linked entity's identifier field, as the site computes it live)."""

    storage_key = "EntityField"
    family = "entity"

    def __init__(self, type_name, field):
        super().__init__(type_name, field)
        self.type_column = names.fit(f"{self.name}__type")
        self.id_column = names.fit(f"{self.name}__id")
        self.link_columns = (self.type_column, self.id_column)

    def columns(self) -> list[sa.Column]:
        return [sa.Column(self.type_column, sa.Text), sa.Column(self.id_column, sa.Integer)]

    def to_db(self, value: Any) -> dict[str, Any]:
        if value is None:
            return {self.type_column: None, self.id_column: None}
        link_type, link_id = _link(self, value)
        return {self.type_column: link_type, self.id_column: link_id}

    def put(self, row: dict[str, Any], value: Any) -> None:
        if value is None:
            row[self.type_column] = row[self.id_column] = None
        else:
            row[self.type_column], row[self.id_column] = _link(self, value)

    def from_db(self, row: Any) -> Any:
        link_id = row[self.id_column]
        if link_id is None:
            return None
        return {"type": row[self.type_column], "id": link_id}


@register("multi_entity")
class MultiEntityField(AssociationField):
    """Rows of ``<entity>_<field>`` (parent_id, position, child_type, child_id), in list order."""

    storage_key = "MultiEntityField"
    family = "multi_entity"

    def association_table(self, metadata: sa.MetaData, name: str) -> sa.Table:
        return sa.Table(
            name, metadata,
            sa.Column("parent_id", sa.Integer, nullable=False),
            sa.Column("position", sa.Integer, nullable=False),
            sa.Column("child_type", sa.Text, nullable=False),
            sa.Column("child_id", sa.Integer, nullable=False),
            sa.PrimaryKeyConstraint("parent_id", "position", name=names.constraint(name, "pkey")),
            sa.Index(names.index(name, "child"), "child_id", "child_type"),
        )

    def to_rows(self, value: Any) -> list[dict[str, Any]]:
        """Wire list -> association rows (without parent_id)."""
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(value, "a list of entity links")
        rows = []
        for position, item in enumerate(value):
            link_type, link_id = _link(self, item)
            rows.append({"position": position, "child_type": link_type, "child_id": link_id})
        return rows

    def from_rows(self, rows: Any) -> list[dict[str, Any]]:
        """Association rows of one parent -> wire list, in stored order."""
        return [{"type": r["child_type"], "id": r["child_id"]}
                for r in sorted(rows, key=lambda r: r["position"])]
