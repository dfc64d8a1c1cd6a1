"""A saved LoRA policy loads with plain transformers + peft after its folder is moved."""

import shutil

import torch

from safegrpo.policies.lm import LMPolicy, LMPolicyConfig, LoRAConfig


def test_moved_adapter_loads_with_plain_peft(tiny_lm_path, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    policy = LMPolicy(LMPolicyConfig(model=tiny_lm_path, lora=LoRAConfig(r=4, alpha=8)))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in policy.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # a trained-looking adapter (lora_B starts at zero)
    policy.save(tmp_path / "run" / "adapter")
    moved = shutil.move(str(tmp_path / "run"), str(tmp_path / "elsewhere"))
    plain = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_lm_path),
                                      f"{moved}/adapter").eval()
    ids = torch.tensor([[1, 5, 9, 13, 2, 7]])
    with torch.no_grad():
        want = policy.model.eval()(input_ids=ids).logits
        got = plain(input_ids=ids).logits
        base = AutoModelForCausalLM.from_pretrained(tiny_lm_path)(input_ids=ids).logits
    torch.testing.assert_close(got, want)
    assert not torch.allclose(got, base)  # the adapter really changes the model
