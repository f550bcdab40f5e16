"""Exceptions shared across sgcache; each carries a message fit for an operator or a client."""


class SgcacheError(Exception):
    """Base class for expected failures: shown as one line, never as a traceback."""

    exit_code = 1


class SiteFailure(SgcacheError):
    """The site gave no usable answer: it could not be reached, timed out, refused sgcache's own
    credentials, or the process is stopping while it waits on it. The one root of every "the site
    failed" error, whichever part met it (:class:`sgcache.upstream.SiteUnavailable` for the proxy,
    :class:`sgcache.sync.remote.SiteError` for the sync engine)."""


class ConfigError(SgcacheError):
    """The configuration is invalid: names the key and where it came from."""

    exit_code = 2


class SchemaError(SgcacheError):
    """The schema file or a schema operation is invalid."""

    exit_code = 2


class UnknownEntityType(SgcacheError):
    """An entity type that the cached schema does not hold."""

    def __init__(self, entity_type: str):
        super().__init__(f"entity type {entity_type!r} is not in the cached schema")
        self.entity_type = entity_type


class ConversionError(SgcacheError):
    """A value could not be converted for a field."""
