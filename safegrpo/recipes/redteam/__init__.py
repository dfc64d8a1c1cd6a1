"""Red-team attacker GRPO against a target LM, scored by a toxicity judge (local or HTTP)."""

from safegrpo.recipes.base import RECIPES, PackageRecipe


@RECIPES.register("redteam")
class RedTeamRecipe(PackageRecipe):
    name = "redteam"
    preset = "redteam_demo.yaml"
    outputs = "eval_table.md, grpo/adversarial.jsonl, reward_curve.png, grpo/metrics.jsonl"
    config = "safegrpo.recipes.redteam.pipeline:RedTeamRecipeConfig"
    demo = "safegrpo.recipes.redteam.demo"
