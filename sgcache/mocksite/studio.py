"""A deterministic, realistic VFX / animation studio for the stand-in site.

:func:`build_studio` fills a :class:`~sgcache.mocksite.site.MockSite` with two years of a studio's
history: departments, people, groups, pipeline steps, published file types and storages; several
projects (one archived, one still bidding) with sequences, shots (with cut data), assets of several
types linked to shots, tasks with assignees, dates and bids, versions with frame ranges, published
files with local paths, playlists, notes with replies, time logs and disk locations; and a few
percent of retired shots, tasks, versions and notes.

Why: the tests, the demo (``--data demo``) and the benchmarks need a site that looks like a real
one, at sizes from about 5,000 entities (scale 1) to 100,000 (scale 20) and beyond, and exactly
the same every time for one seed. Nothing depends on the clock or the global random generator:
every date is placed before :data:`ANCHOR`.

How: everything is planned first (so, for example, a shot's status can follow its tasks), then
loaded type by type in :data:`LOAD_ORDER`, each type sorted by creation time, so ids grow with
``created_at`` as on a real site. Loading goes through ``MockSite.load_entity``: no events, and the
site keeps reverse links (``Sequence.shots``, ``Version.playlists``, ``Shot.notes``...) in step, so
only one side of each pair is set here. Any type, field or list value the schema lacks is skipped,
so a smaller schema gets a smaller studio rather than an error.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sgcache.mocksite.site import MockSite
from sgcache.schema.model import Field

#: Every date is before this moment (a Monday); created_at values spread over the two years before it.
ANCHOR = dt.datetime(2024, 1, 8, 18, 0, tzinfo=dt.UTC)
HISTORY_START = ANCHOR - dt.timedelta(days=730)

# Per unit of scale; the rest (people, steps, types) stays about the same size.
SHOTS_PER_SCALE = 130
ASSETS_PER_SCALE = 39
USERS = 40
USERS_PER_SCALE = 3

#: Types load in this order (a link always points to a type loaded before).
LOAD_ORDER = (
    "ApiUser", "Department", "HumanUser", "Group", "Step", "PublishedFileType", "LocalStorage", "Project",
    "Sequence", "Asset", "Shot", "Task", "Version", "PublishedFile", "Playlist", "Note", "Reply", "TimeLog",
    "CustomEntity01",
)

#: Canonical status -> codes to try, in order, in a field's valid_values (sites rename statuses).
STATUS_ALIASES = {
    "wtg": ("wtg", "pndng"), "rdy": ("rdy", "wtg"), "ip": ("ip", "prog"), "hld": ("hld", "wtg"),
    "fin": ("fin", "cmpt", "apr", "final"), "omt": ("omt", "na"), "cbb": ("cbb", "fin", "cmpt"),
    "rev": ("rev", "pndng", "ip"), "vwd": ("vwd", "apr", "fin", "cmpt"), "na": ("na", "omt"),
    "opn": ("opn", "ip"), "clsd": ("clsd", "fin", "cmpt"), "cmpt": ("cmpt", "fin"), "act": ("act",),
    "dis": ("dis",),
}


@dataclass(frozen=True)
class _DeptSpec:
    name: str
    code: str
    color: str
    weight: int  # share of the staff


DEPARTMENTS = (
    _DeptSpec("Art", "ART", "191,144,211", 2), _DeptSpec("Modeling", "MOD", "112,173,71", 4),
    _DeptSpec("Rigging", "RIG", "255,192,0", 3), _DeptSpec("Surfacing", "SRF", "237,125,49", 3),
    _DeptSpec("Layout", "LAY", "91,155,213", 3), _DeptSpec("Animation", "ANM", "68,114,196", 8),
    _DeptSpec("FX", "FX", "255,99,71", 4), _DeptSpec("Lighting", "LGT", "255,217,102", 5),
    _DeptSpec("Compositing", "CMP", "165,165,165", 6), _DeptSpec("Editorial", "EDT", "158,72,14", 1),
    _DeptSpec("Production", "PRD", "38,68,120", 3), _DeptSpec("Pipeline", "PIP", "99,99,99", 2),
)


@dataclass(frozen=True)
class _StepSpec:
    code: str
    short: str
    entity_type: str
    color: str
    department: str
    tasks: tuple[str, ...]  # task names; more than one: one is picked
    work_type: str  # the published file type of the work file
    extra_type: str | None  # a second publish (caches, renders), sometimes
    days: tuple[int, int]  # working days between start and due
    versions: tuple[int, int]  # versions of a finished task


# The step codes mirror the pivot columns of schema/demo-site.yml (step_5 "Anm", step_8 "Comp"...).
STEPS = (
    _StepSpec("Art", "ART", "Asset", "191,144,211", "Art", ("Concept", "Design"), "Photoshop Image", None,
              (3, 8), (1, 3)),
    _StepSpec("Model", "MOD", "Asset", "112,173,71", "Modeling", ("Model",), "Maya Scene", "Alembic Cache",
              (4, 12), (1, 3)),
    _StepSpec("Rig", "RIG", "Asset", "255,192,0", "Rigging", ("Rig",), "Maya Scene", None, (4, 10), (1, 2)),
    _StepSpec("Surface", "SRF", "Asset", "237,125,49", "Surfacing", ("Surfacing", "Lookdev"), "Maya Scene",
              "Texture", (3, 10), (1, 3)),
    _StepSpec("Layout", "LAY", "Shot", "91,155,213", "Layout", ("Layout",), "Maya Scene", "Alembic Cache",
              (2, 6), (1, 2)),
    _StepSpec("Anm", "ANM", "Shot", "68,114,196", "Animation", ("Anim",), "Maya Scene", "Alembic Cache",
              (5, 15), (2, 5)),
    _StepSpec("FX", "FX", "Shot", "255,99,71", "FX", ("FX", "FX Smoke", "FX Water", "FX Debris"), "Houdini Scene",
              "VDB Cache", (5, 15), (1, 4)),
    _StepSpec("Light", "LGT", "Shot", "255,217,102", "Lighting", ("Lighting",), "Maya Scene", "Rendered Image",
              (3, 10), (1, 4)),
    _StepSpec("Comp", "CMP", "Shot", "165,165,165", "Compositing", ("Comp",), "Nuke Script", "Rendered Image",
              (3, 10), (2, 5)),
    _StepSpec("Editorial", "EDT", "Project", "158,72,14", "Editorial", ("Editorial", "Conform"), "Movie", None,
              (20, 60), (2, 4)),
)
SHOT_STEP_CHANCE = {"Layout": 0.9, "Anm": 0.85, "FX": 0.3, "Light": 0.95, "Comp": 1.0}
ASSET_STEP_CHANCE = {  # by asset type keyword; "other" for types this table does not know
    "character": {"Art": 0.7, "Model": 1.0, "Rig": 1.0, "Surface": 1.0},
    "prop": {"Art": 0.3, "Model": 1.0, "Rig": 0.15, "Surface": 1.0},
    "environment": {"Art": 0.8, "Model": 1.0, "Surface": 1.0},
    "vehicle": {"Art": 0.5, "Model": 1.0, "Rig": 0.8, "Surface": 1.0},
    "matte painting": {"Art": 1.0},
    "other": {"Model": 1.0, "Surface": 0.8},
}

#: code, short name, extension, content type, storage
FILE_TYPES = (
    ("Photoshop Image", "psd", "psd", "image/vnd.adobe.photoshop", "primary"),
    ("Maya Scene", "maya", "ma", "text/plain", "primary"),
    ("Nuke Script", "nuke", "nk", "text/plain", "primary"),
    ("Houdini Scene", "hip", "hip", "application/octet-stream", "primary"),
    ("Alembic Cache", "abc", "abc", "application/octet-stream", "primary"),
    ("VDB Cache", "vdb", "vdb", "application/octet-stream", "renders"),
    ("Rendered Image", "exr", "exr", "image/x-exr", "renders"),
    ("Texture", "tex", "tx", "image/tiff", "primary"),
    ("Movie", "mov", "mov", "video/quicktime", "primary"),
    ("USD Layer", "usd", "usd", "application/octet-stream", "primary"),
)
#: code, linux, mac, windows root, description
STORAGES = (
    ("primary", "/prod", "/Volumes/prod", "P:", "Project work and publishes"),
    ("renders", "/renders", "/Volumes/renders", "R:", "Rendered frames and caches"),
    ("archive", "/archive", "/Volumes/archive", "A:", "Archived projects (nearline)"),
)
STORAGE_ROOTS = {s[0]: s[1] for s in STORAGES}

FIRST_NAMES = (
    "Alex", "Amara", "Ben", "Carmen", "Chen", "Dana", "Diego", "Elena", "Emeka", "Farah", "Felix", "Grace", "Hana",
    "Hugo", "Ines", "Isaac", "Jonas", "Julia", "Kai", "Kenji", "Lea", "Liam", "Lucia", "Malik", "Maya", "Mateo",
    "Nadia", "Nina", "Omar", "Oscar", "Priya", "Quentin", "Rosa", "Ravi", "Sara", "Sofia", "Tariq", "Theo", "Uma",
    "Victor", "Wen", "Yara", "Yusuf", "Zoe", "Noah",
)
LAST_NAMES = (
    "Abara", "Becker", "Castillo", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ito", "Jensen", "Kowalski",
    "Laurent", "Moreau", "Nakamura", "Okafor", "Petrov", "Quinn", "Rossi", "Sato", "Schmidt", "Tanaka", "Usman",
    "Varga", "Walsh", "Xu", "Yilmaz", "Zhang", "Novak", "Silva", "Kim", "Park", "Costa", "Murphy", "Olsen", "Patel",
    "Reyes", "Hughes", "Lindqvist", "Mendes", "Brennan", "Ahmed", "Horvat", "Iyer", "Keller", "Lopez",
)
PROJECT_NAMES = (
    "Aurora", "Blackwater", "Copper Sky", "Driftwood", "Ember Falls", "Frostbite", "Glass Harbor", "Hollow Pines",
    "Iron Tide", "Juniper Road", "Kestrel", "Lantern Bay", "Moonwake", "Northern Lights", "Old Orchard",
    "Paper Tigers", "Quiet Storm", "Red Meridian", "Salt and Stone", "Tin Soldiers",
)
PROJECT_TYPES = ("Feature Film", "Feature Film", "Short Film", "Commercial", "Effects", "Game Cinematic")
ASSET_NAMES = {
    "character": ("Mara", "Tobias", "CaptainReyes", "OldFisherman", "Crow", "Guard", "Wolf", "GhostGirl", "Inventor",
                  "Robot", "Queen", "Smuggler", "Child", "Villager"),
    "prop": ("Lantern", "Sword", "PocketWatch", "Map", "Compass", "Rope", "Crate", "Barrel", "LampPost", "Book",
             "Key", "Cup", "Radio", "Umbrella", "Rifle", "Bicycle", "Chest", "Anchor", "Telescope", "Chair"),
    "environment": ("Harbor", "ForestClearing", "Lighthouse", "MarketStreet", "Cave", "TrainStation", "Rooftops",
                    "ThroneRoom", "Workshop", "Beach"),
    "vehicle": ("FishingBoat", "SteamTrain", "Biplane", "Motorbike", "CargoTruck", "Airship", "Rowboat", "Tram"),
    "matte painting": ("Skyline", "MountainRange", "StormSky", "CityExtension", "Coastline"),
    "other": ("Element", "Setpiece", "Crowd", "Foliage", "Debris"),
}
ASSET_WEIGHTS = {"character": 3.0, "prop": 4.0, "environment": 2.0, "vehicle": 1.5, "matte painting": 1.0,
                 "other": 1.0}
FRAMINGS = ("Wide shot", "Medium shot", "Close-up", "Over-the-shoulder", "Tracking shot", "Aerial view", "Insert")
ACTIONS = ("running toward camera", "looking out to sea", "drawing the sword", "climbing the stairs",
           "arguing with the guard", "reacting to the explosion", "walking through the crowd", "hiding behind crates",
           "turning to camera", "reading the map")
SHOT_TAGS = ("hero", "fx-heavy", "client-fav", "stereo", "trailer", "reshoot")
VERSION_NOTES = ("First pass", "Blocking pass", "Addressed notes from dailies", "Timing tweaks", "Updated lighting",
                 "Fixed edge flicker", "New camera from layout", "Client notes addressed", "Final polish",
                 "Tech check fixes", "Higher res render", "Matchmove updated", "Wip for sup review")
NOTE_TEXTS = ("Can we push the rim light a bit more?", "Timing feels slow in the middle, tighten by 4 frames.",
              "Edges are chattering around the hair, please check the key.", "Looks great, approved.",
              "Match the grade to the previous shot.", "Smoke needs more detail at the base.",
              "Contact with the ground looks off on the landing.", "Client asks for a warmer sky.",
              "Please fix the intersection on the left hand.", "Too much motion blur on the fast move.",
              "Scale of the boat reads too small against the harbor.", "Needs a slate before it goes to client.")
REPLY_TEXTS = ("Will do.", "Addressed in the next version.", "Done, see the next version.",
               "Can we discuss in rounds?", "Good catch, fixing.", "Waiting on an updated layout for this one.",
               "Thanks!", "Agreed, pushing it further.")
TIME_LOG_TEXTS = ("Blocking", "Polish", "Notes", "Setup", "Renders", "Dailies", "Tech check", "Research", "Fixes")


class _Ref:
    """One planned entity; ``id`` is set when it is loaded."""

    __slots__ = ("type", "data", "created_at", "created_by", "retired", "id")

    def __init__(self, entity_type: str, data: dict, created_at: dt.datetime, created_by: Any, retired: bool):
        self.type = entity_type
        self.data = data
        self.created_at = created_at
        self.created_by = created_by
        self.retired = retired
        self.id: int | None = None


@dataclass
class _Person:
    ref: _Ref | None
    name: str
    department: str
    active: bool
    lead: bool
    joined: dt.datetime


@dataclass
class _Project:
    ref: _Ref | None
    name: str
    tank: str
    start: dt.datetime
    now: dt.datetime  # the anchor, or the day an archived project ended
    work_start: dt.date  # when tasks begin (a bidding project's are in the future)
    delivery: dt.date  # when the last shot is due (past for the archived one)
    archived: bool
    storage: str
    people: list[_Person] = field(default_factory=list)


@dataclass
class _Owner:
    """What tasks hang off: a shot, an asset or a project."""

    ref: _Ref | None
    code: str
    kind: str
    project: _Project
    folder: str
    created: dt.datetime
    begin: dt.date  # when its first task starts
    frames: tuple[int, int] = (1, 120)  # cut range (shots) or a turntable
    working: tuple[int, int] = (1, 120)  # head in to tail out
    asset_kind: str = "other"  # assets: the keyword of their type
    characters: bool = False  # shots: a character is in it (so it needs animation)
    retired: bool = False
    status: str = "wtg"  # canonical, once the tasks are planned
    tasks: list[_Task] = field(default_factory=list)


@dataclass
class _GroupPick:
    """A task assigned to a whole team (a Group) rather than to people."""

    ref: _Ref | None


@dataclass
class _Task:
    ref: _Ref | None
    owner: _Owner
    step: _StepSpec
    start: dt.date
    due: dt.date
    status: str
    assignees: list[_Person | _GroupPick]


@dataclass
class _Version:
    ref: _Ref | None
    task: _Task
    code: str
    created: dt.datetime
    user: _Person | None
    reviewed: bool
    playlist: _Ref | None = None


def build_studio(site: MockSite, scale: int = 1, seed: int = 0) -> dict[str, int]:
    """Load a studio into ``site`` (no events); return how many entities of each type were created.

    ``scale`` 1 is about 5,000 entities, 20 about 100,000; the same ``seed`` gives the same data.
    """
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    studio = _Studio(site, scale, random.Random(seed))
    studio.plan()
    counts = studio.load()
    for entity_type, n in assign_demo_people(site, random.Random(seed + 1)).items():
        counts[entity_type] = counts.get(entity_type, 0) + n
    return counts


#: The people of the demo studio who can log in, one per permission group (docs/mocksite.rst).
DEMO_PEOPLE = (("admin", "admin-password", "Ada Admin", "admin"),
               ("manager", "manager-password", "Max Manager", "manager"),
               ("artist", "artist-password", "Ann Artist", "artist"),
               ("vendor", "vendor-password", "Vic Vendor", "vendor"))


def _link_both(site: MockSite, project: dict, person: dict) -> None:
    """Add ``person`` to ``project``'s users, and the project to the person's projects (no events)."""
    db = site.emu._db
    users = db["Project"][project["id"]].setdefault("users", [])
    if all(u["id"] != person["id"] for u in users):
        users.append({"type": "HumanUser", "id": person["id"]})
    if "projects" in site.schema["HumanUser"].fields:
        projects = db["HumanUser"][person["id"]].setdefault("projects", []) or []
        db["HumanUser"][person["id"]]["projects"] = projects
        if all(p["id"] != project["id"] for p in projects):
            projects.append({"type": "Project", "id": project["id"]})


def assign_demo_people(site: MockSite, rng: random.Random) -> dict[str, int]:
    """Add the demo logins (one per permission group) and what they work on.

    ``artist`` is on two of the active projects, ``vendor`` on one, with six tasks assigned
    (shot and asset tasks), notes addressed to it and versions it made; a "Template Project"
    nobody is assigned to shows the template rule.
    """
    added: dict[str, int] = {}
    if "PermissionRuleSet" not in site.schema or "Project" not in site.emu._db:
        return added
    from sgcache.mocksite.site import Human

    db = site.emu._db
    logins = {h.login for h in site.humans.values()}
    people = {}
    for k, (login, password, name, group) in enumerate(DEMO_PEOPLE):
        if login not in logins:
            human = site.add_human(Human(login, password, name, group=group))
            # Dated just before the anchor, as the studio's last hires: nothing depends on the clock.
            row = db["HumanUser"][human.id]
            row["created_at"] = row["updated_at"] = ANCHOR - dt.timedelta(minutes=30 - k)
            added["HumanUser"] = added.get("HumanUser", 0) + 1
        people[login] = {"type": "HumanUser", "id": site.humans[login].id}
    template = site.load_entity("Project", {"name": "Template Project"}, created_at=ANCHOR - dt.timedelta(minutes=20))
    added["Project"] = 1
    active = sorted(i for i, p in db["Project"].items() if not p.get("archived") and i != template
                    and p.get("sg_status") in (None, "Active") and not p["__retired"])
    if not active:
        return added
    for project_id in active[:2]:
        _link_both(site, {"id": project_id}, people["artist"])
    vendor_project = active[-1]
    _link_both(site, {"id": vendor_project}, people["vendor"])

    def in_project(entity_type: str) -> list[dict]:
        rows = db.get(entity_type, {}).values()
        return [r for r in rows if not r["__retired"] and (r.get("project") or {}).get("id") == vendor_project]

    vendor = {"type": "HumanUser", "id": people["vendor"]["id"]}
    tasks = in_project("Task")
    on_assets = [t for t in tasks if (t.get("entity") or {}).get("type") == "Asset"]
    on_shots = [t for t in tasks if (t.get("entity") or {}).get("type") == "Shot"]
    picked = rng.sample(on_assets, min(2, len(on_assets)))
    for task in picked + rng.sample(on_shots, min(6 - len(picked), len(on_shots))):
        task["task_assignees"] = [*(task.get("task_assignees") or []), vendor]
    notes = in_project("Note")
    for note in rng.sample(notes, min(3, len(notes))):
        note["addressings_to"] = [*(note.get("addressings_to") or []), vendor]
    versions = in_project("Version")
    for version in rng.sample(versions, min(2, len(versions))):
        version["created_by"] = vendor
    site.version += 1
    return added


# --- dates ---------------------------------------------------------------------------------------


def _weekday(day: dt.date) -> dt.date:
    """The day, or the Monday after it if it falls on a weekend."""
    return day + dt.timedelta(days=max(0, 7 - day.weekday())) if day.weekday() >= 5 else day


def _add_workdays(day: dt.date, count: int) -> dt.date:
    weeks, rest = divmod(count, 5)
    day += dt.timedelta(weeks=weeks)
    for _ in range(rest):
        day = _weekday(day + dt.timedelta(days=1))
    return day


def _workdays(start: dt.date, end: dt.date) -> int:
    """Working days from ``start`` to ``end``, both included."""
    days = (end - start).days + 1
    if days <= 0:
        return 0
    weeks, rest = divmod(days, 7)
    extra = sum(1 for i in range(rest) if (start.weekday() + i) % 7 < 5)
    return weeks * 5 + extra


def _at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=dt.UTC)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


# --- the studio ------------------------------------------------------------------------------------


class _Studio:
    """Plans every entity of the studio, then loads them."""

    def __init__(self, site: MockSite, scale: int, rng: random.Random):
        self.site = site
        self.scale = scale
        self.rng = rng
        self.refs: list[_Ref] = []
        self.people: list[_Person] = []
        self.departments: dict[str, _Ref | None] = {}
        self.team_groups: dict[str, _Ref | None] = {}  # department name -> its team's Group
        self.steps: dict[str, _Ref | None] = {}
        self.file_types: dict[str, _Ref | None] = {}
        self.storages: dict[str, tuple[_Ref | None, tuple]] = {}
        self.import_script: _Ref | None = None
        self._status_cache: dict[tuple[str, str, str], str | None] = {}

    # --- schema helpers ------------------------------------------------------------------------

    def has(self, entity_type: str, field_name: str | None = None) -> bool:
        schema = self.site.schema
        return entity_type in schema and (field_name is None or field_name in schema[entity_type].fields)

    def choices(self, entity_type: str, field_name: str) -> list[str]:
        """The field's valid values, without the placeholders sites ship ("(this list can be customized)")."""
        if not self.has(entity_type, field_name):
            return []
        return [v for v in self.site.schema[entity_type].fields[field_name].valid_values
                if isinstance(v, str) and "(" not in v and "..." not in v and not v.lower().startswith("this list")]

    def status(self, entity_type: str, field_name: str, canonical: str) -> str | None:
        """The field's code for a canonical status (None: leave the field at its default)."""
        key = (entity_type, field_name, canonical)
        if key not in self._status_cache:
            valid = self.choices(entity_type, field_name)
            self._status_cache[key] = next((c for c in STATUS_ALIASES.get(canonical, (canonical,)) if c in valid),
                                           None)
        return self._status_cache[key]

    def prefer(self, entity_type: str, field_name: str, *wanted: str) -> str | None:
        valid = self.choices(entity_type, field_name)
        return next((w for w in wanted if w in valid), None)

    def add(self, entity_type: str, data: dict, at: dt.datetime, by: Any = None, retired: bool = False) -> _Ref | None:
        """Plan one entity (None if the schema has no such type); nothing is created after the anchor."""
        if entity_type not in self.site.schema:
            return None
        ref = _Ref(entity_type, data, min(at, ANCHOR - dt.timedelta(minutes=1)), by, retired)
        self.refs.append(ref)
        return ref

    def moment(self, lo: dt.datetime, hi: dt.datetime) -> dt.datetime:
        """A random time between ``lo`` and ``hi``, moved into working hours when there is room."""
        if hi <= lo:
            return lo
        t = lo + (hi - lo) * self.rng.random()
        if not 8 <= t.hour < 20:
            t = t.replace(hour=self.rng.randint(9, 18))
        return min(max(t, lo), hi).replace(microsecond=0)

    # --- planning --------------------------------------------------------------------------------

    def plan(self) -> None:
        self.plan_import_script()
        self.plan_departments()
        self.plan_people()
        self.plan_permission_groups()
        self.plan_groups()
        self.plan_steps()
        self.plan_file_types()
        self.plan_storages()
        for project, shots, assets in self.plan_projects():
            self.plan_production(project, shots, assets)

    def plan_import_script(self) -> None:
        # Shots and sequences come in from editorial through a script, as at most studios.
        self.import_script = self.add("ApiUser", {
            "firstname": "editorial-import", "lastname": "2.3", "description": "EDL / XML turnover importer",
            "email": "pipeline@studio.example", "generate_event_log_entries": True,
            **self.permission_group("ApiUser", "api_admin")}, HISTORY_START)

    def plan_departments(self) -> None:
        for i, spec in enumerate(DEPARTMENTS):
            self.departments[spec.name] = self.add("Department", {
                "name": spec.name, "code": spec.code, "color": spec.color, "list_order": i + 1,
                "sg_status_list": self.status("Department", "sg_status_list", "act"),
            }, HISTORY_START + dt.timedelta(hours=i))

    def plan_people(self) -> None:
        count = USERS + USERS_PER_SCALE * (self.scale - 1)
        combinations = len(FIRST_NAMES) * len(LAST_NAMES)
        pairs = self.rng.sample(range(combinations), min(count, combinations))
        logins: set[str] = set()
        weights = [d.weight for d in DEPARTMENTS]
        for i in range(count):
            pair = pairs[i % len(pairs)]
            first, last = FIRST_NAMES[pair % len(FIRST_NAMES)], LAST_NAMES[pair // len(FIRST_NAMES)]
            if i >= len(pairs):
                last = f"{last} {i // len(pairs) + 1}"
            # The first of each department is its lead; everyone else by department size.
            dept = DEPARTMENTS[i] if i < len(DEPARTMENTS) else self.rng.choices(DEPARTMENTS, weights)[0]
            self.people.append(self.plan_person(first, last, dept.name, i < len(DEPARTMENTS), logins, i < 0.7 * count))

    def plan_person(self, first: str, last: str, department: str, lead: bool, logins: set[str],
                    founder: bool) -> _Person:
        login = re.sub(r"[^a-z0-9]", "", (first[0] + last).lower())
        while login in logins:
            login += "2"
        logins.add(login)
        # Most people were there from the start; the others joined over the two years.
        joined = HISTORY_START + (dt.timedelta(days=self.rng.uniform(0, 20)) if founder else
                                  dt.timedelta(days=self.rng.uniform(20, 700)))
        joined = self.moment(joined, joined + dt.timedelta(hours=8))
        active = lead or self.rng.random() > 0.07
        name = f"{first} {last}"
        ref = self.add("HumanUser", {
            "login": login, "name": name, "firstname": first, "lastname": last, "email": f"{login}@studio.example",
            "department": self.departments.get(department),
            "sg_status_list": self.status("HumanUser", "sg_status_list", "act" if active else "dis"),
        }, joined)
        return _Person(ref, name, department, active, lead, joined)

    def permission_group(self, entity_type: str, code: str) -> dict:
        """``{"permission_rule_set": link}`` when the schema has permission groups, else nothing."""
        if entity_type not in self.site.schema or "permission_rule_set" not in self.site.schema[entity_type].fields:
            return {}
        link = self.site.rule_set(code)
        return {"permission_rule_set": link} if link else {}

    def plan_permission_groups(self) -> None:
        """Production and the Animation and Compositing leads are managers; the last FX and
        Compositing hires are vendors (freelancers); everyone else is an artist."""
        vendors = []
        for department in ("FX", "Compositing"):
            hires = [p for p in self.people if p.department == department and not p.lead]
            if hires:
                vendors.append(max(hires, key=lambda p: p.joined))
        for person in self.people:
            if person.ref is None:
                continue
            if person.department == "Production" or (person.lead and person.department in ("Animation",
                                                                                              "Compositing")):
                code = "manager"
            elif any(person is v for v in vendors):
                code = "vendor"
            else:
                code = "artist"
            person.ref.data.update(self.permission_group("HumanUser", code))

    def plan_groups(self) -> None:
        at = HISTORY_START + dt.timedelta(days=21)
        for spec in DEPARTMENTS:
            members = [p.ref for p in self.people if p.department == spec.name]
            if spec.name in ("Production", "Editorial", "Pipeline") or not members:
                continue
            self.team_groups[spec.name] = self.add("Group", {"code": f"{spec.name} Team", "users": members}, at)
        leads = [p.ref for p in self.people if p.lead and p.department not in ("Production", "Pipeline")]
        self.add("Group", {"code": "Supervisors", "users": leads}, at)
        office = [p.ref for p in self.people if p.department in ("Production", "Editorial")]
        self.add("Group", {"code": "Production", "users": office}, at)

    def plan_steps(self) -> None:
        for i, spec in enumerate(STEPS):
            self.steps[spec.code] = self.add("Step", {
                "code": spec.code, "short_name": spec.short, "entity_type": spec.entity_type, "color": spec.color,
                "list_order": i + 1, "description": f"{spec.department} ({spec.entity_type} step)",
            }, HISTORY_START + dt.timedelta(days=1, minutes=i))

    def plan_file_types(self) -> None:
        for i, (code, short, ext, _, _) in enumerate(FILE_TYPES):
            self.file_types[code] = self.add("PublishedFileType", {
                "code": code, "short_name": short, "description": f"*.{ext} files",
                "sg_status_list": self.status("PublishedFileType", "sg_status_list", "cmpt"),
            }, HISTORY_START + dt.timedelta(days=1, hours=1, minutes=i))

    def plan_storages(self) -> None:
        for i, spec in enumerate(STORAGES):
            code, linux, mac, windows, description = spec
            ref = self.add("LocalStorage", {"code": code, "linux_path": linux, "mac_path": mac,
                                            "windows_path": windows + "\\", "description": description},
                           HISTORY_START + dt.timedelta(days=1, hours=2, minutes=i))
            self.storages[code] = (ref, spec)

    # --- projects --------------------------------------------------------------------------------

    def plan_projects(self) -> list[tuple[_Project, int, int]]:
        """Projects with their share of shots and assets: the first is archived, the second still bidding."""
        count = 3 + (self.scale + 1) // 2
        kinds = ["archived", "bidding", *["active"] * (count - 2)]
        weights = [0.7, 0.2, *[self.rng.uniform(0.7, 1.4) for _ in range(count - 2)]]
        total = sum(weights)
        out = []
        for i, (kind, weight) in enumerate(zip(kinds, weights, strict=True)):
            name = PROJECT_NAMES[i % len(PROJECT_NAMES)]
            if i >= len(PROJECT_NAMES):
                name = f"{name} {i // len(PROJECT_NAMES) + 1}"
            shots = max(3, round(SHOTS_PER_SCALE * self.scale * weight / total))
            assets = max(2, round(ASSETS_PER_SCALE * self.scale * weight / total))
            # Active projects at evenly spread stages (jittered), so the studio's size varies little by seed.
            stage = (i - 2 + self.rng.uniform(0.2, 0.8)) / (count - 2)
            out.append((self.plan_project(name, kind, shots, stage), shots, assets))
        return out

    def plan_project(self, name: str, kind: str, shots: int, stage: float) -> _Project:
        """One project; ``stage`` (0 to 1): how far into production an active project is."""
        rng = self.rng
        # Active projects are caught mid-production: some work done, some under way, some ahead.
        if kind == "archived":
            start = HISTORY_START + dt.timedelta(days=rng.uniform(25, 60))
            now = start + dt.timedelta(days=rng.uniform(330, 420))
            work_start = (start + dt.timedelta(days=14)).date()
            delivery = (now - dt.timedelta(days=10)).date()
        elif kind == "bidding":
            start = ANCHOR - dt.timedelta(days=rng.uniform(30, 75))
            now, work_start = ANCHOR, (ANCHOR + dt.timedelta(days=rng.uniform(14, 45))).date()
            delivery = work_start + dt.timedelta(days=rng.uniform(150, 300))
        else:
            start = ANCHOR - dt.timedelta(days=120 + 440 * stage)
            now, work_start = ANCHOR, (start + dt.timedelta(days=rng.uniform(14, 40))).date()
            delivery = (ANCHOR + dt.timedelta(days=300 - 240 * stage)).date()
        project = _Project(None, name, _slug(name), self.moment(start, start + dt.timedelta(hours=8)), now,
                           _weekday(work_start), delivery, kind == "archived",
                           "archive" if kind == "archived" else "primary")
        project.people = self.project_people(project)
        status = {"archived": ("Hold", "Active"), "bidding": ("Bidding",), "active": ("Active",)}[kind]
        project_type = rng.choice(self.choices("Project", "sg_type") or [None])
        lead = self.person("Production", project, lead=True)
        project.ref = self.add("Project", {
            "name": name, "tank_name": project.tank, "archived": project.archived,
            "sg_status": self.prefer("Project", "sg_status", *status), "sg_type": project_type,
            "sg_description": f"{project_type or 'Project'}, about {shots} shots.",
            "color": f"{rng.randint(40, 220)},{rng.randint(40, 220)},{rng.randint(40, 220)}",
            "users": [p.ref for p in project.people],
        }, project.start, lead.ref if lead else None)
        return project

    def project_people(self, project: _Project) -> list[_Person]:
        """Who works on a project: leads and production always, most others who had joined by then."""
        joined_by = project.start + dt.timedelta(days=45)
        return [p for p in self.people if p.joined <= joined_by and
                (p.lead or p.department == "Production" or self.rng.random() < (0.75 if p.active else 0.3))]

    def person(self, department: str, project: _Project, *, lead: bool = False) -> _Person | None:
        """Someone (the lead) of ``department`` on the project, else anywhere in the studio."""
        for pool in (project.people, self.people):
            found = [p for p in pool if p.department == department and (p.lead or not lead)]
            if found:
                return self.rng.choice(found)
        return None

    def plan_production(self, project: _Project, shot_count: int, asset_count: int) -> None:
        assets = self.plan_assets(project, asset_count)
        sequences, shots = self.plan_shots(project, shot_count, assets)
        owners = [*assets, *shots, _Owner(project.ref, project.tank, "Project", project, f"{project.tank}/editorial",
                                          project.start, project.work_start)]
        for owner in owners:
            self.plan_tasks(owner)
        self.settle_statuses(assets, sequences, shots)
        versions = [v for owner in owners for task in owner.tasks for v in self.plan_versions(task)]
        self.plan_playlists(project, versions)
        self.plan_notes(project, versions, shots)
        for owner in owners:
            for task in owner.tasks:
                self.plan_time_logs(task)
        self.plan_disk_locations(project, assets, sequences)

    # --- assets and shots ----------------------------------------------------------------------------

    def schedule(self, project: _Project, share: float, lead_days: float = 56) -> dt.date:
        """When work begins on something at ``share`` (0 to 1) of the project's production period."""
        period = max(0, (project.delivery - project.work_start).days - lead_days)
        return _weekday(project.work_start + dt.timedelta(days=period * share))

    def arrival(self, project: _Project, begin: dt.date) -> dt.datetime:
        """When something whose work begins on ``begin`` was created: weeks before, and never after "now"."""
        day = begin - dt.timedelta(days=self.rng.randint(5, 30))
        day = min(day, (project.now - dt.timedelta(days=self.rng.randint(1, 12))).date())
        day = max(_weekday(day), project.start.date())
        t = _at(day, 9) + dt.timedelta(seconds=self.rng.randint(0, 9 * 3600))
        return min(max(t, project.start + dt.timedelta(hours=1)), project.now - dt.timedelta(hours=1))

    def plan_assets(self, project: _Project, count: int) -> list[_Owner]:
        kinds = self.choices("Asset", "sg_asset_type") or [None]
        weights = [ASSET_WEIGHTS.get((k or "other").lower(), 1.0) for k in kinds]
        coordinator = self.person("Production", project)
        used: Counter[str] = Counter()
        assets = []
        for _ in range(count):
            kind = self.rng.choices(kinds, weights)[0]
            keyword = (kind or "other").lower() if (kind or "other").lower() in ASSET_NAMES else "other"
            base = self.rng.choice(ASSET_NAMES[keyword])
            used[base] += 1
            code = base if used[base] == 1 else f"{base}_{used[base]:02d}"
            # Assets are built in the first half of production, before the shots that use them.
            begin = self.schedule(project, self.rng.uniform(0, 0.45), lead_days=30)
            created = self.arrival(project, begin)
            ref = self.add("Asset", {
                "code": code, "project": project.ref, "sg_asset_type": kind,
                "description": f"{kind or 'Asset'} {code} for {project.name}",
            }, created, coordinator.ref if coordinator else None)
            folder = f"{project.tank}/assets/{_slug(kind or 'asset')}/{code}"
            assets.append(_Owner(ref, code, "Asset", project, folder, created, begin, asset_kind=keyword))
        return assets

    def plan_shots(self, project: _Project, count: int,
                   assets: list[_Owner]) -> tuple[list[tuple[_Ref | None, list[_Owner]]], list[_Owner]]:
        """Sequences of 12 to 22 shots on average, turned over one after the other; (sequences, shots)."""
        rng = self.rng
        seq_count = max(1, round(count / rng.uniform(12, 22)))
        sizes = [1] * seq_count
        for _ in range(count - seq_count):
            sizes[rng.randrange(seq_count)] += 1
        by = self.import_script or _by(self.person("Editorial", project))
        sequences: list[tuple[_Ref | None, list[_Owner]]] = []
        shots: list[_Owner] = []
        order = 0
        for k, size in enumerate(sizes):
            code = f"SQ{(k + 1) * 10:03d}"
            # Sequences go through the pipeline one after the other, turned over a few weeks ahead.
            begin = self.schedule(project, (k + rng.uniform(0, 0.5)) / seq_count)
            created = self.arrival(project, begin)
            cast = self.sequence_cast(assets)
            place = cast.get("environment", [None])[0]
            description = f"{place.code if place else 'Opening'} sequence"
            seq = self.add("Sequence", {"code": code, "project": project.ref, "description": description}, created, by)
            members = []
            for n in range(size):
                order += 1
                # The turnover script makes a sequence's shots in cut order, a few seconds apart.
                shot_created = created + dt.timedelta(seconds=20 * (n + 1) + rng.randint(0, 15))
                shot_begin = begin + dt.timedelta(days=rng.randint(0, 10))
                members.append(self.plan_shot(project, seq, code, n, order, shot_created, shot_begin, cast, by))
            sequences.append((seq, members))
            shots += members
            self.link_sequence_assets(seq, cast)
        return sequences, shots

    def sequence_cast(self, assets: list[_Owner]) -> dict[str, list[_Owner]]:
        """The assets a sequence uses, by kind: a few characters, one or two sets, some props and vehicles."""
        by_kind: dict[str, list[_Owner]] = {}
        for asset in assets:
            by_kind.setdefault(asset.asset_kind, []).append(asset)
        limits = {"character": 3, "environment": 2, "prop": 4, "vehicle": 1, "matte painting": 1, "other": 2}
        return {kind: self.rng.sample(pool, min(len(pool), self.rng.randint(1, limits.get(kind, 2))))
                for kind, pool in by_kind.items()}

    def link_sequence_assets(self, seq: _Ref | None, cast: dict[str, list[_Owner]]) -> None:
        # Asset.sequences is set on the asset; the site fills Sequence.assets back.
        if seq is None:
            return
        for pool in cast.values():
            for asset in pool:
                if asset.ref is not None:
                    asset.ref.data.setdefault("sequences", []).append(seq)

    def plan_shot(self, project: _Project, seq: _Ref | None, seq_code: str, n: int, order: int,
                  created: dt.datetime, begin: dt.date, cast: dict[str, list[_Owner]], by: Any) -> _Owner:
        rng = self.rng
        number = (n + 1) * 10 if rng.random() > 0.05 else (n + 1) * 10 - 5  # an inserted shot now and then
        code = f"{seq_code}_SH{number:04d}"
        cut = self.cut_data()
        linked = self.shot_assets(cast)
        character = next((a.code for a in linked if a.asset_kind == "character"), "the crowd")
        place = next((a.code for a in linked if a.asset_kind == "environment"), None)
        description = f"{rng.choice(FRAMINGS)} of {character} {rng.choice(ACTIONS)}" + (f" in the {place}" if place
                                                                                          else "")
        tags = rng.sample(SHOT_TAGS, rng.randint(1, 2)) if rng.random() < 0.25 else None
        retired = rng.random() < 0.03
        ref = self.add("Shot", {
            "code": code, "project": project.ref, "sg_sequence": seq, "description": description, "tag_list": tags,
            "sg_cut_order": order, "assets": [a.ref for a in linked], **cut,
        }, created, by, retired)
        working = (cut["sg_head_in"], cut["sg_tail_out"])
        return _Owner(ref, code, "Shot", project, f"{project.tank}/sequences/{seq_code}/{code}", created, begin,
                      (cut["sg_cut_in"], cut["sg_cut_out"]), working,
                      characters=any(a.asset_kind == "character" for a in linked), retired=retired)

    def cut_data(self) -> dict[str, int]:
        """Cut, head and tail frames that agree with each other (in at 1001, 8 frame handles mostly)."""
        duration = self.rng.randint(24, 240)
        handles = self.rng.choice((8, 8, 8, 12, 16))
        cut_in = 1001
        cut_out = cut_in + duration - 1
        head_in, tail_out = cut_in - handles, cut_out + handles
        return {
            "sg_cut_in": cut_in, "sg_cut_out": cut_out, "sg_cut_duration": duration,
            "sg_head_in": head_in, "sg_tail_out": tail_out, "sg_working_duration": tail_out - head_in + 1,
            "cut_in": cut_in, "cut_out": cut_out, "cut_duration": duration,
            "head_in": head_in, "head_out": cut_in - 1, "head_duration": handles,
            "tail_in": cut_out + 1, "tail_out": tail_out, "tail_duration": handles,
        }

    def shot_assets(self, cast: dict[str, list[_Owner]]) -> list[_Owner]:
        rng = self.rng
        wanted = {"character": (0.85, 2), "environment": (0.9, 1), "prop": (0.5, 2), "vehicle": (0.15, 1),
                  "matte painting": (0.2, 1), "other": (0.2, 1)}
        out = []
        for kind, pool in cast.items():
            chance, most = wanted.get(kind, (0.2, 1))
            if pool and rng.random() < chance:
                out += rng.sample(pool, min(len(pool), rng.randint(1, most)))
        return out

    # --- tasks ----------------------------------------------------------------------------------------

    def plan_tasks(self, owner: _Owner) -> None:
        if owner.ref is None:
            return
        rng = self.rng
        if owner.kind == "Shot":
            chances = dict(SHOT_STEP_CHANCE)
            if not owner.characters:
                chances["Anm"] = 0.2
        elif owner.kind == "Asset":
            chances = ASSET_STEP_CHANCE.get(owner.asset_kind, ASSET_STEP_CHANCE["other"])
        else:
            chances = {"Editorial": 1.0}
        cursor = max(owner.begin, owner.project.work_start)
        for step in STEPS:
            if step.entity_type != owner.kind or rng.random() >= chances.get(step.code, 0.0):
                continue
            start = _weekday(cursor)
            days = rng.randint(*step.days)
            owner.tasks.append(self.plan_task(owner, step, rng.choice(step.tasks), start, days, owner.retired))
            # The next step starts before this one is done (the pipeline overlaps).
            cursor = _add_workdays(start, max(1, round(days * rng.uniform(0.4, 0.8))))
        if rng.random() < 0.03 and owner.tasks:
            # A duplicate made by mistake and deleted: retired, with no versions.
            first = owner.tasks[0]
            self.plan_task(owner, first.step, first.step.tasks[0], first.start, 3, True)

    def plan_task(self, owner: _Owner, step: _StepSpec, content: str, start: dt.date, days: int,
                  retired: bool) -> _Task:
        due = _add_workdays(start, days - 1)
        status = self.task_status(start, due, owner.project.now.date())
        if owner.project.archived and status != "fin":
            status = "hld"  # never finished: left on hold when the project closed
        assignees = self.assignees(owner.project, step, status)
        bid = max(60, round(days * 480 * self.rng.uniform(0.7, 1.2) / 60) * 60)
        # Made with the shot or asset, from the task template.
        created = min(self.moment(owner.created, owner.created + dt.timedelta(days=2)), owner.project.now)
        ref = self.add("Task", {
            "content": content, "entity": owner.ref, "step": self.steps.get(step.code), "project": owner.project.ref,
            "sg_status_list": self.status("Task", "sg_status_list", status),
            "task_assignees": [a.ref for a in assignees], "start_date": start.isoformat(),
            "due_date": due.isoformat(), "est_in_mins": bid, "duration": _workdays(start, due) * 480,
        }, created, _by(self.person("Production", owner.project)), retired)
        return _Task(ref, owner, step, start, due, status, assignees)

    def task_status(self, start: dt.date, due: dt.date, today: dt.date) -> str:
        r = self.rng.random()
        if due < today:
            return "fin" if r < 0.93 else "ip"  # a few run late
        if start <= today:
            return "ip" if r < 0.7 else "rdy" if r < 0.8 else "hld" if r < 0.87 else "fin"
        return "wtg" if r < 0.85 else "rdy"

    def assignees(self, project: _Project, step: _StepSpec, status: str) -> list[_Person | _GroupPick]:
        """One artist of the step's department (active, unless the work is done), two sometimes, or the team."""
        rng = self.rng
        if rng.random() < 0.04 and self.team_groups.get(step.department) is not None:
            return [_GroupPick(self.team_groups[step.department])]
        pool = [p for p in project.people if p.department == step.department and (p.active or status == "fin")]
        pool = pool or [p for p in self.people if p.department == step.department and p.active]
        if not pool:
            return []
        return rng.sample(pool, min(len(pool), 2 if rng.random() < 0.08 else 1))

    def settle_statuses(self, assets: list[_Owner], sequences: list[tuple[_Ref | None, list[_Owner]]],
                        shots: list[_Owner]) -> None:
        """Shot, asset and sequence statuses follow their tasks (and a few shots are omitted or on hold)."""
        for owner in [*assets, *shots]:
            status = self.owner_status([t.status for t in owner.tasks])
            r = self.rng.random()
            if owner.kind == "Shot" and (owner.retired or r < 0.03):
                status = "omt"
                for task in owner.tasks:
                    if task.status != "fin":
                        self.set_task_status(task, "hld")
            elif r < 0.05 and status != "fin":
                status = "hld"
            elif owner.kind == "Shot" and status == "fin" and r < 0.1:
                status = "cbb"
            owner.status = status
            if owner.ref is not None:
                owner.ref.data["sg_status_list"] = self.status(owner.ref.type, "sg_status_list", status)
        for seq, members in sequences:
            if seq is not None:
                seq_status = self.owner_status([shot.status for shot in members])
                seq.data["sg_status_list"] = self.status("Sequence", "sg_status_list", seq_status)

    def set_task_status(self, task: _Task, status: str) -> None:
        task.status = status
        if task.ref is not None:
            task.ref.data["sg_status_list"] = self.status("Task", "sg_status_list", status)

    @staticmethod
    def owner_status(statuses: list[str]) -> str:
        live = [s for s in statuses if s not in ("omt",)]
        if not live:
            return "wtg"
        if all(s in ("fin", "cbb") for s in live):
            return "fin"
        if any(s in ("ip", "fin", "cbb") for s in live):
            return "ip"
        return "rdy" if any(s == "rdy" for s in live) else "wtg"

    # --- versions, publishes, playlists ---------------------------------------------------------------------

    def plan_versions(self, task: _Task) -> list[_Version]:
        owner, rng = task.owner, self.rng
        # The tasks of a retired shot keep their versions (links may point at retired entities).
        if task.ref is None or task.status in ("wtg", "rdy"):
            return []
        lo = _at(task.start, 9)
        hi = min(_at(task.due, 19), owner.project.now - dt.timedelta(hours=1))
        if hi <= lo:
            return []
        low, high = task.step.versions
        count = {"fin": rng.randint(low, high), "ip": rng.randint(1, max(1, high - 1)),
                 "hld": rng.randint(0, 1)}.get(task.status, 0)
        times = sorted(self.moment(lo, hi) for _ in range(count))
        out = []
        for number, created in enumerate(times, start=1):
            last = number == count
            out.append(self.plan_version(task, number, created, last))
        return out

    def plan_version(self, task: _Task, number: int, created: dt.datetime, last: bool) -> _Version:
        owner, step, rng = task.owner, task.step, self.rng
        user = self.artist(task)
        code = f"{owner.code}_{step.short.lower()}_v{number:03d}"
        reviewed = not last or task.status == "fin"
        status = "rev" if not reviewed else ("vwd" if rng.random() < 0.85 else "na")
        first, final = owner.working if step.code in ("FX", "Light", "Comp") else owner.frames
        prod_root = STORAGE_ROOTS.get(owner.project.storage, STORAGES[0][1])
        render_root = prod_root if owner.project.archived else STORAGE_ROOTS["renders"]
        folder = f"{owner.folder}/{step.short.lower()}"
        data = {
            "code": code, "entity": owner.ref, "sg_task": task.ref, "project": owner.project.ref,
            "user": user.ref if user else None, "sg_status_list": self.status("Version", "sg_status_list", status),
            "description": rng.choice(VERSION_NOTES) if number > 1 else "First pass",
            "sg_first_frame": first, "sg_last_frame": final, "frame_count": final - first + 1,
            "frame_range": f"{first}-{final}", "sg_department": step.department,
            "sg_path_to_frames": f"{render_root}/{folder}/images/v{number:03d}/{code}.%04d.exr",
            "sg_path_to_movie": f"{prod_root}/{folder}/review/{code}.mov", "sg_frames_aspect_ratio": 1.85,
            "sg_movie_aspect_ratio": 1.85, "sg_uploaded_movie_frame_rate": 24.0,
        }
        if owner.kind == "Project":  # an edit: no frame range of its own
            for name in ("sg_first_frame", "sg_last_frame", "frame_count", "frame_range", "sg_path_to_frames"):
                data.pop(name)
        retired = rng.random() < 0.03
        ref = self.add("Version", data, created, user.ref if user else None, retired)
        version = _Version(ref, task, code, created, user, reviewed and not retired)
        self.plan_publishes(version, number, retired)
        return version

    def artist(self, task: _Task) -> _Person | None:
        """Who did the work: an assignee, or someone of the assigned team."""
        people = [a for a in task.assignees if isinstance(a, _Person)]
        if people:
            return self.rng.choice(people)
        return self.person(task.step.department, task.owner.project)

    def plan_publishes(self, version: _Version, number: int, retired: bool) -> None:
        """The work file, and sometimes a cache or render, published just before the version."""
        step = version.task.step
        kinds = [step.work_type]
        if step.extra_type and self.rng.random() < 0.35:
            kinds.append(step.extra_type)
        for minutes, kind in enumerate(kinds, start=2):
            self.plan_publish(version, number, kind, version.created - dt.timedelta(minutes=minutes), retired)

    def plan_publish(self, version: _Version, number: int, kind: str, created: dt.datetime, retired: bool) -> None:
        task, owner = version.task, version.task.owner
        _, _, ext, content_type, storage_code = next(t for t in FILE_TYPES if t[0] == kind)
        if owner.project.archived:
            storage_code = "archive"
        storage_ref, storage = self.storages.get(storage_code, (None, STORAGES[0]))
        frames = ".%04d" if kind == "Rendered Image" else ""
        base = f"{owner.code}_{task.step.short.lower()}"
        filename = f"{base}_v{number:03d}{frames}.{ext}"
        rel = f"{owner.folder}/{task.step.short.lower()}/publish/{_slug(kind)}/{filename}"
        linux, mac, windows = storage[1], storage[2], storage[3]
        path = {
            "url": f"file://{linux}/{rel}", "name": filename, "link_type": "local", "local_path": f"{linux}/{rel}",
            "local_path_linux": f"{linux}/{rel}", "local_path_mac": f"{mac}/{rel}",
            "local_path_windows": windows + "\\" + rel.replace("/", "\\"), "local_storage": storage_ref,
            "content_type": content_type,
        }
        self.add("PublishedFile", {
            "code": filename, "name": f"{base}{frames}.{ext}", "entity": owner.ref, "task": task.ref,
            "version": version.ref, "published_file_type": self.file_types.get(kind), "path": path,
            "path_cache": rel, "path_cache_storage": storage_ref, "version_number": number,
            "project": owner.project.ref, "sg_status_list": self.status("PublishedFile", "sg_status_list", "cmpt"),
            "description": version.ref.data.get("description") if version.ref else None,
        }, created, version.user.ref if version.user else None, retired)

    def plan_playlists(self, project: _Project, versions: list[_Version]) -> None:
        """Weekly dailies (shots and assets apart) and, every fourth week, a client review."""
        if not versions:
            return
        weeks: dict[tuple[int, bool], list[_Version]] = {}
        first_day = min(v.created for v in versions).date()
        for v in versions:
            if v.ref is not None and not v.ref.retired and v.task.owner.kind != "Project":
                weeks.setdefault(((v.created.date() - first_day).days // 7, v.task.owner.kind == "Shot"), []).append(v)
        for (week, shots), pool in sorted(weeks.items()):
            day = _weekday(first_day + dt.timedelta(days=7 * week + 7))
            picked = self.rng.sample(pool, min(len(pool), 15))
            name = "Dailies" if shots else "Asset Review"
            self.plan_playlist(project, f"{day.isoformat()} {name}", day, picked)
            if shots and week % 4 == 3:
                finals = [v for v in pool if v.task.status == "fin"]
                if finals:
                    self.plan_playlist(project, f"{day.isoformat()} Client Review", day, finals[:10])

    def plan_playlist(self, project: _Project, code: str, day: dt.date, versions: list[_Version]) -> None:
        review = _at(day, 15)
        coordinator = self.person("Production", project)
        ref = self.add("Playlist", {
            "code": code, "project": project.ref, "sg_date_and_time": review,
            "description": f"{len(versions)} versions for review",
            "sg_status": self.status("Playlist", "sg_status", "clsd" if review < project.now else "opn"),
            "versions": [v.ref for v in versions],
        }, min(_at(day, 10), project.now - dt.timedelta(minutes=30)), _by(coordinator))
        for v in versions:
            if v.playlist is None:
                v.playlist = ref

    # --- notes, time logs, disk locations --------------------------------------------------------------------

    def plan_notes(self, project: _Project, versions: list[_Version], shots: list[_Owner]) -> None:
        rng = self.rng
        for v in versions:
            if v.reviewed and rng.random() < (0.45 if v.playlist is not None else 0.2):
                lead = self.person(v.task.step.department, project, lead=True)
                if lead is v.user:  # the lead's own work is reviewed by a producer
                    lead = self.person("Production", project)
                links = [v.ref, v.task.owner.ref]
                # Notes on a version in a playlist are written in that review.
                after = max(v.created, v.playlist.data["sg_date_and_time"]) if v.playlist else v.created
                self.plan_note(project, lead, v.user, links, [v.task.ref], after, v.playlist, v.code)
        for shot in shots:
            if shot.ref is not None and rng.random() < 0.05:
                # A client note on the shot itself (its edit, its brief), not on a version.
                producer = self.person("Production", project)
                after = shot.created + dt.timedelta(days=rng.randint(2, 60))
                self.plan_note(project, producer, None, [shot.ref], [], after, None, shot.code, client=True)

    def plan_note(self, project: _Project, author: _Person | None, to: _Person | None, links: list, tasks: list,
                  after: dt.datetime, playlist: _Ref | None, about: str, client: bool = False) -> None:
        rng = self.rng
        latest = project.now - dt.timedelta(minutes=5)
        if after + dt.timedelta(hours=1) >= latest:
            return  # what it is about only just happened: no note yet
        created = min(self.moment(after + dt.timedelta(hours=1), after + dt.timedelta(days=3)), latest)
        author_name = author.name if author else "Production"
        subject = f"{author_name}'s Note on {about}"
        recent = (project.now - created).days < 14
        status = ("opn" if rng.random() < 0.6 else "ip") if recent else ("clsd" if rng.random() < 0.85 else "opn")
        note_type = self.prefer("Note", "sg_note_type", "Client" if client or rng.random() < 0.15 else "Internal")
        producer = self.person("Production", project) if rng.random() < 0.2 else None
        cc = [producer.ref] if producer else []
        ref = self.add("Note", {
            "subject": subject, "content": rng.choice(NOTE_TEXTS), "project": project.ref,
            "note_links": links, "tasks": tasks, "addressings_to": [to.ref] if to else [],
            "addressings_cc": cc, "user": author.ref if author else None, "sg_note_type": note_type,
            "sg_status_list": self.status("Note", "sg_status_list", status), "playlist": playlist,
        }, created, _by(author), rng.random() < 0.03)
        replies = rng.choices((0, 1, 2, 3), (0.35, 0.4, 0.2, 0.05))[0]
        when = created
        for i in range(replies):
            who = (to if i % 2 == 0 else author) or author
            when = self.moment(when + dt.timedelta(minutes=20), when + dt.timedelta(days=2))
            if when >= project.now:
                break
            self.add("Reply", {"entity": ref, "content": rng.choice(REPLY_TEXTS), "user": who.ref if who else None},
                     when, _by(who))

    def plan_time_logs(self, task: _Task) -> None:
        if task.ref is None or task.ref.retired or task.status in ("wtg", "rdy"):
            return
        end = min(task.due, task.owner.project.now.date() - dt.timedelta(days=1))
        people = [a for a in task.assignees if isinstance(a, _Person)]
        if end < task.start or not people:
            return
        count = self.rng.randint(1, 3) if task.status == "fin" else self.rng.randint(0, 2)
        span = (end - task.start).days
        for _ in range(count):
            day = _weekday(task.start + dt.timedelta(days=self.rng.randint(0, span)))
            who = self.rng.choice(people)
            if day > end:
                continue
            self.add("TimeLog", {
                "date": day.isoformat(), "duration": self.rng.choice((60, 120, 180, 240, 240, 360, 480, 480)),
                "entity": task.ref, "user": who.ref, "project": task.owner.project.ref,
                "description": self.rng.choice(TIME_LOG_TEXTS),
            }, _at(day, 18, self.rng.randint(0, 59)), _by(who))

    def plan_disk_locations(self, project: _Project, assets: list[_Owner],
                            sequences: list[tuple[_Ref | None, list[_Owner]]]) -> None:
        """CustomEntity01 ("Disk Location" on the demo site): the folders made for sequences and assets."""
        if not self.has("CustomEntity01", "project"):
            return
        storage_ref, storage = self.storages.get(project.storage, (None, STORAGES[0]))
        folders = [(a.ref, a.folder, a.created) for a in assets]
        folders += [(seq, f"{project.tank}/sequences/{seq.data['code']}", seq.created_at)
                    for seq, _ in sequences if seq is not None]
        for ref, folder, created in folders:
            if ref is None:
                continue
            name = folder.rsplit("/", 1)[-1]
            self.add("CustomEntity01", {
                "code": folder, "project": project.ref, "sg_entity": ref, "description": f"Folder of {name}",
                "sg_path": {"url": f"file://{storage[1]}/{folder}", "name": name, "link_type": "local",
                            "local_path": f"{storage[1]}/{folder}", "local_storage": storage_ref,
                            "content_type": None},
                "sg_relative_path": folder, "sg_root": project.storage, "sg_entity_type_1": ref.type,
                "sg_name_at_creation": name, "sg_type_at_creation": ref.type,
                "sg_status_list": self.status("CustomEntity01", "sg_status_list", "cmpt"),
            }, created + dt.timedelta(minutes=self.rng.randint(5, 600)), self.import_script)

    # --- loading ------------------------------------------------------------------------------------------

    def load(self) -> dict[str, int]:
        """Load every planned entity, type by type, each type oldest first; return the counts."""
        by_type: dict[str, list[_Ref]] = {}
        for ref in self.refs:
            by_type.setdefault(ref.type, []).append(ref)
        rank = {t: i for i, t in enumerate(LOAD_ORDER)}
        counts: dict[str, int] = {}
        for entity_type in sorted(by_type, key=lambda t: rank.get(t, len(rank))):
            refs = sorted(by_type[entity_type], key=lambda r: r.created_at)  # stable: ties keep plan order
            for ref in refs:
                ref.id = self.site.load_entity(entity_type, self.clean(entity_type, ref.data),
                                               created_at=ref.created_at, created_by=_link(ref.created_by),
                                               retired=ref.retired)
            counts[entity_type] = len(refs)
        return counts

    def clean(self, entity_type: str, data: dict) -> dict:
        """The wire data for one entity: only fields the schema has, values it accepts, links resolved."""
        fields = self.site.schema[entity_type].fields
        out = {}
        for name, value in data.items():
            f = fields.get(name)
            # permission_rule_set is read-only in the schema, yet the site's admins set it.
            if f is None or value is None or (not f.editable and name != "permission_rule_set"):
                continue
            kind = f.data_type
            if kind == "entity":
                value = _resolve(f, value)
                if value is None:
                    continue
            elif kind == "multi_entity":
                value = [link for link in (_resolve(f, v) for v in value) if link is not None]
            elif kind in ("list", "status_list") and f.valid_values and value not in f.valid_values:
                continue
            elif kind == "url":
                value = {k: _link(v, named=True) if isinstance(v, _Ref) else v for k, v in value.items()
                         if not (k == "local_storage" and v is None)}
            out[name] = value
        return out


def _by(person: _Person | None) -> _Ref | None:
    """created_by for something a person made."""
    return person.ref if person else None


def _link(value: Any, named: bool = False) -> dict | None:
    if value is None or isinstance(value, dict):
        return value
    if value.id is None:
        raise RuntimeError(f"a {value.type} is linked before it is loaded (see LOAD_ORDER)")
    link = {"type": value.type, "id": value.id}
    if named:
        link["name"] = value.data.get("code") or value.data.get("name")
    return link


def _resolve(f: Field, value: Any) -> dict | None:
    """A planned entity or a site link -> a wire link, or None if the field can't point at that type."""
    link = _link(value)
    if link is None or (f.entity_types and link["type"] not in f.entity_types):
        return None
    return link
