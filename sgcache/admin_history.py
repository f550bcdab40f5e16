"""The admin routes that answer with entity data from the cache's history:
``/_sgcache/history/<type>/<id>`` and ``/_sgcache/changes?since=`` (see docs/history.rst).

Restricted like every admin route (``admin.allow``) and, since they show entity values, answered
only to a caller the site authenticates (HTTP Basic: a script name and key, or a login and
password) whose permission group sees everything: what a caller limited to some projects may see
of the past is not known.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from flask import Flask, Response, request

from sgcache.api3.protocol import Fault
from sgcache.api3.service import Service
from sgcache.upstream import SiteUnavailable

#: What the site must see a caller as, for these routes.
_NEEDED_MODE = "all"


def caller_problem(service: Service) -> tuple[int, str] | None:
    """None when the request's Basic credentials name a caller the site accepts and who sees
    everything; else (HTTP status, why)."""
    given = request.authorization
    if given is None or given.type != "basic" or not given.username or given.password is None:
        return 401, "send the credentials of a script (name and key) or a person (login and password) as HTTP Basic"
    for auth in ({"script_name": given.username, "script_key": given.password},
                 {"user_login": given.username, "user_password": given.password}):
        try:
            accepted = service.verifier.verify(auth, "Project")
        except Fault:
            continue
        except SiteUnavailable as e:
            return 503, f"cannot check your credentials: {e.message}"
        if not accepted:
            continue
        try:
            decision = service.reads.policy.decide(auth, service.read_state().tripped)
        except SiteUnavailable as e:
            return 503, f"cannot learn who you are from the site: {e.message}"
        if decision.mode != _NEEDED_MODE:
            return 403, (f"history is answered only to callers who see every project (permission group "
                         f"{decision.group}: {decision.mode})")
        return None
    return 401, "the site does not accept these credentials"


def add_history_routes(app: Flask, service: Service, refused: Callable[[], Response | None],
                       json_response: Callable[..., Response]) -> None:
    def guarded(work: Callable[[], Any]) -> Response:
        denied = refused()
        if denied:
            return denied
        if service.cache is None:
            return json_response({"error": "no cache database is configured"}, 404)
        problem = caller_problem(service)
        if problem is not None:
            response = json_response({"error": problem[1]}, problem[0])
            if problem[0] == 401:
                response.headers["WWW-Authenticate"] = 'Basic realm="sgcache"'
            return response
        try:
            return json_response(work())
        except LookupError as e:
            return json_response({"error": str(e.args[0])}, 404)
        except ValueError as e:
            return json_response({"error": str(e)}, 400)
        except sa.exc.SQLAlchemyError:
            return json_response({"error": "the cache database cannot be read now"}, 503)

    def history_route(entity_type: str, entity_id: int) -> Response:
        from sgcache.store.timeline import entity_history

        def work() -> Any:
            tables = service.cache.tables
            if entity_type not in tables:
                raise LookupError(f"{entity_type[:80]!r} is not a cached entity type")
            field = request.args.get("field") or None
            with service.cache.read_engine.connect() as conn:
                try:
                    changes = entity_history(conn, tables, entity_type, entity_id, field)
                except KeyError:
                    raise LookupError(f"{entity_type}.{field[:80]} is not a cached field (nor 'retired')") from None
            return {"type": entity_type, "id": entity_id, "changes": [c.as_dict() for c in changes]}

        return guarded(work)

    def changes_route() -> Response:
        from sgcache.api3.past import parse_since
        from sgcache.store.timeline import changed_since

        def work() -> Any:
            text = request.args.get("since")
            if not text:
                raise ValueError("give ?since= an ISO 8601 time with a zone, or a duration ago (90m, 24h, 7d)")
            since = parse_since(text)  # ValueError: a 400 naming it
            tables = service.cache.tables
            types = [t for t in (request.args.get("types") or "").split(",") if t]
            unknown = [t[:80] for t in types if t not in tables]
            if unknown:
                raise LookupError(f"not a cached entity type: {', '.join(unknown)}")
            try:
                projects = [int(p) for p in (request.args.get("projects") or "").split(",") if p] or None
            except ValueError:
                raise ValueError("projects: expected comma-separated project ids") from None
            with service.cache.read_engine.connect() as conn:
                found = changed_since(conn, tables, since, types or None, projects)
            return {"since": since.astimezone(dt.UTC), "entities": found}

        return guarded(work)

    app.add_url_rule("/_sgcache/history/<entity_type>/<int:entity_id>", "admin_history", history_route,
                     methods=["GET"])
    app.add_url_rule("/_sgcache/changes", "admin_changes", changes_route, methods=["GET"])
