"""Safe-diffusion recipe (SafeDiffusion-R1 style): online GRPO on a text-to-image UNet with a
steering reward cos(e_img(image), steer(e_txt(prompt), d, lambda)).

With ``policy.model`` empty the embedded shapes world is used: a tiny CLIP and a tiny pixel UNet
are trained locally (``recipes.synthetic_shapes``), the colour red plays the unsafe concept and
the descriptor sets are colour captions. With ``policy.model`` set (a diffusers folder or hub id)
and ``reward.embedder`` a CLIP id/path, the same code trains a real checkpoint.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from torch import Tensor

from safegrpo.core.config import save_run_config  # noqa: F401 (re-exported)
from safegrpo.core.types import ScoredBatch
from safegrpo.policies.diffusion.policy import DiffusionPolicy, DiffusionPolicyConfig
from safegrpo.policies.lm import LoRAConfig
from safegrpo.training.base import fill_unset
from safegrpo.training.diffusion_grpo import DiffusionGRPOConfig, DiffusionGRPOTrainer


@dataclass(frozen=True)
class ShapesWorldConfig:
    clip_steps: int = 600
    """Contrastive steps of the tiny CLIP (reward and eval space, and the UNet's text encoder)."""
    unet_steps: int = 1000
    """Denoising steps of the tiny UNet."""
    unet_batch: int = 32
    """Images per denoising step."""
    unet_lr: float = 2e-3
    """Peak learning rate (one-cycle schedule)."""
    channels: tuple[int, int] = (32, 64)
    """UNet block widths."""


@dataclass(frozen=True)
class SteeringConfig:
    embedder: str = ""
    """CLIP id/path of the joint text-image space; empty = the shapes world's tiny CLIP."""
    safe_descriptors: tuple[str, ...] = ("a green shape", "a blue shape", "a yellow shape")
    """Texts describing the safe side of the concept."""
    unsafe_descriptors: tuple[str, ...] = ("a red shape",)
    """Texts describing the unsafe concept."""
    strength: float = 2.0
    """Steering strength lambda."""
    mode: Literal["conditional", "unconditional"] = "conditional"
    """conditional: steer only prompts on the unsafe side; unconditional: every prompt."""
    threshold: Literal["sign", "midpoint"] = "midpoint"
    """Unsafe-side test of conditional steering: cos(z, d) < 0 (sign) or below the
    descriptor midpoint."""


@dataclass(frozen=True)
class PromptSetConfig:
    file: str = ""
    """JSONL of {prompt, unsafe: bool, category?}; empty = the shapes world's prompts
    ('warm' = unsafe)."""
    unsafe_share: float = 0.5
    """Share of unsafe prompts in each training batch."""
    holdout_every: int = 4
    """Every n-th prompt of each kind is held out for evaluation (never trained on)."""

    def __post_init__(self) -> None:
        if not 0 <= self.unsafe_share <= 1 or self.holdout_every < 2:
            raise ValueError(
                "prompts.unsafe_share must be in [0, 1] and prompts.holdout_every >= 2"
            )


@dataclass(frozen=True)
class DiffusionEvalConfig:
    per_prompt: int = 4
    """Images per held-out prompt (same seeds before and after training)."""
    seed: int = 12345
    """Sampling seed of the evaluation."""
    concept_threshold: float = 0.05
    """Shapes world: an image shows the concept when >= this share of its pixels is red."""
    q16_threshold: float = 0.5
    """Q16-style judge: an image is inappropriate for a category when p >= this."""
    nudenet: bool = True
    """Count NudeNet detections (needs safegrpo[vision]; skipped with a note when missing)."""
    nudenet_threshold: float = 0.45
    """NudeNet detection threshold."""
    grid_columns: int = 8
    """Images per row of the before/after grid."""


@dataclass(frozen=True)
class DiffusionRecipeConfig:
    out_dir: str = "runs/diffusion"
    """Everything (models, metrics, tables, grids) is written under here."""
    seed: int = 0
    """Master seed."""
    world: ShapesWorldConfig = field(default_factory=ShapesWorldConfig)
    """Embedded shapes world (used when policy.model is empty)."""
    policy: DiffusionPolicyConfig = field(
        default_factory=lambda: DiffusionPolicyConfig(lora=LoRAConfig(r=0))
    )
    """Pipeline, sampler and LoRA (policy.model empty = build the shapes world; policy.seed unset =
    seed)."""
    reward: SteeringConfig = field(default_factory=SteeringConfig)
    """Steering reward."""
    prompts: PromptSetConfig = field(default_factory=PromptSetConfig)
    """Training / evaluation prompts."""
    grpo: DiffusionGRPOConfig = field(default_factory=DiffusionGRPOConfig)
    """GRPO optimisation (grpo.seed unset = seed, grpo.out_dir unset = <out_dir>/grpo)."""
    eval: DiffusionEvalConfig = field(default_factory=DiffusionEvalConfig)
    """Evaluation."""


@dataclass(frozen=True)
class T2IPrompt:
    prompt: str
    unsafe: bool
    category: str = ""


def load_prompts(cfg: PromptSetConfig) -> list[T2IPrompt]:
    if not cfg.file:
        from safegrpo.worlds.shapes import UNSAFE_COLOR, all_prompts, allowed_colors

        # explicit red prompts are left out: the concept is the point of them (see synthetic_shapes)
        unsafe = [
            (p, UNSAFE_COLOR in allowed_colors(c))
            for p, c, _, _ in all_prompts()
            if c != UNSAFE_COLOR
        ]
        return [T2IPrompt(p, u, "red" if u else "") for p, u in unsafe]
    out = []
    for i, line in enumerate(Path(cfg.file).read_text().splitlines()):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            out.append(T2IPrompt(str(d["prompt"]), bool(d["unsafe"]), str(d.get("category", ""))))
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(
                f"prompts.file line {i + 1}: need a JSON object with 'prompt' and 'unsafe' ({e})"
            ) from None
    return out


def split_prompts(prompts: list[T2IPrompt], every: int) -> tuple[list[T2IPrompt], list[T2IPrompt]]:
    """Every ``every``-th prompt of each kind (unsafe / benign) -> holdout; the rest -> train."""
    train, hold = [], []
    for kind in (True, False):
        for i, p in enumerate(x for x in prompts if x.unsafe == kind):
            (hold if i % every == every - 1 else train).append(p)
    if not any(p.unsafe for p in train) or not any(not p.unsafe for p in train):
        raise ValueError("training prompts need both unsafe and benign entries")
    return train, hold


class SteeringTask:
    """DiffusionTask: mixes unsafe and benign training prompts; scores with a ``SteeringReward``."""

    def __init__(self, train: list[T2IPrompt], reward, unsafe_share: float, seed: int = 0):
        self.unsafe = [p.prompt for p in train if p.unsafe]
        self.benign = [p.prompt for p in train if not p.unsafe]
        self.reward, self.unsafe_share, self.seed = reward, unsafe_share, seed

    def sample_prompts(self, step: int, n: int, rank: int = 0) -> list[str]:
        rng = random.Random(self.seed * 1_000_003 + step * 101 + rank)
        k = round(n * self.unsafe_share)
        return [rng.choice(self.unsafe) for _ in range(k)] + [
            rng.choice(self.benign) for _ in range(n - k)
        ]

    def score(self, prompts: list[str], images: Tensor, group_ids: Tensor) -> ScoredBatch:
        return self.reward(prompts, images, group_ids)


def prepare_world(cfg: DiffusionRecipeConfig, log=print) -> tuple[str, str]:
    """-> (pipeline path, CLIP path). Builds and trains the shapes world once
    (reused afterwards)."""
    if cfg.policy.model:
        if not cfg.reward.embedder:
            raise ValueError(
                "reward.embedder (a CLIP id or path) is required when policy.model is set"
            )
        return cfg.policy.model, cfg.reward.embedder
    from transformers import AutoTokenizer

    from safegrpo.policies.diffusion.tiny import build_tiny_pipeline
    from safegrpo.worlds import shapes_train
    from safegrpo.worlds.shapes import WORLD_VERSION

    root = Path(cfg.out_dir) / "world"
    clip, pipe = root / "clip", root / "pipeline"
    done = f"ok v{WORLD_VERSION}"  # a world trained under other captions is rebuilt

    def built(d: Path) -> bool:
        return (d / "done").exists() and (d / "done").read_text() == done

    if not built(clip):
        (pipe / "done").unlink(missing_ok=True)  # the UNet is conditioned on this CLIP
        log(f"      training the tiny CLIP ({cfg.world.clip_steps} steps)")
        shapes_train.train_tiny_clip(clip, steps=cfg.world.clip_steps, seed=cfg.seed, log=log)
        (clip / "done").write_text(done)
    if not built(pipe):
        w = cfg.world
        log(f"      training the tiny UNet ({w.unet_steps} steps x {w.unet_batch} images)")
        build_tiny_pipeline(
            pipe,
            [],
            text_encoder=shapes_train.clip_text_encoder(clip),
            channels=cfg.world.channels,
            tokenizer=AutoTokenizer.from_pretrained(clip),
            seed=cfg.seed,
        )
        shapes_train.train_tiny_unet(
            pipe,
            steps=cfg.world.unet_steps,
            batch=cfg.world.unet_batch,
            lr=cfg.world.unet_lr,
            seed=cfg.seed,
            log=log,
        )
        (pipe / "done").write_text(done)
    return str(pipe), cfg.reward.embedder or str(clip)


def build_steering_reward(cfg: SteeringConfig, embedder):
    from safegrpo.rewards.diffusion import SteeringReward

    return SteeringReward(
        embedder,
        cfg.safe_descriptors,
        cfg.unsafe_descriptors,
        strength=cfg.strength,
        mode=cfg.mode,
        threshold=0.0 if cfg.threshold == "sign" else "midpoint",
    )


def grpo_config(cfg: DiffusionRecipeConfig) -> DiffusionGRPOConfig:
    """``grpo`` with unset seed / out_dir taken from the recipe (seed, <out_dir>/grpo)."""
    return fill_unset(cfg.grpo, seed=cfg.seed, out_dir=str(Path(cfg.out_dir) / "grpo"))


def run_grpo(cfg: DiffusionRecipeConfig, pipe: str, reward, train: list[T2IPrompt],
             resume: bool = False, restore_only: bool = False
             ) -> tuple[DiffusionPolicy, DiffusionGRPOTrainer]:
    """GRPO of the UNet (LoRA) with the steering reward; ``restore_only``: load the newest
    checkpoint, train nothing."""
    pcfg = fill_unset(replace(cfg.policy, model=pipe), seed=cfg.seed)
    policy = DiffusionPolicy(pcfg, device=cfg.grpo.device)
    task = SteeringTask(train, reward, cfg.prompts.unsafe_share, seed=cfg.seed)
    trainer = DiffusionGRPOTrainer(policy, task, grpo_config(cfg))
    if restore_only:
        trainer.restore("safegrpo train diffusion")
        return policy, trainer
    if resume:
        trainer.resume()
    trainer.train()
    return policy, trainer

