"""What the settings reference (docs/_ext/sgcache_settings.py) shows of each setting; its text is
reStructuredText."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

from sgcache.config.sections import Secret, base_type

#: A type's name in the reference: (one, a list of them).
_TYPE_NAMES: dict[Any, tuple[str, str]] = {
    str: ("text", "text"), Secret: ("secret text", "secret texts"), Path: ("path", "paths"),
    int: ("integer", "integers"), float: ("number", "numbers"),
}


def setting_type_doc(f: dataclasses.Field, hint: Any) -> str:
    """What a setting accepts: its choices, else its check's description, else its type's name."""
    choices = f.metadata.get("choices")
    if choices:
        quoted = [f"``{choice}``" for choice in choices]
        listed = " or ".join(quoted) if len(quoted) == 2 else "one of " + ", ".join(quoted)
        return f"{listed} (any case)"
    check = f.metadata.get("check")
    if check is not None:
        return check.describe  # every check in sgcache.config.checks has one
    hint, _ = base_type(hint)
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        return f"list of {_TYPE_NAMES[item][1]}"
    return _TYPE_NAMES[hint][0]


def setting_default_doc(f: dataclasses.Field) -> str:
    """A setting's built-in default: None, empty list, or the value as a literal (with its note)."""
    default = f.default_factory() if f.default is dataclasses.MISSING else f.default
    if default is None:
        text = "None"
    elif isinstance(default, list):
        text = f"``{', '.join(map(str, default))}``" if default else "empty list"
    elif isinstance(default, dict):
        text = f"``{default}``" if default else "empty mapping"
    else:
        text = f"``{default}``"
    note = f.metadata.get("default_note")
    return f"{text} ({note})" if note else text


def setting_doc(f: dataclasses.Field) -> str:
    """A setting's description: its ``doc``, else its one-line ``help`` as a sentence."""
    return f.metadata.get("doc") or f.metadata["help"].rstrip(".") + "."
