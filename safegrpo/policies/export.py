"""Export a saved policy as a standard, self-contained folder (``safegrpo export``).

- LM (moderation defender, red-team attacker, self-play, recommender): the policy is reloaded as
  trained (``load_for_inference``: base, the adapters merged underneath, the final adapter), the
  adapter is merged (peft ``merge_and_unload``) and the model, tokenizer (chat template
  included) and ``prompt_format.json`` are written with ``save_pretrained``: plain
  ``AutoModelForCausalLM.from_pretrained(out)`` loads it, no peft or base model needed.
- Diffusion: a diffusers pipeline folder with ``model_index.json`` and the LoRA fused into the
  UNet (``policies/diffusion/export.py``).

The folder is written next to ``out`` and renamed into place when complete, so a failed export
leaves nothing behind; ``out`` must be new or empty. ``safegrpo_export.json`` records what was
exported and how to sample it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

EXPORT_RECORD = "safegrpo_export.json"
DTYPES = ("float32", "bfloat16", "float16")


def policy_folder(path: str | Path) -> tuple[Path, str] | None:
    """-> (folder holding the saved policy, 'lm' | 'diffusion') for a checkpoint folder (with
    ``policy/``) or a saved policy folder; None when ``path`` holds neither."""
    from safegrpo.policies.diffusion.export import is_diffusion_policy

    for cand in (Path(path) / "policy", Path(path)):
        if (cand / "adapter_config.json").exists() or (cand / "config.json").exists():
            return cand, "lm"
        if is_diffusion_policy(cand):
            return cand, "diffusion"
    return None


def export_lm(folder: Path, out: Path, dtype: str = "float32") -> dict[str, Any]:
    """Merge the trained LM policy in ``folder`` and ``save_pretrained`` it to ``out``."""
    import torch

    from safegrpo.policies.inference import load_for_inference

    policy = load_for_inference(folder)
    model = policy.model
    adapter = hasattr(model, "merge_and_unload")  # a peft model: fold the final adapter in
    if adapter:
        model = model.merge_and_unload()
    model = model.to(getattr(torch, dtype))
    model.save_pretrained(out)
    policy.tokenizer.save_pretrained(out)
    policy.cfg.prompt.save(out, policy.tokenizer)
    return {"kind": "lm", "architecture": type(model).__name__, "dtype": dtype,
            "merged_adapters": len(policy.merged) + int(adapter),
            "chat_template": policy.chat, "prompt_format": "prompt_format.json"}


def _step(folder: Path) -> int | None:
    state = folder.parent / "trainer_state.json"
    try:
        return int(json.loads(state.read_text())["step"]) if state.exists() else None
    except (ValueError, KeyError, TypeError):
        return None


def apply_umask(root: Path) -> None:
    """Folders 0777 and files 0666 less the process umask, as a plain mkdir/open would make them
    (mkdtemp makes 0700, so another user or a container could not read the export)."""
    mask = os.umask(0)
    os.umask(mask)
    for d, _, files in os.walk(root):
        os.chmod(d, 0o777 & ~mask)
        for f in files:
            os.chmod(os.path.join(d, f), 0o666 & ~mask)


def export_policy(path: str | Path, out: str | Path, *, base: str | None = None,
                  dtype: str = "float32") -> dict[str, Any]:
    """Export the policy saved in ``path`` (checkpoint or policy folder) to ``out``.

    ``base``: the base pipeline of a diffusion checkpoint that predates the recorded lineage.
    ``dtype``: weights dtype of an exported LM. Returns the record also written to
    ``out/safegrpo_export.json``."""
    out = Path(out)
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}; valid: {', '.join(DTYPES)}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty folder; choose a new one")
    found = policy_folder(path)
    if found is None:
        raise ValueError(f"{path}: unknown checkpoint kind (no policy/, adapter_config.json or "
                         "config.json of an LM, no pytorch_lora_weights.safetensors or unet/ "
                         "of a diffusion policy)")
    folder, kind = found
    if kind == "lm" and base:
        raise ValueError("--base applies to diffusion checkpoints only (an LM records its base)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        if kind == "lm":
            record = export_lm(folder, tmp, dtype)
        else:
            from safegrpo.policies.diffusion.export import export_diffusion

            record = export_diffusion(folder, tmp, base)
        record = {**record, "source": str(Path(path).resolve()), "step": _step(folder)}
        (tmp / EXPORT_RECORD).write_text(json.dumps(record, indent=1))
        apply_umask(tmp)
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {**record, "out": str(out)}
