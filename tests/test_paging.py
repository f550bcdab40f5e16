"""Paging of reads answered from the cache: which page of ids comes back, and its paging_info.

Through ``compile_read`` + ``plan.run`` over the small fixed cache of ``tests/read_support.py``
(active Shots 1-6, Shot 7 retired), on SQLite and on PostgreSQL. The site's rules (the
stand-in's, sgcache/mocksite/site.py): ``entities_per_page`` is 1 to 500 (default 500),
``current_page`` from 1 (default 1); ``return_paging_info_without_counts`` gives
``{has_next_page}`` and wins over ``return_paging_info``, which gives ``{entity_count,
current_page, page_count}``; without either there is no ``paging_info``. Rows come in id order
unless sorted, sorts keep ``id`` as the last key (so ties never move between pages), nulls
last ascending and first descending.
"""

from __future__ import annotations

import pytest
from read_support import cond, small_cache

from sgcache.query import Uncertain
from sgcache.query.read import compile_read

NO_INFO = "absent"


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def cache(request, pg_database):
    with small_cache(request.param, pg_database) as c:
        yield c


def page(per_page: int | None = None, current: int | None = None) -> dict:
    paging = {}
    if per_page is not None:
        paging["entities_per_page"] = per_page
    if current is not None:
        paging["current_page"] = current
    return {"paging": paging}


def counts(entity_count: int, current_page: int, page_count: int) -> dict:
    return {"entity_count": entity_count, "current_page": current_page, "page_count": page_count}


def case(case_id: str, args: dict, ids: list[int], info=NO_INFO):
    return pytest.param(args, ids, info, id=case_id)


WITH_COUNTS = {"return_paging_info": True}
WITHOUT_COUNTS = {"return_paging_info_without_counts": True}
BY_CUT_IN_DESC = {"sorts": [{"field_name": "sg_cut_in", "direction": "desc"}]}
BY_CODE = {"sorts": [{"field_name": "code", "direction": "asc"}]}
BY_RATE = {"sorts": [{"field_name": "sg_rate", "direction": "asc"}]}
BY_PROJECT = {"sorts": [{"field_name": "project", "direction": "asc"}]}

CASES = [
    # pages of ids, no paging_info asked for
    case("default-paging-is-everything", {}, [1, 2, 3, 4, 5, 6]),
    case("empty-paging-mapping", page(), [1, 2, 3, 4, 5, 6]),
    case("null-paging", {"paging": None}, [1, 2, 3, 4, 5, 6]),
    case("per-page-1-first-page", page(1, 1), [1]),
    case("per-page-1-last-page", page(1, 6), [6]),
    case("per-page-1-past-the-end", page(1, 7), []),
    case("per-page-4-page-1", page(4, 1), [1, 2, 3, 4]),
    case("per-page-4-page-2-partial", page(4, 2), [5, 6]),
    case("per-page-4-page-3-empty", page(4, 3), []),
    case("per-page-500-max", page(500, 1), [1, 2, 3, 4, 5, 6]),
    case("current-page-2-of-default-500-empty", page(None, 2), []),
    case("per-page-without-current-page-is-page-1", page(2), [1, 2]),
    case("far-page-is-empty", page(500, 1000), []),
    # entity_count, current_page, page_count
    case("counts-page-1", {**page(4, 1), **WITH_COUNTS}, [1, 2, 3, 4], counts(6, 1, 2)),
    case("counts-page-2", {**page(4, 2), **WITH_COUNTS}, [5, 6], counts(6, 2, 2)),
    case("counts-past-the-end", {**page(4, 3), **WITH_COUNTS}, [], counts(6, 3, 2)),
    case("counts-exact-fit", {**page(6, 1), **WITH_COUNTS}, [1, 2, 3, 4, 5, 6], counts(6, 1, 1)),
    case("counts-one-over", {**page(5, 1), **WITH_COUNTS}, [1, 2, 3, 4, 5], counts(6, 1, 2)),
    case("counts-per-page-1", {**page(1, 3), **WITH_COUNTS}, [3], counts(6, 3, 6)),
    case("counts-default-paging", WITH_COUNTS, [1, 2, 3, 4, 5, 6], counts(6, 1, 1)),
    case("counts-filtered", {"filters": cond("code", "starts_with", "HERO"), **page(1, 2), **WITH_COUNTS}, [2],
         counts(2, 2, 2)),
    case("counts-nothing-matches", {"filters": cond("code", "is", "nope"), **WITH_COUNTS}, [], counts(0, 1, 0)),
    case("counts-retired-only", {"return_only": "retired", **WITH_COUNTS}, [7], counts(1, 1, 1)),
    case("counts-through-a-join", {"filters": cond("project.Project.name", "is", "beta"), **page(1, 1),
                                   **WITH_COUNTS}, [2], counts(2, 1, 2)),
    case("counts-multi-entity-filter", {"filters": cond("assets", "is", None), **WITH_COUNTS}, [3, 4],
         counts(2, 1, 1)),
    case("counts-with-a-sort", {**BY_CUT_IN_DESC, **page(4, 2), **WITH_COUNTS}, [5, 4], counts(6, 2, 2)),
    # has_next_page
    case("next-page-yes", {**page(5, 1), **WITHOUT_COUNTS}, [1, 2, 3, 4, 5], {"has_next_page": True}),
    case("next-page-no-on-the-last", {**page(5, 2), **WITHOUT_COUNTS}, [6], {"has_next_page": False}),
    case("next-page-no-on-an-exact-fit", {**page(6, 1), **WITHOUT_COUNTS}, [1, 2, 3, 4, 5, 6],
         {"has_next_page": False}),
    case("next-page-yes-one-short", {**page(3, 1), **WITHOUT_COUNTS}, [1, 2, 3], {"has_next_page": True}),
    case("next-page-no-on-the-exact-last", {**page(3, 2), **WITHOUT_COUNTS}, [4, 5, 6], {"has_next_page": False}),
    case("next-page-no-past-the-end", {**page(3, 3), **WITHOUT_COUNTS}, [], {"has_next_page": False}),
    case("next-page-filtered", {"filters": cond("sg_flag", "is", False), **page(3, 1), **WITHOUT_COUNTS},
         [2, 3, 5], {"has_next_page": True}),
    case("next-page-retired-only", {"return_only": "retired", **page(1, 1), **WITHOUT_COUNTS}, [7],
         {"has_next_page": False}),
    case("without-counts-wins-over-counts", {**page(2, 1), **WITH_COUNTS, **WITHOUT_COUNTS}, [1, 2],
         {"has_next_page": True}),
    case("false-flags-give-no-info", {**page(2, 1), "return_paging_info": False,
                                      "return_paging_info_without_counts": False}, [1, 2]),
    # offsets over a sort: cut_in desc = 3 (null first), 6 (2000), 2 (1050), 1 (1001), 5 (0), 4 (-5)
    case("sorted-desc-nulls-first-page-1", {**BY_CUT_IN_DESC, **page(2, 1)}, [3, 6]),
    case("sorted-desc-page-2", {**BY_CUT_IN_DESC, **page(2, 2)}, [2, 1]),
    case("sorted-desc-page-3", {**BY_CUT_IN_DESC, **page(2, 3), **WITHOUT_COUNTS}, [5, 4], {"has_next_page": False}),
    # code asc, by lowercase code point: 3 50%_off, 2 hero-020, 1 hero_010, 5 takeoff, 6 été_060, 4 (null last)
    case("sorted-text-page-1", {**BY_CODE, **page(4, 1)}, [3, 2, 1, 5]),
    case("sorted-text-page-2-null-last", {**BY_CODE, **page(4, 2)}, [6, 4]),
    # rate asc: 3 -0.25, 1 1.5, 5 1.5 (tie: by id), 4 2.0, 6 10.0, 2 null
    case("sorted-tie-by-id-page-1", {**BY_RATE, **page(2, 1)}, [3, 1]),
    case("sorted-tie-by-id-page-2", {**BY_RATE, **page(2, 2)}, [5, 4]),
    case("sorted-tie-by-id-page-3", {**BY_RATE, **page(2, 3)}, [6, 2]),
    # project asc, by link name: Alpha 1, 5; Beta 2, 6; then null 3 and retired (null) 4
    case("sorted-link-page-1", {**BY_PROJECT, **page(3, 1)}, [1, 5, 2]),
    case("sorted-link-page-2-nulls-last", {**BY_PROJECT, **page(3, 2)}, [6, 3, 4]),
]


@pytest.mark.parametrize("args, ids, info", CASES)
def test_a_page_of_a_read(cache, args, ids, info):
    result = cache.read(**args)
    assert [e["id"] for e in result["entities"]] == ids
    assert result.get("paging_info", NO_INFO) == info


def test_walking_every_page_gives_every_row_once_in_order(cache):
    for per_page in range(1, 8):
        seen: list[int] = []
        for current in range(1, 10):
            result = cache.read(**BY_CODE, **page(per_page, current), **WITHOUT_COUNTS)
            seen += [e["id"] for e in result["entities"]]
            if not result["paging_info"]["has_next_page"]:
                break
        assert seen == [3, 2, 1, 5, 6, 4], per_page


REFUSED = [
    pytest.param({"paging": {"entities_per_page": 0}}, "entities_per_page 0", id="per-page-0"),
    pytest.param({"paging": {"entities_per_page": 501}}, "entities_per_page 501", id="per-page-501"),
    pytest.param({"paging": {"entities_per_page": -1}}, "entities_per_page -1", id="per-page-negative"),
    pytest.param({"paging": {"entities_per_page": True}}, "entities_per_page True", id="per-page-true"),
    pytest.param({"paging": {"entities_per_page": False}}, "entities_per_page False", id="per-page-false"),
    pytest.param({"paging": {"entities_per_page": "5"}}, "entities_per_page '5'", id="per-page-string"),
    pytest.param({"paging": {"entities_per_page": 2.0}}, "entities_per_page 2.0", id="per-page-float"),
    pytest.param({"paging": {"entities_per_page": None}}, "entities_per_page None", id="per-page-null"),
    pytest.param({"paging": {"current_page": 0}}, "current_page 0", id="page-0"),
    pytest.param({"paging": {"current_page": -2}}, "current_page -2", id="page-negative"),
    pytest.param({"paging": {"current_page": True}}, "current_page True", id="page-true"),
    pytest.param({"paging": {"current_page": "1"}}, "current_page '1'", id="page-string"),
    pytest.param({"paging": {"current_page": 1.0}}, "current_page 1.0", id="page-float"),
    pytest.param({"paging": {"entities_per_page": 10, "current_page": None}}, "current_page None", id="page-null"),
    pytest.param({"paging": [10, 1]}, "paging must be a mapping", id="paging-a-list"),
    pytest.param({"paging": "10"}, "paging must be a mapping", id="paging-a-string"),
]


@pytest.mark.parametrize("args, detail", REFUSED)
def test_paging_the_site_would_refuse_is_malformed(cache, args, detail):
    with pytest.raises(Uncertain) as raised:
        compile_read(cache.context(), {"type": "Shot", **args})
    assert (raised.value.reason, raised.value.detail) == ("malformed", detail)
