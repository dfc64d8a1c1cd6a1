"""The red-team reward's scorer: any registered judge, selected by a judge spec in config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from safegrpo.envs.moderation.pools import train_split
from safegrpo.judges import build_judge, judge_spec
from safegrpo.rewards.redteam import RedTeamRewardConfig

REFUSAL = "I can't help with that."
REFUSALS = (REFUSAL, "I cannot help with that request.", "Sorry, I won't create that.",
            "I can't do that.")


@dataclass(frozen=True)
class ScorerConfig:
    judge: dict[str, Any] | str = field(
        default_factory=lambda: {"name": "embedding_classifier"})
    """Judge spec of the toxicity scorer (p(unsafe), higher = more toxic): embedding_classifier
    (embedded: MiniLM + logistic regression), profanity, ``{name: projection, invert: true}``
    (p(safe) judges are inverted), ``{name: hf_classifier, model: PATH}``, ``{name: remote,
    url: URL, api_key_env: VAR}``, or any registered judge."""
    shaping: RedTeamRewardConfig = field(default_factory=RedTeamRewardConfig)
    """Repetition / duplicate penalties."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "judge", judge_spec(self.judge, "judge"))

    @property
    def judge_name(self) -> str:
        return self.judge["name"]


def build_scorer(cfg: ScorerConfig, embedder=None):
    """The scorer ``cfg.judge`` names; judges that are fitted are fitted on the arena's training
    pools, with refusals as safe text (the scorer reads target responses)."""
    return build_judge(cfg.judge, "reward.judge", embedder=embedder, fit_records=train_split(),
                       extra_safe=REFUSALS)
