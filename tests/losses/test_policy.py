import math

import pytest
import torch

from safegrpo.losses import (
    AGGREGATIONS,
    KL_ESTIMATORS,
    aggregate,
    clipped_surrogate,
    grpo_loss,
    kl_estimate,
)


def test_clipped_surrogate_hand_computed():
    old = torch.zeros(1, 3)
    logp = torch.log(torch.tensor([[1.5, 0.7, 1.0]]))
    mask = torch.ones(1, 3)
    loss, ratio, active = clipped_surrogate(logp, old, torch.tensor([2.0]), mask, eps_low=0.2)
    # A>0: min(1.5*2, 1.2*2)=2.4 ; min(0.7*2, 0.8*2)=1.4 ; 2
    torch.testing.assert_close(loss, torch.tensor([[-2.4, -1.4, -2.0]]))
    assert active.tolist() == [[True, False, False]]
    loss_n, _, active_n = clipped_surrogate(logp, old, torch.tensor([-1.0]), mask, eps_low=0.2)
    # A<0: min(-1.5, -1.2) = -1.5 ; min(-0.7, -0.8) = -0.8 ; -1
    torch.testing.assert_close(loss_n, torch.tensor([[1.5, 0.8, 1.0]]))
    assert active_n.tolist() == [[False, True, False]]


def test_asymmetric_clip():
    old = torch.zeros(1, 1)
    logp = torch.log(torch.tensor([[1.25]]))
    loss, _, _ = clipped_surrogate(logp, old, torch.tensor([1.0]), torch.ones(1, 1), eps_low=0.2,
                                   eps_high=0.28)
    torch.testing.assert_close(loss, torch.tensor([[-1.25]]))  # inside clip-higher window


def test_sequence_ratio_is_geometric_mean():
    old = torch.zeros(1, 3)
    logp = torch.tensor([[0.1, 0.2, 5.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    _, ratio, _ = clipped_surrogate(logp, old, torch.tensor([1.0]), mask, ratio_level="sequence")
    torch.testing.assert_close(ratio, torch.full((1, 3), math.exp(0.15)))


def test_aggregations_hand_computed():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    m = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    assert aggregate("grpo", x, m).item() == pytest.approx((2.0 + 4.0) / 2)
    assert aggregate("bnpo", x, m).item() == pytest.approx(10.0 / 4)
    assert aggregate("dapo", x, m, num_tokens=8).item() == pytest.approx(10.0 / 8)
    assert aggregate("dr_grpo", x, m, max_len=5).item() == pytest.approx(10.0 / 10)
    assert set(AGGREGATIONS.names()) == {"grpo", "bnpo", "dapo", "dr_grpo"}


def test_dapo_microbatch_accumulation_equals_full_batch():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(6, 5, generator=gen)
    m = (torch.rand(6, 5, generator=gen) > 0.3).float()
    full = aggregate("dapo", x, m)
    n = m.sum()
    acc = (aggregate("dapo", x[:2], m[:2], num_tokens=n)
           + aggregate("dapo", x[2:], m[2:], num_tokens=n))
    torch.testing.assert_close(full, acc)


def test_kl_estimators_hand_computed_and_nonnegative():
    logp = torch.tensor([[math.log(0.5)]])
    ref = torch.tensor([[math.log(0.25)]])
    x = math.log(0.25) - math.log(0.5)
    assert kl_estimate("k1", logp, ref).item() == pytest.approx(-x)
    assert kl_estimate("k2", logp, ref).item() == pytest.approx(0.5 * x * x)
    assert kl_estimate("k3", logp, ref).item() == pytest.approx(math.exp(x) - x - 1)
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(50, 7, generator=gen), torch.randn(50, 7, generator=gen)
    assert (kl_estimate("k3", a, b) >= 0).all()
    with pytest.raises(KeyError, match="valid: k1, k2, k3"):
        KL_ESTIMATORS.get("k4")


def test_k3_is_unbiased_for_true_kl():
    # pi = Bernoulli-like categorical; E_pi[k3] == KL(pi||ref)
    p = torch.tensor([0.7, 0.2, 0.1])
    q = torch.tensor([0.3, 0.3, 0.4])
    true_kl = (p * (p / q).log()).sum()
    est = (p * kl_estimate("k3", p.log(), q.log())).sum()
    torch.testing.assert_close(est, true_kl)


def test_grpo_loss_gradient_direction_and_metrics():
    logp = torch.zeros(2, 3, requires_grad=True)
    out = grpo_loss(logp, torch.zeros(2, 3), torch.tensor([1.0, -1.0]), torch.ones(2, 3),
                    ref_logp=torch.zeros(2, 3), beta=0.1)
    out.loss.backward()
    assert (logp.grad[0] < 0).all() and (logp.grad[1] > 0).all()  # raise good, lower bad
    assert out.metrics["clipfrac"] == 0.0 and out.metrics["kl"] == 0.0
    with pytest.raises(ValueError, match="ref_logp"):
        grpo_loss(logp, logp.detach(), torch.ones(2), torch.ones(2, 3), beta=0.1)
