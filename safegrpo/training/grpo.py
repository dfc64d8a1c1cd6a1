"""GRPO trainer for LM policies: sample -> score -> advantages -> epochs of clipped updates -> log.

Runs on accelerate (single process or DDP via ``torchrun`` / ``accelerate launch``; FSDP and
ZeRO-3 are not supported yet because generation does not gather sharded weights); each rank
samples its own prompts (seeded by (seed, step, rank)) and DDP averages gradients.
Departures from DeepSeekMath GRPO (arXiv:2402.03300): the aggregation, ratio level and clip
range are configurable (DAPO / Dr. GRPO / GSPO variants), and rows whose advantage is exactly 0
are dropped from the update when beta = 0 (they contribute no gradient); under DDP the ranks
still run the same number of backward passes and optimizer steps (see ``optimize``).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from safegrpo.advantages import ADVANTAGES, AdvantageOptions, RewardBatch, broadcast_segments
from safegrpo.core.types import AdvantageResult, LMRollout, ScoredBatch
from safegrpo.losses import entropy_mask, grpo_loss, minibatch_weight, truncated_rows
from safegrpo.losses.importance import combine_weights, engine_correction
from safegrpo.policies.peft_base import anchor_adapter
from safegrpo.rewards.shaping import segment_kl, shape_reward
from safegrpo.training.base import (  # noqa: F401 (check_engine re-exported)
    RLTrainerBase,
    check_accelerator,
    check_engine,
    fill_unset,
    make_accelerator,
)
from safegrpo.training.checkpoint import save_torch
from safegrpo.training.grpo_config import GRPOConfig, LMTask
from safegrpo.training.hooks import TrainerHooks


class GRPOTrainer(RLTrainerBase):
    def __init__(self, policy, task: LMTask, cfg: GRPOConfig, hooks: TrainerHooks | None = None):
        cfg = fill_unset(cfg, seed=0, out_dir="runs/grpo")
        self.policy, self.task, self.cfg = policy, task, cfg
        self.accelerator = make_accelerator(cfg)
        check_accelerator(self.accelerator)
        opt = torch.optim.AdamW(
            policy.trainable_parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        self.model, self.opt = self.accelerator.prepare(policy.model, opt)
        # one optimizer step per batch, taken from the sampling policy: the behaviour log-probs
        # equal the update's own (detached), so the rollout skips that forward (as TRL does)
        self.reuse_logprobs = (cfg.epochs == 1 and cfg.reward_kl_coef == 0 and cfg.prompts_per_step
                               * cfg.group_size <= cfg.minibatch_size * cfg.grad_accum)
        if cfg.beta > 0 or cfg.reward_kl_coef > 0:
            # the reference is the policy as it starts, before resume() loads a checkpoint
            policy.prepare_reference(self.unwrapped)
        self.init_loop(cfg, hooks)

    @property
    def engine_differs(self) -> bool:
        """Whether the rollout engine samples from something other than the trainer's module
        (then its log-probs are requested and the mismatch is logged)."""
        eng = self.policy.cfg.engine
        return eng.name != "hf" or eng.gen_dtype != "policy" or eng.merge_lora

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
                                 group_offset=rank * cfg.prompts_per_step, model=self.unwrapped,
                                 need_old=not self.reuse_logprobs,
                                 engine_logprobs=self.engine_differs or cfg.engine_is_cap > 0)
        gen_time = time.perf_counter() - t0
        rep_items = [i for i in items for _ in range(cfg.group_size)]
        scored = self.task.score(rep_items, list(ro.completions), ro.group_ids.cpu())
        if self.accelerator.is_main_process:
            for writer in self.hooks.artifacts:
                writer.write(step, rep_items, list(ro.completions), scored)
        if cfg.reward_kl_coef > 0 or cfg.reward_clip > 0:
            kl = None
            if cfg.reward_kl_coef > 0:  # both log-probs are recorded then (see __init__)
                # [B] k1, summed
                kl = ((ro.old_logprobs - ro.ref_logprobs) * ro.completion_mask).sum(1)
            scored = shape_reward(scored, kl, cfg.reward_kl_coef, cfg.reward_clip)
        return ro, scored, rep_items, gen_time

    def advantages(self, scored: ScoredBatch, group_ids: Tensor, ro: LMRollout | None = None):
        """The configured estimator on what the task scored (one signature for every estimator:
        ``safegrpo.advantages.estimators``); per-segment advantages are broadcast to tokens with
        the task's segment map -> AdvantageResult with [B] or [B, T] advantages."""
        cfg = self.cfg
        est = ADVANTAGES.get(cfg.advantage)
        segmap, seg_kl = None, None
        if getattr(self.task, "reward_shape", "components") == "segments":
            if ro is None:
                raise ValueError("a segments task needs the rollout for its segment map")
            segmap = self.task.segment_map(ro).cpu()  # [B, T]
            if cfg.reward_kl_coef > 0 and scored.segments is not None:
                kl_tok = (ro.old_logprobs - ro.ref_logprobs) * ro.completion_mask
                seg_kl = segment_kl(kl_tok, segmap, scored.segments.shape[1])
        keys = [k for k in scored.components if not k.startswith("judge/")]
        comps = torch.stack([scored.components[k] for k in keys], 1) if keys else None
        batch = RewardBatch(scored.total, group_ids, comps, scored.segments, seg_kl)
        opts = AdvantageOptions(cfg.adv_scale, cfg.adv_eps, cfg.adv_weights or None,
                                cfg.reward_kl_coef, cfg.reward_clip)
        res = est(batch, opts)
        self._segmap = segmap
        if not est.per_segment:
            return res
        if segmap is None:
            raise ValueError(f"advantage {cfg.advantage!r} needs a task with reward_shape "
                             "'segments' and a segment_map(rollout)")
        return AdvantageResult(broadcast_segments(res.advantages, segmap), res.valid, res.stats)

    # ---- optimisation ------------------------------------------------------------------
    def optimize(
        self, ro: LMRollout, adv: Tensor, valid: Tensor, step: int = 0
    ) -> dict[str, float]:
        """``epochs`` passes; each optimizer step covers ``grad_accum`` minibatches of rows.

        Rows with nothing to learn (advantage 0 and beta = 0, or an unscorable reward) are skipped.
        Under DDP every rank must run as many backward passes and optimizer steps as the others
        (each backward is a collective), so the ranks agree on the largest minibatch count and a
        rank with fewer live rows pads with zero-weight minibatches: their gradient is exactly 0
        and the DDP average is what it would be had that rank's rows carried advantage 0."""
        cfg = self.cfg
        nonzero = (adv != 0).any(dim=-1) if adv.dim() == 2 else adv != 0
        rows = (valid & (nonzero | (cfg.beta > 0))).nonzero().flatten()
        n_mb = self.all_max(math.ceil(rows.numel() / cfg.minibatch_size))
        if n_mb == 0:
            return {"rows_trained": 0.0}
        filler = torch.arange(min(cfg.minibatch_size, adv.shape[0]))
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for epoch in range(cfg.epochs):
            g = torch.Generator().manual_seed(cfg.seed * 7919 + step * 31 + epoch)
            perm = rows[torch.randperm(rows.numel(), generator=g)]
            mbs = [(i, 1.0) for i in perm.split(cfg.minibatch_size)] if rows.numel() else []
            mbs += [(filler, 0.0)] * (n_mb - len(mbs))
            for w in range(0, n_mb, cfg.grad_accum):
                metrics = self._update(ro, adv, mbs[w:w + cfg.grad_accum],
                                       with_entropy=epoch == 0 or cfg.top_entropy_quantile < 1)
                for k, v in metrics.items():
                    sums[k] = sums.get(k, 0.0) + v
                    counts[k] = counts.get(k, 0) + 1
        out = {(k if "/" in k else f"loss/{k}"): v / counts[k] for k, v in sums.items()}
        out["rows_trained"] = float(rows.numel())
        return out

    def _update(self, ro: LMRollout, adv: Tensor, window: list[tuple[Tensor, float]],
                with_entropy: bool) -> dict[str, float]:
        """One optimizer step over the (rows, weight) minibatches in ``window`` (gradient
        accumulation); weight-0 minibatches only keep the ranks in step. Returns the metrics of
        the live minibatches (none when there are none)."""
        cfg, dev = self.cfg, self.accelerator.device
        mask = ro.completion_mask
        live = [i for i, w in window if w > 0]
        win_rows = sum(int(i.numel()) for i in live)
        # dapo: token-mean over the whole accumulation window (arXiv:2503.14476)
        win_tokens = float(sum(float(mask[i.to(mask.device)].sum()) for i in live))
        sums: dict[str, float] = {}
        for idx, weight in window:
            mb = ro.select(idx.to(ro.completion_ids.device))
            out, ent = self._loss(mb, adv[idx].to(dev), idx, win_tokens, with_entropy)
            n_tok = float(mb.completion_mask.sum())
            share = weight * minibatch_weight(cfg.loss_agg, idx.numel(), n_tok, win_rows,
                                              win_tokens)
            self.accelerator.backward(out.loss * share)
            if weight == 0:
                continue
            if ent is not None:
                m = mb.completion_mask.float()
                out.metrics["policy/entropy"] = float(
                    (ent.detach() * m).sum() / m.sum().clamp(min=1)
                )
            for k, v in out.metrics.items():  # metrics are averaged by rows whatever the loss
                sums[k] = sums.get(k, 0.0) + v * idx.numel() / win_rows
        if cfg.max_grad_norm > 0:
            norm = self.accelerator.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
            if live:
                sums["grad_norm"] = float(norm)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.policy.weights_changed(base=not self.policy.uses_lora)
        return sums

    def _loss(self, mb: LMRollout, adv: Tensor, idx: Tensor, win_tokens: float,
              with_entropy: bool):
        """The GRPO loss of one minibatch -> (LossOutput, entropy [b, T] or None)."""
        cfg = self.cfg
        logp, ent = self.policy.logprobs(mb.prompt_ids, mb.prompt_mask, mb.completion_ids,
                                         mb.completion_mask, model=self.model,
                                         with_entropy=with_entropy)
        old = logp.detach() if mb.old_logprobs is None else mb.old_logprobs
        is_w, eng_metrics = engine_correction(old, mb.engine_logprobs, mb.completion_mask,
                                              cfg.engine_is_cap)
        out = grpo_loss(
            logp, old, adv, mb.completion_mask, ref_logp=mb.ref_logprobs, beta=cfg.beta,
            kl_estimator=cfg.kl_estimator, eps_low=cfg.clip_eps_low, eps_high=cfg.clip_eps_high,
            ratio_level=cfg.ratio_level, agg=cfg.loss_agg, segment_map=self._segment_rows(idx),
            num_tokens=max(win_tokens, 1.0), max_len=self.policy.cfg.max_new_tokens,
            token_weights=combine_weights(is_w, self._forking(ent, mb.completion_mask)),
        )
        out.metrics.update(eng_metrics)
        return out, ent

    def _forking(self, ent: Tensor | None, mask: Tensor) -> Tensor | None:
        """top_entropy_quantile < 1: train only on the minibatch's highest-entropy tokens."""
        q = self.cfg.top_entropy_quantile
        return None if q >= 1 or ent is None else entropy_mask(ent.detach(), mask, q)

    def _segment_rows(self, idx: Tensor) -> Tensor | None:
        if self.cfg.ratio_level != "item":
            return None
        return self._segmap[idx.cpu()].to(self.accelerator.device)  # set by segment_advantages

    # ---- loop --------------------------------------------------------------------------
    def step(self, step: int) -> dict[str, Any]:
        t0 = time.perf_counter()
        ro, scored, items, gen_time = self.collect(step)
        res = self.advantages(scored, ro.group_ids.cpu(), ro)
        cut = truncated_rows(ro.completion_ids, ro.completion_mask,
                             self.policy.tokenizer.eos_token_id,
                             self.policy.cfg.max_new_tokens).cpu()
        # TRL's mask_truncated_completions: advantages use every row, the loss only ended ones
        valid = res.valid & ~cut if self.cfg.mask_truncated_completions else res.valid
        metrics = self.optimize(ro, res.advantages, valid, step)
        metrics["policy/truncated_frac"] = float(cut.float().mean())
        n_tok = float(ro.completion_mask.sum())
        wall = time.perf_counter() - t0
        metrics.update(
            {
                "reward/total": float(torch.nanmean(scored.total)),
                "reward/std": float(scored.total[~torch.isnan(scored.total)].std())
                if scored.total.numel() > 1
                else 0.0,
                **{f"reward/{k}": v for k, v in scored.component_means().items()},
                **{f"adv/{k}": v for k, v in res.stats.items()},
                "policy/completion_len": n_tok / ro.batch_size,
                "perf/gen_tokens_per_s": n_tok / max(gen_time, 1e-9),
                "perf/tokens_per_s": n_tok / max(wall, 1e-9),
                "perf/step_time_s": wall,
            }
        )
        for k, v in extra_info_metrics(scored).items():
            metrics[k] = v
        return metrics

    # ---- checkpoint payload (the loop, early stop and resume live in RLTrainerBase) ----
    def save_payload(self, d: Path) -> None:
        self.policy.save(d / "policy", model=self.unwrapped)
        save_torch(self.opt.state_dict(), d / "optimizer.pt")
        # plain peft loads the adapter over the SFT-merged weights it was trained on
        anchor_adapter(d / "policy", self.unwrapped, self.policy.tokenizer, self.policy.cfg.model,
                       self.policy.merged, d.parent / "merged_base")

    def load_payload(self, d: Path) -> None:
        self.policy.load_trainable(d / "policy")
        self.opt.load_state_dict(torch.load(d / "optimizer.pt", weights_only=True))


def extra_info_metrics(scored: ScoredBatch) -> dict[str, float]:
    """Decision mix per batch from ScoredBatch.info rows carrying a 'decision' key."""
    decisions = [i.get("decision") for i in scored.info if isinstance(i, dict) and "decision" in i]
    if not decisions:
        return {}
    return {f"decision/{d}": decisions.count(d) / len(decisions) for d in sorted(set(decisions))}

