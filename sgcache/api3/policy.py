"""Who may have answers from the cache, and which rows: ``auth.groups``, deny by default.

A caller's permission group (see :mod:`sgcache.api3.identity`) maps to one of three modes:

- ``all``: every row sgcache caches (groups that see everything on the site: admins, managers,
  the API Admin group of sgcache's own script, which is ``all`` unless listed otherwise);
- ``visible_projects``: only what the site shows *that caller*, learned by asking the site as the
  caller: the Project ids it can read (one paged read) and, per cached type, whether it can read
  the type at all and which fields it is shown (one probe each). Rows of other projects, hidden
  types and hidden fields are never answered from the cache;
- ``passthrough``: every request goes to the site.

Everything else passes through: a group not listed, a caller whose identity or group is unknown,
a group switched off by a failed shadow check (see :mod:`sgcache.api3.shadow`), and, whatever its
group, a caller that ``auth.cached_scripts`` leaves out.
"""

from __future__ import annotations

import concurrent.futures
import logging
from dataclasses import dataclass

from sgcache.api3.identity import Claim, Identity, IdentityBook
from sgcache.api3.memory import Expiring, Flights
from sgcache.config import AuthConfig
from sgcache.query import Uncertain
from sgcache.query.paths import Visibility
from sgcache.store.tables import Tables
from sgcache.upstream import SiteUnavailable, Upstream

log = logging.getLogger(__name__)

#: Visibilities remembered at most per process.
MAX_VISIBILITIES = 2_000
#: Probes of one caller's types sent to the site at once (fewer when the process may have fewer
#: requests on the site at once: site.max_concurrent).
PROBE_CONCURRENCY = 4


@dataclass(frozen=True)
class Decision:
    """What one caller gets: ``mode`` all or visible_projects with its identity, or passthrough with why."""

    mode: str
    identity: Identity | None = None
    reason: str = ""

    @property
    def group(self) -> str:
        return (self.identity.group if self.identity is not None else None) or "-"


@dataclass(eq=False)
class Policy:
    """Decides per caller; learns and remembers what visible_projects callers may see."""

    config: AuthConfig
    #: who callers are (and the site and clock this policy asks and counts with)
    identities: IdentityBook
    #: the cache's tables (None: no cache; every caller passes through)
    tables: Tables | None
    #: the name of sgcache's own script, whose group is ``all`` unless listed
    own_script: str

    def __post_init__(self) -> None:
        self.upstream: Upstream = self.identities.upstream
        self.clock = self.identities.clock
        self._visibility: Expiring[str, _Learned] = Expiring(MAX_VISIBILITIES, self.config.visibility_ttl,
                                                             clock=self.clock)
        self._flights: Flights[tuple[str, frozenset[str]], Visibility] = Flights()
        #: requests made to the site to learn visibility
        self.probes = 0

    def describe(self) -> str:
        """The policy in one line, for the startup log."""
        listed = ", ".join(f"{code}={mode}" for code, mode in sorted(self.config.groups.items())) or "none listed"
        scripts = f"; only scripts {', '.join(self.config.cached_scripts)}" if self.config.cached_scripts else ""
        return (f"groups: {listed}; the group of script {self.own_script!r} is all unless listed; every other "
                f"caller passes through{scripts}")

    def forget_all(self) -> None:
        self._visibility.clear()

    def own_group(self) -> str | None:
        own = self.identities.lookup(Claim("script", self.own_script))
        return own.group if own is not None else None

    def mode_of(self, group: str | None) -> str:
        if group is None:
            return "passthrough"
        listed = self.config.groups.get(group)
        if listed is not None:
            return listed
        return "all" if group == self.own_group() else "passthrough"

    def decide(self, auth: dict | None, tripped: frozenset[str] = frozenset()) -> Decision:
        """The mode for this caller (asks the site who it is when not remembered; raises
        :class:`~sgcache.upstream.SiteUnavailable` when the site cannot be asked)."""
        allowed = self.config.cached_scripts
        if allowed and not (isinstance(auth, dict) and auth.get("script_name") in allowed
                            and not auth.get("sudo_as_login")):
            return Decision("passthrough", reason="caller_not_in_cached_scripts")
        identity = self.identities.resolve(auth)
        if identity is None:
            return Decision("passthrough", reason="identity_unknown")
        if identity.group is None:
            return Decision("passthrough", identity, "group_unknown")
        if identity.group in tripped:
            return Decision("passthrough", identity, "group_switched_off")
        mode = self.mode_of(identity.group)
        if mode == "passthrough":
            listed = identity.group in self.config.groups
            return Decision("passthrough", identity, "group_passthrough" if listed else "group_not_listed")
        return Decision(mode, identity)

    # --- visible_projects ---------------------------------------------------------------------------

    def visibility(self, auth: dict, identity: Identity, types: list[str]) -> Visibility:
        """What this caller may see among ``types``, asked of the site as the caller when not remembered."""
        key = identity.label
        now = self.clock()
        held, learned = self._visibility.get(key)
        if held and learned.checked.issuperset(types):
            return learned.visibility
        return self._flights.run((key, frozenset(types)), lambda: self._learn_now(auth, key, types, now))

    def _learn_now(self, auth: dict, key: str, types: list[str], now: float) -> Visibility:
        learned = self._learn(auth, types)
        self._visibility.put(key, learned, since=now)
        return learned.visibility

    def _learn(self, auth: dict, types: list[str]) -> _Learned:
        projects = self._visible_projects(auth)
        if projects is None:
            # Without the caller's projects no row of a project type can be placed: pass through.
            raise Uncertain("restricted_projects_unknown", "the site refused the caller a read of Project")
        # More probes at once than the process has turns on the site would only queue for them,
        # and a probe that waits past site.busy_wait fails the caller's read.
        width = min(PROBE_CONCURRENCY, self.upstream.turns or PROBE_CONCURRENCY)
        with concurrent.futures.ThreadPoolExecutor(max_workers=width, thread_name_prefix="sgcache-probe") as pool:
            probed = dict(zip(types, pool.map(lambda t: self._probe(auth, t), types), strict=True))
        visible = {t: hidden for t, (seen, hidden) in probed.items() if seen}
        log.info("event=visibility_learned projects=%d types=%d hidden_types=%d", len(projects), len(visible),
                 len(types) - len(visible))
        return _Learned(Visibility(frozenset(projects), visible), frozenset(types))

    def _read_as(self, auth: dict, args: dict) -> dict | None:
        """The caller's own read (its results), or None when the site refuses it."""
        self.probes += 1
        reply = self.upstream.call("read", [auth, args])
        if reply.status != 200:
            raise SiteUnavailable(f"the site answered a visibility probe with HTTP {reply.status}")
        if reply.fault() is not None:
            return None
        try:
            return reply.read_results()
        except ValueError:
            raise SiteUnavailable("the site's answer to a visibility probe is not a read's results") from None

    def _visible_projects(self, auth: dict) -> set[int] | None:
        """The ids of every Project the caller can read (None: the site refused it the type)."""
        out: set[int] = set()
        page = 1
        while True:
            results = self._read_as(auth, {
                "type": "Project", "return_fields": ["id"], "filters": {"logical_operator": "and", "conditions": []},
                "return_only": "active", "include_archived_projects": True,
                "sorts": [{"field_name": "id", "direction": "asc"}],
                "paging": {"entities_per_page": 500, "current_page": page},
                "return_paging_info_without_counts": True})
            if results is None:
                return None if page == 1 else out
            out.update(e["id"] for e in results["entities"] if isinstance(e, dict) and isinstance(e.get("id"), int))
            if not (results.get("paging_info") or {}).get("has_next_page"):
                return out
            page += 1

    def _probe(self, auth: dict, type_name: str) -> tuple[bool, frozenset[str] | None]:
        """(can the caller read the type, its hidden fields or None when no row showed them)."""
        et = self.tables[type_name] if self.tables is not None and type_name in self.tables else None
        fields = sorted(n for n, h in et.fields.items() if h.cached and n != "id") if et is not None else []
        results = self._read_as(auth, {
            "type": type_name, "return_fields": ["id", *fields],
            "filters": {"logical_operator": "and", "conditions": []}, "return_only": "active",
            "include_archived_projects": True, "paging": {"entities_per_page": 1, "current_page": 1},
            "return_paging_info_without_counts": True})
        if results is None:
            return False, None
        entities = results["entities"]
        if not entities or not isinstance(entities[0], dict):
            return True, None
        shown = set(entities[0])
        return True, frozenset(f for f in fields if f not in shown)


@dataclass(frozen=True)
class _Learned:
    visibility: Visibility
    #: the types asked about (visible or not)
    checked: frozenset[str]
