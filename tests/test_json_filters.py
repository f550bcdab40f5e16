"""Filters on the data types stored as JSON (image, tag_list, url, serializable), through the proxy
and on the stand-in, on SQLite and PostgreSQL.

What the site accepts is the client's operator table ("Valid Operators By Data Type" in
shotgun_api3's docs/reference.rst), summed up in ``OPERATOR_TABLE`` below:

* image: ``is`` and ``is_not``, with None as the only value (whether there is a thumbnail);
* tag_list: ``is`` (it holds the tag, like a contains), ``is_not``, ``name_contains``,
  ``name_not_contains`` and ``name_id``;
* url (file/link fields) and serializable: no filter at all.

Everything else is a fault on the site, which the proxy never answers itself: it passes such
reads through and the caller gets the site's fault. ``name_id`` (tags by id) passes through too,
and the stand-in, which keeps tags as names and has no Tag entities, refuses it with a fault of its
own. Sorts on these types pass through; summaries count them and filter on them like reads.

One stand-in holds ``Clip`` rows with edge values (an empty tag list and a null one, an empty
image string, tags that differ in case only, ``%`` and ``_`` in tags, accents, links to a retired
asset) and a retired row that matches many filters and must never be selected. For each database
a proxy serves a cache of the same schema filled by a full import. Each case asserts the codes the
stand-in selects (worked out by hand from ``CLIPS``), that the proxy gives the same answer, and
whether the proxy answered from its cache or passed through, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import shotgun_api3
from conftest import SCRIPT_AUTH, ProxyServer, imported_proxy

from sgcache.mocksite import MockSite
from sgcache.mocksite.server import MockServer
from sgcache.query import filters
from sgcache.query.paths import Context
from sgcache.query.read import compile_read
from sgcache.schema import loads
from sgcache.store.readstate import ReadState

#: data type -> relation -> whether the site takes it with any value (False: None only)
OPERATOR_TABLE: dict[str, dict[str, bool]] = {
    "image": {"is": False, "is_not": False},
    "tag_list": {"is": True, "is_not": True, "name_contains": True, "name_not_contains": True, "name_id": True},
    "url": {},
    "serializable": {},
}
#: data type -> the Clip field holding it
FIELD = {"image": "image", "tag_list": "tag_list", "url": "sg_link", "serializable": "sg_meta"}

SCHEMA_YAML = """\
# JSON filter test schema
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
    project: {type: entity, entity_types: [Project]}
    image: image
    tag_list: tag_list
Clip:
  identifier: code
  fields:
    id: number
    code: text
    project: {type: entity, entity_types: [Project]}
    image: image
    sg_link: url
    tag_list: tag_list
    sg_meta: serializable
    sg_asset: {type: entity, entity_types: [Asset]}
    sg_assets: {type: multi_entity, entity_types: [Asset]}
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
    permission_rule_set: {type: entity, entity_types: [PermissionRuleSet]}
PermissionRuleSet:
  identifier: code
  fields:
    id: number
    code: text
    display_name: text
    entity_type: text
"""

THUMB = "https://example.com/t/{}.png"
LINK = {"url": "https://example.com/doc", "name": "Doc", "link_type": "web", "content_type": None}

#: asset code -> (image, tag_list, retired)
ASSETS = {
    "Chair": (THUMB.format("a1"), ["hero"], False),
    "Lamp": (None, [], False),
    "Desk": (None, ["FX", "bg"], False),
    "Gone": (THUMB.format("a4"), ["hero"], True),
}
#: clip code -> image, tag_list, sg_link, sg_meta, sg_asset, sg_assets (asset codes); C08 is retired
CLIPS = {
    "C01": (THUMB.format(1), ["hero", "FX"], LINK, {"k": 1}, "Chair", ["Chair", "Desk"]),
    "C02": (None, [], None, None, "Lamp", ["Lamp"]),
    "C03": ("", None, None, [], None, []),
    "C04": (THUMB.format(4), ["bg"], LINK, {}, "Desk", ["Lamp", "Gone"]),
    "C05": (None, ["Hero"], None, None, "Gone", ["Gone"]),
    "C06": (THUMB.format(6), ["fx", "bg", "x%y"], None, {"a": None}, "Chair", ["Chair"]),
    "C07": (None, ["Été", "hero_1"], None, None, None, []),
    "C08": (THUMB.format(8), ["hero"], LINK, None, "Chair", ["Chair"]),
}
RETIRED_CLIP = "C08"
ACTIVE = sorted(code for code in CLIPS if code != RETIRED_CLIP)


@dataclass
class Env:
    backend: str
    proxy: ProxyServer
    direct: shotgun_api3.Shotgun
    via: shotgun_api3.Shotgun


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    """The stand-in site holding ASSETS and CLIPS, listening; shared by both databases."""
    folder = tmp_path_factory.mktemp("json-filters")
    schema_path = folder / "json-schema.yml"
    schema_path.write_text(SCHEMA_YAML)
    site = MockSite(loads(SCHEMA_YAML, where="json filter schema"), humans=[], file_dir=folder / "files")
    project = {"type": "Project", "id": site.load_entity("Project", {"name": "Clips", "archived": False})}
    assets = {}
    for code, (image, tags, retired) in ASSETS.items():
        assets[code] = {"type": "Asset", "id": site.load_entity(
            "Asset", {"code": code, "project": project, "image": image, "tag_list": tags}, retired=retired)}
    for code, (image, tags, link, meta, asset, linked) in CLIPS.items():
        site.load_entity("Clip", {
            "code": code, "project": project, "image": image, "tag_list": tags, "sg_link": link, "sg_meta": meta,
            "sg_asset": assets[asset] if asset else None, "sg_assets": [assets[a] for a in linked],
        }, retired=code == RETIRED_CLIP)
    server = MockServer(site).start()
    yield server, schema_path
    server.stop()


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def env(request, stand_in, pg_database, tmp_path_factory):
    """A proxy whose cache holds the whole stand-in, on each database."""
    server, schema_path = stand_in
    tmp = tmp_path_factory.mktemp(f"json-filters-{request.param}")
    with imported_proxy(request.param, tmp, server.url, schema_path, pg_database) as proxy:
        yield Env(request.param, proxy, shotgun_api3.Shotgun(server.url, **SCRIPT_AUTH), proxy.client())


def outcome(sg: shotgun_api3.Shotgun, method: str, *args, **kwargs) -> tuple:
    """What a call gave: ("ok", results) or ("fault", message)."""
    try:
        return "ok", getattr(sg, method)(*args, **kwargs)
    except shotgun_api3.Fault as e:
        return "fault", str(e)


def ask(env: Env, method: str, *args, **kwargs) -> tuple[tuple, str]:
    """One call to the stand-in and the same through the proxy: the stand-in's outcome (asserted equal
    to the proxy's) and how the proxy answered: "cache", or "passthrough:<reason>"."""
    service = env.proxy.service
    expected = outcome(env.direct, method, *args, **kwargs)
    cached, reasons = service.cache_answers, service.reasons.copy()
    actual = outcome(env.via, method, *args, **kwargs)
    passed = service.reasons - reasons
    if service.cache_answers == cached + 1 and not passed:
        how = "cache"
    else:
        assert service.cache_answers == cached and sum(passed.values()) == 1, (service.cache_answers, passed)
        how = f"passthrough:{next(iter(passed))}"
    assert actual == expected, f"{method}{args!r} {kwargs!r} answered by {how}:\n  site:  {expected!r}\n" \
                               f"  proxy: {actual!r}"
    return expected, how


def codes(found: tuple) -> list[str]:
    assert found[0] == "ok", found
    return sorted(e["code"] for e in found[1])


# --- answered from the cache ----------------------------------------------------------------------------


def case(path: str, relation: str, value: Any, expected: list[str], case_id: str):
    return pytest.param([path, relation, value], expected, id=case_id)


CACHED = [
    # image: None or "" is no thumbnail
    case("image", "is", None, ["C02", "C03", "C05", "C07"], "image-is-none-includes-empty-string"),
    case("image", "is_not", None, ["C01", "C04", "C06"], "image-is_not-none"),
    # tag_list: None or [] is no tags
    case("tag_list", "is", None, ["C02", "C03"], "tags-is-none-includes-empty-list"),
    case("tag_list", "is_not", None, ["C01", "C04", "C05", "C06", "C07"], "tags-is_not-none"),
    # is: the list holds the tag (whole names, case ignored)
    case("tag_list", "is", "HERO", ["C01", "C05"], "tags-is-any-case-whole-name"),
    case("tag_list", "is", "fx", ["C01", "C06"], "tags-is-lowercase-value"),
    case("tag_list", "is", "hero_1", ["C07"], "tags-is-underscore"),
    case("tag_list", "is", "hero_", [], "tags-is-no-prefix-match"),
    case("tag_list", "is", "%", [], "tags-is-percent-matches-no-other-tag"),
    case("tag_list", "is", "ÉTÉ", ["C07"], "tags-is-accented-any-case"),
    case("tag_list", "is_not", "hero", ["C02", "C03", "C04", "C06", "C07"], "tags-is_not-keeps-empty-and-null"),
    case("tag_list", "name_contains", "ER", ["C01", "C05", "C07"], "tags-name_contains-any-case"),
    case("tag_list", "name_contains", "%", ["C06"], "tags-name_contains-percent-literal"),
    case("tag_list", "name_contains", "_", ["C07"], "tags-name_contains-underscore-literal"),
    case("tag_list", "name_contains", "té", ["C07"], "tags-name_contains-accent"),
    case("tag_list", "name_not_contains", "b", ["C01", "C02", "C03", "C05", "C07"],
         "tags-name_not_contains-keeps-empty-and-null"),
    case("tag_list", "name_not_contains", "%", ["C01", "C02", "C03", "C04", "C05", "C07"],
         "tags-name_not_contains-percent-literal"),
    # deep paths: a hop to a retired asset reads as none; through a multi-entity field a relation
    # holds when any live asset matches, a negated one when all do
    case("sg_asset.Asset.tag_list", "is", "hero", ["C01", "C06"], "deep-tags-is"),
    case("sg_asset.Asset.tag_list", "is", None, ["C02", "C03", "C05", "C07"], "deep-tags-is-none-retired-hop"),
    case("sg_asset.Asset.image", "is_not", None, ["C01", "C06"], "deep-image-is_not-none"),
    case("sg_assets.Asset.tag_list", "name_contains", "B", ["C01"], "multi-deep-tags-name_contains"),
    case("sg_assets.Asset.tag_list", "is_not", "hero", ["C02", "C03", "C04", "C05", "C07"],
         "multi-deep-tags-is_not-all-assets"),
    case("sg_assets.Asset.image", "is", None, ["C01", "C02", "C04"], "multi-deep-image-is-none-any-asset"),
]


@pytest.mark.parametrize("condition, expected", CACHED)
def test_a_relation_of_the_operator_table_is_answered_from_the_cache_as_the_site(env, condition, expected):
    found, how = ask(env, "find", "Clip", [condition], ["code"])
    assert codes(found) == expected
    assert how == "cache"


def test_groups_of_json_conditions_are_answered_from_the_cache(env):
    either = {"filter_operator": "any", "filters": [["image", "is", None], ["tag_list", "is", "bg"]]}
    found, how = ask(env, "find", "Clip", [either], ["code"])
    assert (codes(found), how) == (["C02", "C03", "C04", "C05", "C06", "C07"], "cache")
    found, how = ask(env, "find", "Clip", [["tag_list", "is_not", None], ["image", "is_not", None]], ["code"])
    assert (codes(found), how) == (["C01", "C04", "C06"], "cache")


def test_a_retired_row_is_selected_only_among_retired_rows(env):
    found, how = ask(env, "find", "Clip", [["tag_list", "is", "hero"], ["image", "is_not", None]], ["code"],
                     retired_only=True)
    assert (codes(found), how) == ([RETIRED_CLIP], "cache")


def test_the_json_values_of_the_selected_rows_read_back_as_the_site_has_them(env):
    fields = ["code", "image", "tag_list", "sg_link", "sg_meta"]
    found, how = ask(env, "find", "Clip", [["tag_list", "is", "hero"], ["image", "is_not", None]], fields)
    assert how == "cache"
    assert found == ("ok", [
        {"type": "Clip", "id": found[1][0]["id"], "code": "C01", "image": THUMB.format(1), "tag_list": ["hero", "FX"],
         "sg_link": LINK, "sg_meta": {"k": 1}},
    ])


def test_a_summary_filtered_on_tags_is_answered_from_the_cache(env):
    found, how = ask(env, "summarize", "Clip", [["tag_list", "name_contains", "e"]],
                     [{"field": "id", "type": "record_count"}])
    assert (found, how) == (("ok", {"summaries": {"id": 3}, "groups": []}), "cache")


def test_counting_json_fields_is_answered_from_the_cache(env):
    """``count`` counts set values: not null, not an empty list or string (an empty dict is set)."""
    summaries = [{"field": FIELD[t], "type": "count"} for t in FIELD]
    found, how = ask(env, "summarize", "Clip", [], summaries)
    assert (found, how) == (("ok", {"summaries": {"image": 3, "tag_list": 5, "sg_link": 2, "sg_meta": 3},
                                    "groups": []}), "cache")


def test_a_tag_stored_as_a_dict_is_matched_by_its_name(engine, tables, writer):
    """Tags read as ``{"name", ...}`` dicts (no site in these tests sends them) match as names do;
    a dict without a name matches no name relation, on either database."""
    writer.upsert("Shot", [
        {"type": "Shot", "id": 1, "code": "named", "tag_list": [{"type": "Tag", "id": 3, "name": "Hero"}]},
        {"type": "Shot", "id": 2, "code": "plain", "tag_list": ["hero"]},
        {"type": "Shot", "id": 3, "code": "nameless", "tag_list": [{"type": "Tag", "id": 4}]},
    ])
    context = Context(tables, ReadState(ready=frozenset(t.name for t in tables)), engine.dialect.name,
                      tz=ZoneInfo("UTC"))

    def ids(relation: str, value: Any) -> list[int]:
        plan = compile_read(context, {"type": "Shot", "return_fields": ["code"], "filters": {
            "logical_operator": "and", "conditions": [{"path": "tag_list", "relation": relation, "values": [value]}]}})
        with engine.connect() as conn:
            return [e["id"] for e in plan.run(conn)["entities"]]

    assert ids("is", "HERO") == [1, 2]
    assert ids("name_contains", "er") == [1, 2]
    assert ids("name_not_contains", "er") == [3]
    assert ids("is_not", None) == [1, 2, 3]


# --- passed through -----------------------------------------------------------------------------------------


def refused(path: str, relation: str, value: Any, reason: str, case_id: str):
    return pytest.param([path, relation, value], reason, id=case_id)


REFUSED = [
    # image: None is the only value, is / is_not the only relations
    refused("image", "is", THUMB.format(1), "unsupported_relation", "image-is-url"),
    refused("image", "is_not", "", "unsupported_relation", "image-is_not-empty-string"),
    refused("image", "in", [None], "unsupported_relation", "image-in"),
    refused("image", "contains", "t", "unsupported_relation", "image-contains"),
    # url and serializable: no filter at all
    refused("sg_link", "is", None, "unsupported_relation", "url-is-none"),
    refused("sg_link", "is_not", None, "unsupported_relation", "url-is_not-none"),
    refused("sg_link", "is", LINK, "unsupported_relation", "url-is-link"),
    refused("sg_link", "name_contains", "doc", "unsupported_relation", "url-name_contains"),
    refused("sg_meta", "is", None, "unsupported_relation", "serializable-is-none"),
    refused("sg_meta", "is_not", {"k": 1}, "unsupported_relation", "serializable-is_not-dict"),
    # tag_list: relations outside the table, and values that are not tag names
    refused("tag_list", "in", ["hero", "bg"], "unsupported_relation", "tags-in"),
    refused("tag_list", "not_in", ["hero"], "unsupported_relation", "tags-not_in"),
    refused("tag_list", "contains", "hero", "unsupported_relation", "tags-contains"),
    refused("tag_list", "name_is", "hero", "unsupported_relation", "tags-name_is"),
    refused("tag_list", "name_starts_with", "h", "unsupported_relation", "tags-name_starts_with"),
    refused("tag_list", "type_is", "Tag", "unsupported_relation", "tags-type_is"),
    refused("tag_list", "is", 5, "unsupported_value", "tags-is-number"),
    refused("tag_list", "is", {"type": "Tag", "id": 1}, "unsupported_value", "tags-is-tag-link"),
    refused("tag_list", "name_contains", None, "unsupported_value", "tags-name_contains-none"),
    # name_id is in the table, but the cache keeps names only (and the stand-in has no Tag entities)
    refused("tag_list", "name_id", 1, "unsupported_relation", "tags-name_id"),
]


@pytest.mark.parametrize("condition, reason", REFUSED)
def test_a_filter_the_site_refuses_passes_through_to_its_fault(env, condition, reason):
    found, how = ask(env, "find", "Clip", [condition], ["code"])
    assert found[0] == "fault" and f"API read() {condition[0]}:" in found[1], found
    assert how == f"passthrough:{reason}"


@pytest.mark.parametrize("data_type", list(FIELD))
def test_sorting_by_a_json_field_passes_through(env, data_type):
    _, how = ask(env, "find", "Clip", [], ["code"], order=[{"field_name": FIELD[data_type], "direction": "asc"}])
    assert how == "passthrough:unsupported_sort"


def test_grouping_by_tags_passes_through(env):
    _, how = ask(env, "summarize", "Clip", [], [{"field": "id", "type": "record_count"}],
                 grouping=[{"field": "tag_list", "type": "exact", "direction": "asc"}])
    assert how == "passthrough:unsupported_grouping"


# --- the stand-in follows the operator table -------------------------------------------------------------

#: a value of the right shape for each relation outside the table (the site refuses the relation itself)
OTHER_VALUES = {"between": [1, 2], "not_between": [1, 2], "in": ["x"], "not_in": ["x"], "in_last": [1, "DAY"],
                "not_in_last": [1, "DAY"], "in_next": [1, "DAY"], "not_in_next": [1, "DAY"], "in_calendar_day": 0,
                "in_calendar_week": 0, "in_calendar_month": 0, "in_calendar_year": 0, "type_is": "Asset",
                "type_is_not": "Asset"}
STAND_IN_PAIRS = [(t, r) for t in FIELD for r in [*filters.RELATIONS, "name_id"]]


def accepted_values(data_type: str, relation: str) -> list:
    """Values the stand-in takes for a relation of the table (none for a relation outside it)."""
    if relation not in OPERATOR_TABLE[data_type] or (data_type, relation) == ("tag_list", "name_id"):
        return []  # tags by id: the stand-in's one deviation (test_the_stand_in_refuses_tags_by_id_naming_why)
    if not OPERATOR_TABLE[data_type][relation]:
        return [None]
    return ["hero", None] if relation in ("is", "is_not") else ["hero"]


def refused_values(data_type: str, relation: str) -> list:
    """Values the stand-in refuses with a fault: any, for a relation outside the table."""
    if relation not in OPERATOR_TABLE[data_type]:
        return [OTHER_VALUES.get(relation, "x")]
    if data_type == "image":
        return [THUMB.format(1), ""]
    return [1] if relation == "name_id" else [5, {"type": "Tag", "id": 1}]


@pytest.mark.parametrize(("data_type", "relation"), STAND_IN_PAIRS, ids=[f"{t}-{r}" for t, r in STAND_IN_PAIRS])
def test_the_stand_in_accepts_exactly_the_operator_table(stand_in, data_type, relation):
    sg = shotgun_api3.Shotgun(stand_in[0].url, **SCRIPT_AUTH)
    for value in accepted_values(data_type, relation):
        assert isinstance(sg.find("Clip", [[FIELD[data_type], relation, value]], ["code"]), list)
    message = f"{data_type} fields is not supported" if data_type in ("url", "serializable") \
        else f"the {relation} relation"
    for value in refused_values(data_type, relation):
        with pytest.raises(shotgun_api3.Fault, match=message):
            sg.find("Clip", [[FIELD[data_type], relation, value]], ["code"])


def test_the_stand_in_refuses_tags_by_id_naming_why(stand_in):
    sg = shotgun_api3.Shotgun(stand_in[0].url, **SCRIPT_AUTH)
    with pytest.raises(shotgun_api3.Fault, match="name_id relation on tag_list fields .*Tag entities"):
        sg.find("Clip", [["tag_list", "name_id", 1]], ["code"])


def test_the_stand_in_refuses_name_id_on_links_even_without_links(stand_in):
    """A relation a data type lacks is a fault before any row is tested (on a multi-entity field,
    an unknown name_* relation used to match nothing instead)."""
    sg = shotgun_api3.Shotgun(stand_in[0].url, **SCRIPT_AUTH)
    for path in ("sg_asset", "sg_assets"):
        with pytest.raises(shotgun_api3.Fault, match="name_id relation is not supported"):
            sg.find("Clip", [[path, "name_id", 1], ["code", "is", "no such clip"]], ["code"])

