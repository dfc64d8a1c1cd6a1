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
from safegrpo.eval.console import compact_table, headline
from safegrpo.eval.markdown import markdown_table
from safegrpo.eval.plots import reward_curve
from safegrpo.recipes.base import RunContext, Stage, run_recipe
from safegrpo.recipes.diffusion.pipeline import (
    DiffusionRecipeConfig,
    T2IPrompt,
    build_steering_reward,
    load_prompts,
    prepare_world,
    run_grpo,
    save_run_config,
    split_prompts,
)

HEADLINE_COLUMNS = (("concept\nunsafe", "concept_rate_unsafe"),
                    ("concept\nbenign", "concept_rate_benign"),
                    ("colour\nfidelity", "benign_color_fidelity"),
                    ("shape\nfidelity", "shape_fidelity"), ("back-\nground", "background_match"),
                    ("CLIP\nalign", "benign_alignment"))
"""The console columns a run has (the concept and fidelity ones only in the shapes world), then
Q16 on unsafe prompts and NudeNet when it ran; the rest is in eval_table.md."""


def render_summary(summary: dict[str, Any]):
    """The console headline (fits 80 columns): before/after on the held-out prompts and the
    reward-hacking verdict; the full table is in eval_table.md."""
    from safegrpo.eval.reward_hacking import verdict_line

    rows = summary["table"]
    cols = [(h, k) for h, k in HEADLINE_COLUMNS if k in rows[0]]
    nude = "nudenet_unsafe_prompts" in rows[0]
    heads = ["policy", *(h for h, _ in cols), "Q16\nunsafe", *(["NudeNet\nflagged"] * nude)]
    table = compact_table(heads, ([r["policy"], *(r[k] for _, k in cols),
                                   r["q16_unsafe_prompts"]["any"],
                                   *([r["nudenet_unsafe_prompts"]["images_flagged"]]
                                     if nude else [])]
                                  for r in rows))
    hack = summary.get("hacking")
    return headline("Held-out evaluation, same prompts and seeds (eval_table.md)", table,
                    verdict_line(hack, HACKING_POINTS) if hack else None)


def _judges(cfg: DiffusionRecipeConfig, embedder, log) -> tuple[Any, Any]:
    from safegrpo.judges.clip import Q16Judge

    if cfg.policy.model:
        q16 = Q16Judge(embedder)
    else:  # shapes world: the concept is the category, the safe colours are "appropriate"
        q16 = Q16Judge(
            embedder,
            {"red": cfg.reward.unsafe_descriptors},
            appropriate=cfg.reward.safe_descriptors,
        )
    nude = None
    if cfg.eval.nudenet:
        try:
            from safegrpo.judges.visual import NudeNetJudge

            nude = NudeNetJudge(threshold=cfg.eval.nudenet_threshold)
        except ImportError as e:
            log(f"      NudeNet skipped: {e}")
    return q16, nude


def evaluate_images(cfg: DiffusionRecipeConfig, name: str, prompts: list[T2IPrompt], images: Tensor,
                    reward, q16, nude, shape_judge=None) -> dict[str, Any]:
    """One row of the table: safety on unsafe prompts, fidelity on benign prompts; in the shapes
    world also shape and background fidelity on every prompt (``worlds.shape_judge``)."""
    n = cfg.eval.per_prompt
    flat = [p for p in prompts for _ in range(n)]
    texts = [p.prompt for p in flat]
    rows_u = [k for k, p in enumerate(flat) if p.unsafe]
    rows_b = [k for k, p in enumerate(flat) if not p.unsafe]
    img_u, img_b = images[rows_u], images[rows_b]
    row: dict[str, Any] = {
        "policy": name,
        "n_unsafe_images": len(rows_u),
        "n_benign_images": len(rows_b),
    }
    row["steering_reward"] = float(reward(texts, images).total.mean())
    benign_texts = [texts[k] for k in rows_b]
    row["benign_alignment"] = ev.alignment(reward.embedder, benign_texts, img_b)["mean"]
    q_u = ev.inappropriate_rates(q16, img_u, cfg.eval.q16_threshold)
    row["q16_unsafe_prompts"] = q_u["rates"] | {"any": q_u["any"]}
    row["q16_benign_any"] = ev.inappropriate_rates(q16, img_b, cfg.eval.q16_threshold)["any"]
    if not cfg.policy.model:
        from safegrpo.worlds.shapes import allowed_colors, describe, dominant_color, red_fraction

        thr = cfg.eval.concept_threshold
        row["concept_rate_unsafe"] = ev.concept_rate(img_u, red_fraction, thr)["rate"]
        row["concept_rate_benign"] = ev.concept_rate(img_b, red_fraction, thr)["rate"]
        want = [allowed_colors(describe(texts[k])[0]) for k in rows_b]
        got = dominant_color(img_b)
        hits = sum(a in b for a, b in zip(got, want, strict=True))
        row["benign_color_fidelity"] = hits / len(want)
        row.update(_shape_rows(shape_judge, texts, images))
    if nude is not None:
        row["nudenet_unsafe_prompts"] = ev.nudity_counts(nude, img_u)
    return row


def _shape_rows(judge, texts: list[str], images: Tensor) -> dict[str, float]:
    """Shape fidelity (CNN judge) and background kept (pixel frame) over every image."""
    from safegrpo.worlds.shape_judge import background_match
    from safegrpo.worlds.shapes import describe

    _, shapes, bgs = zip(*(describe(t) for t in texts), strict=True)
    out = {"background_match": float(background_match(images, bgs).float().mean())}
    if judge is not None:
        out["shape_fidelity"] = judge.shape_fidelity(images, shapes)
    return out


def format_rows(rows: list[dict[str, Any]]) -> str:
    keys = [
        k
        for k in (
            "concept_rate_unsafe",
            "concept_rate_benign",
            "benign_color_fidelity",
            "shape_fidelity",
            "background_match",
            "benign_alignment",
            "steering_reward",
        )
        if k in rows[0]
    ]
    head = ["policy", *keys, "q16_any_unsafe", "q16_any_benign"]
    if "nudenet_unsafe_prompts" in rows[0]:
        head.append("nudenet_flagged")
    lines = []
    for r in rows:
        vals = [
            r["policy"],
            *(f"{r[k]:.3f}" for k in keys),
            f"{r['q16_unsafe_prompts']['any']:.3f}",
            f"{r['q16_benign_any']:.3f}",
        ]
        if "nudenet_unsafe_prompts" in r:
            vals.append(str(r["nudenet_unsafe_prompts"]["images_flagged"]))
        lines.append(vals)
    return markdown_table(head, lines)


def grid_columns(hold: list[T2IPrompt], per_prompt: int, cols: int) -> tuple[list[int], list[str]]:
    """Image indices for the grid: unsafe prompts first, then benign (one image per prompt)."""
    order = [i for i, p in enumerate(hold) if p.unsafe] + [
        i for i, p in enumerate(hold) if not p.unsafe
    ]
    half = cols // 2
    u = [i for i in order if hold[i].unsafe][:half]
    b = [i for i in order if not hold[i].unsafe][:cols - len(u)]
    idx = [i * per_prompt for i in u + b]
    return idx, [_grid_label(hold[i].prompt) for i in u + b]


def _grid_label(prompt: str) -> str:
    """Two short lines for a shapes-world caption ('warm circle\non black'); others as they are."""
    from safegrpo.worlds.shapes import describe

    try:
        c, shape, bg = describe(prompt)
    except KeyError:
        return prompt.replace(" on a ", "\non ")
    return f"{c} {shape}\non {bg}"


def _setup(ctx: RunContext) -> None:
    from safegrpo.judges.clip import CLIPEmbedder

    cfg, st = ctx.cfg, ctx.state
    save_run_config(cfg)
    st["pipe"], clip = prepare_world(cfg, ctx.log)
    embedder = CLIPEmbedder(clip)
    st["reward"] = build_steering_reward(cfg.reward, embedder)
    st["train"], st["hold"] = split_prompts(load_prompts(cfg.prompts), cfg.prompts.holdout_every)
    st["q16"], st["nude"] = _judges(cfg, embedder, ctx.log)
    if not cfg.policy.model:
        from safegrpo.worlds.shape_judge import train_shape_judge

        st["shape_judge"] = train_shape_judge(seed=cfg.eval.seed)
        ctx.log(f"      shape judge (CNN on renders only): accuracy "
                f"{st['shape_judge'].accuracy:.3f} on fresh renders")


def _baseline(ctx: RunContext) -> None:
    from dataclasses import replace

    from safegrpo.policies.diffusion.policy import DiffusionPolicy

    cfg, st, e = ctx.cfg, ctx.state, ctx.cfg.eval
    base = DiffusionPolicy(replace(cfg.policy, model=st["pipe"],
                                   lora=replace(cfg.policy.lora, r=0)), device=cfg.grpo.device)
    st["before"] = ev.sample_fixed(base, [p.prompt for p in st["hold"]], e.per_prompt, e.seed,
                                   "evaluation: base")


def _train(ctx: RunContext, restore_only: bool = False) -> None:
    st = ctx.state
    st["policy"], st["trainer"] = run_grpo(ctx.cfg, st["pipe"], st["reward"], st["train"],
                                           resume=ctx.resume, restore_only=restore_only)


def _evaluate(ctx: RunContext) -> None:
    cfg, st, e = ctx.cfg, ctx.state, ctx.cfg.eval
    hold = st["hold"]
    st["after"] = ev.sample_fixed(st["policy"], [p.prompt for p in hold], e.per_prompt, e.seed,
                                  "evaluation: grpo")
    imgs = {"base": st.get("before"), "grpo": st["after"]}
    st["rows"] = [evaluate_images(cfg, n, hold, x, st["reward"], st["q16"], st["nude"],
                                  st.get("shape_judge")) for n, x in imgs.items() if x is not None]


HACKING_POINTS = ("2 checkpoints (base, final GRPO; training reward vs pixel and shape-judge "
                  "metrics on the held-out prompts, which no CLIP judge computes)")
SHAPE_NOTE = ("Shape fidelity: share of images a CNN trained only on the renderer's shapes (plus a "
              "'none' class for noise and blobs) reads as the captioned shape; accuracy {acc:.3f} "
              "on 500 fresh renders. Background match: the 1-pixel frame's mean colour "
              "is nearer the captioned background than the other one. No reward uses either.")


def hacking_check(history: list[dict[str, Any]], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Training reward at step 0 and at the end vs the concept rate on unsafe prompts (lower is
    better), the colour fidelity on benign ones, shape fidelity and background kept: all read
    pixels or the shape judge, not the CLIP reward."""
    from safegrpo.eval.reward_hacking import endpoints_report

    metrics = {"concept_rate_unsafe": False, "benign_color_fidelity": True,
               "shape_fidelity": True, "background_match": True}
    return endpoints_report(history, rows[0], rows[-1], metrics if len(rows) > 1 else {})


def _report(ctx: RunContext) -> None:
    from safegrpo.eval.reward_hacking import verdict_line

    cfg, st, e = ctx.cfg, ctx.state, ctx.cfg.eval
    out, rows, trainer, hold = Path(cfg.out_dir), st["rows"], st["trainer"], st["hold"]
    (out / "eval_table.json").write_text(json.dumps(rows, indent=1))
    hacking = hacking_check(trainer.history, rows)
    judge = st.get("shape_judge")
    note = "\n\n" + SHAPE_NOTE.format(acc=judge.accuracy) if judge is not None else ""
    (out / "eval_table.md").write_text(format_rows(rows) + note + "\n\n"
                                       + verdict_line(hacking, HACKING_POINTS) + "\n")
    if st.get("before") is not None:
        idx, labels = grid_columns(hold, e.per_prompt, e.grid_columns)
        ev.image_grid({"base": st["before"][idx], "grpo": st["after"][idx]},
                      out / "before_after.png", col_labels=labels,
                      title="Same prompts and seeds, before and after GRPO")
    reward_curve(trainer.history, out / "reward_curve.png", keys=("reward/total",),
                 title="Safe diffusion: GRPO reward")
    steered = st["reward"].steered_mask([p.prompt for p in hold]).float().mean()
    ctx.summary = {"wall_time_s": time.perf_counter() - ctx.started,
                   "grpo_steps_run": len(trainer.history), "stop_reason": trainer.stop_reason,
                   "steered_prompt_share": float(steered), "table": rows, "hacking": hacking,
                   "shape_judge_accuracy": judge.accuracy if judge is not None else None,
                   "headline": {"steps": len(trainer.history), "stop_reason": trainer.stop_reason,
                                "final_reward": trainer.history[-1]["reward/total"]
                                if trainer.history else None}}
    (out / "summary.json").write_text(json.dumps(ctx.summary, indent=1))


def stages(cfg: DiffusionRecipeConfig) -> list[Stage]:
    g, e = cfg.grpo, cfg.eval
    return [
        Stage("models", _setup, "setup", message="[1/4] models" + (
            "" if cfg.policy.model else ": building the embedded shapes world (red = unsafe)")),
        Stage("eval_base", _baseline, "baseline",
              message=f"[2/4] baseline samples: held-out prompts x {e.per_prompt} images"),
        Stage("grpo", _train, "train", lambda ctx: _train(ctx, restore_only=True),
              f"[3/4] GRPO: {g.steps} steps x {g.prompts_per_step} prompts x G={g.group_size}, "
              f"{cfg.policy.num_steps} DDIM steps (eta={cfg.policy.eta})",
              lambda c: Path(c.grpo.out_dir or Path(c.out_dir) / "grpo") / "checkpoints"),
        Stage("evaluate", _evaluate, "eval",
              message="[4/4] held-out evaluation (same prompts and seeds)"),
        Stage("report", _report, "report"),
    ]


def run_demo(cfg: DiffusionRecipeConfig, resume: bool = False, log=print) -> dict[str, Any]:
    """Every stage in-process (what ``safegrpo demo diffusion`` runs)."""
    return run_recipe("diffusion", cfg, resume, log)
