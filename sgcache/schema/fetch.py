"""Get the full schema from a site through shotgun_api3, or from its answers saved as JSON."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from sgcache import __version__
from sgcache.config import SiteConfig
from sgcache.errors import SchemaError, SgcacheError
from sgcache.schema.model import Schema
from sgcache.schema.site import schema_from_site


def _today() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")


def from_site(site: SiteConfig) -> Schema:
    """Ask the site for schema_read and schema_entity_read (as the configured script)."""
    import shotgun_api3

    try:
        sg = shotgun_api3.Shotgun(site.base_url, script_name=site.script_name,
                                  api_key=site.api_key.reveal() if site.api_key else None,
                                  connect=False)
        sg.config.timeout_secs = site.timeout
        fields = sg.schema_read()
        entities = sg.schema_entity_read()
    except shotgun_api3.AuthenticationFault:
        raise SgcacheError(f"{site.base_url}: the site refused script {site.script_name!r} "
                           "(check site.script_name and site.api_key)") from None
    except (shotgun_api3.ShotgunError, OSError) as e:
        # Messages from the client never contain the key; keep the first line only.
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SgcacheError(f"{site.base_url}: cannot read the schema: {reason}") from None
    header = (f"Full site schema, made by `sgcache schema dump` (sgcache {__version__}) from "
              f"{site.base_url} on {_today()}.")
    return schema_from_site(fields, entities, header=header)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise SchemaError(f"{path}: not valid JSON (line {e.lineno}): {e.msg}") from None
    if not isinstance(data, dict):
        raise SchemaError(f"{path}: expected a JSON object keyed by entity type")
    return data


def from_json_files(fields_path: Path, entities_path: Path | None = None) -> Schema:
    """Convert saved ``schema_read`` (and optionally ``schema_entity_read``) answers."""
    fields = _read_json(fields_path)
    entities = _read_json(entities_path) if entities_path else None
    sources = fields_path.name + (f" and {entities_path.name}" if entities_path else "")
    header = (f"Full site schema, made by `sgcache schema dump --from-json` (sgcache {__version__}) "
              f"from the saved schema_read answer {sources}.")
    return schema_from_site(fields, entities, header=header)
