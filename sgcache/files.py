"""Reading a file sgcache is told to read (settings, schema): a missing or unreadable file is one line."""

from __future__ import annotations

from pathlib import Path


def read_text(path: Path, what: str, error: type[Exception]) -> str:
    """``path``'s text (UTF-8), else ``error`` naming the file and what it is (e.g. "schema file")."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except OSError as e:
        raise error(f"{path}: cannot read the {what}: {e.strerror}") from None
