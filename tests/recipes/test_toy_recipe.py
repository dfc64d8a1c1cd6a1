"""A sixth recipe in one file: registered here, it runs through `safegrpo demo toy`,
`safegrpo train toy` and `safegrpo eval toy` (the CLI's commands come from the registry), with
no other module edited. Reward = share of vowels (tests/training/fake_task.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from safegrpo.policies.lm import LMPolicy, LMPolicyConfig, LoRAConfig
from safegrpo.recipes.base import RECIPES, RunContext, Stage, discover
from safegrpo.training.grpo import GRPOConfig, GRPOTrainer
from tests.training.fake_task import VowelTask


@dataclass(frozen=True)
class ToyConfig:
    out_dir: str = "runs/toy"
    """Output folder."""
    seed: int = 0
    """Master seed."""
    model: str = ""
    """A causal LM folder."""
    grpo: GRPOConfig = field(default_factory=lambda: GRPOConfig(
        steps=2, prompts_per_step=2, group_size=4, minibatch_size=8))
    """GRPO settings."""


def _setup(ctx: RunContext) -> None:
    cfg = ctx.cfg
    ctx.state["policy"] = LMPolicy(LMPolicyConfig(model=cfg.model, lora=LoRAConfig(r=4),
                                                  max_new_tokens=6, seed=cfg.seed))


def _trainer(ctx: RunContext) -> GRPOTrainer:
    out = str(Path(ctx.cfg.out_dir) / "grpo")
    return GRPOTrainer(ctx.state["policy"], VowelTask(),
                       GRPOConfig(**{**vars(ctx.cfg.grpo), "out_dir": out, "seed": ctx.cfg.seed}))


def _train(ctx: RunContext) -> None:
    ctx.state["trainer"] = t = _trainer(ctx)
    t.train()


def _restore(ctx: RunContext) -> None:
    ctx.state["trainer"] = t = _trainer(ctx)
    if t.resume() == 0:
        raise FileNotFoundError("no toy checkpoint")


def _report(ctx: RunContext) -> None:
    outs = ctx.state["policy"].complete(["Prompt: a\nJSON:"], greedy=True)
    h = ctx.state["trainer"].history
    ctx.summary = {"table": [{"steps": len(h), "completion": outs[0]}],
                   "headline": {"steps": len(h), "mode": ctx.mode}}


class ToyRecipe:
    name, config_cls, preset, outputs, composes = "toy", ToyConfig, None, "grpo/", ()

    def stages(self, cfg: ToyConfig) -> list[Stage]:
        return [Stage("setup", _setup, "setup"), Stage("grpo", _train, "train", _restore),
                Stage("report", _report, "report")]

    def render(self, summary):
        return f"toy table: {summary['table']}"


@pytest.fixture
def toy_registered():
    """Registers the toy recipe for one test (the built-in ones are discovered first)."""
    discover()
    RECIPES.register("toy")(ToyRecipe)
    yield
    RECIPES.unregister("toy")


def test_toy_recipe_runs_through_the_generated_cli(tiny_lm_path, tmp_path, toy_registered):
    from safegrpo.cli import app

    runner = CliRunner()
    sets = ["--set", f"model={tiny_lm_path}", "--set", f"out_dir={tmp_path / 'toy'}"]
    res = runner.invoke(app, ["demo", "toy", *sets])
    assert res.exit_code == 0, res.output
    assert "toy table" in res.output
    assert len((tmp_path / "toy/grpo/metrics.jsonl").read_text().splitlines()) == 2

    res = runner.invoke(app, ["train", "toy", *sets, "--set", f"out_dir={tmp_path / 't2'}"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1]) == {"steps": 2, "mode": "train"}

    res = runner.invoke(app, ["eval", "toy", *sets, "--set", f"out_dir={tmp_path / 't2'}"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["eval", "toy", *sets, "--set", f"out_dir={tmp_path / 'none'}"])
    assert res.exit_code == 1 and "no toy checkpoint" in res.output

    res = runner.invoke(app, ["config", "toy", "--explain"])
    assert res.exit_code == 0 and "grpo.steps" in res.output
    res = runner.invoke(app, ["demo", "toy", *sets, "--skip", "nope"])
    assert res.exit_code == 2 and "unknown stage" in res.output
    res = runner.invoke(app, ["demo", "toy", *sets, "--skip", "report"])  # nothing to render
    assert res.exit_code == 0 and "no table to print" in res.output, res.output
    assert "toy" in runner.invoke(app, ["recipes"]).output
