"""Benchmark: a day of pipeline reads, sent to the stand-in site and through sgcache, answers compared.

    .venv/bin/python bench/workload.py [--scale 5] [--calls 1000] [--seed 1] [--latency-ms 0]
                                       [--db sqlite|postgresql://...] [--set KEY=VALUE] [--json FILE]

Set-up (bench/benchlib.py ``CachedProxy``): the stand-in site with the demo studio at
``--scale``, a cache of the shipped schema (``schema/demo.yml``, the one ``make demo`` and
sgcache.yml use) filled by ``sgcache scan --full``, and ``sgcache web`` in front of the site.
``--db`` is ``sqlite`` (a scratch file, the default) or the URL of an empty PostgreSQL database
to fill. ``--latency-ms`` gives the stand-in a hosted site's answer time (0: the latencies then
compare the two programs, not a network). ``--set KEY=VALUE`` passes an sgcache setting to the
import and the proxy (``--set scanner.slim_records=none``, for one, shows what slim records of
the types the schema leaves out bring).

The workload: the studio's own projects, sequences, shots, assets, people, playlists, notes and
versions are read from the site first; then ``--calls`` calls are drawn at random (``--seed``)
over the kinds in :func:`kinds`, each kind as often as its weight says a pipeline makes it (task
lists, loaders and lookups often, summaries and schema reads seldom), with values drawn from
those pools. The calls run one after the other in the order drawn, each one straight to the
site and through sgcache with the real shotgun_api3 client (which one goes first alternates).

Checked and counted, per call:

- the two answers must be equal, exactly, order included (where a call does not sort, the site
  and the cache both list entities by id): a difference is a correctness bug; the first few of
  each kind are printed with the call and where the answers part. A difference only in the order
  of the same entities is marked "order";
- a fault from the site means the call is not a valid read: it is counted apart (``site
  faults``) and makes the run fail, as a difference does;
- sgcache's own counters (``/_sgcache/metrics``: ``sgcache_requests_total{method,outcome}``,
  ``sgcache_passthrough_total{reason}``), read before and after each call, say whether every
  request of the call was answered from the cache, and if not the reason it passed through; the
  request log of ``sgcache web`` (its ``detail='passthrough: REASON (DETAIL)'``) adds which type
  or field made it pass, so a reader sees why.

Printed: a table with per kind the calls, the share answered from the cache, p50 latency
straight to the site and through sgcache, calls whose answers differed, answers that were empty
(a kind that is always empty proves little), and the most frequent pass reason; then the same
over all, the pass details and every difference. ``--json FILE`` writes all of it. The exit
status is 1 when any answer differed or the site faulted. Run by hand; figures go in issue notes
and README.rst.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shlex
import shutil
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import shotgun_api3
from benchlib import (
    CachedProxy,
    at_least,
    connect,
    counter_delta,
    duration,
    on_sigterm,
    percentile,
    read_counters,
    run_context,
)

# --- the studio's values -------------------------------------------------------------------------


def link(entity: dict) -> dict:
    return {"type": entity["type"], "id": entity["id"]}


@dataclass
class Studio:
    """What the calls are drawn from: the stand-in studio's own entities (read from the site)."""

    projects: list[dict]  # projects with shots (not the template)
    sequences: list[dict]
    sequences_in_review: list[dict]  # sequences with versions of their shots
    shots: list[dict]
    shots_in_review: list[dict]  # shots with versions
    shots_published: list[dict]  # shots with published files
    assets: list[dict]
    users: list[dict]
    assignees: list[dict]  # people with at least one task
    addressees: list[dict]  # people some note is addressed to
    playlists: list[dict]
    steps: list[dict]
    versions: list[dict]
    notes: list[dict]
    shot_tags: list[str]
    loggers: list[dict]  # people with time logs

    @classmethod
    def read(cls, sg: shotgun_api3.Shotgun) -> Studio:
        def unique(links: list[dict]) -> list[dict]:
            return sorted({e["id"]: link(e) for e in links if e and e["type"] == "HumanUser"}.values(),
                          key=lambda e: e["id"])

        shots = sg.find("Shot", [], ["code", "project", "sg_sequence", "tag_list"])
        tasks = sg.find("Task", [], ["task_assignees"])
        notes = sg.find("Note", [], ["addressings_to", "note_links", "replies"])
        logs = sg.find("TimeLog", [], ["user"])
        versions = sg.find("Version", [], ["code", "entity", "project"])
        published = {p["entity"]["id"] for p in sg.find("PublishedFile", [["entity", "type_is", "Shot"]], ["entity"])}
        reviewed = {v["entity"]["id"] for v in versions if v["entity"] and v["entity"]["type"] == "Shot"}
        with_shots = {s["project"]["id"] for s in shots}
        sequences = sg.find("Sequence", [], ["code", "project"])
        return cls(
            projects=[p for p in sg.find("Project", [], ["name"]) if p["id"] in with_shots],
            sequences=sequences,
            sequences_in_review=[q for q in sequences if q["id"] in {s["sg_sequence"]["id"] for s in shots
                                                                     if s["id"] in reviewed and s["sg_sequence"]}],
            shots=shots,
            shots_in_review=[s for s in shots if s["id"] in reviewed],
            shots_published=[s for s in shots if s["id"] in published],
            assets=sg.find("Asset", [], ["code", "project", "sg_asset_type"]),
            users=sg.find("HumanUser", [], ["login", "name"]),
            assignees=unique([a for t in tasks for a in t["task_assignees"] or []]),
            addressees=unique([a for n in notes for a in n["addressings_to"] or []]),
            playlists=sg.find("Playlist", [], ["code", "project"]),
            steps=sg.find("Step", [], ["code"]),
            versions=versions,
            notes=notes,
            shot_tags=sorted({t if isinstance(t, str) else t.get("name") for s in shots for t in s["tag_list"] or []}),
            loggers=unique([t["user"] for t in logs]),
        )

    def check(self) -> None:
        empty = [name for name, value in vars(self).items() if not value]
        if empty:
            raise SystemExit(f"the stand-in studio has no {', '.join(empty)}: the workload needs them")


# --- calls ---------------------------------------------------------------------------------------------


@dataclass
class Call:
    """One shotgun_api3 call: ``sg.<method>(*args, **kwargs)``; ``then`` makes a second call from
    the first one's answer (a playlist, then its versions) and the answer is the pair."""

    method: str
    args: tuple
    kwargs: dict = field(default_factory=dict)
    sorts: bool = False  # the call asks for an order (else: id order)
    then: Callable[[Any], Call | None] | None = None

    def run(self, sg: shotgun_api3.Shotgun) -> Any:
        first = getattr(sg, self.method)(*self.args, **self.kwargs)
        if self.then is None:
            return first
        second = self.then(first)
        return [first, second.run(sg) if second is not None else None]

    def __str__(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        text = f"sg.{self.method}({', '.join(parts)})"
        return text + (" then a second call on its answer" if self.then else "")


def by(field_name: str, direction: str = "asc") -> list[dict]:
    return [{"field_name": field_name, "direction": direction}]


@dataclass
class Kind:
    name: str
    weight: int  # how often, relative to the other kinds
    make: Callable[[], Call]


def kinds(s: Studio, rnd: random.Random) -> list[Kind]:
    """The kinds of call of a pipeline's day; each ``make`` draws one call from the studio."""
    pick = rnd.choice

    def artist_tasks() -> Call:  # an artist's task list (the "My Tasks" panel of every DCC)
        return Call("find", ("Task", [["task_assignees", "is", pick(s.assignees)], ["sg_status_list", "is_not", "fin"]],
                             ["content", "entity", "step", "sg_status_list", "due_date", "start_date", "project",
                              "entity.Shot.code", "entity.Shot.sg_sequence", "step.Step.code"]),
                    {"order": by("due_date")}, sorts=True)

    def shot_versions() -> Call:  # the versions of a shot, newest first
        return Call("find", ("Version", [["entity", "is", link(pick(s.shots_in_review))]],
                             ["code", "user", "sg_status_list", "created_at", "sg_task", "sg_path_to_movie",
                              "sg_first_frame", "sg_last_frame"]),
                    {"order": by("created_at", "desc")}, sorts=True)

    def latest_version() -> Call:  # the latest version of a shot
        return Call("find_one", ("Version", [["entity", "is", link(pick(s.shots_in_review))]],
                                 ["code", "sg_path_to_movie", "sg_path_to_frames", "user", "created_at"]),
                    {"order": by("created_at", "desc")}, sorts=True)

    def shot_publishes() -> Call:  # a loader: the files published for a shot
        return Call("find", ("PublishedFile", [["entity", "is", link(pick(s.shots_published))]],
                             ["code", "path", "version_number", "published_file_type", "task", "created_at"]),
                    {"order": by("created_at", "desc")}, sorts=True)

    def playlist_review() -> Call:  # a review tool: a playlist, then its versions
        def versions_of(playlist: dict | None) -> Call | None:
            ids = [v["id"] for v in (playlist or {}).get("versions") or []]
            if not ids:
                return None
            return Call("find", ("Version", [["id", "in", ids]], ["code", "entity", "sg_status_list", "user",
                                                                  "sg_path_to_movie", "entity.Shot.sg_cut_order"]))
        return Call("find_one", ("Playlist", [["id", "is", pick(s.playlists)["id"]]],
                                 ["code", "versions", "sg_date_and_time", "sg_status", "project", "notes"]),
                    then=versions_of)

    def playlist_versions() -> Call:  # the versions in a playlist, through the link from Version
        return Call("find", ("Version", [["playlists", "is", link(pick(s.playlists))]],
                             ["code", "entity", "sg_status_list", "playlists"]))

    def notes_to_someone() -> Call:  # someone's inbox: the notes addressed to them
        return Call("find", ("Note", [["addressings_to", "is", pick(s.addressees)]],
                             ["subject", "content", "note_links", "user", "created_at", "sg_status_list", "tasks"]),
                    {"order": by("created_at", "desc"), "limit": 20}, sorts=True)

    def notes_on_entity() -> Call:  # the notes on a shot, an asset or a version, with their links
        note = pick(s.notes)
        target = pick(note["note_links"]) if note["note_links"] else link(pick(s.shots))
        return Call("find", ("Note", [["note_links", "is", link(target)]],
                             ["subject", "note_links", "user", "sg_status_list", "sg_note_type", "replies"]))

    def note_replies() -> Call:  # the replies of a note, oldest first
        with_replies = [n for n in s.notes if n["replies"]] or s.notes
        return Call("find", ("Reply", [["entity", "is", link(pick(with_replies))]], ["content", "user", "created_at"]),
                    {"order": by("created_at")}, sorts=True)

    def cut_data() -> Call:  # editorial: a sequence's shots in cut order with their cut data
        return Call("find", ("Shot", [["sg_sequence", "is", link(pick(s.sequences))]],
                             ["code", "sg_cut_in", "sg_cut_out", "sg_cut_duration", "sg_head_in", "sg_tail_out",
                              "sg_cut_order", "sg_sequence.Sequence.code"]),
                    {"order": by("sg_cut_order")}, sorts=True)

    def user_by_login() -> Call:  # who is running this tool
        return Call("find_one", ("HumanUser", [["login", "is", pick(s.users)["login"]]],
                                 ["name", "login", "email", "sg_status_list", "department", "groups"]))

    def user_by_id() -> Call:
        return Call("find_one", ("HumanUser", [["id", "is", pick(s.users)["id"]]],
                                 ["name", "login", "email", "sg_status_list", "department", "projects"]))

    def shot_by_name() -> Call:  # a shot from its code, in its project (a path resolved to an entity)
        shot = pick(s.shots)
        return Call("find_one", ("Shot", [["project", "is", link(shot["project"])], ["code", "is", shot["code"]]],
                                 ["code", "sg_status_list", "sg_sequence", "assets", "description",
                                  "sg_cut_in", "sg_cut_out"]))

    def asset_by_name() -> Call:
        asset = pick(s.assets)
        return Call("find_one", ("Asset", [["project", "is", link(asset["project"])], ["code", "is", asset["code"]]],
                                 ["code", "sg_asset_type", "sg_status_list", "shots", "description"]))

    def assets_by_type() -> Call:  # a project's assets of one or two types
        asset = pick(s.assets)
        types = sorted({asset["sg_asset_type"], pick(["Character", "Prop", "Environment"])})
        return Call("find", ("Asset", [["project", "is", link(asset["project"])], ["sg_asset_type", "in", types]],
                             ["code", "sg_asset_type", "sg_status_list", "created_at"]))

    def shots_of_asset() -> Call:  # where an asset is used
        return Call("find", ("Shot", [["assets", "is", link(pick(s.assets))]],
                             ["code", "sg_sequence", "sg_status_list"]))

    def asset_tags() -> Call:  # the tags of an asset
        return Call("find_one", ("Asset", [["id", "is", pick(s.assets)["id"]]], ["code", "tag_list"]))

    def tagged_shots() -> Call:  # a project's shots with a tag
        return Call("find", ("Shot", [["project", "is", link(pick(s.projects))],
                                      ["tag_list", "is", pick(s.shot_tags)]],
                             ["code", "tag_list", "sg_status_list"]))

    def step_tasks() -> Call:  # a department's tasks in a project, through the step's code
        return Call("find", ("Task", [["project", "is", link(pick(s.projects))], ["step.Step.code", "is",
                                                                                   pick(s.steps)["code"]]],
                             ["content", "entity", "task_assignees", "sg_status_list", "due_date"]),
                    {"limit": 100})

    def version_by_id() -> Call:
        return Call("find_one", ("Version", [["id", "is", pick(s.versions)["id"]]],
                                 ["code", "entity", "sg_task", "user", "sg_path_to_frames", "playlists",
                                  "entity.Shot.sg_sequence", "published_files"]))

    def status_summary() -> Call:  # a production dashboard: counts by status in a project
        entity_type = pick(["Shot", "Asset", "Task", "Version"])
        return Call("summarize", (entity_type, [["project", "is", link(pick(s.projects))]],
                                  [{"field": "id", "type": "record_count"}]),
                    {"grouping": [{"field": "sg_status_list", "type": "exact", "direction": "asc"}]}, sorts=True)

    def versions_per_shot() -> Call:  # how many versions each shot of a sequence has
        return Call("summarize", ("Version", [["entity.Shot.sg_sequence", "is", link(pick(s.sequences_in_review))]],
                                  [{"field": "id", "type": "record_count"}]),
                    {"grouping": [{"field": "entity", "type": "exact", "direction": "asc"}]}, sorts=True)

    def time_logged() -> Call:  # a person's logged time per project
        return Call("summarize", ("TimeLog", [["user", "is", pick(s.loggers)]], [{"field": "duration", "type": "sum"}]),
                    {"grouping": [{"field": "project", "type": "exact", "direction": "asc"}]}, sorts=True)

    def projects() -> Call:  # the project picker
        return Call("find", ("Project", [["archived", "is", False]], ["name", "sg_status", "sg_type", "tank_name"]))

    def publish_types() -> Call:
        return Call("find", ("PublishedFileType", [], ["code", "short_name"]))

    def schema_fields() -> Call:
        return Call("schema_field_read", (pick(["Shot", "Asset", "Task", "Version", "Note", "PublishedFile"]),))

    def schema_field() -> Call:
        entity_type, field_name = pick([("Shot", "sg_status_list"), ("Task", "step"), ("Version", "sg_status_list"),
                                        ("Asset", "sg_asset_type"), ("Note", "note_links")])
        return Call("schema_field_read", (entity_type, field_name))

    def schema_entities() -> Call:
        return Call("schema_entity_read", ())

    weighted = [
        (artist_tasks, 10), (shot_versions, 6), (latest_version, 6), (shot_publishes, 6), (user_by_login, 6),
        (shot_by_name, 5), (version_by_id, 4), (user_by_id, 4), (asset_by_name, 4), (notes_to_someone, 4),
        (notes_on_entity, 4), (cut_data, 4), (playlist_review, 3), (playlist_versions, 3), (assets_by_type, 3),
        (step_tasks, 3), (projects, 3), (note_replies, 2), (shots_of_asset, 2), (asset_tags, 2), (tagged_shots, 2),
        (status_summary, 2), (versions_per_shot, 2), (schema_fields, 2), (time_logged, 1), (publish_types, 1),
        (schema_field, 1), (schema_entities, 1),
    ]
    return [Kind(f.__name__, w, f) for f, w in weighted]


# --- comparing answers ------------------------------------------------------------------------------


def where_they_part(a: Any, b: Any, path: str = "") -> str:
    """The first place where two answers differ, with both values there."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if key not in a or key not in b:
                return f"{path}[{key!r}]: only in {'the site' if key in a else 'sgcache'}"
            if a[key] != b[key]:
                return where_they_part(a[key], b[key], f"{path}[{key!r}]")
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            ids = ({e.get("id") for e in a if isinstance(e, dict)}, {e.get("id") for e in b if isinstance(e, dict)})
            extra = f"; ids only on the site {sorted(ids[0] - ids[1])[:10]}, only in sgcache " \
                    f"{sorted(ids[1] - ids[0])[:10]}" if any(ids) else ""
            return f"{path or 'answer'}: {len(a)} items on the site, {len(b)} in sgcache{extra}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return where_they_part(x, y, f"{path}[{i}]")
    return f"{path or 'answer'}: site {a!r:.300} / sgcache {b!r:.300}"


def where_answers_part(site: tuple[str, Any], proxy: tuple[str, Any]) -> str:
    """:func:`where_they_part` for two outcomes ("ok" or "fault", and the answer or the fault)."""
    if site[0] == proxy[0] == "ok":
        return where_they_part(site[1], proxy[1])
    return f"site {site[0]} {site[1]!r:.300} / sgcache {proxy[0]} {proxy[1]!r:.300}"


def difference(site: tuple[str, Any], proxy: tuple[str, Any]) -> str | None:
    """None when the answers are equal; else "order" (the same items in another order) or "content"."""
    if site == proxy:
        return None
    if site[0] == proxy[0] == "ok" and isinstance(site[1], list) and isinstance(proxy[1], list):
        def key(item: Any) -> str:
            return json.dumps(item, sort_keys=True, default=str)
        if sorted(map(key, site[1])) == sorted(map(key, proxy[1])):
            return "order"
    return "content"


# --- running ---------------------------------------------------------------------------------------------


@dataclass
class Tally:
    """What one kind's calls did."""

    kind: str
    calls: int = 0
    from_cache: int = 0  # calls whose every request sgcache answered from the cache
    requests: Counter = field(default_factory=Counter)  # outcome -> requests (sgcache's counter)
    reasons: Counter = field(default_factory=Counter)  # pass reason -> requests (sgcache's counter)
    details: Counter = field(default_factory=Counter)  # "reason (detail)" from the request log
    site_ms: list[float] = field(default_factory=list)
    sgcache_ms: list[float] = field(default_factory=list)
    mismatches: int = 0
    site_faults: int = 0
    empty: int = 0
    differences: list[dict] = field(default_factory=list)

    def row(self) -> dict:
        top = self.reasons.most_common(1)
        return {"kind": self.kind, "calls": self.calls, "from_cache": self.from_cache,
                "share_from_cache": round(self.from_cache / self.calls, 4) if self.calls else None,
                "site_p50_ms": round(percentile(sorted(self.site_ms), 50), 2),
                "sgcache_p50_ms": round(percentile(sorted(self.sgcache_ms), 50), 2),
                "mismatches": self.mismatches, "site_faults": self.site_faults, "empty_answers": self.empty,
                "top_pass_reason": top[0][0] if top else None, "requests_by_outcome": dict(self.requests),
                "pass_reasons": dict(self.reasons.most_common()), "pass_details": dict(self.details.most_common()),
                "differences": self.differences}


def timed(sg: shotgun_api3.Shotgun, call: Call) -> tuple[tuple[str, Any], float]:
    started = time.perf_counter()
    try:
        answer: tuple[str, Any] = ("ok", call.run(sg))
    except shotgun_api3.Fault as e:
        answer = ("fault", str(e))
    return answer, (time.perf_counter() - started) * 1000


def is_empty(call: Call, answer: tuple[str, Any]) -> bool:
    """The site found nothing (for a second call: its answer; for a summary: no group)."""
    if answer[0] != "ok":
        return False
    value = answer[1][1] if call.then is not None else answer[1]
    if call.method == "summarize":
        value = value["groups"]
    return value in (None, [], {})


_DETAIL = re.compile(r"event=request .*path=/api3/json .* detail=(['\"])passthrough: (.*)\1$")


class RequestLog:
    """The pass details ``sgcache web`` logs, read as the log grows."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def new_details(self) -> list[str]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except OSError:
            return []
        end = data.rfind(b"\n") + 1  # a line still being written is read next time
        self.offset += end
        return [m[2] for line in data[:end].decode("utf-8", "replace").splitlines() if (m := _DETAIL.search(line))]


def run(drawn: list[tuple[str, Call]], site: shotgun_api3.Shotgun, proxy: shotgun_api3.Shotgun, proxy_url: str,
        log: RequestLog, max_shown: int) -> dict[str, Tally]:
    tallies: dict[str, Tally] = {}
    before = read_counters(proxy_url)
    log.new_details()
    for n, (kind, call) in enumerate(drawn):
        t = tallies.setdefault(kind, Tally(kind))
        if n % 2:
            actual, sgcache_ms = timed(proxy, call)
            expected, site_ms = timed(site, call)
        else:
            expected, site_ms = timed(site, call)
            actual, sgcache_ms = timed(proxy, call)
        after = read_counters(proxy_url)
        outcomes: Counter = Counter()
        for (name, labels), value in counter_delta(before, after).items():
            labels_ = dict(labels)
            if name == "sgcache_requests_total":
                outcomes[labels_["outcome"]] += int(value)
            else:
                t.reasons[labels_["reason"]] += int(value)
        before = after
        t.calls += 1
        t.requests.update(outcomes)
        t.from_cache += bool(outcomes) and set(outcomes) == {"cache"}
        t.details.update(log.new_details())
        t.site_ms.append(site_ms)
        t.sgcache_ms.append(sgcache_ms)
        t.empty += is_empty(call, expected)
        if expected[0] == "fault":
            t.site_faults += 1
        what = difference(expected, actual)
        if what is not None:
            t.mismatches += 1
            if len(t.differences) < max_shown:
                t.differences.append({"call": str(call), "kind_of_difference": what,
                                      "where": where_answers_part(expected, actual),
                                      "site": repr(expected)[:2000], "sgcache": repr(actual)[:2000]})
        if (n + 1) % 100 == 0:
            print(f"  {n + 1} calls", file=sys.stderr)
    return tallies


def print_report(rows: list[dict], overall: dict) -> None:
    print(f"\n{'kind':<18}{'calls':>6}{'cache':>8}{'site p50':>10}{'sgc p50':>10}{'diff':>6}{'empty':>7}"
          "  top pass reason")
    for r in [*rows, overall]:
        if r is overall:
            print("-" * 86)
        reasons = r["pass_reasons"]
        top = next(iter(reasons.items()), None)
        print(f"{r['kind']:<18}{r['calls']:>6}{r['share_from_cache']:>8.1%}{r['site_p50_ms']:>8.1f}ms"
              f"{r['sgcache_p50_ms']:>8.1f}ms{r['mismatches']:>6}{r['empty_answers']:>7}  "
              f"{f'{top[0]} ({top[1]})' if top else '-'}")
    faults = [r for r in rows if r["site_faults"]]
    for r in faults:
        print(f"\nSITE FAULTS in {r['kind']}: {r['site_faults']} (the call is not a valid read)")
    details = [(r["kind"], d, c) for r in rows for d, c in r["pass_details"].items()]
    if details:
        print("\nwhy calls passed through (sgcache's request log, per kind):")
        for kind, detail, count in details:
            print(f"  {kind:<18}{count:>5}  {detail}")
    for r in rows:
        for d in r["differences"]:
            print(f"\nDIFFERENCE ({d['kind_of_difference']}) in {r['kind']}: {d['call']}\n  at {d['where']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--scale", type=at_least(), default=5, help="stand-in studio size (mock-site --scale)")
    parser.add_argument("--calls", type=at_least(), default=1000, help="calls in all, drawn over the kinds by weight")
    parser.add_argument("--seed", type=int, default=1, help="seed of the draw (the studio's data has its own)")
    parser.add_argument("--latency-ms", type=duration(zero=True), default=0.0, help="the stand-in's added answer time")
    parser.add_argument("--db", default="sqlite", help="'sqlite' (a scratch file) or the URL of an empty "
                        "PostgreSQL database to fill")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="an sgcache setting for the import and the proxy (repeatable)")
    parser.add_argument("--show", type=at_least(0), default=3, help="differences printed per kind")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results here as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (cache, logs)")
    args = parser.parse_args()
    if args.calls < 1 or args.scale < 1 or args.latency_ms < 0:
        parser.error("--calls and --scale must be at least 1, --latency-ms at least 0")
    if args.db != "sqlite" and not args.db.startswith(("postgresql:", "postgresql+")):
        parser.error("--db is 'sqlite' or a postgresql:// URL")
    signal.signal(signal.SIGTERM, on_sigterm)
    command = shlex.join(sys.orig_argv)
    context = run_context()
    print(f"starting the stand-in (scale {args.scale}) and sgcache ({args.db.split(':')[0]}), importing...",
          file=sys.stderr)
    started = time.monotonic()
    cached = CachedProxy("sgcache-workload-", scale=args.scale, latency_ms=args.latency_ms,
                         settings=tuple(args.settings), database=None if args.db == "sqlite" else args.db)
    try:
        ready = time.monotonic() - started
        print(f"ready in {ready:.0f} s; reading the studio's values", file=sys.stderr)
        site = connect(cached.site_url, 120)
        proxy = connect(cached.proxy_url, 120)
        studio = Studio.read(site)
        studio.check()
        rnd = random.Random(args.seed)
        all_kinds = kinds(studio, rnd)
        chosen = rnd.choices(all_kinds, [k.weight for k in all_kinds], k=args.calls)
        drawn = [(k.name, k.make()) for k in chosen]
        print(f"{len(drawn)} calls over {len({k for k, _ in drawn})} kinds", file=sys.stderr)
        run_started = time.monotonic()
        tallies = run(drawn, site, proxy, cached.proxy_url, RequestLog(cached.web.log_path), args.show)
        run_seconds = time.monotonic() - run_started
    finally:
        cached.stop()
        if args.keep:
            print(f"kept {cached.tmp} (the cache and each program's log)", file=sys.stderr)
        else:
            shutil.rmtree(cached.tmp, ignore_errors=True)
    rows = [tallies[k.name].row() for k in all_kinds if k.name in tallies]
    total = Tally("all")
    for t in tallies.values():
        for name in ("calls", "from_cache", "mismatches", "site_faults", "empty"):
            setattr(total, name, getattr(total, name) + getattr(t, name))
        total.requests.update(t.requests)
        total.reasons.update(t.reasons)
        total.details.update(t.details)
        total.site_ms += t.site_ms
        total.sgcache_ms += t.sgcache_ms
    overall = total.row()
    print_report(rows, overall)
    print(f"\n{overall['calls']} calls in {run_seconds:.0f} s (set-up and import {ready:.0f} s); requests through "
          f"sgcache by outcome: {dict(total.requests)}")
    if args.json:
        overall.pop("differences")
        args.json.write_text(json.dumps({
            "benchmark": "workload", "command": command, "context": context,
            "settings": {"scale": args.scale, "calls": args.calls, "seed": args.seed, "latency_ms": args.latency_ms,
                         "db": args.db.split(":")[0], "schema": "schema/demo.yml", "set": args.settings},
            "setup_seconds": round(ready, 1), "run_seconds": round(run_seconds, 1),
            "weights": {k.name: k.weight for k in all_kinds}, "overall": overall, "kinds": rows}, indent=1) + "\n",
            encoding="utf-8")
        print(f"results written to {args.json}")
    return 1 if total.mismatches or total.site_faults else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
