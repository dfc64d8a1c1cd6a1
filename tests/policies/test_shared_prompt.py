"""Each distinct prompt run once: the same log-probs, entropies and LoRA gradients as the plain
forward, and the plain forward wherever sharing would change the result."""

import torch

from safegrpo.policies.lm import LMPolicy, LMPolicyConfig, LoRAConfig
from safegrpo.policies.lm_ops import token_logprobs
from safegrpo.policies.shared_prompt import can_share, shared_prompt_logprobs

PROMPTS = ["Prompt: a cat\nJSON:", "Prompt: a man with a knife in a dark alley at night\nJSON:",
           "Prompt: knife\nJSON:"]


def _batch(tiny_lm_path, **lora):
    pol = LMPolicy(LMPolicyConfig(model=tiny_lm_path, lora=LoRAConfig(r=4, **lora),
                                  max_new_tokens=10, shared_prompt_logprobs=False))
    for p in pol.trainable_parameters():  # a non-zero adapter, so gradients reach both factors
        torch.nn.init.normal_(p, std=0.05)
    ro = pol.rollout(PROMPTS, 3, seed=0, need_ref=False, need_old=False)
    keep = torch.tensor([0, 1, 3, 4, 5, 8])  # a minibatch: partial groups, out of group order
    keep = keep[torch.tensor([3, 0, 5, 1, 2, 4])]
    return pol, ro.prompt_ids[keep], ro.prompt_mask[keep], ro.completion_ids[keep], \
        ro.completion_mask[keep]


def _plain(model, pids, pmask, cids, cmask):
    ids, mask = torch.cat([pids, cids], 1), torch.cat([pmask, cmask], 1)
    return token_logprobs(model, ids, mask, cids.shape[1], 0.7, True)


def test_shared_logprobs_entropy_and_grads_equal_the_plain_forward(tiny_lm_path):
    pol, pids, pmask, cids, cmask = _batch(tiny_lm_path)
    assert pmask.min() == 0  # prompts of different lengths: left padding is exercised
    model = pol.model.train()
    assert can_share(model, pids)
    results = []
    for fn in (_plain, lambda *a: shared_prompt_logprobs(*a, temperature=0.7, with_entropy=True)):
        model.zero_grad(set_to_none=True)
        logp, ent = fn(model, pids, pmask, cids, cmask)
        (logp * cmask * torch.linspace(-1, 1, logp.shape[1])).sum().backward()
        grads = [p.grad.clone() for p in pol.trainable_parameters()]
        results.append((logp.detach(), ent.detach(), grads))
    (lp0, e0, g0), (lp1, e1, g1) = results
    m = cmask.bool()
    torch.testing.assert_close(lp1[m], lp0[m], atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(e1[m], e0[m], atol=2e-5, rtol=1e-4)
    assert any(g.abs().max() > 1e-4 for g in g0)
    for a, b in zip(g1, g0, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-3)


def test_policy_uses_the_shared_path_only_where_it_is_exact(tiny_lm_path, monkeypatch):
    pol, pids, pmask, cids, cmask = _batch(tiny_lm_path)
    calls = []
    import safegrpo.policies.lm as lm

    monkeypatch.setattr(lm, "shared_prompt_logprobs",
                        lambda *a, **k: calls.append(1) or shared_prompt_logprobs(*a, **k))
    pol.logprobs(pids, pmask, cids, cmask)
    assert calls == []  # switched off in the config
    object.__setattr__(pol.cfg, "shared_prompt_logprobs", True)
    pol.logprobs(pids, pmask, cids, cmask)
    assert calls == [1]
    pol.logprobs(pids[:1], pmask[:1], cids[:1], cmask[:1])  # one row: nothing to share
    distinct = torch.unique(pids, dim=0, return_inverse=True)[1]
    first = torch.tensor([int((distinct == u).nonzero()[0]) for u in distinct.unique()])
    pol.logprobs(pids[first], pmask[first], cids[first], cmask[first])  # no repeated prompt
    assert calls == [1]


def test_dropout_and_checkpointing_fall_back_to_the_plain_forward(tiny_lm_path):
    pol, pids, *_ = _batch(tiny_lm_path, dropout=0.1)
    assert not can_share(pol.model.train(), pids)  # one dropout mask would serve the group
    assert can_share(pol.model.eval(), pids)
    pol2, pids2, *_ = _batch(tiny_lm_path)
    pol2.model.gradient_checkpointing_enable()
    assert not can_share(pol2.model.train(), pids2)


def test_gathering_the_shared_cache_is_deterministic_on_two_threads():
    # advanced indexing's backward (index_put_ with accumulate) sums in a varying order on a
    # multi-threaded CPU; runs of one seed then drift apart (the tiny demo did by step 1)
    from transformers import DynamicCache

    from safegrpo.policies.shared_prompt import _select_rows

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        gen = torch.Generator().manual_seed(0)
        k = torch.randn(4, 4, 60, 32, generator=gen, requires_grad=True)
        idx = torch.arange(4).repeat_interleave(8)[torch.randperm(32, generator=gen)]
        w = torch.randn(32, 4, 60, 32, generator=gen)
        grads = []
        for _ in range(30):
            k.grad = None
            cache = DynamicCache()
            cache.update(k * 1.0, k * 2.0, 0)
            _select_rows(cache, idx)
            ((cache.layers[0].keys + cache.layers[0].values) * w).sum().backward()
            grads.append(k.grad.clone())
        assert all(torch.equal(grads[0], g) for g in grads[1:])
        torch.testing.assert_close(grads[0], 3 * w.new_zeros(4, 4, 60, 32).index_add_(0, idx, w))
    finally:
        torch.set_num_threads(threads)
