"""Plots as pure functions of JSONL records (no training state)."""

from __future__ import annotations

from collections.abc import Sequence
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
