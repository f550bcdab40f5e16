"""Building the settings from every source: the YAML file, the environment and flags over the
defaults; each value converted to its setting's type and checked, or one ConfigError line."""

from __future__ import annotations

import dataclasses
import os
import re
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from sgcache.config.sections import (
    DEFAULT_CONFIG_NAME,
    ENV_PREFIX,
    SECTIONS,
    Config,
    Secret,
    base_type,
    env_name,
    iter_settings,
    section_classes,
)
from sgcache.errors import ConfigError
from sgcache.files import read_text

#: (section, key) -> (its dataclass field, its type hint), for every setting.
Settings = dict[tuple[str, str], tuple[dataclasses.Field, Any]]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _describe(value: Any, secret: bool) -> str:
    return "" if secret else f", got {value!r}"


def _to_bool(value: Any, hint: Any, *, from_text: bool, secret: bool) -> bool:
    if isinstance(value, bool):
        return value
    if from_text and isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"expected true or false{_describe(value, secret)}")


def _to_int(value: Any, hint: Any, *, from_text: bool, secret: bool) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if from_text and isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+\s*", value):
        return int(value)
    raise ValueError(f"expected an integer{_describe(value, secret)}")


def _to_float(value: Any, hint: Any, *, from_text: bool, secret: bool) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if from_text and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise ValueError(f"expected a number{_describe(value, secret)}")


def _to_text(value: Any, hint: Any, *, from_text: bool, secret: bool) -> str | Secret | Path:
    """A str, Secret or Path setting (``hint``) from a string, or a value already of that type."""
    if hint is not str and isinstance(value, hint):
        return value
    if not isinstance(value, str) or isinstance(value, bool):
        raise ValueError(f"expected a string{_describe(value, secret)}")
    if hint is Secret:
        return Secret(value)
    if hint is Path:
        return Path(value).expanduser()
    return value


_SCALARS = {bool: _to_bool, int: _to_int, float: _to_float, str: _to_text, Secret: _to_text, Path: _to_text}


def _pair(part: str) -> tuple[str, str]:
    key, sep, item = part.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"expected KEY=VALUE pairs separated by commas, got {part!r}")
    return key.strip(), item.strip()


def _to_mapping(value: Any, hint: Any, *, from_text: bool, secret: bool) -> dict:
    """A mapping from YAML, or from ``KEY=VALUE,KEY=VALUE`` text."""
    key_type, item_type = typing.get_args(hint)
    if isinstance(value, str):
        pairs = [_pair(part) for part in (p.strip() for p in value.split(",")) if part]
    elif isinstance(value, dict):
        pairs = list(value.items())
    else:
        raise ValueError(f"expected a mapping{_describe(value, secret)}")
    return {_coerce(k, key_type, from_text=True, secret=secret): _coerce(v, item_type, from_text=True, secret=secret)
            for k, v in pairs}


def _to_list(value: Any, hint: Any, *, from_text: bool, secret: bool) -> list:
    """A list from YAML, or from comma-separated text."""
    (item,) = typing.get_args(hint)
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, list):
        items = value
    else:
        raise ValueError(f"expected a list{_describe(value, secret)}")
    return [_coerce(v, item, from_text=from_text or isinstance(value, str), secret=secret) for v in items]


def _coerce(value: Any, hint: Any, *, from_text: bool, secret: bool) -> Any:
    """Convert ``value`` to ``hint``; raise ValueError with a short reason (never the secret)."""
    hint, optional = base_type(hint)
    if value is None:
        if optional:
            return None
        raise ValueError("a value is required")
    origin = typing.get_origin(hint)
    convert = _to_mapping if origin is dict else _to_list if origin is list else _SCALARS.get(hint)
    if convert is None:
        raise TypeError(f"unsupported setting type {hint!r}")  # a programming error, not a user one
    return convert(value, hint, from_text=from_text, secret=secret)


def _validate(section: str, key: str, f: dataclasses.Field, hint: Any, raw: Any, *,
              where: str, from_text: bool, base_dir: Path | None) -> Any:
    secret = base_type(hint)[0] is Secret
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
    text = read_text(path, "configuration file", ConfigError)
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


def _file_values(config_path: Path, settings: Settings) -> dict[tuple[str, str], Any]:
    """The settings the YAML file gives, checked; relative paths in it are relative to its folder."""
    data = _read_yaml(config_path)
    where = str(config_path)
    base_dir = config_path.resolve().parent
    values = {}
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
    return values


def _env_values(env: Mapping[str, str], settings: Settings) -> dict[tuple[str, str], Any]:
    """The settings ``SGCACHE_<SECTION>_<KEY>`` variables give, checked; an unknown one is an error."""
    known_env = {env_name(s, k): (s, k) for s, k in settings}
    section_prefixes = tuple(f"{ENV_PREFIX}{s.upper()}_" for s in SECTIONS)
    values = {}
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
    return values


def _flag_values(overrides: Mapping[str, Any], settings: Settings) -> dict[tuple[str, str], Any]:
    """The settings the command line gives (``section.key`` -> value; None: the flag was not given)."""
    values = {}
    for dotted, raw in overrides.items():
        if raw is None:
            continue
        section, _, key = dotted.partition(".")
        if (section, key) not in settings:
            raise ConfigError(f"command line: unknown setting {dotted!r}")
        f, hint = settings[section, key]
        values[section, key] = _validate(section, key, f, hint, raw, where=f"command line ({dotted})",
                                         from_text=isinstance(raw, str), base_dir=None)
    return values


def load_config(path: str | os.PathLike | None = None, *, env: Mapping[str, str] | None = None,
                overrides: Mapping[str, Any] | None = None, require: Iterable[str] = ()) -> Config:
    """Build the :class:`Config` from every source, in order of precedence.

    ``overrides`` maps ``section.key`` to a value from a command-line flag (a string is parsed
    the way an environment variable is; None means "flag not given").
    """
    env = os.environ if env is None else env
    config_path = find_config_path(path, env)
    settings: Settings = {(s, k): (f, hint) for s, k, f, hint in iter_settings()}
    values = _file_values(config_path, settings) if config_path is not None else {}
    values.update(_env_values(env, settings))
    values.update(_flag_values(overrides or {}, settings))
    sections = {section: cls(**{k: v for (s, k), v in values.items() if s == section})
                for section, cls in section_classes().items()}
    config = Config(**sections, source=config_path)
    if require:
        config.require(*require)
    return config
