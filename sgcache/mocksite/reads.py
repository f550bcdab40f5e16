"""Reads of the stand-in site: ``read`` (filters, sorting, paging, return_only, archived projects,
late event-log rows) and ``summarize``, answered in the wire's shapes.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sgcache.mocksite.emulator import Emulator, FilterError
from sgcache.mocksite.faults import Fault
from sgcache.mocksite.filters import FilterTranslator
from sgcache.mocksite.ledger import Ledger
from sgcache.mocksite.summarize import Summarizer
from sgcache.mocksite.values import Values, require_type

PAGE_SIZE = 500
#: data types a read can't sort by
UNSORTABLE = {"multi_entity", "url", "serializable", "tag_list", "password", "pivot_column"}


@dataclass
class ReadArgs:
    """The checked arguments of one ``read``."""

    entity_type: str
    fields: list[str]
    filters: list
    operator: str
    retired: bool
    per_page: int
    page: int
    sorts: list
    include_archived: bool

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page


def _paging(args: dict) -> tuple[int, int]:
    paging = args.get("paging") or {}
    if not isinstance(paging, dict):
        raise Fault("API read() paging must be a mapping {entities_per_page, current_page}")
    per_page = paging.get("entities_per_page", PAGE_SIZE)
    page = paging.get("current_page", 1)
    if isinstance(per_page, bool) or not isinstance(per_page, int) or not 1 <= per_page <= PAGE_SIZE:
        raise Fault(f"API read() entities_per_page must be 1 to {PAGE_SIZE}")
    if isinstance(page, bool) or not isinstance(page, int) or page < 1:
        raise Fault("API read() current_page must be a positive integer")
    return per_page, page


def _holder(entity_type: str, name: str) -> tuple[str, str]:
    """The type and field a return field's value belongs to: ``entity.Shot.image`` is Shot's
    ``image`` (so a deep thumbnail reads as that field's own value does)."""
    parts = name.split(".")
    if len(parts) >= 3 and len(parts) % 2 == 1:
        return parts[-2], parts[-1]
    return entity_type, name


class Reader:
    """Answers reads from the emulator's rows; keeps the sorted rows of recent reads for their next
    pages until the data changes (``ledger.version``)."""

    def __init__(self, values: Values, filters: FilterTranslator, ledger: Ledger):
        self.schema = values.schema
        self.emu: Emulator = values.emu
        self.values = values
        self.filters = filters
        self.ledger = ledger
        self.summarizer = Summarizer(values.emu, values.to_wire)
        self.cache: OrderedDict = OrderedDict()
        #: who the read in progress is for, when it runs over a caller's view (part of the cache key)
        self.viewing: tuple | None = None

    def visible(self, entity_type: str, include_archived: bool) -> Callable[[dict], bool] | None:
        """A further test of rows: not hidden (late event-log rows), not in an archived project."""
        now = self.emu.clock()
        hidden = self.emu.hidden_until
        archived = set()
        if not include_archived and self.emu.has_table("Project"):
            archived = {pid for pid, row in self.emu.table("Project").items() if row.get("archived")}
        if not hidden and not archived:
            return None

        def visible(row: dict) -> bool:
            if hidden and (entity_type, row["id"]) in hidden and hidden[(entity_type, row["id"])] > now:
                return False
            if archived:
                if entity_type == "Project":
                    return row["id"] not in archived
                project = row.get("project")
                if isinstance(project, dict) and project.get("type") == "Project" and project["id"] in archived:
                    return False
            return True

        return visible

    def _sort_key(self, entity_type: str, path: str) -> Callable[[dict], Any]:
        try:
            data_type = self.emu.field_type(entity_type, path)
        except FilterError as e:
            raise Fault(f"API read() sorting: {e}") from None
        if data_type in UNSORTABLE:
            raise Fault(f"API read() can't sort by {path} ({data_type})")

        def key(row: dict):
            value = self.emu.field_value(entity_type, row, path)
            if data_type == "entity":
                value = None if value is None else ((self.emu.link_name(value) or "").lower(), value["type"],
                                                    value["id"])
            elif isinstance(value, str):
                value = (value.lower(), value)
            return value

        return key

    def sorted_rows(self, entity_type: str, rows: list[dict], sorts: list) -> list[dict]:
        """Sort by every key in order (None last ascending, first descending), then by id."""
        rows = sorted(rows, key=lambda r: r["id"])
        for spec in reversed(sorts):
            if not isinstance(spec, dict) or not isinstance(spec.get("field_name"), str):
                raise Fault("API read() sorts must be [{field_name, direction}]")
            direction = spec.get("direction", "asc")
            if direction not in ("asc", "desc"):
                raise Fault(f"API read() unknown sort direction {direction!r}")
            key = self._sort_key(entity_type, spec["field_name"])
            present = [(key(r), r) for r in rows]
            nulls = [r for k, r in present if k is None]
            values = [(k, r) for k, r in present if k is not None]
            values.sort(key=lambda kr: kr[0], reverse=direction == "desc")
            ordered = [r for _, r in values]
            rows = ordered + nulls if direction == "asc" else nulls + ordered
        return rows

    def entity_dict(self, entity_type: str, row: dict, fields: list[str]) -> dict:
        out = {"type": entity_type, "id": row["id"]}
        for name in fields:
            if name in ("type", "id"):
                continue
            try:
                value = self.emu.field_value(entity_type, row, name)
            except FilterError:
                value = None
            out[name] = self.values.to_wire(*_holder(entity_type, name), value)
        return out

    def _read_args(self, args: Any) -> ReadArgs:
        if not isinstance(args, dict):
            raise Fault("API read() expects a mapping of arguments")
        entity_type = require_type(self.schema, "read", args)
        if args.get("additional_filter_presets"):
            raise Fault("API read() additional_filter_presets are not supported by this site")
        fields = args.get("return_fields") or ["id"]
        if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
            raise Fault("API read() return_fields must be a list of field names")
        filters, operator = self.filters.translate(entity_type, args.get("filters"))
        return_only = args.get("return_only", "active")
        if return_only not in ("active", "retired"):
            raise Fault(f"API read() return_only must be 'active' or 'retired', got {return_only!r}")
        per_page, page = _paging(args)
        sorts = args.get("sorts") or []
        if not isinstance(sorts, list):
            raise Fault("API read() sorts must be a list")
        include_archived = args.get("include_archived_projects", True) is not False
        return ReadArgs(entity_type, fields, filters, operator, return_only == "retired", per_page, page, sorts,
                        include_archived)

    def read(self, args: Any) -> dict:
        a = self._read_args(args)
        by_id = all(s.get("field_name") == "id" and s.get("direction", "asc") == "asc"
                    for s in a.sorts if isinstance(s, dict))
        extra = self.visible(a.entity_type, a.include_archived)
        with_counts = bool(args.get("return_paging_info"))
        if by_id and not with_counts:
            # Ordered by id: evaluation can stop after this page (and one more row to know if
            # there is a next page); paging by id stays fast on big tables.
            rows = self.emu.matching(a.entity_type, a.filters, a.operator, a.retired,
                                     stop_after=a.offset + a.per_page + 1, extra=extra)
            total = None
        else:
            rows = self._all_matching(a, extra)
            total = len(rows)
        page_rows = rows[a.offset:a.offset + a.per_page]
        result: dict[str, Any] = {"entities": [self.entity_dict(a.entity_type, r, a.fields) for r in page_rows]}
        if args.get("return_paging_info_without_counts"):
            result["paging_info"] = {"has_next_page": len(rows) > a.offset + a.per_page}
        elif with_counts:
            result["paging_info"] = {"entity_count": total, "current_page": a.page,
                                     "page_count": (total + a.per_page - 1) // a.per_page}
        return result

    def _all_matching(self, a: ReadArgs, extra: Callable[[dict], bool] | None) -> list[dict]:
        """Every matching row in order; kept for the next pages until the data changes."""
        key = (a.entity_type, json.dumps([a.filters, a.operator, a.retired, a.sorts, a.include_archived],
                                         default=str, sort_keys=True), self.ledger.version, self.viewing)
        cached = self.cache.get(key)
        if cached is not None and extra is None:
            self.cache.move_to_end(key)
            return cached
        rows = self.emu.matching(a.entity_type, a.filters, a.operator, a.retired, extra=extra)
        rows = self.sorted_rows(a.entity_type, rows, a.sorts)
        if extra is None:
            self.cache[key] = rows
            while len(self.cache) > 16:
                self.cache.popitem(last=False)
        return rows

    def summarize(self, args: Any) -> dict:
        if not isinstance(args, dict):
            raise Fault("API summarize() expects a mapping of arguments")
        entity_type = require_type(self.schema, "summarize", args)
        summaries, grouping = args.get("summaries") or [], args.get("grouping")
        if not isinstance(summaries, list) or not all(
                isinstance(x, dict) and isinstance(x.get("field"), str) and isinstance(x.get("type"), str)
                for x in summaries):
            raise Fault("API summarize() summaries must be a list of {field, type}")
        if grouping is not None and (not isinstance(grouping, list) or not all(
                isinstance(x, dict) and isinstance(x.get("field"), str) for x in grouping)):
            raise Fault("API summarize() grouping must be a list of {field, type, direction}")
        filters, operator = self.filters.translate(entity_type, args.get("filters"))
        include_archived = args.get("include_archived_projects", True) is not False
        rows = self.emu.matching(entity_type, filters, operator, False,
                                 extra=self.visible(entity_type, include_archived))
        try:
            return self.summarizer.summarize(entity_type, rows, summaries, grouping)
        except FilterError as e:
            raise Fault(f"API summarize() {e}") from None
