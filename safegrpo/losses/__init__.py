"""Policy losses and KL estimators (pure tensor functions)."""

from safegrpo.losses.kl import KL_ESTIMATORS, kl_estimate
from safegrpo.losses.masks import entropy_mask, truncated_rows
from safegrpo.losses.policy import (
    AGGREGATIONS,
    aggregate,
    clipped_surrogate,
    grpo_loss,
    minibatch_weight,
)

__all__ = ["AGGREGATIONS", "KL_ESTIMATORS", "aggregate", "clipped_surrogate", "entropy_mask",
           "grpo_loss", "kl_estimate", "minibatch_weight", "truncated_rows"]
