"""Chaos, for minutes: the harness of tests/test_chaos.py run by hand for longer.

    .venv/bin/python bench/chaos.py --minutes 2 [--seed S] [--database URL] [--workdir DIR]

Starts ``sgcache mock-site`` (late events on), ``sgcache auto`` and ``sgcache web`` on a scratch
PostgreSQL database (made on the server of ``--database``, default ``SGCACHE_TEST_DATABASE_URL`` or
the local one, and dropped at the end), writes, reads and injects faults for ``--minutes``, then
checks that the cache caught up (``sgcache validate data``, the applied-events ledger, no HTTP
500, every stale read explained by event lag). Prints the summary; exit status 1 when a check
failed (the logs, the writes and the site's events are kept in the work folder), 0 otherwise.
The harness is ``tests/chaos_support.py`` (loaded by path); docs/development.rst describes it.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

from benchlib import at_least, duration

ROOT = Path(__file__).resolve().parent.parent


def load_harness():
    spec = importlib.util.spec_from_file_location("chaos_support", ROOT / "tests" / "chaos_support.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["chaos_support"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=duration(), default=2.0, help="minutes of chaos (default 2)")
    parser.add_argument("--seed", type=int, default=None, help="seed of every random choice (default: random)")
    parser.add_argument("--database", default=os.environ.get("SGCACHE_TEST_DATABASE_URL")
                        or "postgresql://postgres@127.0.0.1:5432/postgres",
                        help="a PostgreSQL URL; the scratch database is made on its server")
    parser.add_argument("--workdir", type=Path, help="logs and records (default: a new temporary folder)")
    parser.add_argument("--max-sync-kills", type=at_least(0), default=None,
                        help="SIGKILLs per child of sgcache auto (default: one a minute, at least 2); each doubles "
                             "the child's restart pause")
    args = parser.parse_args()
    if args.minutes <= 0:
        parser.error("--minutes must be positive")
    harness = load_harness()
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(3), "big")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sgcache-chaos-"))
    kills = args.max_sync_kills if args.max_sync_kills is not None else max(2, int(args.minutes))
    # Each kill of the watcher doubles its restart pause (up to a minute), so a long run may end
    # minutes behind the site: the catch-up may take a minute per minute of chaos.
    catch_up = max(180.0, 60.0 * args.minutes)
    options = harness.ChaosOptions(seconds=args.minutes * 60, seed=seed, database_server=args.database,
                                   workdir=workdir, max_sync_kills=kills, catch_up_seconds=catch_up,
                                   log=lambda text: print(text, flush=True))
    run = harness.run_chaos(options)
    if run.failures:
        print(f"replay: .venv/bin/python bench/chaos.py --minutes {args.minutes:g} --seed {seed}; logs in {workdir}")
        return 1
    harness.keep_or_remove(workdir, failed=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
