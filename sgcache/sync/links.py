"""Rows that link to an entity: which cached entities must be read again when one is revived.

The site hides links to retired entities. So when an entity is revived, rows that read their
link to it as None while it was retired show it again, with no event and no ``updated_at`` of
their own. (Links a write changes are the writer's business: it queues their other sides.)
"""

from __future__ import annotations

from sgcache.store import writer
from sgcache.store.tables import Tables
from sgcache.sync.remote import Remote

Link = tuple[str, int]


def referrers_on_site(remote: Remote, tables: Tables, target: Link) -> set[Link]:
    """Cached-type entities (active or retired) whose link fields point at ``target`` on the site:
    two finds per type (active, retired), its link fields that may point there asked at once."""
    target_type, target_id = target
    out: set[Link] = set()
    link = {"type": target_type, "id": target_id}
    for et in tables:
        conditions = []
        for name in writer.link_fields(et):
            targets = et.fields[name].field.entity_types
            if not targets or target_type in targets:
                conditions.append([name, "is", link])
        if not conditions:
            continue
        # One field: its condition; more: any of them (a nested group, as shotgun_api3 sends it).
        filters = conditions if len(conditions) == 1 else [{"filter_operator": "any", "filters": conditions}]
        for retired in (False, True):
            for page in remote.pages(et.name, ["id"], filters, retired=retired):
                out.update((et.name, e["id"]) for e in page)
    return out
