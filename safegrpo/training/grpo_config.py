"""Config of the LM GRPO trainer (``GRPOConfig``) and what a recipe supplies to it (``LMTask``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from torch import Tensor

from safegrpo.advantages import ADVANTAGES, RewardShape
from safegrpo.core.types import ScoredBatch
from safegrpo.losses import AGGREGATIONS, KL_ESTIMATORS
from safegrpo.training.loop_config import LoopConfig, check_schedule_name


class LMTask(Protocol):
    """What a recipe supplies to the GRPO trainer.

    ``reward_shape`` declares what ``score`` returns: ``scalar`` (the total), ``components``
    (total + named components [B] each; the default when a task does not say) or ``segments``
    (also ``ScoredBatch.segments`` [B, S, C]); a segments task also implements
    ``segment_map(rollout) -> Tensor[B, T]`` (the segment of each completion token, -1 = none).
    A task that keeps state across steps (beyond what (seed, step, rank) determines) also
    implements ``state_dict() -> dict`` (JSON values) and ``load_state_dict(dict)``: the trainer
    saves it in every checkpoint and restores it on resume, so a resumed run is exact.
    """

    reward_shape: RewardShape

    def sample_prompts(self, step: int, n: int, rank: int) -> list[Any]: ...

    def render(self, item: Any) -> str: ...

    def score(self, items: list[Any], completions: list[str], group_ids: Tensor) -> ScoredBatch: ...


def _same(field: str):
    return lambda v, data: {field: v}


def _epsilon(v: Any, data: dict[str, Any]) -> dict[str, Any]:
    # TRL: epsilon is the lower clip and, unless epsilon_high is set, the upper one too
    both = not ({"epsilon_high", "clip_eps_high"} & set(data))
    return {"clip_eps_low": v, **({"clip_eps_high": v} if both else {})}


def _scale_rewards(v: Any, data: dict[str, Any]) -> dict[str, Any]:
    scale = {True: "group", False: "none"}.get(v, v) if isinstance(v, bool) else v
    return {"adv_scale": scale}


TRL_ALIASES = {"num_iterations": _same("epochs"), "epsilon": _epsilon,
               "epsilon_high": _same("clip_eps_high"), "loss_type": _same("loss_agg"),
               "importance_sampling_level": _same("ratio_level"),
               "scale_rewards": _scale_rewards, "num_generations": _same("group_size"),
               "learning_rate": _same("lr"), "gradient_accumulation_steps": _same("grad_accum"),
               "max_steps": _same("steps"), "lr_scheduler_type": _same("lr_scheduler"),
               "output_dir": _same("out_dir"), "save_steps": _same("save_every")}
"""TRL GRPOConfig name -> (value, the whole section) -> this config's fields."""

TRL_HINTS = {
    "max_completion_length": "the policy section's max_new_tokens",
    "max_prompt_length": "the policy section's max_prompt_tokens",
    "temperature": "the policy section's temperature", "top_p": "the policy section's top_p",
    "num_train_epochs": "steps (GRPO counts sample/update steps here)",
    "per_device_train_batch_size": "prompts_per_step * group_size rows are sampled per step; "
                                   "minibatch_size rows go through each backward",
    "logging_steps": "none needed: every step is logged",
}
"""TRL names whose setting lives in another section (or has no equivalent): named in the error."""


def _check_schedule(cfg: GRPOConfig) -> None:
    check_schedule_name(cfg.lr_scheduler)
    if cfg.warmup_steps < 0 or not 0 <= cfg.warmup_ratio < 1:
        raise ValueError("warmup_steps must be >= 0 and warmup_ratio in [0, 1)")
    if not 0 < cfg.top_entropy_quantile <= 1:
        raise ValueError("top_entropy_quantile must be in (0, 1]")
    if cfg.log_completions < 0:
        raise ValueError("log_completions must be >= 0")


@dataclass(frozen=True)
class GRPOConfig(LoopConfig):
    steps: int = 50
    """Number of sample/update iterations."""
    prompts_per_step: int = 8
    """Prompts per step per process."""
    group_size: int = 8
    """G completions per prompt."""
    epochs: int = 1
    """Optimizer passes over each batch (mu in the GRPO paper)."""
    minibatch_size: int = 32
    """Rows per forward/backward pass."""
    grad_accum: int = 1
    """Minibatches accumulated per optimizer step (rows per step = minibatch_size * grad_accum)."""
    lr: float = 1e-4
    """AdamW learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping (0 = off)."""
    advantage: str = "grpo"
    """Advantage estimator: grpo | gdpo | segment."""
    adv_scale: Literal["group", "batch", "none"] = "group"
    """Denominator of the grpo advantage."""
    adv_eps: float = 1e-4
    """Epsilon added to the std."""
    loss_agg: str = "grpo"
    """Loss aggregation: grpo | bnpo | dapo | dr_grpo."""
    ratio_level: Literal["token", "sequence", "item"] = "token"
    """Importance ratio per token, per sequence (GSPO) or per item (segment;
    needs a segment task)."""
    adv_weights: tuple[float, ...] = ()
    """Component weights of gdpo / segment_gdpo (empty = equal)."""
    clip_eps_low: float = 0.2
    """Lower clip range."""
    clip_eps_high: float = 0.2
    """Upper clip range (> low = DAPO clip-higher)."""
    beta: float = 0.0
    """KL coefficient to the reference (0 = no reference forward)."""
    kl_estimator: str = "k3"
    """KL estimator: k1 | k2 | k3."""
    reward_kl_coef: float = 0.0
    """KL(policy || reference) folded into the reward: -coef * sum_t (logp - ref_logp) per sequence
    (per segment with segment advantages); grpo and segment advantages only."""
    reward_clip: float = 0.0
    """Clip the reward (per segment with segment advantages) to [-c, c] after the KL term
    (0 = off)."""
    engine_is_cap: float = 0.0
    """Truncated importance sampling for the rollout engine (0 = off): each token's
    policy-gradient term is weighted by min(p_trainer / p_engine, cap), correcting for an engine
    that samples in another precision or implementation (TRL's
    vllm_importance_sampling_correction / _cap). The engine-trainer mismatch (mean |d log p| per
    token) is logged as engine/logp_abs_diff whenever the engine is not the trainer's module."""
    lr_scheduler: str = "constant"
    """Learning-rate schedule over ``steps``, by transformers.get_scheduler name: constant |
    linear | cosine | cosine_with_restarts | polynomial | inverse_sqrt | ... (stepped once per
    GRPO step)."""
    warmup_steps: int = 0
    """Steps of linear warmup from 0 (wins over warmup_ratio)."""
    warmup_ratio: float = 0.0
    """Warmup as a share of ``steps`` (used when warmup_steps is 0)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory for about a third more compute."""
    mask_truncated_completions: bool = False
    """Leave completions that end without EOS (cut at max_new_tokens) out of the loss; they still
    count in their group's advantage statistics."""
    top_entropy_quantile: float = 1.0
    """Train only on the completion tokens whose entropy is in this top share of each minibatch
    (1 = every token; 0.2 = the 'forking' tokens of arXiv:2506.01939)."""
    log_completions: int = 0
    """Per step, write this many (prompt, completion, reward) samples to
    <out_dir>/completions.jsonl (0 = off)."""

    aliases = TRL_ALIASES  # not a field: TRL's GRPOConfig names accepted in YAML and --set
    hints = TRL_HINTS  # not a field: TRL names of settings that live elsewhere here

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_schedule(self)
        for name in (
            "steps",
            "prompts_per_step",
            "group_size",
            "epochs",
            "minibatch_size",
            "grad_accum",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.group_size < 2:
            raise ValueError("group_size must be >= 2 (group-relative advantages need mates)")
        est = ADVANTAGES.get(self.advantage)
        AGGREGATIONS.get(self.loss_agg)
        KL_ESTIMATORS.get(self.kl_estimator)
        if self.ratio_level == "item" and not est.per_segment:
            per_segment = [n for n in ADVANTAGES.names() if ADVANTAGES.get(n).per_segment]
            raise ValueError(f"ratio_level='item' needs a per-segment advantage "
                             f"({' | '.join(per_segment)})")
        if self.reward_kl_coef < 0 or self.reward_clip < 0:
            raise ValueError("reward_kl_coef and reward_clip must be >= 0")
        shaped = self.reward_kl_coef > 0 or self.reward_clip > 0
        if shaped and not est.shapes_reward:
            # gdpo normalises each component on its own: a folded KL would become one more
            # equal-weight objective and a clip of the total would never be read
            raise ValueError(f"reward_kl_coef / reward_clip shape the summed reward, which "
                             f"advantage {self.advantage!r} does not use; use beta (KL in the "
                             "loss) instead")
        if self.engine_is_cap < 0:
            raise ValueError("engine_is_cap must be >= 0 (0 = no importance-sampling correction)")
        if self.beta < 0 or self.lr <= 0 or self.clip_eps_low <= 0 or self.clip_eps_high <= 0:
            raise ValueError("beta must be >= 0; lr and clip ranges must be > 0")
