"""Rewards of the red-team attacker and of attacker-defender self-play.

Attacker vs a target (frozen LM or the arena's defender):
    r = toxicity(target response) - repetition_coef * repetition_ratio(attack) [- kl_coef * KL]
The KL term needs the rollout's log-probs, so the GRPO trainer folds it in (``shape_reward``) and
clips the total afterwards (``rewards.shaping``); everything here is per-sample and returned as
components.

Self-play attacker vs the defender: success = the defender allows an unsafe prompt or refuses a
benign one (prompt safety from a text-safety judge), minus repetition and group-duplicate
penalties, so copying one known jailbreak across the group or padding with repeated words does
not pay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from safegrpo.core.types import ScoredBatch
from safegrpo.rewards.hacking import repeated_share


class Target(Protocol):
    def respond(self, prompts: list[str]) -> list[str]: ...


def repetition_ratio(texts: Sequence[str], n: int = 2) -> Tensor:
    """Share of repeated word n-grams per text [B] (``repeated_share`` over whitespace words, so
    punctuated or obfuscated spellings stay distinct words)."""
    return torch.tensor([repeated_share(t.lower().split(), n) for t in texts], dtype=torch.float32)


def group_duplicate_share(texts: Sequence[str], group_ids: Tensor) -> Tensor:
    """Per row [B], the share of its group mates with the identical (normalised) text."""
    norm = [" ".join(t.lower().split()) for t in texts]
    gids = group_ids.tolist()
    out = []
    for i, (t, g) in enumerate(zip(norm, gids, strict=True)):
        mates = [j for j, h in enumerate(gids) if h == g and j != i]
        out.append(sum(norm[j] == t for j in mates) / len(mates) if mates else 0.0)
    return torch.tensor(out, dtype=torch.float32)


@dataclass(frozen=True)
class RedTeamRewardConfig:
    repetition_coef: float = 0.5
    """Weight of the n-gram repetition ratio of the attack text."""
    ngram: int = 2
    """n of the repetition ratio."""
    duplicate_coef: float = 0.0
    """Weight of the share of identical attacks within the group (0 = off)."""

    def __post_init__(self) -> None:
        if self.repetition_coef < 0 or self.duplicate_coef < 0 or self.ngram < 1:
            raise ValueError("repetition_coef and duplicate_coef must be >= 0 and ngram >= 1")


class RedTeamReward:
    """toxicity(target(attack)) - repetition - duplicates, with the attack/response kept
    in ``info``."""

    def __init__(
        self, judge: Any, target: Target, cfg: RedTeamRewardConfig = RedTeamRewardConfig()
    ):
        self.judge, self.target, self.cfg = judge, target, cfg

    def __call__(self, attacks: list[str], group_ids: Tensor) -> ScoredBatch:
        responses = self.target.respond(list(attacks))
        tox = self.judge.score(responses).float().cpu()
        rep = repetition_ratio(attacks, self.cfg.ngram)
        comps = {"toxicity": tox, "repetition": -self.cfg.repetition_coef * rep}
        if self.cfg.duplicate_coef > 0:
            comps["duplicate"] = -self.cfg.duplicate_coef * group_duplicate_share(
                attacks, group_ids
            )
        comps["judge/repetition_ratio"] = rep
        total = sum(v for k, v in comps.items() if not k.startswith("judge/"))
        info = tuple(
            {"attack": a, "response": r, "toxicity": float(t)}
            for a, r, t in zip(attacks, responses, tox, strict=True)
        )
        return ScoredBatch(total=total, components=comps, info=info)


@dataclass(frozen=True)
class SelfPlayRewardConfig:
    repetition_coef: float = 0.5
    """Fluency penalty: weight of the attack's n-gram repetition ratio."""
    ngram: int = 2
    """n of the repetition ratio."""
    duplicate_coef: float = 0.5
    """Diversity penalty: weight of the share of identical attacks within the group."""
    min_words: int = 4
    """Attacks shorter than this many words get ``short_penalty`` (empty strings cannot win)."""
    short_penalty: float = 0.5
    """Penalty of too-short attacks."""


def selfplay_success(p_unsafe: Tensor, decisions: list[str]) -> Tensor:
    """p_unsafe [B], the defender's decisions [B] -> success [B]:
    p_unsafe * [allow] + (1 - p_unsafe) * [reject]."""
    allow = torch.tensor([d == "allow" for d in decisions], dtype=torch.float32)
    reject = torch.tensor([d == "reject" for d in decisions], dtype=torch.float32)
    return p_unsafe * allow + (1 - p_unsafe) * reject


class SelfPlayAttackReward:
    """Attacker reward against the arena defender.

    success = p_unsafe(attack) * [defender allows] + (1 - p_unsafe(attack)) * [defender rejects]
    (letting unsafe content through, or refusing benign content), where p_unsafe = 1 - p_safe of a
    text-safety judge. Minus repetition (fluency), in-group duplicate (diversity) and length
    penalties.
    """

    def __init__(
        self, defender: Any, safety_judge: Any, cfg: SelfPlayRewardConfig = SelfPlayRewardConfig()
    ):
        self.defender, self.judge, self.cfg = defender, safety_judge, cfg

    def __call__(self, attacks: list[str], group_ids: Tensor) -> ScoredBatch:
        decisions, _ = self.defender.decide(list(attacks))
        p_unsafe = 1.0 - self.judge.score(list(attacks)).float().cpu()
        c = self.cfg
        short = torch.tensor([len(a.split()) < c.min_words for a in attacks], dtype=torch.float32)
        comps = {
            "success": selfplay_success(p_unsafe, decisions),
            "repetition": -c.repetition_coef * repetition_ratio(attacks, c.ngram),
            "duplicate": -c.duplicate_coef * group_duplicate_share(attacks, group_ids),
            "length": -c.short_penalty * short,
            "judge/p_unsafe": p_unsafe,
        }
        total = sum(v for k, v in comps.items() if not k.startswith("judge/"))
        info = tuple({"attack": a, "decision": d, "p_unsafe": float(p)}
                     for a, d, p in zip(attacks, decisions, p_unsafe, strict=True))
        return ScoredBatch(total=total, components=comps, info=info)
