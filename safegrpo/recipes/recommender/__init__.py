"""Safe recommender: Safe SFT, per-rank GRPO with a safety oracle, GDPO and a count reward."""

from __future__ import annotations

from typing import Any

from safegrpo.recipes.base import RECIPES, Stage


@RECIPES.register("recommender")
class RecommenderRecipe:
    name = "recommender"
    preset = "recommender_demo.yaml"
    outputs = "eval_table.md, */val_metrics.jsonl, */metrics.jsonl"
    composes: tuple[str, ...] = ()

    @property
    def config_cls(self) -> type:
        from safegrpo.recipes.recommender.pipeline import RecommenderRecipeConfig

        return RecommenderRecipeConfig

    def stages(self, cfg: Any) -> list[Stage]:
        from safegrpo.recipes.recommender.demo import stages

        return stages(cfg)

    def render(self, summary: dict[str, Any]) -> Any:
        from safegrpo.recipes.recommender.demo import render_summary

        return render_summary(summary)
