"""`safegrpo demo`: the whole moderation pipeline on CPU, with baselines and a per-tier table.

Writes under ``out_dir``: config.yaml, sft/ (metrics, model), grpo/ (metrics.jsonl, tb/,
checkpoints/), eval_records.jsonl, eval_table.json, eval_table.md, reward_curve.png.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

from safegrpo.envs.moderation.pools import TIERS, holdout, load_lexicon
from safegrpo.eval.heldout import moderation_heldout
from safegrpo.eval.moderation import (
    always_reject,
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
from safegrpo.eval.rewrites import add_independent, judges_note
from safegrpo.policies.lm import LMPolicy
from safegrpo.recipes.moderation import (
    ModerationRecipeConfig,
    build_reward,
    load_defender,
    prepare_base,
    run_grpo,
    run_sft,
    save_run_config,
)

OUTPUTS = ("eval_headline.md, eval_intervals.md, eval_table.md, eval_records.jsonl, "
           "reward_curve.png, grpo/metrics.jsonl")


def render_summary(summary: dict[str, Any]):
    """The per-tier table as a rich Table (held-out columns marked), the judges footnote and
    the reward-hacking verdict."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(title="Held-out evaluation (per tier)")
    cols = ["split", "method", "tier", "allow_rate", "transform_rate", "reject_rate", "parse_rate",
            "mean_reward", "unsafe_pass_through", "benign_over_refusal", "strict_pass_through",
            "rewrite_unsafe_indep", "rewrite_unsafe_train", "distinct_rewrite_ratio"]
    heads = {"strict_pass_through": "strict_pass_through (held-out)",
             "rewrite_unsafe_indep": "rewrite_unsafe (held-out)",
             "rewrite_unsafe_train": "rewrite_unsafe (training)"}
    for c in cols:
        table.add_column(heads.get(c, c))
    for row in summary["table"]:
        table.add_row(*[("-" if row.get(c) is None else f"{row[c]:.3f}"
                         if isinstance(row[c], float) else str(row[c])) for c in cols])
    parts = [table, Text(judges_note(summary["table"]).strip())]
    if summary.get("hacking"):
        parts.append(Text(hacking_line(summary["hacking"])))
    return Group(*parts)


def hacking_line(h: dict[str, Any]) -> str:
    """One line: the detector's verdict per independent metric and how many checkpoints it saw."""
    def one(k: str, v: dict[str, Any]) -> str:
        if v["independent_change"] is None:
            return f"{k}: {v['verdict']}"
        return (f"{k}: {v['verdict']} ({v['independent_change']:+.3f} vs reward "
                f"{v['reward_change']:+.3f})")
    ms = "; ".join(one(k, v) for k, v in h.get("metrics", {}).items())
    pts = h.get("points") or []
    return (f"Reward hacking ({h['verdict']}) on {h.get('split')}, {len(pts)} checkpoints "
            f"({', '.join(m for m, _ in pts)}; SFT start vs final only, no intermediate "
            f"checkpoint is evaluated): {ms or 'no metric'}")


def heldout_judges(cfg: ModerationRecipeConfig) -> dict[str, Any]:
    """Rewrite judges of another family than the training reward's (``eval.heldout``)."""
    return moderation_heldout(cfg.arena.text_judge, cfg.arena.guard_model)


def hacking_check(table: list[dict[str, Any]], history: list[dict[str, Any]]) -> dict[str, Any]:
    """The reward-hacking detector on two checkpoints: the SFT start (step 0, method sft_only)
    and the final GRPO policy (after the last logged step, method grpo)."""
    if not history:
        return {"flag": False, "verdict": "insufficient", "metrics": {}}
    last = int(history[-1]["step"]) + 1
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
    """{split: records}: the template holdout sample and the whole hand-written eval split."""
    out = {}
    for name in cfg.eval.splits:
        if name == "holdout":
            out[name] = holdout_sample(cfg)
        else:
            from safegrpo.envs.moderation.pools import load_handwritten

            out[name] = list(load_handwritten("eval"))
    return out


def policy_defender(policy: LMPolicy, template: str, batch_size: int = 32):
    def run(prompts: list[str]) -> list[str]:
        return policy.complete([template.format(prompt=p) for p in prompts], greedy=True,
                               batch_size=batch_size)
    return run


def lexicon_words() -> list[str]:
    """Every harmful keyword of the arena lexicon (the keyword-filter baseline's list)."""
    return sorted({w for ws in load_lexicon().values() for w in ws})


def evaluate_all(name: str, defender, splits: dict[str, list], reward) -> list[dict[str, Any]]:
    return [row for split, recs in splits.items() for row in evaluate(name, defender, recs, reward, split)]


class Phases:
    """Wall time per phase, for the summary's time breakdown, and the generation throughput of
    each phase that sampled from the policy (``tokens()`` counts completion tokens so far), and
    the process's peak RSS at the end of each phase (which phase sets the high-water mark)."""

    def __init__(self, log, tokens=lambda: 0):
        self.log, self.tokens, self.times, self.gen, self.peak_rss = log, tokens, {}, {}, {}
        self.t, self.n = time.perf_counter(), tokens()

    def __call__(self, name: str, msg: str) -> None:
        now, n = time.perf_counter(), self.tokens()
        if self.times:
            last = next(reversed(self.times))
            self.times[last] = now - self.t
            self.peak_rss[last] = peak_rss_gb()
            if n > self.n:
                self.gen[last] = {"tokens": n - self.n, "tokens_per_s": (n - self.n) / (now - self.t)}
        self.times[name], self.t, self.n = 0.0, now, n
        if msg:
            self.log(msg)

    def close(self) -> dict[str, float]:
        self("done", "")
        self.times.pop("done")
        return self.times


def run_demo(cfg: ModerationRecipeConfig, resume: bool = False, log=print) -> dict[str, Any]:
    t0 = time.perf_counter()
    policy = None
    phase = Phases(log, lambda: policy.generated_tokens if policy is not None else 0)
    save_run_config(cfg)
    phase("load", "[1/5] base model and judges")
    base = prepare_base(cfg)
    reward = build_reward(cfg)
    policy = load_defender(cfg, base)
    log(f"      base {base} (chat template: {policy.chat}); one copy in memory")
    splits = eval_splits(cfg)
    template, bs = cfg.arena.prompt_template, cfg.eval.batch_size
    records = []
    if cfg.eval.zero_shot if cfg.eval.zero_shot is not None else bool(cfg.base_model):
        phase("eval_base", "[2/5] zero-shot evaluation of the prompted base model")
        records += evaluate_all("base_prompted", policy_defender(policy, template, bs), splits, reward)
    phase("sft", f"[3/5] SFT ({cfg.sft_data.examples} pairs, {cfg.sft.epochs} epochs)")
    sft_hist = run_sft(cfg, policy, resume=resume)
    if cfg.eval.sft_parse_prompts:
        log(f"      SFT parse rate by epoch: {[round(h['sft/parse_rate'], 3) for h in sft_hist]}")
    phase("eval_sft", "      evaluating the SFT defender")
    records += evaluate_all("sft_only", policy_defender(policy, template, bs), splits, reward)
    g = cfg.grpo
    phase("grpo", f"[4/5] GRPO: {g.steps} steps x {g.prompts_per_step} prompts x G={g.group_size}")
    trainer = run_grpo(cfg, policy, reward, resume=resume)
    phase("eval_grpo", "[5/5] held-out evaluation")
    baselines = {"keyword_filter": keyword_filter(lexicon_words()), "always_reject": always_reject,
                 "judge_threshold": judge_threshold(reward.text_judge),
                 "grpo": policy_defender(policy, template, bs)}
    for name, fn in baselines.items():
        records += evaluate_all(name, fn, splits, reward)
    times = phase.close()
    perf = {**perf_summary(trainer.history, sft_hist, phase.gen),
            "peak_rss_gb_by_phase": phase.peak_rss}
    return write_outputs(cfg, records, trainer, sft_hist, times, time.perf_counter() - t0, perf)


def evaluate_trained(cfg: ModerationRecipeConfig, policy: LMPolicy, reward) -> list[dict[str, Any]]:
    """``train moderation``'s closing evaluation: the trained defender and the keyword filter on
    every eval split; writes eval_records.jsonl and eval_table.md under out_dir."""
    splits = eval_splits(cfg)
    records = evaluate_all("grpo", policy_defender(policy, cfg.arena.prompt_template, cfg.eval.batch_size),
                           splits, reward)
    records += evaluate_all("keyword_filter", keyword_filter(lexicon_words()), splits, reward)
    records = add_independent(records, heldout_judges(cfg), cfg.arena.text_judge)
    out = Path(cfg.out_dir)
    write_jsonl(out / "eval_records.jsonl", records)
    table = tier_table(records)
    (out / "eval_table.md").write_text(format_table(table) + "\n")
    return table


def peak_rss_gb() -> float:
    """Peak resident set size of this process so far, in GiB."""
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1 << 30) if sys.platform == "darwin" else rss / (1 << 20)


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


def write_outputs(cfg, records, trainer, sft_hist, times, wall, perf) -> dict[str, Any]:
    out = Path(cfg.out_dir)
    records = add_independent(records, heldout_judges(cfg), cfg.arena.text_judge)
    write_jsonl(out / "eval_records.jsonl", records)
    table = tier_table(records)
    hacking = hacking_check(table, trainer.history)
    (out / "eval_table.json").write_text(json.dumps(table, indent=1))
    md = (format_table(table, note=False) + "\n\nMean reward components:\n\n"
          + format_table(table, components=True))
    (out / "eval_table.md").write_text(md + "\n")
    (out / "eval_headline.md").write_text(headline_table(table) + "\n\n" + hacking_line(hacking)
                                          + "\n")
    (out / "eval_intervals.md").write_text(interval_table([records], [cfg.seed])[1] + "\n")
    reward_curve(trainer.history, out / "reward_curve.png", title="Moderation arena: GRPO reward")
    summary = {"wall_time_s": wall, "phase_time_s": times, "perf": perf,
               "grpo_steps_run": len(trainer.history), "stop_reason": trainer.stop_reason,
               "sft_final_parse_rate": sft_hist[-1].get("sft/parse_rate"), "table": table,
               "hacking": hacking}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
