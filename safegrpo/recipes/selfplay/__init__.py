"""Self-play: a red-team attacker and the arena defender trained in alternating rounds."""

from safegrpo.recipes.base import RECIPES, PackageRecipe


@RECIPES.register("selfplay")
class SelfPlayRecipe(PackageRecipe):
    name = "selfplay"
    preset = "selfplay_demo.yaml"
    outputs = ("eval_table.md, rounds.jsonl, round_*/attacker/metrics.jsonl, "
               "round_*/defender/metrics.jsonl")
    config = "safegrpo.recipes.selfplay.demo:SelfPlayRecipeConfig"
    demo = "safegrpo.recipes.selfplay.demo"
    composes = ("moderation", "redteam")
    """Recipes whose building blocks (configs, pipelines) this one reuses."""
