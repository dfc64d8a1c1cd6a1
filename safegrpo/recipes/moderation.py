"""Moderation-arena recipe: (tiny base) -> SFT warm start -> GRPO vs the arena -> holdout eval.

With ``base_model: null`` a tiny Llama-architecture model and BPE tokenizer are built and saved
locally (no hub access). Such a model knows no language, so its SFT stage trains all weights
(``sft_lora.r: 0``); with a real pretrained model set ``sft_lora.r > 0`` and the SFT adapter is
merged into the base before GRPO, so the GRPO reference is the SFT policy.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from torch import Tensor

from safegrpo.core.config import save_run_config  # noqa: F401 (re-exported)
from safegrpo.core.types import ScoredBatch
from safegrpo.envs.moderation.models import parse_action
from safegrpo.envs.moderation.pools import (
    CurriculumConfig,
    PromptRecord,
    RedSampler,
    load_pool,
    train_split,
)
from safegrpo.policies.lm import LMPolicy, LMPolicyConfig, LoRAConfig
from safegrpo.rewards.moderation import ModerationReward, ModerationRewardConfig, PromptInfo
from safegrpo.training.grpo import GRPOConfig, GRPOTrainer
from safegrpo.training.sft import SFTConfig, sft_train


@dataclass(frozen=True)
class TinyModelConfig:
    vocab_size: int = 1500
    """BPE vocabulary size of the locally trained tokenizer."""
    hidden: int = 128
    """Hidden size."""
    layers: int = 2
    """Transformer layers."""
    heads: int = 4
    """Attention heads."""


@dataclass(frozen=True)
class SFTDataConfig:
    tiers: tuple[str, ...] = ("T1", "benign")
    """Tiers whose training prompts become SFT pairs."""
    examples: int = 400
    """Number of SFT pairs."""
    transform_frac: float = 0.6
    """Share of unsafe SFT targets that are 'transform' (with the reference rewrite) vs 'reject'."""


@dataclass(frozen=True)
class ArenaConfig:
    prompt_template: str = "Prompt: {prompt}\nJSON:"
    """How a user prompt is shown to the defender."""
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    """Tier schedule of training prompts."""
    reward: ModerationRewardConfig = field(default_factory=ModerationRewardConfig)
    """Reward weights and penalties."""
    text_judge: str = "projection"
    """projection (embedded) | llama_guard."""
    guard_model: str | None = None
    """Path or hub id of the Llama-Guard-style judge when text_judge = llama_guard."""
    fit_per_tier: int = 60
    """Training prompts per tier used to fit the projection judge."""

    def __post_init__(self) -> None:
        try:
            self.prompt_template.format(prompt="x")
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"prompt_template must contain {{prompt}} and no other fields ({e})") from None
        if "{prompt}" not in self.prompt_template:
            raise ValueError("prompt_template must contain {prompt}")


@dataclass(frozen=True)
class EvalConfig:
    max_per_tier: int = 60
    """Holdout prompts per tier evaluated (0 = all)."""


@dataclass(frozen=True)
class ModerationRecipeConfig:
    out_dir: str = "runs/moderation"
    """Everything (models, metrics, tables, plots) is written under here."""
    seed: int = 0
    """Master seed."""
    base_model: str | None = None
    """Base causal LM (hub id or path); null = build a tiny one locally."""
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    """Shape of the locally built model."""
    policy: LMPolicyConfig = field(default_factory=LMPolicyConfig)
    """Sampling and GRPO-LoRA settings (policy.model is filled in by the recipe)."""
    sft_lora: LoRAConfig = field(default_factory=lambda: LoRAConfig(r=0))
    """SFT adapter; r = 0 trains all weights (right for the tiny random-init model)."""
    sft: SFTConfig = field(default_factory=SFTConfig)
    """SFT optimisation."""
    sft_data: SFTDataConfig = field(default_factory=SFTDataConfig)
    """SFT pairs."""
    arena: ArenaConfig = field(default_factory=ArenaConfig)
    """Environment, judges and reward."""
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    """GRPO optimisation."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Held-out evaluation."""


def target_json(rec: PromptRecord, rng: random.Random, transform_frac: float) -> str:
    if rec.label == "safe":
        return json.dumps({"decision": "allow", "reason": "benign"})
    if rng.random() < transform_frac:
        return json.dumps({"decision": "transform", "rewrite": rec.rewrite, "reason": rec.category})
    return json.dumps({"decision": "reject", "reason": rec.category})


def sft_pairs(cfg: ModerationRecipeConfig) -> list[tuple[str, str]]:
    rng = random.Random(cfg.seed)
    pool = [r for r in train_split(cfg.arena.curriculum.pool_path) if r.tier in cfg.sft_data.tiers]
    chosen = rng.sample(pool, min(cfg.sft_data.examples, len(pool)))
    return [(cfg.arena.prompt_template.format(prompt=r.prompt), target_json(r, rng, cfg.sft_data.transform_frac))
            for r in chosen]


class ArenaTask:
    """LMTask for the GRPO trainer: curriculum prompts, arena reward with group penalties."""

    def __init__(self, cfg: ArenaConfig, reward: ModerationReward, seed: int = 0):
        self.cfg, self.reward = cfg, reward
        self.sampler = RedSampler(cfg.curriculum, seed=seed)

    def sample_prompts(self, step: int, n: int, rank: int = 0) -> list[PromptRecord]:
        return self.sampler.sample(step, n, rank)

    def render(self, item: PromptRecord) -> str:
        return self.cfg.prompt_template.format(prompt=item.prompt)

    def score(self, items: list[PromptRecord], completions: list[str], group_ids: Tensor) -> ScoredBatch:
        infos = [PromptInfo(r.prompt, r.label, r.category, r.tier) for r in items]
        return self.reward(infos, completions, group_ids)


def build_reward(cfg: ModerationRecipeConfig, embedder=None) -> ModerationReward:
    from safegrpo.rewards.moderation import build_moderation_reward

    return build_moderation_reward(cfg.arena.reward, embedder=embedder, text_judge=cfg.arena.text_judge,
                                   guard_model=cfg.arena.guard_model, fit_per_tier=cfg.arena.fit_per_tier,
                                   seed=cfg.seed)


def prepare_base(cfg: ModerationRecipeConfig) -> str:
    if cfg.base_model:
        return cfg.base_model
    from safegrpo.policies.tiny import build_tiny_lm

    path = Path(cfg.out_dir) / "base"
    if not (path / "config.json").exists():
        corpus = [r.prompt for r in load_pool(cfg.arena.curriculum.pool_path)]
        corpus += [r.rewrite for r in load_pool(cfg.arena.curriculum.pool_path)]
        corpus += ['{"decision": "allow", "rewrite": "", "reason": "benign"}',
                   '{"decision": "transform", "reason": "violence"}', '{"decision": "reject"}',
                   cfg.arena.prompt_template]
        t = cfg.tiny
        build_tiny_lm(path, corpus, vocab_size=t.vocab_size, hidden=t.hidden, layers=t.layers,
                      heads=t.heads, seed=cfg.seed)
    return str(path)


def parse_rate(prompts: list[str]) -> Any:
    def fn(policy: LMPolicy) -> dict[str, float]:
        outs = policy.complete(prompts, greedy=True)
        return {"sft/parse_rate": sum(parse_action(o)[0] is not None for o in outs) / len(outs)}
    return fn


def run_sft(cfg: ModerationRecipeConfig, base: str, resume: bool = False) -> tuple[str, str | None, list[dict]]:
    """Returns (model path for GRPO, init adapter or None, SFT history). With ``resume`` a finished
    SFT stage (its saved model) is reused instead of retrained."""
    out = Path(cfg.out_dir) / "sft" / "model"
    done = (out / "adapter_config.json").exists() or (out / "config.json").exists()
    if resume and done:
        from safegrpo.training.logging import read_jsonl

        hist = read_jsonl(out.parent / "metrics.jsonl") if (out.parent / "metrics.jsonl").exists() else [{}]
        return (base, str(out), hist) if cfg.sft_lora.r > 0 else (str(out), None, hist)
    pol = LMPolicy(replace(cfg.policy, model=base, lora=cfg.sft_lora, init_adapter=None), device=cfg.grpo.device)
    pairs = sft_pairs(cfg)
    eval_prompts = [cfg.arena.prompt_template.format(prompt=r.prompt)
                    for r in random.Random(cfg.seed + 1).sample(train_split(), 48)]
    sft_cfg = replace(cfg.sft, out_dir=str(Path(cfg.out_dir) / "sft"), seed=cfg.seed)
    hist = sft_train(pol, pairs, sft_cfg, eval_fn=parse_rate(eval_prompts))
    return (base, str(out), hist) if cfg.sft_lora.r > 0 else (str(out), None, hist)


def grpo_policy_config(cfg: ModerationRecipeConfig, model: str, adapter: str | None) -> LMPolicyConfig:
    return replace(cfg.policy, model=model, init_adapter=adapter)


def run_grpo(cfg: ModerationRecipeConfig, model: str, adapter: str | None, reward: ModerationReward,
             resume: bool = False) -> tuple[LMPolicy, GRPOTrainer]:
    pol = LMPolicy(grpo_policy_config(cfg, model, adapter))
    task = ArenaTask(cfg.arena, reward, seed=cfg.seed)
    trainer = GRPOTrainer(pol, task, replace(cfg.grpo, out_dir=str(Path(cfg.out_dir) / "grpo"), seed=cfg.seed))
    if resume:
        trainer.resume()
    trainer.train()
    return pol, trainer

