"""The studio's fixed tables: its dates and sizes, the load order, status aliases, departments,
pipeline steps, published file types and storages."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

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
