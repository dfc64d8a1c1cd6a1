"""The red-team reward's scorer: any registered judge, selected by a judge spec in config."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

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


TRAINING_SCORERS = {"embedding_classifier": {"name": "embedding_classifier"},
                    "projection": {"name": "projection", "invert": True},
                    "profanity": {"name": "profanity"}}
"""The embedded scorers ``reward.judge`` can name, as judge specs (p(unsafe))."""
HELDOUT_SCORERS = ("profanity", "lexicon", "llama_guard")
"""What ``eval.heldout`` can hold out for the red-team (llama_guard needs a guard model)."""
REPORT_JUDGES = ("embedding_classifier", "projection", "profanity", "lexicon", "llama_guard")


def report_judges(names: Sequence[str], embedder: Any = None,
                  guard_model: str | None = None) -> dict[str, Callable[[list[str]], Tensor]]:
    """Name -> p(unsafe) scorer for every toxicity judge the red-team recipe can train on or hold
    out, each built as the recipe builds it: training scorers by ``build_scorer`` (fitted on the
    arena's training pools with the refusals as safe text), held-out ones by
    ``eval.heldout.build_heldout``. ``embedder``: an Embedder for the fitted judges."""
    from safegrpo.eval.heldout import build_heldout

    bad = [n for n in names if n not in REPORT_JUDGES]
    if bad:
        raise ValueError(f"unknown red-team judge(s) {bad}; valid: {', '.join(REPORT_JUDGES)}")
    if "llama_guard" in names and not guard_model:
        raise ValueError("llama_guard needs a guard model (path or hub id)")
    out: dict[str, Callable[[list[str]], Tensor]] = {}
    for name in names:
        if name in HELDOUT_SCORERS:
            out |= build_heldout([name], guard_model)
        else:
            out[name] = build_scorer(ScorerConfig(judge=TRAINING_SCORERS[name]), embedder).score
    return out
