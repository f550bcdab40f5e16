"""Fields stored in one column of their entity's table: text, numbers, booleans, dates, JSON."""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

import sqlalchemy as sa

from sgcache import wire
from sgcache.fields import names
from sgcache.fields.base import ColumnField, register
from sgcache.fields.types import UTCDateTime, json_type


class ScalarField(ColumnField):
    """One column named after the field."""

    sql_type: ClassVar[Any] = sa.Text

    def __init__(self, type_name, field):
        super().__init__(type_name, field)
        self.column = names.fit(self.name)
        # Text and numbers come out of their column as the wire has them; a kind that converts
        # (dates, checkboxes, JSON) overrides one of the two methods, and is read through them.
        self.read_as_is = (type(self).from_db is ScalarField.from_db
                           and type(self).from_db_value is ScalarField.from_db_value)

    def columns(self) -> list[sa.Column]:
        return [sa.Column(self.column, self.sql_type())]

    def to_db(self, value: Any) -> dict[str, Any]:
        return {self.column: None if value is None else self.to_db_value(value)}

    def put(self, row: dict[str, Any], value: Any) -> None:
        row[self.column] = None if value is None else self.to_db_value(value)

    def from_db(self, row: Any) -> Any:
        value = row[self.column]
        return None if value is None else self.from_db_value(value)

    def to_db_value(self, value: Any) -> Any:
        return value

    def from_db_value(self, value: Any) -> Any:
        return value


@register("text", "color", "entity_type", "footage", "list", "status_list", "url_template", "uuid")
class TextField(ScalarField):
    """Strings. footage is feet-frames text (``12-04``); color is ``R,G,B`` or a keyword."""

    storage_key = "TextField"
    family = "text"

    sql_type = sa.Text
    stored_as_is = str

    def to_db_value(self, value: Any) -> str:
        if type(value) is str:
            return value
        if isinstance(value, dt.datetime):
            # shotgun_api3 turns any text of exactly the YYYY-MM-DDTHH:MM:SSZ shape into a
            # datetime, text fields included; that shape is the only one it converts, so writing
            # it back gives the original text exactly.
            return wire.format_datetime(value)
        if not isinstance(value, str):
            raise self.error(value, "a string")
        return value


@register("number", "duration", "percent", "timecode")
class IntegerField(ScalarField):
    """Whole numbers: duration in minutes, timecode in milliseconds, percent as 0-100."""

    storage_key = "IntegerField"
    family = "number"

    sql_type = sa.BigInteger
    stored_as_is = int

    def to_db_value(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise self.error(value, "an integer")
        return value


@register("float", "currency")
class FloatField(ScalarField):
    storage_key = "FloatField"
    family = "number"
    sql_type = sa.Double
    stored_as_is = float

    def to_db_value(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(value, "a number")
        return float(value)


@register("checkbox")
class CheckboxField(ScalarField):
    storage_key = "CheckboxField"
    family = "checkbox"
    sql_type = sa.Boolean
    stored_as_is = bool

    def to_db_value(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.error(value, "true or false")
        return value

    def from_db_value(self, value: Any) -> bool:
        return bool(value)


@register("date")
class DateField(ScalarField):
    """Wire ``YYYY-MM-DD``; stored as a date."""

    storage_key = "DateField"
    family = "date"

    sql_type = sa.Date
    parse_text = staticmethod(wire.parse_date)

    def to_db_value(self, value: Any) -> dt.date:
        if isinstance(value, dt.datetime):
            raise self.error(value, "a date, not a date and time")
        if isinstance(value, dt.date):
            return value
        parsed = wire.parse_date(value) if isinstance(value, str) else None
        if parsed is not None:
            return parsed
        raise self.error(value, "a YYYY-MM-DD date")

    def from_db_value(self, value: Any) -> str:
        if isinstance(value, str):  # SQLite may hand back the stored text
            return value
        return value.isoformat()


@register("date_time")
class DateTimeField(ScalarField):
    """Wire ``YYYY-MM-DDTHH:MM:SSZ`` in UTC; stored as a timestamp with time zone.

    A datetime object with a time zone is converted to UTC; a naive one is taken as UTC.
    """

    storage_key = "DateTimeField"
    family = "date_time"

    sql_type = UTCDateTime
    parse_text = staticmethod(wire.parse_datetime)

    def to_db_value(self, value: Any) -> dt.datetime:
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                return value.replace(tzinfo=dt.UTC)
            return value.astimezone(dt.UTC)
        parsed = wire.parse_datetime(value) if isinstance(value, str) else None
        if parsed is not None:
            return parsed
        raise self.error(value, "a YYYY-MM-DDTHH:MM:SSZ date and time")

    def from_db_value(self, value: dt.datetime) -> str:
        return wire.format_datetime(value)


class JSONField(ScalarField):
    """Stored as JSON (jsonb on PostgreSQL) exactly as the wire carries it."""

    sql_type = staticmethod(json_type)
    expected: ClassVar[tuple[type, ...]] = (dict, list, str, int, float, bool)
    expected_text: ClassVar[str] = "a JSON value"

    def to_db_value(self, value: Any) -> Any:
        if not isinstance(value, self.expected):
            raise self.error(value, self.expected_text)
        return value


@register("url")
class UrlField(JSONField):
    """File/link fields: ``{"url", "name", "content_type", "link_type", ...}`` dicts. No family:
    the site refuses every filter on them (the client's operator table), so filters pass through."""

    storage_key = "UrlField"
    expected = (dict,)
    expected_text = "a mapping (url, name, link_type, ...)"


@register("image")
class ImageField(JSONField):
    """Thumbnail URL strings (or the site's placeholder dicts)."""

    storage_key = "ImageField"
    family = "presence"
    expected = (str, dict)
    expected_text = "a URL string"


@register("tag_list")
class TagListField(JSONField):
    """A list of tag names."""

    storage_key = "TagListField"
    family = "tag_list"
    expected = (list,)
    expected_text = "a list of tag names"

    def to_db_value(self, value: Any) -> Any:
        value = super().to_db_value(value)
        if not all(isinstance(v, (str, dict)) for v in value):
            raise self.error(value, self.expected_text)
        return value


@register("serializable")
class SerializableField(JSONField):
    """Any JSON structure (EventLogEntry.meta, Task.splits, ...). No family, as for url fields: the
    site refuses every filter on them."""

    storage_key = "SerializableField"
