"""Log lines: one event per line whatever a request holds, and no secret in any format."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest
import requests

from sgcache.logs import JSONFormatter, TextFormatter, loggable, parse_pairs, register_secret, setup_logging

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


def json_line(msg: str, *args, exc_info=None, level=logging.INFO) -> dict:
    """What the JSON format writes for one record, decoded (one line, valid JSON)."""
    record = logging.LogRecord("sgcache.test_logs", level, __file__, 1, msg, args, exc_info)
    line = JSONFormatter().format(record)
    assert "\n" not in line
    return json.loads(line)


def test_each_key_value_pair_of_a_json_line_is_a_key_of_its_own():
    out = json_line("event=request id=%s method=%s status=%d ms=%.1f caller=%s", "6b2f0c1e", "read", 200, 21.25,
                    "script:publish")
    assert out == {"time": out["time"], "level": "INFO", "logger": "sgcache.test_logs", "event": "request",
                   "id": "6b2f0c1e", "method": "read", "status": 200, "ms": 21.2, "caller": "script:publish"}
    assert list(out)[:4] == ["time", "level", "logger", "event"]
    assert out["time"].endswith("Z") and "msg" not in out


def test_numbers_stay_numbers_and_everything_else_stays_text():
    out = json_line("event=x count=%d rate=%.0f share=0.5 neg=-3 padded=007 hex=%s flag=true big=1e999", 12, 99.6,
                    "1e2f")
    assert (out["count"], out["rate"], out["share"], out["neg"]) == (12, 100, 0.5, -3)
    assert (out["padded"], out["hex"], out["flag"], out["big"]) == ("007", "1e2f", "true", "1e999")


def test_quoted_values_with_spaces_survive_in_every_quoting_the_messages_use():
    out = json_line("event=x reason='scanner.interval is 0' error=%r path=%s ids=%s n=%d", "it's gone",
                    loggable("/a b/c"), [1, 2, 3], 4)
    assert out["reason"] == "scanner.interval is 0"
    assert out["error"] == "it's gone"
    assert out["path"] == "/a b/c"
    assert out["ids"] == "[1, 2, 3]"
    assert out["n"] == 4 and "msg" not in out


def test_a_message_without_pairs_keeps_msg():
    out = json_line("database error: %s", "connection refused")
    assert out["msg"] == "database error: connection refused"
    assert set(out) == {"time", "level", "logger", "msg"}


def test_words_outside_the_pairs_keep_the_whole_message_in_msg():
    out = json_line("event=scan_failed entity_type=Shot; retrying at the next interval")
    assert out["event"] == "scan_failed" and out["entity_type"] == "Shot;"
    assert out["msg"] == "event=scan_failed entity_type=Shot; retrying at the next interval"


def test_a_pair_named_like_the_formatters_own_keys_stays_in_msg():
    out = json_line("event=x level=debug logger=%s time=0", "other")
    assert (out["level"], out["logger"]) == ("INFO", "sgcache.test_logs")
    assert "debug" not in out.values() and out["msg"] == "event=x level=debug logger=other time=0"


def test_an_exception_is_a_text_field_of_valid_json():
    try:
        raise ValueError('bad "value"\nsecond line')
    except ValueError:
        out = json_line("event=internal_error id=%s", "abc", exc_info=sys.exc_info(), level=logging.ERROR)
    assert out["event"] == "internal_error" and out["id"] == "abc" and out["level"] == "ERROR"
    assert isinstance(out["exc"], str)
    assert out["exc"].startswith("Traceback") and 'ValueError: bad "value"\nsecond line' in out["exc"]


@pytest.mark.parametrize("value", ['say "hi"', "two\nlines", 'back\\slash "and\r\nmore', "tab\tand\x00nul", "é ☃"])
def test_a_value_with_quotes_or_newlines_stays_valid_json(value):
    for quoted in (loggable(value), repr(value)):
        out = json_line("event=x value=%s after=1", quoted)
        assert out["value"] == value and out["after"] == 1 and "msg" not in out


def test_a_quoted_value_cannot_forge_a_key_in_json():
    out = json_line("event=request method=%s status=%d", loggable('read" status=500 level=CRITICAL x="'), 200)
    assert out["status"] == 200 and out["level"] == "INFO" and "x" not in out
    assert out["method"] == 'read" status=500 level=CRITICAL x="'


def test_text_and_json_lines_carry_the_same_keys():
    record = logging.LogRecord("sgcache.web", logging.INFO, __file__, 1,
                               "event=request id=%s outcome=%s status=%d detail=%r", ("r1", "cache", 200, "cached 3"),
                               None)
    text = TextFormatter().format(record)
    assert text.endswith(" sgcache.web event=request id=r1 outcome=cache status=200 detail='cached 3'")
    pairs, complete = parse_pairs(text.split(" sgcache.web ", 1)[1])
    out = json.loads(JSONFormatter().format(record))
    assert complete and {k: v for k, v in out.items() if k not in ("time", "level", "logger")} == pairs


def test_setup_logging_json_writes_structured_lines(monkeypatch):
    stream = io.StringIO()
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    setup_logging("info", "json", stream=stream)
    logging.getLogger("sgcache.test_logs").info("event=scan_done entity_type=%s rows=%d", "Shot", 42)
    [line] = stream.getvalue().splitlines()
    out = json.loads(line)
    assert (out["event"], out["entity_type"], out["rows"], out["logger"]) == ("scan_done", "Shot", 42,
                                                                             "sgcache.test_logs")
