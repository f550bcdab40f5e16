"""Who may call the stand-in site: its scripts and people, session tokens, and authentication of
each call (script key, login and password, session token, ``sudo_as_login``).
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sgcache.mocksite.faults import AUTH_FAULT, Fault
from sgcache.mocksite.permissions import Group

SESSION_LIFETIME = dt.timedelta(hours=1)


@dataclass
class Script:
    name: str
    key: str
    generate_events: bool = True
    id: int = 0
    group: str = "api_admin"  # the code of its permission group (see permissions.GROUPS)


@dataclass
class Human:
    login: str
    password: str
    name: str
    id: int = 0
    group: str = "artist"


@dataclass
class Caller:
    """Who is calling: the user written to created_by/updated_by and events, and who really is."""

    user: dict  # link to the HumanUser or ApiUser that acts
    actual: dict | None  # the script behind a sudo_as_login call
    generate_events: bool
    session_uuid: str | None
    name: str
    #: the effective user's permission group when it limits what it sees (set for each call)
    group: Group | None = None


DEFAULT_SCRIPTS = [Script("sgcache", "sgcache-demo-key"), Script("quiet-script", "quiet-demo-key", False)]
DEFAULT_HUMANS = [Human("artist", "artist-password", "Ann Artist")]


def same_secret(given: Any, expected: str) -> bool:
    """Constant-time comparison of a secret the caller sent (any JSON value) with the real one."""
    if not isinstance(given, str):
        return False
    return secrets.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8"))


def _no_credentials() -> Fault:
    return Fault("Authentication required: send script_name and script_key, user_login and "
                 "user_password, or session_token", AUTH_FAULT)


class Accounts:
    """The site's scripts, people and sessions. ``group_of`` gives a user's permission group."""

    def __init__(self, clock: Callable[[], dt.datetime], group_of: Callable[[dict], Group | None]):
        self.clock = clock
        self.group_of = group_of
        self.scripts: dict[str, Script] = {}
        self.humans: dict[str, Human] = {}
        #: HumanUser id -> may it log in (not retired, not disabled); set by the site
        self.may_log_in: Callable[[int], bool] = lambda _id: True
        #: token -> (kind "script"|"user", name, expiry)
        self.sessions: dict[str, tuple[str, str, dt.datetime]] = {}

    def _as_script(self, script: Script, session_uuid: str | None) -> Caller:
        return Caller({"type": "ApiUser", "id": script.id}, None, script.generate_events, session_uuid,
                      f"script:{script.name}")

    def _as_human(self, human: Human, session_uuid: str | None) -> Caller:
        return Caller({"type": "HumanUser", "id": human.id}, None, True, session_uuid, f"user:{human.login}")

    def _identify(self, auth: dict, session_uuid: str | None) -> Caller:
        """The caller the credentials name (before any sudo)."""
        if auth.get("script_name") is not None or auth.get("script_key") is not None:
            script = self.scripts.get(auth.get("script_name"))
            if script is None or not same_secret(auth.get("script_key"), script.key):
                raise Fault(f"Can't authenticate script '{auth.get('script_name')}'", AUTH_FAULT)
            return self._as_script(script, session_uuid)
        if auth.get("user_login") is not None:
            human = self.humans.get(auth.get("user_login"))
            if human is None or not same_secret(auth.get("user_password"), human.password) \
                    or not self.may_log_in(human.id):
                raise Fault(f"Can't authenticate user '{auth.get('user_login')}'", AUTH_FAULT)
            return self._as_human(human, session_uuid)
        if auth.get("session_token") is None:
            raise _no_credentials()
        session = self.sessions.get(str(auth["session_token"]))
        if session is None:
            raise Fault("Can't authenticate session token: unknown or revoked", AUTH_FAULT)
        kind, name, expires = session
        if expires <= self.clock():
            raise Fault("Can't authenticate session token: it has expired", AUTH_FAULT)
        if kind == "script":
            return self._as_script(self.scripts[name], session_uuid)
        return self._as_human(self.humans[name], session_uuid)

    def authenticate(self, auth: Any, method: str) -> Caller:
        if not isinstance(auth, dict):
            raise _no_credentials()
        session_uuid = auth.get("session_uuid")
        caller = self._identify(auth, session_uuid)
        sudo = auth.get("sudo_as_login")
        if sudo is not None and not isinstance(sudo, str):
            raise Fault("Can't sudo: sudo_as_login must be a login name", AUTH_FAULT)
        if sudo:
            human = self.humans.get(sudo)
            if human is None or not self.may_log_in(human.id):
                raise Fault(f"Can't sudo as '{sudo}': no such user", AUTH_FAULT)
            caller = Caller({"type": "HumanUser", "id": human.id}, caller.user, caller.generate_events,
                            session_uuid, f"{caller.name} as user:{sudo}")
        group = self.group_of(caller.user)
        caller.group = group if group is not None and group.restricted else None
        return caller

    def new_session(self, caller: Caller) -> dict:
        """``get_session_token``: a token for the caller (for a sudo call, the impersonated user)."""
        token = secrets.token_hex(16)
        kind, _, name = caller.name.partition(":")
        if " as " in caller.name:  # sudo: the session is the impersonated user's
            kind, name = "user", caller.name.rsplit(":", 1)[1]
        self.sessions[token] = (kind, name, self.clock() + SESSION_LIFETIME)
        return {"session_id": token}

    def expire_sessions(self) -> int:
        """Every session issued so far expires now; how many there are."""
        past = self.clock() - dt.timedelta(seconds=1)
        for token, (kind, name, _) in list(self.sessions.items()):
            self.sessions[token] = (kind, name, past)
        return len(self.sessions)

    def session_user(self, token: str | None) -> bool:
        session = self.sessions.get(token or "")
        return session is not None and session[2] > self.clock()

    def user_written(self, row: dict, password: str | None) -> None:
        """A HumanUser row was created or updated through the API (``password``: the
        ``password_proxy`` it was given, None when unchanged): its login and password are the
        ones it logs in with from then on."""
        held = next((h for h in self.humans.values() if h.id == row["id"]), None)
        login = row.get("login")
        if held is not None and held.login != login:
            self.humans.pop(held.login, None)  # the login changed: the old one no longer works
            held.login = login
            if isinstance(login, str) and login:
                self.humans[login] = held
        if password is None or not isinstance(login, str) or not login:
            if held is not None and password is not None:
                held.password = password
            return
        if held is None:
            held = Human(login, password, row.get("name") or login, id=row["id"])
            self.humans[login] = held
        held.password = password
