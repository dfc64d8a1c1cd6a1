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
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from safegrpo.eval.console import compact_table, headline
from safegrpo.eval.markdown import markdown_table
from safegrpo.policies.lm import LMPolicy
from safegrpo.recipes.base import RunContext, Stage, run_recipe
from safegrpo.recipes.recommender.data import load_data, split_training_users
from safegrpo.recipes.recommender.pipeline import (
    RecommenderRecipeConfig,
    prepare_base,
    run_grpo_validated,
    run_sft,
    save_run_config,
    validate,
)


def arms(cfg: RecommenderRecipeConfig) -> dict[str, RecommenderRecipeConfig]:
    """Arm name -> its config; each arm trains in <grpo.out_dir or out_dir>/<arm>."""
    root = Path(cfg.grpo.out_dir or cfg.out_dir)
    safe = replace(cfg, grpo=replace(cfg.grpo, out_dir=str(root / "grpo_safe_gdpo")))
    no_safety = replace(
        cfg,
        reward=replace(cfg.reward, safety_coef=0.0, count_coef=0.0, repeat_coef=0.0),
        grpo=replace(
            cfg.grpo, advantage="segment", adv_weights=(), out_dir=str(root / "grpo_no_safety")
        ),
    )
    return {"grpo_no_safety": no_safety, "grpo_safe_gdpo": safe}


def table_keys(k: int) -> list[str]:
    """The metric columns of every recommender table (eval_table.md and the console)."""
    return [f"recall@{k}", f"safe_recall@{k}", f"ndcg@{k}", f"sensitivity_ratio@{k}",
            "count_exact", "unmatched", "repeats"]


def format_rows(rows: list[dict[str, Any]], k: int) -> str:
    keys = table_keys(k)
    return markdown_table(["policy", *keys],
                          ([r["policy"], *(f"{r.get(x, math.nan):.3f}" for x in keys)]
                           for r in rows))


def render_summary(summary: dict[str, Any]):
    """The console headline (fits 80 columns): validation metrics per policy and the
    reward-hacking verdict of each GRPO arm; the same table is in eval_table.md."""
    k = summary["k"]
    heads = ["policy", f"recall\n@{k}", f"safe\nrecall@{k}", f"NDCG\n@{k}",
             f"sensitivity\nratio@{k}", "count\nexact", "unmatched", "repeats"]
    table = compact_table(heads, ([r["policy"], *(r.get(x, math.nan) for x in table_keys(k))]
                                  for r in summary["table"]))
    split = summary.get("eval_split", "val")
    users = users_label(split)
    return headline(f"{users[0].upper()}{users[1:]} ({summary['n_val_users']}; eval_table.md)",
                    table, *hacking_lines(summary.get("hacking", {}), split))


def users_label(split: str) -> str:
    """The users an evaluation read (``data.eval_split``), in words."""
    return "validation users" if split == "val" else "tune users (held-out training users)"


def hacking_lines(hacking: dict[str, Any], split: str = "val") -> list[str]:
    """One verdict line per GRPO arm."""
    from safegrpo.eval.reward_hacking import verdict_line

    return [verdict_line(h, f"{arm}, {len(h['steps'])} checkpoints (steps "
                            f"{', '.join(map(str, h['steps']))}; {users_label(split)})")
            for arm, h in hacking.items()]


def _setup(ctx: RunContext) -> None:
    cfg, st = ctx.cfg, ctx.state
    save_run_config(cfg)
    st["catalog"], train, st["val"] = load_data(cfg.data)
    st["sft_users"], st["grpo_users"] = split_training_users(train, cfg.data.sft_user_share)
    st["base"] = prepare_base(cfg, st["catalog"])
    st["rows"] = []


def _sft(ctx: RunContext) -> None:
    st = ctx.state
    st["model"], st["adapter"] = run_sft(ctx.cfg, st["base"], st["catalog"], st["sft_users"],
                                        ctx.log)


def _sft_restore(ctx: RunContext) -> None:
    out = Path(ctx.cfg.out_dir) / "sft" / "model"
    if not out.exists():
        raise FileNotFoundError(f"no Safe-SFT result under {out}; run `safegrpo train recommender`")
    _sft(ctx)


def _eval_sft(ctx: RunContext) -> None:
    cfg, st = ctx.cfg, ctx.state
    sft = LMPolicy(replace(cfg.policy, model=st["model"], init_adapter=st["adapter"],
                           lora=replace(cfg.policy.lora, r=0)))
    st["rows"].append({"policy": "sft_only", **validate(sft, st["val"], st["catalog"],
                                                        cfg.reward, "validation: sft_only")})


def _arm(name: str | None):
    """GRPO arm ``name`` of the demo (None: the configured run, ``grpo_safe_gdpo`` under demo,
    ``grpo`` under train)."""
    def run(ctx: RunContext) -> None:
        cfg, st = ctx.cfg, ctx.state
        arm = name or ("grpo_safe_gdpo" if ctx.mode == "demo" else "grpo")
        acfg = arms(cfg)[arm] if arm in arms(cfg) else cfg
        ckpts = Path(acfg.grpo.out_dir or Path(cfg.out_dir) / arm) / "checkpoints"
        if ctx.mode == "eval" and not ckpts.exists():
            raise FileNotFoundError(f"no GRPO checkpoint under {ckpts}; run `safegrpo train "
                                    "recommender` first")
        _, trainer, final = run_grpo_validated(acfg, arm, st["model"], st["adapter"],
                                               st["catalog"], st["grpo_users"], st["val"],
                                               resume=ctx.resume or ctx.mode == "eval")
        st["rows"].append({"policy": arm, **final})
        st["trainer"] = trainer
        val = ckpts.parent / "val_metrics.jsonl"
        st.setdefault("curves", {})[arm] = (trainer.history, [
            json.loads(x) for x in val.read_text().splitlines() if x.strip()])
    return run


def hacking_checks(rows: list[dict[str, Any]], curves: dict[str, Any], k: int) -> dict[str, Any]:
    """Per GRPO arm: training reward vs the validation users' metrics (users training never
    saw) at step 0 (the Safe-SFT policy, ``rows[0]``) and at every validated checkpoint."""
    from safegrpo.eval.reward_hacking import hacking_report, reward_at

    out = {}
    for arm, (history, val) in curves.items():
        points = [{"step": 0, **rows[0]}, *val]
        if not history or len(points) < 2:
            continue
        reward = reward_at(history, [p["step"] for p in points])
        metrics = {f"recall@{k}": True, f"safe_recall@{k}": True, f"ndcg@{k}": True,
                   f"sensitivity_ratio@{k}": False}
        out[arm] = hacking_report(reward, {m: ([p[m] for p in points], hi)
                                           for m, hi in metrics.items()},
                                  steps=[p["step"] for p in points])
    return out


def _report(ctx: RunContext) -> None:
    cfg, st, k = ctx.cfg, ctx.state, ctx.cfg.reward.k
    out = Path(cfg.out_dir)
    (out / "eval_table.json").write_text(json.dumps(st["rows"], indent=1))
    hacking = hacking_checks(st["rows"], st.get("curves", {}), k)
    lines = hacking_lines(hacking, cfg.data.eval_split)
    (out / "eval_table.md").write_text(format_rows(st["rows"], k) + "\n\n"
                                       + "\n\n".join(lines) + "\n")
    trainer = st["trainer"]
    ctx.summary = {"wall_time_s": time.perf_counter() - ctx.started,
                   "phase_time_s": dict(ctx.stage_time_s), "k": k,
                   "n_val_users": len(st["val"]), "eval_split": cfg.data.eval_split,
                   "n_users": {"sft": len(st["sft_users"]), "grpo": len(st["grpo_users"])},
                   "table": st["rows"], "hacking": hacking,
                   "headline": {"steps": len(trainer.history), "stop_reason": trainer.stop_reason,
                                **{x: v for x, v in st["rows"][-1].items() if x != "policy"}}}
    (out / "summary.json").write_text(json.dumps(ctx.summary, indent=1))


def stages(cfg: RecommenderRecipeConfig) -> list[Stage]:
    g = cfg.grpo
    what = f"{g.steps} steps x {g.prompts_per_step} users x G={g.group_size}"
    share = "" if cfg.data.sft_user_share >= 1 else (
        f", on {cfg.data.sft_user_share:g} of the training users; GRPO on the rest")
    return [
        Stage("data", _setup, "setup"),
        Stage("sft", _sft, "train", _sft_restore, f"[1/3] Safe SFT "
              f"({cfg.data.sft_samples_per_user} constraint-filtered lists per user{share})",
              lambda c: Path(c.out_dir) / "sft" / "model"),
        Stage("eval_sft", _eval_sft, "baseline"),
        Stage("grpo_no_safety", _arm("grpo_no_safety"), "baseline",
              message=f"[2/3] grpo_no_safety: {what}, advantage segment"),
        # restored from its checkpoint (resume at the final step trains nothing)
        Stage("grpo", _arm(None), "train", _arm(None),
              f"[3/3] grpo: {what}, advantage {g.advantage}, ratio {g.ratio_level}",
              lambda c: Path(c.grpo.out_dir or Path(c.out_dir) / "grpo") / "checkpoints"),
        Stage("report", _report, "report"),
    ]


def run_demo(cfg: RecommenderRecipeConfig, resume: bool = False, log=print) -> dict[str, Any]:
    """Every stage in-process (what ``safegrpo demo recommender`` runs)."""
    return run_recipe("recommender", cfg, resume, log)
