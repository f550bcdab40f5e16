"""The proxy's own routes under ``/_sgcache/``: health, status (JSON and a page), metrics.

``GET /_sgcache/health`` is for load balancers and is always open: 200 when this process can
serve (the cache database is usable, or the site answers), 503 when it cannot, with short words
only (no error text, URL or host name). The status JSON, the status page and the Prometheus
metrics, which give the reasons, are open to the networks in ``admin.allow`` (this host only by
default, nobody when empty); anyone else gets 403.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import threading
from typing import Any

import sqlalchemy as sa
from flask import Flask, Response, render_template, request

import sgcache
from sgcache.admin_history import add_history_routes
from sgcache.api3.service import Service
from sgcache.config import Config
from sgcache.metrics import DatabaseCollector, Metrics
from sgcache.store import samples
from sgcache.store import state as store_state
from sgcache.store.db import is_set_up
from sgcache.sync import report

log = logging.getLogger(__name__)

#: The status page's charts cover this much time, in one-minute steps.
CHART_WINDOW = dt.timedelta(hours=1)


def health(service: Service) -> tuple[int, dict[str, str]]:
    """(HTTP status, body): can this process serve requests now? Short words only, for anyone
    to read: ``status`` ok, degraded or down; ``database`` ok or down; ``site`` ok, down or
    recovering."""
    database_ok = service.cache is not None and service.cache.is_usable()
    breaker = service.upstream.breaker.state
    site_ok = breaker == "closed"
    body = {
        "database": "ok" if database_ok else "down",
        "site": "ok" if site_ok else ("down" if breaker == "open" else "recovering"),
        "status": "ok" if database_ok and site_ok else "degraded" if database_ok or site_ok else "down",
    }
    return (503 if body["status"] == "down" else 200), body


def health_detail(service: Service) -> dict[str, Any]:
    """:func:`health`'s words with the reason and the last errors, for the admin routes only (an
    error can name the database's host or the site's address)."""
    _, body = health(service)
    detail: dict[str, Any] = dict(body)
    if body["database"] != "ok" and service.cache is not None and service.cache.problem:
        detail["database_error"] = service.cache.problem
    if body["site"] != "ok" and service.upstream.breaker.last_error:
        detail["site_error"] = service.upstream.breaker.last_error
    if body["status"] == "degraded":
        detail["reason"] = ("the cache database is down: every request goes to the site" if body["database"] != "ok"
                            else "the site is unavailable: cached reads are answered, everything else fails")
    elif body["status"] == "down":
        detail["reason"] = "both the cache database and the site are unavailable"
    return detail


class RowCounts:
    """Active and retired rows per cached type, counted at most every ``interval`` seconds.

    Counting reads every cached table, too much for each view of the status page. The counts
    are saved as a sample (kind ``row_counts``) in the cache database, so every proxy process
    and host reuses the newest one; one process counts again when it is older than ``interval``.
    """

    KIND = "row_counts"

    def __init__(self, interval: float):
        self.interval = dt.timedelta(seconds=interval)
        self._lock = threading.Lock()  # one count at a time in this process

    def get(self, service: Service) -> tuple[dt.datetime, dict[str, dict[str, int]]]:
        """(when counted, {type: {"active": n, "retired": n}})."""
        engine, tables = service.cache.engine, service.cache.tables
        with self._lock:
            with engine.connect() as conn:
                newest = samples.latest(conn, tables.state, self.KIND)
            now = dt.datetime.now(dt.UTC)
            if newest is not None and now - newest[0] < self.interval:
                return newest
            found = report.status(engine, tables, rows=True)
            counts = {name: {"active": t["active"], "retired": t["retired"]} for name, t in found["types"].items()}
            if found.get("history") is not None:
                counts[HISTORY_COUNT] = {"versions": found["history"]["versions"]}
            with engine.begin() as conn:
                samples.save(conn, tables.state, self.KIND, counts, at=now)
            return now, counts


#: The key of the history's version count among the row counts (no type name starts with "_").
HISTORY_COUNT = "_history"


def _sync_status(service: Service, row_counts: RowCounts | None = None) -> dict[str, Any] | None:
    """The sync part of the status, with the row counts of ``row_counts`` when given (not for
    metrics, which have no use for them)."""
    if service.cache is None or not service.cache.is_usable():
        return None
    if not is_set_up(service.cache.engine):
        return {"cursor": None, "event_lag": None, "dead_letters": [], "projects": None, "types": {}}
    data = report.status(service.cache.engine, service.cache.tables, rows=False)
    if row_counts is not None:
        data["rows_counted_at"], counts = row_counts.get(service)
        for name, t in data["types"].items():
            t.update(counts.get(name, {}))
        if data.get("history") is not None and HISTORY_COUNT in counts:
            data["history"]["versions"] = counts[HISTORY_COUNT].get("versions")
    return data


def latency_series(conn: sa.Connection, service: Service, now: dt.datetime) -> list[dict[str, Any]]:
    """Per minute of the last hour: requests, p50 and p95 in ms, over every proxy process."""
    minutes: dict[dt.datetime, samples.LatencyHistogram] = {}
    for at, _source, data in samples.since(conn, service.cache.tables.state, "latency", now - CHART_WINDOW):
        minute = at.replace(second=0, microsecond=0)
        minutes.setdefault(minute, samples.LatencyHistogram()).merge(samples.LatencyHistogram.from_data(data))
    return [{"at": m, "requests": h.count, "p50_ms": h.quantile(0.5), "p95_ms": h.quantile(0.95),
             "outcomes": h.outcomes} for m, h in sorted(minutes.items())]


def lag_series(conn: sa.Connection, service: Service, now: dt.datetime) -> list[dict[str, Any]]:
    return [{"at": at, "lag_seconds": data.get("lag_seconds", 0.0), "lag_events": data.get("lag_events", 0)}
            for at, _source, data in samples.since(conn, service.cache.tables.state, "event_lag", now - CHART_WINDOW)]


def status(service: Service, metrics: Metrics, row_counts: RowCounts) -> dict[str, Any]:
    """Everything the status JSON and page show."""
    now = dt.datetime.now(dt.UTC)
    out: dict[str, Any] = {"version": sgcache.__version__, "now": now, "health": health_detail(service),
                           "site": service.config.site.base_url, "proxy": metrics.counts()}
    try:
        out["sync"] = _sync_status(service, row_counts)
        out["charts"] = {"latency": [], "event_lag": []}
        if out["sync"] is not None and service.cache is not None:
            with service.cache.engine.connect() as conn:
                if service.cache.tables.state.samples.name in sa.inspect(conn).get_table_names():
                    out["charts"] = {"latency": latency_series(conn, service, now),
                                     "event_lag": lag_series(conn, service, now)}
    except sa.exc.SQLAlchemyError as e:
        service.cache.failed(e)
        out["sync"] = None
        out["health"] = health_detail(service)
    out["auth"] = auth_status(service)
    return out


def auth_status(service: Service) -> dict[str, Any]:
    """The policy, the groups a shadow check switched off (all processes) and this process's checks."""
    switched_off: dict[str, Any] = {}
    if service.cache is not None and service.cache.is_usable():
        try:
            with service.cache.engine.connect() as conn:
                switched_off = store_state.tripped_groups(conn, service.cache.tables.state)
        except sa.exc.SQLAlchemyError as e:
            service.cache.failed(e)
    return {"policy": service.policy.describe(), "switched_off": switched_off,
            "shadow_checks": service.shadow.stats()}


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if value == float("inf"):
        return None
    return str(value)


def to_json(data: Any) -> str:
    return json.dumps(data, default=_json_default, indent=2, sort_keys=False)


def allowed_address(remote_addr: str | None, allowed: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    """Is ``remote_addr`` in one of the ``allowed`` networks? An IPv4 client of a dual-stack
    socket (``::ffff:10.1.2.3``) counts as its IPv4 address."""
    try:
        address = ipaddress.ip_address((remote_addr or "").split("%")[0])
    except ValueError:
        return False
    candidates = [address]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        candidates.append(address.ipv4_mapped)
    return any(a in network for a in candidates for network in allowed)


def add_admin_routes(app: Flask, config: Config, service: Service, metrics: Metrics) -> None:
    allowed = [ipaddress.ip_network(n, strict=False) for n in config.admin.allow]
    row_counts = RowCounts(config.admin.row_count_interval)

    def refused() -> Response | None:
        if allowed_address(request.remote_addr, allowed):
            return None
        return Response("sgcache: this address may not open the admin pages (admin.allow)\n", status=403,
                        content_type="text/plain; charset=utf-8")

    def json_response(data: Any, status_code: int = 200) -> Response:
        return Response(to_json(data) + "\n", status=status_code, content_type="application/json; charset=utf-8",
                        headers={"Cache-Control": "no-store"})

    def health_route() -> Response:
        code, body = health(service)
        return json_response(body, code)

    def status_route() -> Response:
        return refused() or json_response(status(service, metrics, row_counts))

    def metrics_route() -> Response:
        denied = refused()
        if denied:
            return denied
        metrics.health(database_up=service.cache is not None and service.cache.is_usable(),
                       breaker_open=service.upstream.breaker.state != "closed")
        body, content_type = metrics.exposition(DatabaseCollector(lambda: _sync_status(service)))
        return Response(body, content_type=content_type)

    def page_route() -> Response:
        denied = refused()
        if denied:
            return denied
        data = status(service, metrics, row_counts)
        return Response(render_template("status.html", s=data, charts=charts(data)),
                        content_type="text/html; charset=utf-8", headers={"Cache-Control": "no-store"})

    app.add_url_rule("/_sgcache/health", "admin_health", health_route, methods=["GET", "HEAD"])
    app.add_url_rule("/_sgcache/status", "admin_status", status_route, methods=["GET"])
    app.add_url_rule("/_sgcache/metrics", "admin_metrics", metrics_route, methods=["GET"])
    app.add_url_rule("/_sgcache/", "admin_page", page_route, methods=["GET"])
    add_history_routes(app, service, refused, json_response)


# --- the page's charts: small inline SVGs, drawn here so the page needs no script -------------------


def svg_line_chart(points: list[tuple[float, float | None]], *, start: float, end: float, unit: str, label: str,
                   color: str, width: int = 560, height: int = 140) -> str:
    """An SVG line chart of (x, y) points over [start, end], y from 0 to the largest value."""
    left, right, top, bottom = 48, 8, 18, 22
    values = [y for _, y in points if y is not None]
    peak = max(values, default=0.0) or 1.0
    inner_w, inner_h = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - start) / max(end - start, 1e-9) * inner_w

    def sy(y: float) -> float:
        return top + inner_h - min(y, peak) / peak * inner_h

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" aria-label="{label}" '
             f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
             f'<text x="{left}" y="12" class="chart-title">{label}</text>',
             f'<line x1="{left}" y1="{top + inner_h}" x2="{width - right}" y2="{top + inner_h}" class="axis"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + inner_h}" class="axis"/>',
             f'<text x="{left - 4}" y="{top + 4}" class="tick" text-anchor="end">{_fmt(peak)} {unit}</text>',
             f'<text x="{left - 4}" y="{top + inner_h}" class="tick" text-anchor="end">0</text>',
             f'<text x="{left}" y="{height - 6}" class="tick">-60 min</text>',
             f'<text x="{width - right}" y="{height - 6}" class="tick" text-anchor="end">now</text>']
    run: list[str] = []
    for x, y in points:
        if y is None:
            if run:
                parts.append(_polyline(run, color))
            run = []
            continue
        run.append(f"{sx(x):.1f},{sy(y):.1f}")
    if run:
        parts.append(_polyline(run, color))
    if not values:
        parts.append(f'<text x="{left + inner_w / 2}" y="{top + inner_h / 2}" class="empty" '
                     'text-anchor="middle">no data in the last hour</text>')
    parts.append("</svg>")
    return "".join(parts)


def _polyline(run: list[str], color: str) -> str:
    if len(run) == 1:
        x, y = run[0].split(",")
        return f'<circle cx="{x}" cy="{y}" r="2.5" fill="{color}"/>'
    return f'<polyline points="{" ".join(run)}" fill="none" stroke="{color}" stroke-width="2"/>'


def _fmt(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def charts(data: dict[str, Any]) -> dict[str, str]:
    now: dt.datetime = data["now"]
    start = (now - CHART_WINDOW).timestamp()
    series = data.get("charts") or {"latency": [], "event_lag": []}

    def finite(v: float | None) -> float | None:
        return None if v is None or v == float("inf") else v

    p95 = [(p["at"].timestamp(), finite(p["p95_ms"])) for p in series["latency"]]
    p50 = [(p["at"].timestamp(), finite(p["p50_ms"])) for p in series["latency"]]
    lag = [(p["at"].timestamp(), p["lag_seconds"]) for p in series["event_lag"]]
    return {
        "latency_p50": svg_line_chart(p50, start=start, end=now.timestamp(), unit="ms", color="#2b7bb9",
                                      label="request latency p50 (ms)"),
        "latency_p95": svg_line_chart(p95, start=start, end=now.timestamp(), unit="ms", color="#d9822b",
                                      label="request latency p95 (ms)"),
        "event_lag": svg_line_chart(lag, start=start, end=now.timestamp(), unit="s", color="#7b3fb9",
                                    label="event lag (s)"),
    }
