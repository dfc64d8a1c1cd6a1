import math

import pytest
import torch

from safegrpo.advantages import (
    ADVANTAGES,
    broadcast_segments,
    gdpo_advantages,
    grpo_advantages,
    segment_advantages,
    segment_gdpo_advantages,
)


def loop_grpo(rewards, gids, scale="group", eps=1e-4):
    out = []
    valid_all = [r for r in rewards if not math.isnan(r)]
    bstd = torch.tensor(valid_all).std().item() if len(valid_all) > 1 else 0.0
    for r, g in zip(rewards, gids, strict=True):
        mates = [x for x, h in zip(rewards, gids, strict=True) if h == g and not math.isnan(x)]
        if math.isnan(r) or len(mates) < 2:
            out.append(0.0)
            continue
        mu = sum(mates) / len(mates)
        sd = math.sqrt(sum((x - mu) ** 2 for x in mates) / (len(mates) - 1))
        if sd == 0:
            out.append(0.0)
            continue
        den = {"group": sd + eps, "batch": bstd + eps, "none": 1.0}[scale]
        out.append((r - mu) / den)
    return torch.tensor(out)


def test_grpo_hand_computed():
    r = torch.tensor([1.0, 0.0, 2.0, 3.0])
    g = torch.tensor([0, 0, 1, 1])
    res = grpo_advantages(r, g, eps=0.0)
    s = math.sqrt(0.5)  # sample std of {0,1} and {2,3}
    torch.testing.assert_close(res.advantages, torch.tensor([0.5 / s, -0.5 / s, -0.5 / s, 0.5 / s]))
    res_none = grpo_advantages(r, g, scale="none")
    torch.testing.assert_close(res_none.advantages, torch.tensor([0.5, -0.5, -0.5, 0.5]))


def test_grpo_nan_singleton_and_zero_std_counted():
    r = torch.tensor([1.0, float("nan"), 2.0, 2.0, 5.0, 1.0, 3.0])
    g = torch.tensor([0, 0, 1, 1, 2, 3, 3])
    res = grpo_advantages(r, g)
    # group 0 has one valid member -> singleton; group 1 zero std; group 2 singleton
    assert res.stats["zero_std_groups"] == 1
    assert res.stats["singleton_groups"] == 2  # group 2 (one row) ; group 0 counted by valid rows
    assert res.stats["nan_rewards"] == 1
    assert res.valid.tolist() == [True, False, True, True, True, True, True]
    assert res.advantages[:5].abs().sum() == 0
    assert res.advantages[5] < 0 < res.advantages[6]


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_grpo_loop_equivalence(scale):
    gen = torch.Generator().manual_seed(0)
    r = torch.randn(40, generator=gen)
    r[torch.randperm(40, generator=gen)[:5]] = float("nan")
    g = torch.randint(0, 9, (40,), generator=gen) * 7  # non-contiguous ids
    res = grpo_advantages(r, g, scale=scale)
    torch.testing.assert_close(
        res.advantages, loop_grpo(r.tolist(), g.tolist(), scale), atol=1e-5, rtol=1e-5
    )


def test_gdpo_hand_computed_differs_from_summed_normalisation():
    # two components; component 2 has 100x scale. Summed-then-normalised is dominated by it,
    # GDPO gives each an equal say.
    r = torch.tensor([[1.0, 0.0], [0.0, 100.0], [1.0, 100.0], [0.0, 0.0]])
    g = torch.tensor([0, 0, 0, 0])
    res = gdpo_advantages(r, g, eps=0.0)
    # per-component z within group: comp values {1,0,1,0} -> +-1/sqrt(1/3)... compute directly
    z1 = (r[:, 0] - 0.5) / r[:, 0].std()
    z2 = (r[:, 1] - 50.0) / r[:, 1].std()
    comb = z1 + z2
    expected = (comb - comb.mean()) / comb.std()
    torch.testing.assert_close(res.advantages, expected)
    summed = grpo_advantages(r.sum(1), g, eps=0.0).advantages
    # row 0 (good on comp 1 only) vs row 3 (good on neither): GDPO separates them, summed barely
    assert res.advantages[0] - res.advantages[3] > 1.0
    assert summed[0] - summed[3] < 0.05


def test_gdpo_weights_and_nan():
    r = torch.tensor([[1.0, float("nan")], [0.0, 1.0], [float("nan"), float("nan")], [2.0, 0.0]])
    res = gdpo_advantages(r, torch.zeros(4, dtype=torch.long), weights=[1.0, 0.0])
    assert res.valid.tolist() == [True, True, False, True]
    assert res.advantages[2] == 0
    with pytest.raises(ValueError, match="K=2"):
        gdpo_advantages(r, torch.zeros(4, dtype=torch.long), weights=[1.0])


def test_segment_per_position_and_broadcast():
    r = torch.tensor([[1.0, 0.0], [0.0, 0.0], [3.0, float("nan")], [1.0, 2.0]])
    g = torch.tensor([0, 0, 1, 1])
    res = segment_advantages(r, g, eps=0.0)
    s = math.sqrt(0.5)
    exp = torch.tensor(
        [[0.5 / s, 0.0], [-0.5 / s, 0.0], [1 / math.sqrt(2), 0.0], [-1 / math.sqrt(2), 0.0]]
    )
    torch.testing.assert_close(res.advantages, exp)
    # loop equivalence per column
    for col in range(2):
        torch.testing.assert_close(
            res.advantages[:, col], loop_grpo(r[:, col].tolist(), g.tolist(), eps=0.0)
        )
    seg_map = torch.tensor([[-1, 0, 0, 1], [0, 1, 1, -1], [0, 0, 0, 0], [1, 1, 0, -1]])
    tok = broadcast_segments(res.advantages, seg_map)
    assert tok[0].tolist() == pytest.approx([0.0, 0.5 / s, 0.5 / s, 0.0])
    assert tok[3].tolist() == pytest.approx([0.0, 0.0, -1 / math.sqrt(2), 0.0])
    with pytest.raises(ValueError):
        broadcast_segments(res.advantages, torch.tensor([[2, 0, 0, 0]] * 4))


def test_registry_lists_valid_names():
    with pytest.raises(KeyError, match="valid: gdpo, grpo, segment"):
        ADVANTAGES.get("ppo")


def test_every_estimator_has_one_signature_and_matches_its_pure_function():
    """Registered estimators take (RewardBatch, AdvantageOptions); each equals its math."""
    from safegrpo.advantages import AdvantageOptions, RewardBatch

    g = torch.tensor([0, 0, 0, 1, 1, 1])
    total = torch.tensor([1.0, 0.0, 0.5, 2.0, float("nan"), 1.0])
    comps = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [2.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    segs = torch.rand(6, 3, 2)
    batch = RewardBatch(total, g, comps, segs)
    opts = AdvantageOptions(weights=(1.0, 2.0))
    w = torch.tensor([1.0, 2.0])
    expect = {
        "grpo": grpo_advantages(total, g),
        "gdpo": gdpo_advantages(comps, g, weights=w),
        "segment": segment_advantages((segs * w).sum(-1), g),
        "segment_gdpo": segment_gdpo_advantages(segs, g, weights=w),
    }
    assert ADVANTAGES.names() == sorted(expect)
    for name, ref in expect.items():
        got = ADVANTAGES.get(name)(batch, opts)
        torch.testing.assert_close(got.advantages, ref.advantages, equal_nan=True)
    with pytest.raises(ValueError, match="segments"):
        ADVANTAGES.get("segment")(RewardBatch(total, g, comps), opts)


def test_constant_group_of_inexact_floats_is_zero_variance():
    # 0.6 is not representable: a float32 mean leaves std ~6e-8 unless constancy is detected exactly
    r = torch.tensor([0.1 + 0.5] * 8 + [0.4, 0.3] * 4)
    g = torch.arange(2).repeat_interleave(8)
    res = grpo_advantages(r, g)
    assert res.stats["zero_std_groups"] == 1 and res.stats["zero_std_frac"] == 0.5
    assert (res.advantages[:8] == 0).all() and (res.advantages[8:].abs() > 0.5).all()
    seg = segment_advantages(torch.stack([r, r], 1), g)
    assert seg.stats["zero_std_segment_groups"] == 2
