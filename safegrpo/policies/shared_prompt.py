"""Log-probs of a GRPO batch with each distinct prompt run once.

A GRPO batch holds G completions of every prompt, so a plain forward runs each prompt G times.
Here the distinct prompts (all but their last token) go through the model once, with gradients
when the caller trains; their KV cache is gathered back to the B rows (an index, so gradients
from every completion reach the shared prompt) and a second forward runs only the last prompt
token and the completion. The log-probs are those of the plain forward (same positions, same
mask; float rounding apart) and the backward flows through both passes.

It falls back to the plain forward where sharing would change the result or cannot work:
gradient checkpointing (it re-runs layers with a cache the first pass already filled), an
active dropout module (the group would share one dropout mask), a one-token prompt, or a batch
without a repeated prompt.
"""

from __future__ import annotations

import inspect

import torch
from torch import Tensor

from safegrpo.policies.lm_ops import completion_logprobs, mask_positions


def _dropout_active(model) -> bool:
    if not model.training:
        return False
    return any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in model.modules())


def _checkpointing(model) -> bool:
    for name in ("is_activation_checkpointing", "is_gradient_checkpointing"):  # new name first
        try:
            return bool(getattr(model, name))
        except AttributeError:
            continue
    return False


def _cache_kwarg(model) -> str:
    """transformers >= 5.2x names the cache argument ``cache`` (``past_key_values`` before)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _select_rows(cache, index: Tensor) -> None:
    """Gather the cache's rows with ``index_select``: its backward (``index_add_``) sums in a
    fixed order, where advanced indexing's (``index_put_`` with accumulate) does not on a
    multi-threaded CPU, and runs of one seed would drift apart."""
    layers = getattr(cache, "layers", None)
    if layers is None:
        cache.batch_select_indices(index)
        return
    for layer in layers:
        if getattr(layer, "keys", None) is not None and layer.keys.numel():
            layer.keys = layer.keys.index_select(0, index)
            layer.values = layer.values.index_select(0, index)


def can_share(model, prompt_ids: Tensor) -> bool:
    """Whether ``shared_prompt_logprobs`` gives the plain forward's result for this batch."""
    if prompt_ids.shape[0] < 2 or prompt_ids.shape[1] < 2:
        return False
    if _checkpointing(model) or _dropout_active(model):
        return False
    return torch.unique(prompt_ids, dim=0).shape[0] < prompt_ids.shape[0]


def shared_prompt_logprobs(model, prompt_ids: Tensor, prompt_mask: Tensor,
                           completion_ids: Tensor, completion_mask: Tensor,
                           temperature: float = 1.0,
                           with_entropy: bool = False) -> tuple[Tensor, Tensor | None]:
    """Log-probs [B, T] of ``completion_ids`` after left-padded ``prompt_ids`` [B, P]
    (+ entropy [B, T]), each distinct (prompt, mask) row run once (see the module doc)."""
    n_prompt, n_comp = prompt_ids.shape[1], completion_ids.shape[1]
    rows = torch.cat([prompt_ids, prompt_mask.to(prompt_ids.dtype)], dim=1)
    uniq, inverse = torch.unique(rows, dim=0, return_inverse=True)
    head, head_mask = uniq[:, :n_prompt - 1], uniq[:, n_prompt:2 * n_prompt - 1]
    cache = model(input_ids=head, attention_mask=head_mask, position_ids=mask_positions(head_mask),
                  use_cache=True, logits_to_keep=1).past_key_values
    _select_rows(cache, inverse.to(head.device))
    mask = torch.cat([prompt_mask, completion_mask], dim=1)
    tail = torch.cat([prompt_ids[:, -1:], completion_ids], dim=1)
    logits = model(input_ids=tail, attention_mask=mask,
                   position_ids=mask_positions(mask)[:, -n_comp - 1:], use_cache=True,
                   **{_cache_kwarg(model): cache}).logits
    return completion_logprobs(logits[:, :-1, :], completion_ids, temperature, with_entropy)
