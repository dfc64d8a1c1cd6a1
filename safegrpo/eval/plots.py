"""Plots as pure functions of JSONL records (no training state)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def reward_curve(history: Sequence[dict[str, Any]], path: str | Path, *,
                 keys: Sequence[str] = ("reward/total", "reward/decision", "reward/transform",
                                        "reward/format", "reward/overrefusal"),
                 title: str = "GRPO reward", smooth: int = 5) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [h["step"] for h in history]
    for k in keys:
        ys = [h.get(k) for h in history]
        if all(y is None for y in ys):
            continue
        ys = [float("nan") if y is None else y for y in ys]
        sm = [sum(w) / len(w) for w in (ys[max(0, i - smooth + 1):i + 1] for i in range(len(ys)))]
        line, = ax.plot(steps, sm, label=k, lw=2 if k.endswith("total") else 1)
        ax.plot(steps, ys, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("step")
    ax.set_ylabel("reward (moving avg)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def judge_curve_plot(report: Mapping[str, Any], path: str | Path, *,
                     title: str = "Embedded judge's operating curve vs defenders") -> Path:
    """One panel per split of a ``judge_curve.curve_report``: the judge's (over-refusal,
    pass-through) curve over thresholds and every defender as a labelled point (filled when it
    is below the curve)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = list(report)
    fig, axes = plt.subplots(1, max(1, len(splits)), figsize=(5 * max(1, len(splits)), 4.5),
                             squeeze=False)
    for ax, split in zip(axes[0], splits, strict=False):
        s = report[split]
        ax.plot([p["over_refusal"] for p in s["curve"]], [p["pass_through"] for p in s["curve"]],
                color="grey", lw=1.5, label="judge threshold sweep")
        for d in s["defenders"]:
            color = "C0" if d["below"] else "C3"
            ax.scatter([d["over_refusal"]], [d["pass_through"]], s=40, zorder=3,
                       facecolors=color if d["below"] else "none", edgecolors=color)
            ax.annotate(d["method"], (d["over_refusal"], d["pass_through"]), fontsize=8,
                        xytext=(4, 4), textcoords="offset points")
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("benign over-refusal")
        ax.set_ylabel("unsafe pass-through")
        ax.set_title(f"{split} ({s['n_unsafe']} unsafe, {s['n_benign']} benign)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper right")
    fig.suptitle(title + " (filled: below the curve)", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
