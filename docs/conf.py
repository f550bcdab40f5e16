"""Sphinx configuration for the sgcache documentation.

Build with: sphinx-build -W -b html docs docs/_build/html (or ``make docs``).
Needs Sphinx and sgcache's own dependencies (``pip install -e '.[docs]'``): the settings reference
in configuration.rst is made from ``sgcache.config`` by the extension in ``_ext/``.
"""

import sys
from pathlib import Path

_docs = Path(__file__).resolve().parent
# This checkout's sgcache is the one documented, even if another is installed; then the extensions.
sys.path[:0] = [str(_docs.parent), str(_docs / "_ext")]

from sgcache import __version__  # noqa: E402  (needs the path above)

project = "sgcache"
author = "sgcache contributors"
copyright = "sgcache contributors"
release = version = __version__

extensions = ["sgcache_settings"]
root_doc = "index"
exclude_patterns = ["_build"]
# Literal blocks without a language are shown as plain text (no guessing, no lexer warnings).
highlight_language = "none"

html_theme = "alabaster"
html_title = f"sgcache {release}"
