"""Event plugins run on sgcache's watcher (``sgcache triggers``): see docs/triggers.rst."""
