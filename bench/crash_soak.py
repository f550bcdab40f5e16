"""The watcher's crash test at full length, or longer: SIGKILLs at random points, repeated.

    .venv/bin/python bench/crash_soak.py [--changes 1000] [--kills 22] [--rounds 1]
                                         [--database sqlite|postgresql|both]

Runs ``tests/test_sync_crash.py::test_watcher_killed_at_random_points_loses_nothing_and_applies_nothing_twice``
(``sgcache watch`` subprocesses killed while the stand-in is written to, then checked: nothing lost,
nothing applied twice, every history chain whole) with ``--changes`` writes and ``--kills`` kills,
``--rounds`` times. The suite runs it with 400 writes and 12 kills, to keep ``make test`` short;
the figures here were its size before (1,000 and 22). Exit status: pytest's (0: every round held).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from benchlib import at_least

ROOT = Path(__file__).resolve().parent.parent
TEST = "tests/test_sync_crash.py::test_watcher_killed_at_random_points_loses_nothing_and_applies_nothing_twice"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=at_least(), default=1000, help="writes to the site per round (default 1000)")
    parser.add_argument("--kills", type=at_least(0), default=22, help="watchers killed per round (default 22)")
    parser.add_argument("--rounds", type=at_least(), default=1, help="times to run it (default 1)")
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    if args.changes < 1 or args.kills < 1 or args.rounds < 1:
        parser.error("--changes, --kills and --rounds must be at least 1")
    env = {**os.environ, "SGCACHE_CRASH_CHANGES": str(args.changes), "SGCACHE_CRASH_KILLS": str(args.kills)}
    selected = [TEST] if args.database == "both" else [f"{TEST}[{args.database}]"]
    for n in range(1, args.rounds + 1):
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *selected],
                                cwd=ROOT, env=env)
        print(f"round {n} of {args.rounds}: {'held' if result.returncode == 0 else 'FAILED'} "
              f"in {time.monotonic() - started:.0f} s ({args.changes} writes, {args.kills} kills)", flush=True)
        if result.returncode != 0:
            return result.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
