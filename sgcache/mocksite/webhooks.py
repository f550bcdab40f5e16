"""The stand-in's webhook: each event-log entry posted to a URL as a hosted site posts it
(``sgcache mock-site --webhook URL --webhook-secret S [--webhook-batched]``).

As the site documents it (SITE-FACTS section 1): a JSON body ``{"data": ..., "timestamp": ...}``
whose ``data`` is one delivery (``event_log_entry_id``, ``event_type``, ``operation``, ``user``,
``entity``, ``project``, ``meta``, ``attribute_name``, ``created_at`` naive with microseconds,
``session_uuid``, ``delivery_id``), or in batched mode ``data.deliveries``, up to 50; the
``x-sg-*`` headers; ``X-SG-SIGNATURE: sha1=<HMAC-SHA1 of the body>`` when a secret is set. An
entry is sent once it is readable (a late commit is sent late, out of order), and never again:
the site does not retry, so a delivery that fails is lost (counted in ``failed``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import threading
import urllib.error
import urllib.request
import uuid
from typing import Any

log = logging.getLogger(__name__)

#: Deliveries per request in batched mode, as the site sends them.
BATCH = 50
OPERATIONS = {"New": "create", "Change": "update", "Retirement": "delete", "Revival": "revive"}


class WebhookSender:
    """Sends the entries of ``site`` to ``url`` from a thread, looking every ``interval`` seconds."""

    def __init__(self, site: Any, url: str, secret: str | None = None, *, batched: bool = False,
                 interval: float = 0.02, timeout: float = 6.0):
        self.site = site
        self.url = url
        self.secret = secret
        self.batched = batched
        self.interval = interval
        self.timeout = timeout
        self.hook_id = str(uuid.uuid4())
        self.sent: set[int] = set()
        self.delivered = 0
        self.failed = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> WebhookSender:
        # What the log holds already is not news: a hook delivers what happens after it is made.
        self.sent.update(self._readable())
        self._thread = threading.Thread(target=self._run, name="mock-site-webhook", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _readable(self) -> list[int]:
        """Ids of the filled, readable entries, oldest first."""
        with self.site.lock:
            table = self.site.emu.table("EventLogEntry")
            hidden = self.site.emu.hidden_until
            now = self.site.emu.clock()
            return sorted(i for i, row in table.items() if row.get("event_type")
                          and not (("EventLogEntry", i) in hidden and hidden[("EventLogEntry", i)] > now))

    def _delivery(self, entry_id: int) -> dict[str, Any]:
        with self.site.lock:
            row = dict(self.site.emu.table("EventLogEntry")[entry_id])
        action = str(row.get("event_type") or "").rsplit("_", 1)[-1]
        created = row.get("created_at")
        if isinstance(created, dt.datetime):
            created = created.astimezone(dt.UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
        return {"id": f"{self.hook_id[:8]}.{entry_id}.0", "event_log_entry_id": entry_id,
                "event_type": row.get("event_type"), "operation": OPERATIONS.get(action, action.lower()),
                "user": row.get("user"), "entity": row.get("entity"), "project": row.get("project"),
                "meta": row.get("meta"), "attribute_name": row.get("attribute_name"), "created_at": created,
                "session_uuid": row.get("session_uuid"), "delivery_id": str(uuid.uuid4())}

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                news = [i for i in self._readable() if i not in self.sent]
            except Exception:  # the site is being changed under us: look again
                log.debug("event=mock_webhook_look_failed", exc_info=True)
                continue
            groups = [news[n:n + BATCH] for n in range(0, len(news), BATCH)] if self.batched else [[i] for i in news]
            for group in groups:
                self.sent.update(group)  # sent once, whatever happens: the site does not retry
                self._post([self._delivery(i) for i in group])

    def _post(self, deliveries: list[dict[str, Any]]) -> None:
        data: Any = {"deliveries": deliveries} if self.batched else deliveries[0]
        body = json.dumps({"data": data, "timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
                           + "Z"}, default=str).encode()
        headers = {"Accept": "application/json", "Content-Type": "application/json; charset=utf-8",
                   "X-SG-Webhook-Id": self.hook_id, "X-SG-Delivery-Id": deliveries[0]["delivery_id"],
                   "X-SG-Webhook-Site-Url": "http://stand-in/"}
        if self.batched:
            headers.update({"X-SG-Event-Batch-Id": str(deliveries[0]["event_log_entry_id"]),
                            "X-SG-Event-Batch-Size": str(len(deliveries)), "X-SG-Event-Batch-Index": "0"})
        if self.secret:
            headers["X-SG-SIGNATURE"] = "sha1=" + hmac.new(self.secret.encode(), body, hashlib.sha1).hexdigest()
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                ok = answer.status < 400
        except (urllib.error.URLError, OSError, ValueError) as e:
            log.info("event=mock_webhook_failed url=%s error=%r", self.url, str(e)[:200])
            ok = False
        if ok:
            self.delivered += 1
        else:
            self.failed += 1
