"""Flights (sgcache.api3.memory): concurrent calls that share a key make one call between them."""

from __future__ import annotations

import threading
import time

import pytest

from sgcache.api3.memory import Flights


def together(n: int, call) -> list:
    """``call()`` from ``n`` threads started at once; what each got (a value or an exception)."""
    start, got = threading.Barrier(n), []

    def run():
        start.wait()
        try:
            got.append(call())
        except Exception as e:  # noqa: BLE001 - the test looks at what each thread got
            got.append(e)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return got


def slow(calls: list, value):
    def call():
        calls.append(1)
        time.sleep(0.2)
        return value
    return call


def test_callers_arriving_while_a_call_runs_take_its_result():
    flights, calls = Flights(), []
    assert together(8, lambda: flights.run("artist", slow(calls, 42))) == [42] * 8
    assert len(calls) == 1


def test_the_call_s_exception_reaches_every_caller_that_waited_for_it():
    flights, calls = Flights(), []

    def failing():
        calls.append(1)
        time.sleep(0.2)
        raise RuntimeError("site down")

    got = together(4, lambda: flights.run("artist", failing))
    assert len(calls) == 1
    assert [str(e) for e in got] == ["site down"] * 4


def test_other_keys_do_not_wait_and_a_later_call_runs_again():
    flights, calls = Flights(), []
    keys = iter(["a", "b", "c", "d"])
    lock = threading.Lock()

    def next_key():
        with lock:
            return next(keys)

    started = time.monotonic()
    assert sorted(together(4, lambda: flights.run(next_key(), slow(calls, 1)))) == [1] * 4
    assert len(calls) == 4 and time.monotonic() - started < 0.6  # side by side, not one after another
    assert flights.run("a", slow(calls, 2)) == 2  # the first flight ended: asked again
    with pytest.raises(ZeroDivisionError):
        flights.run("a", lambda: 1 / 0)
    assert flights.run("a", lambda: 3) == 3  # a failed flight leaves nothing behind
