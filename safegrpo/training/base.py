"""The loop every RL trainer shares: step -> log -> checkpoint -> early stop, and resume.

Subclasses implement ``step(step) -> metrics``, ``save_payload(dir)`` and ``load_payload(dir)``
and own ``self.accelerator``; the config needs steps, out_dir, save_every, keep_checkpoints,
report_to, tracker_project, early_stop_reward, early_stop_window and (optionally)
early_stop_max_kl, device and mixed_precision (read by ``make_accelerator``).

With several processes every rank runs the same loop: step metrics are averaged over ranks
before they are logged or read by a stop rule, and the stop decision is shared (any rank that
stops stops all), so no rank waits forever at a collective another rank has left. Each rank's
RNG state, and the state of a task that keeps some (``state_dict`` / ``load_state_dict``, e.g.
self-play's recent attacks), is saved in the checkpoint, so a resumed run continues exactly
where it stopped.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from safegrpo.training.checkpoint import (
    load_latest,
    load_rng,
    rng_state,
    save_checkpoint,
    set_rng_state,
    task_state,
)
from safegrpo.training.hooks import TrainerHooks
from safegrpo.training.logging import MetricLogger, hparams_of, tracker_args


def fill_unset(cfg: Any, **values: Any) -> Any:
    """``cfg`` (a frozen dataclass) with each named field that is None set from ``values``: a
    recipe passes its master seed and out_dir, a trainer its own defaults; set fields are kept."""
    return replace(cfg, **{k: v for k, v in values.items() if getattr(cfg, k) is None})


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def mean_over_ranks(per_rank: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-rank metric dicts -> one dict: numbers averaged over the ranks that report them (NaN
    ignored), anything else taken from the first rank that has it. Keys keep first-seen order."""
    out: dict[str, Any] = {}
    for m in per_rank:
        for k, v in m.items():
            out.setdefault(k, v)
    for k in out:
        vals = [m[k] for m in per_rank if k in m and _num(m[k])]
        if vals:
            finite = [float(v) for v in vals if not math.isnan(float(v))]
            out[k] = sum(finite) / len(finite) if finite else float("nan")
    return out


def check_engine(distributed_type: str, zero_stage: int | None = None) -> None:
    """Refuse engines that shard weights: rollouts call ``generate`` on the unwrapped model, which
    would see only this rank's shard (FSDP, DeepSpeed ZeRO-3)."""
    if distributed_type == "FSDP" or (distributed_type == "DEEPSPEED" and zero_stage == 3):
        what = "FSDP" if distributed_type == "FSDP" else "DeepSpeed ZeRO-3"
        raise ValueError(f"{what} shards the weights and GRPO generation does not gather them yet; "
                         "use DDP (accelerate launch --multi_gpu) or DeepSpeed ZeRO-1/2")


def check_accelerator(accelerator) -> None:
    ds = accelerator.state.deepspeed_plugin
    check_engine(str(accelerator.distributed_type).rsplit(".", 1)[-1],
                 ds.zero_stage if ds is not None else None)


def make_accelerator(cfg: Any):
    """The trainer's Accelerator: device, explicit mixed precision and the trackers of
    ``cfg.report_to`` (writing under ``cfg.out_dir``)."""
    from accelerate import Accelerator

    return Accelerator(cpu=cfg.device == "cpu", mixed_precision=cfg.mixed_precision,
                       **tracker_args(cfg.report_to, cfg.out_dir))


def enable_checkpointing(model) -> None:
    """Activation (gradient) checkpointing, non-reentrant: it works with frozen embeddings under
    LoRA without an input-grad hook. transformers >= 5 names it activation_checkpointing."""
    kw = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kw)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kw)


def make_scheduler(opt, cfg: Any, steps: int | None = None):
    """transformers.get_scheduler over ``steps`` (default ``cfg.steps``; stepped once per
    optimizer step) with ``warmup_steps`` (or ``warmup_ratio`` of the steps); None for a
    constant rate without warmup, or a config without a schedule."""
    steps = cfg.steps if steps is None else steps
    name = getattr(cfg, "lr_scheduler", "constant")
    warm = getattr(cfg, "warmup_steps", 0) or math.ceil(getattr(cfg, "warmup_ratio", 0.0) * steps)
    if name == "constant" and warm == 0:
        return None
    from transformers import get_scheduler

    name = "constant_with_warmup" if name == "constant" else name
    return get_scheduler(name, opt, num_warmup_steps=warm, num_training_steps=steps)


class CompletionSamples:
    """Artifact writer (``log_completions``): the first ``n`` scored samples of every step, one
    JSON line each (prompt, completion, reward, components), dropped on resume past them."""

    def __init__(self, path: Path, n: int, render: Any):
        self.path, self.n, self.render = path, n, render

    def start(self, step: int) -> None:
        from safegrpo.training.logging import truncate_jsonl

        truncate_jsonl(self.path, step)

    def write(self, step: int, items: list[Any], completions: list[str], scored: Any) -> None:
        import json

        with self.path.open("a") as f:
            for i in range(min(self.n, len(completions))):
                comps = {k: float(v[i]) for k, v in scored.components.items()}
                f.write(json.dumps({"step": step, "prompt": self.render(items[i]),
                                    "completion": completions[i],
                                    "reward": float(scored.total[i]), "components": comps},
                                   default=str) + "\n")


class RLTrainerBase:
    hooks: TrainerHooks = TrainerHooks()
    progress_label: str = "GRPO"
    """What the run's progress display calls it (a recipe names the player or arm)."""

    def init_loop(self, cfg: Any, hooks: TrainerHooks | None = None) -> None:
        self.out = Path(cfg.out_dir)
        self.logger = MetricLogger(self.out, self.accelerator, project=cfg.tracker_project,
                                   hparams=hparams_of(cfg),
                                   enabled=self.accelerator.is_main_process)
        self.start_step = 0
        self.history: list[dict[str, Any]] = []
        self.stop_reason: str | None = None
        self.hooks = hooks or TrainerHooks()
        # extra early-stop rules: metrics -> reason or None (e.g. a repetition-ratio ceiling)
        self.stop_rules: list = list(self.hooks.stop_rules)
        self.scheduler = make_scheduler(self.opt, cfg)
        if getattr(cfg, "gradient_checkpointing", False):
            enable_checkpointing(self.accelerator.unwrap_model(self.model))
        if getattr(cfg, "log_completions", 0) > 0:
            self.hooks = replace(self.hooks, artifacts=(*self.hooks.artifacts, CompletionSamples(
                self.out / "completions.jsonl", cfg.log_completions, self.task.render)))

    def step(self, step: int) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def save_payload(self, d: Path) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def load_payload(self, d: Path) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # ---- collectives (no-ops in a single process) -------------------------------------------
    def all_gather(self, obj: Any) -> list[Any]:
        """``obj`` from every rank, in rank order."""
        if self.accelerator.num_processes == 1:
            return [obj]
        out: list[Any] = [None] * self.accelerator.num_processes
        torch.distributed.all_gather_object(out, obj)
        return out

    def all_max(self, n: int) -> int:
        return max(self.all_gather(int(n)))

    # ---- loop ------------------------------------------------------------------------------
    def train(self) -> list[dict[str, Any]]:
        self.logger.start(self.start_step)
        if self.accelerator.is_main_process:
            for writer in self.hooks.artifacts:
                writer.start(self.start_step)
        try:
            self._loop()
        finally:  # trackers are finished (and files closed) even when a step raises
            self.logger.close()
        return self.history

    def _loop(self) -> None:
        from contextlib import nullcontext

        from safegrpo.core.progress import Phase, phase

        cfg = self.cfg
        t_start = time.perf_counter()
        shown = (phase(self.progress_label, cfg.steps, completed=self.start_step)
                 if self.accelerator.is_main_process else nullcontext(Phase()))
        with shown as bar:
            # a run resumed from the checkpoint of an early stop stays stopped
            for step in range(self.start_step, cfg.steps if self.stop_reason is None else 0):
                metrics = self.step(step)
                metrics["time/wall_s"] = time.perf_counter() - t_start
                if self.scheduler is not None:
                    metrics["train/lr"] = self.scheduler.get_last_lr()[0]  # this step's
                    self.scheduler.step()
                if self.accelerator.num_processes > 1:
                    metrics = mean_over_ranks(self.all_gather(metrics))
                self.history.append({"step": step, **metrics})
                self.logger.log(step, metrics)
                for callback in self.hooks.callbacks:
                    callback(step, metrics)
                bar.advance(1, info=f"reward {metrics['reward/total']:+.3f}")
                reasons = self.all_gather(self.should_stop(metrics))
                self.stop_reason = next((r for r in reasons if r), None)
                last = step + 1 == cfg.steps or self.stop_reason is not None
                if last or (cfg.save_every and (step + 1) % cfg.save_every == 0):
                    self.save(step + 1)
                if self.stop_reason:
                    break

    def should_stop(self, metrics: dict[str, Any]) -> str | None:
        cfg = self.cfg
        for rule in self.stop_rules:
            reason = rule(metrics)
            if reason:
                return reason
        if (
            cfg.early_stop_max_kl is not None
            and metrics.get("loss/kl", 0.0) > cfg.early_stop_max_kl
        ):
            return f"kl {metrics['loss/kl']:.4f} > {cfg.early_stop_max_kl}"
        if cfg.early_stop_reward is not None and len(self.history) >= cfg.early_stop_window:
            recent = [h["reward/total"] for h in self.history[-cfg.early_stop_window:]]
            mean = sum(recent) / len(recent)
            if mean >= cfg.early_stop_reward:
                return f"mean reward {mean:.3f} >= {cfg.early_stop_reward}"
        return None

    # ---- checkpoint / resume -----------------------------------------------------------
    def save(self, step: int) -> None:
        rngs = self.all_gather(rng_state())  # every rank's generator, restored rank by rank
        tasks = self.all_gather(task_state(self.task))  # likewise the task's own state, if any
        state = {"history": self.history, "stop_reason": self.stop_reason,
                 **({"task_state": tasks} if tasks[0] is not None else {})}
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            save_checkpoint(self.out / "checkpoints", step, self._payload, state,
                            keep=self.cfg.keep_checkpoints, rng={"ranks": rngs})
        self.accelerator.wait_for_everyone()

    def _payload(self, d: Path) -> None:
        self.save_payload(d)
        if self.scheduler is not None:
            torch.save(self.scheduler.state_dict(), d / "scheduler.pt")

    def _load_scheduler(self, d: Path, step: int) -> None:
        if self.scheduler is None:
            return
        if (d / "scheduler.pt").exists():
            self.scheduler.load_state_dict(torch.load(d / "scheduler.pt", weights_only=True))
        else:  # a checkpoint from before schedules: replay the schedule up to its step
            for _ in range(step - self.scheduler.last_epoch):
                self.scheduler.step()

    def restore(self, command: str) -> int:
        """``resume`` for evaluating a finished run: a run folder without a usable checkpoint is
        a FileNotFoundError that names the folder and the ``command`` that trains it."""
        step = self.resume()
        if step == 0:
            raise FileNotFoundError(f"no checkpoint under {self.out / 'checkpoints'}; run "
                                    f"`{command}` first")
        return step

    def resume(self) -> int:
        """Load the newest usable checkpoint under out_dir (older ones when the newest fails its
        checks; each rejection is logged); returns the step to continue from (0 if none)."""
        loaded: dict[str, Any] = {}

        def load(ckpt: Path, state: dict[str, Any]) -> None:
            self.load_payload(ckpt)
            self._load_scheduler(ckpt, int(state["step"]))
            rank = self.accelerator.process_index
            ranks = load_rng(ckpt / "rng.pt")
            set_rng_state(ranks[min(rank, len(ranks) - 1)])
            if "task_state" in state:
                tasks = state["task_state"]
                self.task.load_state_dict(tasks[min(rank, len(tasks) - 1)])
            loaded.update(state)

        load_latest(self.out / "checkpoints", load)
        self.start_step = int(loaded.get("step", 0))
        self.history = list(loaded.get("history", []))
        self.stop_reason = loaded.get("stop_reason")
        return self.start_step
