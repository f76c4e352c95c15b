"""Weight names in another format, as a short table of name pairs read in both directions.

Each row pairs a name in the other format with ours; `{layer}` stands for a layer number and `{kind}` for
weight or bias, the same on both sides. The table is written once and read both ways, so the two directions
cannot drift apart.
"""
from __future__ import annotations

import re

PLACEHOLDERS = {"layer": r"\d+", "kind": "weight|bias"}


def _compiled(template: str) -> re.Pattern:
    parts = re.split(r"\{(\w+)\}", template)
    # even parts are literal text, odd parts placeholder names
    return re.compile("".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>{PLACEHOLDERS[p]})"
                              for i, p in enumerate(parts)))


class NameTable:
    """(their name, our name) templates; `ours(theirs)` and `theirs(ours)` map one name, None when no row fits."""

    def __init__(self, rows: list[tuple[str, str]]):
        for side in (0, 1):
            templates = [row[side] for row in rows]
            if len(set(templates)) != len(templates):
                raise ValueError(f"a name appears twice in the table: {templates}")
        self.rows = rows
        self._theirs = [(_compiled(theirs), ours) for theirs, ours in rows]
        self._ours = [(_compiled(ours), theirs) for theirs, ours in rows]

    def ours(self, name: str) -> str | None:
        return _rename(name, self._theirs)

    def theirs(self, name: str) -> str | None:
        return _rename(name, self._ours)


def _rename(name: str, table: list[tuple[re.Pattern, str]]) -> str | None:
    for pattern, template in table:
        if match := pattern.fullmatch(name):
            return template.format(**match.groupdict())
    return None


def short_list(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
