"""The README's read benchmark table is the one bench/readme_table.py writes from the kept JSON of
a run (bench/results/read_speed.json): never typed by hand, never out of step with its run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT

SCRIPT = ROOT / "bench" / "readme_table.py"
RESULTS = ROOT / "bench" / "results" / "read_speed.json"


def test_the_readme_holds_the_table_made_from_the_kept_run():
    done = subprocess.run([sys.executable, str(SCRIPT), str(RESULTS), "--check"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, ("README.rst's read-speed table differs from what "
                                  f"`bench/readme_table.py {RESULTS.relative_to(ROOT)}` writes: run it")


def test_a_changed_figure_is_caught(tmp_path):
    data = json.loads(RESULTS.read_text(encoding="utf-8"))
    data["results"][0]["p50_ms"] += 1.0
    changed = tmp_path / "read_speed.json"
    changed.write_text(json.dumps(data), encoding="utf-8")
    done = subprocess.run([sys.executable, str(SCRIPT), str(changed), "--check"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1


def test_every_benchmark_script_imports():
    """The benchmarks run by hand, so nothing else notices when one stops importing (a helper it
    takes from another script renamed, say): each is imported here, as `python bench/X.py` would."""
    names = sorted(p.stem for p in (ROOT / "bench").glob("*.py"))
    code = ("import importlib, sys\n"
            f"sys.path.insert(0, {str(ROOT / 'bench')!r})\n"
            f"for name in {names!r}:\n"
            "    importlib.import_module(name)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "read_speed" in names and "history_speed" in names


# Run in a fresh interpreter with bench/ on the path: for every call one bench script makes to a
# function or class it imports from another, the call's arguments must fit the signature.
_SIGNATURES = r'''
import ast, importlib, inspect, sys
from pathlib import Path
bench = Path(sys.argv[1])
sys.path.insert(0, str(bench))
mine = {p.stem for p in bench.glob("*.py")}
bad = []
for path in sorted(bench.glob("*.py")):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported = {a.asname or a.name: (n.module, a.name) for n in ast.walk(tree)
                if isinstance(n, ast.ImportFrom) and n.module in mine for a in n.names}
    for call in ast.walk(tree):
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in imported):
            continue
        if any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
            continue  # *args or **kwargs: not checked
        module, name = imported[call.func.id]
        target = getattr(importlib.import_module(module), name)
        if not callable(target):
            continue
        try:
            inspect.signature(target).bind(*call.args, **{k.arg: None for k in call.keywords})
        except TypeError as e:
            bad.append(f"{path.name}:{call.lineno}: {name}(...) {e}")
        except ValueError:
            continue  # no signature to check (a builtin)
print("\n".join(bad))
sys.exit(1 if bad else 0)
'''


def test_benchmark_scripts_call_each_other_s_helpers_as_they_are_now():
    """A helper one script takes from another changed its parameters (read_speed.measure did):
    the caller still imports, and breaks only when run by hand."""
    done = subprocess.run([sys.executable, "-c", _SIGNATURES, str(ROOT / "bench")], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]


@pytest.mark.parametrize("script,args,message", [
    ("backfill_speed.py", ["--changes", "-5"], "--changes: must be at least 1, got -5"),
    ("writer_bulk.py", ["--batch", "0"], "--batch: must be at least 1, got 0"),
    ("read_speed.py", ["--timeout", "nan"], "--timeout: must be above 0, got nan"),
    ("import_speed.py", ["--latency-ms", "-1"], "--latency-ms: must be at least 0, got -1"),
    ("chaos.py", ["--minutes", "0"], "--minutes: must be above 0, got 0"),
    ("read_speed.py", ["--requests", "ten"], "--requests: expected a whole number, got 'ten'"),
])
def test_a_benchmark_refuses_a_number_that_would_measure_nothing(script, args, message):
    done = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 2 and message in done.stderr, done.stderr[-1000:]
