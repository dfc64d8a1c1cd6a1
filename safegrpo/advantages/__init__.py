"""Advantage estimators, registered by name in ``ADVANTAGES``."""

from safegrpo.advantages.group import (
    ADVANTAGES,
    broadcast_segments,
    gdpo_advantages,
    grpo_advantages,
    segment_advantages,
)
from safegrpo.advantages.rank import segment_gdpo_advantages

__all__ = [
    "ADVANTAGES",
    "broadcast_segments",
    "gdpo_advantages",
    "grpo_advantages",
    "segment_advantages",
    "segment_gdpo_advantages",
]
