"""Reward shaping applied by the trainer after a task scores a rollout (needs rollout log-probs).

The KL penalty and the clip act on the reward an advantage estimator normalises: the total for
``grpo`` (``shape_reward``), each segment's summed reward for ``segment`` (``shape_segments``).
Estimators that normalise each component on its own (gdpo) have no such reward; the trainer
config refuses the combination rather than adding the KL as one more component.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from safegrpo.core.types import ScoredBatch


def shape_reward(
    scored: ScoredBatch, kl_seq: Tensor | None, kl_coef: float, clip: float
) -> ScoredBatch:
    """Fold -kl_coef * KL [B] into the total, then clip the total to [-clip, clip] (clip <= 0: no
    clipping). The penalty is also reported as component 'kl_penalty' (for logging); per-segment
    rewards are passed through unchanged (see ``shape_segments``)."""
    comps, total = dict(scored.components), scored.total
    if kl_coef > 0:
        if kl_seq is None:
            raise ValueError("reward KL penalty needs reference log-probs")
        comps["kl_penalty"] = -kl_coef * kl_seq.float().cpu()
        total = total + comps["kl_penalty"]
    if clip > 0:
        total = total.clamp(-clip, clip)
    return replace(scored, total=total, components=comps)


def segment_kl(kl_tok: Tensor, segment_map: Tensor, n_segments: int) -> Tensor:
    """kl_tok [B, T] per-token log pi - log ref (0 on padding), segment_map [B, T] (segment of
    each token, -1 = none) -> [B, S]: the KL summed over each segment's tokens."""
    idx = segment_map.long().cpu()
    kl = torch.where(idx >= 0, kl_tok.float().cpu(), torch.zeros(()))
    b = kl.shape[0]
    return torch.zeros(b, n_segments + 1).scatter_add_(1, (idx + 1).clamp(min=0), kl)[:, 1:]


def shape_segments(seg_reward: Tensor, kl_tok: Tensor | None, segment_map: Tensor, kl_coef: float,
                   clip: float) -> Tensor:
    """Per-segment shaping: seg_reward [B, S] (NaN = absent segment), kl_tok [B, T], segment_map
    [B, T] -> [B, S]: reward_s - kl_coef * ``segment_kl`` s, clipped to [-clip, clip]. Tokens
    outside every segment get advantage 0 and carry no penalty. (The ``segment`` estimator
    applies the same shaping to the summed segment reward.)"""
    out = seg_reward.float()
    if kl_coef > 0:
        if kl_tok is None:
            raise ValueError("reward KL penalty needs reference log-probs")
        out = out - kl_coef * segment_kl(kl_tok, segment_map, out.shape[1])  # NaN stays NaN
    if clip > 0:
        out = out.clamp(-clip, clip)
    return out
