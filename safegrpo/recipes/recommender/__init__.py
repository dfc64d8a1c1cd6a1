"""Safe recommender: Safe SFT, per-rank GRPO with a safety oracle, GDPO and a count reward."""

from safegrpo.recipes.base import RECIPES, PackageRecipe


@RECIPES.register("recommender")
class RecommenderRecipe(PackageRecipe):
    name = "recommender"
    preset = "recommender_demo.yaml"
    outputs = "eval_table.md, */val_metrics.jsonl, */metrics.jsonl"
    config = "safegrpo.recipes.recommender.pipeline:RecommenderRecipeConfig"
    demo = "safegrpo.recipes.recommender.demo"
