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


def _randomize_lora(model, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)


def test_grpo_checkpoint_over_merged_sft_loads_with_auto_peft(tiny_lm_path, tmp_path,
                                                              monkeypatch):
    """SFT adapter merged, then a GRPO adapter: plain peft must load base + SFT + GRPO, not the
    raw base + GRPO (which loaded silently and gave other logits)."""
    from peft import AutoPeftModelForCausalLM

    from safegrpo.training.grpo import GRPOConfig, GRPOTrainer
    from tests.training.fake_task import VowelTask

    policy = LMPolicy(LMPolicyConfig(model=tiny_lm_path, lora=LoRAConfig(r=4, alpha=8)))
    _randomize_lora(policy.model, 1)
    policy.save(tmp_path / "sft")
    policy.merge_lora(saved_at=tmp_path / "sft")
    policy.attach_lora(LoRAConfig(r=4, alpha=8))
    _randomize_lora(policy.model, 2)
    cfg = GRPOConfig(steps=1, prompts_per_step=2, group_size=2, minibatch_size=4,
                     out_dir=str(tmp_path / "grpo"), report_to="none")
    trainer = GRPOTrainer(policy, VowelTask(), cfg)
    trainer.save(1)
    trainer.save(2)  # a second checkpoint reuses the merged weights already written
    ckpt = tmp_path / "grpo" / "checkpoints" / "step_000002" / "policy"
    monkeypatch.chdir(tmp_path / "sft")  # peft must not depend on the working directory
    plain = AutoPeftModelForCausalLM.from_pretrained(str(ckpt)).eval()
    ids = torch.tensor([[1, 5, 9, 13, 2, 7]])
    with torch.no_grad():
        want = policy.model.eval()(input_ids=ids).logits
        got = plain(input_ids=ids).logits
    torch.testing.assert_close(got, want)
    stores = list((tmp_path / "grpo" / "checkpoints").glob("merged*"))
    assert [s.name for s in stores] == ["merged_base"]
