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

from safegrpo.core.config import save_run_config  # noqa: F401 (re-exported)
from safegrpo.envs.moderation.models import parse_action
from safegrpo.envs.moderation.pools import PromptRecord, load_pool, train_split
from safegrpo.envs.moderation.reward import ModerationReward
from safegrpo.envs.moderation.task import (  # noqa: F401 (ArenaTask re-exported)
    ArenaConfig,
    ArenaTask,
    build_arena_reward,
)
from safegrpo.policies.lm import LMPolicy, LMPolicyConfig, LoRAConfig, merge_adapter
from safegrpo.policies.tiny_config import TinyModelConfig
from safegrpo.recipes.moderation.select import SelectConfig
from safegrpo.training.base import fill_unset
from safegrpo.training.grpo import GRPOConfig, GRPOTrainer
from safegrpo.training.sft import SFTConfig, sft_train


@dataclass(frozen=True)
class SFTDataConfig:
    tiers: tuple[str, ...] = ("T1", "benign")
    """Tiers whose training prompts become SFT pairs."""
    examples: int = 400
    """Number of SFT pairs."""
    transform_frac: float = 0.6
    """Share of unsafe SFT targets that are 'transform' (with the reference rewrite) vs 'reject'."""
    handwritten_share: float = 0.0
    """Share of the pairs drawn from the hand-written train split (0 = in proportion to the
    pools, where it is about 15 %); needs arena.curriculum.handwritten."""

    def __post_init__(self) -> None:
        if not 0 <= self.handwritten_share <= 1 or not 0 <= self.transform_frac <= 1:
            raise ValueError("sft_data.handwritten_share and transform_frac must be in [0, 1]")


EVAL_SPLITS = ("holdout", "handwritten", "handwritten_train")


@dataclass(frozen=True)
class EvalConfig:
    max_per_tier: int = 60
    """Template-holdout prompts per tier evaluated (0 = all)."""
    splits: tuple[str, ...] = ("holdout", "handwritten")
    """Evaluation splits: holdout (the generator's held-out templates) and handwritten (prompts
    written apart from the templates, never trained on or used to fit a judge); for tuning,
    handwritten_train (the hand-written *train* split, which training may use: a knob is chosen
    on it, never on the two evaluation splits)."""
    zero_shot: bool | None = None
    """Also evaluate the prompted base model before SFT (None = only for a pretrained base)."""
    batch_size: int = 32
    """Prompts per generate call in evaluation."""
    guard_model: str | None = None
    """Path or hub id of a Llama-Guard-style model used as a held-out rewrite judge (only when
    training did not use it: ``arena.text_judge`` is not llama_guard)."""
    sft_parse_prompts: int = 48
    """Training prompts whose greedy parse rate is logged after each SFT epoch (0 = off)."""

    def __post_init__(self) -> None:
        bad = set(self.splits) - set(EVAL_SPLITS)
        if bad or not self.splits:
            raise ValueError(f"eval.splits: unknown {sorted(bad)}; valid: "
                             + ", ".join(EVAL_SPLITS))


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
    select: SelectConfig = field(default_factory=SelectConfig)
    """GRPO checkpoint selection on a split training may use (off by default: the last one)."""

    def __post_init__(self) -> None:
        if self.policy.model or self.policy.init_adapter:
            raise ValueError(
                "policy.model / policy.init_adapter are set by the recipe (base_model, "
                "then the SFT result); set base_model instead"
            )
        if self.policy.seed not in (0, self.seed):
            raise ValueError(f"policy.seed={self.policy.seed} conflicts with seed={self.seed}: the "
                             "recipe seeds the adapters from seed; set seed instead")


def target_json(rec: PromptRecord, rng: random.Random, transform_frac: float) -> str:
    if rec.label == "safe":
        return json.dumps({"decision": "allow", "reason": "benign"})
    # a prompt with no safe rewrite is always a reject target (one draw either way: same stream)
    if rng.random() < transform_frac and not rec.no_safe_rewrite:
        return json.dumps({"decision": "transform", "rewrite": rec.rewrite, "reason": rec.category})
    return json.dumps({"decision": "reject", "reason": rec.category})


def sft_pairs(cfg: ModerationRecipeConfig) -> list[tuple[str, str]]:
    rng, d, cur = random.Random(cfg.seed), cfg.sft_data, cfg.arena.curriculum
    pool = [r for r in train_split(cur.pool_path, handwritten=cur.handwritten) if r.tier in d.tiers]
    if d.handwritten_share > 0 and cur.handwritten:
        hand = [r for r in pool if r.id.startswith("hw-")]
        rest = [r for r in pool if not r.id.startswith("hw-")]
        k = min(round(d.examples * d.handwritten_share), len(hand))
        chosen = rng.sample(hand, k) + rng.sample(rest, min(d.examples - k, len(rest)))
        rng.shuffle(chosen)
    else:
        chosen = rng.sample(pool, min(d.examples, len(pool)))
    return [
        (
            cfg.arena.prompt_template.format(prompt=r.prompt),
            target_json(r, rng, cfg.sft_data.transform_frac),
        )
        for r in chosen
    ]


def build_reward(cfg: ModerationRecipeConfig, embedder=None) -> ModerationReward:
    return build_arena_reward(cfg.arena, seed=cfg.seed, embedder=embedder)


def prepare_base(cfg: ModerationRecipeConfig) -> str:
    """The base model folder: ``base_model`` as given (hub id or HF folder), a GGUF file or
    ``package:NAME`` imported once into ``out_dir/base`` (see ``safegrpo models import``), or,
    with ``base_model: null``, a tiny Llama built locally."""
    path = Path(cfg.out_dir) / "base"
    if cfg.base_model:
        from safegrpo.policies.importing import materialize

        return materialize(cfg.base_model, path)
    from safegrpo.policies.tiny import build_tiny_lm

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


def load_defender(cfg: ModerationRecipeConfig, base: str) -> LMPolicy:
    """The one copy of the base model that zero-shot eval, SFT, GRPO and its reference share."""
    prompt = replace(cfg.policy.prompt, template=cfg.arena.prompt_template)
    pcfg = replace(cfg.policy, model=base, init_adapter=None, lora=LoRAConfig(r=0), prompt=prompt,
                   seed=cfg.seed)
    return LMPolicy(pcfg, device=cfg.grpo.device)


def parse_rate(prompts: list[str]) -> Any:
    def fn(policy: LMPolicy) -> dict[str, float]:
        outs = policy.complete(prompts, greedy=True)
        return {"sft/parse_rate": sum(parse_action(o)[0] is not None for o in outs) / len(outs)}
    return fn


def run_sft(cfg: ModerationRecipeConfig, policy: LMPolicy, resume: bool = False) -> list[dict]:
    """SFT ``policy`` in place: a LoRA adapter (``sft_lora.r > 0``) merged into the weights
    afterwards, or every weight. With ``resume`` a finished stage is loaded, not retrained."""
    sft_cfg = fill_unset(cfg.sft, out_dir=str(Path(cfg.out_dir) / "sft"), seed=cfg.seed)
    out = Path(sft_cfg.out_dir) / "model"
    done = (out / "adapter_config.json").exists() or (out / "config.json").exists()
    if resume and done:
        from safegrpo.training.logging import read_jsonl

        load_sft_result(policy, out)
        hist = out.parent / "metrics.jsonl"
        return read_jsonl(hist) if hist.exists() else [{}]
    if cfg.sft_lora.r > 0:
        policy.attach_lora(cfg.sft_lora)
    n = cfg.eval.sft_parse_prompts
    eval_prompts = [cfg.arena.prompt_template.format(prompt=r.prompt)
                    for r in random.Random(cfg.seed + 1).sample(train_split(), n)]
    hist = sft_train(
        policy, sft_pairs(cfg), sft_cfg, eval_fn=parse_rate(eval_prompts) if n else None
    )
    if policy.uses_lora:
        policy.merge_lora(saved_at=out)
    else:
        policy.cfg = replace(policy.cfg, model=str(out))
    return hist


def load_sft_result(policy: LMPolicy, out: Path) -> None:
    """Apply a saved SFT stage to ``policy``'s weights (merge the adapter, or load all weights)."""
    if (out / "adapter_config.json").exists():
        policy.model = merge_adapter(policy.model, out)
        policy.merged.append(str(out))
    else:
        from transformers import AutoModelForCausalLM

        loaded = AutoModelForCausalLM.from_pretrained(out, dtype=policy.model.dtype)
        policy.model.load_state_dict(loaded.state_dict())
        policy.weights_changed(base=True)
        policy.cfg = replace(policy.cfg, model=str(out))


def run_grpo(cfg: ModerationRecipeConfig, policy: LMPolicy, reward: ModerationReward,
             resume: bool = False, restore_only: bool = False) -> GRPOTrainer:
    """GRPO with a fresh LoRA adapter over ``policy``'s (SFT-merged) weights; the adapter
    disabled is the reference. ``restore_only``: load the newest checkpoint, train nothing."""
    if cfg.policy.lora.r > 0:
        policy.attach_lora(cfg.policy.lora)
    task = ArenaTask(cfg.arena, reward, seed=cfg.seed)
    grpo_cfg = fill_unset(cfg.grpo, out_dir=str(Path(cfg.out_dir) / "grpo"), seed=cfg.seed)
    trainer = GRPOTrainer(policy, task, grpo_cfg)
    if restore_only:
        trainer.restore("safegrpo train moderation")
        return trainer
    if resume:
        trainer.resume()
    trainer.train()
    return trainer
