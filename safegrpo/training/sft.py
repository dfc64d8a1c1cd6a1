"""Supervised warm start on (prompt, target) pairs: cross-entropy on target tokens (+ EOS) only.

``eval_fn(policy) -> dict`` runs after each epoch (the moderation recipe reports the JSON parse
rate of greedy completions). The result is saved with save_pretrained: a LoRA adapter (to be
merged as the GRPO reference via ``init_adapter``) or, with lora.r = 0, full weights.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from safegrpo.core.progress import phase
from safegrpo.training.base import fill_unset, make_scheduler
from safegrpo.training.logging import MetricLogger
from safegrpo.training.loop_config import check_schedule_name


@dataclass(frozen=True)
class SFTConfig:
    epochs: int = 3
    """Passes over the pairs."""
    batch_size: int = 16
    """Pairs per optimizer step."""
    lr: float = 5e-4
    """AdamW learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping (0 = off)."""
    lr_scheduler: str = "constant"
    """transformers scheduler name over all the SFT steps (constant, linear, cosine, ...). With a
    constant rate the adapter ends wherever the last few batches pushed it; a decaying one
    averages over the whole data."""
    warmup_ratio: float = 0.0
    """Share of the SFT steps spent warming the rate up from 0."""
    seed: int | None = None
    """Shuffling seed. None: the recipe's master seed (0 when used on its own)."""
    out_dir: str | None = None
    """Where metrics and the trained adapter/model go. None: a folder under the recipe's out_dir
    (runs/sft when used on its own)."""

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("sft.epochs and sft.batch_size must be >= 1 and sft.lr > 0")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"sft.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        check_schedule_name(self.lr_scheduler, "sft.lr_scheduler")


def collate(tokenizer, pairs: Sequence[tuple[str, str]], max_prompt_tokens: int,
            encode: Callable[[str], list[int]] | None = None):
    """-> input_ids [B, L], attention_mask [B, L], labels [B, L] (-100 outside targets).
    ``encode`` turns a prompt into ids exactly as generation will (the policy's chat template);
    by default the raw prompt with the tokenizer's special tokens."""
    rows = []
    for prompt, target in pairs:
        p = (encode(prompt) if encode else tokenizer(prompt, add_special_tokens=True)["input_ids"])
        p = p[-max_prompt_tokens:]
        t = tokenizer(target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append((p, t))
    length = max(len(p) + len(t) for p, t in rows)
    ids = torch.full((len(rows), length), tokenizer.pad_token_id)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    labels = torch.full((len(rows), length), -100)
    for i, (p, t) in enumerate(rows):
        seq = p + t
        ids[i, :len(seq)] = torch.tensor(seq)
        mask[i, :len(seq)] = 1
        labels[i, len(p):len(seq)] = torch.tensor(t)
    return ids, mask, labels


def sft_loss(model, ids, mask, labels) -> torch.Tensor:
    """Mean cross-entropy of the target tokens; ids, mask, labels [B, L] (labels -100 elsewhere).
    Only the positions from the earliest target on go through the LM head (a 49k-vocabulary head
    over every prompt position costs as much as several decoder layers)."""
    is_target = (labels[:, 1:] != -100).any(0).nonzero()
    first = int(is_target[0]) if len(is_target) else labels.shape[1] - 1
    keep = labels.shape[1] - first  # logits for positions first .. L-1
    logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep).logits[:, :-1].float()
    tgt = labels[:, first + 1:]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=-100)


def sft_train(policy, pairs: Sequence[tuple[str, str]], cfg: SFTConfig,
              eval_fn: Callable[[Any], dict[str, float]] | None = None,
              label: str = "SFT") -> list[dict[str, Any]]:
    """Supervised fine-tuning on (prompt, target) pairs; ``label`` names its progress display."""
    if not pairs:
        raise ValueError("sft_train needs at least one (prompt, target) pair")
    cfg = fill_unset(cfg, seed=0, out_dir="runs/sft")
    model = policy.model
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                            weight_decay=cfg.weight_decay)
    logger = MetricLogger(cfg.out_dir)  # metrics.jsonl only
    logger.start(0)  # a rerun replaces the records of an earlier (or killed) one
    rng = random.Random(cfg.seed)
    order = list(pairs)
    history, step = [], 0
    per_epoch = -(-len(order) // cfg.batch_size)
    sched = make_scheduler(opt, cfg, steps=cfg.epochs * per_epoch)
    with phase(label, cfg.epochs * per_epoch) as bar:
        for epoch in range(cfg.epochs):
            step = _epoch(policy, (opt, sched), cfg, order, rng, epoch, step, eval_fn, history,
                          logger, bar)
    out = Path(cfg.out_dir) / "model"
    policy.save(out)
    logger.close()
    return history


def _epoch(policy, optim, cfg: SFTConfig, order: list, rng: random.Random, epoch: int, step: int,
           eval_fn, history: list, logger: MetricLogger, bar) -> int:
    """One pass over the shuffled pairs; appends the epoch's record; returns the step count."""
    model, tok = policy.model, policy.tokenizer
    opt, sched = optim
    rng.shuffle(order)
    model.train()
    t0, losses, tokens = time.perf_counter(), [], 0
    for i in range(0, len(order), cfg.batch_size):
        ids, mask, labels = collate(
            tok,
            order[i : i + cfg.batch_size],
            policy.cfg.max_prompt_tokens,
            encode=policy.prompt_token_ids,
        )
        loss = sft_loss(
            model, ids.to(policy.device), mask.to(policy.device), labels.to(policy.device)
        )
        loss.backward()
        if cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        opt.step()
        if sched is not None:
            sched.step()
        policy.weights_changed(base=not policy.uses_lora)
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        tokens += int(mask.sum())
        step += 1
        bar.advance(1, info=f"epoch {epoch + 1} loss {losses[-1]:.3f}")
    dt = time.perf_counter() - t0
    rec = {"epoch": epoch, "sft/loss": sum(losses) / len(losses), "sft/epoch_time_s": dt,
           "sft/tokens_per_s": tokens / dt, "sft/lr": opt.param_groups[0]["lr"]}
    if eval_fn is not None:
        model.eval()
        rec.update(eval_fn(policy))
    history.append(rec)
    logger.log(step, rec)
    return step
