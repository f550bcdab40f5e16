"""The settings: loaded once from defaults, a YAML file, the environment and flags; validated; typed.

Precedence, lowest first: built-in defaults < the YAML file (``--config PATH`` or
``SGCACHE_CONFIG``, else ``./sgcache.yml`` when it exists) < environment variables
``SGCACHE_<SECTION>_<KEY>`` < command-line flags. Every problem is one
:class:`~sgcache.errors.ConfigError` line naming the key and where the value came from.

The parts: :mod:`~sgcache.config.sections` (the settings table and ``Secret``),
:mod:`~sgcache.config.checks` (what a value must pass), :mod:`~sgcache.config.loading`
(reading, converting and merging the sources) and :mod:`~sgcache.config.reference` (what the
settings reference shows). Import from ``sgcache.config``.
"""

from sgcache.config.checks import GROUP_MODES, check_bind
from sgcache.config.loading import find_config_path, load_config, resolve_sqlite_url
from sgcache.config.reference import setting_default_doc, setting_doc, setting_type_doc
from sgcache.config.sections import (
    DEFAULT_CONFIG_NAME,
    ENV_PREFIX,
    SECTIONS,
    AdminConfig,
    AuthConfig,
    Config,
    DatabaseConfig,
    HistoryConfig,
    LogConfig,
    ReadsConfig,
    ScannerConfig,
    SchemaConfig,
    Secret,
    SiteConfig,
    TriggersConfig,
    WatcherConfig,
    WebConfig,
    env_name,
    iter_settings,
)

__all__ = [
    "DEFAULT_CONFIG_NAME", "ENV_PREFIX", "GROUP_MODES", "SECTIONS",
    "AdminConfig", "AuthConfig", "Config", "DatabaseConfig", "HistoryConfig", "LogConfig", "ReadsConfig",
    "ScannerConfig", "SchemaConfig",
    "Secret", "SiteConfig", "TriggersConfig", "WatcherConfig", "WebConfig",
    "check_bind", "env_name", "find_config_path", "iter_settings", "load_config", "resolve_sqlite_url",
    "setting_default_doc", "setting_doc", "setting_type_doc",
]
