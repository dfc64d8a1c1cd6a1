"""The UNet LoRA on disk in diffusers' own format, so ``pipe.load_lora_weights(folder)`` reads it.

``save_unet_lora`` follows diffusers' LoRA training scripts: peft state dict ->
``convert_state_dict_to_diffusers`` -> ``StableDiffusionPipeline.save_lora_weights``, with the
adapter's ``LoraConfig`` as metadata (rank, alpha and targets travel with the weights, so a plain
diffusers user gets the same scale). ``load_unet_lora`` is the reverse used by resume; it also
reads the bare peft state dict (``unet_lora.safetensors``) that checkpoints held before.
"""

from __future__ import annotations

from pathlib import Path

LORA_FILE = "pytorch_lora_weights.safetensors"
"""diffusers' default LoRA weight name (``LORA_WEIGHT_NAME_SAFE``)."""
OLD_LORA_FILE = "unet_lora.safetensors"
"""Bare peft state dict, no metadata: the format of older checkpoints (read, never written)."""


def save_unet_lora(unet, folder: str | Path, adapter: str = "default") -> Path:
    """Write ``unet``'s LoRA adapter to ``folder/pytorch_lora_weights.safetensors``."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet, adapter_name=adapter))
    StableDiffusionPipeline.save_lora_weights(
        folder, unet_lora_layers=layers, weight_name=LORA_FILE, safe_serialization=True,
        unet_lora_adapter_metadata=unet.peft_config[adapter].to_dict())
    return Path(folder) / LORA_FILE


def read_unet_lora(folder: str | Path) -> dict:
    """The UNet LoRA saved in ``folder`` as a peft state dict (keys without the adapter name)."""
    folder = Path(folder)
    if (folder / LORA_FILE).exists():
        from diffusers import StableDiffusionPipeline
        from diffusers.utils import convert_unet_state_dict_to_peft

        sd, _ = StableDiffusionPipeline.lora_state_dict(str(folder), weight_name=LORA_FILE)
        unet_sd = {k.removeprefix("unet."): v for k, v in sd.items() if k.startswith("unet.")}
        if not unet_sd:
            raise ValueError(f"{folder / LORA_FILE}: holds no UNet LoRA weights (no 'unet.' keys)")
        return convert_unet_state_dict_to_peft(unet_sd)
    if (folder / OLD_LORA_FILE).exists():
        from safetensors.torch import load_file

        return load_file(folder / OLD_LORA_FILE)
    raise FileNotFoundError(f"{folder}: no UNet LoRA ({LORA_FILE}, or the older {OLD_LORA_FILE})")


def load_unet_lora(unet, folder: str | Path, adapter: str = "default") -> None:
    """Set ``unet``'s existing LoRA adapter to the weights saved in ``folder`` (resume)."""
    from peft.utils import set_peft_model_state_dict

    result = set_peft_model_state_dict(unet, read_unet_lora(folder), adapter_name=adapter)
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    missing = [k for k in getattr(result, "missing_keys", []) or [] if "lora_" in k]
    if unexpected or missing:
        raise ValueError(f"{folder}: the saved LoRA does not match the UNet's adapter "
                         f"(unexpected {unexpected[:3]}, missing {missing[:3]})")
