"""Sphinx configuration for the sgcache documentation.

Build with: sphinx-build -W -b html docs docs/_build/html
Needs nothing beyond Sphinx itself (``pip install -e '.[docs]'``).
"""

import re
from pathlib import Path

project = "sgcache"
author = "sgcache contributors"
copyright = "sgcache contributors"

# The version is read from the package without importing it (no dependencies needed).
_init = Path(__file__).resolve().parent.parent / "sgcache" / "__init__.py"
_match = re.search(r'^__version__\s*=\s*"([^"]+)"', _init.read_text(encoding="utf-8"), re.MULTILINE)
release = _match.group(1) if _match else "unknown"
version = release

extensions = []
root_doc = "index"
exclude_patterns = ["_build"]
# Literal blocks without a language are shown as plain text (no guessing, no lexer warnings).
highlight_language = "none"

html_theme = "alabaster"
html_title = f"sgcache {release}"
