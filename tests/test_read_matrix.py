"""Matrix test of the read path: every filter relation x every data type, through the proxy and on the site.

One small stand-in site holds a ``Matrix`` type with one field of every data type (plus ``Asset``
targets for its links and ``Project`` for ``project``), filled with edge values: None in every
field, mixed case, ``%`` / ``_`` / ``\\`` in text, accents, negative and zero numbers, dates and
times around now (whole days or hours +/- 30 minutes from the site's clock, so no relative
relation sits on a boundary), links to live and retired assets, and a retired row. For each
database a cache of the same schema is filled by a full import and a proxy serves it.

For every (data type, relation) pair, each with one or more sensible values (and None where it
means something), ``find("Matrix", [[field, relation, *values]], ["code"])`` goes to the proxy and
straight to the stand-in, and:

* the answers (or the site's faults) are identical;
* when the site accepts the filter and :mod:`sgcache.query.filters` supports the relation for the
  field's family, the proxy answered from its cache; otherwise it passed the read through.

Sorting by every field (both directions) and returning every field are compared the same way.
The summary gets one line per database with the number of pairs, and the share of cases
answered from the cache.

Two tests check the reference itself with the same data, since a comparison is only as good as
the stand-in: a filter it cannot evaluate must be a Fault (not an internal error), and tag_list
filters must compare whole tag names (tests/test_json_filters.py checks the four JSON data types
further).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import shotgun_api3
import yaml
from conftest import SCRIPT_AUTH, ProxyServer, imported_proxy, report

from sgcache.fields import REGISTRY, UncachedField
from sgcache.mocksite import Fault, MockSite
from sgcache.mocksite.server import MockServer
from sgcache.query import filters
from sgcache.schema import loads

#: every relation of the site (the one list, in sgcache/query/filters.py)
RELATIONS = list(filters.RELATIONS)
DATA_TYPES = [
    "text", "color", "entity_type", "footage", "list", "status_list", "url_template", "uuid", "number", "duration",
    "percent", "timecode", "float", "currency", "date", "date_time", "checkbox", "entity", "multi_entity", "url",
    "image", "tag_list", "serializable", "password",
]
#: data type -> the Matrix field holding it
FIELD = {data_type: f"sg_{data_type}" for data_type in DATA_TYPES}

SCHEMA_YAML = f"""\
# read matrix test schema: one Matrix field per data type
Project:
  identifier: name
  fields:
    id: number
    name: text
    archived: checkbox
Asset:
  identifier: code
  fields:
    id: number
    code: text
    project: {{type: entity, entity_types: [Project]}}
Matrix:
  identifier: code
  fields:
    id: number
    code: text
    project: {{type: entity, entity_types: [Project]}}
    created_at: date_time
    updated_at: date_time
{chr(10).join(f"    {FIELD[t]}: {t}" for t in DATA_TYPES
              if t not in ("list", "status_list", "entity", "multi_entity"))}
    sg_list: {{type: list, valid_values: [Hero, BG, fx_Layer, 100%]}}
    sg_status_list: {{type: status_list, valid_values: [wtg, ip, fin, na]}}
    sg_entity: {{type: entity, entity_types: [Asset]}}
    sg_multi_entity: {{type: multi_entity, entity_types: [Asset]}}
EventLogEntry:
  fields:
    id: number
    event_type: text
# who is calling and its permission group, as on every site (the proxy asks before a cached answer)
ApiUser:
  identifier: firstname
  fields:
    id: number
    firstname: text
    generate_event_log_entries: checkbox
    permission_rule_set: {{type: entity, entity_types: [PermissionRuleSet]}}
PermissionRuleSet:
  identifier: code
  fields:
    id: number
    code: text
    display_name: text
    entity_type: text
"""
MATRIX_FIELDS = sorted(yaml.safe_load(SCHEMA_YAML)["Matrix"]["fields"])
MATRIX_TYPES = {name: (spec if isinstance(spec, str) else spec["type"])
                for name, spec in yaml.safe_load(SCHEMA_YAML)["Matrix"]["fields"].items()}

# --- what the proxy answers itself (sgcache/query/families.py) -----------------

ORDERED = {"is", "is_not", "less_than", "greater_than", "between", "not_between", "in", "not_in"}
TEXT_MATCH = {"contains", "not_contains", "starts_with", "ends_with"}
SPAN = {"in_last", "not_in_last", "in_next", "not_in_next"}
CALENDAR = {"in_calendar_day", "in_calendar_week", "in_calendar_month", "in_calendar_year"}
NAME = {"name_contains", "name_not_contains", "name_is", "name_starts_with", "name_ends_with"}
LINK = {"is", "is_not", "in", "not_in", "type_is", "type_is_not"} | NAME
#: field family (the ``family`` of the field class) -> the relations the cache answers
CACHED_RELATIONS = {
    "text": ORDERED | TEXT_MATCH,
    "number": ORDERED,
    "checkbox": {"is", "is_not"},
    "date": ORDERED | SPAN | CALENDAR,
    "date_time": ORDERED | SPAN | CALENDAR,
    "entity": LINK,
    "multi_entity": LINK,
    # image: is / is_not None only (has a thumbnail)
    "presence": {"is", "is_not"},
    # tag_list: the same, plus is / is_not a tag and name_contains / name_not_contains
    "tag_list": {"is", "is_not", "name_contains", "name_not_contains"},
    "none": set(),
}
#: families the cache sorts by (multi_entity and none have no sort_keys)
CACHED_SORTS = {"text", "number", "checkbox", "date", "date_time", "entity"}


def family(data_type: str) -> str:
    """The cache's family of a data type; uncached types (password) have none."""
    cls = REGISTRY[data_type]
    return "none" if issubclass(cls, UncachedField) else cls.family


# --- the data -------------------------------------------------------------------------------------------

WIRE = "%Y-%m-%dT%H:%M:%SZ"
HALF_HOUR = dt.timedelta(minutes=30)


def wire(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime(WIRE)


def hours(n: float) -> dt.timedelta:
    return dt.timedelta(hours=n)


def days(n: int) -> dt.timedelta:
    return dt.timedelta(days=n)


ASSET_CODES = ["Chair_100%", "table_A", "Écran", "lamp\\desk"]
RETIRED_ASSET_CODE = "Gone chair"
ROWS = 12  # the last one is retired


def columns(now: dt.datetime, assets: list[dict], gone: dict) -> dict[str, list]:
    """Matrix field -> one value per row; row 7 is None (or empty) everywhere but its code."""
    a0, a1, a2, a3 = assets
    day = now.date()

    def on(n: int | None) -> str | None:
        return None if n is None else (day + days(n)).isoformat()

    def at(delta: dt.timedelta | None) -> str | None:
        return None if delta is None else wire(now + delta)

    return {
        "code": ["M00 Hello", "m01_lower", "M02 100%", "M03 back\\slash", "M04 Écran", "M05 é", "M06 empty",
                 "M07 nulls", "M08 zebra", "M09 archived", None, "M11 retired"],
        "sg_text": ["Hello World", "hello_world", "100% Done", "a\\b path", "Écran Large", "écran", "", None,
                    "ZEBRA", "apple pie", "Zebra", "retired text"],
        "sg_color": ["255,0,0", "pipeline_step", None, "0,128,255", "Pipeline_Step", "10,10,10", "", None,
                     "255,255,255", "1,2,3", "128,0,0", "0,0,0"],
        "sg_entity_type": ["Asset", "Shot", "asset", None, "Sequence", "Task", "HumanUser", None, "", "Version",
                           "Shot", "Asset"],
        "sg_footage": ["12-04", "0-00", "100-15", None, "7-08", "12-4", "", None, "99-99", "3-10", "12-04",
                       "1-01"],
        "sg_list": ["Hero", "BG", "fx_Layer", None, "Hero", "100%", "BG", None, "fx_Layer", "Hero", "BG", "Hero"],
        "sg_status_list": ["wtg", "ip", "fin", None, "na", "ip", "wtg", None, "fin", "ip", "na", "fin"],
        "sg_url_template": ["https://x.example/{id}", "HTTPS://X.example/{code}", None, "file:///a_b/%20", "",
                            "https://x.example/{id}/É", "ftp://x", None, "https://X.EXAMPLE/{ID}", "s3://b/k",
                            "https://y.example/", "https://z.example/"],
        "sg_uuid": ["3f2504e0-4f89-11d3-9a0c-0305e82c3301", "3F2504E0-4F89-11D3-9A0C-0305E82C3302", None,
                    "00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff",
                    "3f2504e0-4f89-11d3-9a0c-0305e82c3301", "", None, "a0a0a0a0-0000-4000-8000-000000000001",
                    "b0b0b0b0-0000-4000-8000-000000000002", "c0c0c0c0-0000-4000-8000-000000000003",
                    "d0d0d0d0-0000-4000-8000-000000000004"],
        "sg_number": [0, -5, 7, 1000, 2**40, 7, -1, None, 42, 3, None, 5],
        "sg_duration": [60, 0, -30, None, 480, 60, 15, None, 1, 2, 3, 4],
        "sg_percent": [0, 100, 50, None, 25, 75, -10, None, 50, 99, 1, 2],
        "sg_timecode": [0, 3600000, -1000, None, 41708, 86399999, 1000, None, 5, 6, 7, 8],
        "sg_float": [0.0, -1.5, 2.25, None, 1e6, 2.25, -0.001, None, 3.0, 1.0, 0.5, 9.75],
        "sg_currency": [0.0, 19.99, -250.0, None, 1000000.5, 19.99, 0.01, None, 5.0, 7.5, 100.0, 3.0],
        "sg_date": [on(0), on(-1), on(1), on(-8), on(9), on(-40), on(45), on(None), on(-400), on(380), on(3),
                    on(0)],
        "sg_date_time": [at(hours(-1) - HALF_HOUR), at(days(-1) - HALF_HOUR), at(days(1) + HALF_HOUR),
                         at(hours(2) + HALF_HOUR), at(days(-6) + HALF_HOUR), at(days(8) - HALF_HOUR),
                         at(days(-35) - HALF_HOUR), at(None), at(days(40) + HALF_HOUR),
                         at(days(-400) + HALF_HOUR), at(HALF_HOUR), at(days(366) - HALF_HOUR)],
        "sg_checkbox": [True, False, None, True, False, True, None, None, True, False, True, True],
        "sg_entity": [a0, a1, gone, None, a2, a3, a0, None, gone, a1, a2, a0],
        "sg_multi_entity": [[a0, gone], [a1], [gone], [a1, a2], [a3, a0], [a3], [a0, a1, a2], [],
                            [gone, a3], [a2, gone, a0], [a1], [a0]],
        "sg_url": [{"url": "https://example.com/a", "name": "Site A", "link_type": "web", "content_type": None},
                   None, {"url": "https://example.com/b", "name": "b", "link_type": "web"}, None, None, None,
                   None, None, {"url": "https://example.com/c", "name": "C", "link_type": "web"}, None, None, None],
        "sg_image": ["https://example.com/t/1.png", None, "https://example.com/t/2.png", None, None,
                     "https://example.com/t/3.png", None, None, None, None, None, None],
        "sg_tag_list": [["hero", "FX"], [], None, ["bg"], ["Hero"], None, ["fx", "bg"], None, [], ["x%y"], None,
                        ["hero"]],
        "sg_serializable": [{"k": 1, "nested": [1, "x"]}, None, [1, 2, "x"], None, {"a": None}, None, {}, None,
                            [], None, {"s": "é"}, None],
    }


# --- the values each pair is tried with ------------------------------------------------------------------


@dataclass
class Samples:
    """Values of one data type for filters: two present ones, bounds, and text pieces."""

    one: Any
    other: Any
    low: Any
    high: Any
    contains: list = field(default_factory=list)
    starts: list = field(default_factory=list)
    ends: list = field(default_factory=list)


def samples(now: dt.datetime, links: dict[str, dict]) -> dict[str, Samples]:
    day = now.date()

    def on(n: int) -> str:
        return (day + days(n)).isoformat()

    a0, gone = links["a0"], links["gone"]
    return {
        "text": Samples("hello WORLD", "ÉCRAN", "a", "hello", ["%", "_", "\\", "É", "O W", "zz"],
                        ["HELLO", "é", "100%", "a\\", "_"], ["world", "_world", "E", "% done", "%"]),
        "color": Samples("PIPELINE_STEP", "255,0,0", "0", "2", [","], ["pipe"], [",0"]),
        "entity_type": Samples("asset", "Shot", "A", "S", ["s"], ["a"], ["T"]),
        "footage": Samples("12-04", "0-00", "1", "5", ["-0"], ["12"], ["04"]),
        "list": Samples("hero", "100%", "a", "h", ["_l", "%"], ["FX"], ["er"]),
        "status_list": Samples("IP", "na", "a", "j", ["i"], ["w"], ["N"]),
        "url_template": Samples("https://x.example/{ID}", "", "f", "i", ["{"], ["HTTPS"], ["/"]),
        "uuid": Samples("3F2504E0-4F89-11D3-9A0C-0305E82C3301", "", "1", "b", ["-4f89-"], ["3f2504e0"],
                        ["3302"]),
        "number": Samples(7, -5, -1, 42),
        "duration": Samples(60, 0, 0, 100),
        "percent": Samples(50, 100, 0, 60),
        "timecode": Samples(3600000, 0, -1000, 41708),
        "float": Samples(2.25, -1.5, -1, 3.0),
        "currency": Samples(19.99, 0.0, 0, 100),
        "date": Samples(on(0), on(-40), on(-10), on(10)),
        "date_time": Samples(wire(now + days(-1) - HALF_HOUR), wire(now + HALF_HOUR), wire(now - days(2)),
                             wire(now + days(2))),
        "checkbox": Samples(True, False, False, True),
        "entity": Samples(a0, gone, a0, gone),
        "multi_entity": Samples(a0, gone, a0, gone),
        "url": Samples({"url": "https://example.com/a", "name": "Site A", "link_type": "web"}, None, None, None),
        "image": Samples("https://example.com/t/1.png", None, None, None),
        "tag_list": Samples("hero", "bg", None, None),
        "serializable": Samples({"k": 1}, [1], None, None),
        "password": Samples("secret", "", "a", "z"),
    }


#: name_* values: case, accents, wildcards and backslashes against the assets' codes
NAME_VALUES = {
    "name_contains": ["AIR", "%", "_", "\\", "é"],
    "name_not_contains": ["chair", "%"],
    "name_is": ["écran", "TABLE_a", "Gone chair"],
    "name_starts_with": ["CHAIR", "l"],
    "name_ends_with": ["_a", "%", "K"],
}
TEXTUAL = {"text", "color", "entity_type", "footage", "list", "status_list", "url_template", "uuid"}
TEMPORAL = {"date", "date_time"}
LINKS = {"entity", "multi_entity"}


def cases(data_type: str, relation: str, s: Samples) -> list[list]:
    """The values (after field and relation) each pair is tried with."""
    if relation in ("is", "is_not"):
        return [[s.one], [s.other], [None]]
    if relation in ("less_than", "greater_than"):
        return [[s.high], [None]] if data_type not in LINKS else [[s.one]]
    if relation in ("between", "not_between"):
        return [[s.low, s.high], [None, s.high]]
    if relation in ("in", "not_in"):
        return [[[s.one, s.other]], [[s.one, None]]]
    if relation in TEXT_MATCH:
        if data_type in TEXTUAL:
            pieces = {"contains": s.contains, "not_contains": s.contains, "starts_with": s.starts,
                      "ends_with": s.ends}[relation]
            return [[p] for p in pieces] + [[None]]
        return [[s.one]]
    if relation in SPAN:
        if data_type == "date_time":
            return [[3, "HOUR"], [7, "DAY"], [2, "WEEK"], [1, "MONTH"], [1, "YEAR"], [0, "DAY"]]
        if data_type == "date":
            return [[7, "DAY"], [2, "WEEK"], [1, "MONTH"], [1, "YEAR"], [0, "DAY"]]
        return [[7, "DAY"]]
    if relation in CALENDAR:
        return [[0], [-1], [1]] if data_type in TEMPORAL else [[0]]
    if relation in ("type_is", "type_is_not"):
        return [["Asset"], ["Shot"], [None]] if data_type in LINKS else [["Asset"]]
    if relation in NAME:
        if data_type in LINKS:
            return [[v] for v in NAME_VALUES[relation]] + ([[None]] if relation == "name_is" else [])
        if data_type == "tag_list":
            return [["HERO"], ["%"]]
        return [["chair"]]
    raise AssertionError(relation)


def expect_cached(data_type: str, relation: str, values: list) -> bool:
    """Whether the cache answers this filter, when the site accepts it (filters.py's rules)."""
    if relation not in CACHED_RELATIONS[family(data_type)]:
        return False
    if family(data_type) == "presence":
        return values == [None]
    # type_is takes an entity type name: the cache leaves anything else to the site.
    return not (relation in ("type_is", "type_is_not") and values == [None])


# --- the site and the proxies ---------------------------------------------------------------------------


@dataclass
class StandIn:
    site: MockSite
    server: MockServer
    schema_path: Path
    samples: dict[str, Samples]
    rows: dict[int, str | None]  # Matrix id -> code


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    """The stand-in site with the Matrix data, listening; shared by both databases."""
    folder = tmp_path_factory.mktemp("read-matrix")
    schema_path = folder / "matrix-schema.yml"
    schema_path.write_text(SCHEMA_YAML)
    site = MockSite(loads(SCHEMA_YAML, where="read matrix schema"), humans=[], file_dir=folder / "files")
    now = site.clock().replace(microsecond=0)
    live_project = {"type": "Project", "id": site.load_entity("Project", {"name": "Matrix", "archived": False})}
    old_project = {"type": "Project", "id": site.load_entity("Project", {"name": "Old", "archived": True})}
    assets = [{"type": "Asset", "id": site.load_entity("Asset", {"code": code, "project": live_project})}
              for code in ASSET_CODES]
    gone = {"type": "Asset", "id": site.load_entity("Asset", {"code": RETIRED_ASSET_CODE}, retired=True)}
    data = columns(now, assets, gone)
    rows = {}
    for i in range(ROWS):
        values = {name: column[i] for name, column in data.items()}
        values["project"] = old_project if i == 9 else (None if i == 7 else live_project)
        rows[site.load_entity("Matrix", values, retired=i == ROWS - 1)] = values["code"]
    server = MockServer(site).start()
    yield StandIn(site, server, schema_path, samples(now, {"a0": assets[0], "gone": gone}), rows)
    server.stop()


@dataclass
class Env:
    backend: str
    proxy: ProxyServer
    direct: shotgun_api3.Shotgun
    via: shotgun_api3.Shotgun
    stand_in: StandIn
    pairs: int = 0
    outcomes: Counter = field(default_factory=Counter)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def env(request, stand_in, pg_database, tmp_path_factory):
    """A proxy whose cache holds the whole stand-in (same schema), on each database."""
    tmp = tmp_path_factory.mktemp(f"read-matrix-{request.param}")
    with imported_proxy(request.param, tmp, stand_in.server.url, stand_in.schema_path, pg_database) as proxy:
        out = Env(request.param, proxy, shotgun_api3.Shotgun(stand_in.server.url, **SCRIPT_AUTH), proxy.client(),
                  stand_in)
        yield out
    if out.pairs:
        o = out.outcomes
        report(f"read matrix [{out.backend}]: {out.pairs} (data type, relation) pairs, {o['cases']} finds: "
               f"{o['cache']} answered from the cache ({o['selective']} of them selective), "
               f"{o['passthrough']} passed through ({o['refused']} refused by the site with a fault, "
               f"{o['site_error']} failed on the site with an HTTP error)")


def outcome(sg: shotgun_api3.Shotgun, *args, **kwargs) -> tuple:
    """What a find gave: ("ok", entities), ("fault", message) or ("http", status, reason)."""
    try:
        return "ok", sg.find(*args, **kwargs)
    except shotgun_api3.Fault as e:
        return "fault", str(e)
    except shotgun_api3.ProtocolError as e:
        return "http", e.errcode, e.errmsg


def compare(env: Env, *args, **kwargs) -> tuple[tuple, str]:
    """Run one find on the site and through the proxy; assert the same answer; say how it was answered."""
    service = env.proxy.service
    expected = outcome(env.direct, *args, **kwargs)
    cached, passed = service.cache_answers, sum(service.reasons.values())
    actual = outcome(env.via, *args, **kwargs)
    cached, passed = service.cache_answers - cached, sum(service.reasons.values()) - passed
    how = "cache" if (cached, passed) == (1, 0) else "passthrough" if (cached, passed) == (0, 1) else \
        f"{cached} cache answers and {passed} passthroughs"
    if actual != expected:
        raise AssertionError(f"find{args!r} {kwargs!r} answered from {how}:\n  site:  {expected!r}\n"
                             f"  proxy: {actual!r}")
    return expected, how


# --- the matrix -------------------------------------------------------------------------------------------

PAIRS = [(data_type, relation) for data_type in DATA_TYPES for relation in RELATIONS]


@pytest.mark.parametrize(("data_type", "relation"), PAIRS, ids=[f"{t}-{r}" for t, r in PAIRS])
def test_every_relation_on_every_data_type_answers_as_the_site(env, data_type, relation):
    env.pairs += 1
    problems = []
    tried = cases(data_type, relation, env.stand_in.samples[data_type])
    assert tried, "every pair is tried with at least one value"
    for values in tried:
        condition = [FIELD[data_type], relation, *values]
        try:
            expected, how = compare(env, "Matrix", [condition], ["code"])
        except AssertionError as e:
            problems.append(str(e))
            continue
        env.outcomes["cases"] += 1
        env.outcomes[how] += 1
        refused = expected[0] != "ok"
        if how == "cache" and 0 < len(expected[1]) < ROWS - 1:
            env.outcomes["selective"] += 1  # neither no row nor every active row
        env.outcomes["refused" if expected[0] == "fault" else "site_error" if refused else "accepted"] += 1
        want = "cache" if not refused and expect_cached(data_type, relation, values) else "passthrough"
        if how != want:
            problems.append(f"{condition!r}: expected an answer from {want}, got {how} "
                            f"(service reasons {dict(env.proxy.service.reasons)})")
    assert not problems, "\n".join(problems)


def test_the_matrix_covers_every_pair():
    assert len(PAIRS) == len(DATA_TYPES) * len(RELATIONS) == 24 * 27
    assert set(MATRIX_TYPES[FIELD[t]] for t in DATA_TYPES) == set(DATA_TYPES)


def test_the_stand_in_refuses_with_a_fault_every_filter_it_cannot_evaluate(stand_in):
    """The reference itself: a filter the site cannot evaluate is a Fault, never an internal error."""
    auth = {"script_name": SCRIPT_AUTH["script_name"], "script_key": SCRIPT_AUTH["api_key"]}
    crashed = []
    for data_type, relation in PAIRS:
        for values in cases(data_type, relation, stand_in.samples[data_type]):
            flat = values[0] if len(values) == 1 and isinstance(values[0], list) else values
            args = {"type": "Matrix", "return_fields": ["code"], "filters": {
                "logical_operator": "and",
                "conditions": [{"path": FIELD[data_type], "relation": relation, "values": flat}]}}
            try:
                stand_in.site.call("read", [auth, args])
            except Fault:
                pass
            except Exception as e:  # what the server turns into HTTP 500
                crashed.append(f"{data_type}-{relation} {values!r}: {type(e).__name__}: {e}")
                break
    assert not crashed, f"{len(crashed)} pairs crash the stand-in:\n" + "\n".join(crashed)


def test_the_stand_in_filters_tag_lists_by_whole_tags(stand_in):
    """The reference itself: tag_list ``is`` a tag compares whole tag names, ignoring case, and an
    empty tag list is empty for ``is None`` (as the emulator's tag_list rules intend)."""
    sg = shotgun_api3.Shotgun(stand_in.server.url, **SCRIPT_AUTH)
    expected = {
        ("name_contains", "HERO"): ["M00 Hello", "M04 Écran"],  # tags hero / Hero
        ("is", "%"): [],  # no tag is "%" (one is "x%y")
        ("is", "fx"): ["M00 Hello", "M06 empty"],  # tags FX / fx
        ("is", None): ["", "M02 100%", "M05 é", "M07 nulls", "M08 zebra", "m01_lower"],  # None or []
        ("is_not", None): ["M00 Hello", "M03 back\\slash", "M04 Écran", "M06 empty", "M09 archived"],
    }
    wrong = []
    for (relation, value), codes in expected.items():
        found = sorted(e["code"] or "" for e in sg.find("Matrix", [["sg_tag_list", relation, value]], ["code"]))
        if found != codes:
            wrong.append(f"sg_tag_list {relation} {value!r}: expected {codes}, the stand-in answered {found}")
    assert not wrong, "\n".join(wrong)


# --- sorting and return fields ------------------------------------------------------------------------------

SORTS = [(name, direction) for name in MATRIX_FIELDS for direction in ("asc", "desc")]


@pytest.mark.parametrize(("name", "direction"), SORTS, ids=[f"{n}-{d}" for n, d in SORTS])
def test_sorting_by_every_field_answers_as_the_site(env, name, direction):
    expected, how = compare(env, "Matrix", [], ["code", name], order=[{"field_name": name, "direction": direction}])
    data_type = MATRIX_TYPES[name]
    want = "cache" if expected[0] == "ok" and family(data_type) in CACHED_SORTS else "passthrough"
    assert how == want, f"sorting by {name} ({data_type}) {direction}: {expected!r}"


@pytest.mark.parametrize("order", [
    [{"field_name": "sg_checkbox", "direction": "asc"}, {"field_name": "sg_text", "direction": "desc"}],
    [{"field_name": "sg_entity", "direction": "desc"}, {"field_name": "sg_float", "direction": "asc"}],
    [{"field_name": "sg_status_list", "direction": "asc"}, {"field_name": "sg_date_time", "direction": "desc"},
     {"field_name": "code", "direction": "asc"}],
    [{"field_name": "project.Project.name", "direction": "desc"}, {"field_name": "sg_date", "direction": "asc"}],
    [{"field_name": "sg_entity.Asset.code", "direction": "asc"}, {"field_name": "id", "direction": "desc"}],
], ids=["checkbox-text", "entity-float", "status-datetime-code", "deep-project-date", "deep-asset-id"])
def test_sorting_by_several_keys_answers_as_the_site(env, order):
    expected, how = compare(env, "Matrix", [], ["code"], order=order)
    assert expected[0] == "ok" and how == "cache"


CACHED_FIELDS = [name for name in MATRIX_FIELDS if not issubclass(REGISTRY[MATRIX_TYPES[name]], UncachedField)]
DEEP_FIELDS = ["project.Project.name", "project.Project.archived", "sg_entity.Asset.code", "sg_entity.Asset.id",
               "sg_multi_entity.Asset.code", "sg_entity.Asset.project"]


@pytest.mark.parametrize(("retired_only", "include_archived"), [(False, True), (True, True), (False, False)],
                         ids=["active", "retired", "without-archived-projects"])
def test_returning_every_field_answers_as_the_site(env, retired_only, include_archived):
    expected, how = compare(env, "Matrix", [], CACHED_FIELDS + DEEP_FIELDS, retired_only=retired_only,
                            include_archived_projects=include_archived)
    assert expected[0] == "ok" and how == "cache"
    entities = expected[1]
    active = [i for i in env.stand_in.rows if i != max(env.stand_in.rows)]
    if retired_only:
        assert [e["id"] for e in entities] == [max(env.stand_in.rows)]
    elif include_archived:
        assert [e["id"] for e in entities] == active
    else:
        assert [e["code"] for e in entities] == [env.stand_in.rows[i] for i in active if i != active[9]]


def test_returning_an_uncached_field_passes_through(env):
    expected, how = compare(env, "Matrix", [], ["code", "sg_password", "sg_text"])
    assert expected[0] == "ok" and how == "passthrough"
    assert all(e["sg_password"] is None for e in expected[1])
