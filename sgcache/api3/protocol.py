"""The JSON-RPC envelope: parsing a request body, and the shapes of results and faults.

A request is ``{"method_name": M, "params": [AUTH, ARGS]}``. Anything sgcache cannot parse, or
that another parser could read differently (a key given twice in one object), is answered
with a Shotgun fault (HTTP 200, ``exception: true``) naming the problem, which shotgun_api3
raises as ``Fault``; a request that parses but that only the site can judge (an unknown
method, a wrong argument) is the site's to answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson

#: error_code of an authentication fault (shotgun_api3 raises AuthenticationFault for it).
AUTH_FAULT = 102

#: Keys of the AUTH mapping that hold a secret (never logged, only hashed).
SECRET_KEYS = ("script_key", "user_password", "session_token", "auth_token")


class Fault(Exception):
    """A fault to send to the caller in Shotgun's envelope."""

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.message = message
        self.code = code

    def envelope(self) -> dict:
        out: dict[str, Any] = {"exception": True, "message": self.message}
        if self.code is not None:
            out["error_code"] = self.code
        return out


@dataclass
class RpcRequest:
    method: str
    auth: dict | None
    args: Any
    body: bytes
    has_args: bool

    @property
    def entity_type(self) -> str | None:
        """The entity type named by the arguments, when they name one (for logs and routing)."""
        if isinstance(self.args, dict) and isinstance(self.args.get("type"), str):
            return self.args["type"]
        return None

    @property
    def caller(self) -> str:
        """Who is calling, for logs: never a secret."""
        auth = self.auth or {}
        if isinstance(auth.get("script_name"), str):
            who = f"script:{auth['script_name']}"
        elif isinstance(auth.get("user_login"), str):
            who = f"user:{auth['user_login']}"
        elif auth.get("session_token") is not None:
            who = "session"
        else:
            return "-"
        if isinstance(auth.get("sudo_as_login"), str):
            who += f" as user:{auth['sudo_as_login']}"
        return who


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """One JSON object, refused when it names a key twice.

    JSON parsers disagree on which of two equal keys wins (Python keeps the last, others the
    first or fail), so a body such as ``{"method_name": "read", "method_name": "delete"}`` could
    mean one thing to sgcache and another to the site it relays the body to.
    """
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                shown = json.dumps(key)[:100]  # escapes a lone surrogate or a control character
                raise Fault(f"sgcache: the request body has the key {shown} more than once in one object; send "
                            "each key once")
            seen.add(key)
    return obj


def _not_json(literal: str) -> Any:
    """NaN, Infinity and -Infinity: Python reads them, JSON (RFC 8259) and strict parsers do not."""
    raise ValueError(f"{literal} is not a JSON number")


def parse(body: bytes) -> RpcRequest:
    """Parse a request body; raise :class:`Fault` with a clear message when it is not one.

    Only strict JSON in UTF-8 is read (no byte order mark, no UTF-16, no NaN or Infinity): a body
    another parser could read differently is refused, never relayed to mean something else there."""
    if body.startswith(b"\xef\xbb\xbf"):
        raise Fault("sgcache: the request body starts with a byte order mark; send UTF-8 JSON without one")
    try:
        payload = json.loads(body.decode("utf-8"), object_pairs_hook=_unique_keys, parse_constant=_not_json)
    except UnicodeDecodeError:
        raise Fault("sgcache: the request body is not UTF-8 text") from None
    except ValueError as e:
        raise Fault(f"sgcache: the request body is not valid JSON ({e})") from None
    except RecursionError:
        raise Fault("sgcache: the request body is JSON nested too deeply to read") from None
    if not isinstance(payload, dict):
        raise Fault("sgcache: the request body must be a JSON object {\"method_name\": ..., \"params\": [...]}, "
                    f"not a JSON {_kind(payload)}")
    method = payload.get("method_name")
    if not isinstance(method, str) or not method:
        raise Fault("sgcache: method_name is missing or not a non-empty string")
    params = payload.get("params", [])
    if params is None:
        params = []
    if not isinstance(params, list):
        raise Fault(f"sgcache: params of {method} must be a list [auth, args], not a JSON {_kind(params)}")
    if len(params) > 2:
        raise Fault(f"sgcache: params of {method} must be a list [auth, args] of at most two items, "
                    f"got {len(params)}")
    auth = params[0] if params else None
    if auth is not None and not isinstance(auth, dict):
        raise Fault(f"sgcache: the first item of params (the credentials) must be an object, "
                    f"not a JSON {_kind(auth)}", AUTH_FAULT)
    return RpcRequest(method, auth, params[1] if len(params) > 1 else None, body, len(params) > 1)


def has_credentials(auth: dict | None) -> bool:
    """Does the AUTH mapping carry one of the three kinds of credentials the site accepts?"""
    if not auth:
        return False
    if auth.get("script_name") is not None or auth.get("script_key") is not None:
        return isinstance(auth.get("script_name"), str) and isinstance(auth.get("script_key"), str)
    if auth.get("user_login") is not None:
        return isinstance(auth.get("user_login"), str) and isinstance(auth.get("user_password"), str)
    return isinstance(auth.get("session_token"), str)


#: orjson writes only what the json module would write the same way; anything else (a datetime, a
#: dataclass, a subclass of str or dict...) it hands back as unknown, and the json module writes it
#: (or refuses it) as before.
_ORJSON_PLAIN = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS


def dumps(payload: Any) -> bytes:
    """An answer as compact UTF-8 JSON. orjson writes a 500-entity page in a fifteenth of the json
    module's time, to the same bytes; what it declines (keys that are not strings, integers past 64
    bits, a lone surrogate, nesting past 254 levels, a value of another type) the json module
    writes as it always did. Its one difference in what it accepts: a NaN or infinite float goes
    out as null (JSON has no such numbers; the json module writes NaN)."""
    try:
        return orjson.dumps(payload, option=_ORJSON_PLAIN)
    except TypeError:  # orjson.JSONEncodeError is one
        return _json_module_dumps(payload)


def _json_module_dumps(payload: Any) -> bytes:
    """What :func:`dumps` wrote before orjson, and writes for what orjson declines."""
    try:
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (legal in JSON text, not in UTF-8) echoed from the request: escape it.
        return json.dumps(payload, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def _kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null",
            int: "number", float: "number"}.get(type(value), type(value).__name__)
