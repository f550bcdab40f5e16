"""The other side of links: which cached entities must be read again when links change.

The site keeps reverse fields (``Sequence.shots`` for ``Shot.sg_sequence``) and hides links to
retired entities. So when a write sets links, the entities it linked or unlinked changed too,
without their own ``updated_at`` moving; and when an entity is revived, rows that read their
link to it as None while it was retired show it again.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from sgcache.fields.entity import EntityField, MultiEntityField
from sgcache.store.reader import read_entities
from sgcache.store.tables import Tables
from sgcache.sync.remote import Remote

Link = tuple[str, int]


def link_fields(tables: Tables, entity_type: str) -> list[str]:
    et = tables[entity_type]
    return sorted(name for name, h in et.fields.items() if isinstance(h, (EntityField, MultiEntityField)))


def _targets(value) -> set[Link]:
    if value is None:
        return set()
    if isinstance(value, list):
        return {(v["type"], v["id"]) for v in value if isinstance(v, dict)}
    return {(value["type"], value["id"])} if isinstance(value, dict) else set()


#: Link fields the site pairs with no reverse field: a change of them changes nothing on the
#: other side, so the entity they point at need not be read again.
NO_REVERSE = frozenset({"created_by", "updated_by"})


def reversible_fields(tables: Tables, entity_type: str) -> list[str]:
    """The link fields whose changes may change a field of the entities they point at."""
    return [f for f in link_fields(tables, entity_type) if f not in NO_REVERSE]


def cached_links(conn: sa.Connection, tables: Tables, entity_type: str, ids: list[int]) -> dict[int, set[Link]]:
    """Every entity each cached row links to through a field that may have a reverse side,
    before a write replaces the rows (see changed_targets)."""
    fields = reversible_fields(tables, entity_type)
    out: dict[int, set[Link]] = {}
    if not fields or not ids:
        return out
    for entity in read_entities(conn, tables, entity_type, ids=ids, fields=fields):
        out[entity["id"]] = set().union(*(_targets(entity.get(f)) for f in fields))
    return out


def changed_targets(before: dict[int, set[Link]], entities: Iterable[dict], tables: Tables,
                    entity_type: str) -> set[Link]:
    """Entities linked or unlinked by these new values (compared with ``before``) through a field
    that may have a reverse side, cached types only."""
    fields = reversible_fields(tables, entity_type)
    out: set[Link] = set()
    for entity in entities:
        after = set().union(*(_targets(entity.get(f)) for f in fields if f in entity)) if fields else set()
        out |= after ^ before.get(entity["id"], set())
    return {t for t in out if t[0] in tables}


def referrers_on_site(remote: Remote, tables: Tables, target: Link) -> set[Link]:
    """Cached-type entities (active or retired) whose link fields point at ``target`` on the site."""
    target_type, target_id = target
    out: set[Link] = set()
    link = {"type": target_type, "id": target_id}
    for et in tables:
        for name in link_fields(tables, et.name):
            targets = et.fields[name].field.entity_types
            if targets and target_type not in targets:
                continue
            for retired in (False, True):
                for page in remote.pages(et.name, ["id"], [[name, "is", link]], retired=retired):
                    out.update((et.name, e["id"]) for e in page)
    return out
