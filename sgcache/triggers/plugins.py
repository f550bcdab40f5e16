"""Event plugins written for shotgunEvents (the site's public event daemon), loaded unchanged.

A plugin is a Python file with ``registerCallbacks(reg)``; ``reg`` is a :class:`Registrar`
offering what the daemon's does: ``registerCallback(script_name, script_key, callback,
matchEvents=None, args=None, stopOnError=True)``, ``logger``, ``getLogger()`` and
``setEmails(*emails)``. A callback is called as ``callback(sg, logger, event, args)``.

``matchEvents`` follows the daemon: None or empty matches every event; otherwise a dict from
event type (or ``"*"``) to a list of attribute names (``None`` or a list holding ``"*"``: any
attribute). With ``"*"`` as a key, its attribute list applies to every event type.

Loading runs the plugin's own code: only files the configuration names (``triggers.paths``)
are loaded, as the daemon does.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sgcache.errors import SgcacheError

log = logging.getLogger(__name__)


class PluginError(SgcacheError):
    """A plugin that cannot be loaded or registered (its callbacks do not run)."""


@dataclass
class Callback:
    """One registered callback of one plugin."""

    plugin: str
    name: str
    function: Callable[..., Any]
    script_name: str
    script_key: str
    match_events: Mapping[str, Any] | None = None
    args: Any = None
    stop_on_error: bool = True
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("plugin"))

    @property
    def key(self) -> str:
        """``plugin.callback``: the name its cursor and dead letters are kept under."""
        return f"{self.plugin}.{self.name}"

    def matches(self, event: Mapping[str, Any]) -> bool:
        """Whether the daemon would hand ``event`` to this callback."""
        return matches(self.match_events, event)


def matches(match_events: Mapping[str, Any] | None, event: Mapping[str, Any]) -> bool:
    """The daemon's ``matchEvents`` rule (see the module's docs)."""
    if not match_events:
        return True
    if "*" in match_events:
        attributes = match_events["*"]
    elif event.get("event_type") in match_events:
        attributes = match_events[event.get("event_type")]
    else:
        return False
    if attributes is None or "*" in attributes:
        return True
    name = event.get("attribute_name")
    return bool(name) and name in attributes


class Registrar:
    """What ``registerCallbacks(reg)`` receives."""

    def __init__(self, plugin: Plugin):
        self._plugin = plugin
        self.logger = plugin.logger

    def getLogger(self) -> logging.Logger:  # noqa: N802 - the daemon's name
        return self.logger

    def setEmails(self, *emails: Any) -> None:  # noqa: N802
        """Recorded, and logged once: sgcache sends no mail; its errors go to the log and the
        status page (route them with your log collector)."""
        self._plugin.emails = [e for e in emails if isinstance(e, str)]
        self.logger.info("event=plugin_emails plugin=%s emails=%s (sgcache sends no mail: see the log and the "
                         "status page)", self._plugin.name, ",".join(self._plugin.emails) or "-")

    def registerCallback(self, sgScriptName: str, sgScriptKey: str, callback: Callable[..., Any],  # noqa: N802,N803
                         matchEvents: Mapping[str, Any] | None = None, args: Any = None,  # noqa: N803
                         stopOnError: bool = True) -> None:  # noqa: N803
        self._plugin.register(sgScriptName, sgScriptKey, callback, matchEvents, args, stopOnError)


class Plugin:
    """One plugin file, loaded: its callbacks in the order it registered them."""

    def __init__(self, path: Path):
        self.path = path
        self.name = path.stem
        self.logger = logging.getLogger(f"plugin.{self.name}")
        self.callbacks: list[Callback] = []
        self.emails: list[str] = []

    def register(self, script_name: Any, script_key: Any, function: Any, match_events: Any, args: Any,
                 stop_on_error: Any) -> None:
        if not callable(function):
            raise PluginError(f"plugin {self.name}: the callback must be callable, got {type(function).__name__}")
        if not isinstance(script_name, str) or not isinstance(script_key, str) or not script_name:
            raise PluginError(f"plugin {self.name}: registerCallback needs a script name and key (strings)")
        if match_events is not None and not isinstance(match_events, Mapping):
            raise PluginError(f"plugin {self.name}: matchEvents must be a dict of event type -> attribute "
                              f"names, got {type(match_events).__name__}")
        name = getattr(function, "__name__", None) or type(function).__name__
        taken = {c.name for c in self.callbacks}
        unique, n = name, 2
        while unique in taken:  # the same function registered twice: two callbacks, two cursors
            unique, n = f"{name}_{n}", n + 1
        self.callbacks.append(Callback(self.name, unique, function, script_name, script_key, match_events, args,
                                       bool(stop_on_error), logging.getLogger(f"plugin.{self.name}.{unique}")))

    def load(self) -> Plugin:
        """Run the file and its ``registerCallbacks``; PluginError says what went wrong."""
        digest = hashlib.sha1(str(self.path.resolve()).encode()).hexdigest()[:8]
        module_name = f"sgcache_plugin_{re.sub(r'[^0-9A-Za-z_]', '_', self.name)}_{digest}"
        spec = importlib.util.spec_from_file_location(module_name, self.path)
        if spec is None or spec.loader is None:
            raise PluginError(f"plugin {self.path}: not a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as e:
            sys.modules.pop(module_name, None)
            raise PluginError(f"plugin {self.path} failed to load: {type(e).__name__}: {e}") from e
        register = getattr(module, "registerCallbacks", None)
        if not callable(register):
            raise PluginError(f"plugin {self.path} has no registerCallbacks(reg) function")
        try:
            register(Registrar(self))
        except PluginError:
            raise
        except Exception as e:
            raise PluginError(f"plugin {self.path}: registerCallbacks failed: {type(e).__name__}: {e}") from e
        return self


def plugin_files(paths: Iterable[str | Path]) -> list[Path]:
    """The plugin files named by ``paths``: files as they are, folders' ``*.py`` files (not
    those starting with ``_``), sorted by name within a folder."""
    found: list[Path] = []
    for entry in paths:
        path = Path(entry).expanduser()
        if path.is_dir():
            found += sorted(p for p in path.glob("*.py") if not p.name.startswith("_"))
        elif path.is_file():
            found.append(path)
        else:
            raise PluginError(f"triggers.paths: {path} is neither a file nor a folder")
    names = [p.stem for p in found]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise PluginError(f"triggers.paths: two plugins named {', '.join(twice)} (a plugin's name keys its "
                          "cursors: rename one)")
    return found


def load_plugins(paths: Iterable[str | Path]) -> tuple[list[Plugin], dict[str, str]]:
    """(the plugins that loaded, {plugin file: why it did not}): one broken plugin does not stop
    the others, as with the daemon."""
    loaded, failed = [], {}
    for path in plugin_files(paths):
        try:
            loaded.append(Plugin(path).load())
        except PluginError as e:
            log.error("event=plugin_failed path=%s error=%r", path, str(e))
            failed[str(path)] = str(e)
    return loaded, failed
