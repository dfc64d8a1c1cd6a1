"""Prompt pools and the tiered curriculum ("red") sampler.

The sampler mixes T1 (plain), T2 (obfuscated), T3 (disguised) unsafe prompts and benign
prompts with tier weights interpolated linearly from ``early`` to ``late`` over training
steps (more T1 early, more T2/T3 late, benign throughout). Holdout prompts are never sampled
for training; ``holdout()`` returns them for evaluation.

Hand-written splits (docs/handwritten_splits.md), written apart from the templates:
``load_handwritten("train")`` joins the training pools (``train_split`` and the sampler, switch:
``CurriculumConfig.handwritten``); ``load_handwritten("eval")`` is for evaluation only and no
training or judge-fitting path reads it (tests/envs/test_handwritten_isolation.py).

``no_safe_rewrite`` (every unsafe row of both hand-written splits states it; the loader raises
otherwise): true when the harm is the whole request, so no image that keeps what the user asked
for is safe and reject is the right action (the reward's decision floor). Judged from the
prompt's text alone, by category: every hateful prompt (demeaning a group, hate symbols,
slogans, propaganda); sexual prompts whose subject is an explicit sex act, visible genitals or
pornography (nudity alone is not: a clothed figure keeps subject, pose and setting); self-harm
prompts that promote it ("thinspo", "goal body", "inspo", a mood board of methods), not those
that depict an act; violence never (a violent scene keeps its subject, setting and style in a
safe one). Benign rows: false. Full rule and counts: docs/handwritten_splits.md.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

TIERS = ("T1", "T2", "T3", "benign")
HANDWRITTEN = {"train": "handwritten_train.jsonl", "eval": "handwritten_eval.jsonl"}


@dataclass(frozen=True)
class PromptRecord:
    id: str
    prompt: str
    tier: str  # T1 | T2 | T3 | benign
    category: str  # violence | self-harm | hate | sexual | scene | trap
    label: str  # unsafe | safe
    rewrite: str  # reference safe rewrite (the prompt itself for benign)
    holdout: bool
    # unsafe prompt whose harm is the whole request (docs/handwritten_splits.md): no rewrite can
    # keep its intent safely, so reject is the right action (the arena reward's decision floor)
    no_safe_rewrite: bool = False

    @property
    def unsafe(self) -> bool:
        return self.label == "unsafe"


def _data_dir() -> Path:
    return Path(str(resources.files("safegrpo.envs.moderation") / "data"))


def _read_records(p: Path, unsafe_must_state: tuple[str, ...] = ()) -> tuple[PromptRecord, ...]:
    """Records of a JSONL file; ``unsafe_must_state``: boolean fields every unsafe row must give
    explicitly (a dataclass default would silently label it). Raises naming file, line, id."""
    out = []
    for i, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            rec = PromptRecord(**row)
        except (TypeError, json.JSONDecodeError) as e:
            raise ValueError(f"{p}:{i}: bad prompt record: {e}") from None
        for key in unsafe_must_state if rec.unsafe else ():
            if not isinstance(row.get(key), bool):
                got = f"got {row[key]!r}" if key in row else "missing"
                raise ValueError(f"{p}:{i}: unsafe record {rec.id!r} must state {key!r} as "
                                 f"true or false ({got}; rule: docs/handwritten_splits.md)")
        out.append(rec)
    return tuple(out)


@lru_cache(maxsize=4)
def load_pool(path: str | None = None) -> tuple[PromptRecord, ...]:
    """Load prompts.jsonl (bundled by default). Raises naming the line on bad rows."""
    return _read_records(Path(path) if path else _data_dir() / "prompts.jsonl")


@lru_cache(maxsize=2)
def _load_handwritten(split: str) -> tuple[PromptRecord, ...]:
    p = _data_dir() / HANDWRITTEN[split]
    recs = _read_records(p, unsafe_must_state=("no_safe_rewrite",))
    for r in recs:
        # eval rows are holdout, so even a pool that wrongly merged them would never train on them
        if r.holdout != (split == "eval") or not r.id.startswith(f"hw-{split}-"):
            raise ValueError(f"{p}: record {r.id!r} must have id prefix 'hw-{split}-' and "
                             f"holdout={split == 'eval'}")
    return recs


def load_handwritten(split: str) -> tuple[PromptRecord, ...]:
    """Hand-written prompts: ``"train"`` (training and judge fitting may use it) or ``"eval"``
    (evaluation only; never read by training or judge fitting)."""
    if split not in HANDWRITTEN:
        raise ValueError(f"unknown hand-written split {split!r}; valid: {', '.join(HANDWRITTEN)}")
    return _load_handwritten(split)


@lru_cache(maxsize=4)
def load_lexicon(path: str | None = None) -> dict[str, tuple[str, ...]]:
    p = Path(path) if path else _data_dir() / "lexicon.json"
    return {k: tuple(v) for k, v in json.loads(p.read_text()).items()}


@dataclass(frozen=True)
class CurriculumConfig:
    early: tuple[float, float, float, float] = (0.45, 0.15, 0.05, 0.35)
    """Tier weights (T1, T2, T3, benign) at step 0."""
    late: tuple[float, float, float, float] = (0.15, 0.25, 0.25, 0.35)
    """Tier weights at ``ramp_steps`` and after."""
    ramp_steps: int = 100
    """Steps over which weights move from early to late."""
    pool_path: str | None = None
    """prompts.jsonl to use; None = the bundled pools."""
    handwritten: bool = True
    """Also train on the hand-written train split (handwritten_train.jsonl), never on its eval
    split. Recipes pass it to ``train_split(..., handwritten=)`` for SFT data too."""
    handwritten_share: float | None = None
    """Share of each tier's GRPO draws taken from the hand-written train split (None: drawn with
    the template prompts, in proportion to pool sizes: about a fifth)."""

    def __post_init__(self) -> None:
        if self.handwritten_share is not None and not 0 <= self.handwritten_share <= 1:
            raise ValueError("handwritten_share must be in [0, 1] (or null)")
        if self.handwritten_share and not self.handwritten:
            raise ValueError("handwritten_share needs handwritten: true")
        for name in ("early", "late"):
            w = getattr(self, name)
            if len(w) != 4 or min(w) < 0 or sum(w) <= 0:
                raise ValueError(f"{name} must be 4 non-negative weights (T1, T2, T3, benign)")
        if self.ramp_steps < 1:
            raise ValueError("ramp_steps must be >= 1")


@dataclass
class RedSampler:
    """Draws training prompts by tier schedule; deterministic given (seed, step)."""

    cfg: CurriculumConfig = field(default_factory=CurriculumConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        pool = train_split(self.cfg.pool_path, handwritten=self.cfg.handwritten)
        self.by_tier = {t: [r for r in pool if r.tier == t] for t in TIERS}
        empty = [t for t, rs in self.by_tier.items() if not rs]
        if empty:
            raise ValueError(f"prompt pool has no training prompts for tier(s) {empty}")
        self.split_tier: dict[str, tuple[list, list]] = {}  # tier -> (hand-written, the rest)
        if self.cfg.handwritten_share is not None:
            hand = set(load_handwritten("train"))
            self.split_tier = {t: ([r for r in rs if r in hand], [r for r in rs if r not in hand])
                               for t, rs in self.by_tier.items()}

    def weights(self, step: int) -> tuple[float, ...]:
        a = min(step / self.cfg.ramp_steps, 1.0)
        w = [(1 - a) * e + a * late for e, late in zip(self.cfg.early, self.cfg.late, strict=True)]
        s = sum(w)
        return tuple(x / s for x in w)

    def sample(self, step: int, n: int, rank: int = 0) -> list[PromptRecord]:
        rng = random.Random(f"{self.seed}:{step}:{rank}")  # per-(step, rank) seed: resume is exact
        tiers = rng.choices(TIERS, weights=self.weights(step), k=n)
        share = self.cfg.handwritten_share
        if share is None:
            return [rng.choice(self.by_tier[t]) for t in tiers]
        out = []
        for t in tiers:
            hand, rest = self.split_tier[t]
            out.append(rng.choice(hand if hand and (rng.random() < share or not rest) else rest))
        return out


def holdout(pool_path: str | None = None) -> list[PromptRecord]:
    return [r for r in load_pool(pool_path) if r.holdout]


def train_split(pool_path: str | None = None, handwritten: bool = True) -> list[PromptRecord]:
    """Non-holdout prompts of the pool, plus the hand-written train split when ``handwritten``."""
    extra = load_handwritten("train") if handwritten else ()
    return [r for r in (*load_pool(pool_path), *extra) if not r.holdout]
