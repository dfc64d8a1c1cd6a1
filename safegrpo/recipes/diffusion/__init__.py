"""Safe diffusion: online GRPO of a UNet with DDIM log-probs and a CLIP steering reward."""

from __future__ import annotations

from typing import Any

from safegrpo.recipes.base import RECIPES, Stage


@RECIPES.register("diffusion")
class DiffusionRecipe:
    name = "diffusion"
    preset = "diffusion_demo.yaml"
    outputs = "eval_table.md, before_after.png, reward_curve.png, grpo/metrics.jsonl"
    composes: tuple[str, ...] = ()

    @property
    def config_cls(self) -> type:
        from safegrpo.recipes.diffusion.pipeline import DiffusionRecipeConfig

        return DiffusionRecipeConfig

    def stages(self, cfg: Any) -> list[Stage]:
        from safegrpo.recipes.diffusion.demo import stages

        return stages(cfg)

    def render(self, summary: dict[str, Any]) -> Any:
        from safegrpo.recipes.diffusion.demo import render_summary

        return render_summary(summary)
