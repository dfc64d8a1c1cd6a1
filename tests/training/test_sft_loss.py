"""SFT's trimmed LM head computes exactly the full-logits cross-entropy."""

import torch
import torch.nn.functional as F

from safegrpo.training.sft import collate, sft_loss


def full_loss(model, ids, mask, labels):
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                           ignore_index=-100)


def test_trimmed_head_equals_full_logits_loss_and_gradients(tiny_lm_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_lm_path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(tiny_lm_path)
    pairs = [("Prompt: a cat\nJSON:", '{"decision": "allow"}'),
             ("Prompt: a much longer prompt about a dog in a park\nJSON:",
              '{"decision": "reject"}'),
             ("Prompt: x\nJSON:", '{"decision": "transform", "rewrite": "a calm lake"}')]
    ids, mask, labels = collate(tok, pairs, max_prompt_tokens=64)
    assert (labels[:, 1:] != -100).any(0).nonzero()[0] > 0  # the trim really drops positions
    got = sft_loss(model, ids, mask, labels)
    got.backward()
    g_got = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    ref = full_loss(model, ids, mask, labels)
    ref.backward()
    torch.testing.assert_close(got, ref)
    for a, p in zip(g_got, model.parameters(), strict=True):
        torch.testing.assert_close(a, p.grad, atol=1e-6, rtol=1e-5)
