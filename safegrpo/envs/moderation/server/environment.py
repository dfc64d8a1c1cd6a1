"""Single-turn moderation episodes: reset shows a pool prompt, step scores the defender's action.

``ModerationEnvironment`` is an OpenEnv ``Environment``. Its synchronous ``step`` scores in the
caller's thread; the server instead splits a step into ``claim`` (on the event loop: the one
step of the episode is taken, atomically), scoring (micro-batched in the judge thread, see
``batcher.py``) and ``complete``/``release``. The tier, label and category stay server-side
until the episode ends; the final observation's metadata then carries them with the reward
breakdown (for logging, not for the policy).
"""

from __future__ import annotations

import json
import random
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from openenv.core.env_server.interfaces import Environment
from openenv.core.env_server.types import EnvironmentMetadata

from safegrpo.envs.moderation.models import (
    ArenaObservation,
    ArenaState,
    CompletionAction,
    DecisionAction,
    parse_action,
)
from safegrpo.envs.moderation.pools import PromptRecord
from safegrpo.envs.moderation.reward import ModerationReward, PromptInfo


class EnvError(Exception):
    """A client error: ``status`` is the HTTP code the server answers with."""

    def __init__(self, status: int, message: str, loc: tuple[str, ...] = ("body",)):
        super().__init__(message)
        self.status, self.message, self.loc = status, message, loc


class PromptIndex:
    """Prompt records indexed once and shared by every session (a session holds a reference)."""

    def __init__(self, records: Sequence[PromptRecord]):
        if not records:
            raise ValueError("ModerationEnvironment needs at least one prompt record")
        self.by_id = {r.id: r for r in records}
        self.splits = {
            "train": [r for r in records if not r.holdout],
            "holdout": [r for r in records if r.holdout],
        }


@dataclass(frozen=True)
class StepJob:
    """One claimed step: what the reward scores (``info``, ``text``) and how to report it."""

    info: PromptInfo
    text: str  # the completion, or the structured action as JSON (the reward parses it)
    raw: str | None  # the completion as sent, None for a structured action


@dataclass(frozen=True)
class ScoredRow:
    """One row of a ``ScoredBatch`` as plain floats (NaN components dropped)."""

    total: float
    components: dict[str, float]
    decision: str


class ModerationEnvironment(Environment):
    SUPPORTS_CONCURRENT_SESSIONS = True  # sessions share only the read-only pools and the reward

    def __init__(
        self, reward: ModerationReward, records: Sequence[PromptRecord] | PromptIndex, seed: int = 0
    ):
        super().__init__()
        self.reward = reward
        self.pool = records if isinstance(records, PromptIndex) else PromptIndex(records)
        self.rng = random.Random(seed)
        self.current: PromptRecord | None = None
        self.pending = False  # a step is being scored
        self._state = ArenaState()
        self._lock = threading.Lock()

    @property
    def state(self) -> ArenaState:
        return self._state

    @property
    def live(self) -> bool:
        """An episode is open: reset happened and its step has not been scored yet."""
        return self.current is not None and not self._state.done

    def reset(
        self,
        seed: int | None = None,
        episode_id: str | None = None,
        prompt_id: str | None = None,
        split: str = "train",
        **_: Any,
    ) -> ArenaObservation:
        if prompt_id is not None:
            if prompt_id not in self.pool.by_id:
                raise EnvError(404, f"unknown prompt_id {prompt_id!r}")
            rec = self.pool.by_id[prompt_id]
        else:
            pool = self.pool.splits.get(split)
            if not pool:
                raise EnvError(422, f"split {split!r} has no prompts; valid: train, holdout")
            rng = random.Random(seed) if seed is not None else self.rng
            rec = rng.choice(pool)
        with self._lock:
            if self.pending:
                raise EnvError(409, "a step of this episode is being scored; reset after it")
            self.current = rec
            # no prompt_id until the step: pool ids come in label/tier blocks, so it would tell
            # the label; the episode id is a fresh random one (or the client's own label)
            self._state = ArenaState(episode_id=episode_id or uuid.uuid4().hex)
        return ArenaObservation(prompt=rec.prompt, metadata={"episode_id": self._state.episode_id})

    def claim(self, action: DecisionAction | CompletionAction) -> StepJob:
        """Take the episode's one step (409 if there is none left or one is being scored)."""
        with self._lock:
            if self.current is None or self._state.done:
                raise EnvError(409, "call reset before step (one step per episode)")
            if self.pending:
                raise EnvError(
                    409, "this episode's step is already being scored (one step per episode)"
                )
            self.pending = True
            rec = self.current
        if isinstance(action, CompletionAction):
            text, raw = action.completion, action.completion
        else:
            text, raw = json.dumps(action.model_dump(exclude={"metadata"}, exclude_none=True)), None
        return StepJob(PromptInfo.of(rec), text, raw)

    def release(self) -> None:
        """Give the step back after scoring failed: the episode stays open."""
        with self._lock:
            self.pending = False

    def complete(self, job: StepJob, row: ScoredRow) -> ArenaObservation:
        with self._lock:
            rec = self.current
            self._state = self._state.model_copy(
                update={"step_count": 1, "done": True, "prompt_id": rec.id}
            )
            self.pending = False
        parsed, err = _parse(job.text)
        return ArenaObservation(
            prompt=rec.prompt,
            turn_index=1,
            max_turns=1,
            reward=row.total,
            done=True,
            history=[{"action": parsed.model_dump() if parsed else None, "raw": job.raw}],
            metadata={
                "episode_id": self._state.episode_id,
                "components": row.components,
                "parse_error": err,
                "decision": row.decision,
                "tier": rec.tier,
                "label": rec.label,
                "category": rec.category,
                "prompt_id": rec.id,
            },
        )

    def step(
        self,
        action: DecisionAction | CompletionAction | dict | str,
        timeout_s: float | None = None,
        **_: Any,
    ) -> ArenaObservation:
        """Score in the caller's thread (OpenEnv ``Environment.step``); ``timeout_s`` is unused."""
        job = self.claim(as_action(action))
        try:
            row = score_rows(self.reward, [job.info], [job.text])[0]
        except BaseException:
            self.release()
            raise
        return self.complete(job, row)

    def get_metadata(self) -> EnvironmentMetadata:
        return EnvironmentMetadata(
            name="moderation_arena",
            version="1.0.0",
            description="Defender decides allow/transform/reject for image-generation prompts.",
        )


def as_action(
    action: DecisionAction | CompletionAction | dict | str,
) -> DecisionAction | CompletionAction:
    """A str is a raw completion; a dict is validated as either action shape."""
    if isinstance(action, DecisionAction | CompletionAction):
        return action
    if isinstance(action, str):
        return CompletionAction(completion=action)
    if isinstance(action, dict) and "completion" in action:
        return CompletionAction.model_validate(action)
    return DecisionAction.model_validate(action)


def score_rows(
    reward: ModerationReward, infos: list[PromptInfo], texts: list[str]
) -> list[ScoredRow]:
    """Run the reward on a batch and split it into per-row floats (group_ids=None: rows are
    scored independently, so merging sessions into one call adds no cross-talk)."""
    scored = reward(infos, texts)
    rows = []
    for i in range(len(texts)):
        comps = {k: float(v[i]) for k, v in scored.components.items() if v[i] == v[i]}
        rows.append(ScoredRow(float(scored.total[i]), comps, scored.info[i]["decision"]))
    return rows


def _parse(text: str) -> tuple[Any, str | None]:
    try:
        return parse_action(text)
    except (RecursionError, ValueError) as e:  # parse_action should not raise; never let it 500
        return None, f"unparseable: {type(e).__name__}"
