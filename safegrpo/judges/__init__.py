"""Judges wrap models behind ``score(batch) -> Tensor[B]`` (higher = safer / better)."""

from safegrpo.judges.base import JUDGES, Inverted, Judge, build_judge, judge_spec, load_judges
from safegrpo.judges.embeddings import (
    EMBEDDERS,
    Embedder,
    HashingEmbedder,
    SentenceEmbedder,
    build_embedder,
    intent_residual,
    safety_direction,
    steer,
)

__all__ = [
    "EMBEDDERS",
    "JUDGES",
    "Embedder",
    "HashingEmbedder",
    "Inverted",
    "Judge",
    "SentenceEmbedder",
    "build_embedder",
    "build_judge",
    "judge_spec",
    "load_judges",
    "intent_residual",
    "safety_direction",
    "steer",
]
