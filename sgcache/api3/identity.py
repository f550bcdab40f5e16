"""Who is asking: the person or script behind a request's credentials, and its permission group.

The site decides what a caller sees from the caller's permission group
(``HumanUser.permission_rule_set`` / ``ApiUser.permission_rule_set``), so before any cached answer
sgcache must know who the caller is *as the site understands it*:

- ``script_name`` + ``script_key``: that script (``ApiUser`` whose ``firstname`` is the name);
- ``user_login`` + ``user_password``: that person (``HumanUser`` by ``login``);
- ``session_token``: the person or script the token was minted for, known only when the token
  was minted through sgcache (``get_session_token`` passing through); any other token has no
  known identity;
- any of these with ``sudo_as_login``: the impersonated person, whose permissions the site
  applies to every action.

Credentials of several kinds sent together have no identity here: which of them the site honours
is its business, and guessing could hand one caller another's view. Identities are looked up on
the site as sgcache's own script, remembered for ``auth.verify_ttl`` seconds, and forgotten at
once when the watcher reports a change to people, scripts or permission groups.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from sgcache.api3.memory import Expiring, Flights
from sgcache.store.state import StateTables
from sgcache.upstream import Upstream

log = logging.getLogger(__name__)

#: Identities remembered at most per process (the oldest are forgotten first).
MAX_IDENTITIES = 10_000
#: Session tokens minted through sgcache are kept this long (a site's sessions last less).
SESSION_KEEP = dt.timedelta(days=7)

_KINDS = (
    ("script", ("script_name", "script_key")),
    ("person", ("user_login", "user_password", "auth_token")),
    ("session", ("session_token",)),
)


@dataclass(frozen=True)
class Claim:
    """Who the credentials say the caller is: ``kind`` is script, person or session (a token)."""

    kind: str
    name: str


@dataclass(frozen=True)
class Identity:
    """A caller as the site knows it."""

    kind: str  # script | person
    name: str  # the script's name or the person's login
    group: str | None  # the permission group's code; None when none is set
    user: dict | None = None  # {"type": "HumanUser" | "ApiUser", "id": ...}

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.name}"


def claim(auth: dict | None) -> Claim | None:
    """The identity ``auth`` claims, or None when it cannot be told (no credentials, or several kinds)."""
    if not isinstance(auth, dict):
        return None
    kinds = [kind for kind, keys in _KINDS if any(auth.get(k) is not None for k in keys)]
    if len(kinds) != 1:
        return None
    sudo = auth.get("sudo_as_login")
    if sudo is not None:
        return Claim("person", sudo) if isinstance(sudo, str) and sudo else None
    kind = kinds[0]
    key = {"script": "script_name", "person": "user_login", "session": "session_token"}[kind]
    name = auth.get(key)
    return Claim(kind, name) if isinstance(name, str) and name else None


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class SessionBook:
    """Session tokens minted through sgcache and whom they belong to, shared by every proxy process
    through the cache database (only each token's SHA-256 is stored)."""

    def __init__(self, engine: sa.Engine, st: StateTables):
        self.engine = engine
        self.st = st

    def record(self, token: str, owner: Claim) -> None:
        t = self.st.sessions
        now = dt.datetime.now(dt.UTC)
        insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        stmt = insert(t).values(token_sha256=token_digest(token), kind=owner.kind, name=owner.name, created_at=now)
        with self.engine.begin() as conn:
            conn.execute(stmt.on_conflict_do_update(index_elements=[t.c.token_sha256],
                                                    set_={"kind": owner.kind, "name": owner.name, "created_at": now}))
            conn.execute(sa.delete(t).where(t.c.created_at < now - SESSION_KEEP))

    def owner(self, token: str) -> Claim | None:
        t = self.st.sessions
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.c.kind, t.c.name).where(t.c.token_sha256 == token_digest(token))).first()
        return Claim(row[0], row[1]) if row is not None else None


@dataclass(eq=False)
class IdentityBook:
    """Looks up callers' identities on the site (as sgcache's own script) and remembers them."""

    upstream: Upstream
    #: sgcache's own script credentials, which ask the site who a caller is
    own_auth: dict
    #: the session tokens minted through the proxy and their owners (None: not kept)
    sessions: SessionBook | None
    #: seconds an identity is remembered (auth.verify_ttl)
    ttl: float
    _: KW_ONLY
    clock: Callable[[], float] = time.monotonic
    #: calls made to the site to learn an identity
    lookups: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._known: Expiring[Claim, Identity | None] = Expiring(MAX_IDENTITIES, self.ttl, clock=self.clock)
        self._tokens: Expiring[Claim, Claim | None] = Expiring(MAX_IDENTITIES, self.ttl, clock=self.clock)
        self._flights: Flights[Claim, Identity | None] = Flights()

    def forget_all(self) -> None:
        self._known.clear()
        self._tokens.clear()

    def resolve(self, auth: dict | None) -> Identity | None:
        """The caller's identity, or None when it cannot be known.

        Raises :class:`~sgcache.upstream.SiteUnavailable` when the site cannot be asked; an
        answer that is not a well-formed read (the script may not read people, say) is None.
        """
        claimed = claim(auth)
        if claimed is None:
            return None
        if claimed.kind == "session":
            claimed = self._session_owner(claimed.name)
            if claimed is None:
                return None  # a token sgcache never saw minted: nobody known
        return self.lookup(claimed)

    def _session_owner(self, token: str) -> Claim | None:
        """Whom a token was minted for, remembered for the TTL (a token's owner never changes, and
        one minted elsewhere never becomes known)."""
        if self.sessions is None:
            return None
        key = Claim("session", token_digest(token))
        now = self.clock()
        held, owner = self._tokens.get(key)
        if held:
            return owner
        try:
            owner = self.sessions.owner(token)
        except sa.exc.SQLAlchemyError as e:
            log.warning("event=session_lookup_failed error=%r", type(e).__name__)
            return None
        self._tokens.put(key, owner, since=now)
        return owner

    def lookup(self, who: Claim) -> Identity | None:
        now = self.clock()
        held, identity = self._known.get(who)
        if held:
            return identity
        return self._flights.run(who, lambda: self._learn(who, now))

    def _learn(self, who: Claim, now: float) -> Identity | None:
        identity = self._ask_site(who)
        self._known.put(who, identity, since=now)
        return identity

    def _ask_site(self, who: Claim) -> Identity | None:
        if who.kind == "script":
            entity_type, key_field = "ApiUser", "firstname"
        else:
            entity_type, key_field = "HumanUser", "login"
        self.lookups += 1
        reply = self.upstream.call("read", [self.own_auth, {
            "type": entity_type,
            "return_fields": ["id", key_field, "permission_rule_set", "permission_rule_set.PermissionRuleSet.code"],
            "filters": {"logical_operator": "and",
                        "conditions": [{"path": key_field, "relation": "is", "values": [who.name]}]},
            "return_only": "active", "paging": {"entities_per_page": 2, "current_page": 1},
            "return_paging_info_without_counts": True}])
        try:
            entities = reply.read_results()["entities"]
        except ValueError:
            log.warning("event=identity_lookup_failed kind=%s status=%d hint='check that site.script_name may read "
                        "%s and PermissionRuleSet'", who.kind, reply.status, entity_type)
            return None
        # The site compares text without case; a login is one exact person.
        exact = [e for e in entities if e.get(key_field) == who.name]
        if len(exact) != 1:
            return None
        found = exact[0]
        group = found.get("permission_rule_set.PermissionRuleSet.code")
        if group is None and isinstance(found.get("permission_rule_set"), dict):
            return None  # a group whose code cannot be read: unknown, so no cached answers
        return Identity(who.kind, who.name, group if isinstance(group, str) else None,
                        {"type": entity_type, "id": found.get("id")})
