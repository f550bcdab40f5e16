"""The watcher's transactions and its dead letters, against the stand-in site over real HTTP.

The harness (a stand-in site, a migrated cache, settings for both) is test_sync's.
"""
# ruff: noqa: F811 (the sync fixture, imported, is each test's argument)

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time

import pytest
import sqlalchemy as sa
from test_sync import (  # noqa: F401,E501 (fixtures)
    WATCHER_LOG,
    cache_tables,
    link,
    make_sync,
    move_watermarks_past_the_world,
    poison,
    poisoned_change,
    read_refusal,
    sync,
    wait_for,
)

from sgcache.store.writer import Writer
from sgcache.sync import report
from sgcache.sync.answers import Prefetched
from sgcache.sync.remote import SiteError
from sgcache.sync.watcher import dead_letters


def before_first_page(scanner, entity_type: str, action) -> None:
    """Make ``scanner`` run ``action()`` just before it reads its first page of ``entity_type``
    (over its own connection, or one of those a parallel import makes: Remote.sibling)."""
    done: list[bool] = []
    lock = threading.Lock()

    def patch(remote):
        real_pages = remote.pages

        def pages(name, *args, **kwargs):
            with lock:
                if name == entity_type and not done:
                    done.append(True)
                    action()
            yield from real_pages(name, *args, **kwargs)

        remote.pages = pages
        return remote

    real_sibling = scanner.remote.sibling
    patch(scanner.remote)
    scanner.remote.sibling = lambda: patch(real_sibling())


def make_due(s, event_id: int) -> None:
    """Bring a dead letter's next try to now (rather than wait minutes for it)."""
    dl = s.tables.state.dead_letters
    with s.engine.begin() as conn:
        conn.execute(sa.update(dl).where(dl.c.event_id == event_id)
                     .values(next_retry_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))


def dead_letter_row(s, event_id: int) -> dict:
    dl = s.tables.state.dead_letters
    with s.engine.connect() as conn:
        return dict(conn.execute(sa.select(dl).where(dl.c.event_id == event_id)).mappings().one())


# --- transactions ------------------------------------------------------------------------------


def test_the_watcher_asks_the_site_only_with_no_transaction_open(sync):
    # A slow site must not hold the watcher's locks and connection: every question is asked
    # before (or between tries of) the short transaction that applies the event.
    s = sync
    sg = s.sg()
    open_transactions: set[int] = set()
    sa.event.listen(s.engine, "begin", lambda conn: open_transactions.add(id(conn)))
    sa.event.listen(s.engine, "commit", lambda conn: open_transactions.discard(id(conn)))
    sa.event.listen(s.engine, "rollback", lambda conn: open_transactions.discard(id(conn)))
    remote = s.remote()
    real_call = remote.call
    seen: list[tuple[str, int]] = []

    def call(what, fn):
        seen.append((what, len(open_transactions)))
        return real_call(what, fn)

    remote.call = call
    watcher = s.watcher(remote=remote)
    s.drain(watcher)  # the cursor starts at the site's newest event
    shot, retired = s.world["shots"][0], s.world["retired_shot"]
    project = link("Project", s.world["projects"][0])
    new = sg.create("Shot", {"code": "NEW", "project": project, "assets": [link("Asset", s.world["assets"][0])]})
    sg.update("Shot", shot, {"assets": [link("Asset", s.world["assets"][1])]})  # a multi-entity change
    sg.delete("Shot", new["id"])
    sg.revive("Shot", retired)  # reads the rows that link to it on the site too
    seen.clear()
    s.drain(watcher)
    reads = [what for what, _ in seen if what.startswith("read ")]
    assert any(what.startswith("read Shot (") for what in reads), reads  # the batch's Shots, at once
    assert any(what.startswith("read Asset (") for what in reads), reads  # the revived Shot's referrers
    assert [(what, n) for what, n in seen if n] == []
    assert s.caught_up()
    assert s.diff(["Shot", "Asset"]) == []


def counting(remote) -> list[str]:
    """What ``remote`` asks the site from now on."""
    seen: list[str] = []
    real_call = remote.call

    def call(what, fn):
        seen.append(what)
        return real_call(what, fn)

    remote.call = call
    return seen


def caught_up(s) -> tuple:
    """(the client, a Remote, a caught-up watcher asking the site through it)."""
    remote = s.remote()
    watcher = s.watcher(remote=remote)
    s.drain(watcher)
    return s.sg(), remote, watcher


def test_a_batch_of_events_reads_its_entities_in_one_find_per_type(sync):
    # One find_one per event, each after a try rolled back to ask it, made a catch-up cost a
    # round trip per event: the batch's entities are asked about together.
    s = sync
    sg, remote, watcher = caught_up(s)
    assets = [link("Asset", a) for a in s.world["assets"]]
    for shot in sg.find("Shot", [["id", "in", s.world["shots"]]], ["assets"]):
        held = {a["id"] for a in shot["assets"]}
        changed = [a for a in assets if a["id"] not in held][:1]
        sg.update("Shot", shot["id"], {"assets": changed})  # multi-entity: read from the site
    revived = s.world["retired_shot"]
    sg.revive("Shot", revived)  # its referrers too
    seen = counting(remote)
    s.drain(watcher)
    one_by_one = [what for what in seen if what.startswith("read ") and what.split()[-1].isdigit()]
    assert one_by_one == []
    assert sum(what.startswith("read Shot (") for what in seen) == 1
    assert s.caught_up()
    assert s.diff(["Shot", "Asset", "Task"]) == []


def test_an_answer_asked_for_a_batch_is_not_written_over_a_newer_read(sync):
    # Between the batch's find and the event that uses its answer, another process (a scan, a
    # proxy's read-back) wrote the row from a newer read: the event asks the site again rather
    # than put the older answer back.
    s = sync
    sg, remote, watcher = caught_up(s)
    shot = s.world["shots"][0]
    sg.update("Shot", shot, {"assets": [link("Asset", s.world["assets"][1])]})
    real_prefetch = watcher.prefetch

    def prefetch(events):
        prefetched = real_prefetch(events)
        sg.update("Shot", shot, {"description": "newer"})  # its event comes in a later batch
        Writer(s.engine, s.tables).upsert("Shot", [{"id": shot, "description": "newer"}])  # as a scan would
        return prefetched

    watcher.prefetch = prefetch
    seen = counting(remote)
    watcher.poll_once()  # the batch before the description's event
    assert f"read Shot {shot}" in seen
    assert s.row("Shot", shot, "description")["description"] == "newer"
    watcher.prefetch = real_prefetch
    s.drain(watcher)
    assert s.diff(["Shot"]) == []


# --- dead letters ------------------------------------------------------------------------------


def test_a_dead_letter_waits_for_its_next_try_minutes_later(sync):
    s = sync
    watcher, shot, bad_id, tries = poisoned_change(s, max_attempts=1, dead_letter_retry=120)
    s.drain(watcher)
    row = dead_letter_row(s, bad_id)
    wait = (row["next_retry_at"] - row["failed_at"]).total_seconds()
    assert 119 <= wait <= 121
    s.drain(watcher)
    s.drain(watcher)
    assert tries == [bad_id]  # not tried again before its time
    assert read_refusal(s, "Shot") == "dead_letter"
    assert s.type_state("Shot")["needs_rescan"] is False  # one failed event does not cost a full import


def test_a_watcher_asked_to_stop_between_tries_of_a_failing_event_stops_at_once_and_keeps_it(sync):
    # Its pauses between tries grow to seconds: SIGTERM must not wait them out, nor turn the
    # event into a dead letter; the next start tries it again.
    s = sync
    watcher, shot, bad_id, tries = poisoned_change(s, max_attempts=10)
    stop = threading.Event()
    runner = threading.Thread(target=watcher.run, args=(stop,))
    runner.start()
    wait_for(lambda: len(tries) >= 3, 20, what="a few tries of the failing event")  # pauses 0.2, 0.4, 0.8...
    asked = time.monotonic()
    stop.set()
    runner.join(10)
    assert not runner.is_alive()
    assert time.monotonic() - asked < 0.5
    assert dead_letters(s.engine, s.tables) == []
    assert bad_id not in s.applied_ids()
    again = s.watcher()
    s.drain(again)
    assert bad_id in s.applied_ids()
    assert s.row("Shot", shot, "description")["description"] == "poison"


def test_a_dead_letter_is_resolved_when_a_later_try_applies_it(sync, caplog):
    s = sync
    shot = s.world["shots"][0]
    s.sg().update("Shot", shot, {"description": "applied at last"})
    bad_id = s.newest_event_id()
    watcher = s.watcher(max_attempts=2)
    tries = poison(watcher, bad_id, times=2)
    s.drain(watcher)
    assert read_refusal(s, "Shot") == "dead_letter"
    assert s.row("Shot", shot, "description")["description"] == "shot 00"
    make_due(s, bad_id)
    caplog.set_level(logging.INFO, logger=WATCHER_LOG)
    s.drain(watcher)
    assert len(tries) > 2  # tried again (the first try of it after the dead letter succeeds)
    assert s.row("Shot", shot, "description")["description"] == "applied at last"
    row = dead_letter_row(s, bad_id)
    assert (row["retries"], row["resolution"], row["next_retry_at"]) == (1, "applied", None)
    assert row["resolved_at"] is not None
    assert read_refusal(s, "Shot") is None
    assert dead_letters(s.engine, s.tables)[0]["event_id"] == bad_id  # kept as a record
    assert report.status(s.engine, s.tables)["dead_letters"] == []
    assert report.status(s.engine, s.tables)["dead_letters_resolved"] == 1
    assert f"event=dead_letter_resolved id={bad_id}" in caplog.text


def test_a_dead_letter_that_still_fails_is_resolved_by_reading_its_entity_again(sync):
    s = sync
    watcher, shot, bad_id, tries = poisoned_change(s, max_attempts=1)  # for ever
    s.drain(watcher)
    assert s.row("Shot", shot, "description")["description"] == "shot 00"
    make_due(s, bad_id)
    s.drain(watcher)
    assert s.row("Shot", shot, "description")["description"] == "poison"
    row = dead_letter_row(s, bad_id)
    assert row["resolution"].startswith("entity read again (RuntimeError: cannot apply this one")
    assert read_refusal(s, "Shot") is None
    assert s.diff(["Shot"]) == []


def test_a_dead_letter_whose_tries_keep_failing_waits_longer_each_time_then_asks_for_a_full_import(sync):
    s = sync
    watcher, shot, bad_id, tries = poisoned_change(s, max_attempts=1, dead_letter_retry=60, dead_letter_retry_max=200)
    real_fetch_into = watcher._fetch_into

    def fetch_into(conn, site, entity_type, entity_id, *args, **kwargs):
        if (entity_type, entity_id) == ("Shot", shot):
            raise RuntimeError("cannot read this one either")
        return real_fetch_into(conn, site, entity_type, entity_id, *args, **kwargs)

    watcher._fetch_into = fetch_into
    s.drain(watcher)
    waits = []
    for _ in range(3):
        make_due(s, bad_id)
        before = dt.datetime.now(dt.UTC)
        s.drain(watcher)
        row = dead_letter_row(s, bad_id)
        waits.append(round((row["next_retry_at"] - before).total_seconds() / 10) * 10)
    assert waits == [120, 200, 200]  # 60 s doubled, up to the longest wait
    assert (row["retries"], row["resolved_at"]) == (3, None)
    assert row["error"] == "RuntimeError: cannot read this one either"
    assert read_refusal(s, "Shot") == "dead_letter"
    assert s.type_state("Shot")["needs_rescan"] is True  # the scanner's cure, after three failed tries
    s.scanner().full_where_needed()
    assert read_refusal(s, "Shot") is None
    assert s.row("Shot", shot, "description")["description"] == "poison"


def test_a_dead_letter_meets_a_site_outage_and_is_tried_again_when_the_site_is_back(sync):
    s = sync
    watcher, shot, bad_id, tries = poisoned_change(s, max_attempts=1)
    s.drain(watcher)
    make_due(s, bad_id)

    def site_down(*args, **kwargs):
        raise SiteError("site down")

    watcher.remote.fetch = site_down
    with pytest.raises(SiteError):  # the loop (Watcher.run) waits for the site and polls again
        s.drain(watcher)
    row = dead_letter_row(s, bad_id)
    assert (row["retries"], row["resolved_at"]) == (0, None)  # an outage is not the event's failure
    del watcher.remote.fetch
    s.drain(watcher)
    assert dead_letter_row(s, bad_id)["resolved_at"] is not None
    assert json.loads(dead_letter_row(s, bad_id)["event"])["id"] == bad_id


# --- an event older than what a scan already wrote ----------------------------------------------


def test_an_event_older_than_a_value_a_scan_already_read_does_not_overwrite_it(sync):
    # The scan reads a value written after the event (by a script with events off) before the
    # watcher applies the event: the event must not bring the older value back.
    s = sync
    task = s.world["tasks"][1]
    watcher = s.watcher()
    s.drain(watcher)
    s.sg().update("Task", task, {"content": "second"})  # an event, not applied yet
    s.clock.advance(2)
    s.quiet().update("Task", task, {"content": "third"})  # no event
    s.scanner().full(types=["Task"])
    assert s.row("Task", task, "content")["content"] == "third"
    s.drain(watcher)
    assert s.row("Task", task, "content")["content"] == "third"
    assert s.diff(["Task"]) == []


def test_a_retirement_older_than_a_revival_a_scan_already_read_does_not_retire_the_row(sync):
    s = sync
    asset = s.world["assets"][1]
    watcher = s.watcher()
    s.drain(watcher)
    s.sg().delete("Asset", asset)  # a retirement event, not applied yet
    s.clock.advance(2)
    s.quiet().revive("Asset", asset)  # no event
    s.scanner().full(types=["Asset"])
    assert s.row("Asset", asset)["_active"] is True
    s.drain(watcher)
    assert s.row("Asset", asset)["_active"] is True
    assert s.diff(["Asset"]) == []


def change_the_watcher_reads_from_the_site(s, *, batched: bool = True) -> tuple:
    """(a caught-up watcher, a shot): an evented change of the shot waits, one the watcher
    applies by reading the shot from the site (a project move); ``batched``: asked in the
    batch's find (else with a find_one of its own, as when that find was refused)."""
    shot = s.world["shots"][1]
    watcher = s.watcher()
    if not batched:
        watcher.prefetch = lambda events: Prefetched()
    s.drain(watcher)
    s.sg().update("Shot", shot, {"project": link("Project", s.world["projects"][1])})
    return watcher, shot


def test_an_answer_asked_before_a_scan_wrote_the_row_is_asked_again(sync):
    # The watcher asks the site outside its transaction: a scan may write the row between the
    # question and the transaction, with a later value. The older answer must not win.
    s = sync
    watcher, shot = change_the_watcher_reads_from_the_site(s, batched=False)  # batched: the test above
    real_fetch = watcher.remote.fetch
    asked = []

    def fetch(entity_type, entity_id, fields):
        answer = real_fetch(entity_type, entity_id, fields)
        asked.append((entity_type, entity_id))
        if (entity_type, entity_id) == ("Shot", shot) and len(asked) == 1:
            s.clock.advance(2)
            s.quiet().update("Shot", shot, {"description": "later"})  # no event
            s.scanner().full(types=["Shot"])  # the scan writes it meanwhile
        return answer

    watcher.remote.fetch = fetch
    s.drain(watcher)
    assert asked == [("Shot", shot), ("Shot", shot)]
    assert s.row("Shot", shot, "description")["description"] == "later"
    assert s.diff(["Shot"]) == []


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "one_by_one"])
def test_a_row_written_by_another_process_inside_the_watchers_transaction_is_not_overwritten(sync, batched):
    # Another process (a drain of the other sides, a proxy's read-back) writes the row with a
    # newer read after the watcher took the row's version for this round and before the
    # watcher's own write: the watcher's older answer must not win; it asks again.
    s = sync
    watcher, shot = change_the_watcher_reads_from_the_site(s, batched=batched)
    real_upsert = watcher.writer.upsert
    other = Writer(s.engine, s.tables)
    meddled: list[bool] = []

    def upsert(entity_type, entities, **kwargs):
        entities = list(entities)
        if entity_type == "Shot" and any(e.get("id") == shot for e in entities) and not meddled:
            meddled.append(True)
            s.clock.advance(2)
            s.quiet().update("Shot", shot, {"description": "later"})  # no event
            fresh = s.sg().find_one("Shot", [["id", "is", shot]], s.tables["Shot"].cached_fields())
            other.upsert("Shot", [fresh])  # its own transaction, committed now
        return real_upsert(entity_type, entities, **kwargs)

    watcher.writer.upsert = upsert
    s.drain(watcher)
    assert meddled
    assert s.row("Shot", shot, "description")["description"] == "later"
    assert s.diff(["Shot"]) == []


def test_a_scan_writes_what_it_read_over_an_event_logged_before_it_started(sync):
    # The scan stamps its rows with the newest event logged before it read them: an event the
    # watcher applies while the scan runs is older than what the scan reads, and must not make
    # the scan's later value lose.
    s = sync
    shot = s.world["shots"][1]
    watcher = s.watcher()
    s.drain(watcher)
    s.sg().update("Shot", shot, {"description": "evented"})  # logged, not applied yet
    scanner = s.scanner()

    def meanwhile():
        s.drain(watcher)  # the watcher applies the event while the scan runs
        s.clock.advance(2)
        s.quiet().update("Shot", shot, {"description": "later"})  # no event, before the scan reads

    before_first_page(scanner, "Shot", meanwhile)
    scanner.full(types=["Shot"])
    assert s.row("Shot", shot, "description")["description"] == "later"
    assert s.diff(["Shot"]) == []


def test_an_entity_made_without_an_event_and_then_changed_updates_the_other_sides_of_its_links(sync):
    # The watcher meets the task first at a change (it was created by a script with events off):
    # it reads the task whole, and the shot's reverse field (Shot.tasks) changed with its creation.
    s = sync
    shot = s.world["shots"][2]
    watcher = s.watcher()
    s.drain(watcher)
    task = s.quiet().create("Task", {"content": "made quietly", "entity": link("Shot", shot),
                                     "project": link("Project", s.world["projects"][0])})["id"]
    s.sg().update("Task", task, {"content": "then changed"})
    s.drain(watcher)
    assert s.row("Task", task, "content")["content"] == "then changed"
    assert link("Task", task) in s.row("Shot", shot, "tasks")["tasks"]
    s.scanner().incremental()
    assert s.diff(["Shot", "Task"]) == []


def test_an_entity_revived_without_an_event_and_then_changed_restores_the_links_to_it(sync):
    s = sync
    asset = s.world["assets"][1]
    shot = s.world["shots"][1]  # it links to the asset
    watcher = s.watcher()
    s.drain(watcher)
    s.sg().delete("Asset", asset)
    s.drain(watcher)
    s.scanner().full(types=["Shot"])  # reads the shot while the asset is retired
    assert s.row("Shot", shot, "assets")["assets"] == []  # the site shows no link to a retired asset
    s.clock.advance(2)
    s.quiet().revive("Asset", asset)  # no event
    s.clock.advance(2)
    s.sg().update("Asset", asset, {"description": "back"})
    s.drain(watcher)
    assert s.row("Asset", asset, "description")["description"] == "back"
    assert s.row("Shot", shot, "assets")["assets"] == [link("Asset", asset)]
    assert s.diff(["Shot", "Asset"]) == []


def test_a_scan_restores_multi_entity_links_to_an_entity_revived_without_an_event(sync):
    s = sync
    asset = s.world["assets"][1]
    shot = s.world["shots"][1]  # its assets: [the asset]
    watcher = s.watcher()
    s.drain(watcher)
    s.sg().delete("Asset", asset)
    s.drain(watcher)
    s.scanner().full(types=["Shot"])  # reads the shot while the asset is retired
    assert s.row("Shot", shot, "assets")["assets"] == []
    s.clock.advance(120)
    s.quiet().revive("Asset", asset)  # no event
    s.scanner().incremental()
    assert s.row("Shot", shot, "assets")["assets"] == [link("Asset", asset)]
    assert s.diff(["Shot", "Asset"]) == []


def test_a_scan_write_refused_for_a_newer_event_stamp_reads_the_row_again(sync):
    # The watcher applies an event logged after the scan began; then a write without events
    # changes the row, and the scan reads it. The scan's write is refused (the row's stamp is
    # newer than the scan's), yet its value is the newer one: the scan must read the row again.
    s = sync
    shot = s.world["shots"][1]
    watcher = s.watcher()
    s.drain(watcher)
    scanner = s.scanner()

    def meanwhile():
        s.sg().update("Shot", shot, {"sg_cut_in": 7})  # an event after the scan began
        s.drain(watcher)
        s.clock.advance(2)
        s.quiet().update("Shot", shot, {"description": "later"})  # no event

    before_first_page(scanner, "Shot", meanwhile)
    scanner.full(types=["Shot"])
    assert s.row("Shot", shot, "description")["description"] == "later"
    assert s.diff(["Shot"]) == []




def test_a_scan_that_reads_a_revived_entity_as_the_other_side_of_a_link_restores_the_links_to_it(sync):
    # The entity revived without an event is first read again as the target of another row's
    # changed link (not as a changed row of its own type): that read must see the revival too.
    s = sync
    asset, shot, other = s.world["assets"][1], s.world["shots"][1], s.world["shots"][2]  # shot links to asset
    watcher = s.watcher()
    s.drain(watcher)
    s.sg().delete("Asset", asset)
    s.drain(watcher)
    s.scanner().full(types=["Shot"])  # reads the shot while the asset is retired
    move_watermarks_past_the_world(s)
    quiet = s.quiet()
    quiet.revive("Asset", asset)  # no event
    quiet.update("Shot", other, {"assets": [link("Asset", asset)]}, multi_entity_update_modes={"assets": "add"})
    s.scanner(types=["Shot"]).incremental()  # reads the asset again as the other side of a new link
    assert s.row("Shot", shot, "assets")["assets"] == [link("Asset", asset)]
    s.scanner().incremental()
    assert s.diff(["Shot", "Asset"]) == []
