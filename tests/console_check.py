"""Renders a recipe's console headline as ``safegrpo demo`` prints it at COLUMNS=80 and checks
that it fits: no cut cell ("…"), no line over 80 columns, and table rows on one line each."""

from __future__ import annotations

import io
import re

from rich.console import Console


def render_at_80(renderable, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "80")  # what the CLI's Console() reads
    out = io.StringIO()
    Console(file=out, color_system=None).print(renderable)
    text = out.getvalue()
    assert "…" not in text, text
    assert max(len(line) for line in text.splitlines()) <= 80, text
    return text


def has_row(text: str, *cells: str) -> bool:
    """Whether one line holds exactly ``cells``, in order, separated by blanks."""
    pattern = r"^\s*" + r"\s+".join(re.escape(c) for c in cells) + r"\s*$"
    return re.search(pattern, text, re.M) is not None


def f3(value: float) -> str:
    return f"{value:.3f}"
