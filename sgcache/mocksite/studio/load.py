"""Loading a plan into the site: type by type in :data:`LOAD_ORDER`, each type oldest first, with
only the fields and values the schema accepts and every planned link resolved to a site link."""

from __future__ import annotations

from typing import Any

from sgcache.mocksite.site import MockSite
from sgcache.mocksite.studio.model import _Ref
from sgcache.mocksite.studio.specs import LOAD_ORDER
from sgcache.schema.model import Field


def load(site: MockSite, refs: list[_Ref]) -> dict[str, int]:
    """Load every planned entity, type by type, each type oldest first; return the counts."""
    by_type: dict[str, list[_Ref]] = {}
    for ref in refs:
        by_type.setdefault(ref.type, []).append(ref)
    rank = {t: i for i, t in enumerate(LOAD_ORDER)}
    counts: dict[str, int] = {}
    for entity_type in sorted(by_type, key=lambda t: rank.get(t, len(rank))):
        ordered = sorted(by_type[entity_type], key=lambda r: r.created_at)  # stable: ties keep plan order
        for ref in ordered:
            ref.id = site.load_entity(entity_type, _clean(site, entity_type, ref.data),
                                      created_at=ref.created_at, created_by=_link(ref.created_by),
                                      retired=ref.retired)
        counts[entity_type] = len(ordered)
    return counts


def _clean(site: MockSite, entity_type: str, data: dict) -> dict:
    """The wire data for one entity: only fields the schema has, values it accepts, links resolved."""
    fields = site.schema[entity_type].fields
    out = {}
    for name, value in data.items():
        f = fields.get(name)
        # permission_rule_set is read-only in the schema, yet the site's admins set it.
        if f is None or value is None or (not f.editable and name != "permission_rule_set"):
            continue
        kind = f.data_type
        if kind == "entity":
            value = _resolve(f, value)
            if value is None:
                continue
        elif kind == "multi_entity":
            value = [link for link in (_resolve(f, v) for v in value) if link is not None]
        elif kind in ("list", "status_list") and f.valid_values and value not in f.valid_values:
            continue
        elif kind == "url":
            value = {k: _link(v, named=True) if isinstance(v, _Ref) else v for k, v in value.items()
                     if not (k == "local_storage" and v is None)}
        out[name] = value
    return out


def _link(value: Any, named: bool = False) -> dict | None:
    if value is None or isinstance(value, dict):
        return value
    if value.id is None:
        raise RuntimeError(f"a {value.type} is linked before it is loaded (see LOAD_ORDER)")
    link = {"type": value.type, "id": value.id}
    if named:
        link["name"] = value.data.get("code") or value.data.get("name")
    return link


def _resolve(f: Field, value: Any) -> dict | None:
    """A planned entity or a site link -> a wire link, or None if the field can't point at that type."""
    link = _link(value)
    if link is None or (f.entity_types and link["type"] not in f.entity_types):
        return None
    return link
