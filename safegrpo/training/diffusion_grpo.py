"""Online GRPO for diffusion policies (DDPO / Flow-GRPO style, arXiv:2305.13301, 2505.05470).

Per step: G DDIM trajectories per prompt (eta > 0) -> image reward -> group-normalised
advantages clipped to +-adv_clip -> for each epoch, a random ``timestep_fraction`` of each
trajectory's transitions is re-scored and optimised with the per-timestep clipped surrogate,
plus beta * KL(N(mu_theta, s^2) || N(mu_ref, s^2)) when beta > 0. Same loop, checkpointing,
resume and logging as the LM trainer (``RLTrainerBase``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from torch import Tensor

from safegrpo.advantages import grpo_advantages
from safegrpo.core.types import DiffusionRollout, ScoredBatch
from safegrpo.losses import grpo_loss
from safegrpo.policies.diffusion.ddim_logprob import gaussian_mean_kl, transition_std
from safegrpo.training.base import RLTrainerBase, check_accelerator, fill_unset, make_accelerator
from safegrpo.training.checkpoint import save_torch
from safegrpo.training.hooks import TrainerHooks
from safegrpo.training.loop_config import LoopConfig


class DiffusionTask(Protocol):
    def sample_prompts(self, step: int, n: int, rank: int) -> list[str]: ...

    def score(self, prompts: list[str], images: Tensor, group_ids: Tensor) -> ScoredBatch: ...


@dataclass(frozen=True)
class DiffusionGRPOConfig(LoopConfig):
    steps: int = 50
    """Sample/update iterations."""
    prompts_per_step: int = 4
    """Prompts per step per process."""
    group_size: int = 4
    """G images per prompt."""
    epochs: int = 1
    """Passes over each batch's transitions."""
    minibatch_size: int = 16
    """(trajectory, timestep) pairs per optimizer step."""
    lr: float = 1e-4
    """AdamW learning rate."""
    max_grad_norm: float = 1.0
    """Gradient clipping (0 = off)."""
    adv_scale: Literal["group", "batch", "none"] = "group"
    """Advantage denominator."""
    adv_clip: float = 5.0
    """Advantages are clipped to [-adv_clip, adv_clip]."""
    clip_range: float = 1e-4
    """PPO clip range of the per-timestep ratio (DDPO's 1e-4 suits mean-over-dims log-probs)."""
    beta: float = 0.0
    """Weight of the Gaussian-mean KL to the reference (0 = off)."""
    timestep_fraction: float = 1.0
    """Share of each trajectory's transitions trained per epoch."""
    def __post_init__(self) -> None:
        super().__post_init__()
        if (
            min(self.steps, self.prompts_per_step, self.epochs, self.minibatch_size) < 1
            or self.group_size < 2
        ):
            raise ValueError(
                "steps, prompts_per_step, epochs, minibatch_size >= 1 and group_size >= 2 required"
            )
        if (
            not 0 < self.timestep_fraction <= 1
            or self.clip_range <= 0
            or self.adv_clip <= 0
            or self.beta < 0
        ):
            raise ValueError(
                "timestep_fraction in (0, 1], clip_range > 0, adv_clip > 0, beta >= 0 required"
            )


class DiffusionGRPOTrainer(RLTrainerBase):
    progress_label = "diffusion GRPO"

    def __init__(self, policy, task: DiffusionTask, cfg: DiffusionGRPOConfig,
                 hooks: TrainerHooks | None = None):
        cfg = fill_unset(cfg, seed=0, out_dir="runs/diffusion_grpo")
        self.policy, self.task, self.cfg = policy, task, cfg
        self.accelerator = make_accelerator(cfg)
        check_accelerator(self.accelerator)
        opt = torch.optim.AdamW(policy.trainable_parameters(), lr=cfg.lr)
        self.unet, self.opt = self.accelerator.prepare(policy.unet, opt)
        if cfg.beta > 0:  # the reference: the starting UNet, frozen before resume() loads anything
            policy.prepare_reference(self.accelerator.unwrap_model(self.unet))
        # deterministic DDIM steps (std 0) have log-prob 0 and no gradient: never train on them
        self.train_steps = (
            (transition_std(policy.scheduler, policy.cfg.eta) > 0).nonzero().flatten()
        )
        if self.train_steps.numel() == 0:
            raise ValueError(
                "every DDIM step is deterministic at this eta / num_steps: nothing to train"
            )
        self.init_loop(cfg, hooks)

    def collect(self, step: int) -> tuple[DiffusionRollout, ScoredBatch, float]:
        cfg, rank = self.cfg, self.accelerator.process_index
        prompts = self.task.sample_prompts(step, cfg.prompts_per_step, rank)
        t0 = time.perf_counter()
        ro = self.policy.rollout(
            prompts,
            cfg.group_size,
            seed=cfg.seed * 1_000_003 + step * 997 + rank,
            group_offset=rank * cfg.prompts_per_step,
        )
        gen = time.perf_counter() - t0
        return ro, self.task.score(list(ro.prompts), ro.images, ro.group_ids), gen

    def pairs(self, b: int, steps: Tensor, step: int, epoch: int) -> tuple[Tensor, Tensor]:
        """Shuffled (row [n], timestep index [n]) pairs: ``timestep_fraction`` of the trainable
        step indices ``steps`` [S'] for each of the b rows."""
        g = torch.Generator().manual_seed(self.cfg.seed * 7919 + step * 31 + epoch)
        k = max(1, math.ceil(self.cfg.timestep_fraction * steps.numel()))
        # [B, k]
        js = torch.stack([steps[torch.randperm(steps.numel(), generator=g)[:k]] for _ in range(b)])
        rows = torch.arange(b).unsqueeze(1).expand(b, k)
        perm = torch.randperm(b * k, generator=g)
        return rows.flatten()[perm], js.flatten()[perm]

    def update(self, ro: DiffusionRollout, adv: Tensor, rows: Tensor, js: Tensor,
               weight: float = 1.0) -> dict[str, float]:
        """One optimizer step on the (row, timestep) pairs; ``weight`` 0 only keeps DDP ranks in
        step (zero gradient)."""
        cfg = self.cfg
        lp, mean, std = self.policy.step_logprob(self.unet, ro, rows, js)
        old = ro.log_probs[rows, js]
        kl = None
        if cfg.beta > 0:
            with torch.no_grad(), self.policy.reference() as ref:
                _, ref_mean, _ = self.policy.step_logprob(ref, ro, rows, js)
            kl = gaussian_mean_kl(mean, ref_mean, std).unsqueeze(1)  # [n, 1]
        # the LM trainer's loss, each (row, timestep) pair one "token": mean over pairs
        out = grpo_loss(lp.unsqueeze(1), old.unsqueeze(1), adv[rows], torch.ones_like(lp)[:, None],
                        beta=cfg.beta, kl_term=kl, eps_low=cfg.clip_range, agg="bnpo")
        loss, m = out.loss, out.metrics
        self.accelerator.backward(loss * weight)
        if cfg.max_grad_norm > 0:
            m["grad_norm"] = float(
                self.accelerator.clip_grad_norm_(self.unet.parameters(), cfg.max_grad_norm)
            )
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return m

    def step(self, step: int) -> dict[str, Any]:
        cfg = self.cfg
        t0 = time.perf_counter()
        ro, scored, gen = self.collect(step)
        res = grpo_advantages(scored.total, ro.group_ids, scale=cfg.adv_scale)
        adv = res.advantages.clamp(-cfg.adv_clip, cfg.adv_clip).to(self.accelerator.device)
        sums: dict[str, float] = {}
        n = 0
        b = ro.log_probs.shape[0]
        mb = cfg.minibatch_size
        for epoch in range(cfg.epochs):
            rows, js = self.pairs(b, self.train_steps, step, epoch)
            keep = res.valid[rows]
            filler = (rows[:mb], js[:mb])  # weight-0 pairs: every rank runs as many updates
            rows, js = rows[keep], js[keep]
            n_mb = self.all_max(math.ceil(rows.numel() / mb))
            for i in range(n_mb):
                if i * mb >= rows.numel():
                    self.update(ro, adv, *filler, weight=0.0)
                    continue
                sl = slice(i * mb, (i + 1) * mb)
                for k, v in self.update(ro, adv, rows[sl], js[sl]).items():
                    sums[k] = sums.get(k, 0.0) + v
                n += 1
        wall = time.perf_counter() - t0
        return {
            "reward/total": float(torch.nanmean(scored.total)),
            **{f"reward/{k}": v for k, v in scored.component_means().items()},
            **{f"adv/{k}": v for k, v in res.stats.items()},
            **{f"loss/{k}": v / max(n, 1) for k, v in sums.items()},
            "perf/images_per_s": b / max(gen, 1e-9), "perf/step_time_s": wall,
        }

    def save_payload(self, d: Path) -> None:
        self.policy.save(d / "policy")
        save_torch(self.opt.state_dict(), d / "optimizer.pt")

    def load_payload(self, d: Path) -> None:
        self.policy.load_trainable(d / "policy")
        self.opt.load_state_dict(torch.load(d / "optimizer.pt", weights_only=True))
