"""The faults the stand-in site answers with: Shotgun's error envelope (HTTP 200, ``exception: true``).

The stand-in keeps its own, independent of the proxy's protocol module, so that a mistake in one
is not silently shared by the other.
"""

from __future__ import annotations

from dataclasses import dataclass

#: error_code of a refused credential (shotgun_api3 raises AuthenticationFault for it).
AUTH_FAULT = 102


def fault_envelope(message: str, code: int | None = None) -> dict:
    """The body of a fault: ``error_code`` is present only when the fault has one."""
    extra = {} if code is None else {"error_code": code}
    return {"exception": True, "message": message, **extra}


@dataclass(eq=False)
class Fault(Exception):
    """An error the site reports in its envelope rather than as an HTTP error."""

    message: str
    code: int | None = None

    def __post_init__(self) -> None:
        Exception.__init__(self, self.message)

    def envelope(self) -> dict:
        return fault_envelope(self.message, self.code)
