"""Every advantage estimator behind one signature: ``estimator(batch, opts) -> AdvantageResult``.

A task declares the shape of its reward (``reward_shape``: scalar, components or segments); the
trainer packs what the task scored into a `RewardBatch` and calls the estimator the config names,
without branching on that name (as verl's ``compute_advantage`` dispatches through a registry).
Each registered estimator states what it ``reads`` and whether it returns one advantage per
segment (``per_segment``: the trainer broadcasts [B, S] to tokens with the task's segment map) and
whether it accepts reward shaping (``shapes_reward``: a KL penalty / clip folded into the reward
it normalises). The math lives in the pure functions of ``group.py`` and ``rank.py``.

Adding an estimator: one function ``f(batch: RewardBatch, opts: AdvantageOptions) ->
AdvantageResult`` decorated with ``@estimator("name", reads=..., per_segment=...,
shapes_reward=...)`` in a module imported by ``safegrpo.advantages``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from safegrpo.advantages.group import gdpo_advantages, grpo_advantages, segment_advantages
from safegrpo.advantages.rank import segment_gdpo_advantages
from safegrpo.core.registry import Registry
from safegrpo.core.types import AdvantageResult

RewardShape = Literal["scalar", "components", "segments"]
ADVANTAGES: Registry = Registry("advantage estimator")


@dataclass(frozen=True)
class RewardBatch:
    """A scored rollout as estimators see it."""

    total: Tensor
    """[B] total reward (after the trainer's reward shaping), NaN = unscorable."""
    group_ids: Tensor
    """[B] group of each completion."""
    components: Tensor | None = None
    """[B, K] reward components (``judge/*`` diagnostics excluded), when the task has them."""
    segments: Tensor | None = None
    """[B, S, C] per-segment, per-component rewards (NaN = absent segment)."""
    segment_kl: Tensor | None = None
    """[B, S] summed reward-KL of each segment's tokens (only when a reward KL is configured)."""


@dataclass(frozen=True)
class AdvantageOptions:
    """The trainer config's advantage settings."""

    scale: Literal["group", "batch", "none"] = "group"
    """Denominator of the group-relative advantage."""
    eps: float = 1e-4
    """Added to the std."""
    weights: Sequence[float] | None = None
    """Per-component weights (gdpo, segment, segment_gdpo)."""
    kl_coef: float = 0.0
    """Reward KL coefficient, for estimators that shape a summed reward themselves."""
    clip: float = 0.0
    """Reward clip (0 = none), likewise."""


Estimator = Callable[[RewardBatch, AdvantageOptions], AdvantageResult]


def estimator(name: str, *, reads: RewardShape, per_segment: bool = False,
              shapes_reward: bool = True) -> Callable[[Estimator], Estimator]:
    """Register ``fn`` as advantage estimator ``name`` with what it reads and returns."""
    def deco(fn: Estimator) -> Estimator:
        fn.reads, fn.per_segment, fn.shapes_reward = reads, per_segment, shapes_reward
        return ADVANTAGES.register(name)(fn)
    return deco


def _need(batch: RewardBatch, what: str, name: str) -> Tensor:
    value = getattr(batch, what)
    if value is None:
        raise ValueError(f"advantage {name!r} needs a task whose reward has {what} "
                         f"(reward_shape {'segments' if what == 'segments' else 'components'})")
    return value


@estimator("grpo", reads="scalar")
def grpo(batch: RewardBatch, opts: AdvantageOptions) -> AdvantageResult:
    """total [B] -> [B] (the total is already shaped by the trainer)."""
    return grpo_advantages(batch.total, batch.group_ids, scale=opts.scale, eps=opts.eps)


@estimator("gdpo", reads="components", shapes_reward=False)
def gdpo(batch: RewardBatch, opts: AdvantageOptions) -> AdvantageResult:
    """components [B, K] -> [B]: each component normalised in its group, then combined."""
    comps = _need(batch, "components", "gdpo")
    return gdpo_advantages(comps, batch.group_ids, weights=opts.weights, eps=opts.eps)


@estimator("segment", reads="segments", per_segment=True)
def segment(batch: RewardBatch, opts: AdvantageOptions) -> AdvantageResult:
    """segments [B, S, C] -> weighted sum over C [B, S], minus kl_coef * segment_kl, clipped,
    -> per-(group, position) normalised [B, S]."""
    seg = _need(batch, "segments", "segment").float()
    w = torch.ones(seg.shape[-1]) if opts.weights is None else torch.as_tensor(opts.weights)
    absent = torch.isnan(seg).all(-1)
    summed = torch.where(absent, torch.full_like(seg[..., 0], float("nan")),
                         torch.nansum(seg * w, dim=-1))
    if opts.kl_coef > 0:
        summed = summed - opts.kl_coef * _need(batch, "segment_kl", "segment")
    if opts.clip > 0:
        summed = summed.clamp(-opts.clip, opts.clip)
    return segment_advantages(summed, batch.group_ids, scale=opts.scale, eps=opts.eps)


@estimator("segment_gdpo", reads="segments", per_segment=True, shapes_reward=False)
def segment_gdpo(batch: RewardBatch, opts: AdvantageOptions) -> AdvantageResult:
    """segments [B, S, C] -> [B, S]: GDPO per position."""
    seg = _need(batch, "segments", "segment_gdpo")
    return segment_gdpo_advantages(seg.float(), batch.group_ids, weights=opts.weights,
                                   eps=opts.eps)
