"""Judge protocol and registry."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from torch import Tensor

from safegrpo.core.registry import Registry


@runtime_checkable
class Judge(Protocol):
    """Scores a batch; returns Tensor[B] float on CPU (NaN = could not score)."""

    def score(self, batch: list[Any]) -> Tensor: ...


JUDGES: Registry = Registry("judge")


def build_judge(name: str, **kwargs: Any) -> Judge:
    """Build a registered judge by name (every judge module registers on import)."""
    import importlib

    for mod in ("toxicity", "text_safety", "visual", "clip", "oracle"):
        importlib.import_module(f"safegrpo.judges.{mod}")
    return JUDGES.get(name)(**kwargs)
