"""Per-token weights of the policy-gradient term: truncated importance sampling for a rollout
engine that samples from another distribution than the trainer computes (bf16, vLLM), and the
product of several optional weights. Pure tensor functions."""

from __future__ import annotations

import torch
from torch import Tensor


def engine_correction(trainer_logp: Tensor, engine_logp: Tensor | None, mask: Tensor,
                      cap: float) -> tuple[Tensor | None, dict[str, float]]:
    """Truncated importance weights min(exp(trainer - engine), cap) [B, T] (None when ``cap`` is
    0 or the engine reported no log-probs) and the mismatch metrics: mean |trainer - engine|
    log-prob per token, and with a cap the mean weight and the share of tokens truncated."""
    if engine_logp is None:
        return None, {}
    m = mask.float()
    n = m.sum().clamp(min=1)
    diff = (trainer_logp.detach() - engine_logp.to(trainer_logp.device)) * m
    metrics = {"engine/logp_abs_diff": float(diff.abs().sum() / n)}
    if cap <= 0:
        return None, metrics
    raw = torch.exp(diff)
    w = raw.clamp(max=cap) * m
    metrics.update({"engine/is_weight_mean": float(w.sum() / n),
                    "engine/is_truncated_frac": float(((raw > cap).float() * m).sum() / n)})
    return w, metrics


def combine_weights(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    """Product of two optional per-token weights [B, T] (None when both are None)."""
    if a is None or b is None:
        return a if b is None else b
    return a * b
