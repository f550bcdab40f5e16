"""A local stand-in Shotgun site (``sgcache mock-site``): the upstream for tests, the demo and benchmarks.

It speaks the wire protocol of a hosted site (``POST /api3/json``, the file routes) and lets
shotgun_api3's own emulator, ``shotgun_api3.lib.mockgun``, store entities and evaluate filters,
so the cache is checked against semantics written by the client's authors. Where mockgun
deviates from a real site or lacks something, a thin layer corrects it. Every correction:

Emulator (:mod:`sgcache.mocksite.emulator`, a mockgun subclass through the adapter
:mod:`sgcache.mocksite.store`, the only module that knows mockgun's internals)
 1. Built from the schema file instead of mockgun's pickled schema; no "Hello_Mockgun_World" event.
 2. Filters arrive in the wire format (nested ``logical_operator`` groups to any depth) and are
    translated to mockgun's list format; mockgun's own dict path dropped nested groups.
 3. Entity ``in`` / ``not_in`` with several values (mockgun required a match with all of them).
 4. ``not_in`` on numbers, dates and entities; numeric relations on duration, percent, timecode,
    currency (mockgun knew only number and float); text relations on color, uuid, footage,
    url_template and entity_type.
 5. NULL: never matches less_than / greater_than / between / not_between or the relative date
    relations; matches is_not, not_in, not_contains and the other negations (mockgun raised
    TypeError comparing None).
 6. Relative dates: in_last / not_in_last / in_next / not_in_next (HOUR, DAY, WEEK, MONTH, YEAR)
    and in_calendar_day / week / month / year, in the site's time zone (``--timezone``, default
    UTC; weeks start on Sunday; date fields count whole days).
 7. name_is / name_contains / ... are case-insensitive and use the linked entity's identifier
    field (mockgun compared ``name`` or ``code`` case-sensitively) and work on multi-entity fields.
 8. Multi-entity ``in``, ``type_is``, ``type_is_not`` and ``name_*``.
 9. Links are never written into stored rows by filtering (mockgun stored ``name`` into the links
    a filter touched, so answers depended on earlier queries): values are read as copies.
10. A deep path through a link of another type, or to a retired entity, is None, not an error.
11. Retired entities are left out of multi-entity values, and a link to a retired entity reads
    as None (so EventLogEntry.entity is null for an entity retired at read time).
12. Filters on password, serializable, url, summary and pivot fields, unknown relations and
    unknown fields are Faults with the site's kind of message.
13. Candidate rows are narrowed by top-level id conditions, and reads ordered by id stop after
    the requested page, so paging by id through 100,000 rows stays fast.

Site (:mod:`sgcache.mocksite.site` and the parts it composes)
14. Authentication: script name + key, login + password, session tokens (expiring), sudo_as_login;
    a bad credential is error_code 102. A HumanUser created or updated with ``password_proxy`` logs
    in with it; a retired or disabled one cannot. Each caller sees what its permission group shows
    (:mod:`sgcache.mocksite.permissions`: Admin, Manager, Artist, Vendor, API Admin).
15. Paging (entities_per_page, current_page; paging_info with or without counts), return_only,
    include_archived_projects (entities of archived projects are hidden when it is False); mockgun
    ignored limit and page.
16. Sorting by several keys in order (mockgun let the last key win), NULLs last ascending and
    first descending, text case-insensitively, entity fields by the linked entity's name, ties by
    id; default order by id.
17. ``name`` on every returned link, from the linked type's identifier field, computed live.
18. ids, created_at / updated_at (UTC, whole seconds), created_by / updated_by (the script's
    ApiUser, the human user, or the sudo_as_login user) maintained by the site; retiring and
    reviving move updated_at / updated_by too (so updated_at scans of retired rows see them).
19. create answers the fields set plus return_fields; update answers one dict (mockgun: a list);
    neither mutates the caller's data; values are validated for every data type (mockgun
    refused tag_list, color, uuid, image, timecode and more), list and status values against
    the field's valid values; a filter is checked once before any row, so a bad one is a Fault
    even on an empty table.
21b. Ids never go back: an id taken by a failed batch is not handed out again (mockgun used the
    highest id left plus one).
20. Reverse fields (Shot.tasks for Task.entity, Asset.shots for Shot.assets, Department.users for
    HumanUser.department, ...) kept in step, whichever side is written.
21. batch is all or nothing (mockgun applied requests up to the failing one).
22. summarize, schema_field_create / update / delete, get_session_token, info: mockgun has none.
23. The event log of EVENTLOG.md: New, in_create Changes, Changes with old/new values or
    added/removed, back-reference Changes, Retirement, Revival, DisplayColumn events (one column
    id per field), two image Changes per thumbnail (the first ``is_transient``); none for
    scripts with generate_events off; ``--late-events`` makes some writes' entries readable only
    seconds after later ones.
24. Found by the proxy's read tests (each with a regression test): ``in_calendar_*`` on a field
    that is not a date is a fault (it crashed); tag-list filters match whole tags and treat an
    empty list as empty (they compared characters); malformed sudo_as_login, secrets, paging,
    summaries, field names and mistyped comparisons are faults (they were HTTP 500s); an entity
    created with a task_template gets copies of the template's tasks.
25. Thumbnails as a hosted site serves them (:mod:`sgcache.mocksite.thumbnails`; ``thumbnail_ttl``,
    ``--thumbnail-ttl``): an image value of an uploaded file, at the top level or by a deep path,
    reads as its URL presigned afresh at each read (``X-Amz-Date``, ``X-Amz-Expires``,
    ``X-Amz-Signature``), and the file route refuses an expired or altered one (403); for
    ``thumbnail_pending`` seconds after an upload it reads as the placeholder
    ``/images/status/transient/thumbnail_pending.png``, then as the signed URL, with no event
    (mockgun returned the value as stored).
"""

from sgcache.mocksite.accounts import DEFAULT_HUMANS, DEFAULT_SCRIPTS, Human, Script
from sgcache.mocksite.faults import Fault
from sgcache.mocksite.site import MockSite

__all__ = ["DEFAULT_HUMANS", "DEFAULT_SCRIPTS", "Fault", "Human", "MockSite", "Script"]
