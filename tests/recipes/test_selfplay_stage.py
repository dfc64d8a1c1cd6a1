import torch

from safegrpo.policies.lm import LMPolicy, LMPolicyConfig, LoRAConfig
from safegrpo.recipes.selfplay.pipeline import _stage
from safegrpo.training.grpo import GRPOConfig
from tests.training.fake_task import VowelTask


def _adam_steps(state: dict) -> set[int]:
    return {int(v["step"]) for v in state["state"].values()}


def test_optimizer_state_carries_across_rounds_and_resume(tiny_lm_path, tmp_path):
    pol = LMPolicy(LMPolicyConfig(model=tiny_lm_path, lora=LoRAConfig(r=4), max_new_tokens=8))

    def cfg(d):
        return GRPOConfig(steps=2, prompts_per_step=2, group_size=4, minibatch_size=8, lr=1e-2,
                          out_dir=str(tmp_path / d), save_every=1, report_to="none")

    _, s0 = _stage(pol, VowelTask(), cfg("r0"), False, None)
    assert _adam_steps(s0) == {2}
    _, s1 = _stage(pol, VowelTask(), cfg("r1"), False, s0)
    assert _adam_steps(s1) == {4}  # round 1 continued round 0's Adam moments
    # a resumed (already finished) stage takes its state from the checkpoint, not the carry
    _, again = _stage(pol, VowelTask(), cfg("r1"), True, s0)
    assert _adam_steps(again) == {4}
    for k, v in again["state"].items():
        torch.testing.assert_close(v["exp_avg"], s1["state"][k]["exp_avg"])
