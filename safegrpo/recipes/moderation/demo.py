"""`safegrpo demo`: the whole moderation pipeline on CPU, with baselines and a per-tier table.

Writes under ``out_dir``: config.yaml, sft/ (metrics, model), grpo/ (metrics.jsonl, tb/,
checkpoints/), eval_records.jsonl, eval_table.json, eval_table.md, reward_curve.png, and the
embedded judge's operating curve with every defender on it (judge_scores.jsonl, judge_curve.json,
judge_curve.md, judge_curve.png; ``eval.judge_curve``).
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

from safegrpo.core.progress import phase
from safegrpo.envs.moderation.pools import TIERS, holdout, load_lexicon
from safegrpo.eval.heldout import moderation_heldout
from safegrpo.eval.judge_curve import judge_score_records, not_below_line, write_judge_curve
from safegrpo.eval.moderation import (
    always_reject,
    carry_baselines,
    evaluate,
    format_table,
    headline_table,
    judge_threshold,
    keyword_filter,
    tier_table,
    write_jsonl,
)
from safegrpo.eval.plots import reward_curve
from safegrpo.eval.reward_hacking import moderation_hacking
from safegrpo.eval.rewrites import add_independent
from safegrpo.policies.lm import LMPolicy
from safegrpo.recipes.base import RunContext, Stage, peak_rss_gb, run_recipe
from safegrpo.recipes.moderation.console import (  # noqa: F401 (re-exported)
    HEADLINE_COLUMNS,
    hacking_line,
    render_summary,
)
from safegrpo.recipes.moderation.pipeline import (
    ModerationRecipeConfig,
    build_reward,
    load_defender,
    prepare_base,
    run_grpo,
    run_sft,
    save_run_config,
)
from safegrpo.recipes.moderation.select import restore_selection, select_checkpoint


def heldout_judges(cfg: ModerationRecipeConfig) -> dict[str, Any]:
    """Rewrite judges of another family than the training reward's (``eval.heldout``)."""
    return moderation_heldout(cfg.arena.text_judge_name, cfg.eval.guard_model)


def hacking_check(table: list[dict[str, Any]], history: list[dict[str, Any]],
                  step: int | None = None) -> dict[str, Any]:
    """The reward-hacking detector on two checkpoints: the SFT start (step 0, method sft_only)
    and the evaluated GRPO policy (method grpo: the selected ``step``, or after the last logged
    step)."""
    if not history:
        return {"flag": False, "verdict": "insufficient", "metrics": {}}
    last = int(history[-1]["step"]) + 1 if step is None else step
    return moderation_hacking(table, history, [("sft_only", 0), ("grpo", last)])


def interval_table(records_by_seed: list[list[dict[str, Any]]], seeds: list[int]):
    """The headline metrics with 95 % bootstrap intervals (over prompts, and over seeds when
    there are several) -> (rows, markdown)."""
    from safegrpo.eval.seeds import moderation_seed_rows, render_seed_table

    rows = moderation_seed_rows(records_by_seed)
    return rows, render_seed_table(rows, seeds)


def combine_seeds(cfgs: list[ModerationRecipeConfig], summaries: list[dict[str, Any]]):
    """``demo --seeds``: one table over every seed's eval_records.jsonl -> (rows, markdown)."""
    from safegrpo.training.logging import read_jsonl

    rows, md = interval_table([read_jsonl(Path(c.out_dir) / "eval_records.jsonl") for c in cfgs],
                              [c.seed for c in cfgs])
    flags = ", ".join(f"seed {c.seed}: {s.get('hacking', {}).get('verdict', '-')}"
                      for c, s in zip(cfgs, summaries, strict=True))
    return rows, md + f"\n\nReward-hacking detector (SFT start vs final GRPO): {flags}."


def holdout_sample(cfg: ModerationRecipeConfig):
    rng = random.Random(cfg.seed)
    recs = holdout(cfg.arena.curriculum.pool_path)
    out = []
    for t in TIERS:
        tier = [r for r in recs if r.tier == t]
        k = len(tier) if cfg.eval.max_per_tier <= 0 else min(cfg.eval.max_per_tier, len(tier))
        out += rng.sample(tier, k)
    return out


def eval_splits(cfg: ModerationRecipeConfig) -> dict[str, list]:
    """{split: records}: the template holdout sample, the whole hand-written eval split and,
    for tuning, the whole hand-written train split."""
    from safegrpo.envs.moderation.pools import load_handwritten

    out = {}
    for name in cfg.eval.splits:
        if name == "holdout":
            out[name] = holdout_sample(cfg)
        else:
            out[name] = list(load_handwritten("train" if name == "handwritten_train" else "eval"))
    return out


def policy_defender(policy: LMPolicy, template: str, batch_size: int = 32):
    def run(prompts: list[str]) -> list[str]:
        texts, out = [template.format(prompt=p) for p in prompts], []
        with phase("generating", len(texts)) as bar:
            for i in range(0, len(texts), batch_size):
                out += policy.complete(texts[i:i + batch_size], greedy=True, seed=i,
                                       batch_size=batch_size)
                bar.advance(len(texts[i:i + batch_size]))
        return out
    return run


def lexicon_words() -> list[str]:
    """Every harmful keyword of the arena lexicon (the keyword-filter baseline's list)."""
    return sorted({w for ws in load_lexicon().values() for w in ws})


def evaluate_all(name: str, defender, splits: dict[str, list], reward) -> list[dict[str, Any]]:
    return [
        row
        for split, recs in splits.items()
        for row in evaluate(name, defender, recs, reward, split)
    ]


def _setup(ctx: RunContext) -> None:
    cfg, st = ctx.cfg, ctx.state
    save_run_config(cfg)
    st["base"] = prepare_base(cfg)
    st["reward"] = build_reward(cfg)
    st["policy"] = policy = load_defender(cfg, st["base"])
    ctx.tokens = lambda: policy.generated_tokens
    ctx.log(f"      base {st['base']} (chat template: {policy.chat}); one copy in memory")
    st["splits"], st["records"], st["sft_hist"] = eval_splits(cfg), [], [{}]


def _evaluate_policy(name: str):
    def run(ctx: RunContext) -> None:
        st, cfg = ctx.state, ctx.cfg
        defender = policy_defender(st["policy"], cfg.arena.prompt_template, cfg.eval.batch_size)
        st["records"] += evaluate_all(name, defender, st["splits"], st["reward"])
    return run


def _sft(ctx: RunContext) -> None:
    hist = run_sft(ctx.cfg, ctx.state["policy"], resume=ctx.resume)
    ctx.state["sft_hist"] = hist
    if ctx.cfg.eval.sft_parse_prompts:
        ctx.log(f"      SFT parse rate by epoch: {[round(h['sft/parse_rate'], 3) for h in hist]}")


def _sft_restore(ctx: RunContext) -> None:
    out = Path(ctx.cfg.out_dir) / "sft" / "model"
    if not out.exists():
        raise FileNotFoundError(f"no SFT result under {out}; run `safegrpo train moderation`")
    ctx.state["sft_hist"] = run_sft(ctx.cfg, ctx.state["policy"], resume=True)


def _grpo(ctx: RunContext) -> None:
    cfg, st = ctx.cfg, ctx.state
    st["trainer"] = run_grpo(cfg, st["policy"], st["reward"], resume=ctx.resume)
    if cfg.select.split:
        ctx.log(f"      choosing the GRPO checkpoint on {cfg.select.split} (over-refusal <= "
                f"{cfg.select.max_over_refusal})")
        st["selection"] = select_checkpoint(
            st["policy"], st["reward"], Path(st["trainer"].cfg.out_dir) / "checkpoints",
            cfg.select, template=cfg.arena.prompt_template, batch_size=cfg.eval.batch_size,
            log=ctx.log)


def _grpo_restore(ctx: RunContext) -> None:
    trainer = run_grpo(ctx.cfg, ctx.state["policy"], ctx.state["reward"], restore_only=True)
    ctx.state["trainer"] = trainer
    ctx.state["selection"] = restore_selection(ctx.state["policy"], trainer.cfg.out_dir)


def _final_eval(ctx: RunContext) -> None:
    st, cfg = ctx.state, ctx.cfg
    baselines = {"keyword_filter": keyword_filter(lexicon_words()), "always_reject": always_reject,
                 "judge_threshold": judge_threshold(st["reward"].text_judge),
                 "grpo": policy_defender(st["policy"], cfg.arena.prompt_template,
                                         cfg.eval.batch_size)}
    for name, fn in baselines.items():
        st["records"] += evaluate_all(name, fn, st["splits"], st["reward"])
    st["judge_scores"] = judge_score_records(st["reward"].text_judge, st["splits"])


def _report(ctx: RunContext) -> None:
    st = ctx.state
    perf = {**perf_summary(st["trainer"].history, st["sft_hist"], ctx.stage_tokens),
            "peak_rss_gb_by_phase": dict(ctx.stage_peak_rss_gb)}
    records = st["records"]
    if ctx.mode == "eval":  # baselines (sft_only, base_prompted) are not re-run: keep their rows
        records = carry_baselines(records, Path(ctx.cfg.out_dir) / "eval_records.jsonl")
    ctx.summary = write_outputs(ctx.cfg, records, st["trainer"], st["sft_hist"],
                                dict(ctx.stage_time_s), time.perf_counter() - ctx.started, perf,
                                st.get("judge_scores", []), st.get("selection"))


def stages(cfg: ModerationRecipeConfig) -> list[Stage]:
    g = cfg.grpo
    zero_shot = cfg.eval.zero_shot if cfg.eval.zero_shot is not None else bool(cfg.base_model)
    out = [Stage("load", _setup, "setup", message="[1/5] base model and judges")]
    if zero_shot:
        out.append(Stage("eval_base", _evaluate_policy("base_prompted"), "baseline",
                         message="[2/5] zero-shot evaluation of the prompted base model"))
    return out + [
        Stage("sft", _sft, "train", _sft_restore,
              f"[3/5] SFT ({cfg.sft_data.examples} pairs, {cfg.sft.epochs} epochs)",
              lambda c: Path(c.sft.out_dir or Path(c.out_dir) / "sft") / "model"),
        Stage("eval_sft", _evaluate_policy("sft_only"), "baseline",
              message="      evaluating the SFT defender"),
        Stage("grpo", _grpo, "train", _grpo_restore,
              f"[4/5] GRPO: {g.steps} steps x {g.prompts_per_step} prompts x G={g.group_size}",
              lambda c: Path(c.grpo.out_dir or Path(c.out_dir) / "grpo") / "checkpoints"),
        Stage("eval_grpo", _final_eval, "eval", message="[5/5] held-out evaluation"),
        Stage("report", _report, "report"),
    ]


def run_demo(cfg: ModerationRecipeConfig, resume: bool = False, log=print) -> dict[str, Any]:
    """Every stage in-process (what ``safegrpo demo moderation`` runs)."""
    return run_recipe("moderation", cfg, resume, log)


def perf_summary(history: list[dict[str, Any]], sft_hist: list[dict[str, Any]] = (),
                 gen: dict[str, dict[str, float]] | None = None) -> dict[str, Any]:
    """Mean generation and end-to-end GRPO token throughput, SFT training tokens/s, greedy
    evaluation tokens/s per phase (``gen``), and peak RSS of this process."""
    def mean(k: str) -> float | None:
        vals = [h[k] for h in history if k in h]
        return sum(vals) / len(vals) if vals else None

    sft = [h["sft/tokens_per_s"] for h in sft_hist if "sft/tokens_per_s" in h]
    return {"grpo_gen_tokens_per_s": mean("perf/gen_tokens_per_s"),
            "grpo_tokens_per_s": mean("perf/tokens_per_s"),
            "grpo_step_time_s": mean("perf/step_time_s"),
            "sft_tokens_per_s": sum(sft) / len(sft) if sft else None,
            "eval_generation": {k: v for k, v in (gen or {}).items() if k.startswith("eval")},
            "peak_rss_gb": peak_rss_gb()}


TINY_NOTE = (" The default demo's defender is a 0.6 M-parameter model trained on templates; "
             "see the README for the SmolLM2 preset (configs/moderation_smollm.yaml).")


def write_outputs(cfg, records, trainer, sft_hist, times, wall, perf, scores,
                  selection=None) -> dict[str, Any]:
    out = Path(cfg.out_dir)
    records = add_independent(records, heldout_judges(cfg), cfg.arena.text_judge_name)
    write_jsonl(out / "eval_records.jsonl", records)
    table = tier_table(records)
    hacking = hacking_check(table, trainer.history, selection and selection["step"])
    curve = write_judge_curve(out, scores, table)
    note = not_below_line(curve, "grpo", "" if cfg.base_model else TINY_NOTE)
    (out / "eval_table.json").write_text(json.dumps(table, indent=1))
    md = (format_table(table, note=False) + "\n\nMean reward components:\n\n"
          + format_table(table, components=True))
    (out / "eval_table.md").write_text(md + "\n")
    (out / "eval_headline.md").write_text(headline_table(table) + "\n\n" + hacking_line(hacking)
                                          + (f"\n\n{note}" if note else "") + "\n")
    (out / "eval_intervals.md").write_text(interval_table([records], [cfg.seed])[1] + "\n")
    reward_curve(trainer.history, out / "reward_curve.png", title="Moderation arena: GRPO reward")
    summary = {"wall_time_s": wall, "phase_time_s": times, "perf": perf,
               "grpo_steps_run": len(trainer.history), "stop_reason": trainer.stop_reason,
               "sft_final_parse_rate": sft_hist[-1].get("sft/parse_rate"), "table": table,
               "hacking": hacking, "curve_note": note, "selection": selection,
               "judge_curve": {k: v["defenders"] for k, v in curve.items()}, "headline": {
                   "steps": len(trainer.history), "stop_reason": trainer.stop_reason,
                   "final_reward": trainer.history[-1]["reward/total"] if trainer.history else None,
                   "eval": {f"{r['split']}/{r['method']}": {k: r[k] for k in (
                       "parse_rate", "unsafe_pass_through", "benign_over_refusal")}
                            for r in table if r["tier"] == "all"}}}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
