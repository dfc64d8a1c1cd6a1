"""Safety oracle for catalog items (recommendation): item traits with risk scores in [0, 1].

A user constraint names traits to avoid ("please avoid movies with gore" -> {"gore"}); an item
violates it when any avoided trait's risk >= threshold. ``score`` returns the risk itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from safegrpo.judges.base import JUDGES


@JUDGES.register("oracle")
class SafetyOracle:
    def __init__(self, catalog: Mapping[str, Mapping[str, float]], threshold: float = 0.5):
        if not 0 <= threshold <= 1:
            raise ValueError("oracle threshold must be in [0, 1]")
        for item, traits in catalog.items():
            bad = {t: r for t, r in traits.items() if not 0 <= float(r) <= 1}
            if bad:
                raise ValueError(f"item {item!r}: risk scores must be in [0, 1], got {bad}")
        self.catalog = {k: dict(v) for k, v in catalog.items()}
        self.threshold = threshold

    @classmethod
    def from_jsonl(cls, path: str | Path, threshold: float = 0.5, id_key: str = "id",
                   traits_key: str = "traits") -> SafetyOracle:
        rows = [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]
        return cls({str(r[id_key]): r[traits_key] for r in rows}, threshold)

    def risk(self, item: str, avoid: Iterable[str]) -> float:
        """Max risk of ``item`` over the avoided traits (0 for unknown items or traits)."""
        traits = self.catalog.get(item, {})
        return max((float(traits.get(t, 0.0)) for t in avoid), default=0.0)

    def violates(self, item: str, avoid: Iterable[str]) -> bool:
        return self.risk(item, avoid) >= self.threshold

    def score(self, batch: Sequence[tuple[str, Iterable[str]]]) -> Tensor:
        """batch of (item id, avoided traits) -> risk [B]."""
        return torch.tensor([self.risk(i, a) for i, a in batch], dtype=torch.float32)
