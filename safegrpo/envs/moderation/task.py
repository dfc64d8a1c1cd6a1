"""The arena as a GRPO task: its config, its reward from config, and `ArenaTask`.

The environment owns its reward (OpenEnv style): the server, the recipes and TRL adapters all
build it here, from an `ArenaConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from safegrpo.core.types import ScoredBatch
from safegrpo.envs.moderation.pools import CurriculumConfig, PromptRecord, RedSampler
from safegrpo.envs.moderation.reward import (
    ModerationReward,
    ModerationRewardConfig,
    PromptInfo,
    build_moderation_reward,
)


@dataclass(frozen=True)
class ArenaConfig:
    prompt_template: str = "Prompt: {prompt}\nJSON:"
    """How a user prompt is shown to the defender."""
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    """Tier schedule of training prompts."""
    reward: ModerationRewardConfig = field(default_factory=ModerationRewardConfig)
    """Reward weights and penalties."""
    text_judge: dict[str, Any] | str = field(default_factory=lambda: {"name": "projection"})
    """Judge spec of the rewrite-safety judge: ``{name: projection}`` (embedded, fitted on the
    training split) or any registered text judge, e.g. ``{name: llama_guard, model: PATH}``."""
    fit_per_tier: int = 60
    """Training prompts per tier used to fit the projection judge."""

    def __post_init__(self) -> None:
        from safegrpo.judges import judge_spec

        try:
            self.prompt_template.format(prompt="x")
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"prompt_template must contain {{prompt}} and no other fields ({e})"
                             ) from None
        if "{prompt}" not in self.prompt_template:
            raise ValueError("prompt_template must contain {prompt}")
        # a bare name is the shorthand of {name: NAME}
        object.__setattr__(self, "text_judge", judge_spec(self.text_judge, "text_judge"))

    @property
    def text_judge_name(self) -> str:
        return self.text_judge["name"]


def build_arena_reward(cfg: ArenaConfig, seed: int = 0, embedder=None) -> ModerationReward:
    """The arena reward ``cfg`` describes (judges fitted on the training split only)."""
    return build_moderation_reward(cfg.reward, embedder=embedder, text_judge=cfg.text_judge,
                                   fit_per_tier=cfg.fit_per_tier, seed=seed)


class ArenaTask:
    """GRPO task: curriculum prompts, arena reward with group penalties; scalar + components."""

    reward_shape = "components"

    def __init__(self, cfg: ArenaConfig, reward: ModerationReward, seed: int = 0):
        self.cfg, self.reward = cfg, reward
        self.sampler = RedSampler(cfg.curriculum, seed=seed)

    def sample_prompts(self, step: int, n: int, rank: int = 0) -> list[PromptRecord]:
        return self.sampler.sample(step, n, rank)

    def render(self, item: PromptRecord) -> str:
        return self.cfg.prompt_template.format(prompt=item.prompt)

    def score(self, items: list[PromptRecord], completions: list[str],
              group_ids: Tensor) -> ScoredBatch:
        infos = [PromptInfo.of(r) for r in items]
        return self.reward(infos, completions, group_ids)
