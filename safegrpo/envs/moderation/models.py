"""Wire types of the moderation arena (OpenEnv-style; pydantic, extra="forbid").

The defender's completion is parsed into ``DefenderAction``. Unparseable or cross-field-invalid
output never raises in the environment: ``parse_action`` returns the error and the reward's
format gate applies the penalty.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class DefenderAction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["allow", "transform", "reject"]
    rewrite: str | None = Field(default=None, description="safe rewrite; required iff decision=transform")
    reason: str = Field(default="", max_length=1000)

    @model_validator(mode="after")
    def _rewrite_iff_transform(self) -> DefenderAction:
        has = bool(self.rewrite and self.rewrite.strip())
        if self.decision == "transform" and not has:
            raise ValueError("rewrite is required when decision is 'transform'")
        if self.decision != "transform" and has:
            raise ValueError(f"rewrite must be empty when decision is {self.decision!r}")
        return self


class ArenaObservation(BaseModel):
    """What the defender sees. ``metadata`` never holds the tier/label before the episode ends."""

    model_config = ConfigDict(extra="forbid")

    prompt: str
    turn_index: int = 0
    history: list[dict[str, Any]] = Field(default_factory=list)
    max_turns: int = 1
    reward: float | None = None
    done: bool = False
    metadata: dict[str, Any] = Field(default_factory=dict)


class ArenaState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    episode_id: str | None = None
    step_count: int = 0
    prompt_id: str | None = None
    done: bool = False


class ResetRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int | None = None
    episode_id: str | None = None
    prompt_id: str | None = Field(default=None, description="pick a specific pool prompt")
    split: Literal["train", "holdout"] = "train"


class StepRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: dict[str, Any] | str = Field(description="a DefenderAction object, or the raw completion text")


class StepResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    observation: ArenaObservation
    reward: float | None
    done: bool


_JSON_OBJ = re.compile(r"\{.*\}", re.DOTALL)


def parse_action(text: str | dict) -> tuple[DefenderAction | None, str | None]:
    """Completion text (or a dict) -> (action, None) or (None, error message). Never raises."""
    if isinstance(text, dict):
        data: Any = text
    else:
        m = _JSON_OBJ.search(text)
        if m is None:
            return None, "no JSON object found"
        try:
            data = json.loads(m.group(0))
        except json.JSONDecodeError as e:
            return None, f"invalid JSON: {e.msg}"
    if not isinstance(data, dict):
        return None, "JSON is not an object"
    try:
        return DefenderAction.model_validate(data), None
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(x) for x in first.get("loc", ())) or "action"
        return None, f"{loc}: {first.get('msg')}"
