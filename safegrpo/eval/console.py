"""The console headline a recipe prints at the end of a run: a few short columns that fit 80
terminal columns. Every cell stays on one line (no wrapping, no cut cells); headers may take two
lines. The full tables stay in the run folder (``eval_table.md``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def cell(value: Any) -> str:
    """A float with 3 decimals, None as "-", anything else as text."""
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def compact_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], labels: int = 1):
    """A borderless rich Table: the first ``labels`` columns left-aligned text, the others
    right-aligned values (``cell``)."""
    from rich.table import Table

    table = Table(box=None, pad_edge=False, show_edge=False)
    for i, head in enumerate(headers):
        table.add_column(head, justify="left" if i < labels else "right", no_wrap=True)
    for row in rows:
        table.add_row(*(cell(v) for v in row))
    return table


def headline(title: str, table, *notes: str | None):
    """A blank line, ``title`` (bold), the table, then each non-empty note as a paragraph."""
    from rich.console import Group
    from rich.text import Text

    return Group(Text(""), Text(title, style="bold"), table,
                 *(Text(n.strip()) for n in notes if n and n.strip()))
