"""``sgcache auth check``: prove a permission group's policy for one person before turning it on.

:func:`random_requests` makes ordinary pipeline reads (finds with a project, a field's value, an
id range, sorts and pages; record counts grouped by project) from values the cache holds.
:func:`check_person` asks each one as the person (``sudo_as_login`` through sgcache's own script)
twice: through the proxy's own request handling, with the person's group in the mode being
proved, and straight to the site; every answer the cache gave must equal the site's.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from sgcache.api3.identity import Claim
from sgcache.config import Config
from sgcache.errors import SgcacheError
from sgcache.fields.entity import EntityField
from sgcache.store.tables import EntityTable, Tables

#: Families whose values make simple filters and sorts.
VALUE_FAMILIES = ("text", "number", "checkbox")


def _sample_row(conn: sa.Connection, et: EntityTable, rng: random.Random) -> dict | None:
    t = et.table
    count = conn.execute(sa.select(sa.func.count()).select_from(t).where(t.c._active.is_(True))).scalar_one()
    if not count:
        return None
    row = conn.execute(sa.select(t).where(t.c._active.is_(True)).order_by(t.c.id)
                       .offset(rng.randrange(count)).limit(1)).mappings().first()
    return dict(row) if row is not None else None


def _condition(path: str, relation: str, *values: Any) -> dict:
    return {"path": path, "relation": relation, "values": list(values)}


def random_requests(engine: sa.Engine, tables: Tables, types: list[str], n: int,
                    seed: int = 0) -> list[tuple[str, dict]]:
    """``n`` (method, args) pairs of reads and summaries over ``types``, built from cached values."""
    rng = random.Random(seed)
    out: list[tuple[str, dict]] = []
    if not types:
        return out
    with engine.connect() as conn:
        for _ in range(n):
            et = tables[rng.choice(types)]
            out.append(_one_request(conn, et, rng))
    return out


def _one_request(conn: sa.Connection, et: EntityTable, rng: random.Random) -> tuple[str, dict]:
    handlers = {name: h for name, h in et.fields.items() if h.cached and name != "id"}
    simple = sorted(n for n, h in handlers.items() if h.family in VALUE_FAMILIES)
    links = sorted(n for n, h in handlers.items() if h.family in ("entity", "multi_entity"))
    project = handlers.get("project")
    has_project = isinstance(project, EntityField)
    conditions: list[dict] = []
    row = _sample_row(conn, et, rng)
    pick = rng.random()
    if row is not None and has_project and pick < 0.4 and row.get(project.id_column) is not None:
        conditions.append(_condition("project", "is", {"type": "Project", "id": row[project.id_column]}))
    elif row is not None and simple and pick < 0.8:
        name = rng.choice(simple)
        handler = handlers[name]
        value = handler.from_db(row)
        if handler.family == "number" and value is not None:
            conditions.append(_condition(name, rng.choice(["is", "greater_than", "less_than"]), value))
        elif handler.family == "text" and isinstance(value, str) and value:
            relation = rng.choice(["is", "starts_with", "contains"])
            conditions.append(_condition(name, relation, value if relation == "is" else value[:3]))
        else:
            conditions.append(_condition(name, "is", value))
    elif row is not None:
        conditions.append(_condition("id", "less_than", row["id"] + rng.randrange(1, 50)))
    filters = {"logical_operator": "and", "conditions": conditions}
    if rng.random() < 0.2:
        grouping = [{"field": "project", "type": "exact", "direction": "asc"}] if has_project else []
        return "summarize", {"type": et.name, "filters": filters, "summaries": [{"field": "id",
                                                                                "type": "record_count"}],
                             "grouping": grouping, "include_archived_projects": True}
    fields = ["id", *rng.sample(simple, min(3, len(simple))), *rng.sample(links, min(2, len(links)))]
    if has_project and "project" not in fields:
        fields.append("project")
    sorts = [{"field_name": rng.choice(simple), "direction": rng.choice(["asc", "desc"])}] if simple and \
        rng.random() < 0.5 else []
    return "read", {"type": et.name, "filters": filters, "return_fields": fields, "sorts": sorts,
                    "return_only": "active", "include_archived_projects": True,
                    "paging": {"entities_per_page": rng.choice([5, 50, 500]), "current_page": rng.choice([1, 1, 2])},
                    "return_paging_info_without_counts": True}


@dataclass
class CheckReport:
    login: str
    group: str | None
    mode: str
    requests: int = 0
    cached: int = 0
    differences: list[dict] = field(default_factory=list)
    passed_through: Counter[str] = field(default_factory=Counter)
    failed: int = 0  # the site gave no answer to compare with

    @property
    def ok(self) -> bool:
        return not self.differences

    def text(self) -> str:
        reasons = ", ".join(f"{r} {n}" for r, n in self.passed_through.most_common(5)) or "none"
        lines = [f"login {self.login} (group {self.group or '-'}, checked as {self.mode}): {self.requests} requests, "
                 f"{self.cached} answered from the cache, {len(self.differences)} differ from the site; "
                 f"{sum(self.passed_through.values())} passed through ({reasons})"
                 + (f"; {self.failed} not answered by the site" if self.failed else "")]
        for diff in self.differences[:10]:
            lines.append(f"  differs: {diff['method']} {diff['type']} filters={json.dumps(diff['filters'])[:160]}")
        if self.ok:
            lines.append("verdict: ok, every answer from the cache equals the site's")
        else:
            lines.append(f"verdict: MISMATCH, do not use {self.mode} for group {self.group}")
        return "\n".join(lines)


def check_person(config: Config, login: str, *, n: int = 200, mode: str | None = None, seed: int = 0,
                 service_factory=None) -> CheckReport:
    """Ask ``n`` random reads as ``login`` from the cache and from the site; compare."""
    from sgcache.api3 import protocol
    from sgcache.web import build_service

    make = service_factory or build_service
    probe = make(config)
    try:
        identity = probe.policy.identities.lookup(Claim("person", login))
        if identity is None:
            raise SgcacheError(f"no active person with login {login!r} on the site (or the script in site.script_name "
                               "may not read HumanUser)")
        group = identity.group
        chosen = mode or probe.policy.mode_of(group)
    finally:
        probe.close()
    report = CheckReport(login, group, chosen)
    if chosen == "passthrough" or group is None:
        report.mode = "passthrough"
        return report
    groups = {**config.auth.groups, group: chosen}
    checked = dataclasses.replace(config, auth=dataclasses.replace(config.auth, groups=groups, shadow_rate=0.0))
    service = make(checked)
    try:
        site = checked.site
        auth = {"script_name": site.script_name, "script_key": site.api_key.reveal() if site.api_key else "",
                "sudo_as_login": login}
        state = service.read_state()
        types = sorted(state.ready & set(service.cache.tables.entities))
        for method, args in random_requests(service.cache.engine, service.cache.tables, types, n, seed):
            report.requests += 1
            body = protocol.dumps({"method_name": method, "params": [auth, args]})
            answer, _ = service.handle(body, {})
            if answer.outcome != "cache":
                report.passed_through[answer.detail.removeprefix("passthrough: ").split(" ")[0] or answer.outcome] += 1
                continue
            report.cached += 1
            ours = json.loads(answer.body)["results"]
            reply = service.upstream.call(method, [auth, args])
            try:
                payload = reply.json() if reply.status == 200 else None
            except ValueError:
                payload = None
            if not isinstance(payload, dict) or "results" not in payload:
                report.failed += 1
                continue
            if json.dumps(ours, sort_keys=True) != json.dumps(payload["results"], sort_keys=True):
                report.differences.append({"method": method, "type": args["type"], "filters": args["filters"]})
    finally:
        service.close()
    return report
