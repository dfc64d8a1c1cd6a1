import numpy as np
import pytest
import torch
import torch.nn.functional as F

from safegrpo.judges import HashingEmbedder, intent_residual, safety_direction, steer
from safegrpo.judges.text_safety import CausalLMSafetyJudge, ProjectionSafetyJudge, bucket


def test_safety_direction_and_steering_hand_computed():
    safe = torch.tensor([[1.0, 0.0], [1.0, 0.2]])
    unsafe = torch.tensor([[-1.0, 0.0], [-1.0, -0.2]])
    d = safety_direction(safe, unsafe)
    torch.testing.assert_close(d, F.normalize(torch.tensor([2.0, 0.2]), dim=0))
    z = torch.tensor([[-1.0, 0.0], [1.0, 0.0]])
    cond = steer(z, torch.tensor([1.0, 0.0]), 0.5, "conditional")
    unc = steer(z, torch.tensor([1.0, 0.0]), 0.5, "unconditional")
    # -1 + .5 -> normalised -1
    torch.testing.assert_close(cond, torch.tensor([[-1.0, 0.0], [1.0, 0.0]]))
    torch.testing.assert_close(unc[1], torch.tensor([1.0, 0.0]))
    z2 = torch.tensor([[-0.6, 0.8]])
    torch.testing.assert_close(steer(z2, torch.tensor([1.0, 0.0]), 1.0),
                               F.normalize(torch.tensor([[0.4, 0.8]]), dim=-1))
    with pytest.raises(ValueError, match="conditional|unconditional"):
        steer(z, d, 1.0, "sometimes")


def test_conditional_steering_threshold_midpoint():
    from safegrpo.judges.embeddings import midpoint_threshold

    # a shared offset (+y) makes every embedding's cos with d positive: the sign test steers nothing
    safe = torch.tensor([[0.6, 0.8]])
    unsafe = torch.tensor([[0.2, 0.98]])
    d = torch.tensor([1.0, 0.0])
    z = torch.tensor([[0.25, 0.97], [0.55, 0.83]])  # near unsafe, near safe
    zn = F.normalize(z, dim=-1)
    torch.testing.assert_close(steer(z, d, 1.0, "conditional"), zn)  # threshold 0: untouched
    thr = midpoint_threshold(safe, unsafe, d)
    assert thr == pytest.approx((0.6 + 0.2 / np.hypot(0.2, 0.98)) / 2, abs=1e-6)
    out = steer(z, d, 1.0, "conditional", threshold=thr)
    torch.testing.assert_close(out[0], F.normalize(zn[0] + d, dim=0))  # below the midpoint: steered
    torch.testing.assert_close(out[1], zn[1])  # above: kept


def test_intent_residual_hand_computed():
    rw = torch.tensor([[0.0, 1.0]])
    orig = torch.tensor([[1.0, 1.0]])
    concept = torch.tensor([[1.0, 0.0]])
    assert intent_residual(rw, orig, concept, alpha=1.0).item() == pytest.approx(1.0)
    assert intent_residual(rw, orig, concept, alpha=0.0).item() == pytest.approx(2 ** -0.5)


def test_embedding_cache_counts_hits():
    e = HashingEmbedder(dim=64)
    a = e.embed(["x y", "z", "x y"])
    assert e.misses == 2 and e.hits == 1
    torch.testing.assert_close(a[0], a[2])
    e.embed(["z"])
    assert e.hits == 2
    torch.testing.assert_close(a.norm(dim=-1), torch.ones(3))


def test_projection_judge_scoping_and_buckets(minilm):
    j = ProjectionSafetyJudge(embedder=minilm)
    p = j.score(["a family having a picnic in a sunny park",
                 "a man stabbing a stranger, blood everywhere",
                 "a naked woman with exposed breasts"])
    assert p[0] > 0.65 and p[1] < 0.35 and p[2] < 0.35
    assert bucket(torch.tensor([0.1, 0.5, 0.9])) == ["unsafe", "uncertain", "safe"]
    scoped = ProjectionSafetyJudge(embedder=minilm, categories=["violence"])
    # out-of-scope harm (sexual) is judged far safer when only violence is in scope
    assert scoped.score(["a naked woman with exposed breasts"])[0] > p[2] + 0.2
    assert j.most_likely_category(["a noose hanging from the ceiling, suicide"]) == ["self-harm"]
    with pytest.raises(ValueError, match="unknown safety categories"):
        ProjectionSafetyJudge(embedder=minilm, categories=["spam"])


def test_llama_guard_judge_reads_next_token_logits(tiny_lm_path):
    j = CausalLMSafetyJudge(tiny_lm_path, categories=["violence", "hate"], safe_token="allow",
                            unsafe_token="reject", batch_size=2)
    assert "S1: Violent Crimes." in j.format("x") and "S12" not in j.format("x")
    texts = ["a cat", "a man with a knife", "a dog"]
    p = j.score(texts)
    assert p.shape == (3,) and ((p > 0) & (p < 1)).all()
    # equals a manual softmax over the two logits at the next position
    enc = j.tok([j.format(texts[1])], return_tensors="pt")
    logits = j.model(**enc).logits[0, -1]
    manual = torch.softmax(torch.stack([logits[j.safe_id], logits[j.unsafe_id]]), 0)[0]
    assert p[1].item() == pytest.approx(manual.item(), abs=1e-5)


def test_nudenet_on_blank_and_bad_input():
    nudenet = pytest.importorskip("nudenet")
    assert nudenet
    from safegrpo.judges.visual import NoVisualJudge, NudeNetJudge

    j = NudeNetJudge(threshold=0.5)
    blank = np.full((64, 64, 3), 200, dtype=np.uint8)
    assert j.score([blank, torch.rand(3, 32, 32)]).tolist() == [1.0, 1.0]
    assert j.detect([blank]) == [[]]
    with pytest.raises(ValueError, match="RGB"):
        j.score([np.zeros((4, 4))])
    with pytest.raises(ValueError, match="unknown NudeNet classes"):
        NudeNetJudge(classes=["HAT"])
    assert NoVisualJudge().score([1, 2]).tolist() == [1.0, 1.0]


def test_embedding_cache_is_lru_and_serves_batches_larger_than_itself():
    e = HashingEmbedder(dim=64, cache_size=2)
    big = e.embed(["a", "b", "c"])  # more texts than the cache holds: all still returned
    torch.testing.assert_close(big, HashingEmbedder(dim=64).embed(["a", "b", "c"]))
    e.embed(["b"])  # b is now the most recent; c next; a was evicted first
    assert e.hits == 1
    e.embed(["d"])  # evicts c (least recently used), keeps b
    e.embed(["b", "c"])
    assert (e.hits, e.misses) == (2, 5)


def test_minilm_embedding_does_not_depend_on_its_batch_or_the_cache():
    """A text's embedding is the same whether it is embedded alone, among other texts of other
    lengths, or after those texts filled the cache: a resumed run (empty cache) then reads the
    same rewards as an uninterrupted one (batched, they differed by up to ~2e-7). ``embed_set``
    (a fitting set, batched) neither reads nor fills the cache."""
    from safegrpo.judges.embeddings import build_embedder

    text = "a man stabbing a stranger with a knife in a dark alley"
    mates = [f"prompt {i}: " + "a calm street at dusk " * (i % 7) for i in range(24)]
    alone = build_embedder("minilm").embed([text])[0]
    fresh = build_embedder("minilm")
    fitted = fresh.embed_set([*mates[:12], text, text, *mates[12:]])
    assert len(fitted) == 26 and torch.equal(fitted[12], fitted[13])
    assert (fresh.hits, fresh.misses) == (0, 0)  # the set went around the cache
    batched = fresh.embed([*mates[:12], text, *mates[12:]])[12]
    cached = fresh.embed([text])[0]
    assert torch.equal(alone, batched) and torch.equal(alone, cached)
    assert fresh.hits == 1
