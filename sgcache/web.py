"""The proxy's Flask application factory, and the gunicorn runner behind ``sgcache web``.

Routes: ``POST .../api3/json`` (the JSON-RPC endpoint, under any base path the client uses),
and the file routes shotgun_api3 uses (:data:`UPLOADS`, ``/file_serve/attachment/<id>``,
``/thumbnail/...``), streamed to the site and back without holding a file in memory. A path
with dot segments or encoded slashes gets a 400, and a path not listed here a 404, without
reaching the site. Every request is logged as one line with its id, method, entity type,
outcome, status, time and caller (never a secret).
"""

from __future__ import annotations

import gzip
import logging
import re
import time
import uuid
import zlib
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask, Response, g, request
from werkzeug.exceptions import BadRequest, HTTPException, NotFound

from sgcache.admin import add_admin_routes
from sgcache.api3 import uploads
from sgcache.api3.answers import Answer, fault_answer
from sgcache.api3.auth import Verifier
from sgcache.api3.cache import CacheDatabase, TablesInUse
from sgcache.api3.harvest import Harvest
from sgcache.api3.identity import IdentityBook, SessionBook
from sgcache.api3.past import parse_moment
from sgcache.api3.plans import PlanCache
from sgcache.api3.policy import Policy
from sgcache.api3.protocol import Fault
from sgcache.api3.readback import ReadBack
from sgcache.api3.reads import CacheReads
from sgcache.api3.service import Service
from sgcache.api3.shadow import ShadowChecker
from sgcache.api3.siteinfo import SiteInfo
from sgcache.api3.thumbnails import FreshThumbnails
from sgcache.config import Config
from sgcache.logs import loggable
from sgcache.metrics import Metrics, SampleSaver, multiprocess_dir
from sgcache.query import Uncertain
from sgcache.query.site_schema import SiteSchema
from sgcache.store import samples
from sgcache.upstream import SiteUnavailable, Upstream, chunks, file_headers, relay_headers
from sgcache.webhooks import add_webhook_route

log = logging.getLogger("sgcache.web")

#: Our own answers smaller than this are not worth compressing.
GZIP_MIN_BYTES = 1024

#: ``POST /upload/<name>``: the form posts of shotgun_api3 (uploads, thumbnails, the steps of
#: an upload to cloud storage). ``GET /upload/get_thumbnail_url`` is the one read.
UPLOADS = ("upload_file", "publish_thumbnail", "share_thumbnail", "api_get_upload_link_info",
           "api_get_upload_link_for_part", "api_complete_multipart_upload", "api_link_file")

#: The part of ``/thumbnail/<part>`` relayed: one to four plain names (``full/Shot/12``).
_THUMBNAIL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*){0,3}")

#: Percent-encoded ".", "/" and "\", in the path as sent or left after decoding it once.
_ENCODED_SEPARATORS = re.compile(r"%(2e|2f|5c)", re.I)


class RefusedPath(BadRequest):
    """A request path refused before routing (see :func:`path_problem`)."""


def path_problem(raw_path: str, path: str) -> str | None:
    """Why a request path must be refused before routing, or None.

    Dot segments (``/upload/../api3/json``) and encoded separators (``%2e%2e``, ``%2f``, also
    encoded twice) could lead a relayed request out of its route once the site, or the HTTP
    client on the way to it, normalises the path.
    """
    if _ENCODED_SEPARATORS.search(raw_path) or _ENCODED_SEPARATORS.search(path):
        return "an encoded dot, slash or backslash"
    if "\\" in path:
        return "a backslash"
    if any(segment in (".", "..") for segment in path.split("/")):
        return "a dot segment"
    return None


def _loggable(text: str) -> str:
    """A caller-supplied name for the request log line: one escaped token (see logs.loggable)."""
    return loggable(text)


def _accepts(accept_encoding: str, coding: str) -> bool:
    """Does an Accept-Encoding header accept ``coding`` (a q of 0 refuses it)?"""
    for part in accept_encoding.lower().split(","):
        name, _, params = part.strip().partition(";")
        if name.strip() in (coding, "*"):
            q = params.strip().removeprefix("q=")
            try:
                return not params or float(q) > 0
            except ValueError:
                return True
    return False


def decoded_for_caller(body: bytes, headers: list[tuple[str, str]],
                       accept_encoding: str) -> tuple[bytes, list[tuple[str, str]]]:
    """A body the site compressed, decompressed when the caller did not ask for that encoding (the
    proxy's own connection to the site always accepts gzip)."""
    coding = next((v.strip().lower() for k, v in headers if k.lower() == "content-encoding"), None)
    if coding in (None, "identity") or _accepts(accept_encoding, coding):
        return body, headers
    try:
        if coding == "gzip":
            body = gzip.decompress(body)
        elif coding == "deflate":
            try:
                body = zlib.decompress(body)
            except zlib.error:
                body = zlib.decompress(body, -zlib.MAX_WBITS)
        else:
            return body, headers  # an encoding sgcache cannot undo: relayed as it came
    except (OSError, zlib.error, EOFError):
        return body, headers
    kept = [(k, v) for k, v in headers if k.lower() not in ("content-encoding", "content-length")]
    return body, kept


#: request ids taken from the caller's X-Request-Id (anything else gets a fresh id)
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def site_turns(config: Config) -> int:
    """site.max_concurrent, or when 0 the web threads less a quarter (at least 2 less, at least 1)."""
    if config.site.max_concurrent:
        return config.site.max_concurrent
    threads = config.web.threads
    return max(1, threads - max(2, threads // 4))


def build_service(config: Config, engine: Any = None) -> Service:
    """The proxy's parts for one process, each built here and wired once: the metrics, the one
    pooled client to the site, the cache database, what the proxy learns of callers, the cache's
    answers, the write read-back and the site's info."""
    from sgcache.schema.follow import record
    from sgcache.store.db import create_engine
    from sgcache.store.tables import Tables
    from sgcache.sync.refresh import Refresher

    config.require("site.base_url", "site.script_name", "site.api_key")
    metrics = Metrics()
    turns = site_turns(config)
    # Requests waiting for a turn hold threads too: leave at least one thread for cached reads.
    upstream = Upstream(config.site, max_concurrent=turns, max_queued=max(0, config.web.threads - turns - 1),
                        on_failure=metrics.upstream_error)
    if engine is None:
        engine = create_engine(config.database.url, **_pool_args(config))
    read_engine = None
    if config.database.read_url:
        read_engine = create_engine(config.database.read_url, **_pool_args(config))
    following = record.follows(config)
    in_use = record.schema_at_start(config, read_engine or engine)
    tables = Tables(in_use.schema)
    cache = CacheDatabase(engine, tables, read_engine=read_engine,
                          prepared_statements=config.database.prepared_statements)
    # Following the site's schema, the parts built once here find the tables in use at each call.
    tables_in_use = TablesInUse(cache) if following else tables
    site = config.site
    own_auth = {"script_name": site.script_name, "script_key": site.api_key.reveal() if site.api_key else ""}
    verifier = Verifier(config.auth, upstream)
    sessions = SessionBook(engine, tables.state)
    identities = IdentityBook(upstream, own_auth, sessions, config.auth.verify_ttl)
    policy = Policy(config.auth, identities, tables_in_use, site.script_name or "")
    site_schema = SiteSchema(engine, tables, lambda: fetch_site_schema(upstream, own_auth))
    reads = CacheReads(cache, verifier, identities, policy, site_schema, ZoneInfo(site.timezone),
                       plans=PlanCache(config.reads.plan_cache, on_lookup=metrics.read_plan))
    if following:
        # What callers may see was learned for the old fields: learned again for the new ones.
        cache.follow_schema(config, in_use.digest, settle=CacheReads.STATE_TTL + 2.0, on_change=policy.forget_all)
    shadow = ShadowChecker(config.auth, upstream, recompute=reads.recompute, trip=reads.trip_group,
                           on_result=metrics.shadow)
    refresher = Refresher(engine, tables_in_use, site, page_size=config.scanner.page_size)
    readback = ReadBack(cache, refresher, timeout=site.timeout, threads=config.web.threads)
    harvest = Harvest(cache, refresher, readback.as_of, on_corrected=metrics.passthrough_refreshed.inc,
                      read_state=reads.read_state)
    return Service(config, upstream, cache, verifier=verifier, reads=reads, readback=readback,
                   site_info=SiteInfo(upstream, cache, site.info_ttl), shadow=shadow, sessions=sessions,
                   metrics=metrics, harvest=harvest,
                   thumbnails=FreshThumbnails(cache, refresher, margin=config.reads.url_margin,
                                              on_refreshed=metrics.thumbnails_refreshed.inc))


def fetch_site_schema(upstream: Upstream, auth: dict) -> tuple[dict, dict]:
    """The site's schema_read and schema_entity_read answers, asked as sgcache's own script."""
    answers = []
    for method in ("schema_read", "schema_entity_read"):
        try:
            reply = upstream.call(method, [auth])
            payload = reply.json() if reply.status == 200 else None
        except (SiteUnavailable, ValueError):
            payload = None
        if not isinstance(payload, dict) or not isinstance(payload.get("results"), dict):
            raise Uncertain("site_schema_unavailable", method)
        answers.append(payload["results"])
    return answers[0], answers[1]


def _pool_args(config: Config) -> dict:
    if config.database.url.startswith("postgresql"):
        # No ping before each checkout (a round trip per request): a connection found dead is
        # replaced and the request retried once (Service._run_on_cache). The application name
        # shows the proxy's connections in pg_stat_activity.
        connect_args = {"application_name": "sgcache-web"}
        if config.database.statement_timeout > 0:
            # No single read holds a worker (and a connection) long; the request passes through instead.
            from sqlalchemy.engine import make_url

            given = make_url(config.database.url).query.get("options") or ""
            given = " ".join(given) if isinstance(given, tuple) else given
            timeout = f"-c statement_timeout={int(config.database.statement_timeout * 1000)}"
            connect_args["options"] = f"{given} {timeout}".strip()
        return {"pool_size": config.web.threads, "max_overflow": config.web.threads, "pool_pre_ping": False,
                "connect_args": connect_args}
    return {}


def create_app(config: Config, *, service: Service | None = None) -> Flask:
    """A proxy application for ``config`` (tests may hand in a ready ``service``)."""
    app = Flask("sgcache")
    service = service or build_service(config)
    app.extensions["sgcache"] = service
    max_body = config.web.max_body
    metrics = service.metrics
    add_admin_routes(app, config, service, metrics)
    add_webhook_route(app, config, service, metrics)
    if service.cache is not None:
        saver = SampleSaver(metrics, lambda histogram: _save_latency(service, histogram), config.admin.sample_interval)
        app.extensions["sgcache_samples"] = saver
        saver.start()
        service.on_close.append(saver.stop)
        if service.cache.follows_schema:
            # Each request keeps the tables it started with; a new schema is taken up between requests.
            app.before_request(service.cache.pin_tables)
            app.teardown_request(service.cache.unpin_tables)

    @app.before_request
    def start() -> None:
        g.started = time.perf_counter()
        given = request.headers.get("X-Request-Id") or ""
        # A caller's id is kept only when it cannot add or hide anything in a log line.
        g.request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex[:16]
        g.method, g.entity_type, g.outcome, g.caller, g.detail = "-", "-", "-", "-", ""
        raw_path = (request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or "").split("?", 1)[0]
        problem = path_problem(raw_path, request.path)
        if problem:
            g.detail = f"path with {problem}"
            raise RefusedPath(f"the path has {problem}")

    @app.after_request
    def finish(response: Response) -> Response:
        response.headers["X-Sgcache-Request-Id"] = g.get("request_id", "-")
        if g.get("outcome", "-") != "-":
            response.headers["X-Sgcache-Outcome"] = g.outcome
        ms = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
        if g.get("outcome", "-") != "-":
            metrics.request(g.method if g.method != "-" else "bad_request", g.outcome, ms / 1000)
        if log.isEnabledFor(logging.INFO):  # its arguments cost more than the call when it is off
            log.info("event=request id=%s path=%s method=%s type=%s outcome=%s status=%d ms=%.1f caller=%s%s",
                     g.get("request_id", "-"), loggable(request.path), g.get("method", "-"),
                     g.get("entity_type", "-"), g.get("outcome", "-"), response.status_code, ms,
                     g.get("caller", "-"), f" detail={g.detail!r}" if g.get("detail") else "")
        return response

    def to_response(answer: Answer) -> Response:
        g.outcome, g.detail = answer.outcome, answer.detail
        body, headers = answer.body, list(answer.headers)
        if answer.relayed:
            body, headers = decoded_for_caller(body, headers, request.headers.get("Accept-Encoding", ""))
        elif len(body) >= GZIP_MIN_BYTES and _accepts(request.headers.get("Accept-Encoding", ""), "gzip"):
            body = gzip.compress(body, compresslevel=5)
            headers.append(("Content-Encoding", "gzip"))
            headers.append(("Vary", "Accept-Encoding"))
        return Response(body, status=answer.status, headers=headers)

    def api3(prefix: str | None = None, moment: str | None = None) -> Response:
        try:
            if prefix is not None and (prefix == "as-of" or prefix.startswith("as-of/")):
                # shotgun_api3 drops the last segment of a base URL without a trailing slash, so
                # the time never arrives: answering the present instead would be a wrong answer.
                raise Fault("sgcache: an as-of URL needs a time and a trailing slash, such as "
                            "Shotgun('http://sgcache:8010/as-of/2026-12-01T18:00:00Z/', ...): without the slash "
                            "the client drops the time")
            as_of = parse_moment(moment) if moment is not None else None
            length = request.content_length
            if length is not None and length > max_body:
                raise Fault(f"sgcache: the request body ({length} bytes) is larger than web.max_body ({max_body} "
                            "bytes)")
            body = request.stream.read(max_body + 1)
            if len(body) > max_body:
                raise Fault(f"sgcache: the request body is larger than web.max_body ({max_body} bytes)")
            answer, req = service.handle(body, request.headers, as_of=as_of)
            if req is not None:
                g.method, g.caller = _loggable(req.method), _loggable(req.caller)
                g.entity_type = _loggable(req.entity_type or "-")
            return to_response(answer)
        except Fault as fault:
            return to_response(fault_answer(fault, "bad request"))
        except Exception:
            log.exception("event=internal_error id=%s", g.request_id)
            return to_response(fault_answer(Fault(f"sgcache: internal error (request id {g.request_id}); the "
                                                  "sgcache log has the details"), "internal error"))

    app.add_url_rule("/api3/json", "api3", api3, methods=["POST"])
    # Reads of the past (sgcache.api3.past): Shotgun("http://sgcache:8010/as-of/2026-12-01T18:00:00Z", ...)
    app.add_url_rule("/as-of/<moment>/api3/json", "api3_as_of", api3, methods=["POST"])
    app.add_url_rule("/<path:prefix>/api3/json", "api3_prefixed", api3, methods=["POST"])

    def relay_file(path: str) -> Response:
        """Stream a file route to the site at ``path`` (made from the matched route, never the
        caller's text) with only the headers it needs, and the site's answer back."""
        g.method, g.outcome = path.split("/")[1], "passthrough"
        body = request.stream if request.method == "POST" else None
        try:
            upstream_response = service.upstream.stream(request.method, path, request.query_string.decode("latin-1"),
                                                        file_headers(request.headers, request.cookies), body,
                                                        request.content_length)
        except SiteUnavailable as e:
            g.outcome = "fault"
            return Response(f"sgcache: {e.message}\n", status=502, content_type="text/plain; charset=utf-8")
        return Response(chunks(upstream_response), status=upstream_response.status_code,
                        headers=relay_headers(upstream_response.headers, keep_length=True), direct_passthrough=True)

    def upload(name: str) -> Response:
        if name not in uploads.READ_BACK_ROUTES:
            return relay_file(f"/upload/{name}")
        return upload_and_read_back(name)

    def upload_and_read_back(name: str) -> Response:
        """An upload that changes one entity: sent on as it came, and once the site confirms it,
        that entity is read back into the cache before the answer goes back (as for writes)."""
        g.method, g.outcome = "upload", "passthrough"
        prefix = b""
        while len(prefix) < uploads.SNIFF_BYTES:
            block = request.stream.read(uploads.SNIFF_BYTES - len(prefix))
            if not block:
                break
            prefix += block
            if b"filename=" in prefix:
                break
        target = uploads.upload_target(name, uploads.text_fields(prefix, request.headers.get("Content-Type")))
        g.entity_type = loggable(next(iter(target))) if target else "-"
        as_of = service.readback.before_write() if target else None
        try:
            upstream_response = service.upstream.stream(
                "POST", f"/upload/{name}", request.query_string.decode("latin-1"),
                file_headers(request.headers, request.cookies), uploads.PrefixedStream(prefix, request.stream),
                request.content_length)
        except SiteUnavailable as e:
            g.outcome = "fault"
            if as_of is not None:
                as_of.cancel()
            return Response(f"sgcache: {e.message}\n", status=502, content_type="text/plain; charset=utf-8")
        try:
            body = upstream_response.raw.read(uploads.SNIFF_BYTES, decode_content=True)
        finally:
            upstream_response.close()
        if target and uploads.confirmed(upstream_response.status_code, body):
            g.detail = service.readback.read_back("upload", target, as_of)
        elif as_of is not None:
            as_of.cancel()
        headers = [(k, v) for k, v in relay_headers(upstream_response.headers)
                   if k.lower() not in ("content-encoding", "content-length")]
        return Response(body, status=upstream_response.status_code, headers=headers)

    def thumbnail_url() -> Response:
        return relay_file("/upload/get_thumbnail_url")

    def attachment(attachment_id: int) -> Response:
        return relay_file(f"/file_serve/attachment/{attachment_id}")

    def thumbnail(rest: str) -> Response:
        if not _THUMBNAIL.fullmatch(rest):
            raise NotFound()
        return relay_file(f"/thumbnail/{rest}")

    app.add_url_rule(f"/upload/<any({', '.join(UPLOADS)}):name>", "upload", upload, methods=["POST"])
    app.add_url_rule("/upload/get_thumbnail_url", "thumbnail_url", thumbnail_url, methods=["GET", "HEAD"])
    app.add_url_rule("/file_serve/attachment/<int:attachment_id>", "attachment", attachment, methods=["GET", "HEAD"])
    app.add_url_rule("/thumbnail/<path:rest>", "thumbnail", thumbnail, methods=["GET", "HEAD"])

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        g.outcome = "fault"
        if isinstance(error, RefusedPath):
            text = f"sgcache: 400 Bad Request: {error.description}; nothing was sent to the site\n"
        else:
            # The path is not echoed: it may hold anything the caller typed.
            text = (f"sgcache: {error.code} {error.name}: {request.method} of this path is not served here; "
                    "shotgun_api3 talks to POST <base>/api3/json and the file routes it uses\n")
        return Response(text, status=error.code or 500, content_type="text/plain; charset=utf-8")

    @app.errorhandler(Exception)
    def internal_error(error: Exception) -> Response:
        log.exception("event=internal_error id=%s", g.get("request_id", "-"))
        return Response(f"sgcache: internal error (request id {g.get('request_id', '-')})\n", status=500,
                        content_type="text/plain; charset=utf-8")

    return app


def _save_latency(service: Service, histogram: samples.LatencyHistogram) -> None:
    if not service.cache.is_usable():
        return
    with service.cache.engine.begin() as conn:
        samples.save(conn, service.cache.tables.state, "latency", histogram.to_data())


def run_gunicorn(config: Config) -> None:
    """Serve the proxy with gunicorn's threaded workers, each building its own app after the fork."""
    import atexit
    import os
    import shutil
    import tempfile

    from gunicorn.app.base import BaseApplication

    # Every worker counts its metrics in files here, so that a scrape adds them all up (see
    # sgcache.metrics). Set before any worker exists; emptied and removed when the server stops.
    if not multiprocess_dir():
        metrics_dir = tempfile.mkdtemp(prefix="sgcache-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        atexit.register(shutil.rmtree, metrics_dir, True)

    def child_exit(_server, worker) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)

    class ProxyApplication(BaseApplication):
        def load_config(self) -> None:
            settings = {
                "bind": [config.web.bind],
                "workers": config.web.workers,
                "threads": config.web.threads,
                "worker_class": "gthread",
                # A worker is killed when silent this long: more than the longest passthrough.
                "timeout": int(config.site.timeout + config.site.connect_timeout + 30),
                "graceful_timeout": 30,
                "keepalive": 75,
                "accesslog": None,
                "errorlog": "-",
                "loglevel": config.log.level,
                "proc_name": "sgcache-web",
                "child_exit": child_exit,
            }
            if "control_socket_disable" in self.cfg.settings:
                # gunicorn 24+ opens a control socket in $HOME, shared by every instance on the host.
                settings["control_socket_disable"] = True
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self):
            from sgcache.logs import setup_logging

            setup_logging(config.log.level, config.log.format)
            return create_app(config)

    ProxyApplication().run()
