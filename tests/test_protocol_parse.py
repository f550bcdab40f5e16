"""The JSON-RPC request parser (``sgcache.api3.protocol.parse``): what it accepts, and the Fault it
gives for anything else, whose message names the problem and never repeats a secret.

A request is ``{"method_name": M, "params": [AUTH, ARGS]}``; a body that sgcache cannot parse,
or that another parser could read differently, is a Fault. A request that parses but that only
the site can judge (an unknown method, wrong arguments) is not the parser's business.
"""

from __future__ import annotations

import json

import pytest

from sgcache.api3.protocol import AUTH_FAULT, Fault, has_credentials, parse

SCRIPT = {"script_name": "pipeline", "script_key": "s3cret-key"}
SECRETS = ("s3cret-key", "hunter2", "tok-123")


def body(payload) -> bytes:
    return json.dumps(payload).encode()


def fault_of(raw: bytes) -> Fault:
    with pytest.raises(Fault) as raised:
        parse(raw)
    return raised.value


# --- good requests ------------------------------------------------------------------------------------


def test_a_full_request():
    raw = body({"method_name": "read", "params": [SCRIPT, {"type": "Shot", "filters": []}]})
    req = parse(raw)
    assert (req.method, req.auth, req.args, req.has_args) == ("read", SCRIPT, {"type": "Shot", "filters": []}, True)
    assert req.body == raw  # kept byte for byte, to relay
    assert req.entity_type == "Shot"
    assert req.caller == "script:pipeline"


@pytest.mark.parametrize("payload, auth, args, has_args", [
    pytest.param({"method_name": "info"}, None, None, False, id="no-params"),
    pytest.param({"method_name": "info", "params": None}, None, None, False, id="null-params"),
    pytest.param({"method_name": "info", "params": []}, None, None, False, id="empty-params"),
    pytest.param({"method_name": "info", "params": [SCRIPT]}, SCRIPT, None, False, id="auth-only"),
    pytest.param({"method_name": "read", "params": [None, {"type": "Shot"}]}, None, {"type": "Shot"}, True,
                 id="null-auth"),
    pytest.param({"method_name": "read", "params": [{}, None]}, {}, None, True, id="null-args-still-given"),
    pytest.param({"method_name": "read", "params": [SCRIPT, [1, 2]]}, SCRIPT, [1, 2], True, id="args-of-any-shape"),
])
def test_the_shapes_of_params_that_parse(payload, auth, args, has_args):
    req = parse(body(payload))
    assert (req.auth, req.args, req.has_args) == (auth, args, has_args)


def test_an_unknown_method_parses_it_is_the_sites_to_judge():
    assert parse(body({"method_name": "no_such_method", "params": []})).method == "no_such_method"


def test_unknown_top_level_keys_are_left_alone():
    assert parse(body({"method_name": "info", "params": [], "extra": 1})).method == "info"


def test_a_huge_body_parses():
    big = {"type": "Shot", "filters": {"logical_operator": "or", "conditions": [
        {"path": "code", "relation": "is", "values": [f"SH{i:06d}"]} for i in range(20_000)]}}
    req = parse(body({"method_name": "read", "params": [SCRIPT, big]}))
    assert len(req.args["filters"]["conditions"]) == 20_000


def test_moderate_nesting_parses():
    raw = b'{"method_name": "read", "params": [{}, ' + b"[" * 200 + b"]" * 200 + b"]}"
    assert parse(raw).has_args


def test_non_ascii_text_and_escapes_parse():
    req = parse(body({"method_name": "read", "params": [{}, {"code": "Été \u00e9 \\ \"q\""}]}))
    assert req.args == {"code": "Été é \\ \"q\""}


# --- faults -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, message", [
    pytest.param(b"", "sgcache: the request body is not valid JSON (Expecting value: line 1 column 1 (char 0))",
                 id="empty-body"),
    pytest.param(b'{"method_name": "read",', "sgcache: the request body is not valid JSON (Expecting property name "
                 "enclosed in double quotes: line 1 column 24 (char 23))", id="truncated"),
    pytest.param(b'{"method_name": "read"} {}', "sgcache: the request body is not valid JSON (Extra data: line 1 "
                 "column 25 (char 24))", id="trailing-data"),
    pytest.param(b"{'method_name': 'read'}", "sgcache: the request body is not valid JSON (Expecting property name "
                 "enclosed in double quotes: line 1 column 2 (char 1))", id="single-quotes"),
    pytest.param(b'{"method_name": "r\xffead"}', "sgcache: the request body is not UTF-8 text", id="not-utf8"),
    pytest.param(b"[" * 100_000, "sgcache: the request body is JSON nested too deeply to read", id="deep-arrays"),
    pytest.param(b'{"a":' * 100_000, "sgcache: the request body is JSON nested too deeply to read", id="deep-objects"),
])
def test_a_body_that_is_not_json(raw, message):
    f = fault_of(raw)
    assert f.message == message
    assert f.code is None


@pytest.mark.parametrize("payload, kind", [
    pytest.param([], "array", id="array"),
    pytest.param("read", "string", id="string"),
    pytest.param(5, "number", id="number"),
    pytest.param(1.5, "number", id="float"),
    pytest.param(None, "null", id="null"),
    pytest.param(True, "boolean", id="boolean"),
])
def test_a_body_that_is_not_an_object(payload, kind):
    assert fault_of(body(payload)).message == ('sgcache: the request body must be a JSON object {"method_name": ..., '
                                               f'"params": [...]}}, not a JSON {kind}')


@pytest.mark.parametrize("payload", [
    pytest.param({"params": []}, id="missing"),
    pytest.param({"method_name": ""}, id="empty"),
    pytest.param({"method_name": None}, id="null"),
    pytest.param({"method_name": 5}, id="number"),
    pytest.param({"method_name": ["read"]}, id="array"),
])
def test_a_missing_or_mistyped_method(payload):
    assert fault_of(body(payload)).message == "sgcache: method_name is missing or not a non-empty string"


@pytest.mark.parametrize("params, kind", [
    pytest.param({"script_name": "x"}, "object", id="object"),
    pytest.param("x", "string", id="string"),
    pytest.param(0, "number", id="number"),
    pytest.param(False, "boolean", id="boolean"),
])
def test_params_that_are_not_a_list(params, kind):
    f = fault_of(body({"method_name": "read", "params": params}))
    assert f.message == f"sgcache: params of read must be a list [auth, args], not a JSON {kind}"


def test_params_with_more_than_two_items():
    f = fault_of(body({"method_name": "read", "params": [{}, {}, {}]}))
    assert f.message == "sgcache: params of read must be a list [auth, args] of at most two items, got 3"


@pytest.mark.parametrize("auth, kind", [
    pytest.param("s3cret-key", "string", id="string"),
    pytest.param(["pipeline", "s3cret-key"], "array", id="array"),
    pytest.param(7, "number", id="number"),
    pytest.param(True, "boolean", id="boolean"),
])
def test_credentials_that_are_not_an_object_are_an_authentication_fault(auth, kind):
    f = fault_of(body({"method_name": "read", "params": [auth, {}]}))
    assert f.message == f"sgcache: the first item of params (the credentials) must be an object, not a JSON {kind}"
    assert f.code == AUTH_FAULT
    assert f.envelope() == {"exception": True, "message": f.message, "error_code": AUTH_FAULT}


@pytest.mark.parametrize("raw, key", [
    pytest.param(b'{"method_name": "read", "method_name": "delete"}', "method_name", id="top-level"),
    pytest.param(b'{"method_name": "read", "params": [{"script_key": "s3cret-key", "script_key": "hunter2"}]}',
                 "script_key", id="in-credentials"),
    pytest.param(b'{"method_name": "read", "params": [{}, {"filters": {"a": 1, "b": {"x": 1, "x": 2}}}]}', "x",
                 id="nested"),
])
def test_a_key_given_twice_in_one_object(raw, key):
    f = fault_of(raw)
    assert f.message == (f'sgcache: the request body has the key "{key}" more than once in one object; send each key '
                         "once")


def test_a_key_given_twice_is_shown_escaped_and_cut_short():
    raw = b'{"\\ud800' + b"k" * 200 + b'": 1, "\\ud800' + b"k" * 200 + b'": 2}'
    f = fault_of(raw)
    shown = f.message.split("the key ", 1)[1].split(" more than once", 1)[0]
    assert shown == '"\\ud800' + "k" * 93  # json.dumps of the key, 100 characters at most
    f.message.encode("utf-8")  # no lone surrogate left in the message


def test_a_fault_envelope_without_a_code_has_no_error_code():
    assert fault_of(b"[]").envelope() == {"exception": True, "message": fault_of(b"[]").message}


# --- secrets ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [
    pytest.param(b'{"method_name": "read", "params": [{"script_name": "p", "script_key": "s3cret-key"', id="truncated"),
    pytest.param(b'{"method_name": "read", "params": [{"user_password": "hunter2\xff"}]}', id="not-utf8"),
    pytest.param(b'{"method_name": "read", "params": [{"session_token": "tok-123", "session_token": "tok-123"}]}',
                 id="duplicate-key"),
    pytest.param(b'{"method_name": "read", "params": ["s3cret-key", {}]}', id="credentials-a-string"),
    pytest.param(b'{"method_name": "read", "params": [{"user_password": "hunter2"}, {}, "tok-123"]}',
                 id="too-many-params"),
    pytest.param(b'{"method_name": 5, "params": [{"script_key": "s3cret-key"}]}', id="bad-method"),
    pytest.param(b'{"params": {"script_key": "s3cret-key"}, "method_name": "read"}', id="params-an-object"),
    pytest.param(b'["s3cret-key", "hunter2"]', id="body-an-array"),
])
def test_no_fault_message_repeats_a_secret(raw):
    message = fault_of(raw).message
    assert not [s for s in SECRETS if s in message], message


@pytest.mark.parametrize("auth, caller", [
    pytest.param(SCRIPT, "script:pipeline", id="script"),
    pytest.param({"user_login": "artist", "user_password": "hunter2"}, "user:artist", id="person"),
    pytest.param({"session_token": "tok-123"}, "session", id="session"),
    pytest.param({**SCRIPT, "sudo_as_login": "artist"}, "script:pipeline as user:artist", id="sudo"),
    pytest.param({"script_key": "s3cret-key"}, "-", id="key-without-name"),
    pytest.param(None, "-", id="none"),
])
def test_the_caller_named_in_logs_is_never_a_secret(auth, caller):
    req = parse(body({"method_name": "read", "params": [auth, {}]}))
    assert req.caller == caller


@pytest.mark.parametrize("auth, expected", [
    pytest.param(SCRIPT, True, id="script"),
    pytest.param({"script_name": "pipeline"}, False, id="script-without-key"),
    pytest.param({"script_name": "pipeline", "script_key": 5}, False, id="script-key-not-text"),
    pytest.param({"user_login": "artist", "user_password": "hunter2"}, True, id="person"),
    pytest.param({"user_login": "artist"}, False, id="person-without-password"),
    pytest.param({"session_token": "tok-123"}, True, id="session"),
    pytest.param({"session_token": 123}, False, id="session-not-text"),
    pytest.param({}, False, id="empty"),
    pytest.param(None, False, id="none"),
])
def test_has_credentials(auth, expected):
    assert has_credentials(auth) is expected


# --- bodies other parsers read differently -------------------------------------------------------------

@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_json_numbers_are_a_fault(literal):
    raw = b'{"method_name": "read", "params": [{}, {"sg_rate": ' + literal.encode() + b"}]}"
    assert "not valid JSON" in fault_of(raw).message


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32", "utf-8-sig"])
def test_a_body_not_in_utf8_is_a_fault(encoding):
    raw = json.dumps({"method_name": "read", "params": [{}, {"type": "Shot"}]}).encode(encoding)
    assert "UTF-8" in fault_of(raw).message
