"""shotgun_api3's own emulator (mockgun) with the corrections a faithful stand-in site needs.

mockgun keeps the rows and evaluates filters; this subclass only steps in where mockgun is
wrong or silent. Every correction is listed in :mod:`sgcache.mocksite`'s docstring. It reaches
mockgun only through :class:`~sgcache.mocksite.store.MockgunStore`'s public methods.
"""

from __future__ import annotations

import bisect
import calendar
import copy
import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from shotgun_api3 import ShotgunError

from sgcache.mocksite.store import MockgunStore

TEXT_LIKE = {"text", "color", "entity_type", "footage", "list", "status_list", "url_template", "uuid"}
NUMERIC = {"number", "float", "duration", "percent", "timecode", "currency"}
TEMPORAL = {"date", "date_time"}
# Shotgun refuses filters on these data types (the client's operator table says so of password,
# serializable, summary and url, file/link fields included).
UNFILTERABLE = {"password", "serializable", "url", "pivot_column", "summary", "query", "calculated"}
# name_* relation on a link -> the text relation it applies to the linked entity's name
NAME_RELATIONS = {"name_is": "is", "name_contains": "contains", "name_not_contains": "not_contains",
                  "name_starts_with": "starts_with", "name_ends_with": "ends_with"}
# tag_list relations of the client's operator table -> (the text relation one tag is tested with,
# whether the condition holds when no tag passes it); ``is`` on a tag list works as a contains.
TAG_RELATIONS = {"is": ("is", False), "is_not": ("is", True), "name_contains": ("contains", False),
                 "name_not_contains": ("contains", True)}
RELATIVE_UNITS = {"HOUR", "DAY", "WEEK", "MONTH", "YEAR"}


class Fanout(list):
    """The values of a deep path through a multi-entity field, one per linked entity (a list
    field's own value, such as a tag list, is a plain list)."""


class FilterError(ShotgunError):
    """A filter the site refuses (unknown field, relation or value)."""


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _add_months(moment: dt.datetime, months: int) -> dt.datetime:
    month0 = moment.month - 1 + months
    year, month = moment.year + month0 // 12, month0 % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def shift(moment: dt.datetime, amount: int, unit: str) -> dt.datetime:
    """``moment`` moved by ``amount`` units (calendar-aware for months and years)."""
    if unit == "HOUR":
        return moment + dt.timedelta(hours=amount)
    if unit == "DAY":
        return moment + dt.timedelta(days=amount)
    if unit == "WEEK":
        return moment + dt.timedelta(weeks=amount)
    if unit == "MONTH":
        return _add_months(moment, amount)
    return _add_months(moment, 12 * amount)


def calendar_range(now: dt.datetime, unit: str, offset: int) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of the calendar ``unit`` (day/week/month/year) ``offset`` units from ``now``.

    Weeks start on Sunday, as on the site's calendar.
    """
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "day":
        start = day + dt.timedelta(days=offset)
        return start, start + dt.timedelta(days=1)
    if unit == "week":
        start = day - dt.timedelta(days=(day.weekday() + 1) % 7) + dt.timedelta(weeks=offset)
        return start, start + dt.timedelta(weeks=1)
    if unit == "month":
        start = _add_months(day.replace(day=1), offset)
        return start, _add_months(start, 1)
    start = day.replace(month=1, day=1)
    start = start.replace(year=start.year + offset)
    return start, start.replace(year=start.year + 1)


class Emulator(MockgunStore):
    """mockgun's storage and filter evaluation, corrected.

    Built from ``schema_read``-shaped dicts instead of mockgun's pickle files. Rows hold
    date_time values as aware UTC datetimes and dates as ``YYYY-MM-DD`` strings (as mockgun
    expects); links are stored without names.
    """

    def __init__(self, schema_fields: dict, schema_entities: dict, identifiers: dict[str, str | None],
                 timezone: str = "UTC", clock=None):
        super().__init__(schema_fields, schema_entities)
        self.identifiers = identifiers
        self.tz = ZoneInfo(timezone)
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.finds = 0
        #: rows hidden from reads until this time (late event-log commits): (type, id) -> datetime
        self.hidden_until: dict[tuple[str, int], dt.datetime] = {}

    # --- storage helpers ---------------------------------------------------------------------

    def dump(self) -> dict:
        return {**super().dump(), "hidden": self.hidden_until}

    def load(self, state: dict) -> None:
        super().load(state)
        self.hidden_until = state["hidden"]

    def new_row(self, entity_type: str) -> dict:
        row = self.blank_row(entity_type)
        # A site's schema may give a checkbox's default as 0 or 1; its values are always booleans.
        for name, info in self.schema_fields[entity_type].items():
            if info["data_type"]["value"] == "checkbox":
                row[name] = bool(row[name])
        return row

    def field_type(self, entity_type: str, field: str) -> str:
        """Data type of ``field`` (dotted paths allowed); FilterError if it does not exist."""
        schema = self.schema_fields
        parts = field.split(".")
        while len(parts) >= 3:
            first, linked_type = parts[0], parts[1]
            if first not in schema.get(entity_type, {}):
                raise FilterError(f"{entity_type}.{first} doesn't exist")
            if linked_type not in schema:
                raise FilterError(f"{linked_type} is not a valid entity type (in path {field!r})")
            entity_type, parts = linked_type, parts[2:]
        name = ".".join(parts)
        if name in ("id", "type") and name not in schema[entity_type]:
            return "number" if name == "id" else "entity_type"
        try:
            return schema[entity_type][name]["data_type"]["value"]
        except KeyError:
            raise FilterError(f"{entity_type}.{name} doesn't exist") from None

    def link_name(self, link: dict) -> Any:
        """The ``name`` the site gives a link: the target's identifier field, computed live."""
        target = self.row(link["type"], link["id"])
        identifier = self.identifiers.get(link["type"])
        if target is None or identifier is None:
            return None
        value = target.get(identifier)
        if isinstance(value, dict):  # a url-typed identifier (Attachment.this_file)
            return value.get("name")
        return value

    def is_live(self, link: dict) -> bool:
        target = self.row(link["type"], link["id"])
        return target is not None and not target["__retired"]

    # --- reading values ------------------------------------------------------------------------

    def field_value(self, entity_type: str, row: dict, field: str) -> Any:
        """Correction: a deep path through a link of another type (or to a retired entity) is
        None, not an error; values are copies, so filters never write into stored rows."""
        parts = field.split(".", 2)
        if len(parts) == 3:
            first, linked_type, rest = parts
            value = row.get(first)
            if isinstance(value, list):
                out = Fanout()
                for link in value:
                    if link["type"] != linked_type or not self.is_live(link):
                        continue
                    out.append(self.field_value(linked_type, self.table(linked_type)[link["id"]], rest))
                return out
            if not isinstance(value, dict) or value.get("type") != linked_type or not self.is_live(value):
                return None
            return self.field_value(linked_type, self.table(linked_type)[value["id"]], rest)
        value = row.get(field)
        if isinstance(value, list):
            return [copy.copy(v) if isinstance(v, dict) else v for v in value
                    if not (isinstance(v, dict) and "id" in v and "type" in v and not self.is_live(v))]
        if isinstance(value, dict):
            data_type = self.schema_fields[entity_type].get(field, {}).get("data_type", {}).get("value")
            if data_type == "entity" and not self.is_live(value):
                return None
            return copy.deepcopy(value)
        return value

    # --- filters -------------------------------------------------------------------------------

    def filter_matches(self, entity_type: str, row: dict, sg_filter: list, retired_only: bool) -> bool:
        try:
            field, operator, rval = sg_filter
        except ValueError:
            raise FilterError("Filters must be in the form [path, relation, values]") from None
        if field is None:
            return self.nested_matches(entity_type, row, sg_filter, retired_only)
        field_type = self.field_type(entity_type, field)
        lval = self.field_value(entity_type, row, field)
        return self.compare(field_type, lval, operator, rval)

    def compare(self, field_type: str, lval: Any, operator: str, rval: Any) -> bool:
        """One condition. Corrections first; what mockgun gets right goes to mockgun."""
        if field_type in UNFILTERABLE:
            raise FilterError(f"filtering on {field_type} fields is not supported")
        if field_type == "multi_entity":
            return self._compare_multi(lval or [], operator, rval)
        if isinstance(lval, Fanout):  # a deep path through a multi-entity field: any value matches
            if operator in ("is_not", "not_in", "not_contains", "name_not_contains", "type_is_not"):
                return all(self.compare(field_type, v, operator, rval) for v in lval)
            return any(self.compare(field_type, v, operator, rval) for v in lval)
        if field_type == "entity":
            return self._compare_entity(lval, operator, rval)
        if field_type in TEMPORAL and (operator in ("in_last", "not_in_last", "in_next", "not_in_next")
                                       or operator.startswith("in_calendar_")):
            return self._compare_relative(field_type, lval, operator, rval)
        if field_type in TEMPORAL | NUMERIC:
            return self._compare_ordered(lval, operator, rval)
        if field_type in TEXT_LIKE:
            return self._compare_text(lval, operator, rval)
        if field_type == "checkbox":
            if operator in ("is", "is_not"):
                return bool(lval) == bool(rval) if operator == "is" else bool(lval) != bool(rval)
        if field_type == "image":
            return self._compare_image(lval, operator, rval)
        if field_type == "tag_list":
            return self._compare_tags(lval, operator, rval)
        raise FilterError(f"the {operator} relation is not supported on {field_type} fields")

    def _compare_image(self, lval: Any, operator: str, rval: Any) -> bool:
        """Thumbnails: ``is`` / ``is_not`` None only (has none, has one), as the operator table says."""
        if operator not in ("is", "is_not"):
            return self._unsupported(operator, "image")
        if rval is not None:
            raise FilterError(f"the {operator} relation on image fields only takes None (whether there is a "
                              f"thumbnail), got {rval!r:.60}")
        empty = lval in (None, "")
        return empty if operator == "is" else not empty

    def _compare_tags(self, lval: Any, operator: str, rval: Any) -> bool:
        """Tag lists: ``is`` / ``is_not`` None (no tags, some tags; an empty list has none), and the
        tag relations of TAG_RELATIONS, on whole tag names, ignoring case."""
        if operator == "name_id":
            raise FilterError("the name_id relation on tag_list fields names Tag entities by id, which this "
                              "stand-in site does not keep (it keeps tag names)")
        if operator not in TAG_RELATIONS:
            return self._unsupported(operator, "tag_list")
        if operator in ("is", "is_not") and rval is None:
            return not lval if operator == "is" else bool(lval)
        if not isinstance(rval, str):
            raise FilterError(f"the {operator} relation on tag_list fields takes a tag name, got {rval!r:.60}")
        text_operator, negated = TAG_RELATIONS[operator]
        names = [t.get("name") if isinstance(t, dict) else t for t in lval or []]
        found = any(self._compare_text(name if isinstance(name, str) else None, text_operator, rval)
                    for name in names)
        return not found if negated else found

    def _compare_text(self, lval: Any, operator: str, rval: Any) -> bool:
        if operator in ("in", "not_in"):
            values = rval if isinstance(rval, list) else [rval]
            found = _lower(lval) in [_lower(v) for v in values]
            return found if operator == "in" else not found
        if operator in ("contains", "not_contains", "starts_with", "ends_with"):
            if not isinstance(rval, str):
                raise FilterError(f"the {operator} relation needs a string value")
            if lval is None:
                return operator == "not_contains"
            lv, rv = lval.lower(), rval.lower()
            return {"contains": rv in lv, "not_contains": rv not in lv,
                    "starts_with": lv.startswith(rv), "ends_with": lv.endswith(rv)}[operator]
        if operator == "is":
            return _lower(lval) == _lower(rval)
        if operator == "is_not":
            return _lower(lval) != _lower(rval)
        if operator in ("less_than", "greater_than", "between", "not_between"):
            return self._compare_ordered(_lower(lval), operator,
                                         [_lower(v) for v in rval] if isinstance(rval, list) else _lower(rval))
        raise FilterError(f"the {operator} relation is not supported on text fields")

    def _compare_ordered(self, lval: Any, operator: str, rval: Any) -> bool:
        """Numbers and dates. NULL never matches a comparison; it matches is_not and not_in."""
        if operator == "is":
            return lval == rval
        if operator == "is_not":
            return lval != rval
        if operator in ("in", "not_in"):
            values = rval if isinstance(rval, list) else [rval]
            return (lval in values) if operator == "in" else (lval not in values)
        if operator in ("less_than", "greater_than"):
            if lval is None or rval is None:
                return False
            try:
                return lval < rval if operator == "less_than" else lval > rval
            except TypeError:
                raise FilterError(f"the {operator} relation cannot compare with {rval!r}") from None
        if operator in ("between", "not_between"):
            if not isinstance(rval, list) or len(rval) != 2:
                raise FilterError(f"the {operator} relation needs two values")
            low, high = rval
            if lval is None or low is None or high is None:
                return False
            try:
                inside = low <= lval <= high
            except TypeError:
                raise FilterError(f"the {operator} relation cannot compare with {rval!r}") from None
            return inside if operator == "between" else not inside
        raise FilterError(f"the {operator} relation is not supported on this field type")

    def _relative_bounds(self, operator: str, rval: Any) -> tuple[dt.datetime, dt.datetime]:
        now = self.clock().astimezone(self.tz)
        if operator.startswith("in_calendar_"):
            unit = operator[len("in_calendar_"):]
            if unit not in ("day", "week", "month", "year") or isinstance(rval, bool) or not isinstance(rval, int):
                raise FilterError(f"{operator} needs an integer offset")
            return calendar_range(now, unit, rval)
        if not isinstance(rval, list) or len(rval) != 2 or isinstance(rval[0], bool) \
                or not isinstance(rval[0], int) or rval[1] not in RELATIVE_UNITS:
            raise FilterError(f"{operator} needs [count, 'HOUR'|'DAY'|'WEEK'|'MONTH'|'YEAR']")
        count, unit = rval
        if operator.endswith("in_last"):
            return shift(now, -count, unit), now
        return now, shift(now, count, unit)

    def _compare_relative(self, field_type: str, lval: Any, operator: str, rval: Any) -> bool:
        start, end = self._relative_bounds(operator, rval)
        negated = operator.startswith("not_")
        if lval is None:
            return False
        if field_type == "date":
            day = dt.date.fromisoformat(lval)
            if operator.startswith("in_calendar_"):
                inside = start.date() <= day < end.date()
            else:
                # Dates count whole days: today is in the last and in the next N days.
                inside = start.date() <= day <= end.date()
        else:
            moment = lval.astimezone(self.tz)
            inside = start <= moment < end if operator.startswith("in_calendar_") else start <= moment <= end
        return not inside if negated else inside

    def _compare_entity(self, lval: Any, operator: str, rval: Any) -> bool:
        def same(a, b):
            return a is not None and b is not None and a["type"] == b["type"] and a["id"] == b["id"]

        if operator in ("is", "is_not"):
            match = (lval is None and rval is None) or same(lval, rval)
            return match if operator == "is" else not match
        if operator in ("in", "not_in"):
            values = rval if isinstance(rval, list) else [rval]
            match = any(same(lval, v) or (lval is None and v is None) for v in values)
            return match if operator == "in" else not match
        if operator in ("type_is", "type_is_not"):
            match = lval is not None and lval["type"] == rval
            return match if operator == "type_is" else not match
        if operator in NAME_RELATIONS:
            name = self.link_name(lval) if lval is not None else None
            return self._compare_text(name, NAME_RELATIONS[operator], rval)
        return self._unsupported(operator, "entity")

    def _compare_multi(self, links: list, operator: str, rval: Any) -> bool:
        negated = {"is_not": "is", "not_in": "in", "type_is_not": "type_is", "name_not_contains": "name_contains"}
        if operator in negated:
            return not self._compare_multi(links, negated[operator], rval)
        if operator == "is" and rval is None:
            return not links
        if operator in ("is", "in", "type_is") or operator in NAME_RELATIONS:
            return any(self._compare_entity(link, operator, rval) for link in links)
        return self._unsupported(operator, "multi_entity")

    def _unsupported(self, operator: str, field_type: str) -> bool:
        raise FilterError(f"the {operator} relation is not supported on {field_type} fields")

    # --- find ------------------------------------------------------------------------------------

    def candidates(self, entity_type: str, filters: list, filter_operator: str | None) -> list[dict]:
        """Rows that may match, in id order: narrowed by top-level id conditions when all must hold."""
        ids = self.ids(entity_type)
        table = self.table(entity_type)
        low, high = 0, len(ids)
        if filter_operator in (None, "all"):
            for f in filters:
                if not isinstance(f, list) or len(f) != 3 or f[0] != "id":
                    continue
                _, op, value = f
                if op == "is" and isinstance(value, int):
                    return [table[value]] if value in table else []
                if op == "in" and isinstance(value, list):
                    return [table[i] for i in sorted({v for v in value if isinstance(v, int)}) if i in table]
                if op == "greater_than" and isinstance(value, int):
                    low = max(low, bisect.bisect_right(ids, value))
                elif op == "less_than" and isinstance(value, int):
                    high = min(high, bisect.bisect_left(ids, value))
                elif op == "between" and isinstance(value, list) and len(value) == 2 and \
                        all(isinstance(v, int) for v in value):
                    low = max(low, bisect.bisect_left(ids, value[0]))
                    high = min(high, bisect.bisect_right(ids, value[1]))
        return [table[i] for i in ids[low:high]]

    def matching(self, entity_type: str, filters: list, filter_operator: str | None, retired_only: bool,
                 stop_after: int | None = None, extra=None) -> list[dict]:
        """Rows matching the filters, in id order (mockgun evaluates each condition).

        ``stop_after``: stop once this many rows matched (when the caller orders by id).
        ``extra``: a further predicate on the row (archived projects, late event-log rows).
        """
        self.finds += 1
        out = []
        rearranged = self.rearrange(filters)
        for row in self.candidates(entity_type, rearranged, filter_operator):
            if bool(row["__retired"]) != bool(retired_only):
                continue
            if extra is not None and not extra(row):
                continue
            if filter_operator == "any":
                ok = any(self.filter_matches(entity_type, row, f, retired_only) for f in rearranged) \
                    if rearranged else True
            else:
                ok = all(self.filter_matches(entity_type, row, f, retired_only) for f in rearranged)
            if ok:
                out.append(row)
                if stop_after is not None and len(out) >= stop_after:
                    break
        return out

    def group_matches(self, entity_type: str, row: dict, filters: list, filter_operator: str | None,
                      retired_only: bool) -> bool:
        # Nested groups: mockgun's own version also re-checks retirement, which the top level did.
        filters = self.rearrange(filters)
        if filter_operator in ("all", None):
            return all(self.filter_matches(entity_type, row, f, retired_only) for f in filters)
        if filter_operator == "any":
            return any(self.filter_matches(entity_type, row, f, retired_only) for f in filters)
        raise FilterError(f"{filter_operator} is not a valid logical operator")
