"""Reward shaping applied by the trainer after a task scores a rollout (needs rollout log-probs)."""

from __future__ import annotations

from torch import Tensor

from safegrpo.core.types import ScoredBatch


def shape_reward(scored: ScoredBatch, kl_seq: Tensor | None, kl_coef: float, clip: float) -> ScoredBatch:
    """Fold -kl_coef * KL [B] into the reward as component 'kl_penalty', then clip the total to
    [-clip, clip] (clip <= 0: no clipping)."""
    comps, total = dict(scored.components), scored.total
    if kl_coef > 0:
        if kl_seq is None:
            raise ValueError("reward KL penalty needs reference log-probs")
        comps["kl_penalty"] = -kl_coef * kl_seq.float().cpu()
        total = total + comps["kl_penalty"]
    if clip > 0:
        total = total.clamp(-clip, clip)
    return ScoredBatch(total=total, components=comps, info=scored.info)
