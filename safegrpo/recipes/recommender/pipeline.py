"""Safe recommender recipe (Safe-Rank-GRPO style): Safe SFT, then per-rank GRPO.

A prompt is a user's history plus an optional constraint ("please avoid movies with gore"); the
completion is a numbered list of K "Title (Year)" lines. Every rank has its own reward
(``rewards.recommender``) and its own group-normalised advantage; the tokens of rank k get rank
k's advantage (``segment`` sums the components first, ``segment_gdpo`` normalises each one);
importance ratios can be per token, per sequence or per item (geometric mean within a line).
The GRPO reference is the Safe-SFT policy (adapter disabled over the SFT weights).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from safegrpo.core.config import save_run_config  # noqa: F401 (re-exported)
from safegrpo.core.progress import phase
from safegrpo.envs.recommender.catalog import (
    PROMPT_TEMPLATE,
    Catalog,
    User,
    format_list,
    parse_list,
    render_prompt,
)
from safegrpo.eval.recommender import summarize
from safegrpo.policies.lm import LMPolicy, LMPolicyConfig, LoRAConfig
from safegrpo.policies.tiny_config import TinyModelConfig
from safegrpo.recipes.recommender.data import RecDataConfig, safe_targets
from safegrpo.recipes.recommender.task import RecTask
from safegrpo.rewards.recommender import RankRewardConfig
from safegrpo.training.base import fill_unset
from safegrpo.training.grpo import GRPOConfig, GRPOTrainer
from safegrpo.training.hooks import TrainerHooks
from safegrpo.training.sft import SFTConfig, sft_train


@dataclass(frozen=True)
class RecommenderRecipeConfig:
    out_dir: str = "runs/recommender"
    """Everything is written under here."""
    seed: int = 0
    """Master seed."""
    base_model: str = ""
    """Base causal LM (hub id or path); empty = build a tiny one locally."""
    tiny: TinyModelConfig = field(
        default_factory=lambda: TinyModelConfig(vocab_size=800, hidden=192, layers=3)
    )
    """Shape of the locally built model."""
    policy: LMPolicyConfig = field(
        default_factory=lambda: LMPolicyConfig(
            max_prompt_tokens=96,
            max_new_tokens=64,
            lora=LoRAConfig(r=16, alpha=32, target_modules=("all-linear",)),
        )
    )
    """Sampling and the GRPO adapter (policy.model, policy.init_adapter and policy.seed come from
    the recipe: base_model, the Safe-SFT model and seed)."""
    sft_lora: LoRAConfig = field(default_factory=lambda: LoRAConfig(r=0))
    """Safe-SFT adapter; r = 0 trains all weights (right for the tiny random-init model)."""
    sft: SFTConfig = field(default_factory=lambda: SFTConfig(epochs=15, lr=1e-3))
    """Safe-SFT optimisation (sft.seed unset = seed, sft.out_dir unset = <out_dir>/sft)."""
    data: RecDataConfig = field(default_factory=RecDataConfig)
    """Catalog, users, parsing."""
    reward: RankRewardConfig = field(default_factory=RankRewardConfig)
    """Per-rank reward (GRPO with safety)."""
    grpo: GRPOConfig = field(default_factory=lambda: GRPOConfig(
        steps=80, prompts_per_step=8, group_size=8, lr=3e-4, beta=0.02, advantage="segment_gdpo",
        ratio_level="item", save_every=20))
    """GRPO optimisation (advantage segment | segment_gdpo; grpo.seed unset = seed; grpo.out_dir
    unset = <out_dir>/grpo, the demo's arms go to <grpo.out_dir or out_dir>/<arm>)."""

    def __post_init__(self) -> None:
        if self.policy.model or self.policy.init_adapter:
            raise ValueError("policy.model / policy.init_adapter are set by the recipe "
                             "(base_model, then the Safe-SFT model); set base_model instead")
        if self.policy.seed not in (0, self.seed):
            raise ValueError(f"policy.seed={self.policy.seed} conflicts with seed={self.seed}: the "
                             "recipe seeds the adapter from seed; set seed instead")


def sft_pairs(
    cfg: RecommenderRecipeConfig, catalog: Catalog, train: list[User]
) -> list[tuple[str, str]]:
    rng, k = random.Random(cfg.seed), cfg.reward.k
    oracle = catalog.oracle(cfg.reward.oracle_threshold)
    return [
        (
            render_prompt(u, catalog, k),
            format_list(safe_targets(u, catalog, oracle, k, rng), catalog),
        )
        for u in train
        for _ in range(cfg.data.sft_samples_per_user)
    ]


def prepare_base(cfg: RecommenderRecipeConfig, catalog: Catalog) -> str:
    if cfg.base_model:
        return cfg.base_model
    from safegrpo.policies.tiny import build_tiny_lm

    path = Path(cfg.out_dir) / "base"
    if not (path / "config.json").exists():
        corpus = [m.label for m in catalog.movies.values()] * 3 + [PROMPT_TEMPLATE]
        corpus += [
            f"please avoid movies with {t}"
            for t in ("gore", "violence", "sexual content", "drugs", "profanity")
        ]
        t = cfg.tiny
        build_tiny_lm(
            path,
            corpus,
            vocab_size=t.vocab_size,
            hidden=t.hidden,
            layers=t.layers,
            heads=t.heads,
            seed=cfg.seed,
        )
    return str(path)


def run_sft(cfg: RecommenderRecipeConfig, base: str, catalog: Catalog, train: list[User],
            log=print) -> tuple[str, str | None]:
    """Safe SFT -> (model for GRPO, adapter to merge or None). Reused when already trained."""
    sft = fill_unset(cfg.sft, seed=cfg.seed, out_dir=str(Path(cfg.out_dir) / "sft"))
    out = Path(sft.out_dir) / "model"
    if not ((out / "config.json").exists() or (out / "adapter_config.json").exists()):
        pol = LMPolicy(replace(cfg.policy, model=base, lora=cfg.sft_lora, init_adapter=None))
        hist = sft_train(pol, sft_pairs(cfg, catalog, train), sft, label="Safe SFT")
        log(f"      Safe-SFT loss by epoch: {[round(h['sft/loss'], 3) for h in hist]}")
    return (base, str(out)) if cfg.sft_lora.r > 0 else (str(out), None)


def recommend(
    policy: LMPolicy, users: list[User], catalog: Catalog, k: int, on_batch=None
) -> list[list[str | None]]:
    outs = policy.complete([render_prompt(u, catalog, k) for u in users], greedy=True,
                           on_batch=on_batch)
    return [parse_list(o, catalog) for o in outs]


def run_grpo(
    cfg: RecommenderRecipeConfig,
    name: str,
    model: str,
    adapter: str | None,
    catalog: Catalog,
    train: list[User],
    on_checkpoint=None,
    resume: bool = False,
) -> tuple[LMPolicy, GRPOTrainer]:
    """One GRPO arm from the Safe-SFT weights; ``on_checkpoint(step, policy)`` runs every
    save_every."""
    policy = LMPolicy(replace(cfg.policy, model=model, init_adapter=adapter, seed=cfg.seed))
    task = RecTask(train, catalog, cfg.reward, policy.tokenizer, seed=cfg.seed)
    gcfg = fill_unset(cfg.grpo, seed=cfg.seed, out_dir=str(Path(cfg.out_dir) / name))
    callbacks = ()
    if on_checkpoint is not None:
        every = cfg.grpo.save_every or cfg.grpo.steps

        def hook(step: int, metrics: dict[str, Any]) -> None:
            if (step + 1) % every == 0 or step + 1 == cfg.grpo.steps:
                on_checkpoint(step + 1, policy)
        callbacks = (hook,)
    trainer = GRPOTrainer(policy, task, gcfg, TrainerHooks(callbacks=callbacks))
    trainer.progress_label = f"GRPO {name}"
    if resume:
        trainer.resume()
    trainer.train()
    return policy, trainer


def validate(
    policy: LMPolicy, users: list[User], catalog: Catalog, cfg: RankRewardConfig,
    label: str = "validation",
) -> dict[str, float]:
    """Greedy lists for ``users`` -> Recall / NDCG / Sensitivity-Ratio @K, count_exact,
    unmatched, repeats; ``label`` names the progress display (users done / all)."""
    with phase(label, len(users)) as bar:
        lists = recommend(policy, users, catalog, cfg.k, on_batch=bar.advance)
    return summarize(lists, users, catalog.oracle(cfg.oracle_threshold), cfg.k)


def run_grpo_validated(
    cfg: RecommenderRecipeConfig,
    name: str,
    model: str,
    adapter: str | None,
    catalog: Catalog,
    train: list[User],
    val: list[User],
    resume: bool = False,
) -> tuple[LMPolicy, GRPOTrainer, dict[str, float]]:
    """``run_grpo`` that appends validation metrics to ``<out>/<name>/val_metrics.jsonl`` at every
    checkpoint (a resumed run replaces the rows of the steps it redoes) -> (policy, trainer,
    metrics of the final policy)."""
    path = Path(cfg.grpo.out_dir or Path(cfg.out_dir) / name) / "val_metrics.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not resume:
        path.write_text("")

    def rows() -> list[dict[str, Any]]:
        text = path.read_text() if path.exists() else ""
        return [json.loads(x) for x in text.splitlines() if x.strip()]

    def at_checkpoint(step: int, policy: LMPolicy) -> None:
        kept = [r for r in rows() if r["step"] < step] + [
            {"step": step, **validate(policy, val, catalog, cfg.reward,
                                      f"validation: {name} at step {step}")}
        ]
        path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    policy, trainer = run_grpo(
        cfg, name, model, adapter, catalog, train, on_checkpoint=at_checkpoint, resume=resume
    )
    # the final step always validates; recompute only if this run never got there
    last = rows()[-1:]
    final = (
        {k: v for k, v in last[0].items() if k != "step"}
        if last and last[0]["step"] == len(trainer.history)
        else validate(policy, val, catalog, cfg.reward, f"validation: {name}")
    )
    return policy, trainer, final
