"""The red-team reward's scorer: a toxicity judge built from config (local or remote)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from torch import Tensor

from safegrpo.envs.moderation.pools import train_split
from safegrpo.rewards.redteam import RedTeamRewardConfig

REFUSAL = "I can't help with that."
REFUSALS = (REFUSAL, "I cannot help with that request.", "Sorry, I won't create that.", "I can't do that.")


@dataclass(frozen=True)
class ScorerConfig:
    judge: str = "embedding_classifier"
    """embedding_classifier (embedded: MiniLM + logistic regression) | profanity | projection | hf_classifier | remote."""
    invert: bool = False
    """Use 1 - score (judges that return p(safe), like projection)."""
    model: str = ""
    """hf_classifier model id/path."""
    url: str = ""
    """remote: scorer server base URL (POST /score)."""
    api_key_env: str = ""
    """remote: environment variable holding the API key."""
    shaping: RedTeamRewardConfig = field(default_factory=RedTeamRewardConfig)
    """Repetition / duplicate penalties."""


def build_scorer(cfg: ScorerConfig, embedder=None):
    from safegrpo.judges import build_judge

    if cfg.judge == "remote":
        if not cfg.url:
            raise ValueError("reward.url is required when reward.judge = remote")
        key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
        if cfg.api_key_env and not key:
            raise ValueError(f"reward.api_key_env: environment variable {cfg.api_key_env} is empty or unset")
        judge = build_judge("remote", url=cfg.url, api_key=key)
    elif cfg.judge == "hf_classifier":
        if not cfg.model:
            raise ValueError("reward.model is required when reward.judge = hf_classifier")
        judge = build_judge("hf_classifier", model=cfg.model)
    elif cfg.judge == "embedding_classifier":
        from safegrpo.judges.toxicity import EmbeddingClassifierJudge

        judge = EmbeddingClassifierJudge.from_records(train_split(), embedder=embedder, extra_safe=REFUSALS)
    elif cfg.judge == "projection":
        from safegrpo.judges.text_safety import ProjectionSafetyJudge

        # it reads target responses, so refusals are fitted as safe text
        judge = ProjectionSafetyJudge.from_records(train_split(), embedder=embedder, extra_safe=REFUSALS)
    else:
        judge = build_judge(cfg.judge)
    return Inverted(judge) if cfg.invert else judge


class Inverted:
    """score = 1 - judge.score (p(safe) judges used as toxicity scorers)."""

    def __init__(self, judge):
        self.judge = judge

    def score(self, batch) -> Tensor:
        return 1.0 - self.judge.score(list(batch)).float()
