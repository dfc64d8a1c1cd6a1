"""Typed containers passed between rollout, scoring and optimisation.

Shape letters: B batch (= prompts x G), G group size, T completion tokens, P prompt tokens,
K reward components, S segments (list ranks / diffusion timesteps).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor


@dataclass(frozen=True)
class AdvantageResult:
    """Output of an advantage estimator."""

    advantages: Tensor  # [B] or [B, S]
    valid: Tensor  # [B] bool: False where the reward was NaN (excluded from the loss)
    stats: dict[str, float] = field(default_factory=dict)  # zero_std_groups, singleton_groups...


@dataclass(frozen=True)
class LMRollout:
    """G sampled completions per prompt, flattened to B = prompts * G rows."""

    prompt_ids: Tensor  # [B, P] left-padded
    prompt_mask: Tensor  # [B, P] 1 = real token
    completion_ids: Tensor  # [B, T] right-padded (pad after EOS)
    completion_mask: Tensor  # [B, T] 1 = generated token up to and including EOS
    old_logprobs: Tensor | None  # [B, T] behaviour-policy log-probs at sampling time (None: not
    # recorded, the update is on-policy and uses the current log-probs, detached)
    ref_logprobs: Tensor | None  # [B, T] reference log-probs (None when kl is off)
    group_ids: Tensor  # [B] long: rows sharing a prompt share an id
    prompts: tuple[str, ...]  # B prompt strings
    completions: tuple[str, ...]  # B decoded completions
    engine_logprobs: Tensor | None = None  # [B, T] the rollout engine's log-probs of the sampled
    # tokens (None: not requested); used only for the mismatch metric and IS correction

    def __post_init__(self) -> None:
        b, t = self.completion_ids.shape
        for name in ("completion_mask", "old_logprobs"):
            if getattr(self, name) is not None and getattr(self, name).shape != (b, t):
                raise ValueError(f"LMRollout.{name} shape {tuple(getattr(self, name).shape)} "
                                 f"!= {(b, t)}")
        if self.group_ids.shape != (b,) or len(self.prompts) != b or len(self.completions) != b:
            raise ValueError("LMRollout: group_ids, prompts and completions must have B entries")

    @property
    def batch_size(self) -> int:
        return self.completion_ids.shape[0]

    def select(self, idx: Tensor) -> LMRollout:
        """Rows ``idx`` [b] (for minibatching)."""
        il = idx.tolist()
        return replace(
            self,
            prompt_ids=self.prompt_ids[idx],
            prompt_mask=self.prompt_mask[idx],
            completion_ids=self.completion_ids[idx],
            completion_mask=self.completion_mask[idx],
            old_logprobs=None if self.old_logprobs is None else self.old_logprobs[idx],
            ref_logprobs=None if self.ref_logprobs is None else self.ref_logprobs[idx],
            group_ids=self.group_ids[idx],
            prompts=tuple(self.prompts[i] for i in il),
            completions=tuple(self.completions[i] for i in il),
            engine_logprobs=None if self.engine_logprobs is None else self.engine_logprobs[idx],
        )


@dataclass(frozen=True)
class ScoredBatch:
    """Rewards of one rollout: total and per-component breakdown."""

    total: Tensor  # [B] float, NaN where unscorable
    components: dict[str, Tensor]  # name -> [B]
    info: tuple[dict, ...] = ()  # B per-sample extras (decision, tier...) for logging
    segments: Tensor | None = None  # [B, S, C] per-position component rewards (NaN = absent), for
    # the segment / segment_gdpo advantages; C follows the order of ``segment_names``
    segment_names: tuple[str, ...] = ()

    def component_means(self) -> dict[str, float]:
        return {k: float(torch.nanmean(v.float())) for k, v in self.components.items()}


@dataclass(frozen=True)
class DiffusionRollout:
    """G sampled DDIM trajectories per prompt (S denoising steps), flattened to B rows."""

    latents: Tensor  # [B, S + 1, C, H, W] x_T ... x_0
    log_probs: Tensor  # [B, S] behaviour log-prob of each transition x_t -> x_{t-1}
    timesteps: Tensor  # [S] scheduler timesteps, noisiest first
    prompt_embeds: Tensor  # [B, L, D] text-encoder states
    uncond_embeds: Tensor | None  # [B, L, D] empty-prompt states (classifier-free guidance) or None
    images: Tensor  # [B, 3, H, W] decoded x_0 in [0, 1]
    group_ids: Tensor  # [B] long
    prompts: tuple[str, ...]  # B prompt strings

    def __post_init__(self) -> None:
        b, s = self.log_probs.shape
        if self.latents.shape[:2] != (b, s + 1) or self.timesteps.shape != (s,):
            raise ValueError(f"DiffusionRollout: latents {tuple(self.latents.shape[:2])} / "
                             f"timesteps {tuple(self.timesteps.shape)} do not match log_probs "
                             f"[B={b}, S={s}]")
