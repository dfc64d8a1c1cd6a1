"""Group-relative advantage estimators (pure tensor functions).

- ``grpo``: A_i = (r_i - mean_g) / (std_g + eps) -- DeepSeekMath, arXiv:2402.03300. ``scale``
  picks the denominator: the group std, the batch std (Dr. GRPO argues per-group std biases
  toward easy/hard prompts, arXiv:2503.20783, and REINFORCE++ uses the batch), or none.
- ``gdpo``: normalise each reward component inside its group, weighted-sum, then
  batch-normalise (decoupled group normalisation, so one high-variance reward cannot drown
  the others).
- ``segment``: per-position (list rank / segment) advantages over a [B, S] reward matrix,
  normalised per group and position, then broadcast to tokens by a segment map.

NaN rewards are unscorable samples: they are excluded from every statistic, get advantage 0
and ``valid = False``. Groups with one valid member, or zero variance, give advantage 0 and
are counted in ``stats``. std is the sample std (ddof=1), matching torch.std and TRL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from safegrpo.core.types import AdvantageResult

Scale = Literal["group", "batch", "none"]


def _group_moments(values: Tensor, valid: Tensor, gidx: Tensor, n_groups: int):
    """Per-group count, mean and sample std of ``values`` [B] over valid rows.

    Returns (count, mean, std), each [n_groups]. Accumulates in float64, and a group whose
    valid values are all equal gets std exactly 0 (float rounding of the mean would otherwise
    leave ~1e-8 and the group would escape the zero-variance handling).
    """
    v64 = torch.where(valid, values, torch.zeros_like(values)).double()
    w = valid.double()
    zeros = torch.zeros(n_groups, dtype=torch.float64, device=values.device)
    count = zeros.clone().index_add_(0, gidx, w)
    mean = zeros.clone().index_add_(0, gidx, v64) / count.clamp(min=1)
    dev = torch.where(valid, v64 - mean[gidx], torch.zeros_like(v64))
    std = torch.sqrt(zeros.clone().index_add_(0, gidx, dev**2) / (count - 1).clamp(min=1))
    big = torch.finfo(torch.float64).max
    gmax = torch.full_like(zeros, -big).scatter_reduce(0, gidx[valid], v64[valid], "amax")
    gmin = torch.full_like(zeros, big).scatter_reduce(0, gidx[valid], v64[valid], "amin")
    std = torch.where((count > 1) & (gmax > gmin), std, torch.zeros_like(std))
    dt = values.dtype
    return count.to(dt), mean.to(dt), std.to(dt)


def _batch_std(values: Tensor, valid: Tensor) -> Tensor:
    vals = values[valid]
    return vals.std() if vals.numel() > 1 else torch.zeros((), dtype=values.dtype)


def grpo_advantages(
    rewards: Tensor, group_ids: Tensor, *, scale: Scale = "group", eps: float = 1e-4
) -> AdvantageResult:
    """rewards [B] (NaN = unscorable), group_ids [B] -> advantages [B]."""
    if rewards.dim() != 1 or group_ids.shape != rewards.shape:
        raise ValueError(f"rewards {tuple(rewards.shape)} and group_ids must both be [B]")
    if scale not in ("group", "batch", "none"):
        raise ValueError(f"scale must be group|batch|none, got {scale!r}")
    rewards = rewards.float()
    valid = ~torch.isnan(rewards)
    _, gidx = torch.unique(group_ids, return_inverse=True)
    n = int(gidx.max()) + 1 if gidx.numel() else 0
    count, mean, std = _group_moments(rewards, valid, gidx, n)
    centered = rewards - mean[gidx]
    if scale == "group":
        adv = centered / (std[gidx] + eps)
    elif scale == "batch":
        adv = centered / (_batch_std(rewards, valid) + eps)
    else:
        adv = centered
    degenerate = (count[gidx] < 2) | (std[gidx] == 0)
    adv = torch.where(valid & ~degenerate, adv, torch.zeros_like(adv))
    present = count > 0
    stats = {
        "groups": float(present.sum()),
        "zero_std_groups": float(((std == 0) & (count >= 2)).sum()),
        "singleton_groups": float((count == 1).sum()),
        "nan_rewards": float((~valid).sum()),
    }
    stats["zero_std_frac"] = stats["zero_std_groups"] / max(stats["groups"], 1.0)
    return AdvantageResult(adv, valid, stats)


def gdpo_advantages(
    rewards: Tensor,
    group_ids: Tensor,
    *,
    weights: Sequence[float] | Tensor | None = None,
    eps: float = 1e-4,
) -> AdvantageResult:
    """rewards [B, K] (per-component, NaN = unscorable), group_ids [B] -> advantages [B].

    Each component k is normalised within its group ((r - mean_g) / (std_g + eps)), then
    A = batch_norm(sum_k w_k * norm_k). A NaN component contributes 0 for that sample; a
    sample with every component NaN is invalid.
    """
    if rewards.dim() != 2:
        raise ValueError(f"gdpo expects rewards [B, K], got {tuple(rewards.shape)}")
    rewards = rewards.float()
    b, k = rewards.shape
    w = torch.ones(k) if weights is None else torch.as_tensor(weights, dtype=torch.float32)
    if w.shape != (k,):
        raise ValueError(f"gdpo weights must have K={k} entries, got {tuple(w.shape)}")
    comp_valid = ~torch.isnan(rewards)  # [B, K]
    valid = comp_valid.any(dim=1)
    _, gidx = torch.unique(group_ids, return_inverse=True)
    n = int(gidx.max()) + 1 if b else 0
    normed = torch.zeros_like(rewards)
    zero_std = 0.0
    for j in range(k):  # K is small (a handful of reward functions)
        cnt, mean, std = _group_moments(rewards[:, j], comp_valid[:, j], gidx, n)
        z = (rewards[:, j] - mean[gidx]) / (std[gidx] + eps)
        ok = comp_valid[:, j] & (cnt[gidx] >= 2) & (std[gidx] > 0)
        normed[:, j] = torch.where(ok, z, torch.zeros_like(z))
        zero_std += float(((std == 0) & (cnt >= 2)).sum())
    combined = (normed * w.to(rewards.device)).sum(dim=1)
    vals = combined[valid]
    mu = vals.mean() if vals.numel() else torch.zeros(())
    sd = vals.std() if vals.numel() > 1 else torch.zeros(())
    adv = torch.where(valid, (combined - mu) / (sd + eps), torch.zeros_like(combined))
    stats = {
        "groups": float(n),
        "zero_std_component_groups": zero_std,
        "nan_rewards": float((~valid).sum()),
    }
    return AdvantageResult(adv, valid, stats)


def segment_advantages(
    rewards: Tensor, group_ids: Tensor, *, scale: Scale = "group", eps: float = 1e-4
) -> AdvantageResult:
    """rewards [B, S] per-position rewards -> advantages [B, S], normalised per (group, s).

    Position s of each completion is compared only with position s of its group mates
    (Rank-GRPO style). NaN entries (e.g. a list shorter than S) are excluded and get 0.
    """
    if rewards.dim() != 2:
        raise ValueError(f"segment expects rewards [B, S], got {tuple(rewards.shape)}")
    rewards = rewards.float()
    valid_bs = ~torch.isnan(rewards)
    _, gidx = torch.unique(group_ids, return_inverse=True)
    n = int(gidx.max()) + 1 if rewards.shape[0] else 0
    adv = torch.zeros_like(rewards)
    zero_std = 0.0
    for s in range(rewards.shape[1]):
        col, ok = rewards[:, s], valid_bs[:, s]
        cnt, mean, std = _group_moments(col, ok, gidx, n)
        centered = col - mean[gidx]
        if scale == "group":
            a = centered / (std[gidx] + eps)
        elif scale == "batch":
            a = centered / (_batch_std(col, ok) + eps)
        else:
            a = centered
        keep = ok & (cnt[gidx] >= 2) & (std[gidx] > 0)
        adv[:, s] = torch.where(keep, a, torch.zeros_like(a))
        zero_std += float(((std == 0) & (cnt >= 2)).sum())
    stats = {"groups": float(n), "zero_std_segment_groups": zero_std,
             "nan_rewards": float((~valid_bs).sum())}
    return AdvantageResult(adv, valid_bs.any(dim=1), stats)


def broadcast_segments(seg_adv: Tensor, segment_map: Tensor) -> Tensor:
    """seg_adv [B, S], segment_map [B, T] (segment index per token, -1 = none) -> [B, T].

    Tokens outside every segment get advantage 0.
    """
    if seg_adv.shape[0] != segment_map.shape[0]:
        raise ValueError("seg_adv and segment_map must share B")
    s = seg_adv.shape[1]
    if (segment_map >= s).any():
        raise ValueError(f"segment_map refers to segment >= S={s}")
    idx = segment_map.clamp(min=0).long()
    out = torch.gather(seg_adv, 1, idx)
    return torch.where(segment_map >= 0, out, torch.zeros_like(out))
