"""The cache's schema following the site's (``schema.follow: follow``).

On each schema change the site announces, the watcher reads the site's schema again, keeps what
``schema.rules`` selects, migrates the cache to it and records it in the cache database, where
every sgcache process takes it from without a restart. The parts, one job each:
:mod:`~sgcache.schema.follow.plan` (what changed), :mod:`~sgcache.schema.follow.record` (where the
followed schema lives, and which schema a process uses), :mod:`~sgcache.schema.follow.lock` (the
lock that keeps writes and a migration apart), :mod:`~sgcache.schema.follow.held` (a sync
process's hold on its schema) and :mod:`~sgcache.schema.follow.follower` (the change itself).
"""
