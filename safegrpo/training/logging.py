"""Metric sinks: JSONL (always), TensorBoard (optional).

``start(step)`` is called once before a run (or a resumed run) logs: it drops every record of
step >= ``step`` from metrics.jsonl (steps a killed run logged after its last checkpoint, or a
previous run in the same folder), so the file never holds a step twice, and opens TensorBoard
with ``purge_step`` for the same reason. A line torn by a kill mid-write is dropped too.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


class MetricLogger:
    def __init__(self, out_dir: str | Path, tensorboard: bool = True, console: bool = True,
                 enabled: bool = True):
        self.enabled = enabled
        self.out_dir = Path(out_dir)
        self.console = console
        self.tensorboard = tensorboard
        self._tb = None
        self._started = False
        self.path = self.out_dir / "metrics.jsonl"
        if enabled:
            self.out_dir.mkdir(parents=True, exist_ok=True)

    def start(self, step: int = 0) -> None:
        """Begin logging at ``step``: forget records of step >= ``step`` (JSONL and TensorBoard)."""
        self._started = True
        if not self.enabled:
            return
        truncate_jsonl(self.path, step)
        if self.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.out_dir / "tb"), purge_step=step)
            except ImportError:  # pragma: no cover - tensorboard is a dependency
                self._tb = None

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if not self._started:
            self.start(step)
        clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **clean}) + "\n")
        if self._tb is not None:
            for k, v in metrics.items():
                if isinstance(v, int | float) and not (isinstance(v, float) and math.isnan(v)):
                    self._tb.add_scalar(k, v, step)
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def truncate_jsonl(path: str | Path, step: int) -> None:
    """Keep only the records of ``path`` whose "step" is < ``step`` (dropping lines torn by a kill
    mid-write); the rewrite is atomic, so a kill during it loses nothing."""
    path = Path(path)
    if not path.exists():
        return
    from safegrpo.training.checkpoint import atomic_write_text

    keep = [ln for ln in path.read_text(errors="replace").splitlines()
            if isinstance((rec := _parse(ln) or {}).get("step"), int) and rec["step"] < step]
    atomic_write_text(path, "".join(ln + "\n" for ln in keep))


def _parse(line: str) -> dict[str, Any] | None:
    try:
        rec = json.loads(line)
    except json.JSONDecodeError:
        return None
    return rec if isinstance(rec, dict) else None


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in Path(path).read_text().splitlines() if ln.strip()]
