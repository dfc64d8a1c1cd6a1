"""Safe diffusion: online GRPO of a UNet with DDIM log-probs and a CLIP steering reward."""

from safegrpo.recipes.base import RECIPES, PackageRecipe


@RECIPES.register("diffusion")
class DiffusionRecipe(PackageRecipe):
    name = "diffusion"
    preset = "diffusion_demo.yaml"
    outputs = "eval_table.md, before_after.png, reward_curve.png, grpo/metrics.jsonl"
    config = "safegrpo.recipes.diffusion.pipeline:DiffusionRecipeConfig"
    demo = "safegrpo.recipes.diffusion.demo"
