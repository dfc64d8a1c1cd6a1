"""Bootstrap intervals over prompts and seeds (two-stage bootstrap), and their table rendering.

A demo run with S seeds gives, per metric, S groups of per-prompt values (group s holds the
values of seed s's evaluation prompts, e.g. 1/0 for "this unsafe prompt passed through").

- Point estimate: the mean over seeds of each seed's mean (every seed weighs the same).
- One bootstrap replicate draws S seeds with replacement and, inside every drawn seed, its
  prompts with replacement; the replicate's value is the mean over the drawn seeds of their
  resampled prompt means. Resampling both stages carries both sources of variation (training
  seed and evaluation prompts) into the interval (two-stage resampling, Davison & Hinkley 1997,
  sec. 3.8; it is slightly conservative for the between-seed part).
- Interval: the percentile interval of B replicates (Efron & Tibshirani 1993, ch. 13).
- With one seed this is the ordinary percentile bootstrap over prompts; with one value per
  seed (a whole-set statistic such as distinct rewrites / transforms) a bootstrap over seeds.
- Rendering ``0.123 ± 0.045``: the ± is half the width of the (possibly asymmetric) interval;
  ``lo`` and ``hi`` are kept in the JSON.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95
N_BOOT = 2000


@dataclass(frozen=True)
class Interval:
    mean: float
    """Mean over seeds of the per-seed means."""
    lo: float
    """Lower percentile bound."""
    hi: float
    """Upper percentile bound."""
    n: int
    """Values used, summed over seeds."""
    seeds: int
    """Groups (seeds) with at least one value."""
    level: float = LEVEL
    """Coverage of the interval."""

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2

    def format(self, digits: int = 3) -> str:
        return f"{self.mean:.{digits}f} ± {self.half_width:.{digits}f}"

    def as_dict(self) -> dict[str, float | int]:
        return {"mean": self.mean, "lo": self.lo, "hi": self.hi, "n": self.n,
                "seeds": self.seeds, "level": self.level}


def _clean(groups: Sequence[Sequence[float | None]]) -> list[np.ndarray]:
    out = []
    for g in groups:
        a = np.asarray([math.nan if v is None else float(v) for v in g], dtype=np.float64)
        a = a[~np.isnan(a)]
        if a.size:
            out.append(a)
    return out


def bootstrap_interval(groups: Sequence[Sequence[float | None]], *, level: float = LEVEL,
                       n_boot: int = N_BOOT, seed: int = 0) -> Interval | None:
    """groups: S sequences of per-prompt values (None / NaN are left out; a group left empty is
    dropped) -> Interval, or None when no value is left.

    Replicates: pick [n_boot, S] seeds; every slot where seed s was drawn gets its own resample
    of seed s's values, so a seed drawn twice contributes two independent prompt resamples."""
    if not 0 < level < 1 or n_boot < 1:
        raise ValueError(f"level must be in (0, 1) and n_boot >= 1 (got {level}, {n_boot})")
    arrs = _clean(groups)
    if not arrs:
        return None
    rng = np.random.default_rng(seed)
    s = len(arrs)
    pick = rng.integers(0, s, size=(n_boot, s))  # [B, S] seed drawn in each slot
    slot_means = np.empty((n_boot, s))  # [B, S] resampled prompt mean of the slot's seed
    for k, a in enumerate(arrs):
        mask = pick == k
        draws = int(mask.sum())
        if draws:
            idx = rng.integers(0, a.size, size=(draws, a.size))  # [draws, n_k]
            slot_means[mask] = a[idx].mean(axis=1)
    reps = slot_means.mean(axis=1)  # [B]
    alpha = (1 - level) / 2
    lo, hi = np.quantile(reps, [alpha, 1 - alpha])
    point = float(np.mean([a.mean() for a in arrs]))
    return Interval(point, float(lo), float(hi), int(sum(a.size for a in arrs)), s, level)


def format_interval(iv: Interval | None, digits: int = 3) -> str:
    """'0.123 ± 0.045', or '-' when there was nothing to estimate."""
    return "-" if iv is None else iv.format(digits)
