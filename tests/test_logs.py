"""Log lines: one event per line whatever a request holds, and no secret in any format."""

from __future__ import annotations

import io
import json
import logging

import requests

from sgcache.logs import JSONFormatter, TextFormatter, loggable, register_secret

FORGED = "read\n2026-12-04T00:00:00.00Z INFO sgcache.web event=request id=forged outcome=cache"


def test_a_request_cannot_forge_a_line_of_the_request_log(proxy, caplog):
    body = {"method_name": FORGED, "params": [{"script_name": "x\ny=1", "script_key": "k"}, {"type": "Shot\r\nz"}]}
    with caplog.at_level(logging.INFO, logger="sgcache.web"):
        requests.post(proxy.url + "/api3/json", json=body, timeout=10)
        requests.get(proxy.url + "/nothing%0Aevent=request", timeout=10)
    lines = [r.getMessage() for r in caplog.records if r.name == "sgcache.web"]
    assert len(lines) == 2
    assert all("\n" not in line and "\r" not in line for line in lines)
    assert 'method="read\\n2026' in lines[0]
    assert lines[0].startswith("event=request id=") and "id=forged" not in lines[0].split('method="')[0]


def test_plain_values_stay_as_they_are_and_others_are_quoted():
    assert loggable("read") == "read"
    assert loggable("script:sgcache") == "script:sgcache"
    assert loggable("a b") == '"a b"'
    assert loggable('say "hi"\\') == '"say \\"hi\\"\\\\"'
    assert loggable("x" * 500) == '"' + "x" * 100 + '"'


def test_a_secret_holding_quotes_and_backslashes_is_scrubbed_from_json_lines():
    secret = 'se"cr\\et-key'
    register_secret(secret)
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "key=%s", (secret,), None)
    for formatter in (JSONFormatter(), TextFormatter()):
        line = formatter.format(record)
        assert secret not in line and json.dumps(secret)[1:-1] not in line
        assert "********" in line


def test_json_lines_are_one_json_object_each():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    log = logging.getLogger("sgcache.test_logs")
    log.addHandler(handler)
    try:
        log.warning("event=x value=%s", "two\nlines")
    finally:
        log.removeHandler(handler)
    [line] = stream.getvalue().splitlines()
    assert json.loads(line)["msg"] == "event=x value=two\nlines"
