"""The stand-in site over HTTP: Shotgun's JSON-RPC endpoint, file routes, and failure injection.

Admin routes (``/_mock/...``, on by default for the stand-in, ``admin=False`` turns them off):

- ``POST /_mock/failure`` ``{"mode": "429"|"502"|"503"|"504"|"stall"|"drop"|"down"|"off", "count": N,
  "seconds": S, "stall_seconds": T, "retry_after": R}``: answer the next N requests (or every
  request for S seconds) with that HTTP status (a 429 or 503 with ``Retry-After: R`` when R is
  given), stall T seconds before answering, drop the connection unanswered, or stop listening
  for S seconds (connections are refused), then recover.
- ``POST /_mock/expire_sessions``: every session token issued so far expires now.
- ``GET /_mock/stats``: calls received per method, and entities per type.
- ``POST /_mock/save``: write the state file now (when the site has one).
"""

from __future__ import annotations

import gzip
import json
import logging
import socket
import threading
import time
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, request
from werkzeug.serving import make_server

from sgcache.mocksite.faults import Fault, fault_envelope
from sgcache.mocksite.site import MockSite
from sgcache.mocksite.thumbnails import PLACEHOLDER_PNG

log = logging.getLogger(__name__)

FAILURE_MODES = {"429", "502", "503", "504", "stall", "drop", "down", "off"}
_REASONS = {429: "Too Many Requests", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


class Failures:
    """The failure to inject, for a number of requests or a length of time."""

    def __init__(self):
        self.lock = threading.Lock()
        self.mode: str | None = None
        self.remaining: int | None = None
        self.until: float | None = None
        self.stall_seconds = 30.0
        self.retry_after: str | None = None  # the Retry-After header of a 429 or 503, when set

    def set(self, mode: str, count: int | None = None, seconds: float | None = None,
            stall_seconds: float | None = None, retry_after: float | str | None = None) -> None:
        with self.lock:
            self.mode = None if mode == "off" else mode
            self.remaining = count
            self.until = time.monotonic() + seconds if seconds is not None else None
            if stall_seconds is not None:
                self.stall_seconds = stall_seconds
            self.retry_after = None if retry_after is None else str(retry_after)

    def take(self) -> str | None:
        """The failure for this request, if any (and count it)."""
        with self.lock:
            if self.mode is None:
                return None
            if self.until is not None and time.monotonic() >= self.until:
                self.mode = None
                return None
            mode = self.mode
            if self.remaining is not None:
                self.remaining -= 1
                if self.remaining <= 0:
                    self.mode = None
            return mode


def _json_response(payload: Any, status: int = 200) -> Response:
    try:
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate echoed from the request: send it escaped
        body = json.dumps(payload, ensure_ascii=True).encode("ascii")
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if len(body) > 1024 and "gzip" in request.headers.get("Accept-Encoding", ""):
        body = gzip.compress(body, compresslevel=5)
        headers["Content-Encoding"] = "gzip"
    return Response(body, status=status, headers=headers)


def create_app(site: MockSite, *, latency_ms: float = 0, admin: bool = True, failures: Failures | None = None,
               server: MockServer | None = None) -> Flask:
    """The Flask app of one stand-in site."""
    app = Flask("sgcache.mocksite")
    failures = failures or Failures()
    app.config["failures"] = failures
    _add_request_hooks(app, failures, latency_ms)
    _add_rpc_routes(app, site)
    _add_file_routes(app, site)
    if admin:
        _add_admin_routes(app, site, failures, server)
    return app


def _injected_failure(failures: Failures) -> Response | None:
    """The answer to a request that meets an injected failure (None: answer it normally)."""
    mode = failures.take()
    if mode in ("429", "502", "503", "504"):
        code = int(mode)
        headers = {"Retry-After": failures.retry_after} if code in (429, 503) and failures.retry_after else {}
        return Response(f"{code} {_REASONS[code]} (injected by the stand-in site)", status=code,
                        content_type="text/plain", headers=headers)
    if mode == "stall":
        time.sleep(failures.stall_seconds)
    elif mode == "drop":
        sock = request.environ.get("werkzeug.socket")
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        return Response("", status=500)
    return None


def _add_request_hooks(app: Flask, failures: Failures, latency_ms: float) -> None:
    """Latency and failure injection before each request (not the admin routes); a log line after."""

    @app.before_request
    def before() -> Response | None:
        g.started = time.perf_counter()
        g.rpc = "-"
        g.entity_type = "-"
        if request.path.startswith("/_mock/"):
            return None
        if latency_ms:
            time.sleep(latency_ms / 1000)
        return _injected_failure(failures)

    @app.after_request
    def after(response: Response) -> Response:
        elapsed = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
        log.info("event=request path=%s method=%s type=%s status=%s ms=%.1f", request.path, g.get("rpc", "-"),
                 g.get("entity_type", "-"), response.status_code, elapsed)
        return response


def _add_rpc_routes(app: Flask, site: MockSite) -> None:
    """``POST /api3/json`` (also under a path prefix): one JSON-RPC call."""

    def api() -> Response:
        try:
            payload = json.loads(request.get_data() or b"null")
        except (ValueError, UnicodeDecodeError):
            return _json_response(fault_envelope("could not parse the request body as JSON"))
        if not isinstance(payload, dict):
            return _json_response(fault_envelope("the request body must be a JSON object {method_name, params}"))
        method = payload.get("method_name")
        params = payload.get("params", [])
        g.rpc = method if isinstance(method, str) else "-"
        if isinstance(params, list) and len(params) > 1 and isinstance(params[1], dict):
            g.entity_type = params[1].get("type", "-")
        try:
            result = site.call(method, params)
        except Fault as e:
            return _json_response(e.envelope())
        except Exception:
            log.exception("event=internal_error method=%s", g.rpc)
            return _json_response(fault_envelope("internal error in the stand-in site"), status=500)
        if method == "info":
            return _json_response(result)
        return _json_response({"results": result})

    app.add_url_rule("/api3/json", "api", api, methods=["POST"])
    app.add_url_rule("/<path:prefix>/api3/json", "api_prefixed", lambda prefix: api(), methods=["POST"])


def _upload(site: MockSite, thumbnail: bool) -> Response:
    """``upload_file`` / ``publish_thumbnail``: answered ``1:<attachment id>`` or ``0:<message>``."""
    form = request.form
    auth = {k: form[k] for k in ("script_name", "script_key", "user_login", "user_password", "session_token",
                                 "sudo_as_login", "session_uuid") if k in form}
    file = request.files.get("thumb_image" if thumbnail else "file")
    g.rpc = "publish_thumbnail" if thumbnail else "upload_file"
    g.entity_type = form.get("entity_type", "-")
    try:
        with site.lock:
            caller = site.authenticate(auth, g.rpc)
        if file is None:
            raise Fault("upload: no file in the request")
        try:
            entity_id = int(form.get("entity_id", ""))
        except ValueError:
            raise Fault("upload: entity_id must be an integer") from None
        field_name = form.get("field_name")
        if thumbnail and form.get("filmstrip"):
            field_name = "filmstrip_image"
        attachment_id = site.store_file(
            caller, form.get("entity_type", ""), entity_id, field_name,
            form.get("display_name") or file.filename or "upload", file.mimetype or "application/octet-stream",
            file.read(), thumbnail, request.host_url)
    except Fault as e:
        return Response(f"0:{e.message}", status=200, content_type="text/plain")
    site.calls[g.rpc] += 1
    return Response(f"1:{attachment_id}", content_type="text/plain")


def _add_file_routes(app: Flask, site: MockSite) -> None:
    """Uploads, ``GET /file_serve/attachment/<id>``, and the placeholder thumbnail."""
    app.add_url_rule("/upload/upload_file", "upload_file", lambda: _upload(site, False), methods=["POST"])
    app.add_url_rule("/upload/publish_thumbnail", "publish_thumbnail", lambda: _upload(site, True),
                     methods=["POST"])

    @app.get("/file_serve/attachment/<int:attachment_id>")
    def file_serve(attachment_id: int) -> Response:
        g.rpc = "file_serve"
        # A hosted site requires the _session_id cookie. shotgun_api3 scopes that cookie to
        # "host:port", which urllib never sends to a URL with a port, so on a local port the
        # stand-in accepts requests without it; a cookie that is sent must be valid.
        token = request.cookies.get("_session_id")
        if token is not None and not site.session_user(token):
            return Response("Not authorized: the _session_id cookie is not a valid session", status=403,
                            content_type="text/plain")
        refused = site.thumbnails.refusal(request.path, request.query_string.decode("latin-1"))
        if refused is not None:
            return Response(f"Access denied: {refused}", status=403, content_type="text/plain")
        stored = site.files.get(attachment_id)
        if stored is None or not Path(stored.path).is_file():
            return Response("No such attachment", status=404, content_type="text/plain")
        site.calls["file_serve"] += 1

        def chunks():
            with open(stored.path, "rb") as fh:
                while block := fh.read(64 * 1024):
                    yield block

        return Response(chunks(), content_type=stored.content_type,
                        headers={"Content-Disposition": f'attachment; filename="{stored.name}"'})


    @app.get("/images/status/transient/<name>")
    def transient_image(name: str) -> Response:
        # The placeholder a thumbnail reads as while it is processed (sgcache.mocksite.thumbnails).
        return Response(PLACEHOLDER_PNG, content_type="image/png")


def _add_admin_routes(app: Flask, site: MockSite, failures: Failures, server: MockServer | None) -> None:
    """The ``/_mock/...`` routes of the module docstring."""

    @app.post("/_mock/failure")
    def set_failure() -> Response:
        body = request.get_json(silent=True) or {}
        mode = str(body.get("mode", ""))
        if mode not in FAILURE_MODES:
            return _json_response({"error": f"mode must be one of {', '.join(sorted(FAILURE_MODES))}"}, 400)
        if mode == "down":
            if server is None:
                return _json_response({"error": "this app is not run by a MockServer"}, 400)
            server.go_down(float(body.get("seconds", 5)))
            return _json_response({"ok": True, "mode": mode})
        failures.set(mode, count=body.get("count"), seconds=body.get("seconds"),
                     stall_seconds=body.get("stall_seconds"), retry_after=body.get("retry_after"))
        return _json_response({"ok": True, "mode": mode})

    @app.post("/_mock/expire_sessions")
    def expire_sessions() -> Response:
        return _json_response({"expired": site.expire_sessions()})

    @app.get("/_mock/stats")
    def stats() -> Response:
        with site.lock:
            counts = {t: len(rows) for t, rows in site.emu.tables.items() if rows}
            return _json_response({"calls": dict(site.calls), "entities": counts, "version": site.version})

    @app.post("/_mock/save")
    def save() -> Response:
        if server is None or server.state_file is None:
            return _json_response({"error": "no state file"}, 400)
        server.save()
        return _json_response({"ok": True})


class MockServer:
    """Runs a stand-in site on a real socket, in a background thread (tests) or the foreground (CLI)."""

    def __init__(self, site: MockSite, host: str = "127.0.0.1", port: int = 0, *, latency_ms: float = 0,
                 admin: bool = True, state_file: str | Path | None = None, autosave_seconds: float = 2.0):
        self.site = site
        self.host = host
        self.port = port
        self.state_file = Path(state_file) if state_file else None
        self.failures = Failures()
        self.app = create_app(site, latency_ms=latency_ms, admin=admin, failures=self.failures, server=self)
        self._server = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._saved_version = -1
        self._autosave_seconds = autosave_seconds
        self._autosaver: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _listen(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request is ours
        self._server = make_server(self.host, self.port, self.app, threaded=True)
        self.port = self._server.server_port
        # A short poll lets "down" and stop() take effect at once.
        server = self._server
        self._thread = threading.Thread(target=lambda: server.serve_forever(poll_interval=0.05), name="mock-site",
                                        daemon=True)
        self._thread.start()

    def start(self) -> MockServer:
        with self._lock:
            self._listen()
        if self.state_file is not None:
            self._autosaver = threading.Thread(target=self._autosave, name="mock-site-autosave", daemon=True)
            self._autosaver.start()
        log.info("event=mock_site_listening url=%s", self.url)
        return self

    def _close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def go_down(self, seconds: float) -> None:
        """Stop listening now (in the background) and listen again after ``seconds``."""
        def cycle():
            time.sleep(0.05)  # let the admin response leave first
            with self._lock:
                self._close()
            log.warning("event=mock_site_down seconds=%s", seconds)
            if self._stopping.wait(seconds):
                return
            with self._lock:
                self._listen()
            log.warning("event=mock_site_up url=%s", self.url)

        threading.Thread(target=cycle, name="mock-site-down", daemon=True).start()

    def save(self) -> None:
        if self.state_file is None:
            return
        version = self.site.version
        self.site.save(self.state_file)
        self._saved_version = version

    def _autosave(self) -> None:
        while not self._stopping.wait(self._autosave_seconds):
            if self.site.version != self._saved_version:
                try:
                    self.save()
                except OSError:
                    log.exception("event=mock_site_save_failed path=%s", self.state_file)

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            self._close()
        self.save()

    def __enter__(self) -> MockServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
