import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def minilm():
    from safegrpo.judges.embeddings import build_embedder

    return build_embedder("minilm")


@pytest.fixture(scope="session")
def arena_reward(minilm):
    from safegrpo.rewards.moderation import build_moderation_reward

    return build_moderation_reward(embedder=minilm, fit_per_tier=40)
