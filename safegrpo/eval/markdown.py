"""The one markdown table renderer of the eval tables and the recipes' result tables."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def markdown_table(head: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """``| a | b |`` lines under a ``|---|---|`` rule; cells are ``str()``-ed, and a ``|``
    inside a cell is escaped so it cannot split the row."""
    def line(cells: Sequence[object]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(head), "|" + "---|" * len(head), *(line(r) for r in rows)])
