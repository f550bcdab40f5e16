"""The schema model: YAML in and out, conversion from the site's answers, and the filter rules."""

from __future__ import annotations

import pytest

from sgcache.errors import SchemaError, UnknownEntityType
from sgcache.schema import dumps, loads
from sgcache.schema.model import EntityType, Field, Schema, guess_identifier
from sgcache.schema.rules import filter_schema, parse_rules
from sgcache.schema.site import schema_from_site, schema_to_site

# --- YAML ------------------------------------------------------------------------------------


def rich_schema() -> Schema:
    shot = EntityType("Shot", label="Shot", identifier="code", fields={
        "id": Field("id", "number", label="Id", editable=False),
        "code": Field("code", "text", label="Shot Code", mandatory=True, unique=True, description="The name: ✓"),
        "sg_sequence": Field("sg_sequence", "entity", label="Sequence", entity_types=["Sequence"]),
        "sg_status_list": Field("sg_status_list", "status_list", valid_values=["wtg", "ip"], default="wtg",
                                summary_default="status_list"),
        "sg_link": Field("sg_link", "url", properties={"open_in_new_window": True}),
        "sg_plain": Field("sg_plain", "number"),
        "sg_weird": Field("sg_weird", "text", label="A: {b}, [c] # d", default="yes"),
    })
    seq = EntityType("Sequence", identifier=None, fields={"id": Field("id", "number")})
    return Schema(types={"Shot": shot, "Sequence": seq}, header="line one\nline two: made by hand")


def test_yaml_round_trip_is_lossless():
    schema = rich_schema()
    text = dumps(schema)
    again = loads(text)
    assert again == schema
    assert dumps(again) == text


def test_yaml_writes_one_line_per_field_and_a_bare_type_when_nothing_else_is_set():
    text = dumps(rich_schema())
    assert "    sg_plain: number\n" in text
    assert "    sg_sequence: {type: entity, label: Sequence, entity_types: [Sequence]}\n" in text
    assert text.startswith("# line one\n# line two: made by hand\n")


def test_yaml_fields_are_sorted_for_stable_diffs():
    text = dumps(rich_schema())
    lines = [line.split(":")[0].strip() for line in text.splitlines() if line.startswith("    ")]
    shot_fields = lines[:7]
    assert shot_fields == sorted(shot_fields)


@pytest.mark.parametrize("text,message", [
    ("- a\n- b\n", "expected a mapping of entity types"),
    ("Shot: [1]\n", "Shot: expected a mapping"),
    ("Shot:\n  fields: {id: number}\n  colour: red\n", "unknown key 'colour'"),
    ("Shot:\n  fields: {id: {label: x}}\n", "'type'"),
    ("Shot:\n  fields: {id: number, code: {type: text, mandatroy: true}}\n", "Shot.code: unknown key 'mandatroy'"),
    ("Shot:\n  fields: {id: number, code: {type: text, mandatory: maybe}}\n", "mandatory: expected a bool"),
    ("Shot:\n  fields: {id: number, e: {type: entity, entity_types: Shot}}\n", "entity_types: expected a list"),
    ("Shot:\n  fields: {code: text}\n", "Shot has no 'id' field"),
    ("Shot:\n  identifier: name\n  fields: {id: number}\n", "identifier 'name' is not one of its fields"),
    ("Shot:\n  fields: {id: number, Bad__Name: text}\n", "not a valid field name"),
    ("Shot:\n  fields: {id: number, a__b: text}\n", "not a valid field name"),
    ("Shot:\n  fields: {id: number, _hidden: text}\n", "not a valid field name"),
    ("shot:\n  fields: {id: number}\n", "not a valid entity type name"),
    ("Shot:\n  fields: [id\n", "not valid YAML (line"),
])
def test_yaml_errors_name_the_file_and_the_key(text, message):
    with pytest.raises(SchemaError) as e:
        loads(text, where="my.yml")
    assert str(e.value).startswith("my.yml: ")
    assert message in str(e.value)


def test_unknown_type_lookup_names_the_type():
    with pytest.raises(UnknownEntityType, match="'Element'"):
        rich_schema()["Element"]


# --- conversion from schema_read -------------------------------------------------------------


def leaf(value, editable=False):
    return {"value": value, "editable": editable}


def site_field(type_name, data_type, label, **properties):
    return {
        "data_type": leaf(data_type), "description": leaf("", True), "editable": leaf(True),
        "entity_type": leaf(type_name), "mandatory": leaf(False), "name": leaf(label, True),
        "unique": leaf(False),
        "properties": {"default_value": leaf(None), "summary_default": leaf("none", True),
                       **{k: leaf(v, True) for k, v in properties.items()}},
    }


SCHEMA_READ = {
    "Shot": {
        "id": site_field("Shot", "number", "Id"),
        "code": site_field("Shot", "text", "Shot Code"),
        "sg_sequence": site_field("Shot", "entity", "Sequence", valid_types=["Sequence"]),
        "assets": site_field("Shot", "multi_entity", "Assets", valid_types=["Asset"]),
        "sg_status_list": site_field("Shot", "status_list", "Status", valid_values=["wtg", "ip", "fin"]),
        "step_0": site_field("Shot", "pivot_column", "ALL TASKS"),
        "sg_movie": site_field("Shot", "url", "Movie", open_in_new_window=True),
    },
    "Task": {"id": site_field("Task", "number", "Id"), "content": site_field("Task", "text", "Task Name"),
             "code": site_field("Task", "text", "Code?")},
    "HumanUser": {"id": site_field("HumanUser", "number", "Id"), "name": site_field("HumanUser", "text", "Name")},
    "ApiUser": {"id": site_field("ApiUser", "number", "Id"), "firstname": site_field("ApiUser", "text", "Script Name")},
    "PageHit": {"id": site_field("PageHit", "number", "Id")},
}
SCHEMA_ENTITY_READ = {"Shot": {"name": leaf("Shot")}, "Task": {"name": leaf("Task")},
                      "ApiUser": {"name": leaf("Script")}}


def test_dump_from_a_schema_read_answer():
    schema = schema_from_site(SCHEMA_READ, SCHEMA_ENTITY_READ, header="h")
    assert list(schema.types) == ["ApiUser", "HumanUser", "PageHit", "Shot", "Task"]
    shot = schema["Shot"]
    assert shot.label == "Shot" and shot.identifier == "code"
    assert shot.fields["sg_sequence"].data_type == "entity"
    assert shot.fields["sg_sequence"].entity_types == ["Sequence"]
    assert shot.fields["assets"].entity_types == ["Asset"]
    assert shot.fields["sg_status_list"].valid_values == ["wtg", "ip", "fin"]
    assert shot.fields["code"].label == "Shot Code"
    assert shot.fields["sg_movie"].properties == {"open_in_new_window": True}
    assert shot.fields["step_0"].data_type == "pivot_column"
    assert schema["ApiUser"].label == "Script"
    assert schema["HumanUser"].label is None


def test_dump_chooses_each_types_identifier_field():
    schema = schema_from_site(SCHEMA_READ)
    assert schema["Task"].identifier == "content"  # a known exception, even though Task has a code field
    assert schema["HumanUser"].identifier == "name"
    assert schema["ApiUser"].identifier == "firstname"
    assert schema["PageHit"].identifier is None


@pytest.mark.parametrize("type_name,fields,expected", [
    ("Note", {"subject", "content", "code"}, "subject"),
    ("Project", {"name", "code"}, "name"),
    ("Version", {"code", "description"}, "code"),
    ("CustomEntity07", {"title", "description"}, "title"),
    ("TimeLog", {"description", "cached_display_name"}, "cached_display_name"),
    ("Task", {"code"}, "code"),
])
def test_guess_identifier(type_name, fields, expected):
    assert guess_identifier(type_name, fields) == expected


def test_schema_read_round_trips_through_a_schema():
    labels = {**SCHEMA_ENTITY_READ, "HumanUser": {"name": leaf("Person")}, "PageHit": {"name": leaf("Page Hit")}}
    schema = schema_from_site(SCHEMA_READ, labels)
    fields, entities = schema_to_site(schema)
    assert schema_from_site(fields, entities) == schema
    assert fields["Shot"]["sg_sequence"]["properties"]["valid_types"]["value"] == ["Sequence"]
    assert fields["Shot"]["code"]["name"]["value"] == "Shot Code"
    assert entities["ApiUser"] == {"name": {"value": "Script", "editable": False}}


def test_a_type_without_a_label_is_served_with_its_name():
    _, entities = schema_to_site(schema_from_site(SCHEMA_READ))
    assert entities["PageHit"] == {"name": {"value": "PageHit", "editable": False}}


def test_dump_refuses_a_field_without_a_data_type():
    with pytest.raises(SchemaError, match="Shot: field 'code' has no data_type"):
        schema_from_site({"Shot": {"id": site_field("Shot", "number", "Id"), "code": {"name": leaf("Code")}}})


# --- filter rules ----------------------------------------------------------------------------


def kept(rules_text: str, schema: Schema | None = None) -> dict[str, list[str]]:
    schema = schema or schema_from_site(SCHEMA_READ)
    out = filter_schema(schema, parse_rules(rules_text))
    return {t.name: sorted(t.fields) for t in out}


def test_a_type_rule_keeps_every_field():
    assert kept("+Task") == {"Task": ["code", "content", "id"]}


def test_no_sign_means_keep():
    assert kept("HumanUser") == {"HumanUser": ["id", "name"]}


def test_fields_no_rule_matches_are_dropped():
    assert kept("") == {}


def test_first_match_wins():
    assert kept("-Shot.code\n+Shot") == {"Shot": ["assets", "id", "sg_movie", "sg_sequence", "sg_status_list",
                                                   "step_0"]}
    assert "code" in kept("+Shot\n-Shot.code")["Shot"]


def test_type_globs():
    assert set(kept("+*User")) == {"HumanUser", "ApiUser"}
    assert set(kept("+[HT]*")) == {"HumanUser", "Task"}
    assert set(kept("-Page*\n+*")) == {"ApiUser", "HumanUser", "Shot", "Task"}


def test_field_globs():
    assert kept("+Shot.sg_*") == {"Shot": ["id", "sg_movie", "sg_sequence", "sg_status_list"]}


def test_data_type_rules():
    assert kept("-*.*:pivot_column\n+Shot")["Shot"] == ["assets", "code", "id", "sg_movie", "sg_sequence",
                                                        "sg_status_list"]
    assert kept("-*:pivot_column\n+Shot")["Shot"] == kept("-*.*:pivot_column\n+Shot")["Shot"]
    assert kept("+*.*:multi_entity") == {"Shot": ["assets", "id"]}


def test_globs_are_case_sensitive():
    assert kept("+shot") == {}


def test_comments_and_blank_lines_are_ignored():
    assert kept("# keep tasks\n\n   +Task   # inline comment\n#+Shot\n") == {"Task": ["code", "content", "id"]}


def test_a_kept_type_always_keeps_its_id():
    assert kept("+Task.content") == {"Task": ["content", "id"]}


def test_dropping_the_identifier_clears_it():
    out = filter_schema(schema_from_site(SCHEMA_READ), parse_rules("-Task.content\n+Task"))
    assert out["Task"].identifier is None


def test_filtering_leaves_the_input_alone():
    schema = schema_from_site(SCHEMA_READ)
    before = dumps(schema)
    filter_schema(schema, parse_rules("+Shot.code"))
    assert dumps(schema) == before


@pytest.mark.parametrize("line", ["+Shot.code.extra:text junk", "+Shot:Text", "++Shot", "+Shot code"])
def test_unreadable_rules_name_their_line(line):
    with pytest.raises(SchemaError, match=r"rules.txt:3: cannot read rule"):
        parse_rules(f"# header\n+Task\n{line}\n", where="rules.txt")


def test_rule_fields():
    (rule,) = parse_rules("-Shot*.sg_*:entity")
    assert (rule.keep, rule.type_glob, rule.field_glob, rule.data_type) == (False, "Shot*", "sg_*", "entity")


def test_character_classes_and_ranges_in_globs():
    assert set(kept("+[A-H]*")) == {"ApiUser", "HumanUser"}
    assert kept("+Shot.sg_[!s]*") == {"Shot": ["id", "sg_movie"]}
