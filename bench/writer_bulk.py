"""Benchmark: bulk upsert through the writer of N entities of a 20-field type.

    .venv/bin/python bench/writer_bulk.py [--count 100000] [--batch 1000] [--database URL]

Without --database it makes (and drops) a database on the local PostgreSQL server
(SGCACHE_TEST_DATABASE_URL, else postgresql://postgres@127.0.0.1/postgres) and also runs the
same load into a temporary SQLite file. Reports entities per second for the first (insert)
pass and a second (update) pass over the same ids, written as a full import writes (``import``:
no other sides queued, rows stamped with an event id) and as the watcher and read-backs write
(``events``: the links each row replaces compared first). On PostgreSQL, batches of 50 rows or
more go through COPY (see sgcache.store.bulk). The entities to write are made before each pass
and kept out of the garbage collector's sight (``gc.freeze``), as an import never holds them all.
Run by hand; figures go in issue notes.
"""

from __future__ import annotations

import argparse
import gc
import random
import tempfile
import time

import sqlalchemy as sa
from benchlib import at_least, scratch_postgres
from sqlalchemy.engine import make_url

from sgcache.schema import loads
from sgcache.store.db import create_engine, safe_url
from sgcache.store.migrate import migrate
from sgcache.store.tables import Tables
from sgcache.store.writer import OTHER_SIDES_NONE, Writer

# Twenty fields, in the mix a production Version has: text, numbers, links, dates, JSON, a list.
SCHEMA = """\
Version:
  identifier: code
  fields:
    id: number
    code: text
    description: text
    sg_status_list: {type: status_list, valid_values: [rev, apr, fin]}
    sg_version_type: {type: list, valid_values: [Daily, Final]}
    project: {type: entity, entity_types: [Project]}
    entity: {type: entity, entity_types: [Shot, Asset]}
    sg_task: {type: entity, entity_types: [Task]}
    user: {type: entity, entity_types: [HumanUser]}
    playlists: {type: multi_entity, entity_types: [Playlist]}
    sg_first_frame: number
    sg_last_frame: number
    frame_count: number
    sg_frames_aspect_ratio: float
    sg_path_to_frames: text
    created_at: date_time
    updated_at: date_time
    sg_date: date
    tag_list: tag_list
    sg_uploaded_movie: url
"""


def make_entities(count: int, seed: int = 1, offset: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(1, count + 1):
        first = rng.randint(1001, 1100)
        out.append({
            "type": "Version", "id": i,
            "code": f"sh{i % 997:04d}_comp_v{i % 50 + offset:03d}",
            "description": "Comp pass with updated grade " * rng.randint(0, 3),
            "sg_status_list": rng.choice(["rev", "apr", "fin"]),
            "sg_version_type": rng.choice(["Daily", "Final"]),
            "project": {"type": "Project", "id": rng.randint(1, 5), "name": "Project"},
            "entity": {"type": rng.choice(["Shot", "Asset"]), "id": rng.randint(1, 20000)},
            "sg_task": {"type": "Task", "id": rng.randint(1, 100000)},
            "user": {"type": "HumanUser", "id": rng.randint(1, 300)},
            "playlists": [{"type": "Playlist", "id": rng.randint(1, 2000)} for _ in range(rng.randint(0, 3))],
            "sg_first_frame": first,
            "sg_last_frame": first + rng.randint(10, 240),
            "frame_count": rng.randint(10, 240),
            "sg_frames_aspect_ratio": 1.85,
            "sg_path_to_frames": f"/prod/shots/sh{i % 997:04d}/comp/v{i % 50:03d}/frames.%04d.exr",
            "created_at": f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T12:00:00Z",
            "updated_at": f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T12:{offset % 60:02d}:00Z",
            "sg_date": f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            "tag_list": rng.sample(["hero", "fx", "dmp", "cg"], rng.randint(0, 2)),
            "sg_uploaded_movie": {"url": f"https://sg/file/{i}", "name": "movie.mov", "link_type": "upload",
                                  "content_type": "video/quicktime"} if i % 3 == 0 else None,
        })
    return out


#: How each pass writes: as a full import does (no other sides queued, stamped with an event id),
#: and as the watcher and read-backs do (the links they replace compared, to queue other sides).
MODES = {"import": {"other_sides": OTHER_SIDES_NONE, "event_id": 1}, "events": {}}


def run(url: str, count: int, batch: int) -> list[tuple[str, float, float]]:
    engine = create_engine(url)
    tables = Tables(loads(SCHEMA))
    migrate(engine, tables)
    writer = Writer(engine, tables)
    results = []
    for mode, options in MODES.items():
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM version_playlists"))
            conn.execute(sa.text("DELETE FROM version"))
        for label, offset in (("insert", 0), ("update", 7)):
            entities = make_entities(count, offset=offset)
            # The pass's 100,000 entities (a few million objects) stay alive from start to end,
            # where an import holds a page or two: out of the collector's sight, its full
            # collections cost what an import's would instead of rescanning them (12% of a pass).
            gc.freeze()
            start = time.perf_counter()
            for i in range(0, count, batch):
                writer.upsert("Version", entities[i:i + batch], **options)
            elapsed = time.perf_counter() - start
            results.append((f"{mode} {label}", elapsed, count / elapsed))
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT count(*) FROM version")).scalar()
        links = conn.execute(sa.text("SELECT count(*) FROM version_playlists")).scalar()
    assert stored == count, (stored, count)
    print(f"  {safe_url(url)}: {stored} rows, {links} playlist links")
    engine.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=at_least(), default=100_000)
    parser.add_argument("--batch", type=at_least(), default=1000)
    parser.add_argument("--database", help="run only against this database URL (its tables are replaced)")
    args = parser.parse_args()

    targets = []
    cleanup = None
    if args.database:
        targets.append(args.database)
    else:
        url, cleanup = scratch_postgres()
        targets.append(url)
        tmp = tempfile.mkdtemp()
        targets.append(f"sqlite:///{tmp}/bench.sqlite")

    print(f"writer bulk upsert: {args.count} Version entities, 20 fields, batches of {args.batch}")
    try:
        for url in targets:
            for label, elapsed, rate in run(url, args.count, args.batch):
                print(f"  {make_url(url).get_backend_name():<10} {label:<13} {elapsed:7.2f} s  {rate:9.0f} entities/s")
    finally:
        if cleanup:
            cleanup()


if __name__ == "__main__":
    main()
