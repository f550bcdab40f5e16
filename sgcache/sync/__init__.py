"""Keeping the cache in step with the site: the scanner (full and incremental imports) and the
event-log watcher, both writing through :class:`sgcache.store.writer.Writer`."""
