import pytest

from safegrpo.envs.moderation.models import parse_action
from safegrpo.policies.lm import LMPolicy, LMPolicyConfig, LoRAConfig
from safegrpo.training.sft import SFTConfig, collate, sft_train

TARGET = '{"decision": "allow", "reason": "benign"}'


def test_collate_masks_prompt_tokens(tiny_lm_path):
    pol = LMPolicy(LMPolicyConfig(model=tiny_lm_path, lora=LoRAConfig(r=0)))
    ids, mask, labels = collate(pol.tokenizer, [("Prompt: a cat\nJSON:", TARGET), ("P:", "x")], 64)
    n_prompt = len(pol.tokenizer("Prompt: a cat\nJSON:")["input_ids"])
    assert (labels[0, :n_prompt] == -100).all()
    assert labels[0, n_prompt:mask[0].sum()].tolist()[-1] == pol.tokenizer.eos_token_id
    assert mask[1].sum() < mask[0].sum() and (labels[1, mask[1].sum():] == -100).all()


def test_sft_learns_json_and_reports_parse_rate(tiny_lm_path, tmp_path):
    pol = LMPolicy(LMPolicyConfig(model=tiny_lm_path, lora=LoRAConfig(r=0), max_new_tokens=24))
    prompts = [f"Prompt: a cat number {i}\nJSON:" for i in range(8)]

    def rate(p):
        outs = p.complete(prompts)
        return {"sft/parse_rate": sum(parse_action(o)[0] is not None for o in outs) / len(outs)}

    before = rate(pol)["sft/parse_rate"]
    hist = sft_train(pol, [(p, TARGET) for p in prompts],
                     SFTConfig(epochs=12, batch_size=4, lr=1e-2, out_dir=str(tmp_path)),
                     eval_fn=rate)
    assert before == 0.0 and hist[-1]["sft/parse_rate"] == 1.0
    assert hist[-1]["sft/loss"] < hist[0]["sft/loss"]
    assert (tmp_path / "model" / "config.json").exists() and (tmp_path / "metrics.jsonl").exists()
    with pytest.raises(ValueError, match="at least one"):
        sft_train(pol, [], SFTConfig(out_dir=str(tmp_path)))


def test_sft_schedule_decays_the_rate_over_every_step(tiny_lm_path, tmp_path):
    """sft.lr_scheduler runs transformers' schedule over epochs x batches; the constant default
    keeps the rate. sft/lr is the rate after each epoch's last step."""
    pairs = [(f"Prompt: a cat number {i}\nJSON:", TARGET) for i in range(8)]
    rates = {}
    for name in ("constant", "linear"):
        pol = LMPolicy(LMPolicyConfig(model=tiny_lm_path, lora=LoRAConfig(r=0)))
        hist = sft_train(pol, pairs, SFTConfig(epochs=2, batch_size=4, lr=1e-2, lr_scheduler=name,
                                               out_dir=str(tmp_path / name)))
        rates[name] = [h["sft/lr"] for h in hist]
    assert rates["constant"] == [1e-2, 1e-2]
    assert rates["linear"] == pytest.approx([5e-3, 0.0])  # 4 steps: after 2 and after 4
    pol = LMPolicy(LMPolicyConfig(model=tiny_lm_path, lora=LoRAConfig(r=0)))
    warm = sft_train(pol, pairs, SFTConfig(epochs=2, batch_size=4, lr=1e-2, warmup_ratio=0.5,
                                           out_dir=str(tmp_path / "warm")))
    assert [h["sft/lr"] for h in warm] == pytest.approx([1e-2, 1e-2])  # constant after warm-up
    with pytest.raises(ValueError, match="sft.lr_scheduler"):
        SFTConfig(lr_scheduler="cosinus")
    with pytest.raises(ValueError, match="sft.warmup_ratio"):
        SFTConfig(warmup_ratio=1.0)
