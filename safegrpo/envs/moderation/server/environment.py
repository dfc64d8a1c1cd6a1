"""Single-turn moderation episodes: reset shows a pool prompt, step scores the defender's action.

The tier, label and category stay server-side until the episode ends; the final observation's
metadata then carries them with the reward breakdown (for logging, not for the policy).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence

from safegrpo.envs.moderation.models import ArenaObservation, ArenaState, parse_action
from safegrpo.envs.moderation.pools import PromptRecord
from safegrpo.rewards.moderation import ModerationReward, PromptInfo


class EnvError(Exception):
    """A client error: ``status`` is the HTTP code the server answers with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class ModerationEnvironment:
    def __init__(self, reward: ModerationReward, records: Sequence[PromptRecord], seed: int = 0):
        if not records:
            raise ValueError("ModerationEnvironment needs at least one prompt record")
        self.reward = reward
        self.by_id = {r.id: r for r in records}
        self.splits = {"train": [r for r in records if not r.holdout], "holdout": [r for r in records if r.holdout]}
        self.rng = random.Random(seed)
        self.current: PromptRecord | None = None
        self.state = ArenaState()

    def reset(self, seed: int | None = None, episode_id: str | None = None, prompt_id: str | None = None,
              split: str = "train") -> ArenaObservation:
        if prompt_id is not None:
            if prompt_id not in self.by_id:
                raise EnvError(404, f"unknown prompt_id {prompt_id!r}")
            rec = self.by_id[prompt_id]
        else:
            pool = self.splits.get(split)
            if not pool:
                raise EnvError(422, f"split {split!r} has no prompts; valid: train, holdout")
            rng = random.Random(seed) if seed is not None else self.rng
            rec = rng.choice(pool)
        self.current = rec
        self.state = ArenaState(episode_id=episode_id or uuid.uuid4().hex, step_count=0, prompt_id=rec.id)
        return ArenaObservation(prompt=rec.prompt, metadata={"episode_id": self.state.episode_id})

    def step(self, action: dict | str) -> ArenaObservation:
        if self.current is None or self.state.done:
            raise EnvError(409, "call reset before step (one step per episode)")
        rec = self.current
        text = action if isinstance(action, str) else None
        parsed, err = parse_action(action)
        info = PromptInfo(rec.prompt, rec.label, rec.category, rec.tier)
        scored = self.reward([info], [text if text is not None else _dump(action)])
        total = float(scored.total[0])
        comps = {k: float(v[0]) for k, v in scored.components.items() if v[0] == v[0]}
        self.state = self.state.model_copy(update={"step_count": 1, "done": True})
        return ArenaObservation(
            prompt=rec.prompt, turn_index=1, max_turns=1, reward=total, done=True,
            history=[{"action": parsed.model_dump() if parsed else None, "raw": text}],
            metadata={"episode_id": self.state.episode_id, "components": comps, "parse_error": err,
                      "decision": scored.info[0]["decision"], "tier": rec.tier, "label": rec.label,
                      "category": rec.category, "prompt_id": rec.id},
        )


def _dump(action: dict) -> str:
    import json

    return json.dumps(action)
