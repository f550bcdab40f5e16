"""Entities a scan reads again by id: the rows a newer event's stamp refused, the rows missing
from a listing (retired when the site no longer has them), and the rows linking to an entity
revived without an event.

The site hides links to retired entities, so rows read while an entity was retired hold no
link to it; when a scan finds such an entity active again, those rows are read again first.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa

from sgcache.store.tables import EntityTable
from sgcache.sync import links
from sgcache.sync.scanbase import ScanBase

#: The scanner's log: one logger for everything the scanner does, whichever module does it.
log = logging.getLogger("sgcache.sync.scanner")


class Rereads(ScanBase):
    """Reads entities again by id for the scans (see the module)."""

    def _settle_refused(self, projects: list[int]) -> int:
        """Read again the rows whose write a newer event's stamp refused; return the rows written.

        The watcher applied an event logged after this scan began, but maybe with values it asked
        the site for before this scan read (or a direct value older than an eventless write the
        scan saw): neither side knows which is newer. A read made now is newer than both, and is
        stamped with the newest event now logged, which the refusing stamp cannot exceed."""
        refused, self._refused = self._refused, {}
        written = 0
        for entity_type, ids in sorted(refused.items()):
            log.info("event=scan_reread_refused entity_type=%s count=%d", entity_type, len(ids))
            written += self._read_again(entity_type, sorted(ids), projects, self._as_of())[0]
        self._refused = {}  # refused again (the watcher wrote once more meanwhile): its next scan
        return written

    def _read_again(self, entity_type: str, ids: list[int], projects: list[int],
                    as_of: int | None, depth: int = 0) -> tuple[int, set[int]]:
        """Read entities by id from the site (active or retired) and write them, dropping those
        outside the cached projects; return (rows written, ids the site has). A row held as
        retired and read active was revived without an event: the rows linking to it are read
        again first (see _revive_referrers)."""
        et = self.tables[entity_type]
        written, found = 0, set()
        size = self.config.page_size
        for start in range(0, len(ids), size):
            chunk = ids[start:start + size]
            for retired in (False, True):
                for page in self.remote.pages(entity_type, self.fields_of(et), [["id", "in", chunk]],
                                              retired=retired, page_size=size):
                    page = [e for e in page if e["id"] not in found]  # listed twice (a race): the first wins
                    found.update(e["id"] for e in page)
                    outside = sorted(e["id"] for e in page if self._outside(et, e, projects))
                    inside = [e for e in page if e["id"] not in outside]
                    if not retired and depth < 2:
                        written += self._revive_referrers(et, inside, projects, as_of, depth)
                    written += self._write(et, inside, outside, active=not retired, as_of=as_of)
        return written, found

    def _revive_referrers(self, et: EntityTable, entities: list[dict], projects: list[int], as_of: int | None,
                          depth: int) -> int:
        """Of ``entities`` (read active), those the cache holds as retired were revived without an
        event: read again the rows linking to them (read while they were retired, with no link to
        them), before they are written themselves; return the rows written."""
        back = self._held(et, [e["id"] for e in entities], active=False)
        if not back:
            return 0
        referrers: dict[str, set[int]] = {}
        for entity_id in sorted(back):
            found = links.referrers_on_site(self.remote, self.tables, (et.name, entity_id))
            log.info("event=scan_found_revival entity_type=%s id=%s referrers=%d", et.name, entity_id, len(found))
            for other_type, other_id in found:
                if (other_type, other_id) != (et.name, entity_id):
                    referrers.setdefault(other_type, set()).add(other_id)
        written = 0
        for other_type, ids in sorted(referrers.items()):
            held = sorted(self._held(self.tables[other_type], sorted(ids)))
            if held:
                written += self._read_again(other_type, held, projects, as_of, depth + 1)[0]
        return written

    def _retire_missing(self, et: EntityTable, seen: set[int], highest: int, projects: list[int],
                        as_of: int | None) -> int:
        """Retire cached rows the site no longer has (deleted without a retirement event); return
        how many.

        Only ids up to the highest one the site listed: newer rows may have arrived since. A row
        missing from the listing of the cached projects may only have moved out of them: the
        missing rows are read again by id first (those moved out are dropped), and only those the
        site lacks are retired."""
        t = et.table
        stmt = sa.select(t.c.id).where(t.c.id <= highest).where(t.c._active.is_(True))
        if self._scoped(et, projects):
            handler = et.fields["project"]
            stmt = stmt.where(t.c[handler.id_column].in_(projects))
        with self.engine.connect() as conn:
            cached = set(conn.execute(stmt).scalars())
        missing = sorted(cached - seen)
        if not missing:
            return 0
        _, found = self._read_again(et.name, missing, projects, as_of)
        gone = [i for i in missing if i not in found]
        if gone:
            log.warning("event=retire_missing entity_type=%s count=%d ids=%s read_again=%d", et.name, len(gone),
                        gone[:20], len(found))
            self.writer.retire(et.name, gone)
        return len(gone)
