"""Diffusion policy over diffusers components: text encoder + UNet2DConditionModel + DDIMScheduler
(+ optional VAE; without one the UNet works in pixel space), optional LoRA on the UNet.

Loads a diffusers pipeline folder or hub id (subfolders unet/, text_encoder/, tokenizer/,
scheduler/, optional vae/) through ``from_pretrained``. Sampling records every latent and the
per-step log-prob of the DDIM Gaussian transition (eta > 0). Reference = LoRA adapters disabled
(or a frozen copy of the UNet when training all weights).
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from safegrpo.core.types import DiffusionRollout
from safegrpo.policies.diffusion.ddim_logprob import ddim_step_with_logprob
from safegrpo.policies.diffusion.lora_format import load_unet_lora, save_unet_lora
from safegrpo.policies.lineage import write_lineage
from safegrpo.policies.lm import LoRAConfig

UNET_ATTENTION = ("to_q", "to_k", "to_v", "to_out.0")
"""LoRA targets used when ``lora.target_modules`` is the LM default ('all-linear'), which peft
cannot resolve on a diffusers UNet."""
SAMPLER_FILE = "safegrpo_sampler.json"
"""Next to a saved policy: the DDIM steps, eta and guidance it was trained to sample with."""


@dataclass(frozen=True)
class DiffusionPolicyConfig:
    model: str = ""
    """Diffusers pipeline folder or hub id."""
    lora: LoRAConfig = field(
        default_factory=lambda: LoRAConfig(r=8, alpha=8, target_modules=UNET_ATTENTION))
    """LoRA on the UNet (target_modules 'all-linear' means the attention projections
    to_q, to_k, to_v, to_out.0); r = 0 trains the whole UNet."""
    num_steps: int = 20
    """DDIM inference steps."""
    eta: float = 1.0
    """DDIM eta (> 0: stochastic transitions with a log-prob)."""
    guidance_scale: float = 1.0
    """Classifier-free guidance (1 = off; > 1 adds an unconditional pass on the empty prompt)."""
    shared_noise: bool = False
    """Share the initial noise across a prompt's group."""
    seed: int | None = None
    """Adapter initialisation seed. None: the recipe's master seed (0 when used on its own)."""

    def __post_init__(self) -> None:
        if self.num_steps < 1 or self.eta <= 0 or self.guidance_scale < 1:
            raise ValueError("num_steps >= 1, eta > 0 and guidance_scale >= 1 are required")


class DiffusionPolicy:
    def __init__(self, cfg: DiffusionPolicyConfig, device: str = "cpu"):
        from diffusers import DDIMScheduler, UNet2DConditionModel
        from transformers import AutoTokenizer, CLIPTextModel

        if not cfg.model:
            raise ValueError("diffusion policy.model is required (pipeline folder or hub id)")
        self.cfg, path = cfg, cfg.model
        self.tokenizer = AutoTokenizer.from_pretrained(path, subfolder="tokenizer")
        self.text_encoder = CLIPTextModel.from_pretrained(
            path, subfolder="text_encoder").to(device).eval()
        self.text_encoder.requires_grad_(False)
        self.unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet").to(device)
        self.scheduler = DDIMScheduler.from_pretrained(path, subfolder="scheduler")
        self.scheduler.set_timesteps(cfg.num_steps)
        self.vae = load_vae(path, device)
        if self.vae is None and self.unet.config.in_channels != 3:
            raise ValueError(f"{path}: the UNet takes {self.unet.config.in_channels} channels but "
                             "the pipeline has no VAE (vae/) to decode latents; pixel-space "
                             "pipelines need a 3-channel UNet")
        self._ref_unet = None
        if cfg.lora.r > 0:
            from peft import LoraConfig

            targets = cfg.lora.target_modules
            if tuple(targets) == ("all-linear",):  # peft resolves it for transformers only
                targets = UNET_ATTENTION
            self.unet.requires_grad_(False)
            torch.manual_seed(0 if cfg.seed is None else cfg.seed)
            self.unet.add_adapter(LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha,
                                             init_lora_weights="gaussian",
                                             lora_dropout=cfg.lora.dropout,
                                             target_modules=list(targets)))

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.unet.parameters() if p.requires_grad]

    @contextlib.contextmanager
    def reference(self):
        """Yield the reference UNet (adapters disabled, or a frozen copy of the initial UNet)."""
        if self.cfg.lora.r > 0:
            self.unet.disable_adapters()
            try:
                yield self.unet
            finally:
                self.unet.enable_adapters()
        else:
            self.prepare_reference()
            yield self._ref_unet

    def prepare_reference(self, unet=None) -> None:
        """Full fine-tuning: freeze a copy of ``unet`` (default the policy's) as the reference now.
        Trainers call this at construction, before resume loads a checkpoint, so the reference is
        the starting UNet; later calls keep the first copy. No-op with LoRA."""
        if self.cfg.lora.r == 0 and self._ref_unet is None:
            self._ref_unet = copy.deepcopy(unet or self.unet).eval().requires_grad_(False)

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> Tensor:
        max_length = (self.tokenizer.model_max_length if self.tokenizer.model_max_length < 1000
                      else self.text_encoder.config.max_position_embeddings)
        enc = self.tokenizer(prompts, padding="max_length", truncation=True, return_tensors="pt",
                             max_length=max_length)
        return self.text_encoder(enc["input_ids"].to(self.device))[0]  # [B, L, D]

    def latent_shape(self) -> tuple[int, int, int]:
        c, s = self.unet.config.in_channels, self.unet.config.sample_size
        return c, s, s

    def predict(self, unet, latents: Tensor, t: Tensor, embeds: Tensor,
                uncond: Tensor | None) -> Tensor:
        """Noise prediction [B, C, H, W] with classifier-free guidance when ``uncond`` is given."""
        if uncond is None:
            return unet(latents, t, encoder_hidden_states=embeds).sample
        both = unet(torch.cat([latents, latents]), torch.cat([t, t]) if t.dim() else t,
                    encoder_hidden_states=torch.cat([uncond, embeds])).sample
        u, c = both.chunk(2)
        return u + self.cfg.guidance_scale * (c - u)

    @torch.no_grad()
    def rollout(self, prompts: list[str], group_size: int, *, seed: int,
                group_offset: int = 0, on_step: Callable[[], Any] | None = None
                ) -> DiffusionRollout:
        """``group_size`` images per prompt, every DDIM transition recorded; ``on_step()`` after
        each denoising step (a progress display's ``advance``)."""
        cfg, dev = self.cfg, self.device
        b = len(prompts) * group_size
        embeds = self.encode_prompts(prompts).repeat_interleave(group_size, 0)
        uncond = self.encode_prompts([""] * b) if cfg.guidance_scale > 1 else None
        g = torch.Generator().manual_seed(seed)
        shape = self.latent_shape()
        if cfg.shared_noise:
            x = torch.randn(len(prompts), *shape, generator=g).repeat_interleave(group_size, 0)
        else:
            x = torch.randn(b, *shape, generator=g)
        x = x.to(dev) * self.scheduler.init_noise_sigma
        lats, logps = [x], []
        for t in self.scheduler.timesteps:
            tt = torch.full((b,), int(t), device=dev, dtype=torch.long)
            eps = self.predict(self.unet, x, tt, embeds, uncond)
            noise = torch.randn(x.shape, generator=g).to(dev)
            x, lp, _, _ = ddim_step_with_logprob(self.scheduler, eps, tt, x, eta=cfg.eta,
                                                 variance_noise=noise)
            lats.append(x)
            logps.append(lp)
            if on_step is not None:
                on_step()
        gids = torch.arange(len(prompts)).repeat_interleave(group_size) + group_offset
        return DiffusionRollout(
            latents=torch.stack(lats, 1), log_probs=torch.stack(logps, 1),
            timesteps=self.scheduler.timesteps.clone(), prompt_embeds=embeds, uncond_embeds=uncond,
            images=self.decode(x), group_ids=gids,
            prompts=tuple(p for p in prompts for _ in range(group_size)))

    def step_logprob(self, unet, ro: DiffusionRollout, idx: Tensor,
                     j: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Re-score transitions j [n] (per row) of rows idx [n] -> (log_prob [n], mean, std)."""
        x_t = ro.latents[idx, j]
        x_next = ro.latents[idx, j + 1]
        t = ro.timesteps.to(x_t.device)[j]
        unc = None if ro.uncond_embeds is None else ro.uncond_embeds[idx]
        eps = self.predict(unet, x_t, t, ro.prompt_embeds[idx], unc)
        _, lp, mean, std = ddim_step_with_logprob(self.scheduler, eps, t, x_t, eta=self.cfg.eta,
                                                  prev_sample=x_next)
        return lp, mean, std

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        """Final latents -> images [B, 3, H, W] in [0, 1]."""
        if self.vae is not None:
            latents = self.vae.decode(latents / self.vae.config.scaling_factor).sample
        return ((latents.float() + 1) / 2).clamp(0, 1)

    def save(self, path: str | Path) -> None:
        """LoRA in diffusers' format (``pipe.load_lora_weights(path)`` reads it) or the full UNet
        (``unet/``), plus the base pipeline (``safegrpo_policy.json``, local paths relative) and
        the sampler settings, so ``safegrpo export`` rebuilds the trained pipeline."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if self.cfg.lora.r > 0:
            save_unet_lora(self.unet, path)
        else:
            self.unet.save_pretrained(path / "unet")
        write_lineage(path, self.cfg.model, [])
        (path / SAMPLER_FILE).write_text(json.dumps(
            {"num_inference_steps": self.cfg.num_steps, "eta": self.cfg.eta,
             "guidance_scale": self.cfg.guidance_scale}, indent=1))

    def load_trainable(self, path: str | Path) -> None:
        path = Path(path)
        if self.cfg.lora.r > 0:
            load_unet_lora(self.unet, path)
        else:
            from diffusers import UNet2DConditionModel

            saved = UNet2DConditionModel.from_pretrained(path / "unet")
            self.unet.load_state_dict(saved.state_dict())

def has_vae(path: str) -> bool:
    """Whether the pipeline at ``path`` (folder or hub id) has a VAE: a vae/ folder, or a 'vae'
    entry in the hub pipeline's model_index.json."""
    local = Path(path)
    if local.exists():
        return (local / "vae").exists()
    from diffusers import DiffusionPipeline

    try:
        index = DiffusionPipeline.load_config(path)
    except OSError as e:
        raise ValueError(f"{path}: cannot read the pipeline's model_index.json ({e})") from None
    return index.get("vae", [None, None])[0] is not None


def load_vae(path: str, device: str | torch.device):
    """The pipeline's AutoencoderKL (frozen), or None for a pixel-space pipeline (no VAE). A VAE
    that exists but fails to load is an error: decoding latents as pixels is silent garbage."""
    if not has_vae(path):
        return None
    from diffusers import AutoencoderKL

    try:
        vae = AutoencoderKL.from_pretrained(path, subfolder="vae")
    except Exception as e:  # noqa: BLE001 - missing/truncated weights, bad config: all fatal here
        msg = " ".join(str(e).split())[:300]
        raise ValueError(f"{path}: the pipeline has a VAE (vae/) but it failed to load: {msg}") \
            from None
    return vae.to(device).eval().requires_grad_(False)
