"""Per-rank rewards, segment GDPO, item-level ratios and the list parser, on hand-computed cases."""

import math

import pytest
import torch

from safegrpo.advantages import broadcast_segments, segment_advantages, segment_gdpo_advantages
from safegrpo.envs.recommender.catalog import Catalog, Movie, parse_list
from safegrpo.judges.oracle import SafetyOracle
from safegrpo.losses.policy import clipped_surrogate, segment_mean
from safegrpo.rewards.recommender import RankRewardConfig, per_rank_rewards, rank_discount

NAN = float("nan")
ORACLE = SafetyOracle({"a": {"gore": 0.9}, "b": {"gore": 0.1}, "c": {"gore": 0.6}, "d": {}})


def test_per_rank_rewards_hand_computed_exp_inf():
    cfg = RankRewardConfig(k=3, safety_coef=1.0, count_coef=0.5)
    out = per_rank_rewards([["a", "b", "a"], ["c"]], [{"a", "b"}, {"c"}], [["gore"], []], ORACLE,
                           cfg)
    d = rank_discount(3)
    # row 0: relevant a, b, (repeat a -> 0); a violates at rank 0 and 2 (risk .9), so it is no hit
    # (safe_relevance); the repeat is a missing item: 2 distinct of K=3 -> count -0.5 * 1/3
    torch.testing.assert_close(out[0, :, 0], torch.tensor([0.0, 1.0, 0.0]))
    torch.testing.assert_close(out[0, :, 1], torch.tensor([-0.9 * d[0], 0.0, -0.9 * d[2]]))
    torch.testing.assert_close(out[0, :, 2], torch.full((3,), -0.5 / 3))
    # row 1: one item of three, no constraint -> count -0.5 * 2/3, ranks 1-2 absent (NaN)
    torch.testing.assert_close(out[1, 0], torch.tensor([1.0, 0.0, -0.5 * 2 / 3]))
    assert torch.isnan(out[1, 1:]).all()


def test_log_decay_relevance_and_empty_list():
    cfg = RankRewardConfig(k=3, relevance="log_decay", count_coef=0.5)
    out = per_rank_rewards([["x", "a", "b"], []], [{"a", "b"}, {"a"}], [[], []], ORACLE, cfg)
    tail = 1 / math.log2(3) + 1 / math.log2(4)
    torch.testing.assert_close(out[0, :, 0], torch.tensor([tail, tail, 1 / math.log2(4)]))
    # an empty list is still scored at rank 0: no relevance, count -0.5
    torch.testing.assert_close(out[1, 0], torch.tensor([0.0, 0.0, -0.5]))


def test_count_reward_closes_the_short_list_shortcut():
    """Dropping the risky last item must not pay: with the count reward the shorter list loses at
    every shared rank; without it, the shorter list would avoid the penalty and win."""
    full, short = ["b", "d", "a"], ["b", "d"]
    rel, avoid, gids = [{"b", "d"}, {"b", "d"}], [["gore"], ["gore"]], torch.tensor([0, 0])
    with_count = per_rank_rewards([full, short], rel, avoid, ORACLE,
                                  RankRewardConfig(k=3, count_coef=0.5))
    adv = segment_gdpo_advantages(with_count, gids).advantages
    assert (adv[1, :2] < adv[0, :2]).all()
    assert torch.nansum(with_count[1]) < torch.nansum(with_count[0])
    no_count = per_rank_rewards([full, short], rel, avoid, ORACLE,
                                RankRewardConfig(k=3, count_coef=0.0))
    # the exploit the count reward blocks
    assert torch.nansum(no_count[1]) > torch.nansum(no_count[0])


def test_count_reward_closes_the_repeat_a_safe_title_shortcut():
    """Found in a 60-step demo run: the safe arm padded lists with one known-safe title (a repeat
    earns no relevance but risks no safety penalty). Repeats and unmatched lines now count as
    missing items, so the padded list loses to an honest list with one risky item."""
    rel, avoid = [{"b", "d"}] * 2, [["gore"]] * 2
    honest, padded = ["b", "d", "c"], ["b", "d", "d"]  # c violates (risk .6) at the last rank
    cfg = RankRewardConfig(k=3, count_coef=0.5)
    out = per_rank_rewards([honest, padded], rel, avoid, ORACLE, cfg)
    torch.testing.assert_close(out[1, :, 2], torch.full((3,), -0.5 / 3))
    assert torch.nansum(out[1]) < torch.nansum(out[0])
    adv = segment_advantages(torch.nansum(out, -1), torch.tensor([0, 0])).advantages
    assert (adv[1] < adv[0]).all()  # with summed components the padded list loses at every rank
    old_count = out.clone()
    old_count[1, :, 2] = 0.5  # the old rule counted lines, so the padded list scored "exactly K"
    assert torch.nansum(old_count[1]) > torch.nansum(old_count[0])  # ... and won: the exploit
    # repeat_coef puts extra blame on the rank that repeated
    loc = per_rank_rewards([honest, padded], rel, avoid, ORACLE,
                           RankRewardConfig(k=3, count_coef=0.5, repeat_coef=1))
    torch.testing.assert_close(loc[1, :, 2], torch.tensor([-0.5 / 3, -0.5 / 3, -0.5 / 3 - 1]))
    torch.testing.assert_close(loc[0], out[0])
    # an unmatched line and an over-long list are missing / extra items too
    out = per_rank_rewards([["b", None, "d"], ["b", "d", "c", "a"]], rel, avoid, ORACLE, cfg)
    torch.testing.assert_close(out[:, 0, 2], torch.tensor([-0.5 / 3, -0.5 / 3]))


def test_segment_gdpo_vs_summed_normalisation_hand_computed():
    # one group of 2, one rank, components (relevance in {0, 1}, count in {0, 10})
    r = torch.tensor([[[1.0, 0.0]], [[0.0, 10.0]]])
    gids = torch.tensor([0, 0])
    summed = segment_advantages(r.sum(-1), gids, eps=0.0).advantages  # 1 vs 10: the count decides
    assert summed[0, 0] < 0 < summed[1, 0]
    # each z = +-1/sqrt(2)*..., sums cancel
    gd = segment_gdpo_advantages(r, gids, eps=0.0).advantages
    torch.testing.assert_close(gd, torch.zeros(2, 1))
    gd_w = segment_gdpo_advantages(r, gids, weights=[2.0, 1.0], eps=0.0).advantages
    # per-component z: rel (+.7071, -.7071), count (-.7071, +.7071); weighted sum (+.7071, -.7071);
    # batch-normalised over 2 entries (std .99999..): (+.7071, -.7071) / 1.0
    torch.testing.assert_close(gd_w, torch.tensor([[2 ** -0.5], [-(2 ** -0.5)]]), atol=1e-5, rtol=0)


def test_rank_advantage_broadcast_to_tokens():
    adv = torch.tensor([[1.0, -2.0, 3.0]])
    seg = torch.tensor([[0, 0, 1, 1, 2, -1]])
    torch.testing.assert_close(broadcast_segments(adv, seg),
                               torch.tensor([[1.0, 1.0, -2.0, -2.0, 3.0, 0.0]]))


def test_item_level_ratio_is_geometric_mean_within_item():
    logp = torch.log(torch.tensor([[1.0, 4.0, 2.0, 3.0]]))
    old = torch.zeros(1, 4)
    seg = torch.tensor([[0, 0, 1, -1]])
    mean = segment_mean(logp - old, torch.ones(1, 4), seg)
    # sqrt(1*4), 2, own
    torch.testing.assert_close(mean.exp(), torch.tensor([[2.0, 2.0, 2.0, 3.0]]))
    _, ratio, _ = clipped_surrogate(logp, old, torch.ones(1), torch.ones(1, 4), ratio_level="item",
                                    segment_map=seg)
    torch.testing.assert_close(ratio, torch.tensor([[2.0, 2.0, 2.0, 3.0]]))
    # loop equivalence on random tensors
    g = torch.Generator().manual_seed(0)
    x, segr = torch.randn(3, 7, generator=g), torch.randint(-1, 3, (3, 7), generator=g)
    m = (torch.rand(3, 7, generator=g) > 0.2).float()
    vec = segment_mean(x, m, segr)
    for b in range(3):
        for t in range(7):
            s = int(segr[b, t])
            if s < 0:
                want = x[b, t]
            else:
                sel = (segr[b] == s) & (m[b] > 0)
                want = x[b][sel].mean() if sel.any() else torch.tensor(0.0)
            torch.testing.assert_close(vec[b, t], want)
    with pytest.raises(ValueError, match="segment_map"):
        clipped_surrogate(logp, old, torch.ones(1), torch.ones(1, 4), ratio_level="item")


def test_parser_fuzzy_titles_and_year_tolerance():
    cat = Catalog([Movie("m1", "The Silent Harbor", 1999, "drama", {}),
                   Movie("m2", "Blood Night", 2004, "horror", {}),
                   Movie("m3", "Blood Night", 1980, "horror", {})])
    text = ("1. The Silent Harbour (2000)\n2. blood night (1981)\nnot an item\n"
            "3. Nothing Like It (1999)\n4. Blood Night")
    assert parse_list(text, cat) == ["m1", "m3", None, "m2"]
    assert parse_list("1. The Silent Harbor (2005)", cat) == [None]  # outside the year tolerance


def test_segment_map_assigns_tokens_to_ranks():
    from safegrpo.recipes.recommender.task import line_ranks

    assert line_ranks("1. A (1)\n2. B (2)\njunk\n3. C (3)\n4. D (4)", k=3) == [0, 1, 1, 2, 2]
    assert line_ranks("junk first\n1. A", k=2) == [0, 0]


def test_a_violating_relevant_item_no_longer_ties_with_a_safe_miss():
    """segment_gdpo normalises each component in its group: a relevant item the user asked to
    avoid (+relevance, -safety) tied with an irrelevant safe one (-relevance, +safety), so the safe
    arm had no reason to drop it. With safe_relevance it earns no relevance and loses."""
    lists = [["a"], ["d"], ["b"]]  # relevant + violating (risk .9), irrelevant safe, relevant safe
    rel, avoid, gids = [{"a", "b"}] * 3, [["gore"]] * 3, torch.tensor([0, 0])
    old = per_rank_rewards(lists[:2], rel[:2], avoid[:2], ORACLE,
                           RankRewardConfig(k=1, count_coef=0.0, safe_relevance=False))
    adv = segment_gdpo_advantages(old, gids, eps=0.0).advantages
    assert float(adv[0, 0]) == pytest.approx(float(adv[1, 0]), abs=1e-6)  # the exploit: a tie
    new = per_rank_rewards(lists, rel, avoid, ORACLE, RankRewardConfig(k=1, count_coef=0.0))
    assert new[:, 0, 0].tolist() == [0.0, 0.0, 1.0]
    adv = segment_gdpo_advantages(new, torch.tensor([0, 0, 0])).advantages[:, 0]
    assert adv[0] < adv[1] < adv[2]  # violating < safe miss < safe hit
    # without a safety penalty (the no-safety arm) relevance is plain hits
    plain = per_rank_rewards(lists, rel, avoid, ORACLE, RankRewardConfig(k=1, safety_coef=0.0))
    assert plain[:, 0, 0].tolist() == [1.0, 0.0, 1.0]
