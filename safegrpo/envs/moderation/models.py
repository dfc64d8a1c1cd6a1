"""Wire types of the moderation arena (OpenEnv-style; pydantic, extra="forbid").

The defender's completion is parsed into ``DefenderAction``. Unparseable or cross-field-invalid
output never raises in the environment: ``parse_action`` returns the error and the reward's
format gate applies the penalty. What parses: the first JSON object in the text that is a valid
action, wherever it sits (after a preamble, inside a ```json code fence, before more text or
other braces). A ``rewrite`` on allow/reject is ignored (dropped to None), because the prompt
asks for all three fields and instruct models fill it; "transform" needs a non-empty rewrite.
Completions longer than ``MAX_COMPLETION_CHARS`` are a format failure, never parsed.
"""

from __future__ import annotations

import json
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

from safegrpo.core.text import canonical_text


class DefenderAction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["allow", "transform", "reject"]
    rewrite: str | None = Field(default=None, description="safe rewrite; required for transform, "
                                "ignored (set to null) for allow and reject")
    reason: str = Field(default="", max_length=1000)

    @model_validator(mode="after")
    def _rewrite_for_transform_only(self) -> DefenderAction:
        if self.decision != "transform":
            self.rewrite = None  # a stray or empty rewrite on allow/reject is not an error
        elif not (self.rewrite and canonical_text(self.rewrite).strip()):  # not only invisibles
            raise ValueError("rewrite is required when decision is 'transform'")
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
    """An episode's state. Before its step nothing in it predicts the label: ``episode_id`` is
    random (or the client's own label) and ``prompt_id`` stays None until the step is scored."""

    model_config = ConfigDict(extra="forbid")

    episode_id: str | None = None
    step_count: int = 0
    prompt_id: str | None = Field(default=None, description="the pool prompt; set after the step")
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
    """OpenEnv's HTTP step request (``{"action": ...}``) plus the ``session_id`` that HTTP /reset
    issued; without it the server reads the session from the ``arena_session`` cookie /reset set.
    Other fields are accepted and ignored (listed in ``observation.metadata.ignored_fields``)."""

    model_config = ConfigDict(extra="allow")

    action: ArenaAction
    session_id: str | None = Field(default=None, max_length=255,
                                   description="observation.metadata.session_id of /reset "
                                               "(default: the arena_session cookie)")
    timeout_s: float | None = Field(default=None, gt=0,
                                    description="give up (429, episode untouched) if scoring has "
                                                "not started within this many seconds")
    request_id: str | None = Field(default=None, max_length=255, description="echoed in metadata")


class StepResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    observation: ArenaObservation
    reward: float | None
    done: bool


MAX_COMPLETION_CHARS = 4096
"""Longest completion ``parse_action`` reads by default (a defender answer is a few hundred
characters); longer text is a format failure, so hostile input costs bounded time."""
MAX_JSON_STARTS = 64
"""Most '{' positions tried as the start of the action object."""


def _validate(data: Any) -> tuple[DefenderAction | None, str | None]:
    if not isinstance(data, dict):
        return None, "JSON is not an object"
    try:
        return DefenderAction.model_validate(data), None
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(x) for x in first.get("loc", ())) or "action"
        return None, f"{loc}: {first.get('msg')}"
    except RecursionError:
        return None, "action: nested too deeply"


def _scan(text: str) -> tuple[DefenderAction | None, str | None]:
    """The first JSON object in ``text`` that is a valid action, trying each '{' as a start
    (at most ``MAX_JSON_STARTS``; objects nested in a decoded one are not tried). On failure,
    the error of the first decoded object, else the first JSON error."""
    dec, obj_err, json_err, pos = json.JSONDecoder(), None, None, 0
    for _ in range(MAX_JSON_STARTS):
        start = text.find("{", pos)
        if start < 0:
            break
        try:
            obj, pos = dec.raw_decode(text, start)
        except (json.JSONDecodeError, RecursionError) as e:
            msg = e.msg if isinstance(e, json.JSONDecodeError) else "nested too deeply"
            json_err, pos = json_err or f"invalid JSON: {msg}", start + 1
            continue
        action, err = _validate(obj)
        if action is not None:
            return action, None
        obj_err = obj_err or err
    return None, obj_err or json_err or "no JSON object found"


def parse_action(text: str | dict, max_chars: int = MAX_COMPLETION_CHARS
                 ) -> tuple[DefenderAction | None, str | None]:
    """Completion text (or a dict) -> (action, None) or (None, error message). Never raises."""
    if isinstance(text, dict):
        return _validate(text)
    if not isinstance(text, str):
        return None, f"expected text or an object, got {type(text).__name__}"
    if len(text) > max_chars:
        return None, f"completion has {len(text)} characters; at most {max_chars} are read"
    return _scan(text)
