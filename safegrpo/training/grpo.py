"""GRPO trainer for LM policies: sample -> score -> advantages -> epochs of clipped updates -> log.

Runs on accelerate (single process or DDP via ``torchrun`` / ``accelerate launch``; FSDP and
ZeRO-3 are not supported yet because generation does not gather sharded weights); each rank
samples its own prompts (seeded by (seed, step, rank)) and DDP averages gradients.
Departures from DeepSeekMath GRPO (arXiv:2402.03300): the aggregation, ratio level and clip
range are configurable (DAPO / Dr. GRPO / GSPO variants), and rows whose advantage is exactly 0
are dropped from the update when beta = 0 (they contribute no gradient).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from torch import Tensor

from safegrpo.advantages import ADVANTAGES, broadcast_segments
from safegrpo.core.types import LMRollout, ScoredBatch
from safegrpo.losses import AGGREGATIONS, KL_ESTIMATORS, grpo_loss
from safegrpo.rewards.shaping import shape_reward
from safegrpo.training.base import RLTrainerBase


class LMTask(Protocol):
    """What a recipe supplies to the GRPO trainer."""

    def sample_prompts(self, step: int, n: int, rank: int) -> list[Any]: ...

    def render(self, item: Any) -> str: ...

    def score(self, items: list[Any], completions: list[str], group_ids: Tensor) -> ScoredBatch: ...


@dataclass(frozen=True)
class GRPOConfig:
    steps: int = 50
    """Number of sample/update iterations."""
    prompts_per_step: int = 8
    """Prompts per step per process."""
    group_size: int = 8
    """G completions per prompt."""
    epochs: int = 1
    """Optimizer passes over each batch (mu in the GRPO paper)."""
    minibatch_size: int = 32
    """Rows per forward/backward pass."""
    grad_accum: int = 1
    """Minibatches accumulated per optimizer step (rows per step = minibatch_size * grad_accum)."""
    lr: float = 1e-4
    """AdamW learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping (0 = off)."""
    advantage: str = "grpo"
    """Advantage estimator: grpo | gdpo | segment."""
    adv_scale: Literal["group", "batch", "none"] = "group"
    """Denominator of the grpo advantage."""
    adv_eps: float = 1e-4
    """Epsilon added to the std."""
    loss_agg: str = "grpo"
    """Loss aggregation: grpo | bnpo | dapo | dr_grpo."""
    ratio_level: Literal["token", "sequence", "item"] = "token"
    """Importance ratio per token, per sequence (GSPO) or per item (segment; needs a segment task)."""
    adv_weights: tuple[float, ...] = ()
    """Component weights of gdpo / segment_gdpo (empty = equal)."""
    clip_eps_low: float = 0.2
    """Lower clip range."""
    clip_eps_high: float = 0.2
    """Upper clip range (> low = DAPO clip-higher)."""
    beta: float = 0.0
    """KL coefficient to the reference (0 = no reference forward)."""
    kl_estimator: str = "k3"
    """KL estimator: k1 | k2 | k3."""
    reward_kl_coef: float = 0.0
    """KL(policy || reference) folded into the reward: -coef * sum_t (logp - ref_logp) per sequence."""
    reward_clip: float = 0.0
    """Clip the total reward to [-c, c] after the KL term (0 = off)."""
    seed: int = 0
    """Seed; per-step sampling seeds derive from (seed, step, rank)."""
    out_dir: str = "runs/grpo"
    """Where metrics, checkpoints and the final policy go."""
    save_every: int = 10
    """Checkpoint period in steps (0 = only at the end)."""
    keep_checkpoints: int = 2
    """Checkpoints kept on disk."""
    tensorboard: bool = True
    """Also write TensorBoard events."""
    early_stop_reward: float | None = None
    """Stop once the mean reward over ``early_stop_window`` steps reaches this."""
    early_stop_window: int = 5
    """Window (steps) of the early-stop reward average."""
    early_stop_max_kl: float | None = None
    """Stop when the KL to the reference exceeds this (needs beta > 0)."""
    device: str = "cpu"
    """cpu | cuda (under accelerate launch the process's device is used)."""
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    """Autocast of the policy forward. Passed explicitly so a process-wide accelerate state left
    by another library (TRL leaves bf16) can never change it silently."""

    def __post_init__(self) -> None:
        for name in ("steps", "prompts_per_step", "group_size", "epochs", "minibatch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.group_size < 2:
            raise ValueError("group_size must be >= 2 (group-relative advantages need mates)")
        ADVANTAGES.get(self.advantage)
        AGGREGATIONS.get(self.loss_agg)
        KL_ESTIMATORS.get(self.kl_estimator)
        if self.ratio_level == "item" and self.advantage not in ("segment", "segment_gdpo"):
            raise ValueError("ratio_level='item' needs a segment advantage (segment | segment_gdpo)")
        if self.reward_kl_coef < 0 or self.reward_clip < 0:
            raise ValueError("reward_kl_coef and reward_clip must be >= 0")
        if self.beta < 0 or self.lr <= 0 or self.clip_eps_low <= 0 or self.clip_eps_high <= 0:
            raise ValueError("beta must be >= 0; lr and clip ranges must be > 0")


def check_engine(distributed_type: str, zero_stage: int | None = None) -> None:
    """Refuse engines that shard weights: rollouts call ``generate`` on the unwrapped model, which
    would see only this rank's shard (FSDP, DeepSpeed ZeRO-3)."""
    if distributed_type == "FSDP" or (distributed_type == "DEEPSPEED" and zero_stage == 3):
        what = "FSDP" if distributed_type == "FSDP" else "DeepSpeed ZeRO-3"
        raise ValueError(f"{what} shards the weights and GRPO generation does not gather them yet; "
                         "use DDP (accelerate launch --multi_gpu) or DeepSpeed ZeRO-1/2")


def check_accelerator(accelerator) -> None:
    ds = accelerator.state.deepspeed_plugin
    check_engine(str(accelerator.distributed_type).rsplit(".", 1)[-1], ds.zero_stage if ds is not None else None)


class GRPOTrainer(RLTrainerBase):
    def __init__(self, policy, task: LMTask, cfg: GRPOConfig,
                 on_step: Callable[[int, dict[str, Any]], None] | None = None):
        from accelerate import Accelerator

        self.policy, self.task, self.cfg, self.on_step = policy, task, cfg, on_step
        self.accelerator = Accelerator(cpu=cfg.device == "cpu", mixed_precision=cfg.mixed_precision)
        check_accelerator(self.accelerator)
        opt = torch.optim.AdamW(policy.trainable_parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.model, self.opt = self.accelerator.prepare(policy.model, opt)
        self.init_loop(cfg)

    @property
    def unwrapped(self):
        return self.accelerator.unwrap_model(self.model)

    # ---- rollout & scoring -------------------------------------------------------------
    def collect(self, step: int) -> tuple[LMRollout, ScoredBatch, list[Any], float]:
        cfg, rank = self.cfg, self.accelerator.process_index
        items = self.task.sample_prompts(step, cfg.prompts_per_step, rank)
        t0 = time.perf_counter()
        ro = self.policy.rollout([self.task.render(i) for i in items], cfg.group_size,
                                 seed=cfg.seed * 1_000_003 + step * 997 + rank,
                                 need_ref=cfg.beta > 0 or cfg.reward_kl_coef > 0,
                                 group_offset=rank * cfg.prompts_per_step, model=self.unwrapped)
        gen_time = time.perf_counter() - t0
        rep_items = [i for i in items for _ in range(cfg.group_size)]
        scored = self.task.score(rep_items, list(ro.completions), ro.group_ids.cpu())
        if cfg.reward_kl_coef > 0 or cfg.reward_clip > 0:
            kl = None
            if ro.ref_logprobs is not None:
                kl = ((ro.old_logprobs - ro.ref_logprobs) * ro.completion_mask).sum(1)  # [B] k1, summed
            scored = shape_reward(scored, kl, cfg.reward_kl_coef, cfg.reward_clip)
        return ro, scored, rep_items, gen_time

    def advantages(self, scored: ScoredBatch, group_ids: Tensor, ro: LMRollout | None = None):
        cfg = self.cfg
        weights = cfg.adv_weights or None
        if cfg.advantage in ("segment", "segment_gdpo"):
            return self.segment_advantages(scored, group_ids, ro, weights)
        if cfg.advantage == "grpo":
            return ADVANTAGES.get("grpo")(scored.total, group_ids, scale=cfg.adv_scale, eps=cfg.adv_eps)
        if cfg.advantage == "gdpo":
            keys = [k for k in scored.components if not k.startswith("judge/")]
            return ADVANTAGES.get("gdpo")(torch.stack([scored.components[k] for k in keys], 1),
                                          group_ids, weights=weights, eps=cfg.adv_eps)
        raise ValueError(f"unknown advantage {cfg.advantage!r}")

    def segment_advantages(self, scored: ScoredBatch, group_ids: Tensor, ro: LMRollout | None, weights):
        """Per-segment (e.g. per-rank) advantages broadcast to tokens -> AdvantageResult with [B, T]."""
        from safegrpo.core.types import AdvantageResult

        cfg = self.cfg
        if scored.segments is None or ro is None or not hasattr(self.task, "segment_map"):
            raise ValueError(f"advantage {cfg.advantage!r} needs a task that returns per-segment rewards "
                             "(ScoredBatch.segments) and implements segment_map(rollout)")
        seg_r = scored.segments.float()  # [B, S, C]
        self._segmap = self.task.segment_map(ro).cpu()  # [B, T]
        if cfg.advantage == "segment":
            summed = torch.where(torch.isnan(seg_r).all(-1), torch.full_like(seg_r[..., 0], float("nan")),
                                 torch.nansum(seg_r * (torch.ones(seg_r.shape[-1]) if weights is None
                                                       else torch.as_tensor(weights)), dim=-1))
            res = ADVANTAGES.get("segment")(summed, group_ids, scale=cfg.adv_scale, eps=cfg.adv_eps)
        else:
            res = ADVANTAGES.get("segment_gdpo")(seg_r, group_ids, weights=weights, eps=cfg.adv_eps)
        tok = broadcast_segments(res.advantages, self._segmap)
        return AdvantageResult(tok, res.valid, res.stats)

    # ---- optimisation ------------------------------------------------------------------
    def optimize(self, ro: LMRollout, adv: Tensor, valid: Tensor, step: int = 0) -> dict[str, float]:
        """``epochs`` passes; each optimizer step covers ``grad_accum`` minibatches of rows."""
        cfg = self.cfg
        nonzero = (adv != 0).any(dim=-1) if adv.dim() == 2 else adv != 0
        rows = (valid & (nonzero | (cfg.beta > 0))).nonzero().flatten()
        if rows.numel() == 0:
            return {"rows_trained": 0.0}
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for epoch in range(cfg.epochs):
            g = torch.Generator().manual_seed(cfg.seed * 7919 + step * 31 + epoch)
            perm = rows[torch.randperm(rows.numel(), generator=g)]
            mbs = list(perm.split(cfg.minibatch_size))
            for w in range(0, len(mbs), cfg.grad_accum):
                window = mbs[w:w + cfg.grad_accum]
                metrics = self._update(ro, adv, window, with_entropy=epoch == 0)
                for k, v in metrics.items():
                    sums[k] = sums.get(k, 0.0) + v
                    counts[k] = counts.get(k, 0) + 1
        out = {(k if "/" in k else f"loss/{k}"): v / counts[k] for k, v in sums.items()}
        out["rows_trained"] = float(rows.numel())
        return out

    def _update(self, ro: LMRollout, adv: Tensor, window: list[Tensor], with_entropy: bool) -> dict[str, float]:
        """One optimizer step over the minibatches in ``window`` (gradient accumulation)."""
        cfg, dev = self.cfg, self.accelerator.device
        win_rows = sum(int(i.numel()) for i in window)
        # dapo: token-mean over the whole accumulation window (arXiv:2503.14476)
        win_tokens = float(sum(ro.completion_mask[i.to(ro.completion_mask.device)].sum() for i in window))
        sums: dict[str, float] = {}
        for idx in window:
            mb = ro.select(idx.to(ro.completion_ids.device))
            logp, ent = self.policy.logprobs(mb.prompt_ids, mb.prompt_mask, mb.completion_ids,
                                             mb.completion_mask, model=self.model, with_entropy=with_entropy)
            out = grpo_loss(logp, mb.old_logprobs, adv[idx].to(dev), mb.completion_mask,
                            ref_logp=mb.ref_logprobs, beta=cfg.beta, kl_estimator=cfg.kl_estimator,
                            eps_low=cfg.clip_eps_low, eps_high=cfg.clip_eps_high,
                            ratio_level=cfg.ratio_level, agg=cfg.loss_agg, segment_map=self._segment_rows(idx),
                            num_tokens=win_tokens, max_len=self.policy.cfg.max_new_tokens)
            share = idx.numel() / win_rows
            self.accelerator.backward(out.loss if cfg.loss_agg == "dapo" else out.loss * share)
            if ent is not None:
                m = mb.completion_mask.float()
                out.metrics["policy/entropy"] = float((ent.detach() * m).sum() / m.sum().clamp(min=1))
            for k, v in out.metrics.items():
                sums[k] = sums.get(k, 0.0) + v * share
        if cfg.max_grad_norm > 0:
            sums["grad_norm"] = float(self.accelerator.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm))
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return sums

    def _segment_rows(self, idx: Tensor) -> Tensor | None:
        if self.cfg.ratio_level != "item":
            return None
        return self._segmap[idx.cpu()].to(self.accelerator.device)  # set by segment_advantages

    # ---- loop --------------------------------------------------------------------------
    def step(self, step: int) -> dict[str, Any]:
        t0 = time.perf_counter()
        ro, scored, items, gen_time = self.collect(step)
        res = self.advantages(scored, ro.group_ids.cpu(), ro)
        metrics = self.optimize(ro, res.advantages, res.valid, step)
        n_tok = float(ro.completion_mask.sum())
        wall = time.perf_counter() - t0
        metrics.update({
            "reward/total": float(torch.nanmean(scored.total)),
            "reward/std": float(scored.total[~torch.isnan(scored.total)].std()) if scored.total.numel() > 1 else 0.0,
            **{f"reward/{k}": v for k, v in scored.component_means().items()},
            **{f"adv/{k}": v for k, v in res.stats.items()},
            "policy/completion_len": n_tok / ro.batch_size,
            "perf/gen_tokens_per_s": n_tok / max(gen_time, 1e-9),
            "perf/tokens_per_s": n_tok / max(wall, 1e-9),
            "perf/step_time_s": wall,
        })
        for k, v in extra_info_metrics(scored).items():
            metrics[k] = v
        return metrics

    # ---- checkpoint payload (the loop, early stop and resume live in RLTrainerBase) ----
    def save_payload(self, d: Path) -> None:
        self.policy.save(d / "policy", model=self.unwrapped)
        torch.save(self.opt.state_dict(), d / "optimizer.pt")

    def load_payload(self, d: Path) -> None:
        self.policy.load_trainable(d / "policy")
        self.opt.load_state_dict(torch.load(d / "optimizer.pt", weights_only=False))


def extra_info_metrics(scored: ScoredBatch) -> dict[str, float]:
    """Decision mix per batch from ScoredBatch.info rows carrying a 'decision' key."""
    decisions = [i.get("decision") for i in scored.info if isinstance(i, dict) and "decision" in i]
    if not decisions:
        return {}
    return {f"decision/{d}": decisions.count(d) / len(decisions) for d in sorted(set(decisions))}
