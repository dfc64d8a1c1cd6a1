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
    from safegrpo.envs.moderation.reward import build_moderation_reward

    return build_moderation_reward(embedder=minilm, fit_per_tier=40)


TINY_CORPUS = [
    '{"decision": "allow", "reason": "benign"}',
    '{"decision": "transform", "rewrite": "a cat on a sofa", "reason": "violence"}',
    '{"decision": "reject", "reason": "sexual"}',
    "Prompt: a photo of a man stabbing a stranger with a knife in a dark alley\nJSON:",
    "Prompt: a watercolor of a cat sleeping on a windowsill\nJSON:",
] * 20


@pytest.fixture(scope="session")
def tiny_lm_path(tmp_path_factory):
    """A random-init Llama + BPE tokenizer saved with save_pretrained (loaded via
    from_pretrained)."""
    from safegrpo.policies.tiny import build_tiny_lm

    return str(build_tiny_lm(tmp_path_factory.mktemp("tiny_lm"), TINY_CORPUS, vocab_size=300,
                             hidden=32, layers=1, heads=2))


@pytest.fixture
def terminal(monkeypatch):
    """Progress drawn on a fake terminal (what a user's shell gets); returns its text buffer."""
    import io

    from rich.console import Console

    from safegrpo.core import progress

    out = io.StringIO()
    monkeypatch.setitem(progress._state, "console",
                        Console(file=out, force_terminal=True, width=100, color_system=None))
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setitem(progress._state, "quiet", False)
    return out
