"""Metric sinks: metrics.jsonl (always) and accelerate's experiment trackers (``report_to``).

``report_to`` names trackers as accelerate does (tensorboard, wandb, mlflow, trackio, comet_ml,
aim, clearml, dvclive, swanlab, any name registered with
``accelerate.tracking.register_tracker_class``), or ``all`` (every installed one) or ``none``
(metrics.jsonl only). ``check_report_to`` validates the names when the config is built, because
accelerate itself only skips a tracker whose package is missing, with a debug message. The trainer
passes the names to its ``Accelerator`` (``tracker_args``); ``MetricLogger`` then calls
``init_trackers`` and ``log``, and finishes the trackers in ``close``.

``start(step)`` is called once before a run (or a resumed run) logs: it drops every record of
step >= ``step`` from metrics.jsonl (steps a killed run logged after its last checkpoint, or a
previous run in the same folder), so the file never holds a step twice, and opens TensorBoard
with ``purge_step`` for the same reason. A line torn by a kill mid-write is dropped too.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

from safegrpo.training.run_tracker import active as active_run

TRACKER_PACKAGES = {"comet_ml": "comet-ml"}
"""pip names of the trackers whose package is not named like the tracker."""


def _mlflow_reachable() -> None:
    import mlflow

    mlflow.search_experiments(max_results=1)  # reads the configured tracking store, writes nothing


PREFLIGHT: dict[str, Any] = {"mlflow": _mlflow_reachable}
"""Read-only checks run when a config naming the tracker is built, so a tracker that cannot
start (an unreachable or unsupported MLflow store) is a config error, not a crash mid-run."""


class DeprecatedFieldWarning(UserWarning):
    """A config field that still works but has a replacement (shown by the CLI too, which hides
    third-party FutureWarnings)."""


def check_report_to(report_to: Any, tensorboard: bool | None = None) -> tuple[str, ...]:
    """``report_to`` (a name, a comma-separated string or a sequence) -> tuple of tracker names.
    Raises ValueError naming the field for an unknown tracker, one whose package is missing, or
    ``none`` mixed with trackers. ``tensorboard`` is the deprecated boolean: False drops
    tensorboard from the list, True adds it."""
    names = report_to.split(",") if isinstance(report_to, str) else list(report_to)
    names = [str(n).strip().lower() for n in names if str(n).strip()]
    if tensorboard is not None:
        warnings.warn(f"tensorboard: {str(tensorboard).lower()} is deprecated; use report_to: "
                      + ("[tensorboard]" if tensorboard else "[none] (or a list without "
                         "tensorboard)"), DeprecatedFieldWarning, stacklevel=4)
        names = [n for n in names if n not in ("tensorboard", "none")]
        names = ["tensorboard", *names] if tensorboard else names
    if not names:
        names = ["none"]
    if "none" in names and len(names) > 1:
        raise ValueError(f"report_to: 'none' cannot be combined with other trackers, got {names}")
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS, get_available_trackers
    from accelerate.utils import LoggerType

    builtin = {str(t) for t in LoggerType}
    installed = {str(t) for t in get_available_trackers()}
    for n in names:
        if n not in LOGGER_TYPE_TO_CLASS and n not in ("all", "none"):
            valid = ", ".join(sorted(LOGGER_TYPE_TO_CLASS) + ["all", "none"])
            raise ValueError(f"report_to: unknown tracker {n!r}; valid: {valid}")
        if n in builtin and n != "all" and n not in installed:
            pkg = TRACKER_PACKAGES.get(n, n)
            raise ValueError(f"report_to: tracker {n!r} needs the {pkg!r} package, which is not "
                             f"installed (pip install {pkg})")
        _preflight(n)
    return tuple(dict.fromkeys(names))


def _preflight(name: str) -> None:
    check = PREFLIGHT.get(name)
    if check is None:
        return
    try:
        check()
    except Exception as e:  # noqa: BLE001 - whatever the tracker raises, one line naming it
        why = " ".join(str(e).split())[:200]
        raise ValueError(f"report_to: tracker {name!r} cannot start ({type(e).__name__}: "
                         f"{why})") from None


def tracker_args(report_to: tuple[str, ...], out_dir: str | Path) -> dict[str, Any]:
    """``Accelerator(**tracker_args(...))``: trackers named by ``report_to`` (none: no tracker);
    local ones (TensorBoard) write under ``<out_dir>/tb/<tracker_project>``."""
    from accelerate.utils import ProjectConfiguration

    names = [n for n in report_to if n != "none"]
    return {"log_with": names or None,
            "project_config": ProjectConfiguration(project_dir=str(out_dir),
                                                   logging_dir=str(Path(out_dir) / "tb"))}


def _scalars(metrics: dict[str, Any]) -> dict[str, int | float]:
    return {k: v for k, v in metrics.items()
            if isinstance(v, int | float) and not (isinstance(v, float) and math.isnan(v))}


class MetricLogger:
    """metrics.jsonl under ``out_dir`` plus the trackers of ``accelerator`` (None: JSONL only).
    ``hparams`` (flat: str/int/float/bool) are stored once per run by every tracker."""

    def __init__(self, out_dir: str | Path, accelerator: Any = None, *, project: str = "safegrpo",
                 hparams: dict[str, Any] | None = None, enabled: bool = True):
        self.enabled = enabled
        self.out_dir = Path(out_dir)
        self.accelerator = accelerator
        self.project, self.hparams = project, hparams
        self._tracking = False
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
        acc = self.accelerator
        if acc is not None and acc.log_with and not self._tracking:
            acc.init_trackers(self.project, config=self.hparams,
                              init_kwargs={"tensorboard": {"purge_step": step}})
            self._tracking = True

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if not self._started:
            self.start(step)
        clean = {k: (None if isinstance(v, float) and math.isnan(v) else v)
                 for k, v in metrics.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **clean}) + "\n")
        if self._tracking:
            self.accelerator.log(_scalars(metrics), step=step)
        elif (run := active_run()) is not None:  # e.g. SFT: the recipe run's trackers get it
            run.log(metrics, step=step)

    def close(self) -> None:
        """Finish the trackers. Not ``accelerator.end_training()``: that also destroys the process
        group, which a recipe still needs after the loop (evaluation, the next self-play round)."""
        if self._tracking:
            for tracker in self.accelerator.trackers:
                tracker.finish()
            self.accelerator.trackers.clear()
            self._tracking = False


def hparams_of(cfg: Any) -> dict[str, Any]:
    """A flat config dataclass -> what every tracker accepts as hyperparameters."""
    import dataclasses

    return {f.name: (v if isinstance(v := getattr(cfg, f.name), str | int | float | bool)
                     else str(v)) for f in dataclasses.fields(cfg)}


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
