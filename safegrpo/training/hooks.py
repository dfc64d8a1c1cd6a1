"""The trainer's declared extension points (no side channels in tasks or recipes).

- ``stop_rules``: ``metrics -> reason | None``; the first reason ends training (checkpointed).
- ``callbacks``: ``(step, metrics) -> None`` after every logged step (e.g. validation).
- ``artifacts``: `ArtifactWriter`s that record each step's samples (e.g. the red-team attack
  log); ``start(step)`` is called when training (re)starts so a writer drops records of steps
  that will be re-run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from safegrpo.core.types import ScoredBatch

StopRule = Callable[[dict[str, Any]], str | None]
StepCallback = Callable[[int, dict[str, Any]], None]


class ArtifactWriter(Protocol):
    def start(self, step: int) -> None:
        """Training (re)starts at ``step``: forget records of steps >= ``step``."""
        ...

    def write(self, step: int, items: list[Any], completions: list[str],
              scored: ScoredBatch) -> None:
        """Record step ``step``'s scored samples (items repeated per completion)."""
        ...


@dataclass(frozen=True)
class TrainerHooks:
    stop_rules: tuple[StopRule, ...] = ()
    """Extra early-stop rules, checked after every step."""
    callbacks: tuple[StepCallback, ...] = ()
    """Called after every step with its metrics."""
    artifacts: tuple[ArtifactWriter, ...] = ()
    """Sample writers (main process only)."""
