"""DDIM step with the log-probability of the stochastic transition (eta > 0).

Patched copy of the maths of ``diffusers.DDIMScheduler.step`` (diffusers 0.42). What changed vs
upstream:
- returns the transition mean and std as well as the sample, plus ``log_prob`` of
  ``prev_sample`` under N(mean, std^2), so the same function both samples (prev_sample=None) and
  re-scores a recorded trajectory (prev_sample given) for the GRPO ratio;
- ``timestep`` may be a per-sample tensor [B] (timestep subsampling mixes steps in a batch);
- no thresholding / ``use_clipped_model_output`` paths (``clip_sample`` is kept);
- a deterministic transition (std = 0: the last step, at t = 0, whose previous alpha is
  ``alphas_cumprod[0]`` or 1 depending on ``set_alpha_to_one``) gets log_prob 0.
log_prob is the *mean* over C, H, W of the per-dimension Gaussian log density (as DDPO,
arXiv:2305.13301), so ratios stay well scaled at any resolution.
``tests/policies/test_diffusion.py`` checks the sample equals ``DDIMScheduler.step(...,
eta, variance_noise=...)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _bcast(x: Tensor, like: Tensor) -> Tensor:
    return x.view(-1, *[1] * (like.dim() - 1)) if x.dim() == 1 else x


def _alphas(scheduler, t: Tensor) -> tuple[Tensor, Tensor]:
    """timesteps t [N] -> (alpha_cumprod at t, at the previous inference step) [N] each."""
    prev_t = t - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    acp = scheduler.alphas_cumprod.to(t.device)
    a_prev = torch.where(prev_t >= 0, acp[prev_t.clamp(min=0)],
                         scheduler.final_alpha_cumprod.to(t.device))
    return acp[t], a_prev


def transition_std(scheduler, eta: float) -> Tensor:
    """Std of each DDIM transition of ``scheduler.timesteps`` at this eta -> [S].

    0 marks a deterministic step (the last one when it lands on t = 0, whatever
    ``set_alpha_to_one``): it has no log-prob, so GRPO gains nothing from training on it."""
    a_t, a_prev = _alphas(scheduler, scheduler.timesteps.long())
    return eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).clamp(min=0).sqrt()


def ddim_step_with_logprob(scheduler, model_output: Tensor, timestep: int | Tensor,
                           sample: Tensor, *, eta: float, prev_sample: Tensor | None = None,
                           variance_noise: Tensor | None = None,
                           generator: torch.Generator | None = None,
                           ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """model_output, sample [B, C, H, W]; timestep int or [B].

    Returns (prev_sample [B, C, H, W], log_prob [B], mean [B, C, H, W], std [B, 1, 1, 1])."""
    if eta <= 0:
        raise ValueError("eta must be > 0: with eta = 0 DDIM is deterministic and has no log-prob")
    cfg = scheduler.config
    t = torch.as_tensor(timestep, device=sample.device).long()
    t = t.expand(sample.shape[0]) if t.dim() == 0 else t
    a_t, a_prev = _alphas(scheduler, t)
    a_t, a_prev = _bcast(a_t, sample).to(sample.dtype), _bcast(a_prev, sample).to(sample.dtype)
    b_t = 1 - a_t
    if cfg.prediction_type == "epsilon":
        x0 = (sample - b_t.sqrt() * model_output) / a_t.sqrt()
        eps = model_output
    elif cfg.prediction_type == "sample":
        x0 = model_output
        eps = (sample - a_t.sqrt() * x0) / b_t.sqrt()
    elif cfg.prediction_type == "v_prediction":
        x0 = a_t.sqrt() * sample - b_t.sqrt() * model_output
        eps = a_t.sqrt() * model_output + b_t.sqrt() * sample
    else:
        raise ValueError(f"unsupported prediction_type {cfg.prediction_type!r}")
    if cfg.clip_sample:
        x0 = x0.clamp(-cfg.clip_sample_range, cfg.clip_sample_range)
    variance = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)
    std = eta * variance.sqrt()
    mean = a_prev.sqrt() * x0 + (1 - a_prev - std**2).clamp(min=0).sqrt() * eps
    if prev_sample is None:
        if variance_noise is None:
            variance_noise = torch.randn(model_output.shape, generator=generator,
                                         device=model_output.device, dtype=model_output.dtype)
        prev_sample = mean + std * variance_noise
    std_c = std.clamp(min=1e-12)
    logp = (-((prev_sample.detach() - mean) ** 2) / (2 * std_c**2) - torch.log(std_c)
            - 0.5 * math.log(2 * math.pi))
    logp = logp.mean(dim=tuple(range(1, logp.dim())))
    # std == 0 (the last step at t = 0) is a deterministic transition: log-prob 0,
    # so its ratio is 1 and it carries no policy gradient.
    logp = torch.where(std.flatten() > 0, logp, torch.zeros_like(logp))
    return prev_sample, logp, mean, std


def gaussian_mean_kl(mean: Tensor, ref_mean: Tensor, std: Tensor) -> Tensor:
    """KL(N(mean, std^2) || N(ref_mean, std^2)) per sample [B], averaged over dims like log_prob.

    mean, ref_mean [B, C, H, W]; std [B, 1, 1, 1]. Rows with std == 0 (deterministic last step)
    get 0, like their log-prob: both policies put a point mass there, so the Gaussian KL is
    undefined and the transition carries no gradient anyway."""
    kl = (mean - ref_mean) ** 2 / (2 * std.clamp(min=1e-12) ** 2)
    kl = kl.mean(dim=tuple(range(1, kl.dim())))
    return torch.where(std.flatten() > 0, kl, torch.zeros_like(kl))
