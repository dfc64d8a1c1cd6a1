"""`safegrpo demo recommender`: Safe SFT, then two per-rank GRPO arms, on CPU.

Arms (all from the same Safe-SFT weights, same steps and seeds):
- ``sft_only``: no GRPO;
- ``grpo_no_safety``: relevance-only per-rank reward (safety and count off), ``segment`` advantages;
- ``grpo_safe_gdpo``: relevance + safety penalty + count reward, ``segment_gdpo`` advantages.
Validation Recall@K, NDCG@K and Sensitivity-Ratio@K are logged at every checkpoint
(``<arm>/val_metrics.jsonl``) and tabulated at the end (eval_table.json/.md, summary.json).
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from safegrpo.policies.lm import LMPolicy
from safegrpo.recipes.recommender import (
    RecommenderRecipeConfig,
    load_data,
    prepare_base,
    run_grpo_validated,
    run_sft,
    save_run_config,
    validate,
)

OUTPUTS = "eval_table.md, */val_metrics.jsonl, */metrics.jsonl"


def arms(cfg: RecommenderRecipeConfig) -> dict[str, RecommenderRecipeConfig]:
    """Arm name -> its config; each arm trains in <grpo.out_dir or out_dir>/<arm>."""
    root = Path(cfg.grpo.out_dir or cfg.out_dir)
    safe = replace(cfg, grpo=replace(cfg.grpo, out_dir=str(root / "grpo_safe_gdpo")))
    no_safety = replace(cfg, reward=replace(cfg.reward, safety_coef=0.0, count_coef=0.0, repeat_coef=0.0),
                        grpo=replace(cfg.grpo, advantage="segment", adv_weights=(),
                                     out_dir=str(root / "grpo_no_safety")))
    return {"grpo_no_safety": no_safety, "grpo_safe_gdpo": safe}


def format_rows(rows: list[dict[str, Any]], k: int) -> str:
    keys = [f"recall@{k}", f"ndcg@{k}", f"sensitivity_ratio@{k}", "count_exact", "unmatched", "repeats"]
    lines = ["| policy | " + " | ".join(keys) + " |", "|" + "---|" * (len(keys) + 1)]
    lines += ["| " + r["policy"] + " | " + " | ".join(f"{r[x]:.3f}" for x in keys) + " |" for r in rows]
    return "\n".join(lines)


def render_summary(summary: dict[str, Any]):
    from rich.markdown import Markdown

    return Markdown(f"**Validation ({summary['n_val_users']} users)**\n\n" + format_rows(summary["table"],
                                                                                      summary["k"]))


def run_demo(cfg: RecommenderRecipeConfig, resume: bool = False, log=print) -> dict[str, Any]:
    t0 = time.perf_counter()
    out, k = Path(cfg.out_dir), cfg.reward.k
    save_run_config(cfg)
    catalog, train, val = load_data(cfg.data)
    log(f"[1/3] Safe SFT ({len(train)} users x {cfg.data.sft_samples_per_user} constraint-filtered lists)")
    model, adapter = run_sft(cfg, prepare_base(cfg, catalog), catalog, train, log)
    sft = LMPolicy(replace(cfg.policy, model=model, init_adapter=adapter, lora=replace(cfg.policy.lora, r=0)))
    rows = [{"policy": "sft_only", **validate(sft, val, catalog, cfg.reward)}]
    del sft
    for i, (name, acfg) in enumerate(arms(cfg).items()):
        g = acfg.grpo
        log(f"[{2 + i}/3] {name}: {g.steps} steps x {g.prompts_per_step} users x G={g.group_size}, "
            f"advantage {g.advantage}, ratio {g.ratio_level}")
        _, _, final = run_grpo_validated(acfg, name, model, adapter, catalog, train, val, resume=resume)
        rows.append({"policy": name, **final})
    (out / "eval_table.json").write_text(json.dumps(rows, indent=1))
    (out / "eval_table.md").write_text(format_rows(rows, k) + "\n")
    summary = {"wall_time_s": time.perf_counter() - t0, "k": k, "n_val_users": len(val), "table": rows}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
