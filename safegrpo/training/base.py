"""The loop every RL trainer shares: step -> log -> checkpoint -> early stop, and resume.

Subclasses implement ``step(step) -> metrics``, ``save_payload(dir)`` and ``load_payload(dir)``
and own ``self.accelerator``; the config needs steps, out_dir, save_every, keep_checkpoints,
tensorboard, early_stop_reward, early_stop_window and (optionally) early_stop_max_kl.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from safegrpo.training.checkpoint import (
    latest_checkpoint,
    load_state,
    save_checkpoint,
    set_rng_state,
)
from safegrpo.training.logging import MetricLogger


class RLTrainerBase:
    on_step = None

    def init_loop(self, cfg: Any) -> None:
        self.out = Path(cfg.out_dir)
        self.logger = MetricLogger(self.out, cfg.tensorboard, enabled=self.accelerator.is_main_process)
        self.start_step = 0
        self.history: list[dict[str, Any]] = []
        self.stop_reason: str | None = None
        # extra early-stop rules: metrics -> reason or None (e.g. a repetition-ratio ceiling)
        self.stop_rules: list = []

    def step(self, step: int) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def save_payload(self, d: Path) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def load_payload(self, d: Path) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def train(self) -> list[dict[str, Any]]:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        cfg = self.cfg
        t_start = time.perf_counter()
        with Progress(TextColumn(f"[bold]{type(self).__name__}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                      disable=not self.accelerator.is_main_process) as bar:
            task_id = bar.add_task("grpo", total=cfg.steps, completed=self.start_step, info="")
            for step in range(self.start_step, cfg.steps):
                metrics = self.step(step)
                metrics["time/wall_s"] = time.perf_counter() - t_start
                self.history.append({"step": step, **metrics})
                self.logger.log(step, metrics)
                if self.on_step:
                    self.on_step(step, metrics)
                bar.update(task_id, advance=1, info=f"reward {metrics['reward/total']:+.3f}")
                self.stop_reason = self.should_stop(metrics)
                last = step + 1 == cfg.steps or self.stop_reason is not None
                if last or (cfg.save_every and (step + 1) % cfg.save_every == 0):
                    self.save(step + 1)
                if self.stop_reason:
                    break
        self.logger.close()
        return self.history

    def should_stop(self, metrics: dict[str, Any]) -> str | None:
        cfg = self.cfg
        for rule in self.stop_rules:
            reason = rule(metrics)
            if reason:
                return reason
        if cfg.early_stop_max_kl is not None and metrics.get("loss/kl", 0.0) > cfg.early_stop_max_kl:
            return f"kl {metrics['loss/kl']:.4f} > {cfg.early_stop_max_kl}"
        if cfg.early_stop_reward is not None and len(self.history) >= cfg.early_stop_window:
            recent = [h["reward/total"] for h in self.history[-cfg.early_stop_window:]]
            mean = sum(recent) / len(recent)
            if mean >= cfg.early_stop_reward:
                return f"mean reward {mean:.3f} >= {cfg.early_stop_reward}"
        return None

    # ---- checkpoint / resume -----------------------------------------------------------
    def save(self, step: int) -> None:
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            save_checkpoint(self.out / "checkpoints", step, self.save_payload,
                            {"history": self.history, "stop_reason": self.stop_reason},
                            keep=self.cfg.keep_checkpoints)
        self.accelerator.wait_for_everyone()

    def resume(self) -> int:
        """Load the latest checkpoint under out_dir; returns the step to continue from (0 if none)."""
        ckpt = latest_checkpoint(self.out / "checkpoints")
        if ckpt is None:
            return 0
        self.load_payload(ckpt)
        set_rng_state(torch.load(ckpt / "rng.pt", weights_only=False))
        state = load_state(ckpt)
        self.start_step = int(state["step"])
        self.history = list(state.get("history", []))
        self.logger.truncate_after(self.start_step - 1)
        return self.start_step


