"""Allow ``python -m sgcache``."""

from sgcache.cli import main

main()
