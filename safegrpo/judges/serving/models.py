"""Wire types of the scorer server."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: list[str] = Field(description="texts to score (e.g. a target model's responses)")
    prompts: list[str] | None = Field(default=None, description="optional prompts, one per text")

    @model_validator(mode="after")
    def _lengths(self) -> ScoreRequest:
        if self.prompts is not None and len(self.prompts) != len(self.texts):
            raise ValueError(f"prompts has {len(self.prompts)} entries but texts has {len(self.texts)}")
        return self


class ScoreResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scores: list[float | None]  # None = this text could not be scored
    judge: str
