"""How the proxy judges callers' credentials (``sgcache.api3.auth.Verifier``), with a fake site and clock.

The site is the only judge: the verifier asks it with the smallest read that needs the same
rights, remembers a yes for ``auth.verify_ttl`` seconds and a rejection (error_code 102) for
``auth.failure_ttl`` seconds, and remembers nothing for any other answer. When the site cannot
be asked, a remembered verdict still counts and anything else is the site's unavailability.
"""

from __future__ import annotations

import json

import pytest

from sgcache.api3 import auth as auth_module
from sgcache.api3.auth import Verifier
from sgcache.api3.protocol import AUTH_FAULT, Fault
from sgcache.config import AuthConfig
from sgcache.upstream import Reply, SiteUnavailable

SCRIPT = {"script_name": "pipeline", "script_key": "s3cret-key"}
PERSON = {"user_login": "artist", "user_password": "hunter2"}
READ_OK = {"results": {"entities": [], "paging_info": {"has_next_page": False}}}
REJECTED = {"exception": True, "message": "Can't authenticate script 'pipeline'", "error_code": AUTH_FAULT}


def reply(payload, status: int = 200) -> Reply:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return Reply(status, [("content-type", "application/json")], raw, None)


class Clock:
    def __init__(self):
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


class FakeSite:
    """Answers each credential check with the next of ``answers`` (a Reply, or an exception to raise)."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls: list[tuple[str, list]] = []

    def call(self, method: str, params: list, *, headers=None) -> Reply:
        self.calls.append((method, params))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
def clock():
    return Clock()


def verifier(site, clock, verify_ttl: float = 60.0, failure_ttl: float = 10.0) -> Verifier:
    return Verifier(AuthConfig(verify_ttl=verify_ttl, failure_ttl=failure_ttl), site, clock=clock)


# --- asking the site ---------------------------------------------------------------------------------


def test_the_check_is_the_smallest_read_of_the_type_with_the_callers_credentials(clock):
    site = FakeSite(reply(READ_OK))
    assert verifier(site, clock).verify(SCRIPT, "Shot") is True
    assert site.calls == [("read", [SCRIPT, {
        "type": "Shot", "return_fields": ["id"],
        "filters": {"logical_operator": "and", "conditions": [{"path": "id", "relation": "is", "values": [0]}]},
        "return_only": "active", "paging": {"entities_per_page": 1, "current_page": 1},
        "return_paging_info_without_counts": True}])]


def test_an_accepted_caller_is_remembered_for_verify_ttl(clock):
    site = FakeSite(reply(READ_OK))
    v = verifier(site, clock, verify_ttl=60)
    assert v.verify(SCRIPT, "Shot") is True
    clock.now += 59.9
    assert v.verify(SCRIPT, "Asset") is True
    assert v.checks == 1 and len(site.calls) == 1


def test_an_accepted_caller_is_asked_about_again_once_verify_ttl_is_over(clock):
    site = FakeSite(reply(READ_OK))
    v = verifier(site, clock, verify_ttl=60)
    v.verify(SCRIPT, "Shot")
    clock.now += 60  # a verdict expires at exactly its ttl
    assert v.remembered(SCRIPT) is None
    assert v.verify(SCRIPT, "Shot") is True
    assert v.checks == 2


def test_a_rejected_caller_gets_the_sites_fault_and_it_is_remembered_for_failure_ttl(clock):
    site = FakeSite(reply(REJECTED))
    v = verifier(site, clock, failure_ttl=10)
    with pytest.raises(Fault) as first:
        v.verify(SCRIPT, "Shot")
    assert (first.value.message, first.value.code) == ("Can't authenticate script 'pipeline'", AUTH_FAULT)
    clock.now += 9.9
    with pytest.raises(Fault) as again:
        v.verify(SCRIPT, "Shot")
    assert (again.value.message, again.value.code) == ("Can't authenticate script 'pipeline'", AUTH_FAULT)
    assert v.checks == 1
    clock.now += 0.1
    with pytest.raises(Fault):
        v.verify(SCRIPT, "Shot")
    assert v.checks == 2


def test_a_rejection_without_a_message_reads_authentication_failed(clock):
    v = verifier(FakeSite(reply({"exception": True, "error_code": AUTH_FAULT})), clock)
    with pytest.raises(Fault, match="^Authentication failed$"):
        v.verify(SCRIPT, "Shot")
    fault = v.remembered_fault(SCRIPT)
    assert (fault.message, fault.code) == ("Authentication failed", AUTH_FAULT)


@pytest.mark.parametrize("answer", [
    pytest.param(reply({"exception": True, "message": "no permission", "error_code": 103}), id="other-fault"),
    pytest.param(reply({"exception": True, "message": "boom"}), id="fault-without-code"),
    pytest.param(reply(READ_OK, status=500), id="http-500"),
    pytest.param(reply(REJECTED, status=503), id="rejection-in-http-503"),
    pytest.param(reply(b"<html>login</html>"), id="html-page"),
    pytest.param(reply({"results": 5}), id="results-not-a-read"),
    pytest.param(reply({"results": {"entities": [1]}}), id="entities-not-objects"),
    pytest.param(reply({"no": "results"}), id="json-without-results"),
])
def test_any_other_answer_is_no_verdict_and_is_not_remembered(clock, answer):
    site = FakeSite(answer)
    v = verifier(site, clock)
    assert v.verify(SCRIPT, "Shot") is False
    assert v.remembered(SCRIPT) is None
    assert v.verify(SCRIPT, "Shot") is False
    assert v.checks == 2


def test_without_an_upstream_nothing_is_verified(clock):
    v = verifier(None, clock)
    assert v.verify(SCRIPT, "Shot") is False
    assert v.checks == 0


# --- when the site cannot be asked --------------------------------------------------------------------


def test_a_site_that_cannot_be_asked_is_the_callers_problem_when_nothing_is_remembered(clock):
    v = verifier(FakeSite(SiteUnavailable("the Shotgun site is unavailable")), clock)
    with pytest.raises(SiteUnavailable, match="unavailable"):
        v.verify(SCRIPT, "Shot")
    assert v.remembered(SCRIPT) is None


def test_a_remembered_yes_still_counts_while_the_site_is_down(clock):
    site = FakeSite(reply(READ_OK), SiteUnavailable("down"))
    v = verifier(site, clock)
    v.verify(SCRIPT, "Shot")
    clock.now += 30
    assert v.verify(SCRIPT, "Shot") is True
    assert len(site.calls) == 1
    clock.now += 30  # expired: the site must be asked, and it is down
    with pytest.raises(SiteUnavailable):
        v.verify(SCRIPT, "Shot")


def test_a_remembered_rejection_still_counts_while_the_site_is_down(clock):
    site = FakeSite(reply(REJECTED), SiteUnavailable("down"))
    v = verifier(site, clock)
    with pytest.raises(Fault):
        v.verify(SCRIPT, "Shot")
    with pytest.raises(Fault) as raised:
        v.verify(SCRIPT, "Shot")
    assert raised.value.code == AUTH_FAULT
    assert len(site.calls) == 1


# --- what a verdict is keyed by ----------------------------------------------------------------------


def test_verdicts_are_per_credentials(clock):
    site = FakeSite(reply(READ_OK), reply(REJECTED))
    v = verifier(site, clock)
    assert v.verify(SCRIPT, "Shot") is True
    with pytest.raises(Fault):
        v.verify({**SCRIPT, "script_key": "wrong"}, "Shot")
    assert v.verify(SCRIPT, "Shot") is True
    assert v.checks == 2


def test_sudo_as_login_makes_other_credentials(clock):
    site = FakeSite(reply(READ_OK))
    v = verifier(site, clock)
    v.verify(SCRIPT, "Shot")
    assert v.remembered({**SCRIPT, "sudo_as_login": "artist"}) is None
    v.verify({**SCRIPT, "sudo_as_login": "artist"}, "Shot")
    assert v.checks == 2


def test_the_order_of_keys_does_not_matter(clock):
    v = verifier(FakeSite(reply(READ_OK)), clock)
    v.verify({"user_login": "artist", "user_password": "hunter2"}, "Shot")
    assert v.remembered({"user_password": "hunter2", "user_login": "artist"}).ok is True


def test_the_key_keeps_no_secret_and_differs_between_processes(clock):
    one, two = verifier(None, clock), verifier(None, clock)
    key = one.key(PERSON)
    assert "hunter2" not in key and "artist" not in key
    assert len(key) == 64 and int(key, 16) >= 0  # an HMAC-SHA256 hex digest
    assert one.key(PERSON) == key
    assert two.key(PERSON) != key  # a random salt per verifier


# --- ttl settings, forgetting, learning from passthroughs ---------------------------------------------


def test_a_ttl_of_zero_remembers_nothing(clock):
    site = FakeSite(reply(READ_OK))
    v = verifier(site, clock, verify_ttl=0)
    v.verify(SCRIPT, "Shot")
    v.verify(SCRIPT, "Shot")
    assert v.checks == 2


def test_a_failure_ttl_of_zero_asks_again_after_a_rejection(clock):
    v = verifier(FakeSite(reply(REJECTED)), clock, failure_ttl=0)
    for _ in range(2):
        with pytest.raises(Fault):
            v.verify(SCRIPT, "Shot")
    assert v.checks == 2


def test_forget_all_drops_every_verdict(clock):
    site = FakeSite(reply(READ_OK))
    v = verifier(site, clock)
    v.verify(SCRIPT, "Shot")
    v.verify(PERSON, "Shot")
    v.forget_all()
    assert v.remembered(SCRIPT) is None and v.remembered(PERSON) is None
    v.verify(SCRIPT, "Shot")
    assert v.checks == 3


def test_the_oldest_verdicts_are_forgotten_first_beyond_max_entries(clock, monkeypatch):
    monkeypatch.setattr(auth_module, "MAX_ENTRIES", 3)
    v = verifier(None, clock)
    creds = [{"script_name": f"s{i}", "script_key": "k"} for i in range(4)]
    for c in creds[:3]:
        v.remember(c, True)
    v.remember(creds[0], True)  # remembered again: now the newest
    v.remember(creds[3], True)
    assert [v.remembered(c) is not None for c in creds] == [True, False, True, True]


@pytest.mark.parametrize("payload, status, expected", [
    pytest.param(READ_OK, 200, True, id="results-accepts"),
    pytest.param({"results": 5}, 200, True, id="any-results-accepts"),
    pytest.param(REJECTED, 200, False, id="auth-fault-rejects"),
    pytest.param({"exception": True, "message": "no", "error_code": 103}, 200, None, id="other-fault-nothing"),
    pytest.param(READ_OK, 500, None, id="http-500-nothing"),
    pytest.param(b"<html>login</html>", 200, None, id="html-nothing"),
])
def test_a_passthrough_answer_teaches_a_verdict(clock, payload, status, expected):
    v = verifier(None, clock)
    answer = reply(payload, status)
    v.learn(SCRIPT, answer, answer.fault())
    verdict = v.remembered(SCRIPT)
    assert (None if verdict is None else verdict.ok) is expected


def test_a_passthrough_rejection_is_answered_with_the_sites_fault_next_time(clock):
    v = verifier(None, clock)
    answer = reply(REJECTED)
    v.learn(SCRIPT, answer, answer.fault())
    with pytest.raises(Fault) as raised:
        v.verify(SCRIPT, "Shot")
    assert (raised.value.message, raised.value.code) == ("Can't authenticate script 'pipeline'", AUTH_FAULT)


def test_a_passthrough_without_credentials_teaches_nothing(clock):
    v = verifier(None, clock)
    answer = reply(READ_OK)
    v.learn(None, answer, None)
    v.learn({}, answer, None)
    assert v.remembered({}) is None
