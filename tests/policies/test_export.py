"""`safegrpo export` of LM checkpoints: the exported folder, moved elsewhere, loads with plain
transformers (no peft, no base model, no safegrpo) and reproduces the trained policy's greedy
outputs token for token; bad input is one `error:` line and exit code 1."""

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from safegrpo.cli import app
from safegrpo.policies.lm import LMPolicy, LMPolicyConfig, LoRAConfig
from safegrpo.policies.prompting import PromptFormat
from safegrpo.training.grpo import GRPOConfig, GRPOTrainer
from tests.training.test_grpo import VowelTask

PROMPTS = ["Prompt: a cat\nJSON:", "Prompt: a man with a knife in a dark alley\nJSON:"]
CHAT = ("{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"
        "{% if add_generation_prompt %}<s>assistant:{% endif %}")


def export(*args):
    return CliRunner().invoke(app, ["export", *map(str, args)])


def perturb(params, seed, scale=0.1):
    """A stand-in for training: move every trainable weight (LoRA B starts at zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in params:
            p.add_(torch.randn(p.shape, generator=g) * scale)


def train(model, out, **pcfg):
    """Checkpoints step_000001 and step_000002 written by the GRPO trainer's own save (the layout
    every LM recipe writes), with the adapter moved before each."""
    pol = LMPolicy(LMPolicyConfig(model=model, lora=LoRAConfig(r=4), max_new_tokens=8, **pcfg))
    cfg = GRPOConfig(steps=2, prompts_per_step=2, group_size=2, minibatch_size=4,
                     out_dir=str(out), tensorboard=False)
    trainer = GRPOTrainer(pol, VowelTask(), cfg)
    for step in (1, 2):
        perturb(pol.trainable_parameters(), seed=step)
        trainer.history.append({"step": step - 1})  # a resumable state holds its steps' records
        trainer.save(step)
    return pol


@pytest.fixture(scope="module")
def raw_run(tiny_lm_path, tmp_path_factory):
    root = tmp_path_factory.mktemp("raw_run")
    return root, train(tiny_lm_path, root / "grpo")


@pytest.fixture(scope="module")
def chat_run(tiny_lm_path, tmp_path_factory):
    """A chat model with a system message, GRPO on top of a merged SFT adapter (lineage)."""
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("chat_run")
    base = root / "base"
    shutil.copytree(tiny_lm_path, base)
    tok = AutoTokenizer.from_pretrained(base)
    tok.chat_template = CHAT
    tok.save_pretrained(base)
    sft = LMPolicy(LMPolicyConfig(model=str(base), lora=LoRAConfig(r=4)))
    perturb(sft.trainable_parameters(), seed=0, scale=0.2)
    sft.save(root / "sft")
    pol = train(str(base), root / "grpo", init_adapter=str(root / "sft"),
                prompt=PromptFormat(system="Answer in JSON."))
    assert pol.merged and pol.chat
    return root, pol


def plain_greedy(folder, prompt, max_new_tokens):
    """What a transformers user does with the exported folder (format from prompt_format.json)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    fmt = json.loads((folder / "prompt_format.json").read_text())
    text = prompt
    if fmt["chat_used"]:
        msgs = [{"role": "system", "content": fmt["system"]}] if fmt["system"] else []
        text = tok.apply_chat_template([*msgs, {"role": "user", "content": prompt}],
                                       add_generation_prompt=True, tokenize=False)
    enc = tok(text, return_tensors="pt", add_special_tokens=not fmt["chat_used"])
    out = model.generate(**enc, do_sample=False, max_new_tokens=max_new_tokens,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    return text, out[0, enc["input_ids"].shape[1]:].tolist()


@pytest.mark.parametrize("run", ["raw_run", "chat_run"])
def test_exported_lm_moves_loads_plain_and_reproduces_greedy_outputs(request, run, tmp_path):
    root, pol = request.getfixturevalue(run)
    r = export(root, tmp_path / "out")  # the run folder: its newest good checkpoint
    assert r.exit_code == 0, r.output
    rec = json.loads(r.output.strip().splitlines()[-1])
    assert rec["kind"] == "lm" and rec["step"] == 2
    assert rec["merged_adapters"] == len(pol.merged) + 1
    moved = tmp_path / "elsewhere" / "model"
    shutil.move(tmp_path / "out", moved)
    assert (moved / "config.json").exists() and not (moved / "adapter_config.json").exists()
    for prompt in PROMPTS:
        text, got = plain_greedy(moved, prompt, pol.cfg.max_new_tokens)
        assert text == pol.render(prompt)  # chat template and system message travelled
        _, _, cids, cmask = pol.generate([prompt], 1, seed=0, greedy=True)
        assert got == cids[0][cmask[0].bool()].tolist()
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(moved).state_dict()
    base = AutoModelForCausalLM.from_pretrained(pol.cfg.model).state_dict()
    assert merged.keys() == base.keys()
    assert any(not torch.equal(merged[k], base[k]) for k in base)  # the adapters are in


def one_error_line(r):
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert r.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: "), r.output
    return lines[0]


def test_bad_inputs_are_one_line_errors(raw_run, tmp_path):
    root, _ = raw_run
    assert "does not exist" in one_error_line(export(tmp_path / "nope", tmp_path / "o"))
    (tmp_path / "file.txt").write_text("x")
    assert "is a file" in one_error_line(export(tmp_path / "file.txt", tmp_path / "o"))
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("x")
    assert "unknown checkpoint kind" in one_error_line(export(tmp_path / "junk", tmp_path / "o"))
    for who in ("a", "b"):
        (tmp_path / "two" / who / "checkpoints" / "step_000001").mkdir(parents=True)
    msg = one_error_line(export(tmp_path / "two", tmp_path / "o"))
    assert "holds 2 checkpoint folders" in msg and "a/checkpoints" in msg
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    assert "not an empty folder" in one_error_line(export(root, tmp_path / "full"))
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"  # nothing lost
    assert "diffusion checkpoints only" in one_error_line(
        export(root, tmp_path / "o", "--base", root))
    assert "valid: float32" in one_error_line(export(root, tmp_path / "o", "--dtype", "int8"))
    assert not (tmp_path / "o").exists()
    assert not list(tmp_path.glob(".o.*"))  # no half-written export left behind


def test_run_copied_away_from_its_base_still_exports(raw_run, tmp_path):
    """The lineage names the base relative to the policy folder and absolute: a run folder moved
    without its base (a shared model folder that stays put) still finds it."""
    root, pol = raw_run
    shutil.copytree(root, tmp_path / "deeper" / "run")
    r = export(tmp_path / "deeper" / "run", tmp_path / "out")
    assert r.exit_code == 0, r.output
    _, got = plain_greedy(tmp_path / "out", PROMPTS[0], pol.cfg.max_new_tokens)
    _, _, cids, cmask = pol.generate([PROMPTS[0]], 1, seed=0, greedy=True)
    assert got == cids[0][cmask[0].bool()].tolist()


def test_corrupt_newest_checkpoint_is_skipped_with_a_warning(raw_run, tmp_path):
    root, _ = raw_run
    run = tmp_path / "run"
    shutil.copytree(root, run)
    ckpts = run / "grpo" / "checkpoints"
    weights = ckpts / "step_000002" / "policy" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    r = export(run, tmp_path / "out")
    assert r.exit_code == 0, r.output
    assert "warning: skipped step_000002" in r.output and "truncated" in r.output
    assert json.loads(r.output.strip().splitlines()[-1])["step"] == 1
    msg = one_error_line(export(ckpts / "step_000002", tmp_path / "out2"))
    assert "adapter_model.safetensors" in msg
    shutil.rmtree(ckpts / "step_000001")
    assert "no usable checkpoint" in one_error_line(export(run, tmp_path / "out3"))


def test_export_is_readable_by_others_under_the_usual_umask(raw_run, tmp_path):
    import os
    import stat

    root, _ = raw_run
    old = os.umask(0o022)
    try:
        r = export(root, tmp_path / "out")
    finally:
        os.umask(old)
    assert r.exit_code == 0, r.output
    modes = {p.relative_to(tmp_path): stat.S_IMODE(p.stat().st_mode)
             for p in [tmp_path / "out", *(tmp_path / "out").rglob("*")]}
    assert modes[(tmp_path / "out").relative_to(tmp_path)] == 0o755  # was 0700 (mkdtemp)
    assert all(m == (0o755 if (tmp_path / p).is_dir() else 0o644) for p, m in modes.items())
