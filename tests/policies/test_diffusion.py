import pytest
import torch
from diffusers import DDIMScheduler

from safegrpo.policies.diffusion.ddim_logprob import ddim_step_with_logprob, gaussian_mean_kl
from safegrpo.policies.diffusion.policy import DiffusionPolicy, DiffusionPolicyConfig
from safegrpo.policies.diffusion.tiny import build_tiny_pipeline
from safegrpo.policies.lm import LoRAConfig


@pytest.mark.parametrize("pred", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("eta", [0.3, 1.0])
def test_step_matches_diffusers_ddim_exactly(pred, eta):
    s = DDIMScheduler(num_train_timesteps=1000, prediction_type=pred, clip_sample=pred == "sample")
    s.set_timesteps(8)
    g = torch.Generator().manual_seed(0)
    x, out, noise = (torch.randn(3, 4, 8, 8, generator=g) for _ in range(3))
    for t in s.timesteps:
        ref = s.step(out, t, x, eta=eta, variance_noise=noise).prev_sample
        mine, lp, mean, std = ddim_step_with_logprob(s, out, t, x, eta=eta, variance_noise=noise)
        torch.testing.assert_close(mine, ref, atol=1e-6, rtol=1e-5)
        # log-prob = mean over dims of N(noise * std; 0, std^2) -> closed form from the noise
        if std.max() > 0:
            exp = (-(noise**2) / 2 - torch.log(std)
                   - 0.5 * torch.log(torch.tensor(2 * torch.pi))).mean(dim=(1, 2, 3))
            torch.testing.assert_close(lp, exp, atol=1e-4, rtol=1e-4)
        else:  # deterministic last step (set_alpha_to_one): log-prob 0 by convention
            assert (lp == 0).all()
        # re-scoring the produced sample gives the same log-prob
        _, lp2, _, _ = ddim_step_with_logprob(s, out, t, x, eta=eta, prev_sample=mine)
        torch.testing.assert_close(lp2, lp)


def test_per_sample_timesteps_equal_scalar_calls():
    s = DDIMScheduler(num_train_timesteps=1000)
    s.set_timesteps(10)
    g = torch.Generator().manual_seed(1)
    x, out, noise = (torch.randn(2, 3, 4, 4, generator=g) for _ in range(3))
    ts = torch.tensor([int(s.timesteps[0]), int(s.timesteps[5])])
    both, lp, _, _ = ddim_step_with_logprob(s, out, ts, x, eta=1.0, variance_noise=noise)
    for i in range(2):
        one, lpi, _, _ = ddim_step_with_logprob(s, out[i:i + 1], int(ts[i]), x[i:i + 1], eta=1.0,
                                                variance_noise=noise[i:i + 1])
        torch.testing.assert_close(both[i:i + 1], one)
        torch.testing.assert_close(lp[i:i + 1], lpi)
    with pytest.raises(ValueError, match="eta must be > 0"):
        ddim_step_with_logprob(s, out, ts, x, eta=0.0)


def test_gaussian_mean_kl_hand_computed():
    m, r = torch.zeros(1, 2), torch.tensor([[1.0, 3.0]])
    assert (gaussian_mean_kl(m, r, torch.tensor([[2.0]])).item()
            == pytest.approx((1 / 8 + 9 / 8) / 2))
    # a deterministic (std = 0) row contributes 0, not mean^2 / 1e-24
    kl = gaussian_mean_kl(torch.zeros(2, 2), torch.ones(2, 2), torch.tensor([[2.0], [0.0]]))
    torch.testing.assert_close(kl, torch.tensor([1 / 8, 0.0]))


@pytest.fixture(scope="module")
def tiny_pipe(tmp_path_factory):
    return str(build_tiny_pipeline(tmp_path_factory.mktemp("pipe"),
                                   ["a red square", "a blue circle"] * 20))


def test_rollout_records_trajectory_and_rescoring_matches(tiny_pipe):
    pol = DiffusionPolicy(DiffusionPolicyConfig(model=tiny_pipe, num_steps=4, eta=1.0,
                                                guidance_scale=2.0))
    ro = pol.rollout(["a red square", "a blue circle"], 3, seed=0)
    assert ro.latents.shape == (6, 5, 3, 16, 16) and ro.log_probs.shape == (6, 4)
    assert ro.images.shape == (6, 3, 16, 16) and 0 <= ro.images.min() and ro.images.max() <= 1
    assert ro.group_ids.tolist() == [0, 0, 0, 1, 1, 1]
    idx = torch.arange(6)
    for j in range(4):
        lp, _, _ = pol.step_logprob(pol.unet, ro, idx, torch.full((6,), j))
        torch.testing.assert_close(lp, ro.log_probs[:, j], atol=1e-4, rtol=1e-4)
    # mixed timesteps in one batch
    lp, _, _ = pol.step_logprob(pol.unet, ro, idx, torch.tensor([0, 1, 2, 3, 0, 1]))
    torch.testing.assert_close(lp, ro.log_probs[idx, torch.tensor([0, 1, 2, 3, 0, 1])], atol=1e-4,
                               rtol=1e-4)


def test_shared_noise_reference_and_determinism(tiny_pipe):
    pol = DiffusionPolicy(DiffusionPolicyConfig(model=tiny_pipe, num_steps=3, shared_noise=True))
    a = pol.rollout(["a red square"], 2, seed=5)
    b = pol.rollout(["a red square"], 2, seed=5)
    torch.testing.assert_close(a.latents[0, 0], a.latents[1, 0])  # shared x_T within the group
    torch.testing.assert_close(a.latents, b.latents)  # same seed, same trajectories
    idx, j = torch.arange(2), torch.zeros(2, dtype=torch.long)
    with torch.no_grad():
        for p in pol.trainable_parameters():
            p.add_(0.05)
    new, _, _ = pol.step_logprob(pol.unet, a, idx, j)
    with pol.reference() as ref:
        old, _, _ = pol.step_logprob(ref, a, idx, j)
    torch.testing.assert_close(old, a.log_probs[:, 0], atol=1e-4, rtol=1e-4)
    assert (new - old).abs().max() > 1e-4
    full = DiffusionPolicy(DiffusionPolicyConfig(model=tiny_pipe, num_steps=2,
                                                 lora=LoRAConfig(r=0)))
    assert len(full.trainable_parameters()) > len(pol.trainable_parameters())


def test_latent_pipeline_with_vae_loads_samples_and_round_trips_lora(tmp_path):
    """Stable-Diffusion layout (vae/ + 4-channel latents at half resolution) loads unchanged."""
    path = build_tiny_pipeline(tmp_path / "sd", ["a red square", "a blue circle"] * 20, vae=True)
    cfg = DiffusionPolicyConfig(model=str(path), num_steps=3, eta=1.0)
    pol = DiffusionPolicy(cfg)
    assert pol.vae is not None and pol.latent_shape() == (4, 8, 8)
    ro = pol.rollout(["a red square"], 2, seed=1)
    assert ro.latents.shape == (2, 4, 4, 8, 8) and ro.images.shape == (2, 3, 16, 16)
    assert 0 <= ro.images.min() and ro.images.max() <= 1
    lp, _, _ = pol.step_logprob(pol.unet, ro, torch.arange(2), torch.ones(2, dtype=torch.long))
    torch.testing.assert_close(lp, ro.log_probs[:, 1], atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        for p in pol.trainable_parameters():
            p.add_(0.01)
    pol.save(tmp_path / "ckpt")
    again = DiffusionPolicy(cfg)
    again.load_trainable(tmp_path / "ckpt")
    lp2, _, _ = again.step_logprob(again.unet, ro, torch.arange(2), torch.ones(2, dtype=torch.long))
    lp1, _, _ = pol.step_logprob(pol.unet, ro, torch.arange(2), torch.ones(2, dtype=torch.long))
    torch.testing.assert_close(lp2, lp1, atol=1e-5, rtol=1e-5)
    assert (lp1 - ro.log_probs[:, 1]).abs().max() > 1e-5  # the saved update is not a no-op


@pytest.mark.parametrize("damage", ["no weights", "truncated weights", "bad config"])
def test_a_broken_vae_is_an_error_not_pixel_space(tmp_path, damage):
    """Only a pipeline without vae/ is pixel space; a vae/ that fails to load must not silently
    turn latents into "images"."""
    path = build_tiny_pipeline(tmp_path / "sd", ["a red square"] * 20, vae=True)
    weights = next((path / "vae").glob("diffusion_pytorch_model.*"))
    if damage == "no weights":
        weights.unlink()
    elif damage == "truncated weights":
        weights.write_bytes(weights.read_bytes()[:1000])
    else:
        (path / "vae" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="has a VAE .vae/. but it failed to load"):
        DiffusionPolicy(DiffusionPolicyConfig(model=str(path), num_steps=2))


def test_latent_unet_without_vae_is_refused(tmp_path):
    import shutil

    path = build_tiny_pipeline(tmp_path / "sd", ["a red square"] * 20, vae=True)
    shutil.rmtree(path / "vae")  # a 4-channel latent UNet left without its decoder
    with pytest.raises(ValueError, match="UNet takes 4 channels but the pipeline has no VAE"):
        DiffusionPolicy(DiffusionPolicyConfig(model=str(path), num_steps=2))
