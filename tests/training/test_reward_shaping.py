"""KL-in-reward shaping (hand-computed tiny tensors) and how each advantage estimator uses it."""

import math

import pytest
import torch

from safegrpo.core.types import ScoredBatch
from safegrpo.rewards.shaping import shape_reward, shape_segments
from safegrpo.training.grpo import GRPOConfig
from tests.training.fake_task import VowelTask
from tests.training.test_grpo import make


def test_shape_reward_folds_kl_clips_and_keeps_segments():
    seg = torch.tensor([[[1.0], [0.0]], [[-0.5], [0.0]], [[2.0], [0.0]]])  # [B=3, S=2, C=1]
    scored = ScoredBatch(total=torch.tensor([1.0, -0.5, 2.0]),
                         components={"a": torch.tensor([1.0, -0.5, 2.0])},
                         segments=seg, segment_names=("a",))
    out = shape_reward(scored, torch.tensor([0.5, 2.0, -1.0]), kl_coef=0.4, clip=1.2)
    # 1 - 0.2 = 0.8; -0.5 - 0.8 = -1.3 -> -1.2; 2 + 0.4 = 2.4 -> 1.2
    torch.testing.assert_close(out.total, torch.tensor([0.8, -1.2, 1.2]))
    torch.testing.assert_close(out.components["kl_penalty"], torch.tensor([-0.2, -0.8, 0.4]))
    assert out.segments is seg and out.segment_names == ("a",)


def test_shape_segments_charges_each_segment_its_own_tokens_kl():
    seg = torch.tensor([[1.0, math.nan, 0.5], [3.0, -3.0, 0.0]])  # [B=2, S=3]
    kl = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]])  # [B, T]
    smap = torch.tensor([[0, 0, 2, -1, -1], [0, 1, 2, 2, -1]])
    out = shape_segments(seg, kl, smap, kl_coef=2.0, clip=1.0)
    # row 0: segment 0 holds tokens 0-1 (KL 0.3), segment 2 token 2 (0.3), token 3 is in no
    # segment; row 1 has no KL and is only clipped
    want = torch.tensor([[1.0 - 0.6, math.nan, 0.5 - 0.6], [1.0, -1.0, 0.0]])
    torch.testing.assert_close(out, want, equal_nan=True)


@pytest.mark.parametrize("adv", ["gdpo", "segment_gdpo"])
@pytest.mark.parametrize("shaping", [{"reward_kl_coef": 0.1}, {"reward_clip": 1.0}])
def test_component_normalising_advantages_refuse_reward_shaping(adv, shaping):
    """gdpo would make the KL penalty one more equal-weight objective (shifting adv_weights) and
    never read the clipped total: refused, pointing to beta."""
    with pytest.raises(ValueError, match="use beta"):
        GRPOConfig(advantage=adv, **shaping)


class HalvesTask(VowelTask):
    """Two segments per completion: the first 4 tokens and the rest (vowel share of each half)."""

    reward_shape = "segments"

    def score(self, items, completions, group_ids):
        base = super().score(items, completions, group_ids)
        halves = [(t[: len(t) // 2], t[len(t) // 2:]) for t in completions]
        seg = torch.tensor([[[sum(c in "aeiou" for c in h) / max(len(h), 1)] for h in pair]
                            for pair in halves])
        return ScoredBatch(total=base.total, components=base.components, info=base.info,
                           segments=seg, segment_names=("vowels",))

    def segment_map(self, ro):
        t = torch.arange(ro.completion_ids.shape[1]).expand_as(ro.completion_ids)
        return torch.where(ro.completion_mask.bool(), (t >= 4).long(), torch.full_like(t, -1))


def test_segment_advantages_train_with_reward_kl_and_clip(tiny_lm_path, tmp_path):
    pol, tr = make(tiny_lm_path, tmp_path, steps=1, advantage="segment", reward_kl_coef=0.5,
                   reward_clip=0.3)
    tr.task = HalvesTask()
    before = {k: v.detach().clone() for k, v in pol.model.named_parameters() if v.requires_grad}
    m = tr.train()[-1]
    assert "reward/kl_penalty" in m and m["rows_trained"] > 0
    assert any(not torch.equal(v, before[k]) for k, v in pol.model.named_parameters()
               if v.requires_grad)
