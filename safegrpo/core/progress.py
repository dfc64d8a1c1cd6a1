"""One progress display per long phase (SFT, GRPO, each evaluation, world building): what it
is doing, a bar, done/total, elapsed time and the estimated time left (rich.progress).

It stays quiet under ``safegrpo --quiet`` (``set_quiet``), when stderr is not a terminal (a CI
log, a pipe, a file) and when ``CI`` is set, so logs hold results, not redrawn bars. A phase that
starts while another is shown (an evaluation inside a training stage) adds a line to the same
display instead of fighting it for the terminal.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")
_state: dict[str, Any] = {"quiet": False, "progress": None, "open": 0, "console": None}


def set_quiet(quiet: bool) -> None:
    """Silence every progress display of this process (``--quiet``)."""
    _state["quiet"] = quiet


def _console():
    from rich.console import Console

    if _state["console"] is None:
        _state["console"] = Console(stderr=True)
    return _state["console"]


def shown() -> bool:
    """Whether progress is drawn: not quiet, stderr is a terminal, not under CI."""
    return not _state["quiet"] and _console().is_terminal and not os.environ.get("CI")


class Phase:
    """Handle of one phase: ``advance(n, info=...)``; a no-op when progress is not shown."""

    def __init__(self, progress: Any = None, task: Any = None):
        self.progress, self.task = progress, task

    def advance(self, n: float = 1, info: str | None = None) -> None:
        if self.progress is not None:
            kw = {"info": info} if info is not None else {}
            self.progress.update(self.task, advance=n, **kw)


def _new_progress():
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(bar_width=20),
                    MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"),
                    TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                    console=_console(), transient=False)


@contextmanager
def phase(description: str, total: int | None, completed: int = 0) -> Iterator[Phase]:
    """Show ``description`` with a bar of ``total`` units while the block runs."""
    if not shown():
        yield Phase()
        return
    if _state["progress"] is None:
        _state["progress"] = _new_progress()
        _state["progress"].start()
    progress = _state["progress"]
    _state["open"] += 1
    task = progress.add_task(description, total=total, completed=completed, info="")
    try:
        yield Phase(progress, task)
    finally:
        _state["open"] -= 1
        if _state["open"] == 0:
            progress.stop()
            _state["progress"] = None


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """``items`` one by one, advancing a phase per item."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with phase(description, total) as p:
        for item in items:
            yield item
            p.advance()
