"""Recipe config fields that used to be silently overwritten (grpo.seed, grpo.out_dir, sft.seed,
training.*, policy.model, ...) are either honoured or refused with an error naming the field."""

from pathlib import Path

import pytest

from safegrpo.core.config import ConfigError, load_config
from safegrpo.training.base import fill_unset
from safegrpo.training.grpo import GRPOConfig
from safegrpo.training.sft import SFTConfig


class Captured(Exception):
    """Raised by a stand-in trainer to hand the config a recipe built back to the test."""


def capture(*args, **kwargs):
    raise Captured([a for a in args if hasattr(a, "seed")][-1])


def test_fill_unset_keeps_what_is_set():
    assert GRPOConfig().seed is None and SFTConfig().out_dir is None
    got = fill_unset(GRPOConfig(), seed=5, out_dir="a")
    assert (got.seed, got.out_dir) == (5, "a")
    kept = fill_unset(GRPOConfig(seed=0, out_dir="b"), seed=5, out_dir="a")
    assert (kept.seed, kept.out_dir) == (0, "b")  # an explicit 0 is honoured too


def test_diffusion_recipe_honours_grpo_seed_and_out_dir(tmp_path):
    from safegrpo.recipes.diffusion.pipeline import DiffusionRecipeConfig, grpo_config

    cfg = load_config(DiffusionRecipeConfig, None, [f"out_dir={tmp_path}", "seed=7"])
    assert (grpo_config(cfg).seed, grpo_config(cfg).out_dir) == (7, str(tmp_path / "grpo"))
    cfg = load_config(DiffusionRecipeConfig, None,
                      ["seed=7", "grpo.seed=3", f"grpo.out_dir={tmp_path}/x"])
    assert (grpo_config(cfg).seed, grpo_config(cfg).out_dir) == (3, f"{tmp_path}/x")


def test_redteam_honours_training_seed_and_out_dir(tmp_path, monkeypatch):
    from safegrpo.recipes.redteam import pipeline as redteam

    monkeypatch.setattr(redteam, "attacker_policy", lambda cfg, model: None)
    monkeypatch.setattr(redteam, "GRPOTrainer", capture)
    for sets, want in (([], (1, tmp_path / "run" / "grpo")),
                       (["training.seed=4", f"training.out_dir={tmp_path}/t"],
                        (4, tmp_path / "t"))):
        cfg = load_config(redteam.RedTeamRecipeConfig, None,
                          [f"out_dir={tmp_path}/run", "seed=1", *sets])
        with pytest.raises(Captured) as got:
            redteam.run_attack(cfg, "attacker", None, None)
        assert (got.value.args[0].seed, Path(got.value.args[0].out_dir)) == want


def test_recommender_honours_grpo_fields_and_refuses_policy_model(tmp_path, monkeypatch):
    from safegrpo.recipes.recommender import demo as recommender_demo
    from safegrpo.recipes.recommender import pipeline as recommender

    R = recommender.RecommenderRecipeConfig
    for bad, field in ((["policy.model=/m"], "policy.model"),
                       (["seed=2", "policy.seed=3"], "policy.seed")):
        with pytest.raises(ConfigError, match=field):
            load_config(R, None, bad)
    monkeypatch.setattr(recommender, "LMPolicy", lambda cfg: type("P", (), {"tokenizer": None})())
    monkeypatch.setattr(recommender, "RecTask", lambda *a, **k: None)
    monkeypatch.setattr(recommender, "GRPOTrainer", capture)
    cfg = load_config(R, None, [f"out_dir={tmp_path}", "seed=2", "grpo.seed=9"])
    with pytest.raises(Captured) as got:
        recommender.run_grpo(cfg, "grpo", "m", None, None, [])
    assert (got.value.args[0].seed, got.value.args[0].out_dir) == (9, str(tmp_path / "grpo"))
    arms = recommender_demo.arms(load_config(R, None, [f"grpo.out_dir={tmp_path}/g"]))
    assert {a.grpo.out_dir for a in arms.values()} == {f"{tmp_path}/g/{n}" for n in arms}


def test_selfplay_stage_seeds_and_folders():
    from safegrpo.recipes.selfplay.demo import SelfPlayRecipeConfig
    from safegrpo.recipes.selfplay.pipeline import stage_config

    s = stage_config(GRPOConfig(), steps=3, k=2, default_dir=Path("r/round_2/attacker"), seed=5)
    assert (s.steps, s.seed, s.out_dir) == (3, 7, "r/round_2/attacker")
    s = stage_config(GRPOConfig(seed=10, out_dir="/x"), steps=3, k=2, default_dir=Path("unused"),
                     seed=5)
    assert (s.seed, s.out_dir) == (12, "/x/round_2")
    for bad in (["moderation.out_dir=/m"], ["attacker.out_dir=/a"], ["moderation.policy.model=/p"],
                ["seed=1", "moderation.seed=2"]):
        # the error names the dotted field ("moderation.policy.model" or "moderation: policy.model")
        with pytest.raises(ConfigError, match=bad[-1].split("=")[0].replace(".", r"[.: ]+")):
            load_config(SelfPlayRecipeConfig, None, bad)
    assert load_config(SelfPlayRecipeConfig, None, ["seed=2", "moderation.seed=2"]).seed == 2
