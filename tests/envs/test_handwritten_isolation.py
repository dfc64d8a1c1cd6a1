"""The hand-written eval split (and the hand-written target responses) never reach training or
judge fitting.

(a) With its loader and every way of opening its file (or the responses file) made to raise,
a tiny SFT + GRPO run of the moderation recipe, the moderation reward (projection judge fitting)
and the red-team scorers (embedding classifier, projection) are built and run. (b) No eval
prompt is in any text the trainer or a judge fit sees: tokenizer corpus, SFT pairs, curriculum
pools, sampled GRPO prompts, judge-fitting records.
"""

import builtins
import io
import pathlib

import pytest

from safegrpo.envs.moderation import pools, responses

EVAL_FILE = pools.HANDWRITTEN["eval"]
RESPONSES_FILE = responses.RESPONSES_FILE  # the labelled target responses: evaluation only too
SMOKE = ["tiny.vocab_size=400", "tiny.hidden=32", "tiny.layers=1", "tiny.heads=2", "sft.epochs=1",
         "sft_data.examples=8", "grpo.steps=1", "grpo.prompts_per_step=2", "grpo.group_size=2",
         "grpo.save_every=1", "arena.fit_per_tier=5", "policy.max_new_tokens=12"]


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


@pytest.fixture
def eval_split_blocked(monkeypatch):
    """Every read of the eval split raises; yields the eval prompts (read before blocking)."""
    eval_prompts = {_norm(r.prompt) for r in pools.load_handwritten("eval")}
    pools._load_handwritten.cache_clear()  # a cached copy would hide a read
    responses.load_responses.cache_clear()

    def guard(path):
        if str(path).endswith((EVAL_FILE, RESPONSES_FILE)):
            raise AssertionError(f"the hand-written eval split was read: {path}")

    real_load, real_open, real_read = pools.load_handwritten, builtins.open, pathlib.Path.read_text

    def load(split):
        if split == "eval":
            raise AssertionError("load_handwritten('eval') called")
        return real_load(split)

    def open_(file, *a, **k):
        guard(file)
        return real_open(file, *a, **k)

    def read_text(self, *a, **k):
        guard(self)
        return real_read(self, *a, **k)

    monkeypatch.setattr(pools, "load_handwritten", load)
    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(io, "open", open_)
    monkeypatch.setattr(pathlib.Path, "read_text", read_text)
    yield eval_prompts
    pools._load_handwritten.cache_clear()


def _record(monkeypatch, target, name, seen, pick):
    real = getattr(target, name)

    def wrapper(*a, **k):
        seen.extend(pick(*a, **k))
        return real(*a, **k)

    monkeypatch.setattr(target, name, wrapper)


def test_training_and_judge_fitting_never_read_the_eval_split(eval_split_blocked, tmp_path,
                                                               monkeypatch, minilm):
    import safegrpo.policies.tiny as tiny
    import safegrpo.recipes.moderation.pipeline as rec
    from safegrpo.core.config import load_config
    from safegrpo.judges.embeddings import build_embedder
    from safegrpo.judges.text_safety import ProjectionSafetyJudge
    from safegrpo.judges.toxicity import EmbeddingClassifierJudge
    from safegrpo.recipes.redteam.pipeline import ScorerConfig, build_scorer

    seen: dict[str, list[str]] = {k: [] for k in ("corpus", "fit", "grpo")}
    _record(monkeypatch, tiny, "build_tiny_lm", seen["corpus"],
            lambda out, corpus, **k: list(corpus))
    for judge in (ProjectionSafetyJudge, EmbeddingClassifierJudge):
        _record(monkeypatch, judge, "from_records", seen["fit"],
                lambda records, **k: [t for r in records for t in (r.prompt, r.rewrite)])
    real_sample = rec.ArenaTask.sample_prompts

    def sample(self, *a, **k):
        items = real_sample(self, *a, **k)
        seen["grpo"].extend(r.prompt for r in items)
        return items

    monkeypatch.setattr(rec.ArenaTask, "sample_prompts", sample)

    cfg = load_config(rec.ModerationRecipeConfig, None, [*SMOKE, f"out_dir={tmp_path}"])
    base = rec.prepare_base(cfg)
    reward = rec.build_reward(cfg, embedder=minilm)  # build_moderation_reward: projection fitting
    policy = rec.load_defender(cfg, base)
    rec.run_sft(cfg, policy)
    trainer = rec.run_grpo(cfg, policy, reward)
    assert len(trainer.history) == 1
    hashing = build_embedder("hashing")
    for judge in ("embedding_classifier", "projection"):
        build_scorer(ScorerConfig(judge=judge), embedder=hashing)

    seen["sft"] = [t for pair in rec.sft_pairs(cfg) for t in pair]
    by_tier = pools.RedSampler(cfg.arena.curriculum).by_tier
    seen["pools"] = [r.prompt for rs in by_tier.values() for r in rs]
    seen["train_split"] = [r.prompt for r in pools.train_split()]
    assert seen["corpus"] and seen["fit"] and seen["grpo"] and seen["sft"]
    for name, texts in seen.items():
        normed = {_norm(t) for t in texts}
        # SFT inputs wrap the prompt in the template: look for eval prompts inside them too
        leaked = [p for p in eval_split_blocked if p in normed or any(p in t for t in normed)]
        assert not leaked, f"eval prompts reached {name}: {leaked[:3]}"


def test_the_blocking_fixture_would_catch_a_read(eval_split_blocked):
    with pytest.raises(AssertionError, match="eval"):
        pools.load_handwritten("eval")
    with pytest.raises(AssertionError, match="eval split was read"):
        (pools._data_dir() / EVAL_FILE).read_text()
    with pytest.raises(AssertionError, match="eval split was read"):
        open(pools._data_dir() / EVAL_FILE)  # noqa: SIM115
    with pytest.raises(AssertionError, match="eval split was read"):
        responses.load_responses()
