"""Benchmark: gzip levels on a 500-entity answer, the largest body sgcache compresses itself.

    .venv/bin/python bench/gzip_levels.py [--entities 500] [--repeat 200]

Builds a ``find`` answer shaped like bench/read_speed.py's page (code, entity link with its
name, created_at, status), then times ``gzip.compress`` at levels 1 to 9 and ``gzip.decompress``
of each result, and prints the bytes and milliseconds per body. sgcache compresses its own
answers of ``GZIP_MIN_BYTES`` (1 KiB) or more at level 5 (sgcache.web); a find_one's body is a
few hundred bytes and goes as it is.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import time

from benchlib import at_least


def body(entities: int) -> bytes:
    rng = random.Random(1)
    rows = [{"type": "Version", "id": i, "code": f"sh{i % 997:04d}_comp_v{i % 50:03d}",
             "entity": {"type": "Shot", "id": rng.randint(1, 3000), "name": f"SH{rng.randint(1, 3000):04d}"},
             "created_at": f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T12:00:00Z",
             "sg_status_list": rng.choice(["rev", "apr", "na"])} for i in range(1, entities + 1)]
    return json.dumps({"results": {"entities": rows, "paging_info": {"has_next_page": True}}}).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entities", type=at_least(), default=500)
    parser.add_argument("--repeat", type=at_least(), default=200)
    args = parser.parse_args()
    raw = body(args.entities)
    print(f"answer of {args.entities} entities: {len(raw):,} bytes")
    for level in range(1, 10):
        started = time.perf_counter()
        for _ in range(args.repeat):
            packed = gzip.compress(raw, compresslevel=level)
        packing = (time.perf_counter() - started) / args.repeat * 1000
        started = time.perf_counter()
        for _ in range(args.repeat):
            gzip.decompress(packed)
        unpacking = (time.perf_counter() - started) / args.repeat * 1000
        print(f"  level {level}: {len(packed):7,} bytes ({len(packed) / len(raw):.1%}), compress {packing:.3f} ms, "
              f"decompress {unpacking:.3f} ms")


if __name__ == "__main__":
    main()
