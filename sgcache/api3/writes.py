"""Which entities a confirmed write touched, read from the request and the site's answer.

``create``, ``update``, ``delete``, ``revive`` and ``batch`` go to the site exactly once. Only
when the site confirms one does the proxy ask this module what to read again; anything it cannot
make sense of simply names nothing (the watcher will still bring the change).
"""

from __future__ import annotations

from typing import Any

WRITE_METHODS = frozenset({"create", "update", "delete", "revive", "batch"})


def _add(out: dict[str, set[int]], entity_type: Any, entity_id: Any) -> None:
    if isinstance(entity_type, str) and isinstance(entity_id, int) and not isinstance(entity_id, bool):
        out.setdefault(entity_type, set()).add(entity_id)


def _one(out: dict[str, set[int]], kind: str, args: Any, result: Any) -> None:
    if not isinstance(args, dict):
        return
    if kind == "create":
        if isinstance(result, dict):
            _add(out, result.get("type", args.get("type")), result.get("id"))
    elif kind in ("update", "delete", "revive"):
        _add(out, args.get("type"), args.get("id"))


def touched(method: str, args: Any, result: Any) -> dict[str, set[int]]:
    """Entity type -> ids a confirmed write of ``method`` with ``args`` (and its ``result``) touched."""
    out: dict[str, set[int]] = {}
    if method == "batch":
        if isinstance(args, list) and isinstance(result, list):
            for request, item in zip(args, result, strict=False):
                if isinstance(request, dict):
                    _one(out, str(request.get("request_type")), request, item)
    elif method in WRITE_METHODS:
        _one(out, method, args, result)
    return out
