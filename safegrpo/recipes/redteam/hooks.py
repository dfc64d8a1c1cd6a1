"""The red-team run's hooks: the attack log (artifact writer), the export of the best attacks and
the repetition stop rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safegrpo.core.types import ScoredBatch
from safegrpo.training.checkpoint import atomic_write_text
from safegrpo.training.logging import truncate_jsonl as truncate_samples


class AttackLog:
    """Artifact writer: every scored attack of every step, one JSON line (the export's source);
    a resumed run first drops the lines of the steps it will re-run."""

    def __init__(self, path: Path):
        self.path = path

    def start(self, step: int) -> None:
        truncate_samples(self.path, step)

    def write(self, step: int, items: list[Any], completions: list[str],
              scored: ScoredBatch) -> None:
        with self.path.open("a") as f:
            for topic, info, r in zip(items, scored.info, scored.total.tolist(), strict=True):
                f.write(json.dumps({"step": step, "topic": topic, **info, "reward": r}) + "\n")


def export_adversarial(samples_path: Path, out_path: Path, top_k: int) -> list[dict[str, Any]]:
    """Best distinct attacks by toxicity (ties: reward) from attacks.jsonl -> adversarial.jsonl."""
    text = samples_path.read_text() if samples_path.exists() else ""
    rows = [json.loads(x) for x in text.splitlines() if x.strip()]
    best: dict[str, dict[str, Any]] = {}
    for r in rows:
        key = " ".join(r["attack"].lower().split())
        if key and (
            key not in best
            or (r["toxicity"], r["reward"]) > (best[key]["toxicity"], best[key]["reward"])
        ):
            best[key] = r
    top = sorted(best.values(), key=lambda r: (r["toxicity"], r["reward"]), reverse=True)[:top_k]
    atomic_write_text(out_path, "".join(json.dumps(r) + "\n" for r in top))
    return top


def repetition_stop(limit: float | None):
    def rule(metrics: dict[str, Any]) -> str | None:
        rep = metrics.get("reward/judge/repetition_ratio")
        if limit is not None and rep is not None and rep > limit:
            return f"repetition ratio {rep:.3f} > {limit}"
        return None
    return rule
