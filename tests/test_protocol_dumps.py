"""How answers are written (sgcache.api3.protocol.dumps): orjson where it writes the json module's
bytes, the json module for everything it declines."""

from __future__ import annotations

import datetime as dt
import json
import random
from dataclasses import dataclass

import pytest

from sgcache.api3.protocol import dumps


def reference(payload) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def random_value(rng: random.Random, depth: int = 0):
    kind = rng.choice(["str", "int", "float", "bool", "none", "list", "dict"] if depth < 5 else ["str", "int"])
    if kind == "str":
        alphabet = "aZ09 _%\\\"'/\n\t\r\x00\x1f\x7fé€𝄞\u2028\u2029"
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))
    if kind == "int":
        return rng.choice([0, -1, 1, 2**31, -(2**53) - 1, 2**63 - 1, -(2**63), rng.randrange(-10**6, 10**6)])
    if kind == "float":
        return rng.choice([0.0, -0.0, 1.5, -0.25, 1e16, 1e-7, 123456789.125, 5e-324, 1.7976931348623157e308])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "none":
        return None
    if kind == "list":
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {f"k{i}{rng.choice('aé€')}": random_value(rng, depth + 1)
            for i in range(rng.randrange(4))}


@pytest.mark.parametrize("seed", range(40))
def test_what_orjson_writes_reads_back_as_the_json_module_s_answer(seed):
    rng = random.Random(seed)
    payload = {"results": {"entities": [random_value(rng) for _ in range(20)]}}
    written = dumps(payload)
    assert json.loads(written) == json.loads(reference(payload))
    if not _has_float(payload):  # floats may be spelled otherwise (1e16 against 1e+16): same number
        assert written == reference(payload)


def _has_float(value) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_has_float(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_float(v) for v in value)
    return False


def test_a_page_of_entities_is_written_byte_for_byte_as_before():
    entities = [{"type": "Version", "id": i, "code": f"v{i:04d}_é", "entity": {"type": "Shot", "id": i // 3,
                                                                             "name": f"SH{i:03d}"},
                 "sg_status_list": "rev", "created_at": "2026-12-01T18:00:00Z", "sg_uploaded_movie": None}
                for i in range(500)]
    payload = {"results": {"entities": entities, "paging_info": {"has_next_page": False}}}
    assert dumps(payload) == reference(payload)


@pytest.mark.parametrize("payload, expected", [
    ({1: "a", None: "b"}, b'{"1":"a","null":"b"}'),  # keys that are not strings: the json module's way
    ({"n": 2**70}, b'{"n":1180591620717411303424}'),  # past 64 bits
    ({"s": "a\ud800b"}, b'{"s":"a\\ud800b"}'),  # a lone surrogate, echoed from a request: escaped
])
def test_what_orjson_declines_is_written_by_the_json_module(payload, expected):
    assert dumps(payload) == expected


def test_nesting_deeper_than_orjson_goes_is_still_written():
    payload: list = []
    for _ in range(400):
        payload = [payload]
    assert dumps(payload) == reference(payload)


@dataclass
class Point:
    x: int


class Name(str):
    pass


@pytest.mark.parametrize("value", [dt.datetime(2026, 12, 1, tzinfo=dt.UTC), dt.date(2026, 12, 1), Point(1)])
def test_values_json_cannot_write_are_refused_as_before_not_written_orjson_s_way(value):
    with pytest.raises(TypeError):
        dumps({"v": value})


def test_a_str_subclass_is_written_as_its_text():
    assert dumps({"v": Name("x")}) == b'{"v":"x"}'


def test_non_finite_floats_go_out_as_null():
    assert json.loads(dumps({"a": float("nan"), "b": float("inf")})) == {"a": None, "b": None}
