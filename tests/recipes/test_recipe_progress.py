"""Every long phase of the red-team, recommender, self-play and diffusion recipes shows one
progress display with its counts on a terminal, and nothing under ``--quiet`` (captured output,
no timing)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from safegrpo.core import progress
from safegrpo.core.config import load_config
from safegrpo.core.types import ScoredBatch


@pytest.fixture(params=["terminal", "quiet"])
def shown(request, terminal, monkeypatch):
    """(text buffer, whether progress should be drawn): a terminal, then the same under --quiet."""
    if request.param == "quiet":
        monkeypatch.setitem(progress._state, "quiet", True)
    return terminal, request.param == "terminal"


def _check(out, drawn: bool, label: str, total: int) -> None:
    text = out.getvalue()
    if not drawn:
        assert text == ""
        return
    assert label in text and f"{total}/{total}" in text and "ETA" in text, text[-400:]


def _lm(path: str, r: int = 0, tokens: int = 2):
    from safegrpo.policies.lm import LMPolicy, LMPolicyConfig, LoRAConfig

    return LMPolicy(LMPolicyConfig(model=path, lora=LoRAConfig(r=r), max_new_tokens=tokens))


def test_lm_complete_reports_each_batch(tiny_lm_path):
    done = []
    outs = _lm(tiny_lm_path).complete(["a", "b", "c"], batch_size=2, on_batch=done.append)
    assert len(outs) == 3 and done == [2, 1]


def test_redteam_evaluation_is_one_phase(tiny_lm_path, shown):
    from safegrpo.envs.moderation.pools import load_handwritten
    from safegrpo.policies.targets import LMTarget
    from safegrpo.recipes.base import RunContext
    from safegrpo.recipes.redteam.demo import _evaluate
    from safegrpo.recipes.redteam.pipeline import RedTeamRecipeConfig

    cfg = load_config(RedTeamRecipeConfig, None, ["reward.judge.name=profanity",
                                                 "reward.judge.invert=false"])
    judge = SimpleNamespace(score=lambda texts: torch.zeros(len(texts)))
    ctx = RunContext(cfg, state={"policy": _lm(tiny_lm_path, r=2), "judge": judge,
                                 "target": LMTarget(_lm(tiny_lm_path))})
    _evaluate(ctx)
    n = max(32, 2 * cfg.training.prompts_per_step * cfg.training.group_size)
    assert [r["n"] for r in ctx.state["rows"]] == [n, n]
    _check(*shown, "red-team evaluation", 4 * n + len(load_handwritten("eval")))


def test_recommender_validation_is_one_phase(tiny_lm_path, shown):
    from safegrpo.recipes.recommender.data import load_data
    from safegrpo.recipes.recommender.pipeline import RecommenderRecipeConfig, validate

    cfg = RecommenderRecipeConfig()
    catalog, _, val = load_data(cfg.data)
    metrics = validate(_lm(tiny_lm_path), val[:3], catalog, cfg.reward, "validation: sft_only")
    assert f"recall@{cfg.reward.k}" in metrics
    _check(*shown, "validation: sft_only", 3)


class _AttackReward:
    """Every attack is rated unsafe and allowed: success 1."""

    def __call__(self, attacks, group_ids):
        n = len(attacks)
        return ScoredBatch(total=torch.ones(n), components={"success": torch.ones(n)},
                           info=tuple({"decision": "allow", "p_unsafe": 0.9} for _ in attacks))


def test_selfplay_attack_success_is_one_phase(tiny_lm_path, shown):
    from safegrpo.recipes.redteam.pipeline import AttackTask, RedTeamRecipeConfig
    from safegrpo.recipes.selfplay.pipeline import SelfPlayConfig, _measured

    rcfg = RedTeamRecipeConfig()
    st = {"attacker": _lm(tiny_lm_path), "atask": AttackTask(rcfg, None),
          "attack_reward": _AttackReward()}
    row = _measured("round 1: attack success", st, SelfPlayConfig(eval_attacks=5), 0, None)
    assert row["success_rate"] == 1.0 and row["unsafe_allowed"] == 1.0
    _check(*shown, "round 1: attack success", 2 * 5)


def test_shape_judge_training_is_one_phase(shown):
    from safegrpo.worlds.shape_judge import train_shape_judge

    judge = train_shape_judge(n_train=40, epochs=2, batch=16, n_test=5)
    assert 0 <= judge.accuracy <= 1
    _check(*shown, "shapes world: shape judge", 2 * 3)


def test_diffusion_sampling_counts_denoising_steps(tmp_path, shown):
    from safegrpo.eval.diffusion import sample_fixed
    from safegrpo.policies.diffusion.policy import DiffusionPolicy, DiffusionPolicyConfig
    from safegrpo.policies.diffusion.tiny import build_tiny_pipeline

    pipe = build_tiny_pipeline(tmp_path / "sd", ["a red square", "a blue circle"] * 10)
    pol = DiffusionPolicy(DiffusionPolicyConfig(model=str(pipe), num_steps=3))
    images = sample_fixed(pol, ["a red square", "a blue circle"], 2, 0, "evaluation: base")
    assert images.shape[0] == 4
    _check(*shown, "evaluation: base: 4 images", 3)


def test_grpo_loop_shows_the_recipe_label(tiny_lm_path, tmp_path, shown):
    from safegrpo.training.grpo import GRPOConfig, GRPOTrainer
    from tests.training.fake_task import VowelTask

    trainer = GRPOTrainer(_lm(tiny_lm_path, r=2), VowelTask(),
                          GRPOConfig(steps=2, prompts_per_step=1, group_size=2,
                                     out_dir=str(tmp_path), save_every=0))
    trainer.progress_label = "round 1: attacker GRPO"
    trainer.train()
    _check(*shown, "round 1: attacker GRPO", 2)
