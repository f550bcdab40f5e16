"""A small fixed cache for the read-compiler tests (tests/test_compile_table.py, tests/test_paging.py).

Three types built with the schema model classes, one Shot field of each data type the cache
stores, and seven Shots written through the project's own Writer, on SQLite or PostgreSQL.
Every expected answer in the tests is worked out by hand from the table below.

Fixed clock: ``NOW`` is Wednesday 2024-05-15 12:00:00 UTC (the site's time zone is UTC), so
"this week" (weeks start on Sunday) is Sunday 2024-05-12 00:00 to Sunday 2024-05-19 00:00.

Projects: 1 "Alpha", 2 "Beta", 3 "Gone" (retired).
Assets:   1 "Chair", 2 "Table_50%", 3 "Lamp" (retired), 4 "Stool"; and, linked by no Shot, two whose
          lowercase Python and PostgreSQL disagree on: 5 "ΟΔΟΣ" (final sigma), 6 "İSTANBUL" (dotted I).

id code      status type cut_in rate  flag  sg_start   delivered_at (UTC)  project   sg_target assets
1  Hero_010  ip     Hero 1001   1.5   True  2024-05-15 2024-05-15 11:00:00 P1        A1        [A1, A2]
2  HERO-020  fin    BG   1050   None  False 2024-05-14 2024-05-14 23:30:00 P2        P1        [A1]
3  50%_off   wtg    None None   -0.25 None  2024-05-20 2024-05-15 13:00:00 None      A3 (ret.) []
4  None      ip     Hero -5     2.0   True  None       2024-05-12 00:00:00 P3 (ret.) None      [A3 (ret.)]
5  Takeoff   None   BG   0      1.5   False 2024-04-30 None                P1        A2        [P1, A3 (ret.)]
6  Été_060   fin    None 2000   10.0  None  2023-12-31 2024-05-11 23:59:59 P2        P3 (ret.) [A4]
7  Hero_070  ip     Hero 1001   1.5   True  2024-05-15 2024-05-15 11:00:00 P1        A1        [A1]

(status: sg_status_list; type: sg_shot_type (list); cut_in: number; rate: float; flag: checkbox;
sg_start: date; sg_delivered_at: date_time; sg_target links an Asset or a Project.)

Shot 7 is retired and is a near copy of Shot 1: any answer that lets retired rows through names 7.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from conftest import pg_schema

from sgcache.query.paths import Context
from sgcache.query.read import compile_read
from sgcache.schema.model import EntityType, Field, Schema
from sgcache.store.db import create_engine
from sgcache.store.migrate import migrate
from sgcache.store.readstate import ReadState
from sgcache.store.tables import Tables
from sgcache.store.writer import Writer

UTC = ZoneInfo("UTC")
NOW = dt.datetime(2024, 5, 15, 12, 0, 0, tzinfo=dt.UTC)
ACTIVE_SHOTS = [1, 2, 3, 4, 5, 6]
RETIRED_SHOT = 7


def _fields(*fields: Field) -> dict[str, Field]:
    return {f.name: f for f in (Field("id", "number"), *fields)}


def build_schema() -> Schema:
    schema = Schema(types={
        "Project": EntityType("Project", _fields(Field("name", "text")), identifier="name"),
        "Asset": EntityType("Asset", _fields(Field("code", "text")), identifier="code"),
        "Shot": EntityType("Shot", _fields(
            Field("code", "text"),
            Field("sg_status_list", "status_list", valid_values=["wtg", "ip", "fin"]),
            Field("sg_shot_type", "list", valid_values=["Hero", "BG"]),
            Field("sg_cut_in", "number"),
            Field("sg_rate", "float"),
            Field("sg_flag", "checkbox"),
            Field("sg_start", "date"),
            Field("sg_delivered_at", "date_time"),
            Field("project", "entity", entity_types=["Project"]),
            Field("sg_target", "entity", entity_types=["Asset", "Project"]),
            Field("assets", "multi_entity", entity_types=["Asset", "Project"]),
        ), identifier="code"),
    }, header="read compiler tests")
    schema.validate("read_support")
    return schema


def P(i: int) -> dict:  # noqa: N802 - reads like the table above
    return {"type": "Project", "id": i}


def A(i: int) -> dict:  # noqa: N802
    return {"type": "Asset", "id": i}


COLUMNS = ("code", "sg_status_list", "sg_shot_type", "sg_cut_in", "sg_rate", "sg_flag", "sg_start",
           "sg_delivered_at", "project", "sg_target", "assets")
ROWS = {
    1: ("Hero_010", "ip", "Hero", 1001, 1.5, True, "2024-05-15", "2024-05-15T11:00:00Z", P(1), A(1), [A(1), A(2)]),
    2: ("HERO-020", "fin", "BG", 1050, None, False, "2024-05-14", "2024-05-14T23:30:00Z", P(2), P(1), [A(1)]),
    3: ("50%_off", "wtg", None, None, -0.25, None, "2024-05-20", "2024-05-15T13:00:00Z", None, A(3), []),
    4: (None, "ip", "Hero", -5, 2.0, True, None, "2024-05-12T00:00:00Z", P(3), None, [A(3)]),
    5: ("Takeoff", None, "BG", 0, 1.5, False, "2024-04-30", None, P(1), A(2), [P(1), A(3)]),
    6: ("Été_060", "fin", None, 2000, 10.0, None, "2023-12-31", "2024-05-11T23:59:59Z", P(2), P(3), [A(4)]),
    7: ("Hero_070", "ip", "Hero", 1001, 1.5, True, "2024-05-15", "2024-05-15T11:00:00Z", P(1), A(1), [A(1)]),
}


def shots() -> list[dict]:
    return [{"type": "Shot", "id": i, **dict(zip(COLUMNS, values, strict=True))} for i, values in ROWS.items()]


@dataclass
class Cache:
    backend: str
    engine: sa.Engine
    tables: Tables

    def context(self, now: dt.datetime = NOW) -> Context:
        state = ReadState(ready=frozenset(t.name for t in self.tables))
        return Context(self.tables, state, self.engine.dialect.name, tz=UTC, now=now)

    def read(self, entity_type: str = "Shot", **args) -> dict:
        """A ``read`` (of Shots unless told) compiled and run against this cache."""
        plan = compile_read(self.context(), {"type": entity_type, **args})
        with self.engine.connect() as conn:
            return plan.run(conn)

    def ids(self, filters: dict, entity_type: str = "Shot", **args) -> list[int]:
        """The sorted ids a read with these filters selects."""
        return sorted(e["id"] for e in self.read(entity_type, filters=filters, **args)["entities"])


def fill(engine: sa.Engine) -> Tables:
    tables = Tables(build_schema())
    migrate(engine, tables)
    writer = Writer(engine, tables)
    writer.upsert("Project", [{"type": "Project", "id": i, "name": n} for i, n in ((1, "Alpha"), (2, "Beta"),
                                                                                  (3, "Gone"))])
    writer.upsert("Asset", [{"type": "Asset", "id": i, "code": c}
                            for i, c in ((1, "Chair"), (2, "Table_50%"), (3, "Lamp"), (4, "Stool"), (5, "ΟΔΟΣ"),
                                         (6, "İSTANBUL"))])
    writer.upsert("Shot", shots())
    assert writer.retire("Project", [3]) == 1
    assert writer.retire("Asset", [3]) == 1
    assert writer.retire("Shot", [RETIRED_SHOT]) == 1
    return tables


@contextmanager
def small_cache(backend: str, pg_database) -> Iterator[Cache]:
    """The fixed cache on a fresh SQLite file or PostgreSQL schema (for module-scoped fixtures)."""
    with ExitStack() as stack:
        if backend == "sqlite":
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sgcache-compile-")))
            url = f"sqlite:///{folder / 'cache.sqlite'}"
        else:
            url = stack.enter_context(pg_schema(pg_database, "c"))
        engine = create_engine(url)
        stack.callback(engine.dispose)
        yield Cache(backend, engine, fill(engine))


def cond(path: str, relation: str, *values) -> dict:
    """One filter condition in the wire format, alone in an ``and`` group."""
    return {"logical_operator": "and", "conditions": [{"path": path, "relation": relation, "values": list(values)}]}
