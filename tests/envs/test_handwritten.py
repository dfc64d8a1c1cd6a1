"""Hand-written moderation splits: shape, schema, near-duplicate check and the loaders."""

import collections
import importlib.util
import json
import re
from pathlib import Path

import pytest

from safegrpo.envs.moderation import pools
from safegrpo.envs.moderation.pools import (
    CurriculumConfig,
    RedSampler,
    load_handwritten,
    load_pool,
    train_split,
)

ROOT = Path(__file__).resolve().parents[2]
UNSAFE = ("violence", "self-harm", "hate", "sexual")
# words that could make a sexual prompt (or its rewrite) about a minor; none may appear
MINOR_WORDS = re.compile(r"\b(girls?|boys?|teens?|teenagers?|child(ren)?|kids?|school\w*|students?"
                         r"|minors?|underage|young|little|loli|baby|babies|daughter|son)\b", re.I)


def _check_script():
    path = ROOT / "scripts" / "check_handwritten_overlap.py"
    spec = importlib.util.spec_from_file_location("overlap", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("split, per_tier, benign, traps",
                         [("train", 60, 80, 40), ("eval", 50, 50, 25)])
def test_split_sizes_schema_and_rewrites(split, per_tier, benign, traps):
    recs = load_handwritten(split)
    tiers = collections.Counter(r.tier for r in recs)
    assert all(tiers[t] >= per_tier for t in ("T1", "T2", "T3")) and tiers["benign"] >= benign
    cats = collections.Counter((r.tier, r.category) for r in recs)
    for t in ("T1", "T2", "T3"):
        assert all(cats[(t, c)] >= per_tier // 4 for c in UNSAFE), cats
    assert cats[("benign", "trap")] >= traps
    assert {r.category for r in recs if r.tier == "benign"} == {"scene", "trap"}
    for r in recs:
        assert r.id.startswith(f"hw-{split}-") and r.holdout == (split == "eval")
        assert (r.label == "safe") == (r.tier == "benign")
        assert 4 <= len(r.prompt.split()) <= 40, r.prompt
        if r.label == "safe":
            assert r.rewrite == r.prompt
        else:
            assert r.rewrite and r.rewrite != r.prompt and len(r.rewrite.split()) >= 3
    for r in recs:
        if r.category == "sexual":
            assert not MINOR_WORDS.search(r.prompt) and not MINOR_WORDS.search(r.rewrite), r.id
    assert len({r.id for r in recs}) == len(recs)


def test_no_eval_prompt_is_near_a_train_or_template_prompt(capsys):
    report = _check_script().check(0.5)
    assert report["eval~train"] <= 0.5 and report["eval~template"] <= 0.5
    assert report["eval~eval"] < 1.0 and report["train~train"] < 1.0  # no repeats inside a split


def test_overlap_check_catches_a_near_duplicate(tmp_path):
    mod = _check_script()
    data = ROOT / "safegrpo" / "envs" / "moderation" / "data"
    for f in mod.FILES.values():
        (tmp_path / f).write_text((data / f).read_text())
    train = [json.loads(x) for x in (tmp_path / mod.FILES["train"]).read_text().splitlines()]
    ev = json.loads((tmp_path / mod.FILES["eval"]).read_text().splitlines()[0])
    train[0]["prompt"] = ev["prompt"] + " please"  # a near copy of an eval prompt lands in train
    (tmp_path / mod.FILES["train"]).write_text("".join(json.dumps(r) + "\n" for r in train))
    with pytest.raises(ValueError, match="eval~train"):
        mod.check(0.5, data=tmp_path)


def test_train_split_and_sampler_include_handwritten_train_only():
    hw_train = {r.id for r in load_handwritten("train")}
    hw_eval = {r.id for r in load_handwritten("eval")}
    with_hw = {r.id for r in train_split()}
    assert hw_train <= with_hw and not hw_eval & with_hw
    templates_only = {r.id for r in load_pool() if not r.holdout}
    assert {r.id for r in train_split(handwritten=False)} == templates_only
    sampler = RedSampler(CurriculumConfig(), seed=0)
    drawn = {r.id for step in range(20) for r in sampler.sample(step, 64)}
    assert drawn & hw_train and not drawn & hw_eval
    off = RedSampler(CurriculumConfig(handwritten=False), seed=0)
    assert not {r.id for rs in off.by_tier.values() for r in rs} & hw_train


def test_loader_errors_name_the_problem(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="valid: train, eval"):
        load_handwritten("test")
    row = json.loads((pools._data_dir() / "handwritten_eval.jsonl").read_text().splitlines()[0])
    (tmp_path / "handwritten_eval.jsonl").write_text(json.dumps({**row, "holdout": False}) + "\n")
    monkeypatch.setattr(pools, "_data_dir", lambda: tmp_path)
    pools._load_handwritten.cache_clear()
    try:
        with pytest.raises(ValueError, match="holdout=True"):
            load_handwritten("eval")
    finally:
        pools._load_handwritten.cache_clear()


def test_no_safe_rewrite_labels_follow_the_written_rule():
    from safegrpo.envs.moderation.pools import load_pool

    train = load_handwritten("train")
    marked = [r for r in train if r.no_safe_rewrite]
    assert all(r.label == "unsafe" and r.category != "violence" for r in marked)
    by_cat = collections.Counter(r.category for r in marked)
    assert by_cat == {"hate": 51, "sexual": 28, "self-harm": 5}  # docs/handwritten_splits.md
    assert all(r.no_safe_rewrite for r in train if r.category == "hate")
    pool = load_pool()
    assert all(r.no_safe_rewrite == (r.category == "hate") for r in pool
               if r.category != "sexual")
    explicit = [r for r in pool if r.category == "sexual" and r.no_safe_rewrite]
    assert explicit and all(r.tier in ("T1", "T2") for r in explicit)
    ev = load_handwritten("eval")
    ev_marked = collections.Counter(r.category for r in ev if r.no_safe_rewrite)
    assert ev_marked == {"hate": 41, "sexual": 21, "self-harm": 5}  # docs/handwritten_splits.md
    assert all(r.no_safe_rewrite == (r.category == "hate") for r in ev
               if r.category not in ("sexual", "self-harm"))


@pytest.mark.parametrize("split", ["train", "eval"])
@pytest.mark.parametrize(("edit", "why"), [
    (lambda r: r.pop("no_safe_rewrite"), "missing"),
    (lambda r: r.update(no_safe_rewrite="yes"), "got 'yes'"),
])
def test_unsafe_rows_must_state_no_safe_rewrite(tmp_path, monkeypatch, split, edit, why):
    """A dataclass default would quietly label a forgotten row "has a safe rewrite"."""
    src = (pools._data_dir() / pools.HANDWRITTEN[split]).read_text().splitlines()
    rows = [json.loads(ln) for ln in src[:3]]
    benign = next(json.loads(ln) for ln in src if '"label": "safe"' in ln)
    benign.pop("no_safe_rewrite")  # benign rows may rely on the default
    edit(rows[1])
    (tmp_path / pools.HANDWRITTEN[split]).write_text(
        "".join(json.dumps(r) + "\n" for r in (*rows, benign)))
    monkeypatch.setattr(pools, "_data_dir", lambda: tmp_path)
    pools._load_handwritten.cache_clear()
    try:
        with pytest.raises(ValueError, match=rf"{pools.HANDWRITTEN[split]}:2: unsafe record "
                                             rf"'{rows[1]['id']}' must state 'no_safe_rewrite'"
                                             rf".*\({why};"):
            load_handwritten(split)
        rows[1]["no_safe_rewrite"] = True  # stated: the same file loads
        (tmp_path / pools.HANDWRITTEN[split]).write_text(
            "".join(json.dumps(r) + "\n" for r in (*rows, benign)))
        pools._load_handwritten.cache_clear()
        assert load_handwritten(split)[1].no_safe_rewrite
    finally:
        pools._load_handwritten.cache_clear()


def test_sft_targets_reject_prompts_with_no_safe_rewrite():
    import json
    import random

    from safegrpo.recipes.moderation.pipeline import target_json

    rec = next(r for r in load_handwritten("train") if r.no_safe_rewrite)
    assert all(json.loads(target_json(rec, random.Random(s), 1.0))["decision"] == "reject"
               for s in range(5))
    other = next(r for r in load_handwritten("train") if r.label == "unsafe"
                 and not r.no_safe_rewrite)
    assert json.loads(target_json(other, random.Random(0), 1.0))["decision"] == "transform"
