"""The ``sgcache`` command, run for real in a subprocess, and the schema files shipped with it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
import sqlalchemy as sa
from conftest import SMALL_SCHEMA

from sgcache import __version__
from sgcache.cli import cli
from sgcache.errors import UnknownEntityType
from sgcache.schema import load, loads

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "schema" / "demo.yml"
DEMO_SITE = ROOT / "schema" / "demo-site.yml"
BASIC_RULES = ROOT / "schema" / "basic-rules.txt"


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m sgcache ARGS`` in ``cwd``, with no SGCACHE_* variable but those in ``env``."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SGCACHE_")}
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "sgcache", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=120)


def assert_one_error_line(result: subprocess.CompletedProcess, exit_code: int = 2) -> str:
    """The command failed with ``exit_code`` and said why in one ``sgcache: error:`` line."""
    assert result.returncode == exit_code, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sgcache: error: ")
    return lines[0]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def table_names(db: Path) -> set[str]:
    engine = sa.create_engine(f"sqlite:///{db}")
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


# --- help and version -------------------------------------------------------------------------


def _command_paths(group: click.Group = cli, prefix: tuple[str, ...] = ()):
    yield prefix
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from _command_paths(command, (*prefix, name))
        else:
            yield (*prefix, name)


COMMAND_PATHS = list(_command_paths())


def test_help_covers_at_least_the_known_commands():
    assert {(), ("version",), ("schema",), ("schema", "dump"), ("schema", "filter"), ("schema", "show"),
            ("schema", "migrate")} <= set(COMMAND_PATHS)


@pytest.mark.parametrize("path", COMMAND_PATHS, ids=lambda p: " ".join(p) or "sgcache")
def test_help_of_every_command_exits_0_with_usage(tmp_path, path):
    result = run(*path, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage: {' '.join(('sgcache', *path))} [OPTIONS]")
    assert result.stderr == ""


def test_group_help_lists_the_commands(tmp_path):
    out = run("--help", cwd=tmp_path).stdout
    assert re.search(r"^  schema +Make, filter, inspect and apply schema files\.$", out, re.M)
    assert re.search(r"^  version +Print the versions", out, re.M)


def test_version_prints_the_package_version(tmp_path):
    result = run("version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.startswith(f"sgcache {__version__} (")
    assert len(result.stdout.splitlines()) == 1


# --- configuration errors ---------------------------------------------------------------------


def test_unknown_key_in_the_config_file_is_one_error_line_exit_2(tmp_path):
    path = write(tmp_path / "bad.yml", "web:\n  port: 80\n")
    result = run("--config", str(path), "schema", "show", cwd=tmp_path)
    line = assert_one_error_line(result)
    assert line == f"sgcache: error: {path}: unknown key web.port (known: bind, workers, threads, max_body)"
    assert result.stdout == ""


def test_wrong_type_in_the_file_from_SGCACHE_CONFIG_is_one_error_line_exit_2(tmp_path):
    write(tmp_path / "bad.yml", "web:\n  workers: abc\n")
    result = run("schema", "show", cwd=tmp_path, env={"SGCACHE_CONFIG": "bad.yml"})
    line = assert_one_error_line(result)
    assert line == "sgcache: error: bad.yml: web.workers: expected an integer, got 'abc'"


def test_sgcache_yml_in_the_current_folder_is_read(tmp_path):
    write(tmp_path / "sgcache.yml", "log:\n  level: loud\n")
    line = assert_one_error_line(run("schema", "show", cwd=tmp_path))
    assert line.startswith("sgcache: error: sgcache.yml: log.level: expected one of ")


def test_wrong_environment_variable_is_one_error_line_exit_2(tmp_path):
    result = run("--schema", str(DEMO), "schema", "show", cwd=tmp_path, env={"SGCACHE_WEB_WORKERS": "abc"})
    line = assert_one_error_line(result)
    assert line == "sgcache: error: environment SGCACHE_WEB_WORKERS: web.workers: expected an integer, got 'abc'"


def test_wrong_set_flag_is_one_error_line_exit_2(tmp_path):
    result = run("--set", "web.workers=0", "--schema", str(DEMO), "schema", "show", cwd=tmp_path)
    line = assert_one_error_line(result)
    assert line == ("sgcache: error: command line (web.workers): web.workers: expected an integer of "
                    "at least 1, got 0")


def test_unknown_set_key_is_one_error_line_exit_2(tmp_path):
    result = run("--set", "web.port=80", "--schema", str(DEMO), "schema", "show", cwd=tmp_path)
    assert assert_one_error_line(result) == "sgcache: error: command line: unknown setting 'web.port'"


def test_missing_config_file_is_one_error_line_exit_2(tmp_path):
    path = tmp_path / "nope.yml"
    result = run("--config", str(path), "schema", "show", cwd=tmp_path)
    assert assert_one_error_line(result) == f"sgcache: error: {path}: configuration file not found"


def test_config_flag_beats_SGCACHE_CONFIG(tmp_path):
    write(tmp_path / "bad.yml", "web:\n  workers: abc\n")
    good = write(tmp_path / "good.yml", f"schema:\n  path: {DEMO}\n")
    result = run("--config", str(good), "schema", "show", "Step", cwd=tmp_path,
                 env={"SGCACHE_CONFIG": "bad.yml"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Step: table step ")


# --- schema show ------------------------------------------------------------------------------


@pytest.fixture
def empty_config(tmp_path):
    """An empty settings file, so that commands run in the repository ignore its sgcache.yml."""
    return write(tmp_path / "empty.yml", "")


def test_show_type_lists_link_columns_and_association_tables(empty_config):
    result = run("--config", str(empty_config), "--schema", "schema/demo.yml", "schema", "show", "Shot",
                 cwd=ROOT)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Shot: table shot (link names from code)"
    columns = {line.split()[0]: line.split()[-1] for line in lines[1:] if not line.startswith("  association")}
    assert columns["sg_sequence__type"] == "Sequence"
    assert columns["sg_sequence__id"] == "entity"
    assert any(line.startswith("  association table shot_assets (") for line in lines)


def test_show_without_a_type_prints_one_row_per_type(empty_config):
    result = run("--config", str(empty_config), "--schema", str(DEMO), "schema", "show", cwd=ROOT)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["TYPE", "TABLE", "COLUMNS", "ASSOCIATIONS", "NOT", "STORED"]
    rows = lines[1:-1]
    names = sorted(load(DEMO).types)
    assert [row.split()[0] for row in rows] == names
    assert [row.split()[1] for row in rows] == [name.lower() for name in names]
    assert re.fullmatch(rf"{len(names)} entity tables, \d+ association tables", lines[-1])


def test_show_unknown_type_is_one_error_line_naming_it(tmp_path):
    result = run("--schema", str(DEMO), "schema", "show", "NoSuchType", cwd=tmp_path)
    line = assert_one_error_line(result, exit_code=UnknownEntityType.exit_code)
    assert "'NoSuchType'" in line
    assert result.stdout == ""


def test_show_with_a_missing_schema_file_is_one_error_line(tmp_path):
    result = run("--schema", "nowhere.yml", "schema", "show", cwd=tmp_path)
    assert assert_one_error_line(result) == "sgcache: error: nowhere.yml: schema file not found"


def test_show_column_types_follow_the_configured_database(tmp_path):
    as_postgresql = run("--database", "postgresql://u@h/db", "--schema", str(DEMO), "schema", "show", "Shot",
                        cwd=tmp_path)
    explicit = run("--schema", str(DEMO), "schema", "show", "Shot", "--dialect", "postgresql", cwd=tmp_path)
    as_sqlite = run("--schema", str(DEMO), "schema", "show", "Shot", cwd=tmp_path)
    assert as_postgresql.returncode == explicit.returncode == as_sqlite.returncode == 0
    assert as_postgresql.stdout == explicit.stdout
    assert as_postgresql.stdout != as_sqlite.stdout


# --- schema filter ----------------------------------------------------------------------------

RULES = """\
# test rules
-*.sg_password
+Shot.code
+Shot.sg_sequence
+Shot.sg_*:list     # sg_shot_type only: sg_status_list is a status_list
+Sequence
-*
"""
EXPECTED_FIELDS = {
    "Shot": ["code", "id", "sg_sequence", "sg_shot_type"],
    "Sequence": ["code", "id", "project"],
}


@pytest.fixture
def small_files(tmp_path):
    return write(tmp_path / "in.yml", SMALL_SCHEMA), write(tmp_path / "rules.txt", RULES)


def test_filter_keeps_what_the_rules_say(tmp_path, small_files):
    schema_path, rules_path = small_files
    out = tmp_path / "out" / "kept.yml"
    result = run("schema", "filter", "--rules", str(rules_path), str(schema_path), "-o", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    kept = load(out)
    assert {name: list(t.fields) for name, t in kept.types.items()} == EXPECTED_FIELDS
    assert kept["Shot"].identifier == "code"
    assert kept["Shot"].fields["sg_sequence"].entity_types == ["Sequence"]
    assert kept["Shot"].fields["sg_shot_type"].valid_values == ["Hero", "BG"]


def test_filter_prints_a_kept_summary_on_stderr(tmp_path, small_files):
    schema_path, rules_path = small_files
    result = run("schema", "filter", "--rules", str(rules_path), str(schema_path), "-o", str(tmp_path / "o.yml"),
                 cwd=tmp_path)
    total_fields = sum(len(t.fields) for t in loads(SMALL_SCHEMA))
    assert result.stderr == f"kept 2 of 4 entity types, 7 of {total_fields} fields\n"
    assert result.stdout == ""


def test_filter_header_names_the_command_and_the_source_header(tmp_path, small_files):
    schema_path, rules_path = small_files
    out = tmp_path / "o.yml"
    run("schema", "filter", "--rules", str(rules_path), str(schema_path), "-o", str(out), cwd=tmp_path)
    assert load(out).header == ("Made by `sgcache schema filter --rules rules.txt in.yml`.\n"
                                "Source header:\n  test schema")


def test_filter_without_output_writes_the_schema_to_stdout(tmp_path, small_files):
    schema_path, rules_path = small_files
    result = run("schema", "filter", "--rules", str(rules_path), str(schema_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert {name: list(t.fields) for name, t in loads(result.stdout).types.items()} == EXPECTED_FIELDS


def test_filter_with_an_unreadable_rule_is_one_error_line_naming_the_line(tmp_path, small_files):
    schema_path, _ = small_files
    rules = write(tmp_path / "bad-rules.txt", "+Shot\nShot..code\n")
    result = run("schema", "filter", "--rules", str(rules), str(schema_path), cwd=tmp_path)
    line = assert_one_error_line(result)
    assert line.startswith(f"sgcache: error: {rules}:2: cannot read rule 'Shot..code'")


# --- schema dump ------------------------------------------------------------------------------


def _leaf(value, editable=False):
    return {"value": value, "editable": editable}


def _site_field(type_name, name, data_type, label, *, editable=True, mandatory=False, **properties):
    props = {"default_value": _leaf(None), "summary_default": _leaf("none", True)}
    props.update({key: _leaf(value, True) for key, value in properties.items()})
    return {
        "data_type": _leaf(data_type), "name": _leaf(label, True), "description": _leaf("", True),
        "editable": _leaf(editable), "mandatory": _leaf(mandatory), "unique": _leaf(False),
        "entity_type": _leaf(type_name), "properties": props,
    }


def _site_type(type_name, *fields):
    out = {"id": _site_field(type_name, "id", "number", "Id", editable=False)}
    for name, data_type, label, kwargs in fields:
        out[name] = _site_field(type_name, name, data_type, label, **kwargs)
    return out


SITE_FIELDS = {
    "Shot": _site_type(
        "Shot",
        ("code", "text", "Shot Code", {"mandatory": True}),
        ("sg_sequence", "entity", "Sequence", {"valid_types": ["Sequence"]}),
        ("assets", "multi_entity", "Assets", {"valid_types": ["Asset", "Sequence"]}),
        ("sg_status_list", "status_list", "Status", {"valid_values": ["wtg", "ip", "fin"],
                                                      "default_value": "wtg"}),
        ("sg_cut_in", "number", "Cut In", {}),
    ),
    "Sequence": _site_type("Sequence", ("code", "text", "Sequence Name", {})),
    "Asset": _site_type("Asset", ("code", "text", "Asset Name", {}),
                        ("sg_asset_type", "list", "Type", {"valid_values": ["Character", "Prop"]})),
    "Note": _site_type("Note", ("content", "text", "Body", {}), ("subject", "text", "Subject", {})),
    "CustomEntity07": _site_type("CustomEntity07", ("sg_flag", "checkbox", "Flag", {})),
}
SITE_ENTITIES = {name: {"name": _leaf(label)} for name, label in
                 [("Shot", "Shot"), ("Sequence", "Sequence"), ("Asset", "Asset"), ("Note", "Note"),
                  ("CustomEntity07", "Gizmo")]}


@pytest.fixture(scope="module")
def dumped(tmp_path_factory):
    """A schema dumped from hand-written schema_read and schema_entity_read answers."""
    folder = tmp_path_factory.mktemp("dump")
    fields = write(folder / "fields.json", json.dumps(SITE_FIELDS))
    entities = write(folder / "entities.json", json.dumps(SITE_ENTITIES))
    out = folder / "site.yml"
    result = run("schema", "dump", "--from-json", str(fields), "--entities-json", str(entities), "-o", str(out),
                 cwd=folder)
    assert result.returncode == 0, result.stderr
    return load(out), result


def test_dump_from_json_holds_every_type_and_field(dumped):
    schema, _ = dumped
    assert {name: sorted(t.fields) for name, t in schema.types.items()} == \
        {name: sorted(fields) for name, fields in SITE_FIELDS.items()}


def test_dump_from_json_keeps_data_types(dumped):
    shot = dumped[0]["Shot"]
    assert {name: f.data_type for name, f in shot.fields.items()} == {
        "id": "number", "code": "text", "sg_sequence": "entity", "assets": "multi_entity",
        "sg_status_list": "status_list", "sg_cut_in": "number"}
    assert dumped[0]["CustomEntity07"].fields["sg_flag"].data_type == "checkbox"


def test_dump_from_json_keeps_link_targets_and_valid_values(dumped):
    schema, _ = dumped
    assert schema["Shot"].fields["sg_sequence"].entity_types == ["Sequence"]
    assert schema["Shot"].fields["assets"].entity_types == ["Asset", "Sequence"]
    assert schema["Shot"].fields["sg_status_list"].valid_values == ["wtg", "ip", "fin"]
    assert schema["Shot"].fields["sg_status_list"].default == "wtg"
    assert schema["Asset"].fields["sg_asset_type"].valid_values == ["Character", "Prop"]


def test_dump_from_json_keeps_field_labels_and_flags(dumped):
    shot = dumped[0]["Shot"]
    assert shot.fields["code"].label == "Shot Code"
    assert shot.fields["code"].mandatory is True
    assert shot.fields["id"].editable is False
    assert shot.fields["sg_cut_in"].editable is True


def test_dump_from_json_guesses_identifiers(dumped):
    assert {name: t.identifier for name, t in dumped[0].types.items()} == {
        "Asset": "code", "CustomEntity07": None, "Note": "subject", "Sequence": "code", "Shot": "code"}


def test_dump_takes_type_labels_from_the_entities_json(dumped):
    assert dumped[0]["CustomEntity07"].label == "Gizmo"
    assert dumped[0]["Shot"].label == "Shot"


def test_dump_prints_a_summary_on_stderr(dumped):
    total = sum(len(fields) for fields in SITE_FIELDS.values())
    assert dumped[1].stderr == f"5 entity types, {total} fields\n"


def test_dump_from_json_without_entities_has_no_type_labels(tmp_path):
    fields = write(tmp_path / "fields.json", json.dumps(SITE_FIELDS))
    result = run("schema", "dump", "--from-json", str(fields), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    schema = loads(result.stdout)
    assert [t.label for t in schema] == [None] * 5
    assert schema.header.startswith("Full site schema, made by `sgcache schema dump --from-json`")


def test_dump_from_malformed_json_is_one_error_line_exit_2(tmp_path):
    bad = write(tmp_path / "fields.json", '{"Shot": {"id": \n')
    result = run("schema", "dump", "--from-json", str(bad), "-o", str(tmp_path / "out.yml"), cwd=tmp_path)
    line = assert_one_error_line(result)
    assert line.startswith(f"sgcache: error: {bad}: not valid JSON (line 2)")
    assert not (tmp_path / "out.yml").exists()


def test_dump_from_json_that_is_not_an_object_is_one_error_line_exit_2(tmp_path):
    bad = write(tmp_path / "fields.json", "[1, 2]")
    result = run("schema", "dump", "--from-json", str(bad), cwd=tmp_path)
    assert assert_one_error_line(result) == f"sgcache: error: {bad}: expected a JSON object keyed by entity type"


def test_dump_from_json_with_a_field_without_data_type_names_it(tmp_path):
    broken = {"Shot": {"id": {"data_type": {"value": "number"}}, "code": {"name": {"value": "Code"}}}}
    bad = write(tmp_path / "fields.json", json.dumps(broken))
    result = run("schema", "dump", "--from-json", str(bad), cwd=tmp_path)
    line = assert_one_error_line(result)
    assert line == "sgcache: error: Shot: field 'code' has no data_type in the site's schema"


@pytest.mark.parametrize(("env", "missing"), [
    ({}, "site.base_url"),
    ({"SGCACHE_SITE_BASE_URL": "https://studio.example.com"}, "site.script_name"),
    ({"SGCACHE_SITE_BASE_URL": "https://studio.example.com", "SGCACHE_SITE_SCRIPT_NAME": "sgcache"},
     "site.api_key"),
])
def test_dump_from_the_site_without_site_settings_names_the_missing_one(tmp_path, env, missing):
    result = run("schema", "dump", cwd=tmp_path, env=env)
    line = assert_one_error_line(result)
    variable = "SGCACHE_" + missing.upper().replace(".", "_")
    assert line == (f"sgcache: error: the configuration: {missing} is required "
                    f"(set it in the file or in {variable})")


# --- schema migrate ---------------------------------------------------------------------------

SMALL_TABLES = {"_sgcache_fields", "_sgcache_meta", "_sgcache_types", "_sgcache_cursor", "_sgcache_applied_events",
                "_sgcache_dead_letters", "_sgcache_samples", "_sgcache_sessions", "_sgcache_other_sides",
                "_sgcache_slim", "_sgcache_slim_types", "_sgcache_trigger_cursors", "_sgcache_trigger_done",
                "_sgcache_trigger_dead", "asset",
                "project", "sequence", "shot", "shot_assets", "_history_asset", "_history_project",
                "_history_sequence", "_history_shot", "_history_links", "_history_unsure"}


@pytest.fixture
def small_schema_file(tmp_path):
    return write(tmp_path / "small.yml", SMALL_SCHEMA)


def migrate(tmp_path, schema_file, *extra):
    db = tmp_path / "c.sqlite"
    return db, run("--database", f"sqlite:///{db}", "--schema", str(schema_file), "schema", "migrate", *extra,
                   cwd=tmp_path)


def test_migrate_creates_the_tables(tmp_path, small_schema_file):
    db, result = migrate(tmp_path, small_schema_file)
    assert result.returncode == 0, result.stderr
    assert table_names(db) == SMALL_TABLES
    summary = result.stdout.splitlines()[-1]
    m = re.fullmatch(rf"sqlite:///{re.escape(str(db))}: made (\d+) changes for 4 entity types; "
                     r"(\d+) fields await a full import", summary)
    assert m, summary
    assert int(m[1]) > 0 and int(m[2]) > 0


def test_migrate_again_makes_no_change(tmp_path, small_schema_file):
    migrate(tmp_path, small_schema_file)
    db, result = migrate(tmp_path, small_schema_file)
    assert result.returncode == 0, result.stderr
    assert ": made 0 changes for 4 entity types;" in result.stdout.splitlines()[-1]
    assert table_names(db) == SMALL_TABLES


def test_migrate_dry_run_on_a_fresh_database_changes_nothing(tmp_path, small_schema_file):
    db, result = migrate(tmp_path, small_schema_file, "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "  create table shot" in lines
    assert "  create table shot_assets" in lines
    m = re.search(r": would make (\d+) changes for 4 entity types;", lines[-1])
    assert m and int(m[1]) == len(lines) - 1
    assert table_names(db) == set()


def test_migrate_with_a_bad_schema_file_is_one_error_line(tmp_path):
    bad = write(tmp_path / "bad.yml", "Shot:\n  fields:\n    code: text\n")
    db, result = migrate(tmp_path, bad)
    assert assert_one_error_line(result) == f"sgcache: error: {bad}: Shot has no 'id' field"
    assert not db.exists() or table_names(db) == set()


# --- the shipped schema files -----------------------------------------------------------------

DATA_TYPES = ["text", "entity", "number", "multi_entity", "date_time", "image", "checkbox", "tag_list",
              "status_list", "pivot_column", "list", "date", "url", "color", "entity_type", "duration",
              "float", "serializable", "uuid", "password", "percent"]
CORE_TYPES = ["Project", "HumanUser", "ApiUser", "Group", "Department", "Step", "Sequence", "Shot", "Asset",
              "Task", "Version", "PublishedFile", "PublishedFileType", "Note", "Reply", "Playlist", "TimeLog",
              "LocalStorage", "CustomEntity01"]


def test_demo_yml_is_demo_site_yml_filtered_by_basic_rules(tmp_path):
    out = tmp_path / "demo.yml"
    result = run("schema", "filter", "--rules", "schema/basic-rules.txt", "schema/demo-site.yml", "-o", str(out),
                 cwd=ROOT)
    assert result.returncode == 0, result.stderr
    made, shipped = load(out), load(DEMO)
    assert list(made.types) == list(shipped.types)
    assert made.types == shipped.types


def test_demo_site_yml_has_77_types_using_every_data_type():
    site = load(DEMO_SITE)
    assert len(site) == 77
    used = {f.data_type for t in site for f in t.fields.values()}
    assert set(DATA_TYPES) <= used


def test_demo_yml_holds_the_core_production_types():
    demo = load(DEMO)
    assert [name for name in CORE_TYPES if name not in demo] == []


def test_demo_yml_leaves_out_some_types_of_the_site():
    demo, site = load(DEMO), load(DEMO_SITE)
    assert set(demo.types) < set(site.types)
    assert {"EventLogEntry", "PageHit", "ShotShotConnection", "TankPublishedFile", "CustomEntity02"} <= \
        set(site.types) - set(demo.types)


def test_demo_yml_holds_no_pivot_column_or_password_fields():
    demo = load(DEMO)
    assert [f"{t.name}.{f.name}" for t in demo for f in t.fields.values()
            if f.data_type in ("pivot_column", "password")] == []
    assert "salted_password" not in demo["ApiUser"].fields


def test_a_sqlite_folder_that_cannot_be_made_is_one_error_line(tmp_path, small_schema_file):
    blocker = write(tmp_path / "not-a-folder", "a file where a folder should be")
    result = run("--database", f"sqlite:///{blocker}/cache.sqlite", "--schema", str(small_schema_file),
                 "schema", "migrate", cwd=tmp_path)
    line = assert_one_error_line(result, exit_code=1)
    assert "cannot create the folder" in line


def test_a_database_refusal_is_one_error_line(tmp_path, small_schema_file):
    db = tmp_path / "c.sqlite"
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE _sgcache_fields (nonsense INTEGER)"))
    engine.dispose()
    result = run("--database", f"sqlite:///{db}", "--schema", str(small_schema_file), "schema", "migrate",
                 cwd=tmp_path)
    line = assert_one_error_line(result, exit_code=1)
    assert line.startswith("sgcache: error: database: ")


def test_entities_json_without_from_json_is_a_usage_error(tmp_path):
    entities = write(tmp_path / "e.json", "{}")
    result = run("schema", "dump", "--entities-json", str(entities), cwd=tmp_path)
    assert result.returncode == 2
    assert "--entities-json goes with --from-json" in result.stderr
    assert "Traceback" not in result.stderr
