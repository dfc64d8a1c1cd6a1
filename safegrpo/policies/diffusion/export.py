"""A saved diffusion policy -> a standard diffusers pipeline folder (``model_index.json``).

The pipeline is the base's own (``DiffusionPipeline.from_pretrained`` when the base has a
``model_index.json``, its safety checker included) or, for a folder of bare components like the
shapes world's, a ``StableDiffusionPipeline`` assembled from them. A pixel-space pipeline (no
VAE) gets the exact identity VAE of ``identity_vae.py``, so the export loads with a plain
``DiffusionPipeline.from_pretrained(out)`` and ``pipe(prompt)`` returns images. The scheduler
becomes the DDIM scheduler the policy was trained with, saved with the exact settings the policy
sampled with (diffusers' StableDiffusionPipeline rewrites a DDIM config with
``steps_offset != 1`` or ``clip_sample`` when it loads one, as for the shapes world;
``pipe.scheduler = DDIMScheduler.from_pretrained(out, subfolder="scheduler")`` undoes that).
A LoRA is loaded with ``load_lora_weights``, fused into the UNet and unloaded, so the exported
UNet is plain.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safegrpo.policies.diffusion.lora_format import LORA_FILE, OLD_LORA_FILE
from safegrpo.policies.lineage import read_lineage

DIFFUSION_MARKERS = (LORA_FILE, OLD_LORA_FILE, "unet")
"""Files (or folders) that make a folder a saved diffusion policy."""


def is_diffusion_policy(folder: Path) -> bool:
    return any((folder / name).exists() for name in DIFFUSION_MARKERS)


def has_model_index(base: str) -> bool:
    """A local folder needs its own model_index.json; a hub id always has one."""
    local = Path(base)
    return (local / "model_index.json").exists() if local.exists() else True


def load_kwargs(vae: bool) -> dict[str, Any]:
    """Extra ``from_pretrained`` arguments of a pipeline: StableDiffusionPipeline has no optional
    VAE, so a pixel-space one (no vae/) loads with ``vae=None``."""
    return {} if vae else {"vae": None}


def build_pipeline(base: str, unet=None):
    """The text-to-image pipeline of ``base`` (optionally with ``unet`` swapped in), with the DDIM
    scheduler exactly as ``DiffusionPolicy`` loads it."""
    from diffusers import DDIMScheduler, DiffusionPipeline, StableDiffusionPipeline

    from safegrpo.policies.diffusion.policy import has_vae, load_vae

    if has_model_index(base):
        kw = {**load_kwargs(has_vae(base)), **({} if unet is None else {"unet": unet})}
        pipe = DiffusionPipeline.from_pretrained(base, **kw)
    else:
        from diffusers import UNet2DConditionModel
        from transformers import AutoTokenizer, CLIPTextModel

        pipe = StableDiffusionPipeline(
            vae=load_vae(base, "cpu"),
            unet=UNet2DConditionModel.from_pretrained(base, subfolder="unet") if unet is None
            else unet,
            text_encoder=CLIPTextModel.from_pretrained(base, subfolder="text_encoder"),
            tokenizer=AutoTokenizer.from_pretrained(base, subfolder="tokenizer"),
            scheduler=DDIMScheduler.from_pretrained(base, subfolder="scheduler"),
            safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    # assigned after construction: StableDiffusionPipeline's constructor rewrites "outdated"
    # scheduler settings (steps_offset != 1, clip_sample) and the policy was trained without that
    pipe.scheduler = DDIMScheduler.from_pretrained(base, subfolder="scheduler")
    return pipe


def _base_of(folder: Path, base: str | None) -> str:
    """``base`` if given, else the base pipeline recorded with the policy; a local path that is
    missing is an error here (from_pretrained would take it for a hub id)."""
    if base:
        if base.startswith((".", "/", "~")) and not Path(base).expanduser().exists():
            raise FileNotFoundError(f"--base {base} does not exist")
        return str(Path(base).expanduser()) if base.startswith("~") else base
    recorded, _ = read_lineage(folder)
    if recorded is None:
        raise ValueError(f"{folder}: the base pipeline is not recorded (checkpoint saved before "
                         "safegrpo_policy.json existed); pass it with --base")
    if recorded.startswith((".", "/", "~")) and not Path(recorded).exists():
        raise FileNotFoundError(f"{folder}: base pipeline {recorded} not found (moved without "
                                "it?); pass it with --base")
    return recorded


def trained_pipeline(folder: str | Path, base: str | None = None):
    """The saved policy in ``folder`` as a diffusers pipeline with a plain (merged) UNet."""
    from diffusers import UNet2DConditionModel

    folder = Path(folder)
    base = _base_of(folder, base)
    if (folder / "unet").is_dir():
        return build_pipeline(base, UNet2DConditionModel.from_pretrained(folder / "unet"))
    if not (folder / LORA_FILE).exists():
        raise ValueError(f"{folder}: the LoRA is in the old bare format ({OLD_LORA_FILE}, no rank "
                         f"or alpha recorded); resume the run once to re-save it as {LORA_FILE}")
    pipe = build_pipeline(base)
    pipe.load_lora_weights(str(folder), weight_name=LORA_FILE)
    pipe.fuse_lora(components=["unet"])
    pipe.unload_lora_weights()
    return pipe


def export_diffusion(folder: str | Path, out: Path, base: str | None = None) -> dict[str, Any]:
    """Write the trained pipeline to ``out`` (save_pretrained); returns the export record."""
    from safegrpo.policies.diffusion.policy import SAMPLER_FILE

    folder = Path(folder)
    pipe = trained_pipeline(folder, base)
    identity = pipe.vae is None
    if identity:  # pixel space: an exact identity VAE makes it a standard pipeline
        from safegrpo.policies.diffusion.identity_vae import identity_vae

        unet = pipe.unet.config
        pipe.register_modules(vae=identity_vae(unet.in_channels, unet.sample_size))
    pipe.save_pretrained(out)
    sampler = folder / SAMPLER_FILE
    call = json.loads(sampler.read_text()) if sampler.exists() else {}
    return {"kind": "diffusion", "pipeline": type(pipe).__name__, "load_kwargs": {},
            "identity_vae": identity, "lora_merged": (folder / LORA_FILE).exists(),
            "sampling": call}
