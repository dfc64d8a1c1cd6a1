import collections
import importlib.util
import json
from pathlib import Path

import pytest

from safegrpo.envs.moderation.pools import (
    CurriculumConfig,
    RedSampler,
    holdout,
    load_handwritten,
    load_pool,
)

ROOT = Path(__file__).resolve().parents[2]


def test_committed_pools_equal_a_fresh_build(tmp_path):
    spec = importlib.util.spec_from_file_location("build",
                                                  ROOT / "scripts" / "build_prompt_pools.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows, lexicon = mod.build()
    committed = [json.loads(x) for x in (ROOT / "safegrpo/envs/moderation/data/prompts.jsonl")
                 .read_text().splitlines()]
    assert [{k: v for k, v in r.items() if k != "id"} for r in committed] == rows
    assert json.loads((ROOT / "safegrpo/envs/moderation/data/lexicon.json").read_text()) == lexicon


def test_pool_sizes_categories_and_holdout():
    pool = load_pool()
    tiers = collections.Counter(r.tier for r in pool)
    assert all(tiers[t] >= 400 for t in ("T1", "T2", "T3", "benign"))
    cats = collections.Counter((r.tier, r.category) for r in pool if r.label == "unsafe")
    for t in ("T1", "T2", "T3"):
        for c in ("violence", "self-harm", "hate", "sexual"):
            assert cats[(t, c)] >= 100
    assert {r.category for r in pool if r.tier == "benign"} == {"scene", "trap", "template"}
    h = holdout()
    assert 0.1 < len(h) / len(pool) < 0.2
    assert len({r.prompt for r in pool}) == len(pool)


def test_sampler_never_draws_holdout_and_follows_schedule():
    s = RedSampler(CurriculumConfig(ramp_steps=10), seed=0)
    held = {r.id for r in holdout()}
    early = collections.Counter(r.tier for step in range(3) for r in s.sample(step, 200))
    late = collections.Counter(r.tier for step in range(20, 23) for r in s.sample(step, 200))
    assert not any(r.id in held for step in range(30) for r in s.sample(step, 50))
    assert early["T1"] > 2 * late["T1"] / 1.5 and late["T3"] > 3 * early["T3"]
    assert early["benign"] > 100 and late["benign"] > 100
    assert s.sample(5, 10) == s.sample(5, 10)  # deterministic per step (exact resume)
    assert s.sample(5, 10, rank=1) != s.sample(5, 10, rank=0)
    assert s.weights(0) == pytest.approx((0.45, 0.15, 0.05, 0.35))


def test_curriculum_validation():
    with pytest.raises(ValueError, match="early must be 4"):
        CurriculumConfig(early=(1.0, 0.0))
    with pytest.raises(ValueError, match="handwritten_share must be in"):
        CurriculumConfig(handwritten_share=1.5)
    with pytest.raises(ValueError, match="needs handwritten: true"):
        CurriculumConfig(handwritten=False, handwritten_share=0.5)


def test_handwritten_share_sets_the_hand_written_draws_per_tier_and_keeps_the_schedule():
    hand = set(load_handwritten("train"))
    plain = RedSampler(CurriculumConfig(ramp_steps=10), seed=3)
    steps = range(0, 60, 2)

    def draws(share):
        s = RedSampler(CurriculumConfig(ramp_steps=10, handwritten_share=share), seed=3)
        return [r for step in steps for r in s.sample(step, 40)]

    default = [r for step in steps for r in plain.sample(step, 40)]
    share_default = sum(r in hand for r in default) / len(default)
    assert 0.1 < share_default < 0.25  # in proportion to the pools: about a fifth
    for share in (0.0, 0.5, 1.0):
        got = draws(share)
        frac = sum(r in hand for r in got) / len(got)
        assert abs(frac - share) < 0.05, (share, frac)
        # the tier schedule is the same as without the knob
        assert [r.tier for r in got] == [r.tier for r in default]
        assert draws(share) == got  # deterministic per (seed, step)


def test_template_sexual_prompts_are_about_adults_only():
    """The generator swaps minor-coded subjects/settings for adult ones in the sexual category."""
    from tests.envs.test_handwritten import MINOR_WORDS

    rows = [r for r in load_pool() if r.category == "sexual"]
    assert len(rows) > 300
    bad = [r.id for r in rows if MINOR_WORDS.search(r.prompt) or MINOR_WORDS.search(r.rewrite)]
    assert bad == []
