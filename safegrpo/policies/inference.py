"""Reload a saved policy exactly as it was trained: base, merged adapters, final adapter, format.

A GRPO adapter is trained on top of a merged SFT adapter; ``safegrpo_policy.json`` (written by
``LMPolicy.save``) lists the raw base and the adapters merged underneath, with paths relative to
the saved folder (the checkpoint's ``adapter_config.json`` names the merged weights for plain
peft: ``policies/peft_base.py``). The final adapter stays
unmerged, as during training, so greedy outputs reproduce the trained policy token for token.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from safegrpo.policies.lineage import read_lineage
from safegrpo.policies.lm import LMPolicy, LMPolicyConfig, LoRAConfig
from safegrpo.policies.lm_ops import load_base, merge_adapter
from safegrpo.policies.prompting import PromptFormat


def policy_folder(path: str | Path) -> Path:
    p = Path(path)
    if (p / "policy").is_dir():
        p = p / "policy"
    if not ((p / "adapter_config.json").exists() or (p / "config.json").exists()):
        raise FileNotFoundError(f"{path}: no policy/, adapter_config.json or config.json found")
    return p


def load_for_inference(path: str | Path, *, max_new_tokens: int = 48, temperature: float = 1.0,
                       device: str = "cpu") -> LMPolicy:
    """A checkpoint folder (with ``policy/``) or a saved model / LoRA adapter folder -> frozen
    policy with the prompt format it was trained with."""
    p = policy_folder(path)
    base, merged = read_lineage(p)
    is_adapter = (p / "adapter_config.json").exists()
    if is_adapter and base is None:
        base = json.loads((p / "adapter_config.json").read_text()).get("base_model_name_or_path")
        if not base:
            raise ValueError(f"{p}/adapter_config.json names no base_model_name_or_path")
    if not is_adapter:
        base, merged = str(p), []
    fmt = PromptFormat.load(p) or PromptFormat()
    cfg = LMPolicyConfig(model=base, lora=LoRAConfig(r=0), prompt=fmt,
                         max_new_tokens=max_new_tokens, temperature=temperature)
    tok, model = load_base(base, None, cfg.dtype)
    for adapter in merged:
        model = merge_adapter(model, adapter)
    if is_adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(p))
    policy = LMPolicy(replace(cfg, init_adapter=None), device=device, loaded=(tok, model))
    policy.merged = merged
    policy.model.eval().requires_grad_(False)
    return policy


def saved_format(path: str | Path) -> PromptFormat | None:
    """The prompt format recorded with a saved policy (None if the folder predates it)."""
    try:
        return PromptFormat.load(policy_folder(path))
    except FileNotFoundError:
        return None
