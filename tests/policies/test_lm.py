import pytest
import torch

from safegrpo.policies.lm import LMPolicy, LMPolicyConfig, LoRAConfig, wrap_lora
from safegrpo.training.sft import SFTConfig, sft_train

PROMPTS = ["Prompt: a cat\nJSON:", "Prompt: a man with a knife in a dark alley\nJSON:"]


def test_rollout_shapes_mask_and_logprobs_match_generate_scores(tiny_lm_path):
    pol = LMPolicy(LMPolicyConfig(model=tiny_lm_path, lora=LoRAConfig(r=4), max_new_tokens=12))
    ro = pol.rollout(PROMPTS, 3, seed=0, need_ref=True)
    assert ro.completion_ids.shape[0] == 6 and ro.group_ids.tolist() == [0, 0, 0, 1, 1, 1]
    # mask: ones up to and including the first EOS, zeros after
    eos = pol.tokenizer.eos_token_id
    for row, m in zip(ro.completion_ids, ro.completion_mask, strict=True):
        hits = (row == eos).nonzero()
        if len(hits):
            first = int(hits[0])
            assert m[: first + 1].all() and not m[first + 1:].any()
    # recomputed log-probs equal the sampler's own distribution
    ids, mask = pol.encode_prompts(PROMPTS[:1])
    torch.manual_seed(0)
    out = pol.model.generate(input_ids=ids, attention_mask=mask, do_sample=True, max_new_tokens=6,
                             top_k=0, output_logits=True, return_dict_in_generate=True,
                             pad_token_id=pol.tokenizer.pad_token_id)
    comp = out.sequences[:, ids.shape[1]:]
    ref = torch.stack([torch.log_softmax(s.float(), -1)[0, t]
                       for s, t in zip(out.logits, comp[0], strict=True)])
    mine, _ = pol.logprobs(ids, mask, comp, torch.ones_like(comp))
    torch.testing.assert_close(mine[0], ref, atol=1e-5, rtol=1e-5)
    # fresh LoRA (B = 0) => policy == reference
    torch.testing.assert_close(ro.old_logprobs, ro.ref_logprobs)


def test_reference_is_adapter_disabled_and_diverges_after_update(tiny_lm_path):
    pol = LMPolicy(LMPolicyConfig(model=tiny_lm_path, lora=LoRAConfig(r=4), max_new_tokens=8))
    ro = pol.rollout(PROMPTS, 2, seed=1, need_ref=False)
    for p in pol.trainable_parameters():
        p.data.add_(0.5)
    new, _ = pol.logprobs(ro.prompt_ids, ro.prompt_mask, ro.completion_ids, ro.completion_mask)
    with pol.reference() as ref_model:
        ref, _ = pol.logprobs(ro.prompt_ids, ro.prompt_mask, ro.completion_ids, ro.completion_mask,
                              model=ref_model)
    m = ro.completion_mask.bool()
    torch.testing.assert_close(ref[m], ro.old_logprobs[m], atol=1e-5, rtol=1e-5)
    assert (new[m] - ref[m]).abs().max() > 1e-3


def test_sft_adapter_is_merged_so_reference_is_sft_not_base(tiny_lm_path, tmp_path):
    # SFT with a LoRA adapter, then start GRPO from it: the reference must be the SFT policy.
    sft_pol = LMPolicy(LMPolicyConfig(model=tiny_lm_path, lora=LoRAConfig(r=4), max_new_tokens=8))
    pairs = [(PROMPTS[0], '{"decision": "allow", "reason": "benign"}')] * 8
    sft_train(sft_pol, pairs, SFTConfig(epochs=3, batch_size=4, lr=5e-2,
                                        out_dir=str(tmp_path / "sft")))
    grpo_pol = LMPolicy(LMPolicyConfig(model=tiny_lm_path,
                                       init_adapter=str(tmp_path / "sft" / "model"),
                                       lora=LoRAConfig(r=4), max_new_tokens=8))
    base_pol = LMPolicy(LMPolicyConfig(model=tiny_lm_path, lora=LoRAConfig(r=4), max_new_tokens=8))
    ro = grpo_pol.rollout(PROMPTS, 2, seed=0, need_ref=True)
    args = (ro.prompt_ids, ro.prompt_mask, ro.completion_ids, ro.completion_mask)
    sft_lp, _ = sft_pol.logprobs(*args)
    with base_pol.reference() as bare:
        base_lp, _ = base_pol.logprobs(*args, model=bare)
    m = ro.completion_mask.bool()
    torch.testing.assert_close(ro.ref_logprobs[m], sft_lp[m], atol=1e-4, rtol=1e-4)
    assert (ro.ref_logprobs[m] - base_lp[m]).abs().max() > 1e-2


def test_full_finetune_reference_is_frozen_copy(tiny_lm_path):
    pol = LMPolicy(LMPolicyConfig(model=tiny_lm_path, lora=LoRAConfig(r=0), max_new_tokens=6))
    ro = pol.rollout(PROMPTS, 2, seed=0, need_ref=True)
    with torch.no_grad():
        for p in pol.trainable_parameters():
            p.add_(0.01)
    with pol.reference() as ref:
        lp, _ = pol.logprobs(ro.prompt_ids, ro.prompt_mask, ro.completion_ids, ro.completion_mask,
                             model=ref)
    m = ro.completion_mask.bool()
    torch.testing.assert_close(lp[m], ro.ref_logprobs[m], atol=1e-5, rtol=1e-5)


def test_config_errors():
    with pytest.raises(ValueError, match="policy.model is required"):
        LMPolicy(LMPolicyConfig())
    with pytest.raises(ValueError, match="dtype"):
        LMPolicyConfig(model="x", dtype="float8")
    assert wrap_lora  # exported for recipes that wrap their own models
