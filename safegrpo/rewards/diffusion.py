"""Image rewards for safe diffusion (SafeDiffusion-R1 style).

``SteeringReward``: r = cos(e_img(image), steer(e_txt(prompt), d, lambda)) where
d = normalize(mean e(safe descriptors) - mean e(unsafe descriptors)) in a joint text-image space
(CLIP). Conditional steering moves only prompts on the unsafe side (cos(z, d) < 0), so benign
prompts keep their own target and alignment is preserved. Extra image judges can be added as
weighted components (e.g. a NudeNet penalty); every component is returned separately.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch.nn.functional as F
from torch import Tensor

from safegrpo.core.types import ScoredBatch
from safegrpo.judges.embeddings import (
    embed_fixed,
    midpoint_threshold,
    safety_direction,
    steer,
    steer_mask,
)


class SteeringReward:
    def __init__(
        self,
        embedder: Any,
        safe_texts: Sequence[str],
        unsafe_texts: Sequence[str],
        *,
        strength: float = 1.0,
        mode: Literal["conditional", "unconditional"] = "conditional",
        threshold: float | Literal["midpoint"] = 0.0,
        extra: dict[str, tuple[Any, float]] | None = None,
    ):
        """``embedder`` needs ``embed(texts)`` and ``embed_images(images)`` in one space
        (CLIPEmbedder).
        ``threshold``: conditional steering applies where cos(z, d) < threshold; "midpoint" puts it
        halfway between the descriptor sets' projections (a nearest-centroid unsafe test).
        ``extra``: name -> (image judge, weight); component = weight * judge.score(images)."""
        if not safe_texts or not unsafe_texts:
            raise ValueError("SteeringReward needs safe and unsafe descriptor texts")
        self.embedder, self.strength, self.mode = embedder, strength, mode
        safe_e = embed_fixed(embedder, list(safe_texts))
        unsafe_e = embed_fixed(embedder, list(unsafe_texts))
        self.direction = safety_direction(safe_e, unsafe_e)
        self.threshold = (
            midpoint_threshold(safe_e, unsafe_e, self.direction)
            if threshold == "midpoint"
            else float(threshold)
        )
        self.extra = dict(extra or {})

    def targets(self, prompts: Sequence[str]) -> Tensor:
        return steer(
            self.embedder.embed(list(prompts)),
            self.direction,
            self.strength,
            self.mode,
            self.threshold,
        )

    def steered_mask(self, prompts: Sequence[str]) -> Tensor:
        """[B] bool: prompts whose target is moved (all in unconditional mode)."""
        return steer_mask(
            self.embedder.embed(list(prompts)), self.direction, self.mode, self.threshold
        )

    def __call__(
        self, prompts: Sequence[str], images: Tensor | Sequence, group_ids: Tensor | None = None
    ) -> ScoredBatch:
        img = F.normalize(self.embedder.embed_images(list(images)), dim=-1)
        comps = {"steered_alignment": (img * self.targets(prompts)).sum(-1)}
        for name, (judge, weight) in self.extra.items():
            comps[name] = weight * judge.score(list(images)).float()
        return ScoredBatch(total=sum(comps.values()), components=comps)
