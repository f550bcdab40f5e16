"""Uploaded files of the stand-in site: each kept on disk as an Attachment and linked from its entity
(a file field, or the thumbnail ``image``), as ``upload_file`` and ``publish_thumbnail`` do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sgcache.mocksite.accounts import Caller
from sgcache.mocksite.faults import Fault
from sgcache.mocksite.thumbnails import Thumbnails
from sgcache.mocksite.writes import Writer


@dataclass
class StoredFile:
    name: str
    content_type: str
    path: str


@dataclass
class Upload:
    """One uploaded file and where it goes."""

    entity_type: str
    entity_id: int
    field_name: str | None
    display_name: str
    content_type: str
    content: bytes
    thumbnail: bool
    base_url: str


class FileStore:
    """The files of one site, in ``file_dir`` (None: the site takes no uploads); ``thumbnails`` is told
    of each thumbnail upload (its placeholder phase)."""

    def __init__(self, writer: Writer, file_dir: str | Path | None, thumbnails: Thumbnails | None = None):
        self.writer = writer
        self.thumbnails = thumbnails
        self.schema = writer.schema
        self.emu = writer.emu
        self.file_dir = Path(file_dir) if file_dir else None
        self.files: dict[int, StoredFile] = {}

    def store(self, caller: Caller, upload: Upload) -> int:
        """Keep an uploaded file, as an Attachment, and link it from the entity; return its id."""
        if upload.entity_type not in self.schema:
            raise Fault(f"upload: entity type {upload.entity_type!r} doesn't exist")
        self.writer.existing("upload", upload.entity_type, upload.entity_id)
        self.writer.access.check_write(caller, "upload", upload.entity_type, upload.entity_id)
        if self.file_dir is None:
            raise Fault("upload: this site has no folder for files (start it with a state file or file dir)")
        self.file_dir.mkdir(parents=True, exist_ok=True)
        return self.writer.ledger.transaction(lambda: self._attach(caller, upload))

    def _new_attachment(self, caller: Caller, upload: Upload) -> int:
        if "Attachment" not in self.schema:
            return max(self.files, default=0) + 1
        data = {}
        if "description" in self.schema["Attachment"].fields:
            data["description"] = upload.display_name
        return self.writer.insert("Attachment", data, caller, emit=caller.generate_events)

    def _attach(self, caller: Caller, upload: Upload) -> int:
        attachment_id = self._new_attachment(caller, upload)
        path = self.file_dir / f"attachment-{attachment_id}"
        path.write_bytes(upload.content)
        self.files[attachment_id] = StoredFile(upload.display_name, upload.content_type, str(path))
        url = f"{upload.base_url.rstrip('/')}/file_serve/attachment/{attachment_id}"
        file_value = {"url": url, "name": upload.display_name, "content_type": upload.content_type,
                      "link_type": "upload", "type": "Attachment", "id": attachment_id}
        fields = self.schema[upload.entity_type].fields
        value: Any
        if upload.thumbnail:
            target = upload.field_name if upload.field_name in fields else "image"
            value = url
        else:
            target, value = upload.field_name, file_value
        if "Attachment" in self.schema and "this_file" in self.schema["Attachment"].fields:
            self.emu.table("Attachment")[attachment_id]["this_file"] = dict(file_value)
        if upload.thumbnail and self.thumbnails is not None:
            # Processed from now on: the field (and the events of this upload) read as the placeholder.
            self.thumbnails.uploaded(url)
        if upload.thumbnail and target in fields and caller.generate_events:
            # A hosted site first logs a transient image (the upload being processed).
            row = self.emu.table(upload.entity_type)[upload.entity_id]
            self.writer.events.attribute_change(caller, upload.entity_type, row, target, row.get(target), url,
                                                extra={"is_transient": True})
        if target and target in fields:
            self.writer.update(caller, {"type": upload.entity_type, "id": upload.entity_id,
                                        "fields": [{"field_name": target, "value": value}]})
        return attachment_id
