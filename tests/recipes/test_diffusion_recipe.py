"""2-step smoke run of the safe-diffusion recipe on a barely trained shapes world, plus the
prompt handling and the CLI around it."""

import json

import pytest
from typer.testing import CliRunner

from safegrpo.cli import app
from safegrpo.core.config import load_config
from safegrpo.recipes.diffusion.pipeline import (
    DiffusionRecipeConfig,
    PromptSetConfig,
    SteeringTask,
    T2IPrompt,
    load_prompts,
    split_prompts,
)
from safegrpo.worlds.shapes import TEMPLATES, describe, prompt_of

SMOKE = ["world.clip_steps=3", "world.unet_steps=3", "world.unet_batch=4", "policy.num_steps=3",
         "grpo.steps=2", "grpo.prompts_per_step=2", "grpo.group_size=2", "grpo.minibatch_size=4",
         "grpo.save_every=1", "grpo.beta=0.01", "grpo.timestep_fraction=0.5", "eval.per_prompt=1",
         "eval.grid_columns=4", "eval.nudenet=false"]


def test_two_step_diffusion_demo_smoke(tmp_path, monkeypatch):
    from safegrpo.recipes.diffusion.demo import render_summary, run_demo
    from tests.console_check import f3, has_row, render_at_80

    cfg = load_config(DiffusionRecipeConfig, None, [*SMOKE, f"out_dir={tmp_path}"])
    summary = run_demo(cfg, log=lambda *a: None)
    text = render_at_80(render_summary(summary), monkeypatch)  # the console headline
    for r in summary["table"]:
        assert has_row(text, r["policy"], f3(r["concept_rate_unsafe"]),
                       f3(r["concept_rate_benign"]), f3(r["benign_color_fidelity"]),
                       f3(r["shape_fidelity"]), f3(r["background_match"]),
                       f3(r["benign_alignment"]),
                       f3(r["q16_unsafe_prompts"]["any"]),
                       *([str(r["nudenet_unsafe_prompts"]["images_flagged"])]
                         if "nudenet_unsafe_prompts" in r else [])), text
    assert summary["grpo_steps_run"] == 2
    base, grpo = summary["table"]
    assert base["policy"] == "base" and grpo["policy"] == "grpo"
    hold = split_prompts(load_prompts(cfg.prompts), cfg.prompts.holdout_every)[1]
    assert base["n_unsafe_images"] == sum(p.unsafe for p in hold) == 8
    for key in (
        "concept_rate_unsafe",
        "concept_rate_benign",
        "benign_color_fidelity",
        "benign_alignment",
    ):
        assert 0 <= abs(grpo[key]) <= 1, key
    assert set(grpo["q16_unsafe_prompts"]) == {"red", "any"}
    hack = summary["hacking"]
    assert set(hack["metrics"]) == {"concept_rate_unsafe", "benign_color_fidelity",
                                    "shape_fidelity", "background_match"}
    assert 0 <= grpo["shape_fidelity"] <= 1 and 0 <= summary["shape_judge_accuracy"] <= 1
    assert hack["metrics"]["benign_color_fidelity"]["values"] == [
        base["benign_color_fidelity"], grpo["benign_color_fidelity"]]
    assert "Reward hacking (" in (tmp_path / "eval_table.md").read_text()
    for f in (
        "eval_table.md",
        "eval_table.json",
        "before_after.png",
        "reward_curve.png",
        "config.yaml",
        "grpo/metrics.jsonl",
        "summary.json",
    ):
        assert (tmp_path / f).exists(), f
    hist = [json.loads(x) for x in (tmp_path / "grpo/metrics.jsonl").read_text().splitlines()]
    assert [h["step"] for h in hist] == [0, 1] and "loss/kl" in hist[0]
    # a second run reuses the trained world and resumes GRPO: nothing left to train
    summary2 = run_demo(cfg, resume=True, log=lambda *a: None)
    assert summary2["grpo_steps_run"] == 2
    # same seeds, same base
    assert summary2["table"][0]["concept_rate_unsafe"] == base["concept_rate_unsafe"]


def test_prompts_split_is_disjoint_and_keeps_both_kinds(tmp_path):
    prompts = load_prompts(PromptSetConfig())
    # 5 colour words x 4 shapes x 2 backgrounds x 4 phrasings, warm = unsafe, red left out
    assert len(prompts) == 160 and sum(p.unsafe for p in prompts) == 32
    assert not any(describe(p.prompt)[0] == "red" for p in prompts)
    train, hold = split_prompts(prompts, 4)
    assert not {p.prompt for p in train} & {p.prompt for p in hold}
    # >= 8 held-out prompts of each kind, all in the phrasing GRPO never trains on
    assert sum(p.unsafe for p in hold) == 8 and sum(not p.unsafe for p in hold) == 32
    last = len(TEMPLATES) - 1
    assert all(p.prompt == prompt_of(*describe(p.prompt), last) for p in hold)
    assert not any(p.prompt == prompt_of(*describe(p.prompt), last) for p in train)
    task = SteeringTask(train, reward=None, unsafe_share=0.5, seed=0)
    batch = task.sample_prompts(3, 8)
    assert sum("warm" in p for p in batch) == 4 and batch == task.sample_prompts(3, 8)
    with pytest.raises(ValueError, match="both unsafe and benign"):
        split_prompts([T2IPrompt("a", True), T2IPrompt("b", True)], 4)


def test_prompt_file_errors_name_the_line(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text(
        '{"prompt": "a nude statue", "unsafe": true, "category": "sexual"}\n{"prompt": "a cat"}\n'
    )
    with pytest.raises(ValueError, match="line 2.*'unsafe'"):
        load_prompts(PromptSetConfig(file=str(f)))
    f.write_text(
        '{"prompt": "a nude statue", "unsafe": true}\n\n{"prompt": "a cat", "unsafe": false}\n'
    )
    assert [p.unsafe for p in load_prompts(PromptSetConfig(file=str(f)))] == [True, False]


def test_cli_diffusion_config_and_errors():
    r = CliRunner().invoke(app, ["config", "diffusion", "-s", "reward.strength=3"])
    assert r.exit_code == 0 and "strength: 3" in r.output
    r = CliRunner().invoke(app, ["config", "diffusion", "-s", "reward.mode=sometimes"])
    assert r.exit_code == 2 and "mode" in r.output
    r = CliRunner().invoke(app, ["config", "diffusion", "-s", "policy.eta=0"])
    assert r.exit_code == 2 and "eta" in r.output
    r = CliRunner().invoke(app, ["demo", "painting"])
    assert (
        r.exit_code == 2
        and "valid: diffusion, moderation" in " ".join(r.output.replace("│", " ").split())
        and "diffusion" in r.output
    )
