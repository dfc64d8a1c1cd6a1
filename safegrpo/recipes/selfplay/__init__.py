"""Self-play: a red-team attacker and the arena defender trained in alternating rounds."""

from __future__ import annotations

from typing import Any

from safegrpo.recipes.base import RECIPES, Stage


@RECIPES.register("selfplay")
class SelfPlayRecipe:
    name = "selfplay"
    preset = "selfplay_demo.yaml"
    outputs = ("eval_table.md, rounds.jsonl, round_*/attacker/metrics.jsonl, "
               "round_*/defender/metrics.jsonl")
    composes: tuple[str, ...] = ("moderation", "redteam")
    """Recipes whose building blocks (configs, pipelines) this one reuses."""

    @property
    def config_cls(self) -> type:
        from safegrpo.recipes.selfplay.demo import SelfPlayRecipeConfig

        return SelfPlayRecipeConfig

    def stages(self, cfg: Any) -> list[Stage]:
        from safegrpo.recipes.selfplay.demo import stages

        return stages(cfg)

    def render(self, summary: dict[str, Any]) -> Any:
        from safegrpo.recipes.selfplay.demo import render_summary

        return render_summary(summary)
