"""Which tokens and rows a GRPO update trains on (pure tensor functions).

- ``entropy_mask``: only the highest-entropy tokens ("forking tokens", Wang et al. 2025,
  arXiv:2506.01939, TRL's ``top_entropy_quantile``); the threshold is the (1 - q) quantile of
  the entropies of the minibatch's completion tokens.
- ``truncated_rows``: completions that used the whole budget without an EOS (TRL's
  ``mask_truncated_completions`` leaves them out of the loss; DAPO, arXiv:2503.14476, calls it
  overlong filtering).
"""

from __future__ import annotations

import torch
from torch import Tensor


def entropy_mask(entropy: Tensor, mask: Tensor, quantile: float) -> Tensor:
    """entropy, mask [B, T] -> float [B, T]: 1 where a completion token's entropy is at or above
    the (1 - quantile) quantile of the masked entropies, else 0. ``quantile`` 1 keeps every
    token; 0 keeps only the maximum (ties included)."""
    if not 0 <= quantile <= 1:
        raise ValueError(f"top_entropy_quantile must be in [0, 1], got {quantile}")
    m = mask.bool()
    if quantile >= 1 or not m.any():
        return m.to(entropy.dtype)
    threshold = torch.quantile(entropy[m].float(), 1 - quantile)
    return (m & (entropy >= threshold)).to(entropy.dtype)


def truncated_rows(completion_ids: Tensor, completion_mask: Tensor, eos_id: int,
                   budget: int | None = None) -> Tensor:
    """completion_ids, completion_mask [B, T] -> bool [B]: True where no EOS was generated and
    the row used the whole ``budget`` of new tokens (None: any row without EOS). A completion
    that ended at a stop string (``policy.engine.stop``) is shorter than the budget and counts as
    ended; one whose stop string lands on the budget's last token counts as cut."""
    m = completion_mask.bool()
    ended = ((completion_ids == eos_id) & m).any(dim=1)
    if budget is not None:
        ended |= m.sum(dim=1) < budget
    return ~ended
