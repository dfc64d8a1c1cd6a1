"""Clipped-surrogate policy loss for GRPO and its aggregation variants.

Per token: L_t = -min(r_t A, clip(r_t, 1 - eps_low, 1 + eps_high) A) (+ beta * KL_t).
Ratios: ``token`` r_t = pi/pi_old per token (PPO/GRPO); ``sequence`` r = exp(mean_t log pi/pi_old)
shared by every token of a sequence (GSPO, arXiv:2507.18071).
Aggregation over masked tokens [B, T]:
- ``grpo``: mean over each sequence's tokens, then over sequences (arXiv:2402.03300);
- ``bnpo``: sum over all tokens / number of tokens in this (micro)batch;
- ``dapo``: sum / number of tokens in the whole optimisation batch (``num_tokens``), so
  gradient accumulation over micro-batches equals one big token-mean (arXiv:2503.14476);
- ``dr_grpo``: sum / (B * max_len) with a constant max_len (arXiv:2503.20783).
Under gradient accumulation each micro-batch's loss is weighted so that the sum equals the loss
of one big batch (``minibatch_weight``): by rows for grpo / dr_grpo, by tokens for bnpo (which
then equals dapo), not at all for dapo (its denominator already covers the whole batch).
Asymmetric clipping (eps_high > eps_low) is DAPO's clip-higher.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from safegrpo.core.registry import Registry
from safegrpo.losses.kl import kl_estimate

AGGREGATIONS: Registry = Registry("loss aggregation")


def _masked_sum(x: Tensor, mask: Tensor) -> Tensor:
    return (x * mask).sum()


def _weighted_by(unit: str):
    """Tag an aggregation with what its micro-batches are weighted by under accumulation."""
    def deco(fn):
        fn.weight_by = unit
        return fn
    return deco


@AGGREGATIONS.register("grpo")
@_weighted_by("rows")
def _agg_grpo(x: Tensor, mask: Tensor, **_: object) -> Tensor:
    per_seq = (x * mask).sum(-1) / mask.sum(-1).clamp(min=1)
    return per_seq.mean()


@AGGREGATIONS.register("bnpo")
@_weighted_by("tokens")
def _agg_bnpo(x: Tensor, mask: Tensor, **_: object) -> Tensor:
    return _masked_sum(x, mask) / mask.sum().clamp(min=1)


@AGGREGATIONS.register("dapo")
@_weighted_by("none")
def _agg_dapo(x: Tensor, mask: Tensor, *, num_tokens: float | None = None, **_: object) -> Tensor:
    denom = mask.sum().clamp(min=1) if num_tokens is None else torch.as_tensor(float(num_tokens))
    return _masked_sum(x, mask) / denom


@AGGREGATIONS.register("dr_grpo")
@_weighted_by("rows")
def _agg_dr_grpo(x: Tensor, mask: Tensor, *, max_len: int | None = None, **_: object) -> Tensor:
    length = x.shape[-1] if max_len is None else max_len
    return _masked_sum(x, mask) / (x.shape[0] * length)


def minibatch_weight(agg: str, rows: int, tokens: float, total_rows: int,
                     total_tokens: float) -> float:
    """Weight of one micro-batch's aggregated loss (``rows`` rows, ``tokens`` unmasked tokens) in
    an optimizer step over ``total_rows`` / ``total_tokens``, so the weighted sum of micro-batch
    losses equals aggregation ``agg`` over the whole step's batch."""
    unit = AGGREGATIONS.get(agg).weight_by
    if unit == "none":
        return 1.0
    part, whole = (rows, total_rows) if unit == "rows" else (tokens, total_tokens)
    return float(part) / whole if whole > 0 else 0.0


def aggregate(name: str, x: Tensor, mask: Tensor, **kw: object) -> Tensor:
    """x, mask [B, T] -> scalar, by the named aggregation."""
    return AGGREGATIONS.get(name)(x, mask.to(x.dtype), **kw)


def clipped_surrogate(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    eps_low: float = 0.2,
    eps_high: float | None = None,
    ratio_level: Literal["token", "sequence", "item"] = "token",
    segment_map: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-token surrogate loss.

    logp, old_logp, mask [B, T]; advantages [B] or [B, T]. ratio_level: token (per-token ratio),
    sequence (geometric mean over the completion, GSPO) or item (geometric mean over the tokens of
    each segment of ``segment_map`` [B, T], -1 = no segment -> that token's own ratio).
    Returns (loss [B, T], ratio [B, T], clipped [B, T] bool: the clip was active).
    """
    eps_high = eps_low if eps_high is None else eps_high
    adv = advantages.unsqueeze(-1) if advantages.dim() == 1 else advantages
    log_ratio = logp - old_logp
    if ratio_level == "token":
        ratio = torch.exp(log_ratio)
    elif ratio_level == "sequence":
        m = mask.to(logp.dtype)
        seq = (log_ratio * m).sum(-1) / m.sum(-1).clamp(min=1)
        ratio = torch.exp(seq).unsqueeze(-1).expand_as(logp)
    elif ratio_level == "item":
        if segment_map is None:
            raise ValueError("ratio_level='item' needs a segment_map [B, T]")
        ratio = torch.exp(segment_mean(log_ratio, mask.to(logp.dtype), segment_map))
    else:
        raise ValueError(f"ratio_level must be token|sequence|item, got {ratio_level!r}")
    unclipped = ratio * adv
    clipped_ratio = ratio.clamp(1.0 - eps_low, 1.0 + eps_high)
    clipped = clipped_ratio * adv
    loss = -torch.minimum(unclipped, clipped)
    active = clipped < unclipped
    return loss, ratio, active


def segment_mean(x: Tensor, mask: Tensor, segment_map: Tensor) -> Tensor:
    """x, mask, segment_map [B, T] -> [B, T]: each token gets the masked mean of x over its segment
    (tokens with segment -1 keep their own x). Differentiable in x."""
    seg = segment_map.long()
    n_seg = int(seg.max().item()) + 2 if seg.numel() else 1
    idx = (seg + 1).clamp(min=0)  # slot 0 collects segment -1
    zeros = torch.zeros(x.shape[0], n_seg, dtype=x.dtype, device=x.device)
    sums = zeros.scatter_add(1, idx, x * mask)
    cnts = zeros.scatter_add(1, idx, mask)
    mean = torch.gather(sums, 1, idx) / torch.gather(cnts, 1, idx).clamp(min=1)
    return torch.where(seg >= 0, mean, x)


@dataclass(frozen=True)
class LossOutput:
    loss: Tensor  # scalar
    metrics: dict[str, float]


def grpo_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    ref_logp: Tensor | None = None,
    beta: float = 0.0,
    kl_estimator: str = "k3",
    eps_low: float = 0.2,
    eps_high: float | None = None,
    ratio_level: Literal["token", "sequence", "item"] = "token",
    segment_map: Tensor | None = None,
    agg: str = "grpo",
    num_tokens: float | None = None,
    max_len: int | None = None,
    kl_term: Tensor | None = None,
    token_weights: Tensor | None = None,
) -> LossOutput:
    """Full GRPO objective. Tensors [B, T] (advantages [B] or [B, T]); returns scalar + metrics.

    The KL penalty is ``kl_estimator`` of (logp, ref_logp), or ``kl_term`` [B, T] when the
    caller has a closed form (diffusion: the KL between the two Gaussian DDIM transitions).
    ``token_weights`` [B, T] (detached) scale each token's policy-gradient term before the KL is
    added: an entropy mask, or truncated importance sampling for a rollout engine whose sampling
    distribution differs from the trainer's (TRL's ``vllm_importance_sampling_correction``); the
    aggregation's denominator stays the masked token count, as in TRL."""
    mask_f = mask.to(logp.dtype)
    pg, ratio, active = clipped_surrogate(
        logp, old_logp, advantages, mask_f, eps_low=eps_low, eps_high=eps_high,
        ratio_level=ratio_level, segment_map=segment_map,
    )
    if token_weights is not None:
        pg = pg * token_weights.detach().to(pg.dtype)
    per_token = pg
    metrics: dict[str, float] = {}
    if beta > 0.0:
        if ref_logp is None and kl_term is None:
            raise ValueError("beta > 0 needs ref_logp (or kl_term)")
        kl = kl_term if kl_term is not None else kl_estimate(kl_estimator, logp, ref_logp)
        per_token = per_token + beta * kl
        metrics["kl"] = float(_masked_sum(kl.detach(), mask_f) / mask_f.sum().clamp(min=1))
    loss = aggregate(agg, per_token, mask_f, num_tokens=num_tokens, max_len=max_len)
    with torch.no_grad():
        n = mask_f.sum().clamp(min=1)
        lr = (logp - old_logp).detach()
        metrics.update(
            clipfrac=float(_masked_sum(active.to(logp.dtype), mask_f) / n),
            ratio_mean=float(_masked_sum(ratio.detach(), mask_f) / n),
            # k3 estimate of KL(old || new): the usual "approx_kl" diagnostic.
            approx_kl=float(_masked_sum(torch.exp(lr) - 1 - lr, mask_f) / n),
            pg_loss=float(aggregate(agg, pg.detach(), mask_f, num_tokens=num_tokens,
                                    max_len=max_len)),
        )
    return LossOutput(loss, metrics)
