"""On-policy updates (one optimizer step per batch) reuse the update's own log-probs as the
behaviour log-probs instead of a second forward in the rollout; the update is unchanged."""

import math

import pytest
import torch

from safegrpo.policies.lm import LMPolicy, LMPolicyConfig, LoRAConfig
from safegrpo.training.grpo import GRPOConfig, GRPOTrainer
from tests.training.fake_task import VowelTask


def make(tiny_lm_path, out, **kw):
    pol = LMPolicy(LMPolicyConfig(model=tiny_lm_path, lora=LoRAConfig(r=4), max_new_tokens=8))
    cfg = GRPOConfig(**{"steps": 1, "prompts_per_step": 2, "group_size": 4, "minibatch_size": 8,
                        "lr": 1e-2, "out_dir": str(out), "save_every": 0, "tensorboard": False,
                        **kw})
    return pol, GRPOTrainer(pol, VowelTask(), cfg)


def count_forwards(pol) -> list[int]:
    calls, fn = [0], pol.logprobs

    def counted(*a, **k):
        calls[0] += 1
        return fn(*a, **k)

    pol.logprobs = counted
    return calls


@pytest.mark.parametrize("kw, reuse", [
    ({}, True),
    ({"minibatch_size": 4, "grad_accum": 2}, True),  # accumulated: still one optimizer step
    ({"beta": 0.1, "reward_clip": 1.0}, True),  # the reference forward only
    ({"minibatch_size": 4}, False),  # two optimizer steps: the second one is off-policy
    ({"beta": 0.1, "reward_kl_coef": 0.1}, False),  # the reward KL reads the behaviour log-probs
])
def test_behaviour_forward_only_when_the_update_can_go_off_policy(tiny_lm_path, tmp_path, kw,
                                                                    reuse):
    pol, tr = make(tiny_lm_path, tmp_path, **kw)
    assert tr.reuse_logprobs == reuse
    calls = count_forwards(pol)
    ro = tr.collect(0)[0]
    assert calls[0] == (not reuse) + (ro.ref_logprobs is not None)
    assert (ro.old_logprobs is None) == reuse
    m = tr.step(1)  # and the update runs on what the rollout recorded
    assert all(math.isfinite(v) for v in m.values() if isinstance(v, float))


@pytest.mark.parametrize("kw", [{}, {"loss_agg": "dapo", "beta": 0.1, "ratio_level": "sequence"}])
def test_reused_logprobs_give_the_same_update_as_a_recorded_behaviour_forward(tiny_lm_path,
                                                                             tmp_path, kw):
    pol_a, tr_a = make(tiny_lm_path, tmp_path / "a", **kw)
    pol_b, tr_b = make(tiny_lm_path, tmp_path / "b", **kw)
    assert tr_a.reuse_logprobs
    tr_b.reuse_logprobs = False  # the old path: record the behaviour log-probs in the rollout
    m_a, m_b = tr_a.step(0), tr_b.step(0)
    assert m_a["loss/approx_kl"] == 0.0 and m_a["loss/ratio_mean"] == 1.0
    assert m_b["loss/approx_kl"] == pytest.approx(0.0, abs=1e-6)
    for k in ("loss/pg_loss", "reward/total", "rows_trained"):
        assert m_a[k] == pytest.approx(m_b[k], rel=1e-5, abs=1e-7), k
    a = {k: v for k, v in pol_a.model.named_parameters() if v.requires_grad}
    b = dict(pol_b.model.named_parameters())
    assert a
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5)
