"""Write README.rst's read benchmark table from the JSON ``bench/read_speed.py --json`` wrote.

    .venv/bin/python bench/readme_table.py read.json [--readme README.rst] [--check]

Replaces what lies between the ``.. read-speed-start`` and ``.. read-speed-end`` comments of
the README with a table made from the file: each call and number of clients, sgcache's p50 /
p95 in ms, requests a second and ratio to its floor, the stand-in's and the floor's; then the
same calls with the extra Versions when the run loaded them, and the targets with their
verdicts. Nothing in the table is typed by hand. ``--check`` only says whether the README
holds what the file gives (exit status 1 if not).
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
START, END = ".. read-speed-start", ".. read-speed-end"

CALLS = {"find_one": "find_one by id", "deep50": "find, deep link", "page500": "500-entity page",
         "summarize": "summarize, grouped"}


def _ms(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def _cell(result: dict | None, ratio: bool = False) -> str:
    if result is None:
        return ""
    text = f"{_ms(result['p50_ms'])} / {_ms(result['p95_ms'])}, {result['rps']:,.0f}/s"
    if ratio and result.get("floor_ratio"):
        text += f" ({result['floor_ratio']:.2f}x)"
    return text


def _find(results: list[dict], phase: str, target: str, call: str, clients: int) -> dict | None:
    for r in results:
        if (r["phase"], r["target"], r["call"], r["clients"]) == (phase, target, call, clients):
            return r
    return None


def _grid(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    rule = "  ".join("=" * w for w in widths)
    lines = [rule, "  ".join(c.ljust(w) for c, w in zip(rows[0], widths, strict=True)).rstrip(), rule]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows[1:]]
    return [*lines, rule]


def table(data: dict[str, Any]) -> list[str]:
    """The README's lines for one run."""
    v, s, notes = data["versions"], data["settings"], data.get("notes", {})
    results = data["results"]
    found = notes.get("deep50_found")
    names = dict(CALLS, deep50=f"find, deep link, {found} found" if found is not None else CALLS["deep50"])
    intro = (f"Made by ``bench/readme_table.py`` from the JSON of one run, on {v.get('date', '?')} (git "
             f"{v.get('git', '?')}, {v.get('cpus', '?')} CPUs shared by the client threads, ``sgcache web`` "
             f"{s['workers']} workers x {s['threads']} threads, PostgreSQL {v.get('psql', '?')}, scale "
             f"{s['scale']}): p50 / p95 in ms, requests a second, and sgcache's p50 over its floor's (the "
             "deep-link find over find_one's" + (", timed in the same rounds: its row's floor" if "rounds" in s
                                                 else "") + "). The command::")
    out = [*textwrap.wrap(intro, 100, break_on_hyphens=False), "", f"    {data['command']}", ""]
    rows = [["call", "clients", "sgcache (x floor)", "stand-in", "floor"]]
    for phase, suffix in (("base", ""), ("versions", f", +{s['extra_versions']:,} Versions")):
        for call, label in names.items():
            for clients in s["clients"]:
                proxy = _find(results, phase, "sgcache", call, clients)
                if proxy is None:
                    continue
                rows.append([label + suffix, str(clients), _cell(proxy, ratio=True),
                             _cell(_find(results, phase, "stand-in", call, clients)),
                             _cell(_find(results, phase, "floor", call, clients))])
    out += _grid(rows)
    out += ["", "Targets (issue 16):", ""]
    for t in data["targets"]:
        where = " with the extra Versions" if t.get("phase") == "versions" else ""
        out.append(f"- {t['target']}, {t['clients']} client{'s' if t['clients'] != 1 else ''}{where}: "
                   f"{t['value']} (limit {t['limit']}{'; ' + t['detail'] if t['detail'] else ''}): "
                   f"{'met' if t['met'] else 'not met'}")
    return out


def rewrite(readme: str, lines: list[str]) -> str:
    head, found, rest = readme.partition(START + "\n")
    if not found:
        raise SystemExit(f"the README has no {START!r} line")
    _, found, tail = rest.partition(END + "\n")
    if not found:
        raise SystemExit(f"the README has no {END!r} line after {START!r}")
    return head + START + "\n\n" + "\n".join(lines) + "\n\n" + END + "\n" + tail


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("json_file", type=Path)
    parser.add_argument("--readme", type=Path, default=ROOT / "README.rst")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if the README differs")
    args = parser.parse_args()
    data = json.loads(args.json_file.read_text(encoding="utf-8"))
    before = args.readme.read_text(encoding="utf-8")
    after = rewrite(before, table(data))
    if args.check:
        sys.exit(0 if after == before else 1)
    args.readme.write_text(after, encoding="utf-8")
    print(f"{args.readme}: table written from {args.json_file}")


if __name__ == "__main__":
    main()
