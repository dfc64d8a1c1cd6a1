"""`safegrpo demo diffusion`: safe-diffusion GRPO end to end on CPU, before/after evaluation.

Writes under ``out_dir``: config.yaml, world/ (tiny CLIP + pipeline when embedded), grpo/
(metrics.jsonl, tb/, checkpoints/), eval_table.json, eval_table.md, before_after.png,
reward_curve.png, summary.json.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from torch import Tensor

from safegrpo.eval import diffusion as ev
from safegrpo.eval.plots import reward_curve
from safegrpo.recipes.diffusion import (
    DiffusionRecipeConfig,
    T2IPrompt,
    build_steering_reward,
    load_prompts,
    prepare_world,
    run_grpo,
    save_run_config,
    split_prompts,
)

OUTPUTS = "eval_table.md, before_after.png, reward_curve.png, grpo/metrics.jsonl"


def render_summary(summary: dict[str, Any]):
    """Before/after table as rich Markdown."""
    from rich.markdown import Markdown

    return Markdown("**Held-out evaluation, same prompts and seeds**\n\n" + format_rows(summary["table"]))


def _judges(cfg: DiffusionRecipeConfig, embedder, log) -> tuple[Any, Any]:
    from safegrpo.judges.clip import Q16Judge

    if cfg.policy.model:
        q16 = Q16Judge(embedder)
    else:  # shapes world: the concept is the category, the safe colours are "appropriate"
        q16 = Q16Judge(embedder, {"red": cfg.reward.unsafe_descriptors}, appropriate=cfg.reward.safe_descriptors)
    nude = None
    if cfg.eval.nudenet:
        try:
            from safegrpo.judges.visual import NudeNetJudge

            nude = NudeNetJudge(threshold=cfg.eval.nudenet_threshold)
        except ImportError as e:
            log(f"      NudeNet skipped: {e}")
    return q16, nude


def evaluate_images(cfg: DiffusionRecipeConfig, name: str, prompts: list[T2IPrompt], images: Tensor,
                    reward, q16, nude) -> dict[str, Any]:
    """One row of the table: safety on unsafe prompts, fidelity on benign prompts."""
    n = cfg.eval.per_prompt
    flat = [p for p in prompts for _ in range(n)]
    texts = [p.prompt for p in flat]
    rows_u = [k for k, p in enumerate(flat) if p.unsafe]
    rows_b = [k for k, p in enumerate(flat) if not p.unsafe]
    img_u, img_b = images[rows_u], images[rows_b]
    row: dict[str, Any] = {"policy": name, "n_unsafe_images": len(rows_u), "n_benign_images": len(rows_b)}
    row["steering_reward"] = float(reward(texts, images).total.mean())
    row["benign_alignment"] = ev.alignment(reward.embedder, [texts[k] for k in rows_b], img_b)["mean"]
    q_u = ev.inappropriate_rates(q16, img_u, cfg.eval.q16_threshold)
    row["q16_unsafe_prompts"] = q_u["rates"] | {"any": q_u["any"]}
    row["q16_benign_any"] = ev.inappropriate_rates(q16, img_b, cfg.eval.q16_threshold)["any"]
    if not cfg.policy.model:
        from safegrpo.recipes.synthetic_shapes import allowed_colors, dominant_color, red_fraction

        row["concept_rate_unsafe"] = ev.concept_rate(img_u, red_fraction, cfg.eval.concept_threshold)["rate"]
        row["concept_rate_benign"] = ev.concept_rate(img_b, red_fraction, cfg.eval.concept_threshold)["rate"]
        want = [allowed_colors(texts[k].split()[1]) for k in rows_b]
        got = dominant_color(img_b)
        row["benign_color_fidelity"] = sum(a in b for a, b in zip(got, want, strict=True)) / len(want)
    if nude is not None:
        row["nudenet_unsafe_prompts"] = ev.nudity_counts(nude, img_u)
    return row


def format_rows(rows: list[dict[str, Any]]) -> str:
    keys = [k for k in ("concept_rate_unsafe", "concept_rate_benign", "benign_color_fidelity", "benign_alignment",
                        "steering_reward") if k in rows[0]]
    head = ["policy", *keys, "q16_any_unsafe", "q16_any_benign"]
    if "nudenet_unsafe_prompts" in rows[0]:
        head.append("nudenet_flagged")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        vals = [r["policy"], *(f"{r[k]:.3f}" for k in keys), f"{r['q16_unsafe_prompts']['any']:.3f}",
                f"{r['q16_benign_any']:.3f}"]
        if "nudenet_unsafe_prompts" in r:
            vals.append(str(r["nudenet_unsafe_prompts"]["images_flagged"]))
        lines.append("| " + " | ".join(vals) + " |")
    return "\n".join(lines)


def grid_columns(hold: list[T2IPrompt], per_prompt: int, cols: int) -> tuple[list[int], list[str]]:
    """Image indices for the grid: unsafe prompts first, then benign (one image per prompt)."""
    order = [i for i, p in enumerate(hold) if p.unsafe] + [i for i, p in enumerate(hold) if not p.unsafe]
    half = cols // 2
    u = [i for i in order if hold[i].unsafe][:half]
    b = [i for i in order if not hold[i].unsafe][:cols - len(u)]
    idx = [i * per_prompt for i in u + b]
    return idx, [hold[i].prompt.replace(" on a ", "\non ") for i in u + b]


def run_demo(cfg: DiffusionRecipeConfig, resume: bool = False, log=print) -> dict[str, Any]:
    from dataclasses import replace

    from safegrpo.judges.clip import CLIPEmbedder
    from safegrpo.policies.diffusion.policy import DiffusionPolicy

    t0 = time.perf_counter()
    out = Path(cfg.out_dir)
    save_run_config(cfg)
    log("[1/4] models" + ("" if cfg.policy.model else ": building the embedded shapes world (red = unsafe)"))
    pipe, clip = prepare_world(cfg, log)
    embedder = CLIPEmbedder(clip)
    reward = build_steering_reward(cfg.reward, embedder)
    train, hold = split_prompts(load_prompts(cfg.prompts), cfg.prompts.holdout_every)
    q16, nude = _judges(cfg, embedder, log)
    e = cfg.eval
    log(f"[2/4] baseline samples: {len(hold)} held-out prompts x {e.per_prompt} images")
    base = DiffusionPolicy(replace(cfg.policy, model=pipe, lora=replace(cfg.policy.lora, r=0)), device=cfg.grpo.device)
    before = ev.sample_fixed(base, [p.prompt for p in hold], e.per_prompt, e.seed)
    del base
    g = cfg.grpo
    log(f"[3/4] GRPO: {g.steps} steps x {g.prompts_per_step} prompts x G={g.group_size}, "
        f"{cfg.policy.num_steps} DDIM steps (eta={cfg.policy.eta})")
    policy, trainer = run_grpo(cfg, pipe, reward, train, resume=resume)
    log("[4/4] held-out evaluation (same prompts and seeds)")
    after = ev.sample_fixed(policy, [p.prompt for p in hold], e.per_prompt, e.seed)
    rows = [evaluate_images(cfg, n, hold, imgs, reward, q16, nude) for n, imgs in (("base", before), ("grpo", after))]
    (out / "eval_table.json").write_text(json.dumps(rows, indent=1))
    md = format_rows(rows)
    (out / "eval_table.md").write_text(md + "\n")
    idx, labels = grid_columns(hold, e.per_prompt, e.grid_columns)
    ev.image_grid({"base": before[idx], "grpo": after[idx]}, out / "before_after.png", col_labels=labels,
                  title="Same prompts and seeds, before and after GRPO")
    reward_curve(trainer.history, out / "reward_curve.png", keys=("reward/total",), title="Safe diffusion: GRPO reward")
    summary = {"wall_time_s": time.perf_counter() - t0, "grpo_steps_run": len(trainer.history),
               "stop_reason": trainer.stop_reason, "steered_prompt_share": float(
                   reward.steered_mask([p.prompt for p in hold]).float().mean()), "table": rows}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
