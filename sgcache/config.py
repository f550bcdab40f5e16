"""The settings: loaded once from defaults, a YAML file, the environment and flags; validated; typed.

Precedence, lowest first: built-in defaults < the YAML file (``--config PATH`` or
``SGCACHE_CONFIG``, else ``./sgcache.yml`` when it exists) < environment variables
``SGCACHE_<SECTION>_<KEY>`` < command-line flags. Every problem is one
:class:`~sgcache.errors.ConfigError` line naming the key and where the value came from.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sgcache.errors import ConfigError

ENV_PREFIX = "SGCACHE_"
DEFAULT_CONFIG_NAME = "sgcache.yml"


class Secret:
    """A string that never shows itself in reprs, logs or error messages."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _setting(default: Any, help: str, *, doc: str | None = None, default_note: str | None = None,
             choices: tuple | None = None, check=None, path: bool = False):
    """Declare one setting: its default, its documentation and how to validate it.

    ``help`` is one line; ``doc`` is the settings reference's fuller text (reStructuredText), when
    there is more to say than ``help``; ``default_note`` follows the default there, e.g. "64 MiB".
    """
    metadata = {"help": help, "doc": doc, "default_note": default_note, "choices": choices, "check": check,
                "path": path}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def _described(text: str):
    """Name what a check accepts, as the settings reference's type column shows it (reStructuredText)."""
    def mark(check):
        check.describe = text
        return check
    return mark


@_described("URL")
def _url(value: str) -> str | None:
    if not re.match(r"^https?://[^/\s]+", value):
        return "expected an http:// or https:// URL"
    return None


@_described("number, greater than 0")
def _positive(value: float) -> str | None:
    return None if value > 0 else "expected a number greater than 0"


@_described("integer, at least 1")
def _at_least_one(value: int) -> str | None:
    return None if value >= 1 else "expected an integer of at least 1"


@_described("number, at least 0")
def _not_negative(value: float) -> str | None:
    return None if value >= 0 else "expected a number of at least 0"


@_described("``HOST:PORT`` or ``unix:PATH``")
def check_bind(value: str) -> str | None:
    """Why ``value`` is not a gunicorn bind address, or None when it is one."""
    if value.startswith("unix:") or re.match(r"^(\[[0-9a-fA-F:]+\]|[^:\s]+):\d{1,5}$", value):
        return None
    return "expected HOST:PORT (or unix:PATH)"


@_described("IANA time zone name")
def _timezone(value: str) -> str | None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return "expected an IANA time zone name such as UTC or America/Los_Angeles"
    return None


@_described("``postgresql://`` or ``sqlite:///`` URL")
def _database_url(value: str) -> str | None:
    if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", value):
        return "expected a sqlite:/// or postgresql:// URL"
    return None


@dataclass(frozen=True)
class SiteConfig:
    """The upstream Shotgun site."""

    base_url: str | None = _setting(None, "URL of the Shotgun site, e.g. https://studio.shotgrid.autodesk.com",
                                    doc="URL of the Shotgun site, e.g. ``https://studio.shotgrid.autodesk.com``. "
                                        "Must start with ``http://`` or ``https://``.",
                                    check=_url)
    script_name: str | None = _setting(None, "Script (ApiUser) name sgcache uses for its own reads",
                                       doc="Script (ApiUser) name sgcache uses for its own requests to the site.")
    api_key: Secret | None = _setting(None, "Script key; prefer SGCACHE_SITE_API_KEY to keep it out of files",
                                      doc="That script's key. Prefer the environment variable, to keep the key "
                                          "out of files. Never printed (see `The API key`_).")
    timeout: float = _setting(30.0, "Seconds to wait for the site's answer before giving up on a request",
                              doc="Seconds to wait for the site's answer before giving up on a request. A write "
                                  "that times out is reported to the caller as \"may or may not have been "
                                  "applied\"; it is never sent again.",
                              check=_positive)
    connect_timeout: float = _setting(5.0, "Seconds to wait for a connection to the site", check=_positive)
    pool_size: int = _setting(32, "Connections the proxy keeps open to the site, per process",
                              doc="Connections to the site each proxy process keeps open and reuses (keep-alive).",
                              check=_at_least_one)
    max_concurrent: int = _setting(0, "Requests one proxy process may have waiting on the site at once (0: "
                                   "web.threads less a quarter, at least 2 less)",
                                   doc="Requests one proxy process may have waiting on the site at once, so that "
                                       "a stalled site never takes every thread: cached reads keep a few. 0 (the "
                                       "default) means ``web.threads`` less a quarter of them, and at least 2 "
                                       "less (6 of 8). A request past the cap waits up to ``site.busy_wait`` "
                                       "seconds for a turn (while the threads left over allow it, one thread "
                                       "always kept for cached reads), else gets HTTP 503 at once, as from a "
                                       "busy site (``shotgun_api3`` reports it as the site being too busy).",
                                   check=_not_negative)
    busy_wait: float = _setting(1.0, "Seconds a request waits for a turn at the site when site.max_concurrent "
                                "are already waiting, before HTTP 503",
                                check=_not_negative)
    info_ttl: float = _setting(30.0, "Seconds the proxy reuses the site's answer to info",
                               doc="Seconds the proxy reuses the site's answer to ``info``. While the site is "
                                   "down the last answer is served, however old.",
                               check=_not_negative)
    breaker_failures: int = _setting(5, "Failures in a row (no connection, timeout, 502/503/504) that open "
                                     "the circuit breaker",
                                     doc="Failures in a row (no connection, timeout, HTTP 502/503/504) that open "
                                         "the circuit breaker (see :doc:`proxy`).",
                                     check=_at_least_one)
    timezone: str = _setting("UTC", "The site's time zone (Site Preferences): relative date filters such as "
                             "in_last and in_calendar_day count days in it",
                             doc="The site's time zone (its Site Preferences). Relative date filters answered "
                                 "from the cache (``in_last``, ``in_next``, ``in_calendar_day`` ...) count days "
                                 "and weeks in it; set it to the site's, or those answers would differ from the "
                                 "site's.",
                             check=_timezone)
    breaker_cooldown: float = _setting(10.0, "Seconds the open breaker answers at once, without calling "
                                       "the site, before it lets one request try again",
                                       doc="Seconds an open breaker answers at once, without calling the site, "
                                           "before it lets one request through to try again.",
                                       check=_positive)


@dataclass(frozen=True)
class DatabaseConfig:
    """The cache database."""

    url: str = _setting("sqlite:///var/sgcache.sqlite",
                        "SQLAlchemy URL: postgresql://user@host/db in production, sqlite:///PATH embedded",
                        doc="The cache database (see `Database URLs`_). A relative SQLite path in the file is "
                            "relative to the file's folder.",
                        check=_database_url)
    read_url: str | None = _setting(None, "Optional database the proxy answers cached reads from (a streaming "
                                    "replica of database.url); writes, read-backs and sync use database.url",
                                    doc="A second database the proxy answers cached reads from: a streaming "
                                        "replica of ``database.url``. Writes, the read-back after a client's "
                                        "write and the sync processes use ``database.url``. Replica lag adds to "
                                        "staleness (see :doc:`operations`).",
                                    check=_database_url)
    statement_timeout: float = _setting(5.0, "Seconds a PostgreSQL statement of the proxy may run before it is "
                                        "cancelled (0: no limit)",
                                        doc="Seconds one statement of ``sgcache web`` may run on PostgreSQL before "
                                            "the database cancels it; that request then passes through to the "
                                            "site (reason ``query_error``) and the cache stays on for everyone "
                                            "else. 0: no limit.",
                                        check=_not_negative)


@dataclass(frozen=True)
class SchemaConfig:
    """Which entity types and fields the cache holds."""

    path: Path = _setting(Path("schema/demo.yml"), "Schema YAML file (made by `sgcache schema dump` and "
                          "`sgcache schema filter`)",
                          doc="The schema file: which entity types and fields the cache holds. Made with "
                              "``sgcache schema dump`` and ``sgcache schema filter`` (see :doc:`schema`). "
                              "Relative to the file's folder when written in the file.",
                          path=True)


@dataclass(frozen=True)
class WebConfig:
    """The proxy's web server."""

    bind: str = _setting("127.0.0.1:8010", "HOST:PORT the proxy listens on",
                         doc="Address ``sgcache web`` listens on. An IPv6 host goes in brackets: "
                             "``[::1]:8010``.",
                         check=check_bind)
    workers: int = _setting(2, "gunicorn worker processes", doc="gunicorn worker processes of the proxy.",
                            check=_at_least_one)
    threads: int = _setting(8, "threads per worker (slow passthroughs do not block others)",
                            doc="Threads per worker, so that slow passthroughs do not block other requests.",
                            check=_at_least_one)
    max_body: int = _setting(8 * 1024 * 1024, "Largest JSON-RPC request body accepted, in bytes (file "
                             "uploads stream through and are not limited)",
                             doc="Largest JSON-RPC request body accepted, in bytes; a larger one gets a fault "
                                 "naming this setting and its value. Decoding a body costs many times its size "
                                 "in memory, so keep it near what your largest batch needs. File uploads stream "
                                 "through and are not limited.",
                             default_note="8 MiB", check=_at_least_one)


#: What a permission group may get from the cache (auth.groups).
GROUP_MODES = ("all", "visible_projects", "passthrough")


@_described("mapping of group codes to ``all``, ``visible_projects`` or ``passthrough``")
def _group_modes(value: dict[str, str]) -> str | None:
    for code, mode in value.items():
        if mode not in GROUP_MODES:
            return f"each group's mode must be all, visible_projects or passthrough (see {code!r})"
    return None


@_described("number from 0 to 1")
def _share(value: float) -> str | None:
    return None if 0 <= value <= 1 else "expected a number from 0 to 1"


@dataclass(frozen=True)
class AuthConfig:
    """How the proxy checks callers before it answers from the cache."""

    verify_ttl: float = _setting(60.0, "Seconds a caller's credentials, once accepted by the site, are "
                                 "trusted without asking again",
                                 doc="Seconds a caller's credentials, once the site accepted them, are trusted "
                                     "for cached answers without asking the site again (see :doc:`proxy`).",
                                 check=_not_negative)
    failure_ttl: float = _setting(10.0, "Seconds a rejected set of credentials is answered with the site's "
                                  "fault without asking again",
                                  doc="Seconds credentials the site rejected are answered with the site's own "
                                      "fault without asking it again.",
                                  check=_not_negative)
    cached_scripts: list[str] = _setting([], "Script (ApiUser) names that may get answers from the cache, on top of "
                                         "auth.groups (empty: no further limit)",
                                         doc="Script (ApiUser) names that may get answers from the cache; every "
                                             "other caller, people and ``sudo_as_login`` included, passes through "
                                             "to the site. Empty: no limit beyond ``auth.groups``.")
    groups: dict[str, str] = _setting({}, "Permission group code -> all, visible_projects or passthrough: who gets "
                                      "answers from the cache (deny by default)",
                                      doc="What each permission group (``PermissionRuleSet`` code, as in "
                                          "``HumanUser.permission_rule_set``) gets from the cache: ``all`` (every "
                                          "row sgcache caches), ``visible_projects`` (only rows of the projects and "
                                          "types the site shows that caller, learned by asking the site as the "
                                          "caller), or ``passthrough``. A group not listed passes through, and so "
                                          "does a caller whose identity or group sgcache cannot learn. The group of "
                                          "sgcache's own script (normally ``api_admin``) is ``all`` unless listed. "
                                          "In YAML a mapping (``{manager: all, artist: visible_projects}``); in an "
                                          "environment variable or ``--set``, ``manager=all,artist=visible_projects``. "
                                          "See :doc:`guarantees`.",
                                      check=_group_modes)
    visibility_ttl: float = _setting(600.0, "Seconds what a visible_projects caller may see is remembered (events "
                                     "about people, projects and permission groups drop it sooner)",
                                     doc="Seconds the projects and types a ``visible_projects`` caller may see are "
                                         "remembered after sgcache asked the site. The watcher's events about "
                                         "people, scripts, projects and permission groups drop them at once.",
                                     check=_not_negative)
    shadow_rate: float = _setting(0.005, "Share of cached answers also asked of the site as the caller, in the "
                                  "background, to prove the policy (0: none)",
                                  doc="Share of answers given from the cache that are also asked of the site, as the "
                                      "caller and in the background, and compared (``0.005``: 1 in 200). A "
                                      "difference that holds when asked again switches the caller's group to "
                                      "passthrough until ``sgcache auth clear`` (see :doc:`guarantees`).",
                                  check=_share)
    shadow_per_minute: int = _setting(30, "Most shadow checks one proxy process makes a minute",
                                      doc="Most shadow checks one proxy process makes a minute, whatever the "
                                          "traffic (0: none).",
                                      check=_not_negative)


@dataclass(frozen=True)
class WatcherConfig:
    """The event-log watcher."""

    poll_interval: float = _setting(1.0, "Longest pause, in seconds, between two event-log polls when idle",
                                    doc="Longest pause, in seconds, between two polls of the event log when "
                                        "nothing is happening.",
                                    check=_positive)
    min_poll_interval: float = _setting(0.05, "Shortest pause between polls while events are flowing",
                                        doc="Pause between polls while events flow; it doubles on each empty "
                                            "poll up to ``poll_interval``.",
                                        check=_positive)
    batch_size: int = _setting(500, "Events read per poll", doc="Event-log entries read per poll.",
                               check=_at_least_one)
    gap_timeout: float = _setting(60.0, "Seconds to wait for a missing (late) event id before giving up on it",
                                  check=_not_negative)
    max_attempts: int = _setting(5, "Tries of a failing event before it goes to the dead-letter table",
                                 doc="Tries of a failing event before it is recorded in the dead-letter table.",
                                 check=_at_least_one)
    dead_letter_retry: float = _setting(120.0, "Seconds before a dead-lettered event is tried again",
                                        doc="Seconds before a dead-lettered event is tried again; each further "
                                            "try waits twice as long, up to ``dead_letter_retry_max``. While a "
                                            "dead letter is unresolved, reads of its type pass through.",
                                        check=_positive)
    dead_letter_retry_max: float = _setting(3600.0, "Longest wait, in seconds, between two tries of a dead letter",
                                            check=_positive)


@dataclass(frozen=True)
class ScannerConfig:
    """The periodic updated_at scanner."""

    interval: float = _setting(300.0, "Seconds between two incremental scans (0 disables them)",
                               doc="Seconds between two incremental ``updated_at`` scans; ``0`` turns them off.",
                               check=_not_negative)
    types: list[str] = _setting([], "Entity types to scan (empty: every cached type)",
                                doc="Entity types to scan; empty means every cached type.")
    projects: list[int] = _setting([], "Project ids to import (empty: every project)",
                                   doc="Project ids to import; empty means every project.")
    overlap: float = _setting(60.0, "Seconds an incremental scan reaches back before its watermark",
                              doc="Seconds an incremental scan reaches back before its watermark, for clock skew "
                                  "and slow commits.",
                              check=_not_negative)
    reconcile_every: int = _setting(10, "Look for entities deleted upstream every N incremental scans",
                                    doc="Every N incremental scans of a type, also look for entities deleted "
                                        "upstream.",
                                    check=_at_least_one)
    page_size: int = _setting(500, "Entities asked of the site per page", check=_at_least_one)


@_described("list of networks (``10.0.0.0/8``, ``127.0.0.1``)")
def _networks(value: list[str]) -> str | None:
    import ipaddress

    for item in value:
        try:
            ipaddress.ip_network(str(item), strict=False)
        except ValueError:
            return f"expected networks such as 10.0.0.0/8 or 127.0.0.1, got {item!r}"
    return None


@dataclass(frozen=True)
class AdminConfig:
    """The proxy's own routes under /_sgcache/: status page, status JSON, metrics, health."""

    allow: list[str] = _setting(["127.0.0.1/32", "::1/128"], "Networks (CIDR or single addresses) that may open "
                                "the status page, status JSON and metrics (empty: nobody); /_sgcache/health is "
                                "always open",
                                doc="Who may open the status page, ``/_sgcache/status`` and ``/_sgcache/metrics``: "
                                    "callers whose address is in one of these networks; by default this host "
                                    "only. Empty: nobody; ``[0.0.0.0/0, \"::/0\"]``: anyone. ``/_sgcache/health`` is "
                                    "always open, for load balancers. Behind nginx the address is nginx's own: "
                                    "restrict there too (see :doc:`operations`).",
                                check=_networks)
    row_count_interval: float = _setting(60.0, "Seconds the status page and status JSON reuse their per-type row "
                                         "counts before counting again",
                                         doc="Seconds the status page and ``/_sgcache/status`` reuse the rows "
                                             "counted in each cached table (counting reads every table), kept "
                                             "in the cache database for every proxy process and host.",
                                         check=_positive)
    sample_interval: float = _setting(60.0, "Seconds between two request-latency samples each proxy process "
                                      "saves for the status page's charts (0: none)",
                                      doc="Seconds between two request-latency samples that each proxy process "
                                          "saves in the cache database for the status page's charts (kept two "
                                          "hours). 0 saves none.",
                                      check=_not_negative)


@dataclass(frozen=True)
class LogConfig:
    """Logging."""

    level: str = _setting("info", "Log level", doc="How much is logged. ``-v`` and ``-q`` override it for one run.",
                          choices=("debug", "info", "warning", "error"))
    format: str = _setting("text", "text (key=value lines) or json (one JSON object a line)",
                           doc="``text``: key=value lines; ``json``: one JSON object a line.",
                           choices=("text", "json"))


@dataclass(frozen=True)
class Config:
    """All of sgcache's settings; build it with :func:`load_config`."""

    site: SiteConfig = field(default_factory=SiteConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    schema: SchemaConfig = field(default_factory=SchemaConfig)
    web: WebConfig = field(default_factory=WebConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    watcher: WatcherConfig = field(default_factory=WatcherConfig)
    scanner: ScannerConfig = field(default_factory=ScannerConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    log: LogConfig = field(default_factory=LogConfig)
    #: Where the YAML file was, if any (for messages and relative paths).
    source: Path | None = None

    def require(self, *keys: str) -> None:
        """Fail with one line for the first of ``keys`` (``section.key``) that has no value."""
        for key in keys:
            section, name = key.split(".", 1)
            value = getattr(getattr(self, section), name)
            if value is None or value == "" or (isinstance(value, Secret) and not value.reveal()):
                where = str(self.source) if self.source else "the configuration"
                raise ConfigError(f"{where}: {key} is required (set it in the file or in "
                                  f"{env_name(section, name)})")


SECTIONS: dict[str, type] = {f.name: f.type for f in dataclasses.fields(Config) if f.name != "source"}


def _section_classes() -> dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {name: hints[name] for name in SECTIONS}


def env_name(section: str, key: str) -> str:
    return f"{ENV_PREFIX}{section.upper()}_{key.upper()}"


def iter_settings() -> Iterable[tuple[str, str, dataclasses.Field, Any]]:
    """Yield (section, key, dataclass field, type hint) for every setting, in declaration order."""
    for section, cls in _section_classes().items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            yield section, f.name, f, hints[f.name]


def _base_type(hint: Any) -> tuple[Any, bool]:
    """Strip Optional[...] from a type hint; return (type, optional)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return hint, False


# The settings reference (docs/_ext/sgcache_settings.py) is made from these three; its text is reStructuredText.

#: A type's name in the reference: (one, a list of them).
_TYPE_NAMES: dict[Any, tuple[str, str]] = {
    str: ("text", "text"), Secret: ("secret text", "secret texts"), Path: ("path", "paths"),
    int: ("integer", "integers"), float: ("number", "numbers"),
}


def setting_type_doc(f: dataclasses.Field, hint: Any) -> str:
    """What a setting accepts: its choices, else its check's description, else its type's name."""
    choices = f.metadata.get("choices")
    if choices:
        quoted = [f"``{choice}``" for choice in choices]
        listed = " or ".join(quoted) if len(quoted) == 2 else "one of " + ", ".join(quoted)
        return f"{listed} (any case)"
    check = f.metadata.get("check")
    if check is not None:
        return check.describe  # every check is declared with @_described
    hint, _ = _base_type(hint)
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        return f"list of {_TYPE_NAMES[item][1]}"
    return _TYPE_NAMES[hint][0]


def setting_default_doc(f: dataclasses.Field) -> str:
    """A setting's built-in default: None, empty list, or the value as a literal (with its note)."""
    default = f.default_factory() if f.default is dataclasses.MISSING else f.default
    if default is None:
        text = "None"
    elif isinstance(default, list):
        text = f"``{', '.join(map(str, default))}``" if default else "empty list"
    elif isinstance(default, dict):
        text = f"``{default}``" if default else "empty mapping"
    else:
        text = f"``{default}``"
    note = f.metadata.get("default_note")
    return f"{text} ({note})" if note else text


def setting_doc(f: dataclasses.Field) -> str:
    """A setting's description: its ``doc``, else its one-line ``help`` as a sentence."""
    return f.metadata.get("doc") or f.metadata["help"].rstrip(".") + "."


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _describe(value: Any, secret: bool) -> str:
    return "" if secret else f", got {value!r}"


def _coerce(value: Any, hint: Any, *, from_text: bool, secret: bool) -> Any:
    """Convert ``value`` to ``hint``; raise ValueError with a short reason (never the secret)."""
    hint, optional = _base_type(hint)
    if value is None:
        if optional:
            return None
        raise ValueError("a value is required")
    origin = typing.get_origin(hint)
    if origin is dict:
        key_type, item_type = typing.get_args(hint)
        if isinstance(value, str):
            pairs = []
            for part in (p.strip() for p in value.split(",") if p.strip()):
                key, sep, item = part.partition("=")
                if not sep or not key.strip():
                    raise ValueError(f"expected KEY=VALUE pairs separated by commas, got {part!r}")
                pairs.append((key.strip(), item.strip()))
        elif isinstance(value, dict):
            pairs = list(value.items())
        else:
            raise ValueError(f"expected a mapping{_describe(value, secret)}")
        return {_coerce(k, key_type, from_text=True, secret=secret):
                _coerce(v, item_type, from_text=True, secret=secret) for k, v in pairs}
    if origin is list:
        (item,) = typing.get_args(hint)
        if isinstance(value, str):
            items = [v.strip() for v in value.split(",") if v.strip()]
        elif isinstance(value, list):
            items = value
        else:
            raise ValueError(f"expected a list{_describe(value, secret)}")
        return [_coerce(v, item, from_text=from_text or isinstance(value, str), secret=secret) for v in items]
    if hint is bool:
        if isinstance(value, bool):
            return value
        if from_text and isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError(f"expected true or false{_describe(value, secret)}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if from_text and isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+\s*", value):
            return int(value)
        raise ValueError(f"expected an integer{_describe(value, secret)}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if from_text and isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ValueError(f"expected a number{_describe(value, secret)}")
    if hint is str or hint is Secret or hint is Path:
        if isinstance(value, Secret) and hint is Secret:
            return value
        if isinstance(value, Path) and hint is Path:
            return value
        if not isinstance(value, str) or isinstance(value, bool):
            raise ValueError(f"expected a string{_describe(value, secret)}")
        if hint is Secret:
            return Secret(value)
        if hint is Path:
            return Path(value).expanduser()
        return value
    raise TypeError(f"unsupported setting type {hint!r}")  # a programming error, not a user one


def _validate(section: str, key: str, f: dataclasses.Field, hint: Any, raw: Any, *,
              where: str, from_text: bool, base_dir: Path | None) -> Any:
    secret = _base_type(hint)[0] is Secret
    try:
        value = _coerce(raw, hint, from_text=from_text, secret=secret)
    except ValueError as e:
        raise ConfigError(f"{where}: {section}.{key}: {e}") from None
    if value is None:
        return None
    choices = f.metadata.get("choices")
    if choices and isinstance(value, str):
        value = value.lower()
    if choices and value not in choices:
        raise ConfigError(f"{where}: {section}.{key}: expected one of {', '.join(choices)}, got {value!r}")
    check = f.metadata.get("check")
    if check:
        problem = check(value)
        if problem:
            shown = "" if secret else f", got {_hide_password(value)!r}"
            raise ConfigError(f"{where}: {section}.{key}: {problem}{shown}")
    if f.metadata.get("path") and base_dir is not None and not value.is_absolute():
        value = base_dir / value
    if section == "database" and key in ("url", "read_url") and base_dir is not None:
        value = resolve_sqlite_url(value, base_dir)
    return value


def _hide_password(value: Any) -> Any:
    """``scheme://user:secret@host`` -> ``scheme://user:***@host`` (for messages)."""
    if isinstance(value, str):
        return re.sub(r"(://[^/:@\s]*:)[^@/\s]*@", r"\1***@", value)
    return value


def resolve_sqlite_url(url: str, base_dir: Path) -> str:
    """Make a relative ``sqlite:///path`` absolute against ``base_dir``; leave other URLs alone."""
    m = re.match(r"^(sqlite(\+\w+)?:///)(.*)$", url)
    if not m or not m.group(3) or m.group(3).startswith("/") or m.group(3).startswith(":memory:"):
        return url
    return m.group(1) + str((base_dir / m.group(3)).resolve())


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the configuration file: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: not valid YAML{line}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections ({', '.join(SECTIONS)})")
    return data


def find_config_path(explicit: str | os.PathLike | None, env: Mapping[str, str]) -> Path | None:
    """The YAML file to read: the flag, else ``SGCACHE_CONFIG``, else ``./sgcache.yml`` if present."""
    if explicit:
        return Path(explicit)
    if env.get(ENV_PREFIX + "CONFIG"):
        return Path(env[ENV_PREFIX + "CONFIG"])
    default = Path(DEFAULT_CONFIG_NAME)
    return default if default.is_file() else None


def load_config(path: str | os.PathLike | None = None, *, env: Mapping[str, str] | None = None,
                overrides: Mapping[str, Any] | None = None, require: Iterable[str] = ()) -> Config:
    """Build the :class:`Config` from every source, in order of precedence.

    ``overrides`` maps ``section.key`` to a value from a command-line flag (a string is parsed
    the way an environment variable is; None means "flag not given").
    """
    env = os.environ if env is None else env
    config_path = find_config_path(path, env)
    settings = {(s, k): (f, hint) for s, k, f, hint in iter_settings()}
    values: dict[tuple[str, str], Any] = {}

    if config_path is not None:
        data = _read_yaml(config_path)
        where = str(config_path)
        base_dir = config_path.resolve().parent
        for section, body in data.items():
            if section not in SECTIONS:
                raise ConfigError(f"{where}: unknown section {section!r} (known: {', '.join(SECTIONS)})")
            if body is None:
                continue
            if not isinstance(body, dict):
                raise ConfigError(f"{where}: {section}: expected a mapping of settings")
            for key, raw in body.items():
                if (section, key) not in settings:
                    known = ", ".join(k for s, k in settings if s == section)
                    raise ConfigError(f"{where}: unknown key {section}.{key} (known: {known})")
                f, hint = settings[section, key]
                values[section, key] = _validate(section, key, f, hint, raw, where=where,
                                                 from_text=False, base_dir=base_dir)

    known_env = {env_name(s, k): (s, k) for s, k in settings}
    section_prefixes = tuple(f"{ENV_PREFIX}{s.upper()}_" for s in SECTIONS)
    for name, raw in env.items():
        if name in known_env:
            section, key = known_env[name]
            f, hint = settings[section, key]
            values[section, key] = _validate(section, key, f, hint, raw, where=f"environment {name}",
                                             from_text=True, base_dir=None)
        elif name.startswith(section_prefixes):
            prefix = next(p for p in section_prefixes if name.startswith(p))
            known = ", ".join(n for n in known_env if n.startswith(prefix))
            raise ConfigError(f"environment {name}: unknown setting (known: {known})")

    for dotted, raw in (overrides or {}).items():
        if raw is None:
            continue
        section, _, key = dotted.partition(".")
        if (section, key) not in settings:
            raise ConfigError(f"command line: unknown setting {dotted!r}")
        f, hint = settings[section, key]
        values[section, key] = _validate(section, key, f, hint, raw, where=f"command line ({dotted})",
                                         from_text=isinstance(raw, str), base_dir=None)

    sections = {}
    for section, cls in _section_classes().items():
        kwargs = {k: v for (s, k), v in values.items() if s == section}
        sections[section] = cls(**kwargs)
    config = Config(**sections, source=config_path)
    if require:
        config.require(*require)
    return config
