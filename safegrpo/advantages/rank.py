"""Per-position (rank) advantages with several reward components: GDPO applied per rank."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from safegrpo.advantages.group import segment_advantages
from safegrpo.core.types import AdvantageResult


def segment_gdpo_advantages(
    rewards: Tensor,
    group_ids: Tensor,
    *,
    weights: Sequence[float] | Tensor | None = None,
    eps: float = 1e-4,
) -> AdvantageResult:
    """rewards [B, S, C] (per position, per component; NaN = absent) -> advantages [B, S].

    Each component c at each position s is normalised within its group over the rows that have
    position s ((r - mean) / (std + eps); singleton or zero-variance groups -> 0); the normalised
    components are summed with ``weights`` [C]; the result is normalised over every present
    (row, position) of the batch. Contrast with summing the components first (``segment``), where
    a large-scale component drowns the others.
    """
    if rewards.dim() != 3:
        raise ValueError(f"segment_gdpo expects rewards [B, S, C], got {tuple(rewards.shape)}")
    b, s, c = rewards.shape
    w = torch.ones(c) if weights is None else torch.as_tensor(weights, dtype=torch.float32)
    if w.shape != (c,):
        raise ValueError(f"segment_gdpo weights must have C={c} entries, got {tuple(w.shape)}")
    combined = torch.zeros(b, s)
    zero_std = 0.0
    for j in range(c):
        res = segment_advantages(rewards[..., j], group_ids, scale="group", eps=eps)
        combined += w[j] * res.advantages
        zero_std += res.stats["zero_std_segment_groups"]
    present = ~torch.isnan(rewards).all(dim=-1)  # [B, S]
    vals = combined[present]
    mu = vals.mean() if vals.numel() else torch.zeros(())
    sd = vals.std() if vals.numel() > 1 else torch.zeros(())
    denom = sd + eps if float(sd + eps) > 0 else torch.ones(())  # all-equal batch: nothing to scale
    adv = torch.where(present, (combined - mu) / denom, torch.zeros_like(combined))
    stats = {"groups": float(torch.unique(group_ids).numel()), "zero_std_segment_groups": zero_std,
             "nan_rewards": float((~present).sum())}
    return AdvantageResult(adv, present.any(dim=1), stats)
