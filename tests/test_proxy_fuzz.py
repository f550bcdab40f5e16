"""Fuzzing the proxy: bad input gets a Shotgun fault with a clear message, never HTTP 500, never a traceback.

Whatever a caller POSTs to ``<base>/api3/json`` (bytes that are not UTF-8, JSON that is cut short, a
JSON value of the wrong shape, parameters of the wrong type, an unknown method or entity type, nesting
too deep to parse, a body larger than ``web.max_body``), the answer is HTTP 200 with either the site's
own answer or Shotgun's fault envelope ``{"exception": true, "message": "..."}``, which shotgun_api3
raises as ``Fault``. Only a request to a path the proxy does not serve gets a 4xx, in plain text.

The payloads come from a deterministic corpus (more than 1,000, built from a seeded ``random.Random``)
and from hypothesis (derandomized). They test the request handling, not the storage, so they run on
SQLite only.
"""

from __future__ import annotations

import gzip
import json
import logging
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import shotgun_api3
from conftest import SCRIPT_AUTH
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

#: The fuzz tests exercise request handling only: one database backend is enough.
sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

#: The default script's credentials as they travel on the wire (the client's api_key is script_key there).
CREDENTIALS = {"script_name": SCRIPT_AUTH["script_name"], "script_key": SCRIPT_AUTH["api_key"]}
CREDENTIALS_TEXT = json.dumps(CREDENTIALS)

JSON_HEADERS = (("Content-Type", "application/json; charset=utf-8"),)

#: Methods of the Shotgun API the corpus calls with bad arguments, and a few it does not have.
KNOWN_METHODS = ["read", "create", "update", "delete", "revive", "batch", "summarize", "schema_read",
                 "schema_entity_read", "schema_field_read", "schema_field_create", "schema_field_update",
                 "schema_field_delete", "info", "get_session_token", "followers", "following",
                 "note_thread_contents", "activity_stream", "entity_types_read", "preferences_read",
                 "work_schedule_read", "upload_url"]
UNKNOWN_METHODS = ["no_such_method", "find", "find_one", "READ", "Read", "read ", " read", "read\n", "rpc_read",
                   "_transaction", "__init__", "__class__", "authenticate", "call", "info()", "read.json",
                   "../read", "read\x00", "\x00", "\u8aad\u307f\u8fbc\u307f", "\U0001f4a5", "r" * 300]
UNKNOWN_TYPES = ["NoSuchType", "shot", "SHOT", "Shot ", " Shot", "", "CustomEntity99", "Shot\x00", "\U0001f4a5",
                 "Shot.code", "T" * 2000, "__class__", "EventLogEntry\n", "Shot;DROP TABLE Shot"]

#: Values of every JSON kind (and the non-standard NaN and Infinity), to put where they do not belong.
GARBAGE: list[Any] = [
    None, True, False, 0, -1, 1, 2**31, 2**63, -(2**63) - 1, 10**40, 0.5, -0.0, 1e308, float("nan"),
    float("inf"), float("-inf"), "", " ", "x", "Shot", "0", "null", "true", "\u00e9", "\x00", "\ud800", "\U0001f4a5",
    "a" * 5000, [], [None], [[]], [1, 2, 3], ["code"], [{}], {}, {"": None}, {"type": "Shot"},
    {"type": "Shot", "id": "1"}, {"type": "NoSuchType", "id": 1}, [{"type": "Shot", "id": -1}],
]

#: Filters that do not parse, name nothing, or use a relation or value the field cannot take.
BAD_CONDITIONS: list[Any] = [
    [{"path": "code", "relation": "bogus_relation", "values": ["x"]}],
    [{"path": "no_such_field", "relation": "is", "values": ["x"]}],
    [{"path": "code", "relation": "is", "values": "x"}],
    [{"path": "code", "relation": "is", "values": [["a"], {"b": 1}]}],
    [{"path": "code", "relation": "is"}],
    [{"relation": "is", "values": [1]}],
    [{"path": 1, "relation": 2, "values": 3}],
    [{"path": "code", "relation": "in", "values": []}],
    [{"path": "code", "relation": "between", "values": [1]}],
    [{"path": "id", "relation": "greater_than", "values": ["not a number"]}],
    [{"path": "created_at", "relation": "greater_than", "values": ["not a date"]}],
    [{"path": "created_at", "relation": "in_last", "values": [1, "fortnights"]}],
    [{"path": "project", "relation": "is", "values": [{"type": "NoSuchType", "id": 1}]}],
    [{"path": "project", "relation": "is", "values": [{"id": "x"}]}],
    [{"path": "project", "relation": "is", "values": ["Project"]}],
    [{"path": "project.Project.name.x.y", "relation": "is", "values": ["x"]}],
    [{"path": "sg_sequence.NoSuchType.code", "relation": "is", "values": ["x"]}],
    [{"logical_operator": "xor", "conditions": []}],
    [{"logical_operator": "or", "conditions": "x"}],
    [{"filter_operator": "any", "filters": "x"}],
    [["code", "is", "x"]],
    [None],
    [1, 2, 3],
    "code is x",
]

#: Field lists for create and update that name unknown fields, or give values of the wrong type.
BAD_FIELDS: list[Any] = [
    [{"field_name": "no_such_field", "value": 1}],
    [{"field_name": "code", "value": {"deep": [1, {"deeper": None}]}}],
    [{"field_name": "code", "value": ["a", "b"]}],
    [{"field_name": "id", "value": 5}],
    [{"field_name": "created_at", "value": "yesterday"}],
    [{"field_name": "project", "value": "Project 1"}],
    [{"field_name": "project", "value": {"type": "Project", "id": 999999}}],
    [{"field_name": "project", "value": {"type": "NoSuchType", "id": 1}}],
    [{"field_name": "project", "value": {"type": "Project"}}],
    [{"field_name": "sg_sequence", "value": [{"type": "Sequence", "id": 1}]}],
    [{"field_name": "assets", "value": {"type": "Asset", "id": 1}}],
    [{"field_name": "assets", "value": [1, 2]}],
    [{"field_name": "sg_status_list", "value": "no_such_status"}],
    [{"field_name": "sg_cut_in", "value": "ten"}],
    [{"field_name": "sg_cut_in", "value": 1e300}],
    [{"field_name": "image", "value": 12}],
    [{"field_name": "tags", "value": "x"}],
    [{"value": 1}],
    [{"field_name": None, "value": 1}],
    [{"field_name": ["code"], "value": 1}],
    [{"field_name": "code"}, {"field_name": "code", "value": "twice"}],
    [1],
    ["code"],
    {"code": "x"},
]


@dataclass(frozen=True)
class Payload:
    """One request of the corpus: what it is (for the failure report), its body, where it goes, how."""

    what: str
    body: bytes
    path: str = "/api3/json"
    headers: tuple[tuple[str, str], ...] = JSON_HEADERS
    chunked: bool = False


def encode(value: Any, *, ascii_only: bool = True) -> bytes:
    """JSON as Python writes it: NaN and Infinity included, lone surrogates kept as escapes (or as bytes)."""
    text = json.dumps(value, ensure_ascii=ascii_only, allow_nan=True)
    return text.encode("utf-8", "surrogatepass")


def rpc(method: Any, *params: Any) -> dict:
    return {"method_name": method, "params": list(params)}


def garbage(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON value, nested a few levels at most."""
    if depth >= 3 or rng.random() < 0.5:
        return rng.choice(GARBAGE[:30])
    if rng.random() < 0.5:
        return [garbage(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = ["type", "id", "fields", "filters", "field_name", "value", "x", ""]
    return {rng.choice(keys): garbage(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def nested(depth: int, *, kind: str = "array", leaf: str = "1") -> str:
    """``depth`` arrays (or objects) one inside the other, as JSON text."""
    if kind == "array":
        return "[" * depth + leaf + "]" * depth
    return '{"a":' * depth + leaf + "}" * depth


def templates(shot_id: int) -> dict[str, Any]:
    """Valid arguments for each method with entity arguments, to spoil one key at a time.

    The schema methods name a field that does not exist, so no spoiled variant changes the schema.
    """
    conditions = {"logical_operator": "and", "conditions": [{"path": "code", "relation": "is", "values": ["x"]}]}
    fields = [{"field_name": "code", "value": "fuzz"}]
    return {
        "read": {"type": "Shot", "filters": conditions, "return_fields": ["code", "project.Project.name"],
                 "return_only": "active", "paging": {"entities_per_page": 50, "current_page": 1},
                 "sorts": [{"field_name": "id", "direction": "asc"}], "include_archived_projects": True,
                 "return_paging_info": True, "api_return_image_urls": True},
        "create": {"type": "Shot", "fields": fields, "return_fields": ["id", "code"]},
        "update": {"type": "Shot", "id": shot_id, "fields": fields, "multi_entity_update_modes": {}},
        "delete": {"type": "Shot", "id": shot_id + 100000},
        "revive": {"type": "Shot", "id": shot_id + 100000},
        "summarize": {"type": "Shot", "filters": conditions, "summaries": [{"field": "id", "type": "count"}],
                      "grouping": [{"field": "code", "type": "exact", "direction": "asc"}],
                      "include_archived_projects": True},
        "schema_field_read": {"type": "Shot", "field_name": "sg_fuzz_no_such_field"},
        "schema_entity_read": {"project": {"type": "Project", "id": 1}},
        "schema_field_create": {"type": "NoSuchType", "data_type": "text",
                                "properties": [{"property_name": "name", "value": "Fuzz"}]},
        "schema_field_update": {"type": "Shot", "field_name": "sg_fuzz_no_such_field",
                                "properties": [{"property_name": "name", "value": "Fuzz"}]},
        "schema_field_delete": {"type": "Shot", "field_name": "sg_fuzz_no_such_field"},
        "batch": {"request_type": "update", "type": "Shot", "id": shot_id, "fields": fields},
    }


def malformed_payloads(shot_id: int = 1, seed: int = 20240917) -> list[Payload]:
    """The corpus: the same list of malformed requests for the same ``shot_id`` and ``seed``."""
    rng = random.Random(seed)
    out: list[Payload] = []

    def add(what: str, body: bytes, **kw: Any) -> None:
        out.append(Payload(what, body, **kw))

    def add_json(what: str, value: Any, **kw: Any) -> None:
        add(what, encode(value, ascii_only=rng.random() < 0.7), **kw)

    valid_bodies = [encode(rpc("read", CREDENTIALS, templates(shot_id)["read"])),
                    encode(rpc("create", CREDENTIALS, templates(shot_id)["create"])),
                    encode(rpc("info", {})), encode(rpc("schema_read", CREDENTIALS, {})),
                    encode(rpc("batch", CREDENTIALS, [templates(shot_id)["batch"]])),
                    encode(rpc("update", {"user_login": "artist", "user_password": "artist-password"},
                                templates(shot_id)["update"]))]

    # --- bytes that are not UTF-8 ---------------------------------------------------------------
    for raw in (b"\xff", b"\xfe\xff", b"\xc3\x28", b"\xa0\xa1", b"\xe2\x28\xa1", b"\xf0\x28\x8c\xbc", b"\xc0\xaf",
                b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80" * 100):
        add(f"invalid UTF-8 {raw[:8]!r}", raw)
        add(f"invalid UTF-8 {raw[:8]!r} inside a string", b'{"method_name": "read' + raw + b'", "params": []}')
        add(f"invalid UTF-8 {raw[:8]!r} inside the credentials",
            b'{"method_name": "read", "params": [{"script_name": "' + raw + b'", "script_key": "k"}, {}]}')
    for _ in range(30):
        add("random bytes", bytes(rng.randrange(256) for _ in range(rng.randint(1, 300))))
    for body in valid_bodies[:3]:
        add("a request in Latin-1 with an accent", body.replace(b'"read"', '"r\u00e9ad"'.encode("latin-1")))
        add("a request in UTF-16", body.decode("utf-8").encode("utf-16"))
        add("a request in UTF-32", body.decode("utf-8").encode("utf-32"))
        add("a request behind a UTF-8 byte order mark", b"\xef\xbb\xbf" + body)
        add("a gzip-compressed request, not said so", gzip.compress(body, mtime=0))
        add("a gzip-compressed request, said so", gzip.compress(body, mtime=0),
            headers=(*JSON_HEADERS, ("Content-Encoding", "gzip")))
        add("a request said to be gzip but not compressed", body,
            headers=(*JSON_HEADERS, ("Content-Encoding", "gzip")))
        add("a lone surrogate as raw bytes", body.replace(b'"params"', b'"\xed\xa0\x80params"'))

    # --- text that is not JSON, or JSON cut short -------------------------------------------------
    for text in ("", " ", "\n\t\r ", "{", "}", "[", "]", '"', "{]", "[}", "{}}", "{{}}", "hello",
                 "{'method_name': 'read', 'params': []}", "{method_name: read}", "method_name=read&params=[]",
                 '{"method_name": "read", "params": [],}', '{"method_name": "read" "params": []}',
                 '{"method_name": "read", "params": [}', '// comment\n{"method_name": "info"}',
                 '/* comment */ {"method_name": "info"}', '{"method_name": "info"} {"method_name": "info"}',
                 '{"method_name": "info"}garbage', '{"method_name": "info"}\x00', "\x00", "nul", "tru", "True",
                 "None", "undefined", "0x10", "01", "1.", ".5", "+1", "-", "1e", '"\\x41"', '"\\u12"', '"\\ud800"',
                 '"\t"', '{"method_name": "in\nfo"}', '{"method_name": "info", "params": [01]}',
                 '<?xml version="1.0"?><methodCall><methodName>read</methodName></methodCall>',
                 "<html><body>hi</body></html>", '{"method_name": "read", "params": [{"a": 1}, {"b": 2]}',
                 '{"method_name": "info", "method_name": 1}', '{"method_name": 1, "method_name": "info"}',
                 '{"method_name": "read", "params": [' + "1," * 1000 + "]}",
                 '{"method_name": "read", "params": 1' + "0" * 5000 + "}",
                 '{"method_name": "read", "params": [1' + "0" * 5000 + "]}",
                 '{"method_name": "read", "params": [' + CREDENTIALS_TEXT + ', {"id": 1' + "0" * 5000 + "}]}"):
        add(f"not JSON: {text[:60]!r}", text.encode("utf-8"))
    for body in valid_bodies:
        cuts = range(len(body)) if len(body) < 60 else sorted(rng.sample(range(len(body)), 40))
        for cut in cuts:
            add(f"truncated after {cut} bytes: {body[:cut][-40:]!r}", body[:cut])

    # --- NaN, Infinity and numbers too large for a double ----------------------------------------
    for literal in ("NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1e-999", "123456789012345678901234567890"):
        add(f"{literal} as the method name", f'{{"method_name": {literal}, "params": []}}'.encode())
        add(f"{literal} as the params", f'{{"method_name": "read", "params": {literal}}}'.encode())
        add(f"{literal} as the credentials", f'{{"method_name": "read", "params": [{literal}, {{}}]}}'.encode())
        add(f"{literal} as the arguments",
            f'{{"method_name": "read", "params": [{CREDENTIALS_TEXT}, {literal}]}}'.encode())
        add(f"{literal} as an entity id",
            f'{{"method_name": "update", "params": [{CREDENTIALS_TEXT}, {{"type": "Shot", "id": {literal}, '
            f'"fields": []}}]}}'.encode())
        add(f"{literal} as a filter value",
            f'{{"method_name": "read", "params": [{CREDENTIALS_TEXT}, {{"type": "Shot", "filters": '
            f'{{"logical_operator": "and", "conditions": [{{"path": "id", "relation": "less_than", '
            f'"values": [{literal}]}}]}}}}]}}'.encode())
        add(f"{literal} as a page size",
            f'{{"method_name": "read", "params": [{CREDENTIALS_TEXT}, {{"type": "Shot", "paging": '
            f'{{"entities_per_page": {literal}, "current_page": {literal}}}}}]}}'.encode())

    # --- nesting too deep to parse -----------------------------------------------------------------
    for depth in (50, 500, 990, 1000, 5000, 100000):
        for kind in ("array", "object"):
            add(f"{kind}s nested {depth} deep", nested(depth, kind=kind).encode())
            add(f"{kind}s nested {depth} deep as the arguments",
                f'{{"method_name": "read", "params": [{CREDENTIALS_TEXT}, {nested(depth, kind=kind)}]}}'.encode())
        add(f"credentials nested {depth} deep",
            f'{{"method_name": "read", "params": [{{"script_name": "sgcache", "script_key": "sgcache-demo-key", '
            f'"sudo_as_login": {nested(depth)}}}, {{}}]}}'.encode())
        add(f"a filter nested {depth} deep",
            f'{{"method_name": "read", "params": [{CREDENTIALS_TEXT}, {{"type": "Shot", "filters": '
            f'{nested(depth, kind="object", leaf="[]")}}}]}}'.encode())
        add(f"unclosed arrays {depth} deep", ("[" * depth).encode())

    # --- a JSON value that is not an object ---------------------------------------------------------
    for value in (*GARBAGE, [rpc("info")], [rpc("read", CREDENTIALS, {"type": "Shot"})], [[rpc("info")]]):
        if not isinstance(value, dict):
            add_json(f"a JSON {type(value).__name__} instead of an object: {value!r:.60}", value)

    # --- method_name missing, empty, of the wrong type, unknown -------------------------------------
    for params in ([], [CREDENTIALS, {}], [CREDENTIALS, {"type": "Shot"}]):
        add_json("no method_name", {"params": params})
        add_json("method_name spelt methodName", {"methodName": "read", "params": params})
        for method in GARBAGE:
            add_json(f"method_name {method!r:.60}", rpc(method, *params))
        for method in (*UNKNOWN_METHODS, "m" * 100000, "\U0001f4a5" * 10000):
            add_json(f"unknown method {method!r:.60}", rpc(method, *params))
    add_json("an empty object", {})
    add_json("only unknown keys", {"jsonrpc": "2.0", "method": "read", "id": 1})

    # --- params not a list [auth, args] --------------------------------------------------------------
    for method in ("read", "info", "create", "batch", "no_such_method", "\ud800", "\U0001f4a5"):
        for params in (*GARBAGE, {"auth": CREDENTIALS, "args": {}}, [CREDENTIALS, {}, {}],
                       [CREDENTIALS, {"type": "Shot"}, None], [None, None, None], [CREDENTIALS] * 10,
                       [[CREDENTIALS, {}]], list(range(1000))):
            if not isinstance(params, list) or len(params) > 2 or params == [[CREDENTIALS, {}]]:
                add_json(f"{method} with params {params!r:.60}", {"method_name": method, "params": params})

    # --- credentials that are not an object, or hold values of the wrong type ----------------------
    for method in ("read", "create", "info", "schema_read"):
        for auth in GARBAGE:
            if not isinstance(auth, dict):
                add_json(f"{method} with credentials {auth!r:.60}", rpc(method, auth, {"type": "Shot"}))
    auth_keys = ["script_name", "script_key", "user_login", "user_password", "session_token", "sudo_as_login",
                 "session_uuid", "api_key"]
    for key in auth_keys:
        for value in rng.sample(GARBAGE, 8):
            for base in (CREDENTIALS, {"user_login": "artist", "user_password": "artist-password"}, {}):
                add_json(f"read with credentials {key}={value!r:.40} over {sorted(base)}",
                         rpc("read", {**base, key: value}, {"type": "Shot"}))
    for auth in ({"script_name": "sgcache", "script_key": "wrong"}, {"script_name": "nobody", "script_key": "k"},
                 {"user_login": "artist", "user_password": "wrong"}, {"session_token": "forged"},
                 {"script_name": "sgcache", "script_key": "sgcache-demo-key", "sudo_as_login": "nobody"},
                 {"script_name": "sgcache"}, {"script_key": "sgcache-demo-key"}, {"user_password": "x"},
                 {"script_name": "sgcache", "script_key": "sgcache-demo-key", "user_login": 1},
                 {"SCRIPT_NAME": "sgcache", "SCRIPT_KEY": "sgcache-demo-key"}):
        for method in ("read", "create", "update", "batch", "no_such_method"):
            add_json(f"{method} with credentials {sorted(auth)}", rpc(method, auth, {"type": "Shot"}))

    # --- valid credentials, arguments of the wrong shape or type --------------------------------------
    for method in (*KNOWN_METHODS, *UNKNOWN_METHODS[:6]):
        for args in (*rng.sample(GARBAGE, 6), garbage(rng), garbage(rng)):
            add_json(f"{method} with arguments {args!r:.60}", rpc(method, CREDENTIALS, args))
        add_json(f"{method} with credentials and no arguments", rpc(method, CREDENTIALS))
    for method, template in templates(shot_id).items():
        wrap = (lambda args: [args]) if method == "batch" else (lambda args: args)
        for key in template:
            add_json(f"{method} without {key}", rpc(method, CREDENTIALS, wrap({k: v for k, v in template.items()
                                                                              if k != key})))
            for value in rng.sample(GARBAGE, 8):
                if value != template[key] and not (key == "id" and value == shot_id):
                    add_json(f"{method} with {key}={value!r:.60}",
                             rpc(method, CREDENTIALS, wrap({**template, key: value})))
        add_json(f"{method} with an unknown argument", rpc(method, CREDENTIALS, wrap({**template, "bogus": 1})))
        if "type" in template:
            for entity_type in UNKNOWN_TYPES:
                add_json(f"{method} of unknown entity type {entity_type!r:.40}",
                         rpc(method, CREDENTIALS, wrap({**template, "type": entity_type})))
    for method in ("read", "summarize"):
        for conditions in BAD_CONDITIONS:
            filters = {"logical_operator": "and", "conditions": conditions}
            add_json(f"{method} with conditions {conditions!r:.80}",
                     rpc(method, CREDENTIALS, {**templates(shot_id)[method], "filters": filters}))
            add_json(f"{method} with filters {conditions!r:.80}",
                     rpc(method, CREDENTIALS, {**templates(shot_id)[method], "filters": conditions}))
    for method in ("create", "update", "batch"):
        for fields in BAD_FIELDS:
            args = {**templates(shot_id)[method], "fields": fields}
            add_json(f"{method} with fields {fields!r:.80}",
                     rpc(method, CREDENTIALS, [args] if method == "batch" else args))
    for bad in ([{"field": "id", "type": "no_such_summary"}], [{"field": "no_such_field", "type": "count"}],
                [{"type": "count"}], ["id"], [None], "count", [{"field": "code", "type": "percentage"}]):
        add_json(f"summarize with summaries {bad!r:.60}",
                 rpc("summarize", CREDENTIALS, {**templates(shot_id)["summarize"], "summaries": bad}))
        add_json(f"summarize with grouping {bad!r:.60}",
                 rpc("summarize", CREDENTIALS, {**templates(shot_id)["summarize"], "grouping": bad}))
    for requests_list in ([None], [1, 2], ["create"], [{}], [{"request_type": "explode"}],
                          [{"request_type": None, "type": "Shot"}], [{"request_type": "create"}],
                          [{"request_type": "delete", "type": "Shot", "id": "x"}],
                          [{"request_type": "create", "type": "Shot", "fields": []}, {"request_type": "nope"}],
                          [{"request_type": "revive", "type": "Shot", "id": shot_id}],
                          [{"request_type": "create", "entity_type": "Shot", "data": {"code": "x"}}],
                          [templates(shot_id)["batch"]] * 3 + [None],
                          [{"request_type": "read", "type": "Shot", "filters": []}]):
        add_json(f"batch of {requests_list!r:.80}", rpc("batch", CREDENTIALS, requests_list))

    # --- very long strings and wide values -----------------------------------------------------------
    for size in (10**4, 10**6):
        add_json(f"a {size}-character script name", rpc("read", {"script_name": "s" * size, "script_key": "k"}, {}))
        add_json(f"a {size}-character entity type", rpc("read", CREDENTIALS, {"type": "T" * size}))
        add_json(f"a {size}-character filter value",
                 rpc("read", CREDENTIALS, {"type": "Shot", "filters": {"logical_operator": "and", "conditions": [
                     {"path": "code", "relation": "is", "values": ["v" * size]}]}}))
        add_json(f"a {size}-character key", rpc("read", CREDENTIALS, {"k" * size: 1}))
        add_json(f"a {size}-character method name with credentials", rpc("x" * size, CREDENTIALS, {}))
    add_json("an object of 20000 keys", rpc("read", CREDENTIALS, {f"k{i}": i for i in range(20000)}))
    add_json("a batch of 20000 numbers", rpc("batch", CREDENTIALS, list(range(20000))))
    add_json("20000 return fields", rpc("read", CREDENTIALS, {"type": "Shot", "return_fields": ["x"] * 20000}))

    # --- the same, on other base paths and with other headers -----------------------------------------
    for path in ("/sg/api3/json", "/a/b/c/api3/json", "/%E2%9C%93/api3/json", "/api3/api3/json", "//api3/json"):
        for payload in rng.sample(out, 12):
            out.append(Payload(f"{payload.what} (at {path})", payload.body, path, payload.headers))
    for headers in ((), (("Content-Type", "text/plain"),), (("Content-Type", "application/x-www-form-urlencoded"),),
                    (("Content-Type", "multipart/form-data; boundary=x"),),
                    (("Content-Type", "application/json; charset=utf-16"),), (("Content-Type", "\u00e9"),),
                    (*JSON_HEADERS, ("X-Request-Id", "r" * 5000)), (*JSON_HEADERS, ("Accept-Encoding", "gzip")),
                    (*JSON_HEADERS, ("Accept-Encoding", "br, zstd, *;q=0"))):
        for payload in rng.sample(out, 6):
            out.append(Payload(f"{payload.what} (headers {headers!r:.60})", payload.body, payload.path, headers))
    for payload in rng.sample(out, 20):
        out.append(Payload(f"{payload.what} (chunked)", payload.body, payload.path, payload.headers, chunked=True))
    return out


# --- checking one answer -------------------------------------------------------------------------


def send(session: requests.Session, base_url: str, payload: Payload) -> requests.Response:
    body: bytes | Iterator[bytes] = iter([payload.body]) if payload.chunked else payload.body
    return session.post(base_url + payload.path, data=body, headers=dict(payload.headers), timeout=60)


def answer_problems(response: requests.Response) -> list[str]:
    """How an answer to a malformed request breaks the contract (empty when it keeps it)."""
    problems = []
    if response.status_code >= 500:
        relayed = not response.content.startswith(b"sgcache:")
        problems.append(f"HTTP {response.status_code}" + (" (relayed from the site)" if relayed else ""))
    content = response.content
    if b"Traceback" in content or b'File "' in content:
        problems.append("a traceback in the body")
    if response.status_code != 200:
        return problems
    try:
        answer = json.loads(content)
    except ValueError:
        return [*problems, f"HTTP 200 but not JSON: {content[:200]!r}"]
    if isinstance(answer, dict) and "exception" in answer:
        message = answer.get("message")
        if answer["exception"] is not True:
            problems.append(f"exception is {answer['exception']!r}, not true")
        if not isinstance(message, str) or not message.strip():
            problems.append(f"a fault without a message: {answer!r:.200}")
        elif message.startswith("sgcache: internal error"):
            problems.append(f"an internal error, not a fault naming the problem: {message!r}")
    return problems


def describe(payload: Payload, response: requests.Response, problems: list[str]) -> str:
    return (f"{payload.what}\n  POST {payload.path} headers={dict(payload.headers)} chunked={payload.chunked}\n"
            f"  body ({len(payload.body)} bytes): {payload.body[:300]!r}\n  -> HTTP {response.status_code}: "
            f"{response.content[:300]!r}\n  problems: {'; '.join(problems)}")


def logged_errors(caplog: pytest.LogCaptureFixture) -> str:
    """The errors (with their tracebacks) the proxy and the stand-in site logged, for a failure report."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    records = [r for r in caplog.records if r.levelno >= logging.ERROR]
    return "\n".join(formatter.format(r) for r in records[:5])


# --- the corpus ----------------------------------------------------------------------------------


def test_the_corpus_holds_over_a_thousand_payloads_and_is_the_same_on_every_run():
    corpus = malformed_payloads()

    print(f"{len(corpus)} malformed payloads")
    assert len(corpus) >= 1000
    assert corpus == malformed_payloads()


@sqlite_only
def test_every_malformed_payload_gets_a_fault_or_the_sites_answer_never_a_500_or_a_traceback(proxy, caplog):
    shot_id = proxy.client().create("Shot", {"code": "fuzz target"})["id"]
    corpus = malformed_payloads(shot_id)
    failures = []
    faults = 0
    started = time.perf_counter()
    with requests.Session() as session:
        for payload in corpus:
            response = send(session, proxy.url, payload)
            problems = answer_problems(response)
            if problems:
                failures.append(describe(payload, response, problems))
            elif response.status_code == 200 and b'"exception"' in response.content:
                faults += 1

    print(f"{len(corpus)} malformed payloads in {time.perf_counter() - started:.1f} s, {faults} faults")
    assert len(corpus) >= 1000
    assert not failures, (f"{len(failures)} of {len(corpus)} payloads broke the contract:\n\n"
                          + "\n\n".join(failures[:15]) + f"\n\nlogged:\n{logged_errors(caplog)}")
    # Most are refused; the rest are unusual rather than wrong (UTF-16, a BOM, an optional argument spoilt).
    assert faults >= 0.8 * len(corpus)


# --- hypothesis ----------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    | st.sampled_from(["Shot", "Project", "NoSuchType", "code", "id", "is", "and", "create", "read"]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["type", "id", "fields", "filters", "field_name", "value", "path", "relation",
                                       "values", "conditions", "logical_operator", "request_type", "return_fields",
                                       "paging", "summaries", "grouping"]) | st.text(max_size=8), children,
                      max_size=5),
    max_leaves=20,
)
credentials = st.one_of(
    st.just(CREDENTIALS),
    json_values,
    st.dictionaries(st.sampled_from(["script_name", "script_key", "user_login", "user_password", "session_token",
                                     "sudo_as_login", "session_uuid"]), json_values, max_size=3),
    json_values.map(lambda sudo: {**CREDENTIALS, "sudo_as_login": sudo}),
)
rpc_requests = st.fixed_dictionaries(
    {"method_name": st.sampled_from(KNOWN_METHODS + UNKNOWN_METHODS) | json_values},
    optional={"params": st.one_of(json_values, st.tuples(credentials, json_values).map(list),
                                  st.tuples(credentials).map(list),
                                  st.lists(json_values, min_size=3, max_size=5))},
)
bodies = st.one_of(
    st.tuples(rpc_requests, st.booleans()).map(lambda v: encode(v[0], ascii_only=v[1])),
    json_values.map(encode),
    st.binary(max_size=300),
    st.tuples(rpc_requests.map(encode), st.integers(min_value=0, max_value=400)).map(lambda v: v[0][:v[1]]),
)


@sqlite_only
@settings(max_examples=200, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=bodies, path=st.sampled_from(["/api3/json", "/sg/api3/json"]))
def test_arbitrary_json_bodies_get_a_fault_or_the_sites_answer_never_a_500_or_a_traceback(proxy, caplog, body,
                                                                                           path):
    caplog.clear()
    payload = Payload("hypothesis", body, path)
    with requests.Session() as session:
        response = send(session, proxy.url, payload)

    problems = answer_problems(response)
    assert not problems, describe(payload, response, problems) + f"\n\nlogged:\n{logged_errors(caplog)}"


# --- oversized bodies --------------------------------------------------------------------------------


def padded_read(size: int) -> bytes:
    """A valid read request padded with spaces to ``size`` bytes."""
    body = encode(rpc("read", CREDENTIALS, {"type": "Shot", "filters": {"logical_operator": "and",
                                                                        "conditions": []}}))
    return body + b" " * (size - len(body))


def chunks_of(body: bytes, size: int = 1000) -> Iterator[bytes]:
    """The body as a generator, which requests sends chunked, without a Content-Length."""
    for start in range(0, len(body), size):
        yield body[start:start + size]


@sqlite_only
def test_a_body_over_web_max_body_with_a_content_length_gets_a_fault_naming_the_setting(make_proxy, mock_site):
    proxy = make_proxy(web__max_body=4096)

    response = requests.post(proxy.url + "/api3/json", data=padded_read(4097), headers=dict(JSON_HEADERS),
                             timeout=30)

    assert response.status_code == 200
    answer = response.json()
    assert answer["exception"] is True
    assert "web.max_body (4096 bytes)" in answer["message"] and "(4097 bytes)" in answer["message"]
    assert mock_site.calls["read"] == 0


@sqlite_only
def test_a_chunked_body_over_web_max_body_gets_a_fault_naming_the_setting(make_proxy, mock_site):
    proxy = make_proxy(web__max_body=4096)

    response = requests.post(proxy.url + "/api3/json", data=chunks_of(padded_read(50000)),
                             headers=dict(JSON_HEADERS), timeout=30)

    assert response.status_code == 200
    answer = response.json()
    assert answer["exception"] is True
    assert "web.max_body (4096 bytes)" in answer["message"]
    assert mock_site.calls["read"] == 0


@sqlite_only
def test_a_body_of_exactly_web_max_body_is_passed_to_the_site_with_or_without_a_content_length(make_proxy,
                                                                                               mock_site):
    proxy = make_proxy(web__max_body=4096)
    body = padded_read(4096)

    with_length = requests.post(proxy.url + "/api3/json", data=body, headers=dict(JSON_HEADERS), timeout=30)
    chunked = requests.post(proxy.url + "/api3/json", data=chunks_of(body), headers=dict(JSON_HEADERS), timeout=30)

    assert with_length.status_code == chunked.status_code == 200
    assert with_length.json() == chunked.json() == {"results": {"entities": []}}
    assert mock_site.calls["read"] == 2


# --- paths and verbs the proxy does not serve ------------------------------------------------------

#: (verb, path, the status the proxy answers with)
NOT_SERVED = [
    ("GET", "/api3/json", 405),
    ("GET", "/sg/api3/json", 405),
    ("PUT", "/api3/json", 405),
    ("DELETE", "/api3/json", 405),
    ("PATCH", "/sg/api3/json", 405),
    ("POST", "/nothing", 404),
    ("POST", "/", 404),
    ("GET", "/", 404),
    ("POST", "/api3", 404),
    ("POST", "/api3/json/extra", 404),
    ("POST", "/api3/JSON", 404),
    ("POST", "/file_serve/attachment/1", 405),
    ("PUT", "/thumbnail/x", 405),
    ("GET", "/upload/upload_file", 405),
]


@sqlite_only
def test_a_path_or_verb_not_served_gets_a_4xx_in_plain_text_without_a_traceback(proxy):
    answers = {}
    with requests.Session() as session:
        for verb, path, _ in NOT_SERVED:
            response = session.request(verb, proxy.url + path, data=encode(rpc("info")), timeout=30)
            answers[verb, path] = (response.status_code, response.headers.get("Content-Type", ""), response.text)

    for verb, path, status in NOT_SERVED:
        code, content_type, text = answers[verb, path]
        assert code == status, (verb, path, code, text)
        assert content_type.startswith("text/plain"), (verb, path, content_type)
        assert text.startswith(f"sgcache: {status} ") and "POST <base>/api3/json" in text, (verb, path, text)
        assert "Traceback" not in text and 'File "' not in text, (verb, path, text)


# --- the real client ---------------------------------------------------------------------------------

#: Calls with arguments shotgun_api3 sends as they are, and only the site can refuse.
CLIENT_CALLS = {
    "find of an unknown entity type": lambda sg: sg.find("NoSuchType", []),
    "find with an unknown relation": lambda sg: sg.find("Shot", [["code", "bogus_relation", "x"]]),
    "find on an unknown field": lambda sg: sg.find("Shot", [["no_such_field", "is", "x"]]),
    "find with a date that is not one": lambda sg: sg.find("Shot", [["created_at", "greater_than", "yesterday"]]),
    "find_one of an unknown entity type": lambda sg: sg.find_one("NoSuchType", [["id", "is", 1]]),
    "create of an unknown entity type": lambda sg: sg.create("NoSuchType", {"code": "x"}),
    "create setting an unknown field": lambda sg: sg.create("Shot", {"no_such_field": 1}),
    "create with a number where a link goes": lambda sg: sg.create("Shot", {"code": "x", "project": 12}),
    "update of an entity that does not exist": lambda sg: sg.update("Shot", 999999, {"code": "x"}),
    "delete of an entity that does not exist": lambda sg: sg.delete("Shot", 999999),
    "revive of an unknown entity type": lambda sg: sg.revive("NoSuchType", 1),
    "summarize with an unknown summary type": lambda sg: sg.summarize("Shot", [], [{"field": "id",
                                                                                    "type": "no_such_summary"}]),
    "schema_field_read of an unknown entity type": lambda sg: sg.schema_field_read("NoSuchType"),
    "batch setting an unknown field": lambda sg: sg.batch([{"request_type": "create", "entity_type": "Shot",
                                                            "data": {"no_such_field": 1}}]),
    "an unknown method": lambda sg: sg._call_rpc("no_such_method", {"type": "Shot"}),
    "a known method with a list for its arguments": lambda sg: sg._call_rpc("read", ["Shot"]),
    "a known method with a string for its arguments": lambda sg: sg._call_rpc("create", "Shot"),
}


@sqlite_only
def test_bad_arguments_the_client_lets_through_raise_a_fault_with_a_message(proxy):
    sg = proxy.client()
    outcomes = {}
    for name, call in CLIENT_CALLS.items():
        try:
            call(sg)
        except shotgun_api3.Fault as fault:
            outcomes[name] = ("Fault", str(fault))
        except Exception as error:  # noqa: BLE001 - reported below
            outcomes[name] = (type(error).__name__, str(error)[:300])
        else:
            outcomes[name] = ("no error", "")

    wrong = {name: outcome for name, outcome in outcomes.items()
             if outcome[0] != "Fault" or not outcome[1].strip() or "Traceback" in outcome[1]
             or "internal error" in outcome[1]}
    assert not wrong, "\n".join(f"{name}: {kind} {message!r}" for name, (kind, message) in wrong.items())
