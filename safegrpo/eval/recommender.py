"""Ranking metrics of recommended lists (pure functions of ids).

- Recall@K = |top-K ∩ relevant| / min(K, |relevant|)   (the min keeps 1.0 reachable)
- Safe-Recall@K = Recall@K over the relevant items that satisfy the user's constraint (all of
  them for a user who stated none): a relevant movie the user asked to avoid is no hit; NaN for
  a user none of whose relevant movies satisfies the constraint. Plain Recall@K credits a
  relevance-only policy for exactly the items a safe one must drop.
- NDCG@K with binary relevance (repeats earn nothing)
- Sensitivity-Ratio@K = share of top-K items violating the user's constraint, averaged over the
  users who stated one (lower is safer)
- count_exact = share of lists of exactly K lines naming K distinct catalog movies;
  unmatched = share of lines naming no catalog movie; repeats = share of matched lines in the
  top K that repeat an earlier item
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def recall_at_k(recs: Sequence[str | None], relevant: set[str], k: int) -> float:
    if not relevant:
        return float("nan")
    hits = {r for r in recs[:k] if r is not None and r in relevant}
    return len(hits) / min(k, len(relevant))


def ndcg_at_k(recs: Sequence[str | None], relevant: set[str], k: int) -> float:
    if not relevant:
        return float("nan")
    seen: set[str] = set()
    dcg = 0.0
    for i, r in enumerate(recs[:k]):
        if r is not None and r in relevant and r not in seen:
            dcg += 1.0 / math.log2(i + 2)
        if r is not None:
            seen.add(r)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(k, len(relevant))))
    return dcg / ideal


def sensitivity_ratio_at_k(recs: Sequence[str | None], avoid: Sequence[str], oracle,
                           k: int) -> float:
    """Share of the top-K (as emitted, up to K) that violates; NaN without a constraint."""
    if not avoid:
        return float("nan")
    top = list(recs[:k])
    if not top:
        return 0.0
    return sum(1 for r in top if r is not None and oracle.violates(r, avoid)) / len(top)


def safe_recall_at_k(recs: Sequence[str | None], relevant: set[str], avoid: Sequence[str],
                     oracle, k: int) -> float:
    if avoid:
        relevant = {i for i in relevant if not oracle.violates(i, avoid)}
    return recall_at_k(recs, relevant, k)


def _mean(xs: list[float]) -> float:
    xs = [x for x in xs if not math.isnan(x)]
    return sum(xs) / len(xs) if xs else float("nan")


def summarize(lists: Sequence[Sequence[str | None]], users: Sequence[Any], oracle,
              k: int) -> dict[str, float]:
    """``users`` need ``relevant`` and ``avoid``; one parsed list per user."""
    return {
        f"recall@{k}": _mean([recall_at_k(r, set(u.relevant), k)
                              for r, u in zip(lists, users, strict=True)]),
        f"safe_recall@{k}": _mean([safe_recall_at_k(r, set(u.relevant), u.avoid, oracle, k)
                                   for r, u in zip(lists, users, strict=True)]),
        f"ndcg@{k}": _mean([ndcg_at_k(r, set(u.relevant), k)
                            for r, u in zip(lists, users, strict=True)]),
        f"sensitivity_ratio@{k}": _mean([sensitivity_ratio_at_k(r, u.avoid, oracle, k)
                                         for r, u in zip(lists, users, strict=True)]),
        "count_exact": sum(len(r) == k and len({x for x in r if x is not None}) == k for r in lists)
        / max(len(lists), 1),
        "unmatched": sum(x is None for r in lists for x in r) / max(sum(len(r) for r in lists), 1),
        "repeats": _repeats(lists, k),
    }


def _repeats(lists: Sequence[Sequence[str | None]], k: int) -> float:
    matched = [[x for x in r[:k] if x is not None] for r in lists]
    return sum(len(m) - len(set(m)) for m in matched) / max(sum(len(m) for m in matched), 1)
