"""The loop fields every RL trainer shares (``RLTrainerBase`` reads them): seed, output folder,
checkpoints, trackers, early stop and device. ``GRPOConfig`` and ``DiffusionGRPOConfig`` extend
it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from safegrpo.training.logging import check_report_to


def check_schedule_name(name: str, field: str = "lr_scheduler") -> None:
    """Raise naming ``field`` unless ``name`` is a ``transformers.get_scheduler`` schedule."""
    from transformers import SchedulerType

    valid = [t.value for t in SchedulerType]
    if name not in valid:
        raise ValueError(f"{field}: unknown schedule {name!r}; valid: {', '.join(valid)}")


@dataclass(frozen=True)
class LoopConfig:
    seed: int | None = None
    """Seed; per-step sampling seeds derive from (seed, step, rank). None: the recipe's master seed
    (0 when the trainer is used on its own)."""
    out_dir: str | None = None
    """Where metrics, checkpoints and the final policy go. None: a folder under the recipe's out_dir
    (runs/<trainer> when the trainer is used on its own)."""
    save_every: int = 10
    """Checkpoint period in steps (0 = only at the end)."""
    keep_checkpoints: int = 2
    """Checkpoints kept on disk."""
    report_to: tuple[str, ...] = ("tensorboard",)
    """Experiment trackers fed through accelerate, besides metrics.jsonl (always written):
    tensorboard (under <out_dir>/tb) | wandb | mlflow | trackio | comet_ml | aim | clearml |
    dvclive | swanlab | a tracker registered with accelerate | all (every installed one) | none.
    A tracker whose package is not installed is a config error."""
    tracker_project: str = "safegrpo"
    """Project name given to the trackers (wandb / trackio project, mlflow experiment; TensorBoard
    writes to <out_dir>/tb/<tracker_project>)."""
    tensorboard: bool | None = None
    """Deprecated, use report_to: false drops tensorboard from report_to, true adds it."""
    early_stop_reward: float | None = None
    """Stop once the mean reward over ``early_stop_window`` steps reaches this."""
    early_stop_window: int = 5
    """Window (steps) of the early-stop reward average."""
    early_stop_max_kl: float | None = None
    """Stop when the KL to the reference exceeds this (needs beta > 0)."""
    device: str = "cpu"
    """cpu | cuda (under accelerate launch the process's device is used)."""
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    """Autocast of the policy forward. Passed explicitly so a process-wide accelerate state left
    by another library (TRL leaves bf16) can never change it silently."""

    def __post_init__(self) -> None:
        # frozen: the normalised tracker list replaces the given one (the deprecated flag folded in)
        object.__setattr__(self, "report_to", check_report_to(self.report_to, self.tensorboard))
        object.__setattr__(self, "tensorboard", None)
