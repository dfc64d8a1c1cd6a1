"""Real-model plumbing on tiny models built here: GGUF -> HF import, chat templates through
SFT / GRPO / inference, one base model shared by SFT and GRPO, and exact reload of a GRPO
adapter trained over a merged SFT adapter."""

import json
import shutil
from dataclasses import replace

import pytest
import torch
from typer.testing import CliRunner

from safegrpo.cli import app
from safegrpo.policies.inference import load_for_inference
from safegrpo.policies.lm import LMPolicy, LMPolicyConfig, LoRAConfig
from safegrpo.policies.prompting import PromptFormat
from tests.policies.tiny_gguf import build_chat_lm, write_gguf

CORPUS = ['{"decision": "allow", "reason": "benign"}', '{"decision": "reject", "reason": "gore"}',
          "a cat on a sofa", "a man with a knife in a dark alley", "You moderate prompts."] * 10


def flat(result) -> str:
    """CLI output with rich's box drawing and line wrapping removed."""
    return " ".join(result.output.replace("│", " ").split())


@pytest.fixture(scope="module")
def chat_lm(tmp_path_factory):
    return build_chat_lm(tmp_path_factory.mktemp("chat_lm"), CORPUS)


def test_gguf_import_round_trips_weights_tokenizer_and_template(chat_lm, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = write_gguf(chat_lm, tmp_path / "tiny.gguf")
    r = CliRunner().invoke(app, ["models", "import", str(gguf_path), str(tmp_path / "hf")])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.strip().splitlines()[-1])["architecture"] == "LlamaForCausalLM"
    a = AutoModelForCausalLM.from_pretrained(chat_lm)
    b = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")  # plain from_pretrained, no gguf_file
    assert b.config.architectures == ["LlamaForCausalLM"]
    ta, tb = AutoTokenizer.from_pretrained(chat_lm), AutoTokenizer.from_pretrained(tmp_path / "hf")
    text = "a cat on a sofa<|im_end|>"
    assert ta(text)["input_ids"] == tb(text)["input_ids"]
    assert tb.chat_template == ta.chat_template and tb.eos_token == "<|im_end|>"
    x = ta(text, return_tensors="pt")
    torch.testing.assert_close(a(**x).logits, b(**x).logits, atol=1e-6, rtol=0)
    # a folder holding the gguf works too; an occupied output folder is refused with a message
    r = CliRunner().invoke(app, ["models", "import", str(tmp_path), str(tmp_path / "hf")])
    assert r.exit_code == 2 and "already holds a model" in flat(r)


def test_import_names_missing_package_and_bad_sources(tmp_path):
    r = CliRunner().invoke(app, ["models", "import", "package:no_such_pkg_xyz",
                                 str(tmp_path / "o")])
    assert r.exit_code == 2 and "pip install --no-deps no-such-pkg-xyz" in flat(r)
    (tmp_path / "x.txt").write_text("hi")
    r = CliRunner().invoke(app, ["models", "import", str(tmp_path / "x.txt"), str(tmp_path / "o")])
    assert r.exit_code == 2 and ".gguf" in flat(r)


def test_chat_template_reaches_generation_and_sft_targets(chat_lm):
    fmt = PromptFormat(system="You moderate prompts.")
    pol = LMPolicy(LMPolicyConfig(model=str(chat_lm), lora=LoRAConfig(r=0), prompt=fmt,
                                  max_new_tokens=6))
    assert pol.chat
    text = pol.render("a cat")
    assert text.startswith("<|im_start|>system\nYou moderate prompts.<|im_end|>")
    assert text.endswith("<|im_start|>assistant\n")
    ids, mask = pol.encode_prompts(["a cat"])
    assert pol.tokenizer.decode(ids[0][mask[0].bool()]) == text  # no extra BOS/specials added
    assert ids[0].tolist() == pol.prompt_token_ids("a cat")
    raw = LMPolicy(LMPolicyConfig(model=str(chat_lm), lora=LoRAConfig(r=0),
                                  prompt=PromptFormat(chat="off")))
    assert not raw.chat and raw.render("a cat") == "a cat"


def test_chat_required_without_template_is_a_clear_error(tiny_lm_path):
    with pytest.raises(ValueError, match="no chat template"):
        LMPolicy(LMPolicyConfig(model=tiny_lm_path, prompt=PromptFormat(chat="on")))


def test_one_base_sft_merge_grpo_and_exact_reload(chat_lm, tmp_path):
    """SFT adapter merged in place, GRPO adapter on top (reference = adapter disabled = SFT), one
    model object throughout; the saved GRPO checkpoint reloads as base + SFT + GRPO with its
    prompt format and reproduces greedy outputs token for token — after moving the run folder."""
    from safegrpo.training.grpo import GRPOConfig, GRPOTrainer
    from safegrpo.training.sft import SFTConfig, sft_train
    from tests.training.fake_task import VowelTask

    fmt = PromptFormat(system="You moderate prompts.", template="Prompt: {prompt}")
    pol = LMPolicy(LMPolicyConfig(model=str(chat_lm), lora=LoRAConfig(r=0), prompt=fmt,
                                  max_new_tokens=8))
    base_id = id(pol.model)
    pol.attach_lora(LoRAConfig(r=4, alpha=8))
    run = tmp_path / "run"
    pairs = [("Prompt: a cat", '{"decision": "allow"}'),
             ("Prompt: a knife", '{"decision": "reject"}')]
    sft_train(pol, pairs, SFTConfig(epochs=2, batch_size=2, lr=5e-2, out_dir=str(run / "sft")))
    pol.merge_lora(saved_at=run / "sft" / "model")
    assert id(pol.model) == base_id  # merge_and_unload returns the same base module
    pol.attach_lora(LoRAConfig(r=4, alpha=8, layers=(-1,)))  # top layer only
    adapted = {n.split(".layers.")[1].split(".")[0] for n, _ in pol.model.named_parameters()
               if "lora_" in n}
    assert adapted == {"1"}
    cfg = GRPOConfig(steps=2, prompts_per_step=2, group_size=2, lr=5e-2, beta=0.05,
                     out_dir=str(run / "grpo"), save_every=0, report_to="none")
    tr = GRPOTrainer(pol, VowelTask(), cfg)
    tr.train()
    prompts = ["Prompt: a cat", "Prompt: a knife in an alley"]
    want = pol.complete(prompts, greedy=True)
    with pol.reference() as ref:  # adapter disabled == the merged SFT weights
        assert ref is pol.model
    moved = tmp_path / "moved"
    shutil.move(str(run), moved)
    again = load_for_inference(moved / "grpo" / "checkpoints" / "step_000002", max_new_tokens=8)
    assert again.cfg.prompt == fmt and again.chat
    assert again.complete(prompts, greedy=True) == want
    rec = json.loads((moved / "grpo/checkpoints/step_000002/policy/safegrpo_policy.json")
                     .read_text())
    assert rec["merged_adapters"] == ["../../../../sft/model"]


def test_frozen_reload_without_lineage_still_works(chat_lm, tmp_path):
    pol = LMPolicy(LMPolicyConfig(model=str(chat_lm), lora=LoRAConfig(r=0), max_new_tokens=4))
    pol.save(tmp_path / "full")
    again = load_for_inference(tmp_path / "full", max_new_tokens=4)
    assert again.complete(["hi"], greedy=True) == pol.complete(["hi"], greedy=True)
    assert replace(again.cfg.prompt) == PromptFormat()
