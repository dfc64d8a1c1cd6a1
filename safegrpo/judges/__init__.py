"""Judges wrap models behind ``score(batch) -> Tensor[B]`` (higher = safer / better)."""

from safegrpo.judges.base import JUDGES, Judge, build_judge
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
    "Judge",
    "SentenceEmbedder",
    "build_embedder",
    "build_judge",
    "intent_residual",
    "safety_direction",
    "steer",
]
