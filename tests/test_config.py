"""The settings: defaults, the YAML file, the environment and flags, in that order; validation."""

from __future__ import annotations

import importlib.util
import textwrap
import types
import typing
from pathlib import Path

import pytest

from sgcache.config import Config, Secret, iter_settings, load_config, setting_doc, setting_type_doc
from sgcache.errors import ConfigError

SECRET = "s3cr3t-4p1-k3y-0f-th3-sc1pt"


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path, monkeypatch):
    """Run in an empty folder, so the repository's own ./sgcache.yml is never picked up."""
    monkeypatch.chdir(tmp_path)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def config_error(*args, **kwargs) -> str:
    """The one-line message of the ConfigError that load_config raises; checks its exit code."""
    kwargs.setdefault("env", {})
    with pytest.raises(ConfigError) as info:
        load_config(*args, **kwargs)
    assert info.value.exit_code == 2
    message = str(info.value)
    assert "\n" not in message
    return message


# --- defaults ---------------------------------------------------------------------------------


def test_defaults_when_nothing_is_given():
    config = load_config(env={})
    assert config.source is None
    assert config.database.url == "sqlite:///var/sgcache.sqlite"
    assert config.schema.path == Path("schema/demo.yml")
    assert config.web.bind == "127.0.0.1:8010"
    assert config.web.workers == 2
    assert config.web.threads == 8
    assert config.watcher.poll_interval == 1.0
    assert config.scanner.interval == 300.0
    assert config.scanner.types == []
    assert config.scanner.projects == []
    assert config.log.level == "info"
    assert config.log.format == "text"


def test_site_has_no_default_address_script_or_key():
    site = load_config(env={}).site
    assert (site.base_url, site.script_name, site.api_key) == (None, None, None)
    assert site.timeout == 30.0


def test_default_lists_are_not_shared_between_configs():
    first = load_config(env={})
    first.scanner.types.append("Shot")
    assert load_config(env={}).scanner.types == []


def test_unrelated_environment_variables_are_ignored():
    config = load_config(env={"SGCACHE_TEST_DATABASE_URL": "postgresql://x/y", "HOME": "/nowhere",
                              "SGCACHE_SOMETHING": "1"})
    assert config == load_config(env={})


# --- precedence -------------------------------------------------------------------------------


def test_file_beats_default(tmp_path):
    path = write(tmp_path / "s.yml", "web:\n  workers: 5\n")
    assert load_config(path, env={}).web.workers == 5


def test_environment_beats_file(tmp_path):
    path = write(tmp_path / "s.yml", "web:\n  workers: 5\n")
    assert load_config(path, env={"SGCACHE_WEB_WORKERS": "6"}).web.workers == 6


def test_override_beats_environment(tmp_path):
    path = write(tmp_path / "s.yml", "web:\n  workers: 5\n")
    config = load_config(path, env={"SGCACHE_WEB_WORKERS": "6"}, overrides={"web.workers": "7"})
    assert config.web.workers == 7


def test_override_of_none_means_the_flag_was_not_given():
    config = load_config(env={"SGCACHE_WEB_WORKERS": "6"}, overrides={"web.workers": None})
    assert config.web.workers == 6


def test_override_may_be_an_already_typed_value():
    assert load_config(env={}, overrides={"web.workers": 9}).web.workers == 9


def test_each_key_takes_its_value_from_its_own_highest_layer(tmp_path):
    path = write(tmp_path / "s.yml", "web:\n  bind: 0.0.0.0:9000\n  workers: 5\n")
    config = load_config(path, env={"SGCACHE_WEB_WORKERS": "6"}, overrides={"web.threads": "3"})
    assert (config.web.bind, config.web.workers, config.web.threads) == ("0.0.0.0:9000", 6, 3)


def test_SGCACHE_CONFIG_selects_the_file(tmp_path):
    path = write(tmp_path / "elsewhere" / "s.yml", "web:\n  workers: 4\n")
    config = load_config(env={"SGCACHE_CONFIG": str(path)})
    assert config.web.workers == 4
    assert config.source == path


def test_explicit_path_beats_SGCACHE_CONFIG(tmp_path):
    chosen = write(tmp_path / "chosen.yml", "web:\n  workers: 4\n")
    other = write(tmp_path / "other.yml", "web:\n  workers: 3\n")
    config = load_config(chosen, env={"SGCACHE_CONFIG": str(other)})
    assert config.web.workers == 4
    assert config.source == chosen


def test_sgcache_yml_in_the_current_folder_is_used_when_no_file_is_named(tmp_path):
    write(tmp_path / "sgcache.yml", "web:\n  workers: 7\n")
    config = load_config(env={})
    assert config.web.workers == 7
    assert config.source == Path("sgcache.yml")


def test_SGCACHE_CONFIG_beats_sgcache_yml_in_the_current_folder(tmp_path):
    write(tmp_path / "sgcache.yml", "web:\n  workers: 7\n")
    path = write(tmp_path / "named.yml", "web:\n  workers: 3\n")
    assert load_config(env={"SGCACHE_CONFIG": str(path)}).web.workers == 3


def test_empty_SGCACHE_CONFIG_counts_as_not_set(tmp_path):
    write(tmp_path / "sgcache.yml", "web:\n  workers: 7\n")
    assert load_config(env={"SGCACHE_CONFIG": ""}).web.workers == 7


# --- types and parsing ------------------------------------------------------------------------


def _without_none(hint):
    """``X | None`` -> ``X``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        (hint,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    return hint


def test_settings_are_strings_integers_numbers_paths_secrets_lists_or_mappings_never_booleans():
    kinds = {_without_none(hint) for _, _, _, hint in iter_settings()}
    assert kinds == {str, int, float, Path, Secret, list[str], list[int], dict[str, str]}
    assert bool not in kinds


def test_environment_integer_is_parsed():
    config = load_config(env={"SGCACHE_WEB_WORKERS": " 4 ", "SGCACHE_WEB_THREADS": "16"})
    assert (config.web.workers, config.web.threads) == (4, 16)
    assert type(config.web.workers) is int


def test_environment_number_is_parsed_as_float():
    config = load_config(env={"SGCACHE_WATCHER_POLL_INTERVAL": "0.25", "SGCACHE_SCANNER_INTERVAL": "60"})
    assert config.watcher.poll_interval == 0.25
    assert config.scanner.interval == 60.0
    assert type(config.scanner.interval) is float


def test_file_integer_for_a_number_setting_becomes_float(tmp_path):
    path = write(tmp_path / "s.yml", "scanner:\n  interval: 60\n")
    interval = load_config(path, env={}).scanner.interval
    assert interval == 60.0 and type(interval) is float


def test_environment_list_is_comma_separated_and_stripped():
    config = load_config(env={"SGCACHE_SCANNER_TYPES": " Shot, Asset,,Task "})
    assert config.scanner.types == ["Shot", "Asset", "Task"]


def test_environment_list_of_project_ids_holds_integers():
    assert load_config(env={"SGCACHE_SCANNER_PROJECTS": "1, 22,333"}).scanner.projects == [1, 22, 333]


def test_empty_environment_list_is_an_empty_list():
    assert load_config(env={"SGCACHE_SCANNER_TYPES": ""}).scanner.types == []


def test_file_lists_are_yaml_lists(tmp_path):
    path = write(tmp_path / "s.yml", "scanner:\n  types: [Shot, Asset]\n  projects: [1, 2]\n")
    config = load_config(path, env={})
    assert config.scanner.types == ["Shot", "Asset"]
    assert config.scanner.projects == [1, 2]


def test_environment_api_key_becomes_a_secret():
    key = load_config(env={"SGCACHE_SITE_API_KEY": SECRET}).site.api_key
    assert isinstance(key, Secret)
    assert key.reveal() == SECRET


def test_file_api_key_becomes_a_secret(tmp_path):
    path = write(tmp_path / "s.yml", f"site:\n  api_key: {SECRET}\n")
    key = load_config(path, env={}).site.api_key
    assert isinstance(key, Secret)
    assert key == Secret(SECRET)


def test_environment_strings_are_taken_as_given():
    config = load_config(env={"SGCACHE_SITE_BASE_URL": "https://studio.example.com",
                              "SGCACHE_SITE_SCRIPT_NAME": "sgcache", "SGCACHE_LOG_LEVEL": "debug"})
    assert config.site.base_url == "https://studio.example.com"
    assert config.site.script_name == "sgcache"
    assert config.log.level == "debug"


# --- validation: the file ---------------------------------------------------------------------

# (YAML text, what the message says after "<file>: ")
BAD_FILES = [
    pytest.param("nosuch:\n  key: 1\n", "unknown section 'nosuch'", id="unknown-section"),
    pytest.param("web:\n  port: 80\n", "unknown key web.port (known: bind, workers, threads, max_body)",
                 id="unknown-key"),
    pytest.param("web: 8010\n", "web: expected a mapping of settings", id="section-scalar"),
    pytest.param("web: [a, b]\n", "web: expected a mapping of settings", id="section-list"),
    pytest.param("web:\n  workers: many\n", "web.workers: expected an integer, got 'many'", id="int-str"),
    pytest.param("web:\n  workers: 2.5\n", "web.workers: expected an integer, got 2.5", id="int-float"),
    pytest.param("web:\n  workers: true\n", "web.workers: expected an integer, got True", id="int-bool"),
    pytest.param("web:\n  workers: null\n", "web.workers: a value is required", id="int-null"),
    pytest.param("watcher:\n  poll_interval: soon\n",
                 "watcher.poll_interval: expected a number, got 'soon'", id="float-str"),
    pytest.param("site:\n  timeout: yes\n", "site.timeout: expected a number, got True", id="float-bool"),
    pytest.param("web:\n  bind: 8010\n", "web.bind: expected a string, got 8010", id="str-int"),
    pytest.param("site:\n  script_name: [a, b]\n", "site.script_name: expected a string, got ['a', 'b']",
                 id="str-list"),
    pytest.param("schema:\n  path: {a: 1}\n", "schema.path: expected a string, got {'a': 1}", id="path-map"),
    pytest.param("scanner:\n  types: 5\n", "scanner.types: expected a list, got 5", id="list-int"),
    pytest.param("scanner:\n  projects: [1, two]\n", "scanner.projects: expected an integer, got 'two'",
                 id="list-item-int"),
    pytest.param("scanner:\n  types: [Shot, 3]\n", "scanner.types: expected a string, got 3",
                 id="list-item-str"),
    pytest.param("log:\n  level: verbose\n",
                 "log.level: expected one of debug, info, warning, error, got 'verbose'", id="level-choice"),
    pytest.param("log:\n  format: xml\n", "log.format: expected one of text, json, got 'xml'",
                 id="format-choice"),
    pytest.param("site:\n  base_url: ftp://example.com\n",
                 "site.base_url: expected an http:// or https:// URL, got 'ftp://example.com'", id="url-ftp"),
    pytest.param("site:\n  base_url: studio.example.com\n",
                 "site.base_url: expected an http:// or https:// URL, got 'studio.example.com'",
                 id="url-no-scheme"),
    pytest.param("site:\n  timeout: 0\n", "site.timeout: expected a number greater than 0, got 0.0",
                 id="timeout-0"),
    pytest.param("web:\n  workers: 0\n", "web.workers: expected an integer of at least 1, got 0",
                 id="workers-0"),
    pytest.param("web:\n  threads: -1\n", "web.threads: expected an integer of at least 1, got -1",
                 id="threads-negative"),
    pytest.param("web:\n  bind: 127.0.0.1\n", "web.bind: expected HOST:PORT (or unix:PATH), got '127.0.0.1'",
                 id="bind-no-port"),
    pytest.param("database:\n  url: mysql://db/cache\n",
                 "database.url: expected a sqlite:/// or postgresql:// URL, got 'mysql://db/cache'",
                 id="database-scheme"),
    pytest.param("watcher:\n  poll_interval: 0\n",
                 "watcher.poll_interval: expected a number greater than 0, got 0.0", id="poll-0"),
    pytest.param("scanner:\n  interval: -1\n", "scanner.interval: expected a number of at least 0, got -1.0",
                 id="scan-negative"),
    pytest.param("scanner:\n  concurrency: 500\n",
                 "scanner.concurrency: expected an integer from 1 to 32, got 500", id="concurrency-too-many"),
    pytest.param("history:\n  keep: 90 days\n",
                 "history.keep: expected a duration such as 90d, 12h, 30m or 3600s (or 0), got '90 days'",
                 id="history-keep"),
    pytest.param("scanner:\n  concurrency: 0\n",
                 "scanner.concurrency: expected an integer from 1 to 32, got 0", id="concurrency-0"),
    pytest.param("- web\n- log\n", "expected a mapping of sections", id="top-level-list"),
    pytest.param("just text\n", "expected a mapping of sections", id="top-level-scalar"),
]


@pytest.mark.parametrize(("text", "problem"), BAD_FILES)
def test_invalid_file_is_one_config_error_naming_the_file_and_key(tmp_path, text, problem):
    path = write(tmp_path / "settings.yml", text)
    message = config_error(path)
    assert message.startswith(f"{path}: ")
    assert problem in message


def test_unknown_section_message_lists_the_known_sections(tmp_path):
    path = write(tmp_path / "s.yml", "server:\n  bind: x\n")
    assert config_error(path) == (f"{path}: unknown section 'server' (known: site, database, schema, web, auth, "
                                  "watcher, scanner, reads, history, triggers, admin, log)")


def test_invalid_yaml_names_the_line(tmp_path):
    path = write(tmp_path / "s.yml", "web:\n  workers: 2\n bind: x\n")
    message = config_error(path)
    assert message.startswith(f"{path}: not valid YAML (line 3): ")


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "missing.yml"
    assert config_error(path) == f"{path}: configuration file not found"


def test_missing_file_from_SGCACHE_CONFIG_is_named(tmp_path):
    path = tmp_path / "missing.yml"
    assert config_error(env={"SGCACHE_CONFIG": str(path)}) == f"{path}: configuration file not found"


@pytest.mark.parametrize("text", ["", "# only a comment\n", "web:\n", "web:\nlog:\n"])
def test_empty_file_or_empty_sections_give_the_defaults(tmp_path, text):
    path = write(tmp_path / "s.yml", text)
    config = load_config(path, env={})
    assert config.source == path
    assert dataclass_values(config) == dataclass_values(load_config(env={}))


def dataclass_values(config: Config) -> tuple:
    return (config.site, config.database, config.schema, config.web, config.watcher, config.scanner,
            config.log)


def test_a_valid_file_sets_every_kind_of_setting(tmp_path):
    path = write(tmp_path / "s.yml", """\
        site:
          base_url: https://studio.example.com
          script_name: sgcache
          timeout: 12.5
        database:
          url: postgresql://sgcache@db/cache
        web:
          bind: unix:/run/sgcache.sock
          workers: 3
        log:
          level: warning
          format: json
        """)
    config = load_config(path, env={})
    assert config.site.base_url == "https://studio.example.com"
    assert config.site.script_name == "sgcache"
    assert config.site.timeout == 12.5
    assert config.database.url == "postgresql://sgcache@db/cache"
    assert config.web.bind == "unix:/run/sgcache.sock"
    assert config.web.workers == 3
    assert (config.log.level, config.log.format) == ("warning", "json")


@pytest.mark.parametrize("bind", ["0.0.0.0:8010", "localhost:80", "[::1]:8010", "unix:/tmp/sg.sock"])
def test_bind_accepts_host_port_ipv6_and_unix_sockets(bind):
    assert load_config(env={"SGCACHE_WEB_BIND": bind}).web.bind == bind


@pytest.mark.parametrize("url", ["sqlite:////abs/cache.sqlite", "sqlite+pysqlite:////abs/c.sqlite",
                                 "postgresql://u@h/db", "postgresql+psycopg2://u:p@h:5432/db"])
def test_database_url_accepts_sqlite_and_postgresql(url):
    assert load_config(env={"SGCACHE_DATABASE_URL": url}).database.url == url


# --- validation: the environment and the command line -----------------------------------------


def test_unknown_site_environment_variable_is_an_error():
    message = config_error(env={"SGCACHE_SITE_APIKEY": SECRET})
    assert message.startswith("environment SGCACHE_SITE_APIKEY: unknown setting (known: ")
    assert "SGCACHE_SITE_API_KEY" in message
    assert SECRET not in message


def test_unknown_environment_variable_of_any_section_is_an_error():
    message = config_error(env={"SGCACHE_WEB_PORT": "80"})
    assert message == ("environment SGCACHE_WEB_PORT: unknown setting (known: SGCACHE_WEB_BIND, "
                       "SGCACHE_WEB_WORKERS, SGCACHE_WEB_THREADS, SGCACHE_WEB_MAX_BODY)")


@pytest.mark.parametrize(("name", "value", "problem"), [
    ("SGCACHE_WEB_WORKERS", "two", "web.workers: expected an integer, got 'two'"),
    ("SGCACHE_WEB_WORKERS", "4.0", "web.workers: expected an integer, got '4.0'"),
    ("SGCACHE_WEB_WORKERS", "true", "web.workers: expected an integer, got 'true'"),
    ("SGCACHE_WEB_WORKERS", "0", "web.workers: expected an integer of at least 1, got 0"),
    ("SGCACHE_SITE_TIMEOUT", "fast", "site.timeout: expected a number, got 'fast'"),
    ("SGCACHE_SCANNER_PROJECTS", "1,x", "scanner.projects: expected an integer, got 'x'"),
    ("SGCACHE_LOG_LEVEL", "loud", "log.level: expected one of debug, info, warning, error, got 'loud'"),
    ("SGCACHE_SITE_BASE_URL", "", "site.base_url: expected an http:// or https:// URL, got ''"),
])
def test_wrong_environment_value_names_the_variable_and_key(name, value, problem):
    assert config_error(env={name: value}) == f"environment {name}: {problem}"


def test_unknown_override_key_is_a_command_line_error():
    assert config_error(overrides={"web.port": "80"}) == "command line: unknown setting 'web.port'"


def test_override_key_without_section_is_a_command_line_error():
    assert config_error(overrides={"workers": "4"}) == "command line: unknown setting 'workers'"


def test_wrong_override_value_names_the_command_line_and_key():
    assert config_error(overrides={"web.workers": "x"}) == \
        "command line (web.workers): web.workers: expected an integer, got 'x'"


# --- required values --------------------------------------------------------------------------


def test_require_names_the_key_the_file_and_the_environment_variable(tmp_path):
    path = write(tmp_path / "s.yml", "site:\n  base_url: https://studio.example.com\n")
    config = load_config(path, env={})
    with pytest.raises(ConfigError) as info:
        config.require("site.base_url", "site.script_name")
    assert str(info.value) == (f"{path}: site.script_name is required "
                               "(set it in the file or in SGCACHE_SITE_SCRIPT_NAME)")
    assert info.value.exit_code == 2


def test_require_without_a_file_says_the_configuration():
    message = config_error(require=["site.base_url"])
    assert message == ("the configuration: site.base_url is required "
                       "(set it in the file or in SGCACHE_SITE_BASE_URL)")


def test_load_config_require_names_the_first_missing_key(tmp_path):
    path = write(tmp_path / "s.yml", "site:\n  base_url: https://studio.example.com\n")
    message = config_error(path, env={"SGCACHE_SITE_SCRIPT_NAME": "sgcache"},
                           require=["site.base_url", "site.script_name", "site.api_key"])
    assert message == f"{path}: site.api_key is required (set it in the file or in SGCACHE_SITE_API_KEY)"


def test_require_passes_when_every_key_has_a_value():
    env = {"SGCACHE_SITE_BASE_URL": "https://studio.example.com", "SGCACHE_SITE_SCRIPT_NAME": "sgcache",
           "SGCACHE_SITE_API_KEY": SECRET}
    config = load_config(env=env, require=["site.base_url", "site.script_name", "site.api_key"])
    assert config.site.script_name == "sgcache"


def test_choices_ignore_case():
    assert load_config(env={"SGCACHE_LOG_LEVEL": "INFO"}).log.level == "info"


def test_empty_string_counts_as_missing_for_require(tmp_path):
    path = write(tmp_path / "s.yml", "site:\n  script_name: ''\n")
    assert "site.script_name is required" in config_error(path, require=["site.script_name"])


def test_empty_api_key_counts_as_missing_for_require():
    message = config_error(env={"SGCACHE_SITE_API_KEY": ""}, require=["site.api_key"])
    assert "site.api_key is required" in message


# --- the API key never shows ------------------------------------------------------------------


def test_secret_repr_and_str_hide_the_value():
    secret = Secret(SECRET)
    assert repr(secret) == "Secret('********')"
    assert str(secret) == "Secret('********')"
    assert f"{secret}" == "Secret('********')"
    assert secret.reveal() == SECRET


def test_secrets_compare_by_value():
    assert Secret(SECRET) == Secret(SECRET)
    assert Secret(SECRET) != Secret("other")
    assert Secret(SECRET) != SECRET
    assert hash(Secret(SECRET)) == hash(Secret(SECRET))


def test_config_repr_and_str_hide_the_api_key(tmp_path):
    path = write(tmp_path / "s.yml", f"site:\n  api_key: {SECRET}\n")
    config = load_config(path, env={})
    for text in (repr(config), str(config), repr(config.site), str(config.site)):
        assert SECRET not in text
        assert "api_key=Secret('********')" in text


@pytest.mark.parametrize(("text", "problem"), [
    pytest.param(f"site:\n  api_key: [{SECRET}]\n", "site.api_key: expected a string", id="list"),
    pytest.param(f"site:\n  api_key: {{key: {SECRET}}}\n", "site.api_key: expected a string", id="mapping"),
    pytest.param("site:\n  api_key: 9182736450\n", "site.api_key: expected a string", id="number"),
    pytest.param("site:\n  api_key: 3.1415926\n", "site.api_key: expected a string", id="float"),
    pytest.param(f"site: {SECRET}\n", "site: expected a mapping of settings", id="site-scalar"),
    pytest.param(f"site:\n  apikey: {SECRET}\n", "unknown key site.apikey", id="misspelled-key"),
])
def test_bad_api_key_value_is_reported_without_showing_it(tmp_path, text, problem):
    path = write(tmp_path / "s.yml", text)
    message = config_error(path)
    assert problem in message
    for shown in (SECRET, "9182736450", "3.1415926"):
        assert shown not in message


def test_bad_api_key_override_is_reported_without_showing_it():
    message = config_error(overrides={"site.api_key": 918273645})
    assert message == "command line (site.api_key): site.api_key: expected a string"


def test_rejected_database_url_does_not_show_its_password():
    message = config_error(overrides={"database.url": "postgres://sgcache:hunter2pw@db/cache"})
    assert "database.url" in message
    assert "hunter2pw" not in message


# --- relative paths ---------------------------------------------------------------------------


def test_relative_schema_path_in_a_file_is_relative_to_the_file(tmp_path):
    path = write(tmp_path / "conf" / "s.yml", "schema:\n  path: schemas/site.yml\n")
    assert load_config(path, env={}).schema.path == tmp_path / "conf" / "schemas" / "site.yml"


def test_relative_schema_path_in_a_relatively_named_file_is_relative_to_the_file(tmp_path):
    write(tmp_path / "conf" / "s.yml", "schema:\n  path: site.yml\n")
    config = load_config(env={"SGCACHE_CONFIG": "conf/s.yml"})
    assert config.schema.path == tmp_path / "conf" / "site.yml"


def test_absolute_schema_path_in_a_file_is_unchanged(tmp_path):
    path = write(tmp_path / "conf" / "s.yml", "schema:\n  path: /srv/schemas/site.yml\n")
    assert load_config(path, env={}).schema.path == Path("/srv/schemas/site.yml")


def test_home_schema_path_in_a_file_is_expanded_not_rebased(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = write(tmp_path / "conf" / "s.yml", "schema:\n  path: ~/site.yml\n")
    assert load_config(path, env={}).schema.path == tmp_path / "home" / "site.yml"


@pytest.mark.parametrize(("url", "expected"), [
    ("sqlite:///var/cache.sqlite", "sqlite:///{conf}/var/cache.sqlite"),
    ("sqlite:///./cache.sqlite", "sqlite:///{conf}/cache.sqlite"),
    ("sqlite:///../cache.sqlite", "sqlite:///{root}/cache.sqlite"),
    ("sqlite+pysqlite:///cache.sqlite", "sqlite+pysqlite:///{conf}/cache.sqlite"),
])
def test_relative_sqlite_url_in_a_file_is_relative_to_the_file(tmp_path, url, expected):
    path = write(tmp_path / "conf" / "s.yml", f"database:\n  url: {url}\n")
    conf = (tmp_path / "conf").resolve()
    assert load_config(path, env={}).database.url == expected.format(conf=conf, root=conf.parent)


@pytest.mark.parametrize("url", ["sqlite:////srv/cache.sqlite", "sqlite:///:memory:", "sqlite://",
                                 "postgresql://sgcache@db/cache", "postgresql+psycopg2://u@h/var/db"])
def test_absolute_sqlite_memory_and_postgresql_urls_in_a_file_are_unchanged(tmp_path, url):
    path = write(tmp_path / "conf" / "s.yml", f"database:\n  url: '{url}'\n")
    assert load_config(path, env={}).database.url == url


def test_environment_paths_are_not_rebased(tmp_path):
    path = write(tmp_path / "conf" / "s.yml", "web:\n  workers: 3\n")
    config = load_config(path, env={"SGCACHE_SCHEMA_PATH": "schemas/site.yml",
                                    "SGCACHE_DATABASE_URL": "sqlite:///var/cache.sqlite"})
    assert config.schema.path == Path("schemas/site.yml")
    assert config.database.url == "sqlite:///var/cache.sqlite"


def test_command_line_paths_are_not_rebased(tmp_path):
    path = write(tmp_path / "conf" / "s.yml", "schema:\n  path: in-file.yml\n")
    config = load_config(path, env={}, overrides={"schema.path": "flag.yml",
                                                   "database.url": "sqlite:///flag.sqlite"})
    assert config.schema.path == Path("flag.yml")
    assert config.database.url == "sqlite:///flag.sqlite"


# --- the settings reference (docs/configuration.rst, made from the settings) -------------------

DOCS = Path(__file__).resolve().parent.parent / "docs"


def reference_table_lines() -> list[str]:
    """What the page's ``.. sgcache-settings::`` directive renders, from the docs extension itself."""
    spec = importlib.util.spec_from_file_location("sgcache_settings", DOCS / "_ext" / "sgcache_settings.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # Sphinx is imported only by its setup(), so no docs extras are needed
    return module.table_lines()


def reference_row(key: str) -> list[str]:
    """The generated row of ``section.key``: its five cells, as written in the list-table."""
    lines = reference_table_lines()
    start = lines.index(f"   * - ``{key}``")
    row = lines[start:start + 5]
    assert all(line.startswith("     - ") for line in row[1:])
    assert start + 5 == len(lines) or lines[start + 5].startswith("   * - ")
    return [line[7:] for line in row]


def test_configuration_page_uses_the_generated_settings_reference():
    text = (DOCS / "configuration.rst").read_text(encoding="utf-8")
    assert "\n.. sgcache-settings::\n" in text
    assert ".. list-table::" not in text


def test_settings_reference_has_a_header_and_one_row_per_setting_in_declaration_order():
    lines = reference_table_lines()
    assert lines[:9] == [".. list-table::", "   :header-rows: 1", "   :widths: 16 14 16 22 32", "",
                         "   * - Key", "     - Type", "     - Default", "     - Environment variable",
                         "     - Description"]
    keys = [line[len("   * - "):] for line in lines[9:] if line.startswith("   * - ")]
    assert keys == [f"``{section}.{key}``" for section, key, _, _ in iter_settings()]
    assert len(lines) == 9 + 5 * len(keys)


def test_every_setting_has_a_description_and_a_type_description():
    undocumented = [f"{section}.{key}" for section, key, f, hint in iter_settings()
                    if not setting_doc(f).strip() or not setting_type_doc(f, hint).strip()]
    assert undocumented == []


@pytest.mark.parametrize(("key", "cells"), [
    ("site.timeout", ["number, greater than 0", "``30.0``", "``SGCACHE_SITE_TIMEOUT``",
                      "Seconds to wait for the site's answer before giving up on a request. A write that times "
                      'out is reported to the caller as "may or may not have been applied"; it is never sent '
                      "again."]),
    ("site.api_key", ["secret text", "None", "``SGCACHE_SITE_API_KEY``",
                      "That script's key. Prefer the environment variable, to keep the key out of files. "
                      "Never printed (see `The API key`_)."]),
    ("site.connect_timeout", ["number, greater than 0", "``5.0``", "``SGCACHE_SITE_CONNECT_TIMEOUT``",
                              "Seconds to wait for a connection to the site."]),
    ("database.url", ["``postgresql://`` or ``sqlite:///`` URL", "``sqlite:///var/sgcache.sqlite``",
                      "``SGCACHE_DATABASE_URL``",
                      "The cache database (see `Database URLs`_). A relative SQLite path in the file is "
                      "relative to the file's folder."]),
    ("web.max_body", ["integer, at least 1", "``8388608`` (8 MiB)", "``SGCACHE_WEB_MAX_BODY``",
                      "Largest JSON-RPC request body accepted, in bytes; a larger one gets a fault naming this "
                      "setting and its value. Decoding a body costs many times its size in memory, so keep it "
                      "near what your largest batch needs. File uploads stream through and are not limited."]),
    ("scanner.projects", ["list of integers", "empty list", "``SGCACHE_SCANNER_PROJECTS``",
                          "Project ids to import; empty means every project."]),
    ("admin.allow", ["list of networks (``10.0.0.0/8``, ``127.0.0.1``)", "``127.0.0.1/32, ::1/128``",
                     "``SGCACHE_ADMIN_ALLOW``",
                     "Who may open the status page, ``/_sgcache/status`` and ``/_sgcache/metrics``: callers "
                     "whose address is in one of these networks; by default this host only. Empty: nobody; "
                     "``[0.0.0.0/0, \"::/0\"]``: anyone. ``/_sgcache/health`` is always open, for load balancers. "
                     "Behind nginx the address is nginx's own: restrict there too (see :doc:`operations`)."]),
    ("log.level", ["one of ``debug``, ``info``, ``warning``, ``error`` (any case)", "``info``",
                   "``SGCACHE_LOG_LEVEL``", "How much is logged. ``-v`` and ``-q`` override it for one run."]),
    ("log.format", ["``text`` or ``json`` (any case)", "``text``", "``SGCACHE_LOG_FORMAT``",
                    "``text``: key=value lines; ``json``: one JSON object a line."]),
])
def test_settings_reference_row_gives_type_default_environment_variable_and_description(key, cells):
    assert reference_row(key) == [f"``{key}``", *cells]
