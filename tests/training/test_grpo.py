import json

import pytest
import torch

from safegrpo.policies.lm import LMPolicy, LMPolicyConfig, LoRAConfig
from safegrpo.training.grpo import GRPOConfig, GRPOTrainer
from tests.training.fake_task import VowelTask


def make(tiny_lm_path, out, lora_r=4, **kw):
    pol = LMPolicy(LMPolicyConfig(model=tiny_lm_path, lora=LoRAConfig(r=lora_r), max_new_tokens=8))
    cfg = GRPOConfig(
        **{
            "steps": 2,
            "prompts_per_step": 2,
            "group_size": 4,
            "minibatch_size": 4,
            "lr": 1e-2,
            "out_dir": str(out),
            "save_every": 1,
            "report_to": "none",
            **kw,
        }
    )
    return pol, GRPOTrainer(pol, VowelTask(), cfg)


def trainable(pol):
    return {k: v.detach().clone() for k, v in pol.model.named_parameters() if v.requires_grad}


def test_two_step_smoke_logs_metrics(tiny_lm_path, tmp_path):
    pol, tr = make(tiny_lm_path, tmp_path, beta=0.05, epochs=2)
    before = trainable(pol)
    hist = tr.train()
    assert len(hist) == 2
    for key in ("reward/total", "reward/vowels", "loss/kl", "loss/clipfrac", "adv/zero_std_frac",
                "policy/entropy", "perf/tokens_per_s", "time/wall_s", "decision/allow"):
        assert key in hist[-1], key
    after = trainable(pol)
    assert any((before[k] - after[k]).abs().max() > 0 for k in before)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [0, 1]


def test_resume_continues_exactly(tiny_lm_path, tmp_path):
    pol_a, tr_a = make(tiny_lm_path, tmp_path / "a", steps=4, epochs=2)
    tr_a.train()
    pol_b, tr_b = make(tiny_lm_path, tmp_path / "b", steps=2, epochs=2)
    tr_b.train()  # "killed" after step 2 (checkpoint at 2)
    pol_c, tr_c = make(tiny_lm_path, tmp_path / "b", steps=4, epochs=2)
    assert tr_c.resume() == 2
    tr_c.train()
    a, c = trainable(pol_a), trainable(pol_c)
    for k in a:
        torch.testing.assert_close(a[k], c[k], atol=1e-6, rtol=1e-6)
    steps = [
        json.loads(x)["step"] for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == [0, 1, 2, 3]
    ra = [h["reward/total"] for h in tr_a.history]
    rc = [h["reward/total"] for h in tr_c.history]
    assert ra == pytest.approx(rc)


class CountingTask(VowelTask):
    """A task with state across steps: how many completions it has scored."""

    def __init__(self):
        self.seen = 0

    def score(self, items, completions, group_ids):
        self.seen += len(completions)
        return super().score(items, completions, group_ids)

    def state_dict(self):
        return {"seen": self.seen}

    def load_state_dict(self, state):
        self.seen = state["seen"]


def test_task_state_is_checkpointed_and_restored(tiny_lm_path, tmp_path):
    pol, tr = make(tiny_lm_path, tmp_path, steps=2)
    tr.task = CountingTask()
    tr.train()
    state = json.loads((tmp_path / "checkpoints/step_000002/trainer_state.json").read_text())
    assert state["task_state"] == [{"seen": 16}]  # one entry per rank: 2 steps x 2 x 4 rows
    _, again = make(tiny_lm_path, tmp_path, steps=3)
    again.task = CountingTask()
    assert again.resume() == 2 and again.task.seen == 16
    again.train()
    assert again.task.seen == 24


def test_early_stop_on_reward(tiny_lm_path, tmp_path):
    _, tr = make(tiny_lm_path, tmp_path, steps=5, early_stop_reward=-1.0, early_stop_window=1)
    hist = tr.train()
    assert len(hist) == 1 and "mean reward" in tr.stop_reason
    assert (tmp_path / "checkpoints" / "step_000001").exists()
    _, again = make(tiny_lm_path, tmp_path, steps=5, early_stop_reward=-1.0, early_stop_window=1)
    assert again.resume() == 1
    assert len(again.train()) == 1 and again.stop_reason == tr.stop_reason  # stays stopped


def test_gdpo_advantage_path(tiny_lm_path, tmp_path):
    _, tr = make(tiny_lm_path, tmp_path, steps=1, advantage="gdpo")
    assert len(tr.train()) == 1


@pytest.mark.parametrize(
    "bad,match",
    [
        ({"group_size": 1}, "group_size"),
        ({"loss_agg": "mean"}, "valid: bnpo"),
        ({"advantage": "ppo"}, "valid: gdpo"),
        ({"ratio_level": "item"}, "needs a per-segment advantage"),
    ],
)
def test_config_validation(bad, match):
    with pytest.raises((ValueError, KeyError), match=match):
        GRPOConfig(**bad)


@pytest.mark.parametrize("agg", ["dapo", "grpo"])
def test_grad_accumulation_equals_one_big_minibatch(tiny_lm_path, tmp_path, agg):
    pol_a, tr_a = make(
        tiny_lm_path, tmp_path / "a", steps=1, minibatch_size=8, grad_accum=1, loss_agg=agg
    )
    pol_b, tr_b = make(
        tiny_lm_path, tmp_path / "b", steps=1, minibatch_size=4, grad_accum=2, loss_agg=agg
    )
    tr_a.train()
    tr_b.train()
    a, b = trainable(pol_a), trainable(pol_b)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5)


def test_several_optimizer_steps_per_batch_go_off_policy(tiny_lm_path, tmp_path):
    _, tr = make(tiny_lm_path, tmp_path, steps=1, minibatch_size=2, epochs=2)
    m = tr.train()[-1]
    assert m["loss/ratio_mean"] != pytest.approx(1.0, abs=1e-7)
    assert m["loss/approx_kl"] > 0
def test_conflicting_shared_state_fails_loudly(tiny_lm_path, tmp_path):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    Accelerator(cpu=True, mixed_precision="bf16")  # e.g. what TRL's trainer leaves behind
    try:
        from tests.training.test_grpo import make
        with pytest.raises(ValueError):
            make(tiny_lm_path, tmp_path, steps=1)
    finally:
        AcceleratorState._reset_state(True)
        GradientState._reset_state()


def test_sharding_engines_are_refused_with_a_clear_error():
    from safegrpo.training.grpo import check_engine

    for ok in (("NO", None), ("MULTI_CPU", None), ("MULTI_GPU", None), ("DEEPSPEED", 2)):
        check_engine(*ok)
    with pytest.raises(ValueError, match="FSDP shards the weights"):
        check_engine("FSDP")
    with pytest.raises(ValueError, match="ZeRO-3"):
        check_engine("DEEPSPEED", 3)


def test_full_finetune_reference_is_the_starting_policy_after_resume(tiny_lm_path, tmp_path):
    """lora.r = 0 with beta > 0: the frozen reference must be the starting weights, not the
    checkpoint a resumed run loads (the KL would anchor to the wrong policy)."""
    kw = {"lora_r": 0, "beta": 0.5, "lr": 3e-2}
    pol_a, tr_a = make(tiny_lm_path, tmp_path / "a", steps=3, **kw)
    tr_a.train()
    _, tr_b = make(tiny_lm_path, tmp_path / "b", steps=1, **kw)
    tr_b.train()
    pol_c, tr_c = make(tiny_lm_path, tmp_path / "b", steps=3, **kw)
    assert tr_c.resume() == 1
    tr_c.train()
    a, c = trainable(pol_a), trainable(pol_c)
    assert all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("agg", ["bnpo", "dapo", "grpo", "dr_grpo"])
def test_accumulated_minibatches_of_unequal_length_equal_one_batch(tiny_lm_path, tmp_path, agg):
    """Completions of different lengths in each minibatch: accumulation must weight bnpo
    minibatches by tokens (grpo / dr_grpo by rows) to reproduce the one-batch update."""
    from dataclasses import replace

    pol_a, tr_a = make(tiny_lm_path, tmp_path / "a", minibatch_size=8, grad_accum=1, loss_agg=agg)
    pol_b, tr_b = make(tiny_lm_path, tmp_path / "b", minibatch_size=4, grad_accum=2, loss_agg=agg)
    ro = pol_a.rollout(["Prompt: a\nJSON:", "Prompt: b\nJSON:"], 4, seed=0, need_ref=False)
    lengths = torch.tensor([1, 8, 2, 7, 8, 6, 8, 3])
    mask = (torch.arange(ro.completion_mask.shape[1]) < lengths[:, None]).long()
    ro = replace(ro, completion_mask=mask, old_logprobs=ro.old_logprobs * mask)
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 0.3, -0.3])
    for tr in (tr_a, tr_b):
        tr.optimize(ro, adv, torch.ones(8, dtype=torch.bool))
    a, b = trainable(pol_a), trainable(pol_b)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5)
