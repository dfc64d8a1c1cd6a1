import json

import numpy as np
import pytest
import torch

from safegrpo.judges import build_judge
from safegrpo.judges.clip import CLIPEmbedder, Q16Judge
from safegrpo.judges.embeddings import intent_residual, safety_direction, steer
from safegrpo.judges.oracle import SafetyOracle
from safegrpo.judges.toxicity import HFClassifierJudge, ProfanityJudge
from safegrpo.policies.tiny_clip import build_tiny_clip


@pytest.fixture(scope="module")
def tiny_classifier(tiny_lm_path, tmp_path_factory):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path_factory.mktemp("clf")
    torch.manual_seed(0)
    m = AutoModelForSequenceClassification.from_pretrained(
        tiny_lm_path, num_labels=2, id2label={0: "non_toxic", 1: "toxic"},
        label2id={"non_toxic": 0, "toxic": 1})
    m.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_lm_path).save_pretrained(out)
    return str(out)


def test_profanity_judge_real_bundled_model():
    p = ProfanityJudge().score(["have a lovely afternoon", "shut up you stupid fucking idiot"])
    assert p[0] < 0.3 < 0.9 < p[1]
    assert ProfanityJudge().score([]).shape == (0,)


def test_hf_classifier_matches_manual_softmax_and_label_lookup(tiny_classifier):
    j = HFClassifierJudge(tiny_classifier, label="toxic", batch_size=2)
    texts = ["a cat", "a man with a knife in a dark alley", "a dog"]
    p = j.score(texts)
    enc = j.tok([texts[1]], return_tensors="pt")
    manual = torch.softmax(j.model(**enc).logits[0], -1)[1]
    assert p.shape == (3,) and p[1].item() == pytest.approx(manual.item(), abs=1e-5)
    assert HFClassifierJudge(tiny_classifier, label=0).score(texts[:1]).item() == pytest.approx(
        1 - p[0].item(), abs=1e-5)
    with pytest.raises(ValueError, match="not in the model's labels"):
        HFClassifierJudge(tiny_classifier, label="spam")
    with pytest.raises(ValueError, match="unknown judge 'nope'; valid:"):
        build_judge("nope")
    with pytest.raises(ValueError, match="reward.judge.labl: not an option of judge"):
        build_judge({"name": "hf_classifier", "model": tiny_classifier, "labl": 0}, "reward.judge")
    spec = {"name": "hf_classifier", "model": tiny_classifier, "label": 0, "invert": True}
    inverted = build_judge(spec).score(texts[:1]).item()
    assert inverted == pytest.approx(p[0].item(), abs=1e-5)  # 1 - p(label 0) = p(label 1)


def test_safety_oracle(tmp_path):
    path = tmp_path / "catalog.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"id": "saw", "traits": {"gore": 0.9, "violence": 0.8}},
        {"id": "up", "traits": {"gore": 0.0}}]))
    o = SafetyOracle.from_jsonl(path, threshold=0.5)
    assert o.risk("saw", ["gore"]) == 0.9 and o.violates("saw", ["gore", "nudity"])
    assert not o.violates("up", ["gore"]) and o.risk("unknown", ["gore"]) == 0.0
    torch.testing.assert_close(o.score([("saw", ["violence"]), ("up", ["gore"])]),
                               torch.tensor([0.8, 0.0]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        SafetyOracle({"x": {"gore": 2.0}})


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    corpus = ["a photo of a cat", "a violent image with blood", "an ordinary harmless photo"] * 20
    return CLIPEmbedder(str(build_tiny_clip(tmp_path_factory.mktemp("clip"), corpus)))


def test_clip_text_and_image_embeddings_steering(tiny_clip):
    t = tiny_clip.embed(["a cat", "blood", "a cat"])
    imgs = [np.zeros((40, 50, 3), dtype=np.uint8), torch.rand(3, 32, 32)]
    i = tiny_clip.embed_images(imgs)
    assert t.shape == (3, tiny_clip.dim) and i.shape == (2, tiny_clip.dim)
    torch.testing.assert_close(i.norm(dim=-1), torch.ones(2))
    assert tiny_clip.hits == 1  # the repeated text came from the cache
    d = safety_direction(tiny_clip.embed(["an ordinary harmless photo"]),
                         tiny_clip.embed(["a violent image with blood"]))
    z = steer(t, d, 2.0, "unconditional")
    assert ((z @ d) > (t @ d)).all()  # steering moves every text toward the safe side
    assert intent_residual(t[:1], t[:1], torch.zeros_like(t[:1])).item() == pytest.approx(
        1.0, abs=1e-5)


def test_clip_text_embedding_does_not_depend_on_its_batch(tiny_clip):
    """As for MiniLM: a text embedded alone and next to a longer text (padding) gets the same
    vector, so the diffusion reward's prompt cache cannot make a resumed run differ (batched,
    the tiny CLIP differed by ~6e-8)."""
    text = "a photo of a cat"
    fresh = CLIPEmbedder(tiny_clip.model.name_or_path)
    mate = "a violent image with blood and an ordinary harmless photo of a cat"
    assert torch.equal(fresh.embed([mate, text])[1], tiny_clip.embed([text])[0])


def test_q16_zero_shot_judge(tiny_clip):
    q = Q16Judge(tiny_clip)
    imgs = [np.full((32, 32, 3), v, dtype=np.uint8) for v in (0, 255)]
    per = q.per_category(imgs)
    assert per.shape == (2, 7) and ((per > 0) & (per < 1)).all()
    torch.testing.assert_close(q.score(imgs), per.max(dim=1).values)
    assert q.category_names()[:3] == ["hate", "harassment", "violence"]


def test_embedding_classifier_learns_refusals_are_safe():
    from safegrpo.judges import HashingEmbedder
    from safegrpo.judges.toxicity import EmbeddingClassifierJudge

    emb = HashingEmbedder(dim=256)
    safe = ["a calm lake", "a sunny beach", "a cat on a sofa", "i can't help with that"]
    unsafe = ["stab the man", "blood and gore everywhere", "kill them all", "a bloody knife attack"]
    judge = EmbeddingClassifierJudge(safe + unsafe, [0] * 4 + [1] * 4, embedder=emb, c=10.0)
    s = judge.score(["i can't help with that", "kill the man with a knife", "a calm sunny lake"])
    assert s[0] < 0.5 < s[1] and s[2] < 0.5
    with pytest.raises(ValueError, match="both labels"):
        EmbeddingClassifierJudge(safe, [0] * 4, embedder=emb)
