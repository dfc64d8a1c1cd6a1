"""Weights and log-probs of an HF causal LM: load a base, fold in or wrap LoRA adapters (peft),
and score completion tokens. ``LMPolicy`` (``policies/lm.py``) is built from these."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from safegrpo.policies.lm import LoRAConfig


def load_base(model: str, init_adapter: str | None = None, dtype: str = "float32"):
    """from_pretrained tokenizer + causal LM (a GGUF / ``package:`` source is de-quantised on the
    fly; ``safegrpo models import`` does it once); merge ``init_adapter`` if given."""
    from safegrpo.policies.importing import load_plain

    tok, base = load_plain(model, dtype)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if init_adapter:
        base = merge_adapter(base, init_adapter)
    return tok, base


def merge_adapter(model, adapter: str | Path):
    """Fold a saved peft adapter into ``model``'s weights; returns the plain model."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()


def wrap_lora(base, lora: LoRAConfig):
    from peft import LoraConfig, get_peft_model

    targets = ("all-linear" if tuple(lora.target_modules) == ("all-linear",)
               else list(lora.target_modules))
    layers = None
    if lora.layers:
        n = base.config.num_hidden_layers
        layers = sorted({i % n for i in lora.layers})
        if any(not -n <= i < n for i in lora.layers):
            raise ValueError(f"lora.layers {list(lora.layers)} out of range for {n} layers")
        if targets == "all-linear":  # peft needs explicit names with layers_to_transform
            targets = sorted({name.rsplit(".", 1)[-1] for name, mod in base.named_modules()
                              if isinstance(mod, torch.nn.Linear) and ".layers." in name})
    pcfg = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=targets, task_type="CAUSAL_LM", layers_to_transform=layers)
    return get_peft_model(base, pcfg)


def mask_positions(mask: Tensor) -> Tensor:
    """Position ids of left-padded rows [B, L]: 0 at each row's first token (padding 0 too)."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def completion_logprobs(logits: Tensor, targets: Tensor, temperature: float = 1.0,
                        with_entropy: bool = False) -> tuple[Tensor, Tensor | None]:
    """Logits [B, T, V] that predict ``targets`` [B, T] -> their log-probs [B, T] at
    ``temperature`` (+ entropy [B, T]), in fp32."""
    logp_all = F.log_softmax(logits.float() / temperature, dim=-1)
    logp = torch.gather(logp_all, -1, targets.unsqueeze(-1)).squeeze(-1)
    ent = -(logp_all.exp() * logp_all).sum(-1) if with_entropy else None
    return logp, ent


def token_logprobs(model, input_ids: Tensor, attention_mask: Tensor, n_completion: int,
                   temperature: float = 1.0,
                   with_entropy: bool = False) -> tuple[Tensor, Tensor | None]:
    """Log-probs of the last ``n_completion`` tokens of ``input_ids`` [B, L] -> [B, T]
    (+ entropy [B, T])."""
    # only the positions that predict completion tokens go through the LM head: with a 49k
    # vocabulary the head over every prompt position costs as much as several layers
    logits = model(input_ids=input_ids, attention_mask=attention_mask,
                   position_ids=mask_positions(attention_mask),
                   logits_to_keep=n_completion + 1).logits
    return completion_logprobs(logits[:, -n_completion - 1:-1, :],
                               input_ids[:, -n_completion:], temperature, with_entropy)
