"""Wire types of the scorer server.

A request is a list of ``{text, prompt?}`` items, so "one prompt per text" is the shape of the
schema rather than a rule beside it. ``bounded_request`` puts the server's limits in the schema:
``maxItems`` on the list, ``maxLength`` on every text and prompt, and the total-characters budget
(texts + prompts) in the description and as ``x-max-total-chars`` (JSON Schema cannot sum
lengths; a request over it is a 422 naming ``max_total_chars``).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator


class ScoreItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(description="text to score (e.g. a target model's response)")
    prompt: str | None = Field(default=None, description="optional prompt the text answers")


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[ScoreItem] = Field(description="texts to score, each with its optional prompt")


class ScoreResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scores: list[float | None]  # one per item, in order; None = this text could not be scored
    judge: str


class ErrorResponse(BaseModel):
    detail: str


class ScorerLimits(BaseModel):
    """The bounds a /score request must keep (and how the server schedules its work)."""

    max_items: int = Field(description="most items per request (422 above)")
    max_chars: int = Field(description="longest text or prompt in characters (422 above)")
    max_total_chars: int = Field(description="most characters of texts + prompts per request "
                                             "(422 above)")
    max_body_bytes: int = Field(description="largest request body (413 above, from the headers)")
    max_batch: int = Field(description="most texts per judge call, shared fairly by requests")
    max_batch_chars: int = Field(description="most characters per judge call")
    timeout_s: float = Field(description="a request not scored within it gets 504; its "
                                         "unscored texts are dropped")


class ScorerLoad(BaseModel):
    active_requests: int = Field(description="requests with texts waiting for a judge call")
    queued_texts: int = Field(description="texts waiting for a judge call")
    scored_texts: int = Field(description="texts scored since start")
    dropped_texts: int = Field(description="texts of timed-out or abandoned requests that were "
                                           "never scored")


class HealthResponse(BaseModel):
    status: str
    judge: str
    limits: ScorerLimits
    load: ScorerLoad


_Item, _Request = ScoreItem, ScoreRequest


def bounded_request(max_items: int, max_chars: int, max_total_chars: int) -> type[ScoreRequest]:
    """``ScoreRequest`` with the server's limits in its schema (see the module docstring)."""
    Bounded = Annotated[str, StringConstraints(max_length=max_chars)]  # noqa: N806 - a type

    class ScoreItem(_Item):
        text: Bounded = Field(description=f"text to score, at most {max_chars} characters")
        prompt: Bounded | None = Field(default=None, description="optional prompt the text "
                                       f"answers, at most {max_chars} characters")

    class ScoreRequest(_Request):
        model_config = ConfigDict(extra="forbid",
                                  json_schema_extra={"x-max-total-chars": max_total_chars})

        items: list[ScoreItem] = Field(  # type: ignore[assignment] - narrowed bounds
            max_length=max_items,
            description=f"at most {max_items} items holding at most {max_total_chars} "
                        "characters of texts and prompts in all")

        @model_validator(mode="after")
        def _budget(self) -> ScoreRequest:
            n = sum(len(i.text) + len(i.prompt or "") for i in self.items)
            if n > max_total_chars:
                raise ValueError(f"the items hold {n} characters of texts and prompts; the "
                                 f"limit is max_total_chars={max_total_chars}: split the request")
            return self

    return ScoreRequest
