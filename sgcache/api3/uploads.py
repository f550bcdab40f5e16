"""Which entity an upload changes, read from the start of its form, so it can be read back.

``shotgun_api3`` posts uploads (``upload``, ``upload_thumbnail``, ``upload_filmstrip_thumbnail``)
as multipart forms whose text fields (``entity_type``, ``entity_id``, ``field_name``...) come
before the file. The proxy reads only the start of the body, up to the first file part or
:data:`SNIFF_BYTES`, then sends that start and the rest of the stream to the site unchanged.
"""

from __future__ import annotations

import re
from typing import Any

#: Bytes of an upload's body read before it is sent on (the text fields fit in far less).
SNIFF_BYTES = 64 * 1024
#: The upload routes that change one entity named in their form.
READ_BACK_ROUTES = ("upload_file", "publish_thumbnail")

_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.I)
_NAME = re.compile(rb'name="([^"]*)"', re.I)


def boundary(content_type: str | None) -> bytes | None:
    found = _BOUNDARY.search(content_type or "")
    return found.group(1).encode("latin-1") if found else None


def text_fields(prefix: bytes, content_type: str | None) -> dict[str, str]:
    """The text fields of a multipart body found in ``prefix``, before the first file part."""
    mark = boundary(content_type)
    if mark is None:
        return {}
    out: dict[str, str] = {}
    for part in prefix.split(b"--" + mark)[1:]:
        head, sep, value = part.partition(b"\r\n\r\n")
        if not sep:
            break  # cut off by the prefix's end
        if b"filename=" in head:
            break  # the file: every text field came before it
        name = _NAME.search(head)
        if name is None or not value.endswith(b"\r\n"):
            break
        out[name.group(1).decode("utf-8", "replace")] = value[:-2].decode("utf-8", "replace")
    return out


def upload_target(route: str, fields: dict[str, str]) -> dict[str, set[int]] | None:
    """Entity type -> ids the upload changes (None: nothing sgcache can tell)."""
    if route not in READ_BACK_ROUTES:
        return None
    entity_type, entity_id = fields.get("entity_type"), fields.get("entity_id", "")
    if not entity_type or not entity_id.isdigit():
        return None
    return {entity_type: {int(entity_id)}}


def confirmed(status: int, body: bytes) -> bool:
    """Did the site accept the upload? It answers ``1:<id>`` on success (``0:<message>`` when not)."""
    return status == 200 and body.lstrip().startswith(b"1")


class PrefixedStream:
    """The bytes read so far, then the rest of the stream, for a streamed request body."""

    def __init__(self, prefix: bytes, rest: Any):
        self.prefix = prefix
        self.rest = rest

    def read(self, size: int = -1) -> bytes:
        if self.prefix:
            if size is None or size < 0:
                out, self.prefix = self.prefix + self.rest.read(), b""
                return out
            out, self.prefix = self.prefix[:size], self.prefix[size:]
            return out
        return self.rest.read(size) if size is not None and size >= 0 else self.rest.read()
