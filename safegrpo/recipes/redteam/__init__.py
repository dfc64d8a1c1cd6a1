"""Red-team attacker GRPO against a target LM, scored by a toxicity judge (local or HTTP)."""

from __future__ import annotations

from typing import Any

from safegrpo.recipes.base import RECIPES, Stage


@RECIPES.register("redteam")
class RedTeamRecipe:
    name = "redteam"
    preset = "redteam_demo.yaml"
    outputs = "eval_table.md, grpo/adversarial.jsonl, reward_curve.png, grpo/metrics.jsonl"
    composes: tuple[str, ...] = ()

    @property
    def config_cls(self) -> type:
        from safegrpo.recipes.redteam.pipeline import RedTeamRecipeConfig

        return RedTeamRecipeConfig

    def stages(self, cfg: Any) -> list[Stage]:
        from safegrpo.recipes.redteam.demo import stages

        return stages(cfg)

    def render(self, summary: dict[str, Any]) -> Any:
        from safegrpo.recipes.redteam.demo import render_summary

        return render_summary(summary)
