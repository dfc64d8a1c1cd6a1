import json
from dataclasses import replace

import pytest
import torch

from safegrpo.core.types import ScoredBatch
from safegrpo.policies.diffusion.lora_format import LORA_FILE
from safegrpo.policies.diffusion.policy import DiffusionPolicy, DiffusionPolicyConfig
from safegrpo.policies.diffusion.tiny import build_tiny_pipeline
from safegrpo.policies.lm import LoRAConfig
from safegrpo.training.diffusion_grpo import DiffusionGRPOConfig, DiffusionGRPOTrainer


class RednessTask:
    """Reward = minus the mean red-channel excess of the image (a stand-in for a safety reward)."""

    def sample_prompts(self, step, n, rank=0):
        return [f"a red square {i}" for i in range(n)]

    def score(self, prompts, images, group_ids):
        red = (images[:, 0] - images[:, 1:].mean(1)).mean(dim=(1, 2))
        return ScoredBatch(total=-red, components={"not_red": -red})


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return str(build_tiny_pipeline(tmp_path_factory.mktemp("pipe"),
                                   ["a red square", "a blue circle"] * 20))


def make(pipe, out, lora=None, num_steps=3, **kw):
    pcfg = DiffusionPolicyConfig(model=pipe, num_steps=num_steps)
    pol = DiffusionPolicy(pcfg if lora is None else replace(pcfg, lora=lora))
    cfg = DiffusionGRPOConfig(**{"steps": 2, "prompts_per_step": 2, "group_size": 2,
                                 "minibatch_size": 4, "lr": 1e-2, "clip_range": 0.2,
                                 "out_dir": str(out), "save_every": 1, "report_to": "none", **kw})
    return pol, DiffusionGRPOTrainer(pol, RednessTask(), cfg)


def lora(pol):
    return {k: v.detach().clone() for k, v in pol.unet.named_parameters() if v.requires_grad}


def test_two_step_smoke_with_kl_and_subsampling(pipe, tmp_path):
    pol, tr = make(pipe, tmp_path, beta=0.1, timestep_fraction=0.5, epochs=2)
    before = lora(pol)
    hist = tr.train()
    assert len(hist) == 2
    for k in ("reward/total", "reward/not_red", "loss/kl", "loss/clipfrac", "loss/approx_kl",
              "adv/zero_std_frac", "perf/images_per_s"):
        assert k in hist[-1], k
    after = lora(pol)
    assert any((before[k] - after[k]).abs().max() > 0 for k in before)
    assert (tmp_path / "checkpoints" / "step_000002" / "policy" / LORA_FILE).exists()
    assert [json.loads(x)["step"]
            for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [0, 1]


def test_resume_is_exact(pipe, tmp_path):
    pa, ta = make(pipe, tmp_path / "a", steps=3)
    ta.train()
    _, tb = make(pipe, tmp_path / "b", steps=1)
    tb.train()
    pc, tc = make(pipe, tmp_path / "b", steps=3)
    assert tc.resume() == 1
    tc.train()
    a, c = lora(pa), lora(pc)
    for k in a:
        torch.testing.assert_close(a[k], c[k], atol=1e-6, rtol=1e-6)


def test_subsampling_pairs_cover_fraction(pipe, tmp_path):
    _, tr = make(pipe, tmp_path, timestep_fraction=0.5)
    rows, js = tr.pairs(4, torch.arange(6), step=0, epoch=0)
    assert rows.numel() == 4 * 3
    for r in range(4):
        assert len(set(js[rows == r].tolist())) == 3
    rows, js = tr.pairs(2, torch.tensor([0, 2]), step=0, epoch=0)
    assert rows.tolist().count(0) == rows.tolist().count(1) == 1 and set(js.tolist()) <= {0, 2}


@pytest.mark.parametrize("alpha_to_one", [True, False])
def test_deterministic_last_step_is_never_trained(tmp_path, alpha_to_one):
    """The last DDIM step lands on t = 0 and has std 0 whether the final alpha is 1 or
    alphas_cumprod[0] (log-prob 0, no gradient), so the trainer never draws it."""
    from diffusers import DDIMScheduler

    from safegrpo.policies.diffusion.ddim_logprob import transition_std

    path = build_tiny_pipeline(tmp_path / "p", ["a red square"] * 20)
    sched = DDIMScheduler.from_pretrained(path / "scheduler", set_alpha_to_one=alpha_to_one)
    sched.save_pretrained(path / "scheduler")
    pol, tr = make(str(path), tmp_path / "run")
    assert pol.scheduler.timesteps.tolist()[-1] == 0
    std = transition_std(pol.scheduler, eta=1.0)
    assert std.shape == (3,) and std[-1] == 0 and (std[:-1] > 0).all()
    assert tr.train_steps.tolist() == [0, 1]
    ro = pol.rollout(["a red square"], 2, seed=0)
    assert (ro.log_probs[:, -1] == 0).all() and (ro.log_probs[:, :-1] != 0).all()
    _, js = tr.pairs(2, tr.train_steps, step=0, epoch=0)
    assert 2 not in js.tolist()


def test_config_validation():
    with pytest.raises(ValueError, match="timestep_fraction"):
        DiffusionGRPOConfig(timestep_fraction=0.0)


@pytest.mark.parametrize("lora", [LoRAConfig(r=0), LoRAConfig(r=4)],
                         ids=["full-unet", "lora-all-linear"])
def test_resume_with_kl_equals_a_straight_run(pipe, tmp_path, lora):
    """beta > 0 and resume: with lora.r = 0 the frozen reference must be the starting UNet (not the
    checkpoint); with LoRA, the LM default target 'all-linear' must train the UNet's attention
    projections (it used to raise NoMatchingPeftModuleError), save and resume exactly."""
    kw = {"lora": lora, "num_steps": 2, "beta": 1.0, "prompts_per_step": 1, "minibatch_size": 2}
    pa, ta = make(pipe, tmp_path / "a", steps=2, **kw)
    before = {k: v.detach().clone() for k, v in pa.unet.named_parameters()}
    ta.train()
    _, tb = make(pipe, tmp_path / "b", steps=1, **kw)
    tb.train()
    pc, tc = make(pipe, tmp_path / "b", steps=2, **kw)
    assert tc.resume() == 1
    tc.train()
    a, c = dict(pa.unet.named_parameters()), dict(pc.unet.named_parameters())
    assert all(torch.equal(a[k], c[k]) for k in a)
    moved = [k for k in a if not torch.equal(a[k], before[k])]
    assert moved
    if lora.r > 0:
        assert all("lora" in k for k in moved)
        assert {m.split(".lora")[0].rsplit(".", 1)[-1] for m in moved} >= {"to_q", "to_k", "to_v"}
        assert (tmp_path / "b" / "checkpoints" / "step_000002" / "policy" / LORA_FILE).exists()
