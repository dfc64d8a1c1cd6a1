"""Per-token KL(pi || ref) estimators from log-probs of samples drawn from pi.

Schulman, "Approximating KL divergence" (2020): with log-ratio x = log ref - log pi,
k1 = -x (unbiased, high variance, can be negative), k2 = x^2 / 2 (biased, low variance),
k3 = exp(x) - x - 1 (unbiased, always >= 0; GRPO's choice, arXiv:2402.03300 eq. 4).
"""

from __future__ import annotations

import torch
from torch import Tensor

from safegrpo.core.registry import Registry

KL_ESTIMATORS: Registry = Registry("kl estimator")


@KL_ESTIMATORS.register("k1")
def k1(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """logp, ref_logp [B, T] -> [B, T]."""
    return logp - ref_logp


@KL_ESTIMATORS.register("k2")
def k2(logp: Tensor, ref_logp: Tensor) -> Tensor:
    return 0.5 * (ref_logp - logp) ** 2


@KL_ESTIMATORS.register("k3")
def k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    # Clamp the log-ratio so exp() cannot overflow on a diverged token.
    x = (ref_logp - logp).clamp(-20.0, 20.0)
    return torch.exp(x) - x - 1.0


def kl_estimate(name: str, logp: Tensor, ref_logp: Tensor) -> Tensor:
    return KL_ESTIMATORS.get(name)(logp, ref_logp)
