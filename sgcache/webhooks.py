"""Webhook deliveries from the site: ``POST /_sgcache/webhook`` (see docs/triggers.rst).

The site can post each event (or batches of up to 50, ``data.deliveries``) to a URL, signed with
``X-SG-SIGNATURE: sha1=<HMAC-SHA1 of the raw body with the hook's secret token>``. A delivery is
only a prompt: the route checks the signature over the raw bytes (anything unsigned or wrongly
signed gets 401 and does nothing), notes the highest event id named, and answers at once (the
site allows 6 s). The watcher, which wakes when that id is above what it has applied, reads the
event log as always: a delivery never bypasses its cursor, so a duplicate or replayed delivery,
or the site's service events (id 0), change nothing. Deliveries can be lost; polling goes on.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
from typing import Any

import sqlalchemy as sa
from flask import Flask, Response, request

from sgcache.config import Config
from sgcache.store import state

log = logging.getLogger(__name__)

#: The largest delivery read (the site's are at most 1 MB).
MAX_BODY = 2 * 1024 * 1024


def signed_by(secret: bytes, body: bytes, header: str | None) -> bool:
    """Whether ``header`` (``sha1=<hex>``) is the HMAC-SHA1 of ``body`` with ``secret``."""
    if not header or not header.lower().startswith("sha1="):
        return False
    expected = hmac.new(secret, body, hashlib.sha1).hexdigest()
    return hmac.compare_digest(expected, header[5:].strip().lower())


def event_ids(payload: Any) -> list[int]:
    """The event-log entry ids a delivery names (service events, with id 0, name none)."""
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, dict):
        return []
    deliveries = data.get("deliveries") if isinstance(data.get("deliveries"), list) else [data]
    found = []
    for d in deliveries:
        value = d.get("event_log_entry_id") if isinstance(d, dict) else None
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            found.append(value)
    return found


def add_webhook_route(app: Flask, config: Config, service: Any, metrics: Any) -> None:
    def answer(outcome: str, status: int, body: dict[str, Any]) -> Response:
        metrics.webhook(outcome)
        return Response(json.dumps(body) + "\n", status=status, content_type="application/json; charset=utf-8",
                        headers={"Cache-Control": "no-store"})

    def webhook() -> Response:
        secret = config.site.webhook_secret
        if secret is None or not secret.reveal():
            return answer("refused", 404, {"error": "webhooks are off: set site.webhook_secret"})
        length = request.content_length
        if length is not None and length > MAX_BODY:
            return answer("refused", 413, {"error": f"a delivery is at most {MAX_BODY} bytes"})
        body = request.stream.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            return answer("refused", 413, {"error": f"a delivery is at most {MAX_BODY} bytes"})
        if not signed_by(secret.reveal().encode(), body, request.headers.get("X-SG-SIGNATURE")):
            log.warning("event=webhook_rejected reason=signature address=%s", request.remote_addr)
            return answer("rejected", 401, {"error": "missing or wrong X-SG-SIGNATURE"})
        try:
            payload = json.loads(body)
        except ValueError:
            return answer("malformed", 400, {"error": "the body is not JSON"})
        ids = event_ids(payload)
        if not ids:
            return answer("ignored", 200, {"ok": True, "events": 0})  # a service event: nothing to apply
        cache = service.cache
        try:
            if cache is None:
                raise sa.exc.OperationalError("no cache database", None, Exception("no cache"))
            with cache.engine.begin() as conn:
                st = cache.tables.state
                held, _ = state.webhook_marks(conn, st)
                if max(ids) > held:
                    state.set_meta(conn, st, state.WEBHOOK_WAKE, str(max(ids)))
                state.set_meta(conn, st, state.WEBHOOK_LAST, dt.datetime.now(dt.UTC).isoformat())
        except sa.exc.SQLAlchemyError as e:
            # Polling still finds the events: the delivery is taken, not applied sooner.
            log.warning("event=webhook_not_noted error=%r", str(e)[:200])
        return answer("accepted", 200, {"ok": True, "events": len(ids)})

    app.add_url_rule("/_sgcache/webhook", "webhook", webhook, methods=["POST"])
