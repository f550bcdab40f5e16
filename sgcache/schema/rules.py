"""Keep a subset of a schema with rules ``[+|-]TypeGlob[.fieldGlob][:data_type]``; first match wins.

Each field of each type is tested against the rules in order. The first rule whose type glob
matches the type, whose field glob (``*`` when left out) matches the field and whose data type
(any when left out) equals the field's, decides: ``+`` (or no sign) keeps it, ``-`` drops it. A
field no rule matches is dropped. A type is kept when at least one of its fields is, and a kept
type always keeps its ``id``. Globs are shell style (``*``, ``?``, ``[abc]``, ``[0-9]``, ``[!x]``) and
case sensitive.
``#`` starts a comment; blank lines are ignored.
"""

from __future__ import annotations

import copy
import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path

from sgcache.errors import SchemaError
from sgcache.schema.model import Schema

_RULE = re.compile(r"^(?P<sign>[+-]?)(?P<type>[A-Za-z0-9*?\[\]!-]+)(?:\.(?P<field>[a-z0-9_*?\[\]!-]+))?"
                   r"(?::(?P<data_type>[a-z_]+))?$")


@dataclass(frozen=True)
class Rule:
    keep: bool
    type_glob: str
    field_glob: str | None
    data_type: str | None
    line: int = 0
    text: str = ""

    def matches(self, type_name: str, field_name: str, data_type: str) -> bool:
        if not fnmatch.fnmatchcase(type_name, self.type_glob):
            return False
        if self.field_glob is not None and not fnmatch.fnmatchcase(field_name, self.field_glob):
            return False
        return self.data_type is None or self.data_type == data_type


def parse_rules(text: str, where: str = "rules") -> list[Rule]:
    rules = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = _RULE.match(line)
        if not m:
            raise SchemaError(f"{where}:{number}: cannot read rule {line!r} "
                              "(expected [+|-]TypeGlob[.fieldGlob][:data_type])")
        rules.append(Rule(keep=m["sign"] != "-", type_glob=m["type"], field_glob=m["field"],
                          data_type=m["data_type"], line=number, text=line))
    return rules


def load_rules(path: str | Path) -> list[Rule]:
    path = Path(path)
    try:
        return parse_rules(path.read_text(encoding="utf-8"), where=str(path))
    except FileNotFoundError:
        raise SchemaError(f"{path}: rules file not found") from None


def decide(rules: list[Rule], type_name: str, field_name: str, data_type: str) -> Rule | None:
    """The first rule matching this field, or None."""
    return next((r for r in rules if r.matches(type_name, field_name, data_type)), None)


def filter_schema(schema: Schema, rules: list[Rule], header: str = "") -> Schema:
    """A new schema holding the types and fields the rules keep (the input is left alone)."""
    out = Schema(header=header or schema.header)
    for t in schema:
        kept = {}
        for f in t.fields.values():
            rule = decide(rules, t.name, f.name, f.data_type)
            if rule is not None and rule.keep:
                kept[f.name] = copy.deepcopy(f)
        if not kept:
            continue
        if "id" not in kept:
            kept["id"] = copy.deepcopy(t.fields["id"])
        new = copy.deepcopy(t)
        new.fields = dict(sorted(kept.items()))
        if new.identifier not in new.fields:
            new.identifier = None
        out.types[t.name] = new
    return out
