"""Structured logging: one event per line (key=value text or JSON), with secrets scrubbed."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
import threading

REDACTED = "********"
_secrets: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Never let ``value`` reach a log line, whatever logs it."""
    if value and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def scrub(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


_PLAIN = re.compile(r"[\w.:@/+\-]{1,100}")


def loggable(value: object) -> str:
    """A value that came from outside (a request's method, type, caller, path) as one safe token
    of a key=value line: as it is when plain, else quoted with every control character, quote
    and backslash escaped, so it can neither break the line nor forge another key."""
    text = str(value)
    if _PLAIN.fullmatch(text):
        return text
    return json.dumps(text[:100], ensure_ascii=False).encode("utf-8", "backslashreplace").decode("utf-8")


def _timestamp(record: logging.LogRecord) -> str:
    return dt.datetime.fromtimestamp(record.created, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


class TextFormatter(logging.Formatter):
    """``2026-01-31T12:00:00.12Z INFO sgcache.store.migrate event=migrate action='create table shot'``"""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname} {record.name} {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return scrub(line)


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # Scrubbed before encoding: a secret holding a quote or a backslash is escaped in JSON and
        # would no longer be found in the encoded line.
        out = {"ts": _timestamp(record), "level": record.levelname, "logger": record.name,
               "msg": scrub(record.getMessage())}
        if record.exc_info:
            out["exc"] = scrub(self.formatException(record.exc_info))
        return scrub(json.dumps(out, ensure_ascii=False))


def setup_logging(level: str = "info", fmt: str = "text", stream=None) -> None:
    """Configure the root logger once per process (calling again replaces the handler)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_sgcache", False):
            root.removeHandler(old)
    handler._sgcache = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
