"""Advantage estimators, registered by name in ``ADVANTAGES`` with one signature."""

from safegrpo.advantages.estimators import (
    ADVANTAGES,
    AdvantageOptions,
    RewardBatch,
    RewardShape,
    estimator,
)
from safegrpo.advantages.group import (
    broadcast_segments,
    gdpo_advantages,
    grpo_advantages,
    segment_advantages,
)
from safegrpo.advantages.rank import segment_gdpo_advantages

__all__ = [
    "ADVANTAGES",
    "AdvantageOptions",
    "RewardBatch",
    "RewardShape",
    "broadcast_segments",
    "estimator",
    "gdpo_advantages",
    "grpo_advantages",
    "segment_advantages",
    "segment_gdpo_advantages",
]
