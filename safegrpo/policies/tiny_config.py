"""Shape of a tiny Llama built locally (``policies.tiny.build_tiny_lm``), shared by recipes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TinyModelConfig:
    vocab_size: int = 1500
    """BPE vocabulary size of the locally trained tokenizer."""
    hidden: int = 128
    """Hidden size."""
    layers: int = 2
    """Transformer layers."""
    heads: int = 4
    """Attention heads."""
