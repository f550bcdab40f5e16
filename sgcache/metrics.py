"""The proxy's counters and timings: Prometheus metrics, the status page's latency samples.

One :class:`Metrics` per proxy process. Under gunicorn every worker counts in files under
``PROMETHEUS_MULTIPROC_DIR`` (set by :func:`sgcache.web.run_gunicorn` before the workers
start), so a scrape answered by any worker adds up all of them. prometheus_client is imported
only when a :class:`Metrics` is made, after the fork, so that it sees that setting.

What the cache database holds (event lag, scans, dead letters) is read from it at scrape time
by :class:`DatabaseCollector`, the same numbers ``sgcache status`` prints.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy as sa

from sgcache.store import samples
from sgcache.upstream import READ_ONLY

log = logging.getLogger(__name__)

#: Method label values; any other method name a client sends is counted as "other", so a
#: client cannot grow the number of series without bound.
KNOWN_METHODS = frozenset(READ_ONLY | {"create", "update", "delete", "revive", "batch", "upload", "file_serve",
                                       "thumbnail", "bad_request", "upload_url", "get_upload_link_info"})

#: Methods the cache can answer: the hit ratio is counted over these.
ANSWERABLE = frozenset({"read", "summarize", "schema_read", "schema_entity_read", "schema_field_read"})

#: Seconds: Prometheus histogram buckets for request durations.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir") or None


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else "other"


class Metrics:
    """Counters for one proxy process (see the module docstring)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("sgcache_requests", "Requests handled, by JSON-RPC method (or file route) and "
                                "outcome: cache, passthrough or fault", ["method", "outcome"], registry=self.registry)
        self.duration = Histogram("sgcache_request_duration_seconds", "Time from request to answer, by outcome",
                                  ["outcome"], buckets=DURATION_BUCKETS, registry=self.registry)
        self.passthroughs = Counter("sgcache_passthrough", "Requests the cache could have answered that went to "
                                    "the site instead, by reason", ["reason"], registry=self.registry)
        self.upstream_errors = Counter("sgcache_upstream_errors", "Failed requests to the site, by kind: "
                                       "timeout, connection or http_5xx", ["kind"], registry=self.registry)
        self.breaker_open = Gauge("sgcache_site_breaker_open", "1 while the circuit breaker to the site is open "
                                  "(or half-open), in any live process", registry=self.registry,
                                  multiprocess_mode="livemax")
        self.database_up = Gauge("sgcache_database_up", "1 while the cache database is usable, in every live "
                                 "process", registry=self.registry, multiprocess_mode="livemin")
        self.shadow_checks = Counter("sgcache_shadow_checks", "Cached answers also asked of the site as the "
                                     "caller, by permission group and result: same, different or failed",
                                     ["group", "result"], registry=self.registry)
        self.shadow_mismatches = Counter("sgcache_shadow_mismatches", "Shadow checks whose answers still differed "
                                         "when asked again (the group is switched to passthrough), by permission "
                                         "group", ["group"], registry=self.registry)
        self.passthrough_refreshed = Counter("sgcache_passthrough_refreshed", "Cached entities a passed-through "
                                             "read showed otherwise than the cache held them, corrected from it "
                                             "(changes the event log did not bring, such as writes with events "
                                             "off)", registry=self.registry)
        self.thumbnails_refreshed = Counter("sgcache_thumbnails_refreshed", "Entities whose thumbnail URLs in a "
                                            "cached answer were expiring or placeholders, read again from the site "
                                            "before the answer went back", registry=self.registry)
        self.webhooks = Counter("sgcache_webhook_deliveries", "Webhook deliveries from the site, by outcome: "
                                "accepted, ignored (service events), rejected (signature), malformed or refused",
                                ["outcome"], registry=self.registry)
        self.read_plans = Counter("sgcache_read_plans", "Cached reads by where their plan came from: kept (an "
                                  "identical request's, reads.plan_cache) or compiled", ["result"],
                                  registry=self.registry)
        self._lock = threading.Lock()
        self._minute = samples.LatencyHistogram()

    # --- recording -----------------------------------------------------------------------------

    def request(self, method: str, outcome: str, seconds: float) -> None:
        self.requests.labels(method_label(method), outcome).inc()
        self.duration.labels(outcome).observe(seconds)
        with self._lock:
            self._minute.add(seconds * 1000, outcome)

    def webhook(self, outcome: str) -> None:
        self.webhooks.labels(outcome).inc()

    def read_plan(self, kept: bool) -> None:
        self.read_plans.labels("kept" if kept else "compiled").inc()

    def passthrough(self, reason: str) -> None:
        self.passthroughs.labels(reason).inc()

    def shadow(self, group: str, result: str) -> None:
        self.shadow_checks.labels(group, result).inc()
        if result == "different":
            self.shadow_mismatches.labels(group).inc()

    def upstream_error(self, error: str) -> None:
        if error.startswith("HTTP "):
            kind = "http_5xx"
        elif "time" in error:  # "connection timed out", "no answer in time"
            kind = "timeout"
        else:
            kind = "connection"
        self.upstream_errors.labels(kind).inc()

    def health(self, *, database_up: bool, breaker_open: bool) -> None:
        self.database_up.set(1 if database_up else 0)
        self.breaker_open.set(1 if breaker_open else 0)

    def take_sample(self) -> samples.LatencyHistogram:
        """The latencies counted since the last call (for the status page's chart)."""
        with self._lock:
            taken, self._minute = self._minute, samples.LatencyHistogram()
        return taken

    # --- reading -------------------------------------------------------------------------------

    def collecting_registry(self, *extra: Any):
        """A registry that yields every process's metrics (one, without gunicorn) plus ``extra``
        collectors."""
        from prometheus_client import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector

        path = multiprocess_dir()
        if path is None and not extra:
            return self.registry
        registry = CollectorRegistry()
        if path is not None:
            MultiProcessCollector(registry, path=path)
        else:
            registry.register(_Forward(self.registry))
        for collector in extra:
            registry.register(collector)
        return registry

    def exposition(self, *extra: Any) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.collecting_registry(*extra)), CONTENT_TYPE_LATEST

    def counts(self) -> dict[str, Any]:
        """Totals over every process: requests by method and outcome, passthroughs by reason,
        upstream errors by kind, and the hit ratio of the answerable methods."""
        requests: dict[str, dict[str, int]] = {}
        reasons: dict[str, int] = {}
        errors: dict[str, int] = {}
        for metric in self.collecting_registry().collect():
            for s in metric.samples:
                if s.name == "sgcache_requests_total":
                    by_outcome = requests.setdefault(s.labels["method"], {})
                    by_outcome[s.labels["outcome"]] = by_outcome.get(s.labels["outcome"], 0) + int(s.value)
                elif s.name == "sgcache_passthrough_total":
                    reasons[s.labels["reason"]] = reasons.get(s.labels["reason"], 0) + int(s.value)
                elif s.name == "sgcache_upstream_errors_total":
                    errors[s.labels["kind"]] = errors.get(s.labels["kind"], 0) + int(s.value)
        answerable = {m: v for m, v in requests.items() if m in ANSWERABLE}
        hits = sum(v.get("cache", 0) for v in answerable.values())
        total = sum(v.get("cache", 0) + v.get("passthrough", 0) for v in answerable.values())
        return {"requests": requests, "passthrough_reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
                "upstream_errors": errors, "hit_ratio": round(hits / total, 4) if total else None,
                "answered_from_cache": hits, "answerable_requests": total}


class _Forward:
    """Collects another registry (a registry cannot be registered in a registry)."""

    def __init__(self, registry: Any):
        self.registry = registry

    def collect(self) -> Iterator[Any]:
        return self.registry.collect()


class DatabaseCollector:
    """Prometheus gauges read from the cache database at scrape time."""

    def __init__(self, read_status: Callable[[], dict[str, Any] | None]):
        self.read_status = read_status

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        try:
            data = self.read_status()
        except sa.exc.SQLAlchemyError as e:
            log.debug("event=metrics_database_unavailable error=%r", str(e)[:200])
            return
        if data is None:
            return
        lag = data.get("event_lag") or {}
        if lag:
            yield GaugeMetricFamily("sgcache_event_lag_seconds", "Age of the oldest site event not yet applied, "
                                    "as the watcher last saw it (0: up to date)", value=lag["lag_seconds"])
            yield GaugeMetricFamily("sgcache_event_lag_events", "Site events not yet applied, as the watcher "
                                    "last saw it", value=lag["lag_events"])
            yield GaugeMetricFamily("sgcache_watcher_sample_age_seconds", "Seconds since the watcher last "
                                    "reported (large: the watcher is not running)", value=lag["age_seconds"])
        cursor = data.get("cursor")
        if cursor is not None:
            yield GaugeMetricFamily("sgcache_event_applied_id", "Highest event id applied",
                                    value=cursor["max_applied_id"])
            yield GaugeMetricFamily("sgcache_event_gaps", "Event ids still awaited below the highest applied",
                                    value=len(cursor["gaps"]))
        yield GaugeMetricFamily("sgcache_dead_letters", "Events that failed every attempt, not resolved by a "
                                "later try yet (reads of their types pass through)",
                                value=len(data.get("dead_letters", [])))
        yield GaugeMetricFamily("sgcache_other_sides_queued", "Cached entities queued to be read again because "
                                "a write changed a link to them (read by the watcher after each poll)",
                                value=(data.get("other_sides") or {}).get("queued", 0))
        now = dt.datetime.now(dt.UTC)
        full = GaugeMetricFamily("sgcache_full_scan_seconds", "Duration of the last full import, by type",
                                 labels=["entity_type"])
        last = GaugeMetricFamily("sgcache_scan_seconds", "Duration of the last scan (full or incremental), "
                                 "by type", labels=["entity_type"])
        age = GaugeMetricFamily("sgcache_scan_age_seconds", "Seconds since the last scan, by type",
                                labels=["entity_type"])
        backfill = GaugeMetricFamily("sgcache_backfill_fields", "Fields waiting for a full import (their reads "
                                     "pass through), by type", labels=["entity_type"])
        for name, t in data.get("types", {}).items():
            if t.get("full_scan_seconds") is not None:
                full.add_metric([name], t["full_scan_seconds"])
            if t.get("last_scan_seconds") is not None:
                last.add_metric([name], t["last_scan_seconds"])
            if t.get("last_scan_at") is not None:
                age.add_metric([name], (now - t["last_scan_at"]).total_seconds())
            backfill.add_metric([name], t.get("backfill_fields", 0))
        yield from (full, last, age, backfill)
        callbacks = data.get("triggers") or []
        if callbacks:
            behind = GaugeMetricFamily("sgcache_trigger_events_behind", "Events the watcher applied past an "
                                       "event plugin callback's cursor, by callback", labels=["callback"])
            failures = GaugeMetricFamily("sgcache_trigger_failures", "Failed tries of a callback on the event it "
                                         "is on, by callback", labels=["callback"])
            dead = GaugeMetricFamily("sgcache_trigger_dead_letters", "Events a callback gave up on, not replayed "
                                     "yet (sgcache triggers retry), by callback", labels=["callback"])
            stopped = GaugeMetricFamily("sgcache_trigger_stopped", "1 when stopOnError stopped the callback",
                                        labels=["callback"])
            for t in callbacks:
                if t.get("events_behind") is not None:
                    behind.add_metric([t["callback"]], t["events_behind"])
                failures.add_metric([t["callback"]], t["failures"])
                dead.add_metric([t["callback"]], t["dead_letters"])
                stopped.add_metric([t["callback"]], 1 if t["stopped_at"] else 0)
            yield from (behind, failures, dead, stopped)


class SampleSaver:
    """Saves this process's request latencies every ``interval`` seconds (a daemon thread)."""

    def __init__(self, metrics: Metrics, save: Callable[[samples.LatencyHistogram], None], interval: float):
        self.metrics = metrics
        self.save = save
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.interval <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="sgcache-samples", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def flush(self) -> None:
        taken = self.metrics.take_sample()
        if not taken.count:
            return
        try:
            self.save(taken)
        except Exception as e:  # the database may be down: the chart has a gap, nothing else
            log.debug("event=sample_not_saved error=%r", str(e)[:200])

    def stop(self) -> None:
        self._stop.set()
