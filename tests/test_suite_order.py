"""The suite's own scheduling (docs/development.rst, "Keeping the suite short"): the files named to
go first exist, and ``make test`` keeps xdist from reordering them."""

from __future__ import annotations

import re

from conftest import ROOT, SLOWEST_FIRST


def test_the_files_named_to_run_first_exist_once_each():
    assert len(set(SLOWEST_FIRST)) == len(SLOWEST_FIRST)
    missing = [name for name in SLOWEST_FIRST if not (ROOT / "tests" / name).is_file()]
    assert missing == [], f"renamed or removed: update SLOWEST_FIRST in tests/conftest.py: {missing}"


def test_make_test_hands_out_files_in_collection_order():
    args = re.search(r"^PYTEST_ARGS \?= (.*)$", (ROOT / "Makefile").read_text(encoding="utf-8"), re.M).group(1)
    assert "--dist loadfile" in args and "--no-loadscope-reorder" in args
