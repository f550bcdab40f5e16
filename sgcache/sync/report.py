"""What ``sgcache status`` reports: cursor, gaps, dead letters, scans, backfill marks, rows."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from sgcache.store import history, samples, state
from sgcache.store.tables import Tables
from sgcache.sync import cursor as cursors
from sgcache.sync import rebuild


def _tables(conn: sa.Connection) -> set[str]:
    return set(sa.inspect(conn).get_table_names())


def status(engine: sa.Engine, tables: Tables, *, rows: bool = True) -> dict[str, Any]:
    """Everything ``sgcache status`` shows; ``rows=False`` skips counting each table's rows (a
    scan of every table, which metrics scrapes do not need)."""
    st = tables.state
    with engine.connect() as conn:
        cursor = cursors.load(conn, st)
        dl = st.dead_letters
        dead = [dict(r) for r in conn.execute(sa.select(dl.c.event_id, dl.c.event_type, dl.c.entity_type,
                                                        dl.c.entity_id, dl.c.error, dl.c.failed_at, dl.c.retries,
                                                        dl.c.next_retry_at)
                                              .where(dl.c.resolved_at.is_(None))
                                              .order_by(dl.c.event_id)).mappings()]
        resolved = conn.execute(sa.select(sa.func.count()).select_from(dl).where(dl.c.resolved_at.isnot(None))).scalar()
        queue = st.other_sides
        other_sides = {"queued": 0, "oldest": None}
        if queue.name in _tables(conn):
            count, oldest = conn.execute(sa.select(sa.func.count(), sa.func.min(queue.c.queued_at))).one()
            other_sides = {"queued": count or 0, "oldest": oldest}
        scans = {r["entity_type"]: dict(r) for r in conn.execute(sa.select(st.types)).mappings()}
        marks = state.backfill_marks(conn, st)
        projects = state.read_projects(conn, st)
        lag = samples.latest(conn, st, "event_lag") if st.samples.name in _tables(conn) else None
        rebuilding = rebuild.rebuilding(conn, tables)
        slim = _slim_summary(conn, st) if st.slim_types.name in _tables(conn) else None
        past = _history_summary(conn, tables, scans, rows) if st.link_history.name in _tables(conn) else None
        plugins = _triggers_summary(conn, st, cursor) if st.trigger_cursors.name in _tables(conn) else []
        hook = _webhook_summary(conn, st)
        counts: dict[str, dict[str, int]] = {et.name: {} for et in tables}
        for et in tables if rows else ():
            t = et.table
            active = conn.execute(sa.select(sa.func.count()).select_from(t).where(t.c._active.is_(True))).scalar()
            total = conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()
            counts[et.name] = {"active": active, "retired": total - active}
    return {
        "cursor": None if cursor is None else {
            "max_applied_id": cursor.max_applied_id, "last_complete_id": cursor.last_complete_id,
            "gaps": {str(k): v.isoformat() for k, v in sorted(cursor.gaps.items())}},
        "event_lag": None if lag is None else {
            **lag[1], "sampled_at": lag[0],
            "age_seconds": round((dt.datetime.now(dt.UTC) - lag[0]).total_seconds(), 1)},
        "dead_letters": dead,  # unresolved: their types' reads pass through
        "dead_letters_resolved": resolved,
        "other_sides": other_sides,  # entities queued to be read again for a changed link to them
        "projects": None if projects is None else (projects or "all"),
        "rebuilding": rebuilding,
        "slim": slim,  # slim records of the types the schema leaves out (links to them)
        "history": past,  # what reads of the past can be answered (docs/history.rst)
        "triggers": plugins,  # event plugins' callbacks (docs/triggers.rst)
        "webhook": hook,  # the site's webhook deliveries, once one came (docs/triggers.rst)
        "types": {name: {**counts[name], **{k: v for k, v in scans.get(name, {}).items() if k != "entity_type"},
                         "backfill_fields": len(marks.get(name, {}))} for name in sorted(counts)},
    }


#: Seconds the event log may move without a webhook delivery before the status warns.
WEBHOOK_SILENCE = 300.0


def _webhook_summary(conn: sa.Connection, st) -> dict[str, Any] | None:
    """When the last delivery came, the highest event id one named, and whether deliveries
    stopped while the watcher kept applying events (a hook the site marked Failed, say)."""
    wake, last = state.webhook_marks(conn, st)
    if last is None:
        return None
    newest = conn.execute(sa.select(sa.func.max(st.applied.c.applied_at))).scalar()
    silent = newest is not None and (newest - last).total_seconds() > WEBHOOK_SILENCE
    return {"last_delivery_at": last, "named_up_to": wake, "silent": silent}


def _triggers_summary(conn: sa.Connection, st, cursor) -> list[dict[str, Any]]:
    """Each callback's cursor: the last event it handled, how far behind the watcher, its
    failures and unresolved dead letters, and whether stopOnError stopped it."""
    c, dead = st.trigger_cursors, st.trigger_dead
    letters = dict(conn.execute(sa.select(dead.c.callback, sa.func.count()).where(dead.c.resolved_at.is_(None))
                                .group_by(dead.c.callback)).all())
    out = []
    for r in conn.execute(sa.select(c).order_by(c.c.callback)).mappings():
        behind = max(0, cursor.max_applied_id - r["watermark"]) if cursor is not None else None
        out.append({"callback": r["callback"], "last_event_id": r["last_event_id"],
                    "last_success_at": r["last_success_at"], "events_behind": behind, "failures": r["failures"],
                    "last_error": r["last_error"], "stopped_at": r["stopped_at"],
                    "dead_letters": letters.get(r["callback"], 0)})
    return out


def _history_summary(conn: sa.Connection, tables: Tables, scans: dict[str, dict], count: bool) -> dict[str, Any]:
    """From when to when reads of the past can be answered for every imported type, and (with
    ``count``) how many versions are kept."""
    st = tables.state
    starts = state.history_starts(conn, st)
    ready = [name for name, scan in scans.items() if scan.get("full_scan_at") is not None and name in tables]
    begins = [starts.get((name, "id")) for name in ready]
    pruned = history.pruned_until(conn, tables)
    start = None if not begins or None in begins else max(begins)
    if start is not None and pruned is not None:
        start = max(start, pruned)
    raw = conn.execute(sa.select(st.meta.c.value).where(st.meta.c.key == state.HISTORY_UNTIL)).scalar()
    versions = None
    if count:
        versions = sum(conn.execute(sa.select(sa.func.count()).select_from(h)).scalar() or 0
                       for h in [et.history for et in tables] + [st.link_history])
    return {"start": start, "until": dt.datetime.fromisoformat(raw) if raw else None, "pruned_until": pruned,
            "versions": versions}


def _slim_summary(conn: sa.Connection, st) -> dict[str, Any]:
    """How many types the slim records hold, how many are not trusted yet, and which cannot be."""
    t = st.slim_types
    rows = list(conn.execute(sa.select(t.c.entity_type, t.c.full_scan_at, t.c.error)).mappings())
    records = conn.execute(sa.select(sa.func.count()).select_from(st.slim)).scalar()
    return {"types": sum(1 for r in rows if r["full_scan_at"] is not None),
            "not_listed": sorted(r["entity_type"] for r in rows if r["full_scan_at"] is None and not r["error"]),
            "refused": {r["entity_type"]: r["error"] for r in rows if r["error"]},
            "records": records}


def format_status(data: dict[str, Any]) -> str:
    lines = []
    cursor = data["cursor"]
    if cursor is None:
        lines.append("event log: not started (run sgcache scan --full or sgcache watch)")
    else:
        lines.append(f"event log: applied up to {cursor['max_applied_id']}, complete up to "
                     f"{cursor['last_complete_id']}, {len(cursor['gaps'])} open gaps")
    lag = data.get("event_lag")
    if lag is None:
        lines.append("event lag: no report from the watcher yet")
    else:
        behind = (f"{lag['lag_events']} events, {lag['lag_seconds']:.1f} s behind" if lag["lag_events"]
                  else "up to date")
        lines.append(f"event lag: {behind} (site newest event {lag['site_newest_id']}, watcher reported "
                     f"{lag['age_seconds']:.0f} s ago)")
    resolved = data.get("dead_letters_resolved") or 0
    lines.append(f"dead letters: {len(data['dead_letters'])}" + (f" ({resolved} resolved by later tries)"
                                                                  if resolved else ""))
    queue = data.get("other_sides") or {}
    if queue.get("queued"):
        lines.append(f"other sides of links to read again: {queue['queued']} (oldest queued "
                     f"{queue['oldest'].isoformat(timespec='seconds')})")
    if data.get("rebuilding"):
        lines.append(f"rebuilding since {data['rebuilding']['started_at']}: {', '.join(data['rebuilding']['types'])} "
                     "(reads of them pass through)")
    for d in data["dead_letters"][-10:]:
        retry = d.get("next_retry_at")
        when = f", next try {retry.isoformat(timespec='seconds')}" if retry else ""
        lines.append(f"  event {d['event_id']} {d['event_type']}: {d['error']} (tried again {d.get('retries') or 0} "
                     f"times{when})")
    slim = data.get("slim")
    if slim and (slim["types"] or slim["refused"] or slim["not_listed"]):
        lines.append(f"slim records: {slim['records']} entities of {slim['types']} types the schema leaves out"
                     + (f"; not listed yet: {', '.join(slim['not_listed'])}" if slim["not_listed"] else ""))
        for name, why in sorted(slim["refused"].items()):
            lines.append(f"  {name}: links to it pass through ({why})")
    past = data.get("history")
    if past is not None:
        kept = f" ({past['versions']} versions kept)" if past.get("versions") is not None else ""
        if past["start"] is None:
            lines.append("history: not started (it begins when every type's full import is done)")
        else:
            until = past["until"].isoformat(timespec="seconds") if past["until"] else "not yet known"
            lines.append(f"history: reads of the past from {past['start'].isoformat(timespec='seconds')} "
                         f"to {until}{kept}")
    hook = data.get("webhook")
    if hook:
        warn = (" -- WARNING: no delivery while the event log moved; check the hook on the site (Failed after 100 "
                "failures a day); polling goes on") if hook["silent"] else ""
        at = hook["last_delivery_at"].isoformat(timespec="seconds")
        lines.append(f"webhook: last delivery {at}, events named up to {hook['named_up_to']}{warn}")
    for t in data.get("triggers") or []:
        state_text = (f"STOPPED at {t['stopped_at'].isoformat(timespec='seconds')}: {t['last_error']}"
                      if t["stopped_at"] else f"{t['events_behind']} events behind" if t["events_behind"] is not None
                      else "waiting for the watcher")
        failing = f", failing ({t['failures']} tries): {t['last_error']}" if t["failures"] and not t["stopped_at"] \
            else ""
        lines.append(f"callback {t['callback']}: last event {t['last_event_id'] or '-'}, {state_text}, "
                     f"{t['dead_letters']} dead letters{failing}")
    lines.append(f"projects: {data['projects'] if data['projects'] is not None else 'not imported yet'}")
    lines.append(f"{'TYPE':<26}{'ACTIVE':>8}{'RETIRED':>9}  {'FULL IMPORT':<22}{'LAST SCAN':<22}BACKFILL")
    for name, t in data["types"].items():
        full = t.get("full_scan_at")
        last = t.get("last_scan_at")
        flag = " rescan needed" if t.get("needs_rescan") else ""
        lines.append(f"{name:<26}{t['active']:>8}{t['retired']:>9}  "
                     f"{full.strftime('%Y-%m-%d %H:%M:%S') if full else 'never':<22}"
                     f"{last.strftime('%Y-%m-%d %H:%M:%S') if last else '-':<22}{t['backfill_fields']}{flag}")
    return "\n".join(lines)
