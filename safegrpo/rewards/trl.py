"""Adapters that turn safegrpo rewards and judges into TRL ``GRPOTrainer`` reward functions.

TRL calls ``f(prompts=..., completions=..., completion_ids=..., **dataset_columns,
trainer_state=..., log_extra=..., log_metric=...)`` and expects ``list[float | None]`` (None =
unscorable, excluded like our NaN). Completions may be strings or chat message lists. When TRL
passes ``log_metric``, per-component means of a ``ScoredBatch`` are logged as ``<name>/<component>``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from safegrpo.core.types import ScoredBatch

TRLReward = Callable[..., list[float | None]]


def as_text(x: Any) -> str:
    """A completion/prompt as plain text: strings pass; chat lists give the last message's content."""
    if isinstance(x, str):
        return x
    if isinstance(x, list) and x and isinstance(x[-1], dict):
        return str(x[-1].get("content", ""))
    raise TypeError(f"cannot read text from {type(x).__name__}; expected str or a list of chat messages")


def _to_list(out: ScoredBatch | torch.Tensor | Sequence[float]) -> list[float | None]:
    vals = out.total if isinstance(out, ScoredBatch) else out
    vals = vals.tolist() if isinstance(vals, torch.Tensor) else list(vals)
    return [None if v is None or math.isnan(float(v)) else float(v) for v in vals]


def as_trl_reward(fn: Callable[[list[str], list[str], dict[str, Any]], Any], name: str) -> TRLReward:
    """Wrap ``fn(prompts, completions, columns) -> ScoredBatch | Tensor[B] | list`` for TRL."""

    def reward(prompts: list, completions: list, completion_ids: list | None = None, **kwargs: Any):
        texts = [as_text(c) for c in completions]
        out = fn([as_text(p) for p in prompts], texts, kwargs)
        vals = _to_list(out)
        if len(vals) != len(texts):
            raise ValueError(f"{name}: {len(vals)} rewards for {len(texts)} completions")
        log = kwargs.get("log_metric")
        if isinstance(out, ScoredBatch) and callable(log):
            for k, v in out.component_means().items():
                log(f"{name}/{k}", v)
        return vals

    reward.__name__ = name
    return reward


def judge_reward(judge: Any, name: str, *, negate: bool = False) -> TRLReward:
    """A judge's score of each completion (negated for e.g. toxicity when lower is better)."""
    return as_trl_reward(lambda p, c, kw: -judge.score(c) if negate else judge.score(c), name)


def moderation_trl_reward(reward: Any, *, prompt_key: str = "user_prompt", label_key: str = "label",
                          category_key: str = "category", tier_key: str = "tier") -> TRLReward:
    """The arena reward for TRL. Dataset columns give the hidden ground truth per row; the user
    prompt comes from ``prompt_key`` (else the TRL prompt). Rows with the same prompt form a
    group (TRL keeps a prompt's G generations together) for the diversity penalty."""
    from safegrpo.rewards.moderation import PromptInfo

    def fn(prompts: list[str], completions: list[str], cols: dict[str, Any]) -> ScoredBatch:
        for key in (label_key, category_key):
            if key not in cols:
                raise KeyError(f"moderation reward needs dataset column {key!r}; got {sorted(cols)}")
        users = cols.get(prompt_key, prompts)
        tiers = cols.get(tier_key, [""] * len(prompts))
        infos = [PromptInfo(u, lab, cat, t) for u, lab, cat, t in zip(users, cols[label_key], cols[category_key], tiers, strict=True)]
        ids = {p: i for i, p in enumerate(dict.fromkeys(prompts))}
        return reward(infos, completions, torch.tensor([ids[p] for p in prompts]))

    return as_trl_reward(fn, "moderation")
