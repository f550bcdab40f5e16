"""The ``.. sgcache-settings::`` directive: the settings reference table, made from sgcache.config.

Every row comes from the config model (key, type, default, environment variable, description), so
the table cannot drift from the code. :func:`table_lines` is plain Python, for the tests.
"""

from __future__ import annotations

import sgcache.config
import sgcache.config.checks
import sgcache.config.reference
import sgcache.config.sections
from sgcache.config import env_name, iter_settings, setting_default_doc, setting_doc, setting_type_doc

HEADER = ("Key", "Type", "Default", "Environment variable", "Description")
WIDTHS = "16 14 16 22 32"


def table_lines() -> list[str]:
    """The reference as a reStructuredText ``list-table``, one row per setting in declaration order."""
    lines = [".. list-table::", "   :header-rows: 1", f"   :widths: {WIDTHS}", ""]
    rows = [HEADER] + [(f"``{section}.{key}``", setting_type_doc(f, hint), setting_default_doc(f),
                        f"``{env_name(section, key)}``", setting_doc(f))
                       for section, key, f, hint in iter_settings()]
    for row in rows:
        for i, cell in enumerate(row):
            lines.append(f"   {'*' if i == 0 else ' '} - {cell}")
    return lines


def setup(app):
    # docutils and Sphinx are imported here rather than at the top so that the tests, which run
    # without the docs extras installed, can import this module and call table_lines().
    from docutils import nodes
    from docutils.statemachine import StringList
    from sphinx.util.docutils import SphinxDirective

    class SettingsDirective(SphinxDirective):
        """Renders :func:`table_lines` in place; takes no arguments or content."""

        def run(self) -> list[nodes.Node]:
            for module in (sgcache.config.sections, sgcache.config.checks, sgcache.config.reference):
                self.env.note_dependency(module.__file__)
            source = f"{sgcache.config.__name__} (sgcache-settings)"
            content = StringList(table_lines(), source=source)
            holder = nodes.Element()
            self.state.nested_parse(content, self.content_offset, holder)
            return holder.children

    app.add_directive("sgcache-settings", SettingsDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
