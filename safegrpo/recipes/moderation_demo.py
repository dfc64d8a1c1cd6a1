"""`safegrpo demo`: the whole moderation pipeline on CPU, with baselines and a per-tier table.

Writes under ``out_dir``: config.yaml, sft/ (metrics, model), grpo/ (metrics.jsonl, tb/,
checkpoints/), eval_records.jsonl, eval_table.json, eval_table.md, reward_curve.png.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from safegrpo.envs.moderation.pools import TIERS, holdout, load_lexicon
from safegrpo.eval.moderation import (
    always_reject,
    evaluate,
    format_table,
    keyword_filter,
    tier_table,
    write_jsonl,
)
from safegrpo.eval.plots import reward_curve
from safegrpo.policies.lm import LMPolicy
from safegrpo.recipes.moderation import (
    ModerationRecipeConfig,
    build_reward,
    prepare_base,
    run_grpo,
    run_sft,
    save_run_config,
)

OUTPUTS = "eval_table.md, eval_records.jsonl, reward_curve.png, grpo/metrics.jsonl"


def render_summary(summary: dict[str, Any]):
    """The per-tier table as a rich Table."""
    from rich.table import Table

    table = Table(title="Held-out evaluation (per tier)")
    cols = ["method", "tier", "allow_rate", "transform_rate", "reject_rate", "parse_rate", "mean_reward",
            "unsafe_pass_through", "benign_over_refusal"]
    for c in cols:
        table.add_column(c)
    for row in summary["table"]:
        table.add_row(*[("-" if row[c] is None else f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]))
                        for c in cols])
    return table


def holdout_sample(cfg: ModerationRecipeConfig):
    rng = random.Random(cfg.seed)
    recs = holdout(cfg.arena.curriculum.pool_path)
    out = []
    for t in TIERS:
        tier = [r for r in recs if r.tier == t]
        k = len(tier) if cfg.eval.max_per_tier <= 0 else min(cfg.eval.max_per_tier, len(tier))
        out += rng.sample(tier, k)
    return out


def policy_defender(policy: LMPolicy, template: str):
    def run(prompts: list[str]) -> list[str]:
        return policy.complete([template.format(prompt=p) for p in prompts], greedy=True)
    return run


def run_demo(cfg: ModerationRecipeConfig, resume: bool = False, log=print) -> dict[str, Any]:
    t0 = time.perf_counter()
    out = Path(cfg.out_dir)
    save_run_config(cfg)
    base = prepare_base(cfg)
    log(f"[1/4] base model: {base}")
    reward = build_reward(cfg)
    log(f"[2/4] SFT warm start ({cfg.sft_data.examples} pairs, {cfg.sft.epochs} epochs)")
    model, adapter, sft_hist = run_sft(cfg, base, resume=resume)
    log(f"      SFT parse rate by epoch: {[round(h.get('sft/parse_rate', 0), 3) for h in sft_hist]}")
    sft_policy = LMPolicy(replace(cfg.policy, model=model, init_adapter=adapter, lora=replace(cfg.policy.lora, r=0)))
    log(f"[3/4] GRPO: {cfg.grpo.steps} steps x {cfg.grpo.prompts_per_step} prompts x G={cfg.grpo.group_size}")
    grpo_policy, trainer = run_grpo(cfg, model, adapter, reward, resume=resume)
    log("[4/4] held-out evaluation")
    recs = holdout_sample(cfg)
    lex = sorted({w for ws in load_lexicon().values() for w in ws})
    methods = {"keyword_filter": keyword_filter(lex), "always_reject": always_reject,
               "sft_only": policy_defender(sft_policy, cfg.arena.prompt_template),
               "grpo": policy_defender(grpo_policy, cfg.arena.prompt_template)}
    records = [row for name, fn in methods.items() for row in evaluate(name, fn, recs, reward)]
    write_jsonl(out / "eval_records.jsonl", records)
    table = tier_table(records)
    (out / "eval_table.json").write_text(json.dumps(table, indent=1))
    md = format_table(table) + "\n\nMean reward components:\n\n" + format_table(table, components=True)
    (out / "eval_table.md").write_text(md + "\n")
    reward_curve(trainer.history, out / "reward_curve.png", title="Moderation arena: GRPO reward")
    summary = {"wall_time_s": time.perf_counter() - t0, "grpo_steps_run": len(trainer.history),
               "stop_reason": trainer.stop_reason, "sft_final_parse_rate": sft_hist[-1].get("sft/parse_rate"),
               "table": table}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
