"""Per-rank rewards of the safe recommender (Rank-GRPO / Safe-Rank-GRPO style).

For a parsed list of n items and list size K, rank k (0-based, k < min(n, K)) gets three
components, returned as a matrix [B, K, 3] (NaN where rank k is absent):

- relevance: ``exp_inf``: hit_k (the item is relevant and not a repeat; no credit from later
  ranks); ``log_decay``: sum_{j >= k} hit_j / log2(j + 2) (the DCG still reachable from rank k).
  With the safety penalty on (``safety_coef`` > 0) and ``safe_relevance``, an item that violates
  the user's constraint is no hit: otherwise a relevant violating item and an irrelevant safe one
  tie under per-component normalisation (``segment_gdpo``: +z relevance -z safety vs -z +z), and
  the safe arm had no reason to swap one for a safe relevant item (its Sensitivity@5 ended above
  its Safe-SFT start in the issue-25 demo).
- safety: -safety_coef * risk_k * d_k when item k violates the user's constraint
  (oracle risk >= threshold), with rank discount d_k = 1 / log2(k + 2); 0 otherwise.
- count: +count_coef if the list is exactly K distinct catalog items, else
  -count_coef * (K - n_valid + n_extra) / K, broadcast to every present rank; n_valid counts the
  distinct matched items among the first K lines and n_extra the lines past K. A repeat or an
  unmatched line is a missing item: otherwise padding the list with one known-safe title (no
  relevance to lose, no safety penalty to risk) would be the safest policy. With
  ``repeat_coef`` > 0, each rank holding a repeat or an unmatched line also gets -repeat_coef in
  this component, so the blame lands on the line that wasted the slot.

An empty list still gets rank 0 (relevance 0, safety 0, count -count_coef), so emitting nothing
is scored and penalised rather than dropped from the statistics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

COMPONENTS = ("relevance", "safety", "count")


@dataclass(frozen=True)
class RankRewardConfig:
    k: int = 5
    """List size K."""
    relevance: Literal["exp_inf", "log_decay"] = "exp_inf"
    """Per-rank relevance: own hit only (exp_inf) or discounted hits from this rank on
    (log_decay)."""
    safety_coef: float = 1.0
    """lambda of the safety penalty -lambda * risk * d_k at violating ranks (0 = off)."""
    count_coef: float = 0.5
    """lambda of the count reward (0 = off)."""
    oracle_threshold: float = 0.5
    """An item violates a constraint when its risk for an avoided trait is >= this."""
    repeat_coef: float = 0.0
    """Extra count-component penalty at each rank whose line repeats an item or names none."""
    safe_relevance: bool = True
    """With safety_coef > 0: an item violating the user's constraint earns no relevance."""

    def __post_init__(self) -> None:
        if self.k < 1 or min(self.safety_coef, self.count_coef, self.repeat_coef) < 0:
            raise ValueError("reward.k must be >= 1; safety_coef, count_coef and repeat_coef >= 0")
        if self.relevance not in ("exp_inf", "log_decay"):
            raise ValueError(f"reward.relevance must be exp_inf|log_decay, got {self.relevance!r}")


def rank_discount(k: int) -> Tensor:
    """[K]: d_k = 1 / log2(k + 2) for 0-based ranks."""
    return torch.tensor([1.0 / math.log2(i + 2) for i in range(k)])


def per_rank_rewards(lists: Sequence[Sequence[str | None]], relevant: Sequence[set[str]],
                     avoid: Sequence[Sequence[str]], oracle, cfg: RankRewardConfig) -> Tensor:
    """lists [B] of parsed ids (None = unmatched line) -> rewards [B, K, 3]
    (relevance, safety, count)."""
    k = cfg.k
    out = torch.full((len(lists), k, len(COMPONENTS)), float("nan"))
    disc = rank_discount(k)
    safe_only = cfg.safe_relevance and cfg.safety_coef > 0
    for b, items in enumerate(lists):
        n = len(items)
        present = max(1, min(n, k))
        seen: set[str] = set()
        hits, wasted = torch.zeros(k), torch.zeros(k)
        for i, item in enumerate(items[:k]):
            if (item is not None and item not in seen and item in relevant[b]
                    and not (safe_only and avoid[b] and oracle.violates(item, avoid[b]))):
                hits[i] = 1.0
            wasted[i] = float(item is None or item in seen)
            if item is not None:
                seen.add(item)
        if cfg.relevance == "exp_inf":
            rel = hits
        else:
            rel = (hits * disc).flip(0).cumsum(0).flip(0)
        safety = torch.zeros(k)
        if cfg.safety_coef > 0 and avoid[b]:
            for i, item in enumerate(items[:k]):
                if item is not None and oracle.violates(item, avoid[b]):
                    safety[i] = -cfg.safety_coef * oracle.risk(item, avoid[b]) * disc[i]
        missing = k - len(seen) + max(n - k, 0)  # seen = the distinct matched items in the top K
        count = cfg.count_coef * (1.0 if missing == 0 else -missing / k)
        out[b, :present, 0] = rel[:present]
        out[b, :present, 1] = safety[:present]
        out[b, :present, 2] = count - cfg.repeat_coef * wasted[:present]
    return out


def violations(items: Sequence[str | None], avoid: Sequence[str], oracle, k: int) -> int:
    """Number of constraint-violating items in the top k."""
    return sum(1 for i in items[:k] if i is not None and avoid and oracle.violates(i, avoid))
