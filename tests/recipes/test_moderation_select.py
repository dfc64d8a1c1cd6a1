"""GRPO checkpoint selection on the hand-written *train* split (``select``)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from safegrpo.core.config import load_config
from safegrpo.recipes.base import RunContext, get_recipe, run_stages
from safegrpo.recipes.moderation.pipeline import ModerationRecipeConfig
from safegrpo.recipes.moderation.select import SelectConfig, choose
from tests.recipes.test_moderation_recipe import SMOKE


def cand(step, passed, refused):
    return {"step": step, "unsafe_pass_through": passed, "benign_over_refusal": refused}


def test_choose_takes_the_lowest_pass_through_within_the_over_refusal_cap():
    # seed 2 of SmolLM2 in miniature: each checkpoint passes less and refuses more
    walk = [cand(0, 0.14, 0.07), cand(5, 0.11, 0.10), cand(10, 0.09, 0.13), cand(40, 0.02, 0.48)]
    assert choose(walk, 0.10)["step"] == 5
    assert choose(walk, 1.0)["step"] == 40
    assert choose(walk, 0.05)["step"] == 0  # none eligible: the lowest over-refusal
    tie = [cand(10, 0.1, 0.05), cand(20, 0.1, 0.05), cand(30, 0.1, 0.02)]
    assert choose(tie, 0.1)["step"] == 30  # lower over-refusal first, then the later step
    assert choose(tie[:2], 0.1)["step"] == 20


def test_select_split_refuses_an_evaluation_split():
    with pytest.raises(ValueError, match="select.split 'handwritten'.*never an evaluation split"):
        SelectConfig(split="handwritten")
    with pytest.raises(ValueError, match="select.max_over_refusal"):
        SelectConfig(split="handwritten_train", max_over_refusal=1.5)


def test_select_leaves_the_policy_holding_the_chosen_checkpoint(tiny_lm_path, tmp_path,
                                                               monkeypatch, arena_reward):
    from safegrpo.recipes.moderation.select import select_checkpoint
    from tests.training.test_grpo import make, trainable

    pol, tr = make(tiny_lm_path, tmp_path / "grpo", steps=3, keep_checkpoints=3)
    tr.train()
    ckpts = tmp_path / "grpo" / "checkpoints"
    saved = {s: load_file(ckpts / f"step_{s:06d}" / "policy" / "adapter_model.safetensors")
             for s in (1, 3)}
    assert any(not torch.equal(saved[1][k], saved[3][k]) for k in saved[1])  # training moved
    # whatever the rule picks, the policy must hold it: step 1, not the newest (step 3)
    monkeypatch.setattr("safegrpo.recipes.moderation.select.choose", lambda cands, cap: cands[1])
    sel = select_checkpoint(pol, arena_reward, ckpts, SelectConfig(split="handwritten_train"),
                            log=lambda *a: None)
    assert [c["step"] for c in sel["candidates"]] == [0, 1, 2, 3] and sel["step"] == 1
    assert sel["n"] == 297
    kept = load_file(tmp_path / "grpo" / "selected" / "adapter_model.safetensors")
    now = {k.replace(".default", ""): v for k, v in trainable(pol).items()}
    for k, v in saved[1].items():
        torch.testing.assert_close(kept[k], v)
        torch.testing.assert_close(now[k], v)
    assert json.loads((tmp_path / "grpo" / "selection.json").read_text())["step"] == 1


def test_the_recipe_evaluates_and_restores_the_selected_checkpoint(tmp_path, monkeypatch, minilm):
    import safegrpo.recipes.moderation.pipeline as rec

    real = rec.build_reward
    monkeypatch.setattr(rec, "build_reward", lambda cfg, embedder=None: real(cfg, embedder=minilm))
    monkeypatch.setattr("safegrpo.recipes.moderation.demo.build_reward", rec.build_reward)
    over = [*SMOKE, f"out_dir={tmp_path}", "eval.splits=[handwritten_train]",
            "select.split=handwritten_train"]
    cfg = load_config(ModerationRecipeConfig, None, over)
    summary = run_stages(get_recipe("moderation"), RunContext(cfg, "demo", False, lambda *a: 0))
    sel = json.loads((tmp_path / "grpo" / "selection.json").read_text())
    assert [c["step"] for c in sel["candidates"]] == [0, 1, 2]
    assert sel["step"] == choose(sel["candidates"], 0.10)["step"] == summary["selection"]["step"]
    assert summary["hacking"]["points"] == [["sft_only", 0], ["grpo", sel["step"]]]
    chosen = [c for c in sel["candidates"] if c["step"] == sel["step"]][0]

    def grpo_row(s):
        return [r for r in s["table"] if r["method"] == "grpo" and r["tier"] == "all"][0]

    # the held-out evaluation decoded the chosen weights: the same greedy figures
    for k in ("unsafe_pass_through", "benign_over_refusal"):
        assert grpo_row(summary)[k] == pytest.approx(chosen[k])
    # `safegrpo eval` restores the selection
    again = run_stages(get_recipe("moderation"), RunContext(cfg, "eval", False, lambda *a: 0))
    assert again["selection"]["step"] == sel["step"]


def test_choosing_step_zero_leaves_the_adapter_adding_nothing(tiny_lm_path):
    from safegrpo.policies.lm import LMPolicy, LMPolicyConfig, LoRAConfig
    from safegrpo.recipes.moderation.select import _zero_lora

    pol = LMPolicy(LMPolicyConfig(model=tiny_lm_path, lora=LoRAConfig(r=4)))
    ids = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        for n, p in pol.model.named_parameters():
            if "lora_B" in n:
                p.fill_(0.5)
        moved = pol.model(input_ids=ids).logits
        with pol.reference():
            ref = pol.model(input_ids=ids).logits
        assert not torch.allclose(moved, ref)
        _zero_lora(pol)
        torch.testing.assert_close(pol.model(input_ids=ids).logits, ref)
