"""Benchmark: the stand-in site at scale 20, loaded and paged through by id with the real client.

    .venv/bin/python bench/mocksite_paging.py [--scale 20] [--type Version|all] [--seed 0]

Reports the time to build the studio, then, over HTTP with shotgun_api3, the time to page
through every entity of the largest types by id (``id greater_than last``, 500 a page, the
way the scanner pages) and with the client's own page-number paging. Run by hand; the
figures go in issue notes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import shotgun_api3
from benchlib import at_least

from sgcache.mocksite.server import MockServer
from sgcache.mocksite.site import MockSite
from sgcache.mocksite.studio import build_studio
from sgcache.schema import load

ROOT = Path(__file__).resolve().parent.parent


def page_by_id(sg: shotgun_api3.Shotgun, entity_type: str) -> int:
    last, count = 0, 0
    while True:
        page = sg.find(entity_type, [["id", "greater_than", last]], ["id", "updated_at"],
                       order=[{"field_name": "id", "direction": "asc"}], limit=500)
        if not page:
            return count
        count += len(page)
        last = page[-1]["id"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=at_least(), default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    site = MockSite(load(ROOT / "schema" / "demo-site.yml"))
    started = time.perf_counter()
    counts = build_studio(site, scale=args.scale, seed=args.seed)
    load_seconds = time.perf_counter() - started
    total = sum(counts.values())
    print(f"studio scale {args.scale}: {total} entities built in {load_seconds:.1f} s "
          f"({total / load_seconds:.0f} entities/s)")
    biggest = sorted(counts, key=counts.get, reverse=True)[:4]
    with MockServer(site) as server:
        sg = shotgun_api3.Shotgun(server.url, script_name="sgcache", api_key="sgcache-demo-key")
        grand = 0
        started = time.perf_counter()
        for entity_type in counts:
            grand += page_by_id(sg, entity_type)
        seconds = time.perf_counter() - started
        print(f"page by id, every type: {grand} entities in {seconds:.1f} s ({grand / seconds:.0f} entities/s)")
        for entity_type in biggest:
            started = time.perf_counter()
            n = page_by_id(sg, entity_type)
            by_id = time.perf_counter() - started
            started = time.perf_counter()
            m = len(sg.find(entity_type, [], ["id", "updated_at"]))
            by_page = time.perf_counter() - started
            print(f"  {entity_type:<14} {n:>7} by id {by_id:5.1f} s   {m:>7} by page number {by_page:5.1f} s")


if __name__ == "__main__":
    main()
