"""Moderation arena: (tiny or pretrained base) -> SFT -> GRPO vs the arena -> held-out eval."""

from __future__ import annotations

from typing import Any

from safegrpo.recipes.base import RECIPES, Stage


@RECIPES.register("moderation")
class ModerationRecipe:
    name = "moderation"
    preset = "moderation_demo.yaml"
    outputs = ("eval_headline.md, eval_intervals.md, eval_table.md, eval_records.jsonl, "
               "reward_curve.png, grpo/metrics.jsonl")
    composes: tuple[str, ...] = ()

    @property
    def config_cls(self) -> type:
        from safegrpo.recipes.moderation.pipeline import ModerationRecipeConfig

        return ModerationRecipeConfig

    def stages(self, cfg: Any) -> list[Stage]:
        from safegrpo.recipes.moderation.demo import stages

        return stages(cfg)

    def render(self, summary: dict[str, Any]) -> Any:
        from safegrpo.recipes.moderation.demo import render_summary

        return render_summary(summary)

    def combine_seeds(self, cfgs: list[Any], summaries: list[dict[str, Any]]):
        from safegrpo.recipes.moderation.demo import combine_seeds

        return combine_seeds(cfgs, summaries)
