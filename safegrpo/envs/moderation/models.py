"""Wire types of the moderation arena (OpenEnv-style; pydantic, extra="forbid").

The defender's completion is parsed into ``DefenderAction``. Unparseable or cross-field-invalid
output never raises in the environment: ``parse_action`` returns the error and the reward's
format gate applies the penalty.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)


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


MAX_TEXT_CHARS = 20_000
"""Longest completion or rewrite accepted on the wire (longer -> 422)."""


class DecisionAction(BaseModel):
    """A structured defender action on the wire (OpenEnv ``Action`` shape: extra fields forbidden,
    free ``metadata``). Only its shape is checked here; a cross-field mistake (a transform without a
    rewrite) is the policy's error and earns the format penalty, as in ``parse_action``."""

    model_config = ConfigDict(extra="forbid")

    decision: Literal["allow", "transform", "reject"]
    rewrite: str | None = Field(default=None, max_length=MAX_TEXT_CHARS)
    reason: str = Field(default="", max_length=1000)
    metadata: dict[str, Any] = Field(default_factory=dict, description="client data, not scored")


class CompletionAction(BaseModel):
    """The policy's raw output; the server parses it (unparseable -> format penalty)."""

    model_config = ConfigDict(extra="forbid")

    completion: str = Field(max_length=MAX_TEXT_CHARS)
    metadata: dict[str, Any] = Field(default_factory=dict, description="client data, not scored")


def _action_kind(v: Any) -> str:
    if isinstance(v, CompletionAction) or (isinstance(v, dict) and "completion" in v):
        return "completion"
    return "decision"


ArenaAction = Annotated[
    Annotated[DecisionAction, Tag("decision")] | Annotated[CompletionAction, Tag("completion")],
    Discriminator(_action_kind),
]
"""What a step sends: ``{"decision", "rewrite"?, "reason"?}`` or ``{"completion"}``."""


class ResetRequest(BaseModel):
    """OpenEnv's reset request plus the arena's fields. Other fields are accepted and ignored (as
    OpenEnv does); the reply lists them in ``observation.metadata.ignored_fields``."""

    model_config = ConfigDict(extra="allow")

    seed: int | None = Field(default=None, ge=0)
    episode_id: str | None = Field(default=None, max_length=255,
                                   description="client label for the episode (not an address)")
    prompt_id: str | None = Field(default=None, max_length=255,
                                  description="pick a specific pool prompt")
    split: Literal["train", "holdout"] = "train"


class StepRequest(BaseModel):
    """OpenEnv's HTTP step request plus the ``session_id`` that HTTP /reset issued. Other fields are
    accepted and ignored (listed in ``observation.metadata.ignored_fields``)."""

    model_config = ConfigDict(extra="allow")

    action: ArenaAction
    session_id: str = Field(max_length=255, description="observation.metadata.session_id of /reset")
    timeout_s: float | None = Field(default=None, gt=0,
                                    description="give up (429, episode untouched) if scoring has "
                                                "not started within this many seconds")
    request_id: str | None = Field(default=None, max_length=255, description="echoed in metadata")


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
