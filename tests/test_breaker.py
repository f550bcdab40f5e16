"""The circuit breaker in front of the site (``sgcache.upstream.Breaker``), on an injected clock.

Closed: calls go through and failures are counted; ``failures`` in a row open it. Open: calls
are refused for ``cooldown`` seconds from the moment it opened. Half-open (the cooldown is
over): one trial call at a time goes through; its success closes the breaker, its failure
opens it again for another cooldown.
"""

from __future__ import annotations

import pytest

from sgcache.config import SiteConfig
from sgcache.upstream import Breaker, SiteUnavailable, Upstream


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def breaker(clock):
    return Breaker(failures=3, cooldown=10.0, clock=clock)


def fail(breaker: Breaker, times: int, error: str = "connection refused") -> None:
    for _ in range(times):
        breaker.failure(error)


def test_a_new_breaker_is_closed_and_lets_every_call_through(breaker):
    assert breaker.state == "closed"
    assert [breaker.allow() for _ in range(5)] == [True] * 5
    assert breaker.retry_in() == 0.0
    assert breaker.last_error is None


def test_failures_below_the_threshold_keep_it_closed(breaker):
    fail(breaker, 2)
    assert breaker.state == "closed"
    assert breaker.allow() is True
    assert breaker.last_error == "connection refused"


def test_the_threshold_th_failure_in_a_row_opens_it(breaker):
    fail(breaker, 3)
    assert breaker.state == "open"
    assert breaker.allow() is False
    assert breaker.retry_in() == 10.0


def test_a_threshold_of_one_opens_on_the_first_failure(clock):
    b = Breaker(failures=1, cooldown=5.0, clock=clock)
    b.failure("HTTP 503")
    assert b.state == "open"
    assert b.allow() is False


def test_a_success_resets_the_count_of_failures_in_a_row(breaker):
    fail(breaker, 2)
    breaker.success()
    fail(breaker, 2)
    assert breaker.state == "closed"
    breaker.failure("one more")
    assert breaker.state == "open"


def test_open_refuses_every_call_until_the_cooldown_is_over(breaker, clock):
    fail(breaker, 3)
    clock.advance(9.99)
    assert breaker.state == "open"
    assert breaker.allow() is False
    assert breaker.retry_in() == pytest.approx(0.01)


def test_retry_in_counts_down_with_the_clock(breaker, clock):
    fail(breaker, 3)
    clock.advance(3)
    assert breaker.retry_in() == pytest.approx(7.0)
    clock.advance(100)
    assert breaker.retry_in() == 0.0


def test_the_cooldown_ends_exactly_at_cooldown_seconds(breaker, clock):
    fail(breaker, 3)
    clock.advance(10.0)
    assert breaker.state == "half-open"


def test_half_open_lets_exactly_one_trial_call_through(breaker, clock):
    fail(breaker, 3)
    clock.advance(10)
    assert breaker.allow() is True
    assert [breaker.allow() for _ in range(3)] == [False] * 3  # the trial is still out
    assert breaker.state == "half-open"


def test_a_successful_trial_closes_it(breaker, clock):
    fail(breaker, 3, "HTTP 502")
    clock.advance(10)
    assert breaker.allow() is True
    breaker.success()
    assert breaker.state == "closed"
    assert [breaker.allow() for _ in range(3)] == [True] * 3
    assert breaker.retry_in() == 0.0
    assert breaker.last_error is None


def test_after_a_successful_trial_it_takes_threshold_failures_again_to_open(breaker, clock):
    fail(breaker, 3)
    clock.advance(10)
    breaker.allow()
    breaker.success()
    fail(breaker, 2)
    assert breaker.state == "closed"


def test_a_failed_trial_opens_it_again_for_a_whole_cooldown(breaker, clock):
    fail(breaker, 3)
    clock.advance(15)
    assert breaker.allow() is True
    breaker.failure("timed out")
    assert breaker.state == "open"
    assert breaker.allow() is False
    assert breaker.retry_in() == 10.0  # counted from the failed trial, not from the first opening
    assert breaker.last_error == "timed out"
    clock.advance(10)
    assert breaker.state == "half-open"
    assert breaker.allow() is True


def test_a_released_trial_lets_another_trial_through(breaker, clock):
    """A trial that ended without a verdict on the site (a bad request) frees the slot."""
    fail(breaker, 3)
    clock.advance(10)
    assert breaker.allow() is True
    breaker.release()
    assert breaker.state == "half-open"
    assert breaker.allow() is True
    assert breaker.allow() is False


def test_a_late_failure_while_open_does_not_extend_the_cooldown(breaker, clock):
    """A call that started before the breaker opened and fails afterwards is not a trial."""
    fail(breaker, 3)
    clock.advance(5)
    breaker.failure("late")
    assert breaker.retry_in() == 5.0
    clock.advance(5)
    assert breaker.state == "half-open"


def test_on_failure_hears_every_failure_open_or_not(breaker):
    heard: list[str] = []
    breaker.on_failure = heard.append
    fail(breaker, 4, "HTTP 504")
    assert heard == ["HTTP 504"] * 4


def test_last_error_is_the_latest_failure(breaker):
    breaker.failure("connection refused")
    breaker.failure("HTTP 503")
    assert breaker.last_error == "HTTP 503"


def test_an_open_breaker_makes_the_upstream_refuse_without_calling_the_site(clock):
    """Nothing listens on port 9: had a request been sent, it would fail with another message."""
    up = Upstream(SiteConfig(base_url="http://127.0.0.1:9", breaker_failures=1, breaker_cooldown=30.0))
    try:
        up.breaker.clock = clock
        up.breaker.failure("connection refused")
        clock.advance(4)
        with pytest.raises(SiteUnavailable) as raised:
            up.call("read", [{}, {"type": "Shot"}])
        assert raised.value.message == ("the Shotgun site http://127.0.0.1:9 is unavailable (connection refused); "
                                        "sgcache will try it again in 26 s")
        assert raised.value.maybe_applied is False
    finally:
        up.close()
