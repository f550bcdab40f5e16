"""The settings table: one frozen dataclass per section, each setting declared with its default,
its documentation and its check; the ``Secret`` type; and the names that walk the table."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sgcache.config import checks
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


@dataclass(frozen=True)
class SiteConfig:
    """The upstream Shotgun site."""

    base_url: str | None = _setting(None, "URL of the Shotgun site, e.g. https://studio.shotgrid.autodesk.com",
                                    doc="URL of the Shotgun site, e.g. ``https://studio.shotgrid.autodesk.com``. "
                                        "Must start with ``http://`` or ``https://``.",
                                    check=checks.url)
    script_name: str | None = _setting(None, "Script (ApiUser) name sgcache uses for its own reads",
                                       doc="Script (ApiUser) name sgcache uses for its own requests to the site.")
    api_key: Secret | None = _setting(None, "Script key; prefer SGCACHE_SITE_API_KEY to keep it out of files",
                                      doc="That script's key. Prefer the environment variable, to keep the key "
                                          "out of files. Never printed (see `The API key`_).")
    webhook_secret: Secret | None = _setting(None, "The secret token of the site's webhook posting to "
                                                   "/_sgcache/webhook; prefer SGCACHE_SITE_WEBHOOK_SECRET",
                                             doc="The secret token set on the site's webhook that posts event "
                                                 "deliveries to ``/_sgcache/webhook`` (see :doc:`triggers`). "
                                                 "Deliveries whose ``X-SG-SIGNATURE`` does not match it are "
                                                 "refused. Unset: the route is off.")
    timeout: float = _setting(30.0, "Seconds to wait for the site's answer before giving up on a request",
                              doc="Seconds to wait for the site's answer before giving up on a request. A write "
                                  "that times out is reported to the caller as \"may or may not have been "
                                  "applied\"; it is never sent again.",
                              check=checks.positive)
    connect_timeout: float = _setting(5.0, "Seconds to wait for a connection to the site", check=checks.positive)
    pool_size: int = _setting(32, "Connections the proxy keeps open to the site, per process",
                              doc="Connections to the site each proxy process keeps open and reuses (keep-alive).",
                              check=checks.at_least_one)
    max_concurrent: int = _setting(0, "Requests one proxy process may have waiting on the site at once (0: "
                                   "web.threads less a quarter, at least 2 less)",
                                   doc="Requests one proxy process may have waiting on the site at once, so that "
                                       "a stalled site never takes every thread: cached reads keep a few. 0 (the "
                                       "default) means ``web.threads`` less a quarter of them, and at least 2 "
                                       "less (6 of 8). A request past the cap waits up to ``site.busy_wait`` "
                                       "seconds for a turn (while the threads left over allow it, one thread "
                                       "always kept for cached reads), else gets HTTP 503 at once, as from a "
                                       "busy site (``shotgun_api3`` reports it as the site being too busy).",
                                   check=checks.not_negative)
    busy_wait: float = _setting(1.0, "Seconds a request waits for a turn at the site when site.max_concurrent "
                                "are already waiting, before HTTP 503",
                                check=checks.not_negative)
    info_ttl: float = _setting(30.0, "Seconds the proxy reuses the site's answer to info",
                               doc="Seconds the proxy reuses the site's answer to ``info``. While the site is "
                                   "down the last answer is served, however old.",
                               check=checks.not_negative)
    breaker_failures: int = _setting(5, "Failures in a row (no connection, timeout, 502/503/504) that open "
                                     "the circuit breaker",
                                     doc="Failures in a row (no connection, timeout, HTTP 502/503/504) that open "
                                         "the circuit breaker (see :doc:`proxy`).",
                                     check=checks.at_least_one)
    timezone: str = _setting("UTC", "The site's time zone (Site Preferences): relative date filters such as "
                             "in_last and in_calendar_day count days in it",
                             doc="The site's time zone (its Site Preferences). Relative date filters answered "
                                 "from the cache (``in_last``, ``in_next``, ``in_calendar_day`` ...) count days "
                                 "and weeks in it; set it to the site's, or those answers would differ from the "
                                 "site's.",
                             check=checks.timezone)
    breaker_cooldown: float = _setting(10.0, "Seconds the open breaker answers at once, without calling "
                                       "the site, before it lets one request try again",
                                       doc="Seconds an open breaker answers at once, without calling the site, "
                                           "before it lets one request through to try again.",
                                       check=checks.positive)


@dataclass(frozen=True)
class DatabaseConfig:
    """The cache database."""

    url: str = _setting("sqlite:///var/sgcache.sqlite",
                        "SQLAlchemy URL: postgresql://user@host/db in production, sqlite:///PATH embedded",
                        doc="The cache database (see `Database URLs`_). A relative SQLite path in the file is "
                            "relative to the file's folder.",
                        check=checks.database_url)
    read_url: str | None = _setting(None, "Optional database the proxy answers cached reads from (a streaming "
                                    "replica of database.url); writes, read-backs and sync use database.url",
                                    doc="A second database the proxy answers cached reads from: a streaming "
                                        "replica of ``database.url``. Writes, the read-back after a client's "
                                        "write and the sync processes use ``database.url``. Replica lag adds to "
                                        "staleness (see :doc:`operations`).",
                                    check=checks.database_url)
    statement_timeout: float = _setting(5.0, "Seconds a PostgreSQL statement of the proxy may run before it is "
                                        "cancelled (0: no limit)",
                                        doc="Seconds one statement of ``sgcache web`` may run on PostgreSQL before "
                                            "the database cancels it; that request then passes through to the "
                                            "site (reason ``query_error``) and the cache stays on for everyone "
                                            "else. 0: no limit.",
                                        check=checks.not_negative)
    prepared_statements: int = _setting(
        64, "Repeated reads PostgreSQL keeps parsed and planned, per connection of the proxy (0: none; set 0 "
        "behind a pooler in transaction mode)",
        doc="A read asked again with the same arguments (its plan kept, ``reads.plan_cache``) runs as a "
            "PostgreSQL prepared statement, values included: the server parses and plans it once per "
            "connection instead of every time. Each connection of ``sgcache web`` keeps at most this many, "
            "least recently used dropped first. Behind a connection pooler in transaction mode (pgbouncer "
            "``pool_mode = transaction``) a connection's prepared statements are not the proxy's own: set 0 "
            "(the proxy also switches them off by itself at the first sign of it, logging "
            "``event=prepared_statements_off``). SQLite ignores it. See :doc:`reads`.",
        check=checks.not_negative)


@dataclass(frozen=True)
class SchemaConfig:
    """Which entity types and fields the cache holds."""

    path: Path = _setting(Path("schema/demo.yml"), "Schema YAML file (made by `sgcache schema dump` and "
                          "`sgcache schema filter`)",
                          doc="The schema file: which entity types and fields the cache holds. Made with "
                              "``sgcache schema dump`` and ``sgcache schema filter`` (see :doc:`schema`). "
                              "Relative to the file's folder when written in the file.",
                          path=True)
    rules: Path | None = _setting(None, "Rules file (as for `sgcache schema filter --rules`) that picks the "
                                  "followed schema out of the site's (empty: none)",
                                  doc="A rules file in the format ``sgcache schema filter --rules`` reads (see "
                                      ":doc:`schema`): it picks the cached types and fields out of the site's "
                                      "schema when the cache follows the site (``schema.follow``) and for "
                                      "``sgcache schema sync``. Empty: none. Relative to the file's folder when "
                                      "written in the file; read again at each change.",
                                  path=True)
    follow: str = _setting("manual", "manual: the schema file is the cache's schema; follow: a schema change on "
                           "the site is applied to the cache by the watcher (needs schema.rules)",
                           doc="``manual``: the schema file is the cache's schema; a schema change on the site "
                               "makes the changed field pass through until an operator updates the file and "
                               "migrates. ``follow``: the watcher reads the site's schema again on each schema "
                               "change, keeps what ``schema.rules`` selects, migrates the cache and records the "
                               "result in the cache database, where every process takes it from without a "
                               "restart (see :ref:`following-the-site`). Needs "
                               "``schema.rules``.",
                           choices=("manual", "follow"))


@dataclass(frozen=True)
class WebConfig:
    """The proxy's web server."""

    bind: str = _setting("127.0.0.1:8010", "HOST:PORT the proxy listens on",
                         doc="Address ``sgcache web`` listens on. An IPv6 host goes in brackets: "
                             "``[::1]:8010``.",
                         check=checks.check_bind)
    workers: int = _setting(2, "gunicorn worker processes", doc="gunicorn worker processes of the proxy.",
                            check=checks.at_least_one)
    threads: int = _setting(8, "threads per worker (slow passthroughs do not block others)",
                            doc="Threads per worker, so that slow passthroughs do not block other requests.",
                            check=checks.at_least_one)
    max_body: int = _setting(8 * 1024 * 1024, "Largest JSON-RPC request body accepted, in bytes (file "
                             "uploads stream through and are not limited)",
                             doc="Largest JSON-RPC request body accepted, in bytes; a larger one gets a fault "
                                 "naming this setting and its value. Decoding a body costs many times its size "
                                 "in memory, so keep it near what your largest batch needs. File uploads stream "
                                 "through and are not limited.",
                             default_note="8 MiB", check=checks.at_least_one)


#: What a permission group may get from the cache (auth.groups).
@dataclass(frozen=True)
class AuthConfig:
    """How the proxy checks callers before it answers from the cache."""

    verify_ttl: float = _setting(60.0, "Seconds a caller's credentials, once accepted by the site, are "
                                 "trusted without asking again",
                                 doc="Seconds a caller's credentials, once the site accepted them, are trusted "
                                     "for cached answers without asking the site again (see :doc:`proxy`).",
                                 check=checks.not_negative)
    failure_ttl: float = _setting(10.0, "Seconds a rejected set of credentials is answered with the site's "
                                  "fault without asking again",
                                  doc="Seconds credentials the site rejected are answered with the site's own "
                                      "fault without asking it again.",
                                  check=checks.not_negative)
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
                                      check=checks.group_modes)
    visibility_ttl: float = _setting(600.0, "Seconds what a visible_projects caller may see is remembered (events "
                                     "about people, projects and permission groups drop it sooner)",
                                     doc="Seconds the projects and types a ``visible_projects`` caller may see are "
                                         "remembered after sgcache asked the site. The watcher's events about "
                                         "people, scripts, projects and permission groups drop them at once.",
                                     check=checks.not_negative)
    shadow_rate: float = _setting(0.005, "Share of cached answers also asked of the site as the caller, in the "
                                  "background, to prove the policy (0: none)",
                                  doc="Share of answers given from the cache that are also asked of the site, as the "
                                      "caller and in the background, and compared (``0.005``: 1 in 200). A "
                                      "difference that holds when asked again switches the caller's group to "
                                      "passthrough until ``sgcache auth clear`` (see :doc:`guarantees`).",
                                  check=checks.share)
    shadow_per_minute: int = _setting(30, "Most shadow checks one proxy process makes a minute",
                                      doc="Most shadow checks one proxy process makes a minute, whatever the "
                                          "traffic (0: none).",
                                      check=checks.not_negative)


@dataclass(frozen=True)
class WatcherConfig:
    """The event-log watcher."""

    poll_interval: float = _setting(1.0, "Longest pause, in seconds, between two event-log polls when idle",
                                    doc="Longest pause, in seconds, between two polls of the event log when "
                                        "nothing is happening.",
                                    check=checks.positive)
    min_poll_interval: float = _setting(0.05, "Shortest pause between polls while events are flowing",
                                        doc="Pause between polls while events flow; it doubles on each empty "
                                            "poll up to ``poll_interval``.",
                                        check=checks.positive)
    webhook_poll_interval: float = _setting(10.0, "Seconds between event-log polls while the site's webhook "
                                                  "delivers (it wakes the watcher for each event)",
                                            doc="Longest pause between polls of the event log while the site's "
                                                "webhook delivers: each delivery wakes the watcher at once, and "
                                                "polling stays as the safety net for deliveries lost. The webhook "
                                                "counts as delivering while its last delivery is at most "
                                                "``webhook_quiet`` seconds old.",
                                            check=checks.positive)
    webhook_quiet: float = _setting(300.0, "Seconds without a webhook delivery after which the watcher polls at "
                                           "poll_interval again",
                                    check=checks.positive)
    batch_size: int = _setting(500, "Events read per poll", doc="Event-log entries read per poll.",
                               check=checks.at_least_one)
    gap_timeout: float = _setting(60.0, "Seconds to wait for a missing (late) event id before giving up on it",
                                  check=checks.not_negative)
    max_attempts: int = _setting(5, "Tries of a failing event before it goes to the dead-letter table",
                                 doc="Tries of a failing event before it is recorded in the dead-letter table.",
                                 check=checks.at_least_one)
    dead_letter_retry: float = _setting(120.0, "Seconds before a dead-lettered event is tried again",
                                        doc="Seconds before a dead-lettered event is tried again; each further "
                                            "try waits twice as long, up to ``dead_letter_retry_max``. While a "
                                            "dead letter is unresolved, reads of its type pass through.",
                                        check=checks.positive)
    dead_letter_retry_max: float = _setting(3600.0, "Longest wait, in seconds, between two tries of a dead letter",
                                            check=checks.positive)


@dataclass(frozen=True)
class ScannerConfig:
    """The periodic updated_at scanner."""

    interval: float = _setting(300.0, "Seconds between two incremental scans (0 disables them)",
                               doc="Seconds between two incremental ``updated_at`` scans; ``0`` turns them off.",
                               check=checks.not_negative)
    types: list[str] = _setting([], "Entity types to scan (empty: every cached type)",
                                doc="Entity types to scan; empty means every cached type.")
    projects: list[int] = _setting([], "Project ids to import (empty: every project)",
                                   doc="Project ids to import; empty means every project.")
    overlap: float = _setting(60.0, "Seconds an incremental scan reaches back before its watermark",
                              doc="Seconds an incremental scan reaches back before its watermark, for clock skew "
                                  "and slow commits.",
                              check=checks.not_negative)
    reconcile_every: int = _setting(10, "Look for entities deleted upstream every N incremental scans",
                                    doc="Every N incremental scans of a type, also look for entities deleted "
                                        "upstream.",
                                    check=checks.at_least_one)
    page_size: int = _setting(500, "Entities asked of the site per page", check=checks.at_least_one)
    concurrency: int = _setting(4, "Connections to the site a full import (scan --full, rebuild) uses at once",
                                doc="Connections to the site a full import (``scan --full``, ``rebuild``, the slim "
                                    "listings) uses at once: pages of several types, and of one large type by id "
                                    "ranges, are fetched together while one thread writes them. ``1``: one page "
                                    "after another. A site that throttles (HTTP 429, or 503 with ``Retry-After``) "
                                    "makes every connection wait as it asks. ``sgcache validate`` checks this "
                                    "many types at once. At most 32: a hosted site throttles well before that.",
                                check=checks.connections)
    slim_records: str = _setting("all", "all: keep type, id, name, retired flag and project of every entity of the "
                                 "types the schema file leaves out (links to them are answered from the cache); "
                                 "none: keep none",
                                 doc="``all``: keep a slim record (type, id, name, retired flag, project) of every "
                                     "entity of every type the schema file leaves out, listed with the full import "
                                     "and kept in step by the watcher and the scans, so a link to any type is "
                                     "named from the cache (see :doc:`reads`). ``none``: keep none; links to "
                                     "types the schema leaves out pass through.",
                                 choices=("all", "none"))
    slim_exclude: list[str] = _setting(["EventLogEntry"], "Types never held as slim records (links to them pass "
                                       "through)",
                                       doc="Types never held as slim records: links to them pass through. The "
                                           "event log is left out by default (millions of rows, rarely linked).")


@dataclass(frozen=True)
class ReadsConfig:
    """Cached answers: what is checked with the site before they go back."""

    url_margin: float = _setting(600.0, "Seconds: a cached thumbnail URL that expires sooner (or a placeholder) is "
                                 "read again from the site before the answer goes back",
                                 doc="A hosted site returns ``image`` and ``filmstrip_image`` values as signed URLs "
                                     "that expire, and a placeholder while a new thumbnail is processed. A cached "
                                     "answer holding one that expires within this many seconds, or a placeholder, "
                                     "has those fields read again from the site (one call per page) and stored "
                                     "before it goes back (see :doc:`reads`).",
                                 check=checks.not_negative)
    plan_cache: int = _setting(256, "Compiled reads kept for identical requests (0: compile every request)",
                               doc="Compiling a ``find`` (checking its names against the schema, building its "
                                   "SQL) costs more than running it for most reads. Each process keeps the plans of "
                                   "this many distinct requests, least recently used dropped first, for callers "
                                   "who see everything and reads of the present without relative dates; results "
                                   "are never kept, every request still runs its queries (see :doc:`reads`).",
                               check=checks.not_negative)


@dataclass(frozen=True)
class HistoryConfig:
    """The versions the cache keeps of every change, for reads of the past (see docs/history.rst)."""

    keep: str = _setting("90d", "How long ended versions are kept: N then s, m, h or d (0: for ever)",
                         doc="How long the cache keeps a version once it has ended (``90d``, ``12h``...; ``0``: "
                             "for ever). The periodic scan (``sgcache scan --interval``, ``sgcache auto``) "
                             "removes older ones a batch at a time; reads of the past before that horizon are "
                             "then refused (see :doc:`history`).",
                         check=checks.duration)

    @property
    def keep_seconds(self) -> float:
        """``keep`` in seconds (0: for ever)."""
        return checks.duration_seconds(self.keep)


@dataclass(frozen=True)
class TriggersConfig:
    """Event plugins written for shotgunEvents, run on the watcher (see docs/triggers.rst)."""

    paths: list[str] = _setting([], "Plugin files or folders (their *.py files) to load",
                                doc="Plugin files, or folders whose ``*.py`` files are plugins (those starting "
                                    "with ``_`` are not), as the event daemon's ``paths``. Empty: no plugins, "
                                    "and the watcher keeps no copy of the entries it applies.")
    proxy_url: str | None = _setting(None, "The sgcache URL callbacks' Shotgun connections use (default: "
                                           "web.bind's)",
                                     doc="The base URL of the proxy that callbacks' ``sg`` connections use, so "
                                         "their reads are cached and their writes read back. Default: "
                                         "``web.bind`` on this host.")
    poll_interval: float = _setting(0.5, "Longest pause, in seconds, between two looks for applied events",
                                    check=checks.positive)
    max_attempts: int = _setting(5, "Tries of a failing callback on one event before it gives up on it",
                                 doc="Tries of a callback that raises on one event (waiting ``retry_delay`` "
                                     "seconds, doubling, between them) before it gives up: a callback "
                                     "registered with ``stopOnError`` stops there; any other puts the event "
                                     "in its dead letters and goes on.",
                                 check=checks.at_least_one)
    retry_delay: float = _setting(1.0, "Seconds before a failed callback is tried again (doubling each time)",
                                  check=checks.positive)


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
                                check=checks.networks)
    row_count_interval: float = _setting(60.0, "Seconds the status page and status JSON reuse their per-type row "
                                         "counts before counting again",
                                         doc="Seconds the status page and ``/_sgcache/status`` reuse the rows "
                                             "counted in each cached table (counting reads every table), kept "
                                             "in the cache database for every proxy process and host.",
                                         check=checks.positive)
    sample_interval: float = _setting(60.0, "Seconds between two request-latency samples each proxy process "
                                      "saves for the status page's charts (0: none)",
                                      doc="Seconds between two request-latency samples that each proxy process "
                                          "saves in the cache database for the status page's charts (kept two "
                                          "hours). 0 saves none.",
                                      check=checks.not_negative)


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
    reads: ReadsConfig = field(default_factory=ReadsConfig)
    history: HistoryConfig = field(default_factory=HistoryConfig)
    triggers: TriggersConfig = field(default_factory=TriggersConfig)
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


def section_classes() -> dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {name: hints[name] for name in SECTIONS}


def env_name(section: str, key: str) -> str:
    return f"{ENV_PREFIX}{section.upper()}_{key.upper()}"


def iter_settings() -> Iterable[tuple[str, str, dataclasses.Field, Any]]:
    """Yield (section, key, dataclass field, type hint) for every setting, in declaration order."""
    for section, cls in section_classes().items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            yield section, f.name, f, hints[f.name]


def base_type(hint: Any) -> tuple[Any, bool]:
    """Strip Optional[...] from a type hint; return (type, optional)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return hint, False
