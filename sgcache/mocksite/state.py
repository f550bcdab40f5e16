"""The stand-in site's state file: everything it holds, pickled, written atomically, and read back
only by the same version of the stand-in (``STATE_VERSION``).
"""

from __future__ import annotations

import pickle
from pathlib import Path

STATE_VERSION = 3  # 3: permission groups


def pack_state(state: dict) -> bytes:
    """``state`` pickled with the version (take it under the site's lock: the objects are live)."""
    return pickle.dumps({"version": STATE_VERSION, **state}, protocol=pickle.HIGHEST_PROTOCOL)


def write_atomically(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def read_state(path: str | Path) -> dict:
    """The state saved in ``path``; ValueError when another version of the stand-in wrote it."""
    return unpack_state(Path(path).read_bytes(), where=str(path))


def unpack_state(data: bytes, where: str = "state") -> dict:
    """The state :func:`pack_state` made; ValueError when another version of the stand-in made it."""
    state = pickle.loads(data)
    if state.get("version") != STATE_VERSION:
        raise ValueError(f"{where}: state file version {state.get('version')} is not {STATE_VERSION}")
    return state
