"""Wire types of the scorer server."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model, model_validator


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: list[str] = Field(description="texts to score (e.g. a target model's responses)")
    prompts: list[str] | None = Field(default=None, description="optional prompts, one per text "
                                         "(as many as texts; else 422)")

    @model_validator(mode="after")
    def _lengths(self) -> ScoreRequest:
        if self.prompts is not None and len(self.prompts) != len(self.texts):
            raise ValueError(f"prompts has {len(self.prompts)} entries but texts has "
                             f"{len(self.texts)}")
        return self


class ScoreResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scores: list[float | None]  # None = this text could not be scored
    judge: str


class ErrorResponse(BaseModel):
    detail: str


def bounded_request(max_items: int, max_chars: int) -> type[ScoreRequest]:
    """``ScoreRequest`` with the server's limits in its schema (at most ``max_items`` texts and
    prompts of at most ``max_chars`` characters each), so OpenAPI states them and a request
    past them is a 422 that names the limit."""
    text = Annotated[str, StringConstraints(max_length=max_chars)]
    return create_model(
        "ScoreRequest", __base__=ScoreRequest,
        texts=(list[text], Field(max_length=max_items, description=f"at most {max_items} texts "
                                 f"of at most {max_chars} characters to score")),
        prompts=(list[text] | None, Field(default=None, max_length=max_items,
                                          description="optional prompts, one per text (as many "
                                                      "as texts; else 422)")),
    )
