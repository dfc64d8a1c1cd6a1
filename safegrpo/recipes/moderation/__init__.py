"""Moderation arena: (tiny or pretrained base) -> SFT -> GRPO vs the arena -> held-out eval."""

from safegrpo.recipes.base import RECIPES, PackageRecipe


@RECIPES.register("moderation")
class ModerationRecipe(PackageRecipe):
    name = "moderation"
    preset = "moderation_demo.yaml"
    outputs = ("eval_headline.md, eval_intervals.md, eval_table.md, eval_records.jsonl, "
               "reward_curve.png, judge_curve.png, judge_curve.md, grpo/metrics.jsonl")
    config = "safegrpo.recipes.moderation.pipeline:ModerationRecipeConfig"
    demo = "safegrpo.recipes.moderation.demo"
