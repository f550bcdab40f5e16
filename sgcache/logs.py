"""Structured logging: one event per line (key=value text or JSON), with secrets scrubbed.

A message is written as ``event=NAME key=value ...``: a value is plain, or quoted the way
:func:`loggable` (JSON) or ``%r`` (Python) quotes it, or a bracketed ``%s`` of a list. The text
format prints the message as it is; the JSON format makes each pair a key of its own.
"""

from __future__ import annotations

import ast
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


_SPACE = re.compile(r"\s*")
_RUN = re.compile(r"\S*")
_KEY = re.compile(r"([A-Za-z_][\w.\-]*)=")
_QUOTED = {'"': re.compile(r'"(?:[^"\\]|\\.)*"', re.S), "'": re.compile(r"'(?:[^'\\]|\\.)*'", re.S)}
_CLOSERS = {"[": "]", "(": ")", "{": "}"}
#: A number as %d, %.1f or %s of a number writes it; no leading zero or plus sign, so it reads back the same.
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?P<fraction>\.\d+)?(?P<exponent>[eE][-+]?\d+)?")
#: The JSON keys the formatter writes itself: a pair of the message with one of these names stays in ``msg``.
RESERVED_KEYS = frozenset({"time", "level", "logger", "msg", "exc", "stack"})


def _ends_token(text: str, end: int) -> bool:
    return end == len(text) or text[end].isspace()


def _unquote(quoted: str) -> str:
    """A quoted value's text: JSON (``loggable``) or a Python literal (``%r``); else what is between the quotes."""
    for decode in (json.loads, ast.literal_eval):
        try:
            value = decode(quoted)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            continue
        if isinstance(value, str):
            return value
    return quoted[1:-1]


def _bracketed_end(text: str, start: int) -> int | None:
    """Where the bracketed value at ``start`` ends (quotes inside it respected), or None if it does not."""
    expected = []
    i = start
    while i < len(text):
        char = text[i]
        if char in _QUOTED:
            quoted = _QUOTED[char].match(text, i)
            if quoted is None:
                return None
            i = quoted.end()
            continue
        if char in _CLOSERS:
            expected.append(_CLOSERS[char])
        elif expected and char == expected[-1]:
            expected.pop()
            if not expected:
                return i + 1
        i += 1
    return None


def _plain(text: str) -> str | int | float:
    """An unquoted value: a number when it reads as one (and back as the same text), else the text."""
    m = _NUMBER.fullmatch(text)
    if m is None:
        return text
    if m.group("fraction") is None and m.group("exponent") is None:
        return int(text)
    number = float(text)
    return number if abs(number) != float("inf") else text


def _pair_at(text: str, pos: int) -> tuple[str, object, int] | None:
    """(key, value, end) for a ``key=value`` token at ``pos``, else None."""
    key = _KEY.match(text, pos)
    if key is None:
        return None
    start = key.end()
    first = text[start:start + 1]
    if first in _QUOTED:
        quoted = _QUOTED[first].match(text, start)
        if quoted is not None and _ends_token(text, quoted.end()):
            return key.group(1), _unquote(quoted.group()), quoted.end()
    elif first in _CLOSERS:
        end = _bracketed_end(text, start)
        if end is not None and _ends_token(text, end):
            return key.group(1), text[start:end], end
    run = _RUN.match(text, start)
    return key.group(1), _plain(run.group()), run.end()


def parse_pairs(message: str) -> tuple[dict[str, object], bool]:
    """The ``key=value`` pairs of a log message, and whether they are all it says.

    A token that is not a pair, a key seen before in the message and a key in
    :data:`RESERVED_KEYS` make it not all: the pair is not taken and the message is kept whole.
    """
    pairs: dict[str, object] = {}
    complete = True
    pos = _SPACE.match(message).end()
    while pos < len(message):
        found = _pair_at(message, pos)
        if found is None:
            complete = False
            pos = _RUN.match(message, pos).end()
        else:
            key, value, pos = found
            if key in pairs or key in RESERVED_KEYS:
                complete = False
            else:
                pairs[key] = value
        pos = _SPACE.match(message, pos).end()
    return pairs, complete


class JSONFormatter(logging.Formatter):
    """One JSON object a line: ``time``, ``level``, ``logger``, then each ``key=value`` pair of the
    message as a key of its own (``event`` first, as messages are written), numbers as numbers.

    ``msg`` holds the whole message when some of it is not in key=value form (or it has no pairs),
    so no word is lost; ``exc`` the traceback, ``stack`` the stack, as text.
    """

    def format(self, record: logging.LogRecord) -> str:
        # Scrubbed before encoding: a secret holding a quote or a backslash is escaped in JSON and
        # would no longer be found in the encoded line. Decoded values are scrubbed again, for a
        # secret that stood escaped in a quoted value.
        message = scrub(record.getMessage())
        pairs, complete = parse_pairs(message)
        out: dict[str, object] = {"time": _timestamp(record), "level": record.levelname, "logger": record.name}
        out.update((scrub(k), scrub(v) if isinstance(v, str) else v) for k, v in pairs.items())
        if not complete or not pairs:
            out["msg"] = message
        if record.exc_info:
            out["exc"] = scrub(self.formatException(record.exc_info))
        if record.stack_info:
            out["stack"] = scrub(self.formatStack(record.stack_info))
        line = json.dumps(out, ensure_ascii=False).encode("utf-8", "backslashreplace").decode("utf-8")
        return scrub(line)


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
