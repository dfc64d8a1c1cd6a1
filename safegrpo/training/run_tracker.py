"""One tracker run per recipe run: what the GRPO trainer's own trackers never see.

The trainers log their step scalars through accelerate (``logging.MetricLogger``). A recipe run
also has its config (model, reward weights, judges), SFT metrics, the evaluation headline and
its tables and plots; ``RunTracker`` sends those to the same ``report_to`` trackers, using
accelerate's tracker classes directly (no second ``Accelerator``, whose shared state would clash
with the trainer's). ``run_stages`` starts it before the first stage, so a tracker that cannot
start stops the run before any work, in one line (``TrackerError``).

While a run is tracked, a ``MetricLogger`` without trackers of its own (SFT's) forwards its
records here (``active()``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

_ACTIVE: list[RunTracker] = []


class TrackerError(ValueError):
    """A tracker named in ``report_to`` failed to start or to log; the message is one line."""


def _line(e: BaseException) -> str:
    return " ".join(str(e).split())[:200] or type(e).__name__


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts/lists -> {"a/b/0": leaf}; keys joined with '/'."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list | tuple) and any(isinstance(v, dict | list) for v in value):
        items = ((str(i), v) for i, v in enumerate(value))
    else:
        return {prefix: value} if prefix else {}
    out: dict[str, Any] = {}
    for k, v in items:
        out.update(flatten(v, f"{prefix}/{k}" if prefix else str(k)))
    return out


def scalars(flat: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a flat dict (bools excluded)."""
    return {k: v for k, v in flat.items() if isinstance(v, int | float)
            and not isinstance(v, bool) and math.isfinite(float(v))}


def active() -> RunTracker | None:
    """The run tracker of the recipe run in progress (None outside one)."""
    return _ACTIVE[-1] if _ACTIVE else None


class RunTracker:
    """``report_to`` trackers for one recipe run (on the main process only)."""

    def __init__(self, report_to: tuple[str, ...], out_dir: str | Path, project: str):
        self.names = [n for n in report_to if n != "none"]
        self.out_dir, self.project = Path(out_dir), project
        self.trackers: list[Any] = []
        self.sent: set[Path] = set()

    def start(self, params: dict[str, Any]) -> RunTracker:
        """Start every tracker and store ``params`` (flattened). Raises TrackerError."""
        from accelerate.state import PartialState
        from accelerate.tracking import LOGGER_TYPE_TO_CLASS, get_available_trackers

        if not self.names or not PartialState().is_main_process:
            return self
        names = ([str(t) for t in get_available_trackers()] if "all" in self.names
                 else self.names)
        flat = {k: (v if isinstance(v, str | int | float | bool) else str(v))
                for k, v in flatten(params).items()}
        for name in names:
            cls = LOGGER_TYPE_TO_CLASS[name]
            try:
                args = (self.project, str(self.out_dir / "tb")) \
                    if cls.requires_logging_directory else (self.project,)
                tracker = cls(*args)
                tracker.start()
                tracker.store_init_configuration(flat)
            except Exception as e:  # noqa: BLE001 - any tracker failure is the same one line
                self.finish()
                raise TrackerError(f"report_to: tracker {name!r} cannot start "
                                   f"({type(e).__name__}: {_line(e)})") from None
            self.trackers.append(tracker)
        _ACTIVE.append(self)
        return self

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        values = scalars(metrics)
        for tracker in self.trackers if values else []:
            tracker.log(values, step=step)

    def log_summary(self, summary: dict[str, Any]) -> None:
        """The run's headline (rates per split and method) as ``headline/...`` scalars."""
        head = summary.get("headline", {})
        self.log(flatten(head, "headline"), step=0)

    def log_files(self) -> None:
        """Plots (*.png) and tables (*.md) under out_dir not sent yet: artifacts where the
        tracker keeps files (mlflow), images and text where it shows them (TensorBoard, wandb)."""
        files = sorted(p for pat in ("*.png", "*.md") for p in self.out_dir.glob(pat))
        for path in [p for p in files if p not in self.sent]:
            self.sent.add(path)
            for tracker in self.trackers:
                _send_file(tracker, path)

    def finish(self) -> None:
        for tracker in self.trackers:
            tracker.finish()
        self.trackers = []
        if self in _ACTIVE:
            _ACTIVE.remove(self)


def _send_file(tracker: Any, path: Path) -> None:
    if hasattr(tracker, "log_artifact"):
        tracker.log_artifact(str(path))
        return
    name = f"files/{path.name}"
    if path.suffix == ".png" and hasattr(tracker, "log_images"):
        import numpy as np
        from PIL import Image

        img = np.asarray(Image.open(path).convert("RGB"))
        kwargs = {"dataformats": "NHWC"} if tracker.name == "tensorboard" else {}
        tracker.log_images({name: img[None]}, step=0, **kwargs)
    elif path.suffix == ".md" and hasattr(getattr(tracker, "writer", None), "add_text"):
        tracker.writer.add_text(name, path.read_text(), 0)  # TensorBoard renders markdown


def tracking_of(cfg: Any) -> tuple[tuple[str, ...], str]:
    """The trackers every section of a recipe config names (union, in order) and the first
    ``tracker_project``; ("none",) when no section names one."""
    import dataclasses

    names: dict[str, None] = {}
    projects: list[str] = []

    def walk(obj: Any) -> None:
        if not dataclasses.is_dataclass(obj):
            return
        if isinstance(getattr(obj, "report_to", None), tuple):
            names.update(dict.fromkeys(obj.report_to))
            projects.append(getattr(obj, "tracker_project", "safegrpo"))
        for f in dataclasses.fields(obj):
            walk(getattr(obj, f.name))

    walk(cfg)
    real = tuple(n for n in names if n != "none")
    return real or ("none",), (projects[0] if projects else "safegrpo")
