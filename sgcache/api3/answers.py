"""What the proxy answers a request with, and why a request is passed through instead."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sgcache.api3 import protocol
from sgcache.api3.protocol import Fault
from sgcache.upstream import FORWARDED_HEADERS

JSON_HEADERS = [("Content-Type", "application/json; charset=utf-8")]


@dataclass
class Answer:
    """What goes back to the caller, and how it was decided (for the request log)."""

    status: int
    body: bytes
    outcome: str  # cache | passthrough | fault
    headers: list[tuple[str, str]] = field(default_factory=list)
    #: the body is relayed from the site as it came (possibly compressed already)
    relayed: bool = False
    detail: str = ""


@dataclass(frozen=True)
class PassReason:
    """Why a request is passed through instead of answered from the cache (a short key counted in
    status and metrics, and a detail for the request log)."""

    reason: str
    detail: str = ""
    #: what the caller may see, when the gates got that far (passthrough answers to callers who
    #: see everything are kept: sgcache.api3.harvest)
    decision: Any = None


def fault_answer(fault: Fault, detail: str = "") -> Answer:
    return Answer(200, protocol.dumps(fault.envelope()), "fault", list(JSON_HEADERS), detail=detail)


def busy_answer(message: str) -> Answer:
    """What a request gets when this process has its most requests on the site and no turn came
    in time (``site.max_concurrent``, ``site.busy_wait``; nothing was sent): HTTP 503, as a busy
    site answers, which shotgun_api3 reports as the site being too busy."""
    return Answer(503, f"sgcache: {message}; try again shortly\n".encode(), "fault",
                  [("Content-Type", "text/plain; charset=utf-8"), ("Retry-After", "1")], detail="site busy")


def json_answer(payload: Any, outcome: str) -> Answer:
    return Answer(200, protocol.dumps(payload), outcome, list(JSON_HEADERS))


def forwarded(headers: Mapping[str, str]) -> dict[str, str]:
    """The caller's headers the site should see (the rest stay here)."""
    return {k: v for k, v in ((name, headers.get(name)) for name in FORWARDED_HEADERS) if v is not None}


def first_line(error: BaseException) -> str:
    """The first line of a (database) error's message, for logs and pass reasons."""
    orig = getattr(error, "orig", None)
    text = str(orig if orig is not None else error).strip()
    return (text.splitlines() or [type(error).__name__])[0]
