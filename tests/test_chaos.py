"""The chaos test: the whole product as real processes on PostgreSQL, written to and read from
while its processes are killed, its database connections cut and its site stalled and failing,
ends with a cache equal to the site, every event applied once, no HTTP 500, and every stale read
explained by event lag. ``bench/chaos.py --minutes N`` runs the same harness for longer; the
harness is ``tests/chaos_support.py`` and ``docs/development.rst`` describes both."""

from __future__ import annotations

import os

import pytest
from chaos_support import ChaosOptions, ChaosRun, run_chaos
from conftest import report

#: Seconds of chaos: with the setup and the checks the test takes about a minute on 2 cores.
CHAOS_SECONDS = 20.0


@pytest.mark.postgresql
# Part of every run; SGCACHE_CHAOS=0 leaves it out of a quick local run (the reason shows).
@pytest.mark.skipif(os.environ.get("SGCACHE_CHAOS") == "0", reason="SGCACHE_CHAOS=0: the chaos test is left out")
def test_the_cache_survives_chaos_and_ends_equal_to_the_site(pg_database, tmp_path):
    if pg_database is None:
        pytest.skip("PostgreSQL is not reachable (see the warning at the end of the run): the chaos test needs it")
    seed = int(os.environ.get("SGCACHE_CHAOS_SEED") or int.from_bytes(os.urandom(3), "big"))
    lines: list[str] = []
    run = run_chaos(ChaosOptions(seconds=CHAOS_SECONDS, seed=seed, database_server=pg_database.render_as_string(
        hide_password=False), workdir=tmp_path / "chaos", log=lines.append))
    print("\n".join(lines))
    report(f"test_chaos: seed {seed} (replay with SGCACHE_CHAOS_SEED={seed}); {run.summary.splitlines()[-1].strip()}")
    assert not run.failures, f"{run.summary}\nlogs in {tmp_path / 'chaos'}"
    writes = sum(run.figures.writes.values())
    assert writes >= 100, f"only {writes} writes: the run did not exercise much\n{run.summary}"
    assert sum(run.figures.kills.values()) >= 1 and sum(run.figures.faults.values()) >= 1, run.summary


@pytest.mark.parametrize(("status", "text", "refused"), [
    (200, '{"exception":true,"message":"Can\'t authenticate script \'sgcache\'","error_code":102}', True),
    (200, '{"exception":true,"message":"sgcache: cannot check your credentials: the site is down"}', True),
    # A request sgcache passes through (20,000 values) while the site is down: seen in a CI run.
    (200, '{"exception":true,"message":"sgcache: the Shotgun site http://127.0.0.1:48087 is unavailable '
          '(connection refused); sgcache will try it again in 2 s"}', True),
    (503, "Service Unavailable", True),
    (200, '{"results":{"entities":[{"type":"Shot","id":1,"code":"SH001"}]}}', False),
    (200, '{"exception":true,"message":"API read() Shot.sg_sequence: bad filter"}', False),
])
def test_the_harness_accepts_only_a_refusal_for_a_bogus_key(status, text, refused):
    """The hostile bogus-key request must get no data; while the site is down, sgcache's own
    fault is the right answer too."""
    assert ChaosRun.refused_unchecked(status, text) is refused
