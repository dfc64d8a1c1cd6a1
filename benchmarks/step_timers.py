"""Exclusive wall-time buckets for benchmark steps (see benchmarks/vs_trl.py)."""

from __future__ import annotations

import functools
import time
from typing import Any

from transformers import TrainerCallback

BUCKETS = ("generate", "logprob_fwd", "backward_step", "reward", "other")


class Timers:
    """Exclusive wall time per bucket: time inside a nested timed call counts to its bucket only."""

    def __init__(self) -> None:
        self.totals = dict.fromkeys(BUCKETS, 0.0)
        self._stack: list[list] = []  # [bucket, start, time spent in timed children]

    def start(self, bucket: str) -> None:
        self._stack.append([bucket, time.perf_counter(), 0.0])

    def stop(self) -> None:
        bucket, t0, child = self._stack.pop()
        dt = time.perf_counter() - t0
        self.totals[bucket] += dt - child
        if self._stack:
            self._stack[-1][2] += dt

    def wrap(self, obj: Any, name: str, bucket: str) -> None:
        """Time every call of ``obj.name`` (an instance attribute shadows the method)."""
        fn = getattr(obj, name)

        @functools.wraps(fn)
        def timed(*args, **kwargs):
            self.start(bucket)
            try:
                return fn(*args, **kwargs)
            finally:
                self.stop()

        setattr(obj, name, timed)

    def reset(self) -> None:
        self.totals = dict.fromkeys(BUCKETS, 0.0)


def summarise(step_times: list[float], lengths: list[int], timers: Timers) -> dict[str, Any]:
    """Timed steps -> steps/s, tokens/s and the per-step breakdown (untimed time goes to other)."""
    total, n = sum(step_times), len(step_times)
    br = dict(timers.totals)
    br["other"] += total - sum(br.values())
    return {"steps": n, "time_s": total, "steps_per_s": n / total, "tokens": sum(lengths),
            "tokens_per_s": sum(lengths) / total, "completion_len": [min(lengths), max(lengths)],
            "breakdown_s_per_step": {k: v / n for k, v in br.items()}}


class StepClock(TrainerCallback):
    """Times an HF Trainer's steps (on_step_begin -> on_step_end) and its optimizer step into
    ``timers``' backward_step bucket; the first step is the warm-up (timers reset after it)."""

    def __init__(self, timers: Timers) -> None:
        self.timers, self.times, self.t0 = timers, [], 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self.t0 = time.perf_counter()

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.timers.start("backward_step")

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.timers.stop()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self.t0)
        if len(self.times) == 1:
            self.timers.reset()
